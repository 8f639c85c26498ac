"""``ssrl build``: sources → candidates → samples → parquet, deterministic for any number of workers.

Candidates are planned in fixed-size windows. Within a window they run in parallel; results are consumed in
plan order, and everything that steers planning (which tasks are full, which sources are broken) changes only
between windows. So the output depends on the config and seed alone, never on worker count or timing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

import ssrl_plugin
from ssrl_plugin.config import BuildConfig
from ssrl_plugin.dataset import Candidate, VisitPlanner, generate
from ssrl_plugin.errors import ConfigError, SourceError, SSRLError
from ssrl_plugin.imaging import file_digest
from ssrl_plugin.registry import Task, create_task
from ssrl_plugin.seeding import key_to_int
from ssrl_plugin.sources import (LoadOptions, SourceRef, absolute_rgb_spec, absolute_rgbd_spec, discover_rgb, discover_rgbd,
                                 load_source)

from .records import Record, encode
from .writers import DatasetWriter

SPLITS = ("train", "val")
OUTPUT_ENTRIES = ("easyr1", "verl", "sft", "images", "manifest.json", ".ssrl_build_state.json")


# ----------------------------------------------------------------------------------------------- sources
@dataclass
class Pools:
    rgb: list[SourceRef]
    rgbd: list[SourceRef]
    skipped: list[tuple[str, str]]
    demo: bool = False
    rgb_from_rgbd: bool = False


def collect_sources(config: BuildConfig) -> Pools:
    """Discover every configured source (or the demo corpus when none is given)."""
    skipped: list[tuple[str, str]] = []
    if not config.rgb and not config.rgbd:
        from ssrl_plugin.demo import demo_refs

        refs = demo_refs(config.demo.num_rgb, config.demo.num_rgbd, config.demo.width, config.demo.height)
        return Pools([r for r in refs if not r.has_depth], [r for r in refs if r.has_depth], skipped, demo=True)
    rgb, rgbd = [], []
    for spec in config.rgb:
        refs, bad = discover_rgb(spec)
        rgb += refs
        skipped += bad
    for spec in config.rgbd:
        refs, bad = discover_rgbd(spec)
        rgbd += refs
        skipped += bad
    for name, pool in (("--rgb", rgb), ("--rgbd", rgbd)):
        ids = Counter(r.id for r in pool)
        dup = [i for i, n in ids.items() if n > 1]
        if dup:
            raise ConfigError(f"{name}: source id {dup[0]!r} appears twice; give folders with distinct names")
    pools = Pools(sorted(rgb, key=lambda r: r.id), sorted(rgbd, key=lambda r: r.id), skipped)
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
    for pool in (pools.rgb, pools.rgbd):
        if len(pool) < 2:
            continue
        keyed = sorted(pool, key=lambda r: key_to_int(seed, "split", r.id))
        val.add(keyed[0].id)
        val.update(r.id for r in keyed if key_to_int(seed, "split", r.id) < limit)
    return val


# ----------------------------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _init_worker(config: dict[str, Any]) -> None:
    _WORKER["seed"] = config["seed"]
    _WORKER["max_attempts"] = config["max_attempts"]
    _WORKER["load"] = LoadOptions(**config["source"])
    _WORKER["output"] = config["output"]
    _WORKER["tasks"] = {name: create_task(name, config["task"].get(name)) for name in config["_active"]}
    _WORKER["cache"] = OrderedDict()


DEMO_CACHE = 128  # demo sources are re-rendered on demand; the whole demo corpus fits in a few hundred MB
FILE_CACHE = 2


def _load(ref: SourceRef):
    """Decode a source, keeping the last few: demo renders cost more than a decode and the corpus is small."""
    cache: OrderedDict = _WORKER["cache"]
    if ref.id in cache:
        cache.move_to_end(ref.id)
        return cache[ref.id]
    source = load_source(ref, _WORKER["load"])
    cache[ref.id] = source
    while len(cache) > (DEMO_CACHE if ref.scheme == "demo" else FILE_CACHE):
        cache.popitem(last=False)
    return source


def _run(job: list[Candidate]) -> list[tuple]:
    """One visit: decode its source once, then each candidate → ("ok", Record, rejects) | ("rejected", rejects)
    | ("source_error", reason)."""
    ref = job[0].source
    try:
        source = _load(ref)
    except SourceError as exc:
        return [("source_error", str(exc))] * len(job)
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not kill the build; the file is reported
        return [("source_error", f"{ref.rgb_path or ref.id}: {type(exc).__name__}: {exc}")] * len(job)
    out = _WORKER["output"]
    results: list[tuple] = []
    for candidate in job:
        task: Task = _WORKER["tasks"][candidate.task]
        result = generate(task, candidate, source, _WORKER["seed"], _WORKER["max_attempts"])
        if result.sample is None:
            results.append(("rejected", result.rejects))
            continue
        record = encode(result.sample, candidate, out["image_format"], out["jpeg_quality"], task.word_options)
        results.append(("ok", record, result.rejects))
    return results


class Executor:
    """Ordered map over a window of candidates: in-process for one worker, a process pool otherwise."""

    def __init__(self, config: dict[str, Any], workers: int):
        self.workers = workers
        self.pool = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(config,))
        else:
            _init_worker(config)

    def map(self, jobs: list[list[Candidate]]) -> Iterator[list[tuple]]:
        if self.pool is None:
            return map(_run, jobs)
        return self.pool.imap(_run, jobs, chunksize=max(1, len(jobs) // (self.workers * 8)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


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
    position: int = 0  # planner candidates consumed so far: where a resumed build continues

    def to_json(self) -> dict[str, Any]:
        return {"counts": [[t, v, n] for (t, v), n in sorted(self.counts.items())],
                "answers": {t: dict(c) for t, c in self.answers.items()},
                "rejected": {t: dict(c) for t, c in self.rejected.items()},
                "candidates": dict(self.candidates), "built": dict(self.built),
                "shortfall": self.shortfall, "position": self.position}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SplitStats:
        st = cls(Counter({(t, v): n for t, v, n in d["counts"]}), defaultdict(Counter), defaultdict(Counter),
                 Counter(d["candidates"]), Counter(d["built"]), d["shortfall"], d["position"])
        for t, c in d["answers"].items():
            st.answers[t].update(c)
        for t, c in d["rejected"].items():
            st.rejected[t].update(c)
        return st


def group_visits(window: list[Candidate]) -> list[list[Candidate]]:
    """Candidates of the same visit become one job (one decode), in order of first appearance."""
    jobs: dict[tuple, list[Candidate]] = {}
    for cand in window:
        jobs.setdefault(cand.visit or (cand.task, cand.index), []).append(cand)
    return list(jobs.values())


def run_split(quotas: dict[str, int], planner: VisitPlanner, pools: dict[str, list[SourceRef]], config: BuildConfig,
              executor: Executor, writer: DatasetWriter, stats: SplitStats, bad_sources: dict[str, str], bar: tqdm,
              checkpoint: Callable[[], None]) -> SplitStats:
    """Consume the split's candidates in schedule order until every task has its quota (or gives up).

    The schedule is fixed for the whole split; a finished task's turns are skipped, not removed, so the rows and
    their order never depend on the window size or the worker count. ``checkpoint`` is called whenever a shard
    is complete, with ``stats.position`` just past the candidate that completed it.
    """
    built = stats.built
    pool_of = planner.task_pool
    limit = {t: int(q * config.max_candidates_factor) + len(pools[pool_of[t]]) for t, q in quotas.items() if q > 0}
    for _ in range(stats.position):  # a resumed build replays the plan up to where it stopped
        next(planner)
    active = {t for t in limit if built[t] < quotas[t] and not all(r.id in bad_sources for r in pools[pool_of[t]])}
    in_flight: Counter = Counter()  # candidates per task pulled but not consumed yet

    def pull() -> tuple[list[tuple[int, Candidate]], list[list[Candidate]], Iterator[list[tuple]]] | None:
        """The next window, submitted to the executor at once (a pool starts on it while the caller consumes the
        previous one). Only what can still be needed is pulled: no further ahead than what is missing if every
        candidate in flight succeeds. The window's size changes the work, never the output."""
        size = min(config.window, sum(max(0, quotas[t] - built[t] - in_flight[t]) for t in active))
        window: list[tuple[int, Candidate]] = []
        while len(window) < size and active:
            cand = next(planner)
            if cand.task not in active:
                continue
            if cand.index >= limit[cand.task]:
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
            if built[cand.task] >= quotas[cand.task]:
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
                for reason in result[2]:
                    stats.rejected[cand.task][reason] += 1
                bar.update(1)
                if writer.at_shard_boundary():
                    stats.position = position
                    checkpoint()
            else:
                for reason in result[1]:
                    stats.rejected[cand.task][reason] += 1
                stats.rejected[cand.task]["gave_up_after_attempts"] += 1

    # Two windows overlap: the next one is pulled (from what is known before the current one is consumed) and
    # running while the current one's records are written. Pulling skips only tasks already complete and sources
    # already known bad, and consumption follows plan order, so the rows are those of one window at a time.
    current = pull() if active else None
    while current is not None:
        ahead = pull() if active else None
        consume(*current)
        # planning state changes only here, between windows
        for task in list(active):
            if built[task] >= quotas[task] or all(r.id in bad_sources for r in pools[pool_of[task]]):
                active.discard(task)
        current = ahead if ahead is not None else (pull() if active else None)
    stats.shortfall = {t: quotas[t] - built[t] for t in quotas if built[t] < quotas[t]}
    return stats


