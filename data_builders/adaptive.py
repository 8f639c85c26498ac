"""An adaptive curriculum for the on-the-fly dataset: each task's level follows its rolling accuracy in training.

In the style of Reasoning Gym's curricula: per task, the level rises when the task's rolling accuracy reaches
``up`` and falls back when it drops below ``down``; the accuracy is our reward's ``acc`` on the training rollouts.
Switched on by a ``data.ssrl.adaptive`` section (verl's ``data`` config)::

    ++data.ssrl.adaptive.up=0.75            # rolling accuracy >= up: next level
    ++data.ssrl.adaptive.down=0.35          # rolling accuracy < down: previous level (null: never fall back)
    ++data.ssrl.adaptive.window=640         # responses in each task's rolling window
    ++data.ssrl.adaptive.min_samples=320    # responses at the current level before a move is considered
    ++data.ssrl.adaptive.start=min          # first level: min (the easiest), or a level number
    trainer.v1.sampler.custom_sampler.path=pkg://data_builders.adaptive
    trainer.v1.sampler.custom_sampler.name=AdaptiveReplayBuffer
    data.dataloader_num_workers=0

How it plugs into verl 0.9.1 (example_configs/verl_grpo_adaptive.sh):

* the dataset (``data.custom_cls`` = :class:`data_builders.online.OnlineSpatialDataset`) owns the controller and
  draws each training sample at its task's current level when the dataloader asks for it;
* the feedback is verl's V1 replay buffer hook (``trainer.v1.sampler.custom_sampler``, the default trainer,
  ``trainer.use_v1=true``): :class:`AdaptiveReplayBuffer` is verl's own ``ReplayBuffer``; after its ``sample``
  picks a step's finished rollouts, it reads their ``data_source`` / ``extra_info`` and the reward's ``acc`` from
  TransferQueue, feeds the controller and returns ``curriculum/level_<task>`` (and ``acc_``, ``window_``) with
  the sampler's metrics, which the trainer logs at that step. It runs in the trainer's process, beside the
  dataset (found through the trainer that owns it). The legacy trainer (``trainer.use_v1=false``) calls the
  dataset's ``on_batch_end(batch)`` instead; it works too, without the metrics (that loop has no hook for them)
  and with one step of accuracies missing after a resume (it saves the checkpoint before ``on_batch_end``);
* the controller's state is part of the dataset's ``state_dict``, which torchdata's StatefulDataLoader stores in
  verl's checkpoint (``data.pt``), so a resumed run continues at the same levels with the same windows.

``data.dataloader_num_workers=0`` is required: verl's dataloader workers would prefetch up to two batches each
(drawn at stale levels, at a moment that depends on timing), hold copies of the dataset that never see a level
change, and checkpoint their own stale copies. With no worker, each batch is drawn when the trainer asks for it,
after every accuracy observed before it, so the rows are a deterministic function of the seed, the epoch, the
index *and the sequence of accuracies observed so far*; the sample generation then runs in the trainer process
(~5 ms a prompt on the demo corpus, tens of ms on large photos: seconds a step, small beside a GRPO step).

Validation (``ssrl://val``) stays a fixed set: with the curriculum on, its samples take every level in turn
(per task), so the validation curves cover all levels.

This module imports no torch; verl is imported only when :class:`AdaptiveReplayBuffer` is looked up.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

from ssrl_plugin.errors import ConfigError
from ssrl_plugin.registry import get_task_class

__all__ = ["AdaptiveConfig", "AdaptiveCurriculum", "Observation", "CycleLevels", "task_levels",
           "adaptive_config_from", "observations_from_rows"]  # + AdaptiveReplayBuffer (imports verl, lazily)

KEY = "data.ssrl.adaptive"
STATE_VERSION = 1


# ----------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class AdaptiveConfig:
    """When a task's level moves.

    ``up``: the rolling accuracy at or above which the task goes one level up; ``down``: below which it goes one
    level down (None: never); ``window``: the last responses (of that task, at its current level) the accuracy is
    the mean of; ``min_samples``: responses needed at the current level before a move is considered (a move clears
    the window); ``start``: the first level, ``"min"`` (the task's easiest) or a level number every levelled task
    has; ``metric``: the reward key holding a response's accuracy in [0, 1] (our reward's ``acc``).
    """

    up: float = 0.75
    down: Optional[float] = 0.35
    window: int = 640
    min_samples: int = 320
    start: Union[str, int] = "min"
    metric: str = "acc"

    def __post_init__(self) -> None:
        def bad(key: str, message: str) -> ConfigError:
            return ConfigError(f"{KEY}.{key}: {message}")

        if not isinstance(self.up, (int, float)) or isinstance(self.up, bool) or not 0 < self.up <= 1:
            raise bad("up", f"must be a number in (0, 1], got {self.up!r}")
        if self.down is not None:
            if not isinstance(self.down, (int, float)) or isinstance(self.down, bool) or not 0 <= self.down < self.up:
                raise bad("down", f"must be a number in [0, up) or null, got {self.down!r} (up {self.up})")
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
            raise bad("window", f"must be an integer >= 1, got {self.window!r}")
        if not isinstance(self.min_samples, int) or isinstance(self.min_samples, bool) \
                or not 1 <= self.min_samples <= self.window:
            raise bad("min_samples", f"must be an integer in [1, window={self.window}], got {self.min_samples!r}")
        if not (self.start == "min" or (isinstance(self.start, int) and not isinstance(self.start, bool))):
            raise bad("start", f"must be 'min' or a level number, got {self.start!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise bad("metric", f"must be a reward key, got {self.metric!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "AdaptiveConfig":
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - {"enable"})
        if unknown:
            raise ConfigError(f"{KEY}.{unknown[0]}: unknown key; known: enable, {', '.join(sorted(known))}")
        values.pop("enable", None)
        return cls(**values)


def adaptive_config_from(data_config: Mapping | None) -> AdaptiveConfig | None:
    """The ``data.ssrl.adaptive`` section of verl's data config: None when absent or ``enable: false``."""
    from .online import _plain

    section = _plain((data_config or {}).get("ssrl")) or {}
    if not isinstance(section, Mapping) or section.get("adaptive") is None:
        return None
    adaptive = _plain(section["adaptive"])
    if adaptive is True or adaptive == {}:
        return AdaptiveConfig()
    if not isinstance(adaptive, Mapping):
        raise ConfigError(f"{KEY}: expected a section (up, down, window, min_samples, start, metric), got {adaptive!r}")
    enable = adaptive.get("enable", True)
    if not isinstance(enable, bool):
        raise ConfigError(f"{KEY}.enable: must be true or false, got {enable!r}")
    return AdaptiveConfig.from_mapping(adaptive) if enable else None


