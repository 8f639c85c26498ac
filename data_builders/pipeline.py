"""``ssrl build``: sources → candidates → samples → parquet, deterministic for any number of workers.

Candidates are planned in fixed-size windows. Within a window they run in parallel; results are consumed in
plan order, and everything that steers planning (which tasks are full, which sources are broken) changes only
between windows. So the output depends on the config and seed alone, never on worker count or timing.

Validation is built first, and its failed sources are replaced from the training side in rounds (see
:meth:`Builder.replacements`). A checkpoint is on disk before the first sample and after every closed shard and
every few seconds (:mod:`.checkpoint`), so a build stopped at any moment resumes to the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ssrl_plugin.config import BuildConfig, Curriculum
from ssrl_plugin.dataset import Candidate, VisitPlanner
from ssrl_plugin.errors import ConfigError, NothingUsable, OutputError
from ssrl_plugin.registry import Task, create_task
from ssrl_plugin.seeding import key_to_int
from ssrl_plugin.sources import (POOLS, SourceRef, absolute_rgb_spec, absolute_rgbd_spec, discover_rgb, discover_rgbd,
                                 with_spec_path)

from .checkpoint import ROWS_LOG, STATE_FILE, load_state, new_state, save_state
from .executor import Executor
from .records import VIDEO_LAYOUTS, Record
from .report import make_manifest
from .writers import DatasetWriter

SPLITS = ("val", "train")  # validation first: its failed sources are replaced from the training side
OUTPUT_ENTRIES = ("easyr1", "verl", "easyr1_video", "verl_video", "sft", "images", "manifest.json", "manifest.json.tmp", STATE_FILE,
                  STATE_FILE + ".tmp", *(ROWS_LOG.format(split=s) for s in SPLITS))
CHECKPOINT_EVERY_S = 2.0  # besides every closed shard; any checkpoint resumes to the same bytes
MAX_VAL_ROUNDS = 16


# ----------------------------------------------------------------------------------------------- sources
@dataclass
class Pools:
    rgb: list[SourceRef]
    rgbd: list[SourceRef]
    skipped: list[tuple[str, str]]
    demo: bool = False
    rgb_from_rgbd: bool = False
    sequences: list[SourceRef] = field(default_factory=list)  # videos, frame folders, posed RGB-D sequences

    def get(self, name: str) -> list[SourceRef]:
        """The refs of one pool (:data:`~ssrl_plugin.sources.POOLS`): ``video`` is every sequence, ``posed`` the
        sequences with depth and poses."""
        if name == "video":
            return self.sequences
        if name == "posed":
            return [r for r in self.sequences if r.pool == "posed"]
        return self.rgb if name == "rgb" else self.rgbd

    def all_refs(self) -> list[SourceRef]:
        return [*self.rgb, *self.rgbd, *self.sequences]


def wanted_pools(config: BuildConfig) -> set[str]:
    """The pools the tasks asked for draw from (unknown task names are left to the config's own error)."""
    from ssrl_plugin.registry import get_task_class, list_tasks

    known = set(list_tasks())
    return {get_task_class(t).input_pool() for t in config.weights() if t in known}


def collect_sources(config: BuildConfig) -> Pools:
    """Discover every configured source (or the demo corpus when none is given: its sequences only when a
    sequence task is asked for, so image builds stay as they were)."""
    skipped: list[tuple[str, str]] = []
    if not config.rgb and not config.rgbd and not config.sequences:
        from ssrl_plugin.demo import demo_refs

        wanted = wanted_pools(config)
        images = bool(wanted & {"rgb", "rgbd"})  # a sequence-only build lists no demo images among its inputs
        refs = demo_refs(config.demo.num_rgb if images else 0, config.demo.num_rgbd if images else 0,
                         config.demo.width, config.demo.height)
        sequences = []
        if wanted & {"video", "posed"}:
            from ssrl_plugin.demo_sequence import demo_sequence_refs

            sequences = demo_sequence_refs(config.demo.num_sequences, config.demo.width, config.demo.height,
                                           config.demo.sequence_frames)
        return Pools([r for r in refs if not r.has_depth], [r for r in refs if r.has_depth], skipped, demo=True,
                     sequences=sequences)
    rgb, rgbd, sequences = [], [], []
    for spec in config.rgb:
        refs, bad = discover_rgb(spec)
        rgb += refs
        skipped += bad
    for spec in config.rgbd:
        refs, bad = discover_rgbd(spec)
        rgbd += refs
        skipped += bad
    if config.sequences:
        from ssrl_plugin.sequence_io import discover_sequences

        for spec in config.sequences:
            refs, bad = discover_sequences(spec)
            sequences += refs
            skipped += bad
    for name, pool in (("--rgb", rgb), ("--rgbd", rgbd), ("--sequences", sequences)):
        ids = Counter(r.id for r in pool)
        dup = [i for i, n in ids.items() if n > 1]
        if dup:
            raise ConfigError(f"{name}: source id {dup[0]!r} appears twice; give folders with distinct names")
    pools = Pools(sorted(rgb, key=lambda r: r.id), sorted(rgbd, key=lambda r: r.id), skipped,
                  sequences=sorted(sequences, key=lambda r: r.id))
    if not pools.rgb and pools.rgbd:  # RGB tasks fall back to the images of the RGB-D pairs
        pools.rgb, pools.rgb_from_rgbd = list(pools.rgbd), True
    return pools


def split_sources(seed: int, pools: Pools, val_fraction: float) -> set[str]:
    """Source ids that go to validation: a seeded hash threshold over ids (the same decision in every pool),
    plus each pool's lowest-hash source so a non-empty fraction always yields a validation set."""
    if val_fraction <= 0:
        return set()
    limit = val_fraction * 2**128
    val: set[str] = set()
    for pool in (pools.get(name) for name in POOLS):
        if len(pool) < 2:
            continue
        keyed = sorted(pool, key=lambda r: key_to_int(seed, "split", r.id))
        val.add(keyed[0].id)
        val.update(r.id for r in keyed if key_to_int(seed, "split", r.id) < limit)
    return val


# ----------------------------------------------------------------------------------------------- planning
def largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer quotas summing to ``total``, proportional to ``weights`` (ties broken by name)."""
    wsum = sum(weights.values())
    if total <= 0 or wsum <= 0:
        return dict.fromkeys(weights, 0)
    exact = {k: total * w / wsum for k, w in weights.items()}
    quotas = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (-(exact[k] - quotas[k]), k))[: total - sum(quotas.values())]:
        quotas[k] += 1
    return quotas


@dataclass
class SplitStats:
    counts: Counter = field(default_factory=Counter)  # (task, variant) -> n
    answers: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    rejected: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    candidates: Counter = field(default_factory=Counter)
    built: Counter = field(default_factory=Counter)
    shortfall: dict[str, int] = field(default_factory=dict)
    position: int = 0  # candidates of the current round's planner consumed so far: where a resumed build continues
    round: int = 0  # validation only: rounds of replacement sources (see build_split)
    stage: int = 0  # training with a curriculum: the stage being built (0-based)
    stage_base: dict[str, int] = field(default_factory=dict)  # rows per task when the current stage began
    stage_rows: list[int] = field(default_factory=list)  # rows written at the end of each finished stage
    samples_by_source: Counter = field(default_factory=Counter)  # every visited source id -> samples made (0 too)
    fruitless: dict[str, Counter] = field(default_factory=dict)  # visited, no sample yet: id -> rejection reasons
    bad_frames: dict[str, list[str]] = field(default_factory=dict)  # undecodable frame path -> [message, source id]

    def to_json(self) -> dict[str, Any]:
        return {"counts": [[t, v, n] for (t, v), n in sorted(self.counts.items())],
                "answers": {t: dict(c) for t, c in self.answers.items()},
                "rejected": {t: dict(c) for t, c in self.rejected.items()},
                "candidates": dict(self.candidates), "built": dict(self.built),
                "shortfall": self.shortfall, "position": self.position, "round": self.round,
                "stage": self.stage, "stage_base": self.stage_base, "stage_rows": self.stage_rows,
                "samples_by_source": dict(self.samples_by_source),
                "fruitless": {sid: dict(c) for sid, c in self.fruitless.items()},
                "bad_frames": {path: list(v) for path, v in sorted(self.bad_frames.items())}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SplitStats:
        st = cls(Counter({(t, v): n for t, v, n in d["counts"]}), defaultdict(Counter), defaultdict(Counter),
                 Counter(d["candidates"]), Counter(d["built"]), d["shortfall"], d["position"], d["round"],
                 d["stage"], d["stage_base"], d["stage_rows"],
                 Counter(d["samples_by_source"]), {sid: Counter(c) for sid, c in d["fruitless"].items()},
                 {path: list(v) for path, v in d.get("bad_frames", {}).items()})  # absent in older checkpoints
        for t, c in d["answers"].items():
            st.answers[t].update(c)
        for t, c in d["rejected"].items():
            st.rejected[t].update(c)
        return st

    def record_source(self, source_id: str, made: bool, rejects: list[str]) -> None:
        """Per-input accounting: which sources gave samples, and why the others gave none."""
        if made:
            self.samples_by_source[source_id] += 1
            self.fruitless.pop(source_id, None)
        elif not self.samples_by_source.get(source_id):
            self.samples_by_source[source_id] = 0  # visited
            self.fruitless.setdefault(source_id, Counter()).update(rejects)

    def record_bad_frames(self, source_id: str, bad_frames: dict[str, str]) -> None:
        """Frames a candidate could not decode, each kept once (first message, first sequence, in plan order)."""
        for path, message in bad_frames.items():
            self.bad_frames.setdefault(path, [message, source_id])


def group_visits(window: list[Candidate]) -> list[list[Candidate]]:
    """Candidates of the same visit become one job (one decode), in order of first appearance."""
    jobs: dict[tuple, list[Candidate]] = {}
    for cand in window:
        jobs.setdefault(cand.visit or (cand.task, cand.index), []).append(cand)
    return list(jobs.values())


def run_split(targets: dict[str, int], limits: dict[str, int], planner: VisitPlanner,
              pools: dict[str, list[SourceRef]], config: BuildConfig, executor: Executor, writer: DatasetWriter,
              stats: SplitStats, bad_sources: dict[str, str], bar: tqdm, checkpoint: Callable[[bool], None]) -> None:
    """Consume one planner's candidates in schedule order until every task of ``limits`` has its target row count
    (or gives up after ``limits[task]`` candidates).

    The schedule is fixed for the whole round; a finished task's turns are skipped, not removed, so the rows and
    their order never depend on the window size or the worker count. ``checkpoint(force)`` is called with
    ``stats.position`` just past the last consumed candidate: forced when a shard is complete, otherwise after
    each window (the callback decides whether it is due).
    """
    built = stats.built
    pool_of = planner.task_pool
    for _ in range(stats.position):  # a resumed build replays the plan up to where it stopped
        next(planner)
    active = {t for t in limits if built[t] < targets[t] and not all(r.id in bad_sources for r in pools[pool_of[t]])}
    in_flight: Counter = Counter()  # candidates per task pulled but not consumed yet

    def pull() -> tuple[list[tuple[int, Candidate]], list[list[Candidate]], Iterator[list[tuple]]] | None:
        """The next window, submitted to the executor at once (a pool starts on it while the caller consumes the
        previous one). Only what can still be needed is pulled: no further ahead than what is missing if every
        candidate in flight succeeds. The window's size changes the work, never the output."""
        size = min(config.window, sum(max(0, targets[t] - built[t] - in_flight[t]) for t in active))
        window: list[tuple[int, Candidate]] = []
        while len(window) < size and active:
            cand = next(planner)
            if cand.task not in active:
                continue
            if cand.index >= limits[cand.task]:
                active.discard(cand.task)  # give up: this task rejects almost everything on these sources
                continue
            if cand.source.id not in bad_sources:
                window.append((planner.pulled, cand))
        if not window:
            return None
        in_flight.update(c.task for _, c in window)
        jobs = group_visits([c for _, c in window])
        return window, jobs, executor.map(jobs)

    def consume(window: list[tuple[int, Candidate]], jobs: list[list[Candidate]], mapped: Iterator[list[tuple]]) -> None:
        results = {}
        for job, job_results in zip(jobs, mapped):
            results.update({(c.task, c.index): r for c, r in zip(job, job_results)})
        for position, cand in window:
            in_flight[cand.task] -= 1
            result = results[(cand.task, cand.index)]
            if built[cand.task] >= targets[cand.task]:
                continue  # computed ahead, not needed
            kind = result[0]
            if kind == "source_error":
                bad_sources.setdefault(cand.source.id, result[1])
                continue
            stats.candidates[cand.task] += 1
            if kind == "ok":
                record: Record = result[1]
                writer.write(record)
                built[cand.task] += 1
                stats.counts[(record.task, record.variant)] += 1
                stats.answers[record.task][record.answer] += 1
                stats.record_source(cand.source.id, True, result[2])
                stats.record_bad_frames(cand.source.id, result[3])
                for reason in result[2]:
                    stats.rejected[cand.task][reason] += 1
                bar.update(1)
                if writer.at_shard_boundary():
                    stats.position = position
                    checkpoint(True)
            else:
                stats.record_source(cand.source.id, False, result[1])
                stats.record_bad_frames(cand.source.id, result[2])
                for reason in result[1]:
                    stats.rejected[cand.task][reason] += 1
                stats.rejected[cand.task]["gave_up_after_attempts"] += 1
        stats.position = window[-1][0]
        checkpoint(False)

    # Two windows overlap: the next one is pulled (from what is known before the current one is consumed) and
    # running while the current one's records are written. Pulling skips only tasks already complete and sources
    # already known bad, and consumption follows plan order, so the rows are those of one window at a time.
    current = pull() if active else None
    while current is not None:
        ahead = pull() if active else None
        consume(*current)
        # planning state changes only here, between windows
        for task in list(active):
            if built[task] >= targets[task] or all(r.id in bad_sources for r in pools[pool_of[task]]):
                active.discard(task)
        current = ahead if ahead is not None else (pull() if active else None)


# ----------------------------------------------------------------------------------------------- build
@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]

    @property
    def total(self) -> int:
        return sum(self.manifest["counts"]["total"].values())

    @property
    def val_missing(self) -> int:
        """Validation rows short of the ``val_fraction`` target (after replacement sources were tried)."""
        val = self.manifest["splits"]["val"]
        return val["target"] - val["rows"]