# ----------------------------------------------------------------------------------------------- build
@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]

    @property
    def total(self) -> int:
        return sum(self.manifest["counts"]["total"].values())


def active_tasks(config: BuildConfig, pools: Pools) -> dict[str, tuple[Task, float]]:
    """Tasks to build with their weights: those asked for (or all in the mix) whose inputs exist."""
    active: dict[str, tuple[Task, float]] = {}
    for name, weight in config.weights().items():
        task = create_task(name, config.task.get(name))
        has_input = bool(pools.rgbd) if task.needs_depth else bool(pools.rgb)
        if not has_input:
            if config.tasks:
                kind = "--rgbd (RGB-D)" if task.needs_depth else "--rgb"
                raise ConfigError(f"tasks: {name!r} needs {kind} sources and none were found")
            continue
        if weight > 0:
            active[name] = (task, weight)
    if not active:
        raise ConfigError("no task can be built: no usable sources for any task in `tasks`/`mix`")
    return active


def make_planner(config: BuildConfig, split: str, tasks: dict[str, tuple[Task, float]], quotas: dict[str, int],
                 pools: dict[str, list[SourceRef]]) -> VisitPlanner:
    """Visits take several tasks only when sources must be reused anyway (more samples than sources): then one
    decode feeds up to that many samples; a large pool still gives every sample its own image."""
    live = {t: q for t, q in quotas.items() if q > 0}
    task_pool = {t: "rgbd" if tasks[t][0].needs_depth else "rgb" for t in live}
    visit_size = {}
    for pool in ("rgb", "rgbd"):
        members = [t for t in live if task_pool[t] == pool]
        if members and pools[pool]:
            reuse = sum(live[t] for t in members) // len(pools[pool])
            auto = max(1, min(len(members), reuse))
            visit_size[pool] = min(auto, config.visit_size) if config.visit_size > 0 else auto
    return VisitPlanner(config.seed, split, {t: float(q) for t, q in live.items()}, task_pool, pools,
                        {t: tasks[t][0].num_slots for t in live}, visit_size)


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        present = [e for e in OUTPUT_ENTRIES if (out / e).exists()]
        if not overwrite:
            raise ConfigError(f"--out {out}: folder is not empty; pass --overwrite to replace {', '.join(present) or 'it'}")
        for e in present:
            p = out / e
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