def task_levels(tasks: Iterable[str]) -> dict[str, list[int]]:
    """The difficulty levels of each task, read from its class (``Task.levels``); [] for a task without."""
    return {name: sorted(int(k) for k in get_task_class(name).levels) for name in tasks}


# ----------------------------------------------------------------------------------------------- controller
class Observation(NamedTuple):
    """One scored response: its task, its accuracy in [0, 1] and the level it was drawn at (None: unknown)."""

    task: str
    accuracy: float
    level: Optional[int] = None


class AdaptiveCurriculum:
    """Per-task levels driven by rolling accuracy. Pure Python, deterministic given the observed batches.

    ``observe(batch)`` takes one batch of :class:`Observation`; within a batch the order does not matter (the
    window keeps each batch's sum and count; when the last ``window`` responses cut through a batch, that batch
    counts with its mean), and levels move only between batches: after adding a batch, a
    task with at least ``min_samples`` responses at its current level moves up when their mean is >= ``up`` (not
    past its hardest level), down when it is < ``down`` (not below its easiest); a move empties the window.
    Responses drawn at another level than the task's current one (in flight across a move) are counted as stale
    and not used. Tasks without levels are not managed (:meth:`level` is None for them).
    """

    def __init__(self, levels: Mapping[str, Sequence[int]], config: AdaptiveConfig | None = None):
        self.config = config or AdaptiveConfig()
        self.levels = {t: sorted(int(v) for v in lv) for t, lv in sorted(levels.items()) if lv}
        if not self.levels:
            raise ConfigError(f"{KEY}: none of the tasks {sorted(levels)} has difficulty levels (Task.levels)")
        self._level: dict[str, int] = {}
        for task, lv in self.levels.items():
            start = lv[0] if self.config.start == "min" else int(self.config.start)
            if start not in lv:
                raise ConfigError(f"{KEY}.start: task {task!r} has levels {lv}, not {start}")
            self._level[task] = start
        self._window: dict[str, deque] = {t: deque() for t in self.levels}  # [sum, count] per batch, oldest first
        self.batches = 0  # batches observed
        self.stale = {t: 0 for t in self.levels}
        self.history: list[tuple[int, str, int, int]] = []  # (batch number, task, from level, to level)

    # -- reading
    def level(self, task: str) -> int | None:
        return self._level.get(task)

    def current(self) -> dict[str, int]:
        return dict(self._level)

    def __call__(self, task: str, k: int = 0) -> int | None:
        """The level a new sample of ``task`` is drawn at (OnlineRows' ``level_fn``)."""
        return self._level.get(task)

    def count(self, task: str) -> int:
        """Responses in the task's window (at most ``window``)."""
        return min(self.config.window, sum(c for _, c in self._window.get(task, ())))

    def accuracy(self, task: str) -> float | None:
        """Mean accuracy of the task's last ``window`` responses at its current level (None: none yet)."""
        room, total = self.config.window, 0.0
        for acc_sum, n in reversed(self._window.get(task, ())):
            take = min(room, n)
            total += acc_sum * (take / n)
            room -= take
            if room == 0:
                break
        used = self.config.window - room
        return total / used if used else None

    def metrics(self, prefix: str = "curriculum/") -> dict[str, float]:
        """``{prefix}level_<task>``, ``{prefix}acc_<task>`` (rolling, when the window is not empty) and
        ``{prefix}window_<task>`` (responses in it), for every managed task."""
        out: dict[str, float] = {}
        for task in self.levels:
            out[f"{prefix}level_{task}"] = float(self._level[task])
            acc = self.accuracy(task)
            if acc is not None:
                out[f"{prefix}acc_{task}"] = float(acc)
            out[f"{prefix}window_{task}"] = float(self.count(task))
        return out

    # -- updating
    def observe(self, batch: Iterable[Observation | tuple]) -> dict[str, tuple[int, int]]:
        """Add one batch of observations; returns the moves it caused, ``{task: (from, to)}``."""
        per_task: dict[str, list[float]] = {}
        for obs in batch:
            obs = Observation(*obs)
            if obs.task not in self.levels:
                continue
            acc = float(obs.accuracy)
            if not math.isfinite(acc):
                continue
            if obs.level is not None and int(obs.level) != self._level[obs.task]:
                self.stale[obs.task] += 1
                continue
            per_task.setdefault(obs.task, []).append(min(1.0, max(0.0, acc)))
        self.batches += 1
        moves: dict[str, tuple[int, int]] = {}
        for task in sorted(per_task):
            window = self._window[task]
            window.append([math.fsum(sorted(per_task[task])), len(per_task[task])])
            while len(window) > 1 and sum(c for _, c in window) - window[0][1] >= self.config.window:
                window.popleft()  # the newer batches hold the whole window
        for task in self.levels:
            window = self._window[task]
            if self.count(task) < self.config.min_samples:
                continue
            acc, lv, cur = self.accuracy(task), self.levels[task], self._level[task]
            i = lv.index(cur)
            if acc >= self.config.up and i + 1 < len(lv):
                new = lv[i + 1]
            elif self.config.down is not None and acc < self.config.down and i > 0:
                new = lv[i - 1]
            else:
                continue
            self._level[task] = new
            window.clear()
            moves[task] = (cur, new)
            self.history.append((self.batches, task, cur, new))
        return moves

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Plain Python (JSON-able): the levels, the windows, the counters and the history of moves."""
        return {
            "version": STATE_VERSION,
            "config": dataclasses.asdict(self.config),
            "levels": dict(self._level),
            "windows": {t: [list(b) for b in w] for t, w in self._window.items()},
            "batches": self.batches,
            "stale": dict(self.stale),
            "history": [list(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. Tasks the state does not name keep their start level; a level a
        task no longer has is an error. The config in effect stays this object's (a resumed run may change it)."""
        if not state:
            return
        if int(state.get("version", 0)) != STATE_VERSION:
            raise ValueError(f"adaptive curriculum state version {state.get('version')!r}, expected {STATE_VERSION}")
        for task, level in dict(state.get("levels", {})).items():
            if task not in self.levels:
                continue
            if int(level) not in self.levels[task]:
                raise ConfigError(f"{KEY}: the checkpoint has {task} at level {level}; the task's levels are "
                                  f"{self.levels[task]}")
            self._level[task] = int(level)
        for task, values in dict(state.get("windows", {})).items():
            if task in self._window:
                self._window[task].clear()
                self._window[task].extend([float(a), int(n)] for a, n in values)
        self.batches = int(state.get("batches", 0))
        self.stale.update({t: int(v) for t, v in dict(state.get("stale", {})).items() if t in self.stale})
        self.history = [tuple(h) for h in state.get("history", [])]


