"""The task registry: one :class:`Task` subclass and one config dataclass per pretext task.

Built-in tasks register on import of :mod:`ssrl_plugin.tasks`; third-party tasks register through the
``ssrl_plugin.tasks`` entry-point group (each entry point names a :class:`Task` subclass)::

    [project.entry-points."ssrl_plugin.tasks"]
    my_task = "my_package.tasks:MyTask"
"""

from __future__ import annotations

import abc
import dataclasses
import warnings
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from typing import Any, ClassVar, Optional

import numpy as np
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image

from .core import Sample, Source
from .errors import ConfigError

ENTRY_POINT_GROUP = "ssrl_plugin.tasks"


@dataclasses.dataclass
class TaskConfig:
    """Base of every task config. Subclasses add fields with defaults and check them in ``validate``.

    ``level``: a difficulty level of the task (:attr:`Task.levels`); its knobs replace the configured values.
    """

    level: Optional[int] = None

    def validate(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`ConfigError` naming the field when a value is absurd."""


def check(condition: bool, key: str, message: str) -> None:
    """One-line config validation: ``check(x > 0, "task.crop.size_frac", "must be in (0, 1)")``."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


class Task(abc.ABC):
    """A procedural pretext task.

    ``generate`` is a pure function of (source, rng, slot): the same three give the same sample on any machine.
    ``slot`` in ``range(num_slots)`` fixes the answer's balanced part (the correct letter, the flipped patch and
    direction, the label order...); the builder cycles slots so answers stay balanced.
    ``verify`` re-derives the answer from the sample's images, metadata and source by a route independent of
    ``generate`` and returns the list of problems found (empty = verified).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[TaskConfig]] = TaskConfig
    needs_depth: ClassVar[bool] = False
    # What the task reads: "rgb" | "rgbd" (one image, one with depth) | "video" (a Sequence of frames) | "posed" (a
    # Sequence with depth, poses and intrinsics). Empty: "rgbd" when ``needs_depth`` else "rgb". Sequence tasks get a
    # :class:`~ssrl_plugin.sequence.Sequence` as ``source`` in ``generate`` and ``verify``.
    input_kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    word_options: ClassVar[bool] = False  # options are words the model may quote ("B. Front"): stored with the answer
    # Difficulty levels, 1 the easiest: the config knobs each one sets. A level is monotone in a measured sense
    # (``difficulty`` of its samples), not just named; tests check it.
    levels: ClassVar[Mapping[int, Mapping[str, Any]]] = {}

    @classmethod
    def input_pool(cls) -> str:
        """The source pool this task draws from (see ``input_kind``)."""
        return cls.input_kind or ("rgbd" if cls.needs_depth else "rgb")

    def __init__(self, config: TaskConfig | Mapping[str, Any] | None = None):
        key = f"task.{self.name}"
        self.config = make_config(self.config_cls, config, key=key)
        level = self.config.level
        if level is not None:
            check(level in self.levels, f"{key}.level",
                  f"must be one of {sorted(self.levels)}, got {level}" if self.levels else f"{self.name} has no difficulty levels")
            knobs = {**dataclasses.asdict(self.config), **self.levels[level]}
            self.config = make_config(self.config_cls, knobs, key=key)

    @classmethod
    def knob_names(cls) -> list[str]:
        """The config keys the levels set, in declaration order."""
        return list(dict.fromkeys(k for knobs in cls.levels.values() for k in knobs))

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """What makes this sample hard, measured on it (read from its metadata): e.g. the depth gap between
        regions, the margin over a threshold. Tasks override it; recorded in ``metadata["difficulty"]``."""
        return {}

    def describe_difficulty(self, metadata: dict) -> dict[str, Any]:
        """``{"level", "knobs", "measured"}``: the level (None without one), the values of the knobs levels
        set, and :meth:`difficulty`."""
        knobs = {k: getattr(self.config, k) for k in self.knob_names()}
        return {"level": self.config.level, "knobs": knobs, "measured": self.difficulty(metadata)}

    def variants(self) -> list[str]:
        """Names of the variants this config can produce."""
        return [self.name]

    @property
    def num_slots(self) -> int:
        return 1

    @abc.abstractmethod
    def generate(self, source: Source, rng: np.random.Generator, slot: int = 0) -> Sample:
        """Make one sample or raise :class:`~ssrl_plugin.errors.Reject` with a reason key."""

    @abc.abstractmethod
    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Problems found when re-deriving ``answer`` independently (empty list = answer verified)."""

    def score_answer(self, answer: str | None, ground_truth: str) -> float:
        """Accuracy in [0, 1] of a final answer (the content of ``\\boxed{}``) against the canonical answer or
        the stored ground-truth JSON, with the equivalent spellings of :mod:`ssrl_plugin.scoring`."""
        if answer is None:
            return 0.0
        from .scoring import evaluate

        return evaluate(f"\\boxed{{{answer}}}", ground_truth, self.name).accuracy


def make_config(cls: type[TaskConfig], value: TaskConfig | Mapping[str, Any] | None, key: str) -> TaskConfig:
    """Build and validate a config dataclass from overrides; unknown keys and bad types name the key."""
    if isinstance(value, cls):
        config = value
    else:
        try:
            merged = OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(dict(value or {})))
            config = OmegaConf.to_object(merged)
        except OmegaConfBaseException as exc:
            raise ConfigError(omegaconf_message(exc, key)) from None
    config.validate()
    return config