def active_tasks(config: BuildConfig, pools: Pools) -> dict[str, tuple[Task, float]]:
    """Tasks to build with their weights: those asked for (or all in the mix) whose inputs exist."""
    active: dict[str, tuple[Task, float]] = {}
    for name, weight in config.weights(sequences=bool(pools.sequences)).items():
        task = create_task(name, config.task_config(name))
        if not pools.get(task.input_pool()):
            if config.tasks:
                raise ConfigError(f"tasks: {name!r} needs {INPUT_FLAGS[task.input_pool()]} sources and none were found")
            continue
        if weight > 0:
            plan = config.curriculum_plan()
            for level in plan.levels if plan else ():  # every stage's level must exist for every task
                create_task(name, {**config.task_config(name), "level": level})
            active[name] = (task, weight)
    if not active:
        raise ConfigError("no task can be built: no usable sources for any task in `tasks`/`mix`")
    return active


INPUT_FLAGS = {"rgb": "--rgb", "rgbd": "--rgbd (RGB-D)", "video": "--sequences (video or frames)",
               "posed": "--sequences (posed RGB-D: scannet, tum, posed)"}


def make_planner(config: BuildConfig, split: str, tasks: dict[str, tuple[Task, float]], quotas: dict[str, int],
                 pools: dict[str, list[SourceRef]], stage: int = 0, levels: list[int] | None = None) -> VisitPlanner:
    """Visits take several tasks only when sources must be reused anyway (more samples than sources): then one
    decode feeds up to that many samples; a large pool still gives every sample its own image.

    ``levels``: the difficulty levels the candidates take in turn. Answer slots are dealt in blocks of the least
    common multiple of those levels' slot counts, so every level's answers stay balanced."""
    live = {t: q for t, q in quotas.items() if q > 0}
    task_pool = {t: tasks[t][0].input_pool() for t in live}
    visit_size = {}
    for pool in POOLS:
        members = [t for t in live if task_pool[t] == pool]
        if members and pools[pool]:
            reuse = sum(live[t] for t in members) // len(pools[pool])
            auto = max(1, min(len(members), reuse))
            visit_size[pool] = min(auto, config.visit_size) if config.visit_size > 0 else auto
    slots = {t: tasks[t][0].num_slots if not levels else
             math.lcm(*(create_task(t, {**config.task_config(t), "level": lv}).num_slots for lv in levels)) for t in live}
    return VisitPlanner(config.seed, split, {t: float(q) for t, q in live.items()}, task_pool, pools, slots,
                        visit_size, stage, levels)


