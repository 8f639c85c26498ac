"""Difficulty levels of the RGB patch tasks (shuffle, flip, crop): each level is harder than the one before in a
measured sense, on two seeds: the sighted solver (``data_builders.audit_sighted``) solves fewer samples, and the
task's own ``difficulty`` numbers move the hard way. Every leveled sample records its level and knobs, and still
verifies."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from data_builders import audit_sighted as S
from data_builders.pipeline import build
from data_builders.stats import Row, iter_rows
from ssrl_plugin.config import load_config
from ssrl_plugin.demo import demo_refs
from ssrl_plugin.errors import ConfigError
from ssrl_plugin.registry import create_task, get_task_class
from ssrl_plugin.sources import LoadOptions, load_source
from tests.levels_support import check_declared_levels, check_verifies, same

WIDTH, HEIGHT, NUM_RGB = 320, 240, 16
N = 60  # samples per (task, seed, level)
SEEDS = (0, 1)
VERIFY_PER_LEVEL = 8  # samples per level re-derived by task.verify
MIN_DROP = 0.08  # sighted accuracy: the last level at least this far under the first

# measured difficulty: +1 = goes up with the level, -1 = goes down (each key strictly, level after level)
MEASURED = {
    "shuffle": {"cells": +1, "masked": +1, "min_pair_ratio": -1},
    "flip": {"cells": +1, "flip_score": -1, "direction_score": -1},
    "crop": {"side_ratio": -1, "fov_gap": -1, "edge_shift_px": -1},
}
TASKS = tuple(MEASURED)


def _build(out: Path, task: str, seed: int, level: int) -> list[Row]:
    overrides = [f"demo.num_rgb={NUM_RGB}", "demo.num_rgbd=0", f"demo.width={WIDTH}", f"demo.height={HEIGHT}",
                 f"task.{task}.level={level}"]
    config = load_config(None, overrides, out=str(out), tasks=[task], num_samples=N, val_fraction=0, seed=seed)
    build(config, progress=False)
    return list(iter_rows(out))


@lru_cache(maxsize=None)
def _source(source_id: str):
    refs = {r.id: r for r in demo_refs(NUM_RGB, 0, WIDTH, HEIGHT)}
    return load_source(refs[source_id], LoadOptions())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """rows(task, seed, level), each build made once per module."""
    cache: dict[tuple[str, int, int], list[Row]] = {}

    def rows(task: str, seed: int, level: int) -> list[Row]:
        key = (task, seed, level)
        if key not in cache:
            cache[key] = _build(tmp_path_factory.mktemp(f"levels_{task}_{seed}_{level}"), *key)
        return cache[key]

    return rows


# ------------------------------------------------------------------------------------------------ the levels
@pytest.mark.parametrize("task", TASKS)
def test_levels_are_declared_and_build_valid_configs(task):
    check_declared_levels(task)


def test_flip_max_flip_diff_default_and_validation():
    assert create_task("flip").config.max_flip_diff is None  # no upper bound unless a level (or the user) sets one
    with pytest.raises(ConfigError, match="task.flip.max_flip_diff"):
        create_task("flip", {"min_flip_diff": 10.0, "max_flip_diff": 9.0})


# ------------------------------------------------------------------------------------------------ measured
def _measured_means(task: str, rows: list[Row]) -> dict[str, float]:
    return {k: float(np.mean([r.metadata["difficulty"]["measured"][k] for r in rows])) for k in MEASURED[task]}


def _check_recorded(task: str, level: int, rows: list[Row]) -> None:
    want = get_task_class(task).levels[level]
    for r in rows:
        d = r.metadata.get("difficulty")
        assert d is not None, f"{r.id}: no metadata['difficulty']"
        assert d["level"] == level, f"{r.id}: recorded level {d['level']}, built at {level}"
        assert same(d["knobs"], dict(want)), f"{r.id}: recorded knobs {d['knobs']}, level {level} sets {dict(want)}"
        assert set(d["measured"]) == set(MEASURED[task]), f"{r.id}: measured keys {sorted(d['measured'])}"
        assert all(isinstance(v, (int, float)) and np.isfinite(v) for v in d["measured"].values()), f"{r.id}: {d['measured']}"


def _check_verifies(task: str, level: int, rows: list[Row]) -> None:
    check_verifies(task, level, rows[:VERIFY_PER_LEVEL], _source)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("task", TASKS)
def test_levels_get_harder_as_measured(built, task, seed):
    levels = sorted(get_task_class(task).levels)
    means, accuracy = [], []
    for level in levels:
        rows = built(task, seed, level)
        assert len(rows) == N, f"{task} seed {seed} level {level}: {len(rows)} rows, asked {N}"
        _check_recorded(task, level, rows)
        _check_verifies(task, level, rows)
        means.append(_measured_means(task, rows))
        if task in S.SOLVERS:
            accuracy.append(float(np.mean([S.sighted_item(r)["correct"] for r in rows])))

    for key, sign in MEASURED[task].items():
        values = [m[key] for m in means]
        steps = [sign * (b - a) for a, b in zip(values, values[1:])]
        assert all(s > 0 for s in steps), (
            f"{task} seed {seed}: mean {key} per level {np.round(values, 3).tolist()} is not strictly "
            f"{'increasing' if sign > 0 else 'decreasing'}")

    if accuracy:
        rounded = np.round(accuracy, 3).tolist()
        assert all(b <= a for a, b in zip(accuracy, accuracy[1:])), f"{task} seed {seed}: sighted accuracy per level {rounded} rises"
        assert accuracy[-1] <= accuracy[0] - MIN_DROP, f"{task} seed {seed}: sighted accuracy per level {rounded}: no real drop"
