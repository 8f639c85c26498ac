"""Build configuration: dataclasses merged by OmegaConf (defaults < YAML file < ``key=value`` overrides)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .registry import check, omegaconf_message
from .sources import LoadOptions
from .paper import PAPER_COUNTS

FORMATS = ("easyr1", "verl", "sft")
IMAGE_FORMATS = ("jpeg", "png")
DEFAULT_INSTRUCTION = (
    "First think about the question step by step inside <think> </think> tags, "
    "then give the final answer inside \\boxed{}."
)


@dataclass
class DemoConfig:
    """The built-in procedural corpus used when no --rgb/--rgbd source is given."""

    num_rgb: int = 48
    num_rgbd: int = 48
    num_sequences: int = 24  # rendered camera paths through demo rooms; used only when a sequence task is asked for
    sequence_frames: int = 48  # frames per demo sequence
    width: int = 640
    height: int = 480

    def validate(self) -> None:
        check(2 <= self.sequence_frames <= 10_000, "demo.sequence_frames", f"must be in [2, 10000], got {self.sequence_frames}")
        for key in ("num_rgb", "num_rgbd", "num_sequences"):
            check(0 <= getattr(self, key) <= 100_000, f"demo.{key}", f"must be in [0, 100000], got {getattr(self, key)}")
        for key in ("width", "height"):
            check(128 <= getattr(self, key) <= 4096, f"demo.{key}", f"must be in [128, 4096], got {getattr(self, key)}")


@dataclass
class OutputConfig:
    formats: list[str] = field(default_factory=lambda: ["easyr1", "verl"])  # "sft": LLaMA-Factory cold start
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    embed_images: bool = True  # False: image files under DIR/images, parquet holds paths relative to DIR
    shard_size: int = 2000  # rows per parquet file
    instruction: str = DEFAULT_INSTRUCTION
    easyr1_instruction: bool = False  # EasyR1 adds it with data.format_prompt (a jinja file)
    verl_instruction: bool = True  # verl has no format prompt: the instruction goes into the prompt
    # Also write easyr1_video/ and verl_video/: the video form (``<video>`` prompts, clips of frames) of the sequence
    # tasks that offer one; it turns their ``videos`` option on. The image layouts are written as always.
    videos: bool = False

    def validate(self) -> None:
        check(len(self.formats) > 0, "output.formats", "needs at least one of " + ", ".join(FORMATS))
        for f in self.formats:
            check(f in FORMATS, "output.formats", f"unknown format {f!r}; choose from {', '.join(FORMATS)}")
        check(self.image_format in IMAGE_FORMATS, "output.image_format", f"must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        check(1 <= self.jpeg_quality <= 100, "output.jpeg_quality", f"must be in [1, 100], got {self.jpeg_quality}")
        check(self.shard_size >= 1, "output.shard_size", f"must be >= 1, got {self.shard_size}")


def paper_mix() -> dict[str, float]:
    total = sum(PAPER_COUNTS.values())
    return {name: round(count / total, 4) for name, count in PAPER_COUNTS.items()}


@dataclass(frozen=True)
class Curriculum:
    """A static curriculum: training rows in stages of rising difficulty level, so a trainer that reads them in
    order (``data.shuffle=false``) goes from easy to hard. ``--curriculum "levels=1,2,3 shares=0.2,0.3,0.5
    batch=256"``: one stage per level (equal shares unless ``shares``); ``batch`` (the trainer's rollout batch,
    prompts per step) turns the stage boundaries into trainer steps in the manifest."""

    levels: tuple[int, ...]
    shares: tuple[float, ...]
    batch: int = 256

    @classmethod
    def parse(cls, spec: str) -> Curriculum:
        fields: dict[str, str] = {}
        for part in spec.replace(";", " ").split():
            key, sep, value = part.partition("=")
            check(bool(sep) and key in ("levels", "shares", "batch") and key not in fields, "curriculum",
                  f"{part!r}: expected levels=1,2,3 [shares=0.2,0.3,0.5] [batch=256]")
            fields[key] = value
        check("levels" in fields, "curriculum", f"{spec!r}: needs levels=..., e.g. levels=1,2,3")
        try:
            levels = tuple(int(v) for v in fields["levels"].split(","))
            shares = tuple(float(v) for v in fields["shares"].split(",")) if "shares" in fields else (1.0,) * len(levels)
            batch = int(fields.get("batch", 256))
        except ValueError:
            raise ConfigError(f"curriculum: {spec!r}: levels and batch are whole numbers, shares numbers") from None
        check(all(v >= 1 for v in levels), "curriculum", f"levels must be >= 1, got {list(levels)}")
        check(len(shares) == len(levels), "curriculum", f"{len(shares)} shares for {len(levels)} levels")
        check(all(0 < x < float("inf") for x in shares), "curriculum", f"shares must be positive, got {list(shares)}")
        check(batch >= 1, "curriculum", f"batch must be >= 1, got {batch}")
        return cls(levels, shares, batch)


@dataclass
class BuildConfig:
    out: str = ""
    rgb: list[str] = field(default_factory=list)  # folders, globs or .txt lists of RGB images
    rgbd: list[str] = field(default_factory=list)  # KIND:PATH[,key=value...], KIND in diode, megadepth, pairs
    sequences: list[str] = field(default_factory=list)  # KIND:PATH[,key=value...], KIND in video, frames, scannet, tum, posed
    tasks: list[str] = field(default_factory=list)  # empty: every task in `mix` whose input kind is available
    mix: dict[str, float] = field(default_factory=dict)  # task weights (normalised); empty = the paper's 81k mix
    task: dict[str, Any] = field(default_factory=dict)  # per-task config overrides, e.g. task.crop.size_frac=0.4
    num_samples: int = 500
    val_fraction: float = 0.05
    seed: int = 0
    workers: int = 1
    backend: str = "local"  # "local" (processes on this machine) or "ray" (Ray Data, this machine or a cluster)
    ray_address: str = ""  # with backend=ray: "" starts a local Ray with `workers` CPUs; "auto" or ray://host:10001
    max_attempts: int = 4  # fresh random draws per candidate before it counts as rejected
    window: int = 256  # candidates planned and run in parallel at a time; changes speed only, never the output
    visit_size: int = 0  # max samples per decoded source visit; 0 = automatic (>1 only when sources are reused)
    max_candidates_factor: float = 5.0  # give up on a task after this many candidates per wanted sample
    level: Optional[int] = None  # difficulty level of every task (task.<name>.level sets one task's); None: none
    curriculum: str = ""  # static curriculum, e.g. "levels=1,2,3" (see Curriculum.parse); "" for none
    source: LoadOptions = field(default_factory=LoadOptions)
    demo: DemoConfig = field(default_factory=DemoConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> None:
        check(1 <= self.num_samples <= 100_000_000, "num_samples", f"must be in [1, 1e8], got {self.num_samples}")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check(0 <= self.seed < 2**63, "seed", f"must be in [0, 2**63), got {self.seed}")
        check(1 <= self.workers <= 512, "workers", f"must be in [1, 512], got {self.workers}")
        check(self.backend in ("local", "ray"), "backend", f"must be 'local' or 'ray', got {self.backend!r}")
        check(1 <= self.max_attempts <= 100, "max_attempts", f"must be in [1, 100], got {self.max_attempts}")
        check(1 <= self.window <= 1_000_000, "window", f"must be in [1, 1e6], got {self.window}")
        check(0 <= self.visit_size <= 64, "visit_size", f"must be in [0, 64] (0 = automatic), got {self.visit_size}")
        check(self.max_candidates_factor >= 1, "max_candidates_factor", f"must be >= 1, got {self.max_candidates_factor}")
        check(self.level is None or self.level >= 1, "level", f"must be >= 1, got {self.level}")
        self.curriculum_plan()  # a malformed spec names the key
        from .registry import get_task_class

        for name in [*self.tasks, *self.mix, *self.task]:
            get_task_class(name)  # unknown names fail here, listing the registered tasks
        for name, w in self.mix.items():
            check(w >= 0 and w < float("inf"), f"mix.{name}", f"weight must be a finite number >= 0, got {w}")
        self.source.validate()
        self.demo.validate()
        self.output.validate()

    def weights(self, sequences: bool = False) -> dict[str, float]:
        """Task → weight for the tasks to build: `tasks` (if given) weighted by `mix` (default: paper's mix);
        a selected task without a weight gets the mean weight. With neither `tasks` nor `mix`, ``sequences`` (there
        are sequence sources) adds every sequence task at the mean weight of the paper's mix."""
        base = dict(self.mix) or paper_mix()
        if not self.tasks:
            if sequences and not self.mix:
                from .paper import SEQUENCE_ORDER

                mean = sum(base.values()) / len(base)
                base.update(dict.fromkeys(SEQUENCE_ORDER, mean))
            return {t: w for t, w in base.items() if w > 0}
        mean = sum(base.values()) / len(base)
        return {t: base.get(t, mean) for t in self.tasks}

    def task_config(self, name: str) -> dict[str, Any]:
        """The config of one task: ``task.<name>`` over the global ``level`` (and ``output.videos`` for tasks with a
        video form)."""
        own = dict(self.task.get(name) or {})
        if self.output.videos and "videos" not in own:
            from .registry import get_task_class

            if "videos" in {f.name for f in dataclasses.fields(get_task_class(name).config_cls)}:
                own["videos"] = True
        return {"level": self.level, **own} if self.level is not None else own

    def curriculum_plan(self) -> Curriculum | None:
        return Curriculum.parse(self.curriculum) if self.curriculum else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_yaml(file: str) -> Any:
    """A YAML config file, or a one-line ConfigError naming the file (and the line of a syntax error)."""
    try:
        loaded = OmegaConf.load(file)
    except FileNotFoundError:
        raise ConfigError(f"--config {file}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"--config {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {file}: not a text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"--config {file}: not valid YAML ({problem}{where})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"--config {file}: expected a mapping of keys (see example_configs/build.yaml), got a "
                          f"{type(loaded).__name__}")
    return loaded


def load_config(file: str | None = None, overrides: list[str] | None = None, **values: Any) -> BuildConfig:
    """Defaults, then a YAML file, then ``values`` (from CLI flags, None = unset), then ``key=value`` overrides."""
    try:
        merged = OmegaConf.structured(BuildConfig)
        if file:
            merged = OmegaConf.merge(merged, read_yaml(file))
        flags = {k: v for k, v in values.items() if v is not None}
        if flags:
            merged = OmegaConf.merge(merged, OmegaConf.create(flags))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"override {bad[0]!r}: expected key=value")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
        config: BuildConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(omegaconf_message(exc)) from None
    config.validate()
    return config
