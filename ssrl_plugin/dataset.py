"""Deterministic candidate streams and reproducible sample generation.

Every sample is a pure function of (global seed, split, task, source id, round, attempt): the worker that
computes it, the number of workers and the wall clock never enter. A :class:`TaskStream` enumerates the
candidates of one task over one pool of sources: round ``r`` visits every source once in a seeded order, and
the answer slots are dealt in shuffled blocks so every slot (letter, flipped patch, label order...) is equally
frequent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .core import Sample, Source
from .errors import BadFrame, Reject
from .registry import Task
from .seeding import key_to_int, rng_for
from .sources import LoadOptions, SourceRef, load_source


@dataclass(frozen=True)
class Candidate:
    """One planned sample: which task, which source, which round and which answer slot."""

    split: str
    task: str
    index: int  # position in this (split, task) stream
    source: SourceRef
    round: int
    slot: int
    visit: tuple[str, int] | None = None  # (pool, visit number): candidates of one visit share one decode
    stage: int = 0  # curriculum stage (0 without one): part of the sample's seed and id from stage 1 on
    level: int | None = None  # difficulty level of this candidate's task (None: the task's configured level)


@dataclass
class Generated:
    """A sample with the provenance that makes it reproducible, or the reasons it was rejected."""

    candidate: Candidate
    sample: Sample | None
    attempt: int = -1
    rejects: list[str] = field(default_factory=list)
    bad_frames: dict[str, str] = field(default_factory=dict)  # undecodable frames met on the way: path -> message


class TaskStream:
    """Candidates ``0, 1, 2, ...`` of one task over one pool of sources (random access, no state)."""

    def __init__(self, seed: int, split: str, task: str, num_slots: int, pool: Sequence[SourceRef]):
        if not pool:
            raise ValueError(f"task {task!r} has no sources in split {split!r}")
        self.seed, self.split, self.task, self.num_slots, self.pool = seed, split, task, num_slots, pool

    @lru_cache(maxsize=8)
    def _order(self, round_: int) -> np.ndarray:
        return rng_for(self.seed, "order", self.split, self.task, round_).permutation(len(self.pool))

    @lru_cache(maxsize=8)
    def _slots(self, block: int) -> np.ndarray:
        return slot_order(self.seed, self.split, self.task, self.num_slots, block)

    def __getitem__(self, index: int) -> Candidate:
        round_, pos = divmod(index, len(self.pool))
        block, offset = divmod(index, self.num_slots)
        source = self.pool[int(self._order(round_)[pos])]
        return Candidate(self.split, self.task, index, source, round_, int(self._slots(block)[offset]))


def slot_order(seed: int, split: str, task: str, num_slots: int, block: int) -> np.ndarray:
    return rng_for(seed, "slots", split, task, block).permutation(num_slots)


class VisitPlanner:
    """Turns a split's task schedule into candidates grouped in source *visits*, so one decode feeds several tasks.

    Each pool (``rgb``, ``rgbd``) is walked in rounds, every source once per round in a seeded order; a visit is
    one source in one round and takes up to ``visit_size`` candidates of distinct tasks, in schedule order. The
    sample key (task, source, round) is therefore unique, and the grouping is a pure function of the schedule.
    A finished task's turns still go through the planner (the caller drops them), so the grouping never depends on
    when a task filled up.
    """

    def __init__(self, seed: int, split: str, weights: Mapping[str, float], task_pool: Mapping[str, str],
                 pools: Mapping[str, Sequence[SourceRef]], num_slots: Mapping[str, int], visit_size: Mapping[str, int],
                 stage: int = 0, levels: Sequence[int] | None = None):
        """``stage`` > 0 (a curriculum stage) draws its own orders and slots and shuffles the task schedule in
        blocks; ``levels``: the difficulty levels candidates take in turn (per task), None for the configured one."""
        self.seed, self.split, self.stage, self.levels = seed, split, stage, list(levels) if levels else None
        self.stream = split if stage == 0 else f"{split}/stage{stage}"
        self.task_pool, self.pools, self.num_slots, self.visit_size = task_pool, pools, num_slots, visit_size
        self.schedule = weighted_round_robin(weights) if stage == 0 else block_shuffled(
            weighted_round_robin(weights), rng_for(seed, "schedule", self.stream))
        self.visits: Counter = Counter()  # visits opened per pool
        self.open: dict[str, tuple[int, set[str]]] = {}  # pool -> (visit number, tasks in it)
        self.index: Counter = Counter()  # candidates planned per task
        self.pulled = 0  # candidates planned in all

    @lru_cache(maxsize=16)
    def _order(self, pool: str, round_: int) -> np.ndarray:
        return rng_for(self.seed, "order", self.stream, pool, round_).permutation(len(self.pools[pool]))

    @lru_cache(maxsize=64)
    def _slots(self, task: str, block: int) -> np.ndarray:
        return slot_order(self.seed, self.stream, task, self.num_slots[task], block)

    def __next__(self) -> Candidate:
        self.pulled += 1
        task = next(self.schedule)
        pool = self.task_pool[task]
        visit, members = self.open.get(pool, (-1, set()))
        if visit < 0 or task in members or len(members) >= self.visit_size[pool]:
            visit, members = self.visits[pool], set()
            self.visits[pool] += 1
            self.open[pool] = (visit, members)
        members.add(task)
        round_, pos = divmod(visit, len(self.pools[pool]))
        source = self.pools[pool][int(self._order(pool, round_)[pos])]
        c = self.index[task]
        self.index[task] += 1
        block, offset = divmod(c, self.num_slots[task])
        level = self.levels[c % len(self.levels)] if self.levels else None
        return Candidate(self.split, task, c, source, round_, int(self._slots(task, block)[offset]), (pool, visit),
                         self.stage, level)

    def __iter__(self) -> Iterator[Candidate]:
        return self


def weighted_round_robin(weights: Mapping[str, float]) -> Iterator[str]:
    """Smooth weighted round-robin: an infinite, deterministic interleaving with exact long-run proportions."""
    names = sorted(weights)
    current = dict.fromkeys(names, 0.0)
    total = float(sum(weights.values()))
    while True:
        for n in names:
            current[n] += weights[n]
        pick = max(names, key=lambda n: (current[n], -names.index(n)))
        current[pick] -= total
        yield pick


def block_shuffled(schedule: Iterator[str], rng: np.random.Generator, block: int = 64) -> Iterator[str]:
    """``schedule`` with each block of ``block`` turns in a seeded random order: the tasks' proportions hold in
    every block, their order is shuffled (a curriculum stage's rows come out mixed, not in a fixed cycle)."""
    while True:
        turns = [next(schedule) for _ in range(block)]
        yield from (turns[i] for i in rng.permutation(block))


def sample_seed(seed: int, candidate: Candidate, attempt: int) -> int:
    if candidate.stage:
        return key_to_int(seed, "sample", candidate.task, candidate.source.id, candidate.round, attempt, candidate.stage)
    return key_to_int(seed, "sample", candidate.task, candidate.source.id, candidate.round, attempt)


def generate(task: Task, candidate: Candidate, source: Source, seed: int, max_attempts: int) -> Generated:
    """Try up to ``max_attempts`` fresh random draws; the first that is not rejected is the sample. Frames that
    could not be decoded (:class:`~ssrl_plugin.errors.BadFrame` rejects) are collected by path for the report."""
    rejects: list[str] = []
    bad_frames: dict[str, str] = {}
    for attempt in range(max_attempts):
        rng = np.random.Generator(np.random.PCG64(sample_seed(seed, candidate, attempt)))
        try:
            sample = task.generate(source, rng, candidate.slot)
        except Reject as exc:
            rejects.append(exc.reason)
            if isinstance(exc, BadFrame):
                bad_frames.setdefault(exc.path, exc.detail)
            continue
        sample.metadata["source"] = {
            "id": source.id,
            "digest": source.digest,
            "size": [source.width, source.height],
            **{k: v for k, v in source.info.items() if isinstance(v, (str, int, float, bool, list))},
        }
        sample.metadata["difficulty"] = task.describe_difficulty(sample.metadata)
        sample.metadata["seed"] = {
            "seed": seed,
            "split": candidate.split,
            "round": candidate.round,
            "slot": candidate.slot,
            "attempt": attempt,
            "sample_seed": f"{sample_seed(seed, candidate, attempt):032x}",
            **({"stage": candidate.stage} if candidate.stage else {}),
        }
        return Generated(candidate, sample, attempt, rejects, bad_frames)
    return Generated(candidate, None, -1, rejects, bad_frames)


class ProceduralDataset:
    """``ds[i]`` → sample *i* of one task over a list of sources, reproducible from ``(seed, i)``.

    The Reasoning-Gym-style entry point for using a task from Python::

        ds = ProceduralDataset(create_task("flip"), refs, seed=0, size=100)
        sample = ds[7]          # same sample on every machine
    Rejected candidates raise :class:`~ssrl_plugin.errors.Reject` with the last reason.
    """

    def __init__(self, task: Task, sources: Sequence[SourceRef], seed: int = 0, size: int = 1000,
                 load_options: LoadOptions | None = None, max_attempts: int = 4, split: str = "train"):
        self.task, self.seed, self.size, self.max_attempts = task, seed, size, max_attempts
        self.load_options = load_options or LoadOptions()
        self.stream = TaskStream(seed, split, task.name, task.num_slots, list(sources))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.size:
            raise IndexError(index)
        candidate = self.stream[index]
        result = generate(self.task, candidate, load_source(candidate.source, self.load_options), self.seed, self.max_attempts)
        if result.sample is None:
            raise Reject(result.rejects[-1], f"candidate {index} on {candidate.source.id}")
        return result.sample