STATE_FILE = ".ssrl_build_state.json"


def fingerprint(config: BuildConfig) -> str:
    """What must not change between an interrupted build and its resumption (workers and window may)."""
    d = config.to_dict()
    for key in ("workers", "window", "out", "backend", "ray_address"):
        d.pop(key)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def save_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(tmp, out / STATE_FILE)  # atomic: a kill leaves the old checkpoint or the new one


def load_state(out: Path, config: BuildConfig) -> dict[str, Any] | None:
    path = out / STATE_FILE
    if not path.exists():
        if (out / "manifest.json").exists():
            raise ConfigError(f"--resume: {out} holds a finished build (manifest.json); nothing to resume")
        return None
    state = json.loads(path.read_text())
    if state["fingerprint"] != fingerprint(config):
        raise ConfigError(f"--resume: the config differs from the interrupted build's in {out} (only workers and window may change)")
    return state


def build(config: BuildConfig, overwrite: bool = False, progress: bool | None = None, resume: bool = False) -> BuildResult:
    """Build the dataset described by ``config`` into ``config.out``; returns the manifest.

    With ``resume``, an interrupted build in ``config.out`` continues from its last complete shard and ends with
    exactly the files an uninterrupted build writes.
    """
    if not config.out:
        raise ConfigError("out: an output folder is required (--out DIR)")
    # absolute source paths: the manifest's config then finds the sources from any folder (verify, preview)
    config = dataclasses.replace(config, rgb=[absolute_rgb_spec(s) for s in config.rgb],
                                 rgbd=[absolute_rgbd_spec(s) for s in config.rgbd])
    out = Path(config.out)
    started = time.perf_counter()
    pools = collect_sources(config)
    if not pools.rgb and not pools.rgbd:
        reasons = "; ".join(f"{p}: {r}" for p, r in pools.skipped[:3])
        raise SSRLError("no usable source images found" + (f" ({reasons})" if reasons else ""))
    tasks = active_tasks(config, pools)
    state = load_state(out, config) if resume and out.exists() else None
    if state is None:
        prepare_out(out, overwrite)

    val_ids = split_sources(config.seed, pools, config.val_fraction)
    if round(config.num_samples * config.val_fraction) == 0:
        val_ids = set()  # no validation sample to make: keep every source for training
    split_pools = {
        s: {"rgb": [r for r in pools.rgb if (r.id in val_ids) == (s == "val")],
            "rgbd": [r for r in pools.rgbd if (r.id in val_ids) == (s == "val")]}
        for s in SPLITS
    }
    n_val = round(config.num_samples * config.val_fraction) if any(split_pools["val"].values()) else 0
    totals = {"train": config.num_samples - n_val, "val": n_val}

    state = state or {"fingerprint": fingerprint(config), "splits": {}, "done": [], "files": [], "bad_sources": {},
                      "elapsed": 0.0}
    bad_sources: dict[str, str] = state["bad_sources"]
    elapsed_before = state["elapsed"]
    split_stats = {s: SplitStats.from_json(d) for s, d in state["splits"].items()}
    files = [out / f for f in state["files"]]
    worker_config = dataclasses.asdict(config)
    worker_config["_active"] = list(tasks)
    if config.backend == "ray":
        from .ray_backend import RayExecutor

        executor = RayExecutor(worker_config, config.workers, config.ray_address or None)
    else:
        executor = Executor(worker_config, config.workers)
    show = sys.stderr.isatty() if progress is None else progress
    done_before = sum(sum(st.built.values()) for st in split_stats.values())
    try:
        with tqdm(total=config.num_samples, initial=done_before, desc="ssrl build", unit="sample", disable=not show,
                  dynamic_ncols=True) as bar:
            for split in SPLITS:
                if split in state["done"]:
                    continue
                weights = {}
                for name, (task, weight) in tasks.items():
                    weights[name] = weight if split_pools[split]["rgbd" if task.needs_depth else "rgb"] else 0.0
                quotas = largest_remainder(totals[split], weights)
                planner = make_planner(config, split, tasks, quotas, split_pools[split])
                writer = DatasetWriter(out, split, config.output, state.get("writer") if split in state["splits"] else None,
                                       task_rows=quotas)
                stats = split_stats.setdefault(split, SplitStats())

                def checkpoint(split=split, stats=stats, writer=writer) -> None:
                    state["splits"][split] = stats.to_json()
                    state["writer"] = writer.state()
                    state["elapsed"] = elapsed_before + time.perf_counter() - started
                    save_state(out, state)

                run_split(quotas, planner, split_pools[split], config, executor, writer, stats, bad_sources, bar,
                          checkpoint)
                files += writer.close(dict(stats.built))
                state["splits"][split] = stats.to_json()
                state["done"].append(split)
                state["files"] = [str(f.relative_to(out)) for f in files]
                state["elapsed"] = elapsed_before + time.perf_counter() - started
                state.pop("writer", None)
                save_state(out, state)
    finally:
        executor.close()

    elapsed = elapsed_before + time.perf_counter() - started
    manifest = make_manifest(config, pools, val_ids, split_stats, bad_sources, files, out, elapsed)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (out / STATE_FILE).unlink(missing_ok=True)
    return BuildResult(out, manifest)