class CycleLevels:
    """``level_fn`` of a fixed (validation) set: sample *k* of a task takes the task's levels in turn."""

    def __init__(self, levels: Mapping[str, Sequence[int]]):
        self.levels = {t: list(lv) for t, lv in levels.items() if lv}

    def __call__(self, task: str, k: int) -> int | None:
        lv = self.levels.get(task)
        return lv[k % len(lv)] if lv else None


# ----------------------------------------------------------------------------------------------- feedback
def _value(v: Any) -> Any:
    """The Python value inside a tensordict NonTensorData / numpy scalar / one-element tensor."""
    if hasattr(v, "batch_size") and hasattr(v, "data"):  # tensordict's NonTensorData (numpy's .data is a buffer)
        v = v.data
    if v is None or isinstance(v, (dict, list, tuple, str, bytes)):
        return v
    item = getattr(v, "item", None)
    if item is not None:
        try:
            return item()
        except (ValueError, RuntimeError):
            return v
    return v


def _task_of(data_source: Any, extra_info: Any) -> str | None:
    if isinstance(extra_info, Mapping) and isinstance(extra_info.get("task"), str):
        return extra_info["task"]
    if isinstance(data_source, str) and data_source.startswith("spatial_ssrl/"):
        return data_source.split("/", 1)[1]
    return None