def omegaconf_message(exc: OmegaConfBaseException, prefix: str = "") -> str:
    """OmegaConf's first line, led by the full dotted key it concerns."""
    full_key = getattr(exc, "full_key", None) or ""
    key = ".".join(k for k in (prefix, str(full_key)) if k)
    message = str(exc).splitlines()[0]
    return f"{key}: {message}" if key else message


_REGISTRY: dict[str, type[Task]] = {}
_plugins_loaded = False


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator that adds a task to the registry under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__qualname__} needs a string class attribute 'name'")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"task {name!r} is already registered by {_REGISTRY[name].__module__}")
    _REGISTRY[name] = cls
    return cls


def _load_plugins() -> None:
    """Register the built-in tasks, then every entry point of the group. A broken plugin is skipped with a
    one-line warning, so it can never take the built-in tasks down with it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from . import tasks  # noqa: F401  (registers the built-in tasks)

    for ep in sorted(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
            if not (isinstance(obj, type) and issubclass(obj, Task)):
                raise TypeError("not a Task subclass")
            register_task(obj)
        except Exception as exc:  # noqa: BLE001 - third-party code: report and carry on
            message = str(exc).splitlines()[0] if str(exc) else ""
            warnings.warn(f"ssrl: task plugin {ep.name!r} ({ep.value}) skipped: {type(exc).__name__}: {message}", stacklevel=2)


def list_tasks() -> list[str]:
    """Registered task names, built-ins first in the paper's order, then plugins alphabetically."""
    _load_plugins()
    from .paper import BUILTIN_ORDER, SEQUENCE_ORDER

    order = (*BUILTIN_ORDER, *SEQUENCE_ORDER)
    builtins = [n for n in order if n in _REGISTRY]
    return builtins + sorted(n for n in _REGISTRY if n not in order)


def get_task_class(name: str) -> type[Task]:
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; registered: {', '.join(list_tasks())}") from None


def create_task(name: str, config: TaskConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Task:
    """``create_task("shuffle", variants={"2x2": 1.0})`` → a configured, validated task."""
    cls = get_task_class(name)
    if overrides:
        if isinstance(config, TaskConfig):
            config = dataclasses.asdict(config)
        config = {**dict(config or {}), **overrides}
    return cls(config)


def create_mix(weights: Mapping[str, float], configs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, tuple[Task, float]]:
    """A weighted mix of tasks: ``{name: (task, normalised weight)}`` for every positive weight."""
    configs = configs or {}
    for name, w in weights.items():
        check(isinstance(w, (int, float)) and w >= 0 and np.isfinite(w), f"mix.{name}", f"weight must be a finite number >= 0, got {w!r}")
    total = float(sum(w for w in weights.values()))
    check(total > 0, "mix", "at least one task needs a positive weight")
    return {name: (create_task(name, configs.get(name)), w / total) for name, w in weights.items() if w > 0}
