"""Deterministic candidate streams and reproducible sample generation.

Every sample is a pure function of (global seed, split, task, source id, round, attempt): the worker that
computes it, the number of workers and the wall clock never enter. A :class:`TaskStream` enumerates the
candidates of one task over one pool of sources: round ``r`` visits every source once in a seeded order, and
the answer slots are dealt in shuffled blocks so every slot (letter, flipped patch, label order...) is equally
frequent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .core import Sample, Source
from .errors import Reject
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


@dataclass
class Generated:
    """A sample with the provenance that makes it reproducible, or the reasons it was rejected."""

    candidate: Candidate
    sample: Sample | None
    attempt: int = -1
    rejects: list[str] = field(default_factory=list)


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
        return rng_for(self.seed, "slots", self.split, self.task, block).permutation(self.num_slots)

    def __getitem__(self, index: int) -> Candidate:
        round_, pos = divmod(index, len(self.pool))
        block, offset = divmod(index, self.num_slots)
        source = self.pool[int(self._order(round_)[pos])]
        return Candidate(self.split, self.task, index, source, round_, int(self._slots(block)[offset]))


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


def sample_seed(seed: int, candidate: Candidate, attempt: int) -> int:
    return key_to_int(seed, "sample", candidate.task, candidate.source.id, candidate.round, attempt)


def generate(task: Task, candidate: Candidate, source: Source, seed: int, max_attempts: int) -> Generated:
    """Try up to ``max_attempts`` fresh random draws; the first that is not rejected is the sample."""
    rejects: list[str] = []
    for attempt in range(max_attempts):
        rng = np.random.Generator(np.random.PCG64(sample_seed(seed, candidate, attempt)))
        try:
            sample = task.generate(source, rng, candidate.slot)
        except Reject as exc:
            rejects.append(exc.reason)
            continue
        sample.metadata["source"] = {
            "id": source.id,
            "sha256": source.sha256,
            "size": [source.width, source.height],
            **{k: v for k, v in source.info.items() if isinstance(v, (str, int, float, bool, list))},
        }
        sample.metadata["seed"] = {
            "seed": seed,
            "split": candidate.split,
            "round": candidate.round,
            "slot": candidate.slot,
            "attempt": attempt,
            "sample_seed": f"{sample_seed(seed, candidate, attempt):032x}",
        }
        return Generated(candidate, sample, attempt, rejects)
    return Generated(candidate, None, -1, rejects)


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