def _level_of(extra_info: Any) -> int | None:
    if isinstance(extra_info, Mapping):
        level = extra_info.get("difficulty")
        if isinstance(level, (int, float)) and not isinstance(level, bool) and math.isfinite(level) and level >= 1:
            return int(level)  # 0: a row built without levels
    return None


def observations_from_rows(data_sources: Sequence, extra_infos: Sequence, accuracies: Sequence,
                           metric: str = "acc") -> list[Observation]:
    """Observations of scored responses: ``data_source`` / ``extra_info`` columns of our rows (the task, and the
    level in ``extra_info["difficulty"]``) and the reward's accuracy. Responses of other data sets are skipped."""
    if not len(data_sources) == len(extra_infos) == len(accuracies):
        raise ValueError(f"columns of different lengths: {len(data_sources)}, {len(extra_infos)}, {len(accuracies)}")
    out = []
    for source, info, acc in zip(data_sources, extra_infos, accuracies):
        source, info, acc = _value(source), _value(info), _value(acc)
        task = _task_of(source, info)
        if task is None:
            continue
        if acc is None:
            raise KeyError(f"{KEY}.metric: a response of {task} has no reward key {metric!r} (our reward returns "
                           "'acc'; set data.ssrl.adaptive.metric to your reward's accuracy key)")
        out.append(Observation(task, float(acc), _level_of(info)))
    return out