def make_manifest(config: BuildConfig, pools: Pools, val_ids: set[str], split_stats: dict[str, SplitStats],
                  bad_sources: dict[str, str], files: list[Path], out: Path, elapsed: float) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    total: Counter = Counter()
    for split, st in split_stats.items():
        per: dict[str, dict[str, int]] = defaultdict(dict)
        for (task, variant), n in sorted(st.counts.items()):
            per[task][variant] = n
            total[task] += n
        counts[split] = dict(per)
    counts["total"] = dict(sorted(total.items()))
    answers: dict[str, Counter] = defaultdict(Counter)
    rejected: dict[str, Counter] = defaultdict(Counter)
    for st in split_stats.values():
        for task, c in st.answers.items():
            answers[task].update(c)
        for task, c in st.rejected.items():
            rejected[task].update(c)
    file_hashes = {str(p.relative_to(out)): file_digest(p) for p in sorted(files)}
    if not config.output.embed_images:
        for p in sorted((out / "images").rglob("*")):
            if p.is_file():
                file_hashes[str(p.relative_to(out))] = file_digest(p)
    content = hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(file_hashes.items())).encode()).hexdigest()
    n = sum(total.values())
    skipped = [{"path": p, "reason": r} for p, r in pools.skipped]
    skipped += [{"source": sid, "reason": reason} for sid, reason in sorted(bad_sources.items())]
    return {
        "ssrl_version": ssrl_plugin.__version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "sources": {
            "demo": pools.demo,
            "rgb": len(pools.rgb),
            "rgbd": len(pools.rgbd),
            "rgb_tasks_use_rgbd_images": pools.rgb_from_rgbd,
            "val_sources": len(val_ids),
        },
        "counts": counts,
        "answers": {t: dict(sorted(c.items())) for t, c in sorted(answers.items())},
        "rejected": {t: dict(sorted(c.items())) for t, c in sorted(rejected.items())},
        "candidates": {s: dict(sorted(st.candidates.items())) for s, st in split_stats.items()},
        "shortfall": {s: st.shortfall for s, st in split_stats.items() if st.shortfall},
        "skipped_inputs": skipped,
        "files": file_hashes,
        "content_hash": content,
        "wall_time_s": round(elapsed, 3),
        "samples_per_s": round(n / elapsed, 2) if elapsed > 0 else None,
    }