def stage_quotas(quotas: dict[str, int], plan: Curriculum) -> list[dict[str, int]]:
    """Each curriculum stage's rows per task: every task's rows cut by the stages' shares (so the stages add up to
    the split's quotas exactly)."""
    shares = {f"{i:04d}": w for i, w in enumerate(plan.shares)}
    per_task = {t: largest_remainder(q, shares) for t, q in quotas.items()}
    return [{t: per_task[t][key] for t in quotas} for key in sorted(shares)]


def validation_order(seed: int, pool: list[SourceRef]) -> list[SourceRef]:
    """A pool in the order sources go to validation: the initial ones first, then their replacements."""
    return sorted(pool, key=lambda r: key_to_int(seed, "split", r.id))


def pools_with(pools: Pools, ids: set[str], inside: bool) -> dict[str, list[SourceRef]]:
    return {name: [r for r in pools.get(name) if (r.id in ids) == inside] for name in POOLS}


def quotas_for(config: BuildConfig, tasks: dict[str, tuple[Task, float]], total: int,
               pools: dict[str, list[SourceRef]]) -> dict[str, int]:
    weights = {name: weight if pools[task.input_pool()] else 0.0
               for name, (task, weight) in tasks.items()}
    return largest_remainder(total, weights)


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        present = [e for e in OUTPUT_ENTRIES if (out / e).exists()]
        if not overwrite:
            if (out / STATE_FILE).exists():
                raise ConfigError(f"--out {out}: holds an interrupted build; --resume continues it, --overwrite starts again")
            raise ConfigError(f"--out {out}: folder is not empty; pass --overwrite to replace {', '.join(present) or 'it'}")
        for e in present:
            p = out / e
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def start_output(out: Path, config: BuildConfig, overwrite: bool, resume: bool,
                 notify: Callable[[str], None]) -> dict[str, Any]:
    """The checkpoint to continue from, or a fresh output folder with its first checkpoint already on disk (so a
    build killed at any later moment can be resumed)."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"--out {out}: {folder} is a file, not a folder")
            break
    if resume:
        state = load_state(out, config) if out.is_dir() else None
        if state is not None:
            return state
        if out.is_dir() and any(e.name != STATE_FILE + ".tmp" for e in out.iterdir()):
            raise ConfigError(f"--resume: {out} has no checkpoint (stopped before its first one, or not a build "
                              f"folder); pass --overwrite to start again")
        notify(f"nothing to resume in {out}: starting a new build")
    prepare_out(out, overwrite)
    state = new_state(config)
    save_state(out, state)
    return state


def failed_output(exc: OSError, out: Path) -> str:
    """One line for a failed write, after removing the shards past the last checkpoint (they only take space)."""
    where = exc.filename or out
    why = exc.strerror or str(exc) or type(exc).__name__
    try:
        state = json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        try:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        except OSError:
            pass
        return f"{where}: {why}; nothing was kept"
    for split in (s for s in SPLITS if s not in state.get("done", [])):
        writer = (state.get("writer") or {}) if state.get("current") == split else {}
        closed = writer.get("base", {}).get("shards", {})
        video_closed = writer.get("base", {}).get("video_shards", {})
        try:
            for fmt, folder, keep in [*((f, f, closed) for f in ("easyr1", "verl")),
                                      *((f, VIDEO_LAYOUTS[f], video_closed) for f in ("easyr1", "verl"))]:
                keep = set(keep.get(fmt, []))
                for path in (out / folder).glob(f"{split}-*.parquet*"):
                    if path.name not in keep:
                        path.unlink()
            log = out / ROWS_LOG.format(split=split)
            if log.exists():
                os.truncate(log, writer.get("log_bytes", 0))
        except OSError:
            pass  # best effort: --resume removes the same files
    return f"{where}: {why}; the build stopped at its last checkpoint: fix that, then run the same command with --resume"


class Builder:
    """One build: splits in order, validation's replacement rounds, checkpoints."""

    def __init__(self, config: BuildConfig, pools: Pools, tasks: dict[str, tuple[Task, float]], out: Path,
                 state: dict[str, Any], executor: Executor, bar: tqdm, val_ids: set[str]):
        self.config, self.pools, self.tasks, self.out, self.state = config, pools, tasks, out, state
        self.executor, self.bar, self.val_ids = executor, bar, val_ids
        self.task_pool = {name: task.input_pool() for name, (task, _) in tasks.items()}
        self.bad_sources: dict[str, str] = state["bad_sources"]
        self.split_stats = {s: SplitStats.from_json(d) for s, d in state["splits"].items()}
        self.files = [out / f for f in state["files"]]
        self.started, self.elapsed_before = time.perf_counter(), state["elapsed"]
        self.last_save = time.monotonic()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def save(self) -> None:
        self.state["elapsed"] = self.elapsed()
        save_state(self.out, self.state)
        self.last_save = time.monotonic()

    def round_pools(self, split: str, stats: SplitStats, first: dict[str, list[SourceRef]]):
        """Sources and task weights of the split's current round: round 0 is the split's own pools, later
        (validation) rounds take the replacement sources they were given."""
        if stats.round == 0:
            return first, None
        moved = self.state["val_rounds"][stats.round - 1]
        return pools_with(self.pools, set(moved["ids"]), True), moved["weights"]

    def build_split(self, split: str, quotas: dict[str, int], first: dict[str, list[SourceRef]]) -> None:
        state, config = self.state, self.config
        stats = self.split_stats.setdefault(split, SplitStats())
        resumed = state.get("writer") if state.get("current") == split else None
        writer = DatasetWriter(self.out, split, config.output, resumed, task_rows=quotas)
        state["current"] = split

        def checkpoint(force: bool) -> None:
            if not force and time.monotonic() - self.last_save < CHECKPOINT_EVERY_S:
                return
            state["splits"][split] = stats.to_json()
            state["writer"] = writer.state()
            self.save()
            writer.saved(state["writer"])

        plan = config.curriculum_plan()
        staged = split == "train" and plan is not None
        stages = stage_quotas(quotas, plan) if staged else []
        while True:
            if staged:  # training in curriculum stages: each its own level, plan and share of every task's rows
                pools, weights, stage, levels = first, stages[stats.stage], stats.stage + 1, [plan.levels[stats.stage]]
                if stats.position == 0 and not stats.stage_base:
                    stats.stage_base = dict(stats.built)
                targets = {t: stats.stage_base.get(t, 0) + q for t, q in weights.items()}
            else:  # validation takes every curriculum level in turn, so its curves can be read per level
                pools, weights = self.round_pools(split, stats, first)
                stage, levels, targets = 0, list(plan.levels) if plan else None, quotas
            weights = {t: q for t, q in (weights or quotas).items() if q > 0}
            if weights:
                planner = make_planner(config, split, self.tasks, weights, pools, stage, levels)
                limits = {t: int(w * config.max_candidates_factor) + len(pools[self.task_pool[t]]) for t, w in weights.items()}
                run_split(targets, limits, planner, pools, config, self.executor, writer, stats, self.bad_sources,
                          self.bar, checkpoint)
            if staged:
                stats.stage_rows.append(writer.count)
                if len(stats.stage_rows) == len(stages):
                    break
                stats.stage, stats.position, stats.stage_base = stats.stage + 1, 0, {}
                checkpoint(True)
                continue
            moved = self.replacements(stats, quotas, pools) if split == "val" else None
            if moved is None:
                break
            state.setdefault("val_rounds", []).append(moved)
            stats.round, stats.position = stats.round + 1, 0
            checkpoint(True)
        stats.shortfall = {t: quotas[t] - stats.built[t] for t in quotas if stats.built[t] < quotas[t]}
        self.files += writer.close(dict(stats.built))
        state["splits"][split] = stats.to_json()
        state["done"].append(split)
        state["files"] = [str(f.relative_to(self.out)) for f in self.files]
        state.pop("writer", None)
        state.pop("current", None)
        self.save()
        writer.discard_log()

    def replacements(self, stats: SplitStats, quotas: dict[str, int], pools: dict[str, list[SourceRef]]):
        """Validation fell short: each of this round's sources that failed (unreadable, or no sample) is replaced
        by the next training source in validation order, in the pools of the short tasks, while validation holds
        at most half of a pool. Deterministic: it depends on the results, never on workers or timing."""
        short = {t: quotas[t] - stats.built[t] for t in quotas if stats.built[t] < quotas[t]}
        if not short or stats.round >= MAX_VAL_ROUNDS:
            return None
        moved: list[str] = []
        extended = set()
        for name in POOLS:
            if name not in {self.task_pool[t] for t in short}:
                continue
            full = self.pools.get(name)
            failed = sum(1 for r in pools[name] if r.id in self.bad_sources or r.id in stats.fruitless)
            room = len(full) // 2 - sum(1 for r in full if r.id in self.val_ids)
            fresh = [r.id for r in validation_order(self.config.seed, full) if r.id not in self.val_ids]
            take = fresh[:max(0, min(failed, room))]
            self.val_ids.update(take)
            moved += take
            extended.update([name] if take else [])
        if not moved:
            return None
        return {"ids": sorted(moved), "weights": {t: n for t, n in short.items() if self.task_pool[t] in extended}}