# one process holds a trainer, its dataset and its sampler: the latest adaptive training dataset's controller
_ACTIVE: Optional["weakref.ref[AdaptiveCurriculum]"] = None


def register(curriculum: AdaptiveCurriculum) -> None:
    global _ACTIVE
    _ACTIVE = weakref.ref(curriculum)


def active() -> AdaptiveCurriculum | None:
    return _ACTIVE() if _ACTIVE is not None else None


def _make_replay_buffer_class():
    """Subclass verl 0.9.1's V1 ReplayBuffer (imports TransferQueue, verl's GPU extras) when first looked up."""
    import transfer_queue as tq
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    class AdaptiveReplayBuffer(ReplayBuffer):
        """verl's sync ReplayBuffer, unchanged, plus the curriculum's feedback: after ``sample`` selects a step's
        finished rollouts, their reward accuracies go to the training dataset's controller, and the levels come
        back as this step's metrics (``curriculum/level_<task>``, ``curriculum/acc_<task>``,
        ``curriculum/window_<task>``, logged by the trainer).

        Plug in with ``trainer.v1.sampler.custom_sampler.path=pkg://data_builders.adaptive`` and
        ``trainer.v1.sampler.custom_sampler.name=AdaptiveReplayBuffer``.
        """

        def curriculum(self) -> AdaptiveCurriculum:
            # refill_fn is the trainer's bound _add_prompts_to_generate: the trainer owns the train dataset
            dataset = getattr(getattr(self.refill_fn, "__self__", None), "train_dataset", None)
            found = getattr(dataset, "curriculum", None) or active()
            if found is None:
                raise RuntimeError("AdaptiveReplayBuffer: the training dataset has no adaptive curriculum; use "
                                   "data.custom_cls = data_builders.online.OnlineSpatialDataset with a "
                                   "data.ssrl.adaptive section (example_configs/verl_grpo_adaptive.sh)")
            return found

        def sample(self, global_steps: int, partition_id: str, batch_size: int):
            batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id,
                                            batch_size=batch_size)
            if partition_id != "val" and batch.keys:
                curriculum = self.curriculum()
                data = tq.kv_batch_get(keys=list(batch.keys), partition_id=partition_id,
                                       select_fields=["data_source", "extra_info", "extra_fields"])
                sources = [_value(v) for v in data["data_source"]]
                infos = [_value(v) for v in data["extra_info"]]
                metric = curriculum.config.metric
                accs = []
                for fields in data["extra_fields"]:
                    fields = _value(fields)
                    info = fields.get("reward_extra_info", {}) if isinstance(fields, Mapping) else {}
                    accs.append(info.get(metric))
                curriculum.observe(observations_from_rows(sources, infos, accs, metric))
                metrics = {**metrics, **curriculum.metrics()}
            return batch, metrics

    AdaptiveReplayBuffer.__module__ = __name__
    AdaptiveReplayBuffer.__qualname__ = "AdaptiveReplayBuffer"
    return AdaptiveReplayBuffer


_LAZY: dict[str, Any] = {}


def __getattr__(name: str):
    if name == "AdaptiveReplayBuffer":
        if name not in _LAZY:
            _LAZY[name] = _make_replay_buffer_class()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
