"""What runs where the samples are made (this process or a worker): decode a visit's source once, generate its
candidates, encode the records. The builder (``pipeline``) plans and writes; the Ray backend calls the same code.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ssrl_plugin.dataset import Candidate, generate
from ssrl_plugin.errors import SourceError
from ssrl_plugin.registry import Task, create_task
from ssrl_plugin.sources import LoadOptions, SourceRef, load_source

from .records import encode

_WORKER: dict[str, Any] = {}


def _init_worker(config: dict[str, Any]) -> None:
    _WORKER["seed"] = config["seed"]
    _WORKER["max_attempts"] = config["max_attempts"]
    _WORKER["load"] = LoadOptions(**config["source"])
    _WORKER["output"] = config["output"]
    _WORKER["task_configs"] = config["_task_configs"]
    _WORKER["tasks"] = {}
    _WORKER["cache"] = OrderedDict()


DEMO_CACHE = 128  # demo sources are re-rendered on demand; the whole demo corpus fits in a few hundred MB
FILE_CACHE = 2
SEQUENCE_CACHE = 4  # opened sequences (index + a few decoded frames each): visits of one sequence come in runs


def _load(ref: SourceRef):
    """Decode a source, keeping the last few: demo renders cost more than a decode and the corpus is small."""
    cache: OrderedDict = _WORKER["cache"]
    if ref.id in cache:
        cache.move_to_end(ref.id)
        return cache[ref.id]
    source = load_source(ref, _WORKER["load"])
    cache[ref.id] = source
    limit = SEQUENCE_CACHE if ref.is_sequence else DEMO_CACHE if ref.scheme == "demo" else FILE_CACHE
    while len(cache) > limit:
        cache.popitem(last=False)
    return source


def _task(candidate: Candidate) -> Task:
    """The candidate's task at its level (a curriculum stage's, else the configured one), made once per worker."""
    key = (candidate.task, candidate.level)
    tasks = _WORKER["tasks"]
    if key not in tasks:
        config = _WORKER["task_configs"][candidate.task]
        tasks[key] = create_task(candidate.task, config if candidate.level is None else {**config, "level": candidate.level})
    return tasks[key]


def _run(job: list[Candidate]) -> list[tuple]:
    """One visit: decode its source once, then each candidate → ("ok", Record, rejects, bad_frames) |
    ("rejected", rejects, bad_frames) | ("source_error", reason); ``bad_frames``: {path: message} of the frames
    that could not be decoded (the draws that met them were rejected, the sequence goes on)."""
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
        task = _task(candidate)
        if candidate.slot >= task.num_slots:  # slots dealt over several levels' slot counts (see make_planner)
            candidate = dataclasses.replace(candidate, slot=candidate.slot % task.num_slots)
        try:
            result = generate(task, candidate, source, _WORKER["seed"], _WORKER["max_attempts"])
            if result.sample is None:
                results.append(("rejected", result.rejects, result.bad_frames))
                continue
            record = encode(result.sample, candidate, out["image_format"], out["jpeg_quality"], task.word_options)
        except Exception as exc:  # noqa: BLE001 - a task bug on an odd input: the input is reported, the build goes on
            results.append(("source_error", f"{ref.rgb_path or ref.id}: {candidate.task} failed on this input "
                                            f"({type(exc).__name__}: {' '.join(str(exc).split())})"))
            continue
        results.append(("ok", record, result.rejects, result.bad_frames))
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

    def close(self, abort: bool = False) -> None:
        if self.pool is not None:
            self.pool.terminate() if abort else self.pool.close()
            self.pool.join()