def build(config: BuildConfig, overwrite: bool = False, progress: bool | None = None, resume: bool = False,
          notify: Callable[[str], None] | None = None) -> BuildResult:
    """Build the dataset described by ``config`` into ``config.out``; returns the manifest.

    With ``resume``, an interrupted build in ``config.out`` continues from its last checkpoint and ends with
    exactly the files an uninterrupted build writes. Failed writes raise :class:`OutputError` with one line that
    says what was kept.
    """
    if not config.out:
        raise ConfigError("out: an output folder is required (--out DIR)")
    # absolute source paths: the manifest's config then finds the sources from any folder (verify, preview)
    config = dataclasses.replace(config, rgb=[absolute_rgb_spec(s) for s in config.rgb],
                                 rgbd=[absolute_rgbd_spec(s) for s in config.rgbd],
                                 sequences=[absolute_sequence_spec(s) for s in config.sequences])
    out = Path(config.out)
    pools = collect_sources(config)
    if not pools.rgb and not pools.rgbd and not pools.sequences:
        given = ", ".join([*(f"--rgb {r}" for r in config.rgb), *(f"--rgbd {r}" for r in config.rgbd),
                           *(f"--sequences {r}" for r in config.sequences)])
        first = f"; first of {len(pools.skipped)} skipped: {pools.skipped[0][0]}: {pools.skipped[0][1]}" if pools.skipped else ""
        what = "sources (images, videos or sequences)" if config.sequences else "source images"
        raise NothingUsable(f"no usable {what} found in {given}{first}")
    tasks = active_tasks(config, pools)
    try:
        state = start_output(out, config, overwrite, resume, notify or (lambda _: None))
        return _build(config, pools, tasks, out, state, progress)
    except OSError as exc:
        raise OutputError(failed_output(exc, out)) from None