def summary_table(manifest: dict[str, Any]) -> str:
    """Plain-text table of samples per task and split, rejections and skipped files."""
    counts = manifest["counts"]
    tasks = list(counts["total"])
    lines = [f"{'task':<10}{'train':>8}{'val':>8}{'rejected':>10}"]
    for t in tasks:
        tr = sum(counts.get("train", {}).get(t, {}).values())
        va = sum(counts.get("val", {}).get(t, {}).values())
        rj = sum(v for k, v in manifest["rejected"].get(t, {}).items() if k != "gave_up_after_attempts")
        lines.append(f"{t:<10}{tr:>8}{va:>8}{rj:>10}")
    total = sum(counts["total"].values())
    lines.append(f"{'total':<10}{total:>16}")
    if manifest["skipped_inputs"]:
        lines.append(f"skipped inputs: {len(manifest['skipped_inputs'])} (see manifest.json)")
        lines += [f"  {s.get('path') or s.get('source')}: {s['reason']}" for s in manifest["skipped_inputs"][:5]]
    for split, short in manifest["shortfall"].items():
        lines.append(f"shortfall in {split}: " + ", ".join(f"{t} {n}" for t, n in short.items()))
    lines.append(f"content hash: {manifest['content_hash']}  ({manifest['wall_time_s']} s, {manifest['samples_per_s']} samples/s)")
    return "\n".join(lines)