def _build(config: BuildConfig, pools: Pools, tasks: dict[str, tuple[Task, float]], out: Path, state: dict[str, Any],
           progress: bool | None) -> BuildResult:
    n_val = round(config.num_samples * config.val_fraction)
    first_val = split_sources(config.seed, pools, config.val_fraction) if n_val else set()
    val_ids = first_val | {i for moved in state.get("val_rounds", []) for i in moved["ids"]}
    targets = {"train": config.num_samples - n_val, "val": n_val}
    worker_config = dataclasses.asdict(config)
    worker_config["_task_configs"] = {name: config.task_config(name) for name in tasks}
    if config.backend == "ray":
        from .ray_backend import RayExecutor

        executor = RayExecutor(worker_config, config.workers, config.ray_address or None)
    else:
        executor = Executor(worker_config, config.workers)
    show = sys.stderr.isatty() if progress is None else progress
    done_before = sum(sum(SplitStats.from_json(d).built.values()) for d in state["splits"].values())
    aborted = True
    try:
        with tqdm(total=config.num_samples, initial=done_before, desc="ssrl build", unit="sample", disable=not show,
                  dynamic_ncols=True) as bar:
            builder = Builder(config, pools, tasks, out, state, executor, bar, val_ids)
            for split in SPLITS:
                if split in state["done"]:
                    continue
                # validation's quotas come from its first sources; training gets what validation left
                first = pools_with(pools, first_val if split == "val" else val_ids, split == "val")
                builder.build_split(split, quotas_for(config, tasks, targets[split], first), first)
        aborted = False
    finally:
        executor.close(abort=aborted)

    manifest = make_manifest(config, pools, val_ids, first_val, targets, builder.split_stats, builder.bad_sources,
                             builder.files, out, builder.elapsed())
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for split in SPLITS:  # a log a kill left behind after its split was done (it holds nothing the files lack)
        (out / ROWS_LOG.format(split=split)).unlink(missing_ok=True)
    (out / STATE_FILE).unlink(missing_ok=True)
    return BuildResult(out, manifest)


def absolute_sequence_spec(spec: str) -> str:
    """``KIND:PATH[,key=value...]`` with PATH made absolute (options kept as given), as for ``--rgbd`` specs."""
    from ssrl_plugin.sequence_io import parse_sequence_spec

    path = parse_sequence_spec(spec)["path"]
    return with_spec_path(spec, path, os.path.abspath(os.path.expanduser(path)))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
