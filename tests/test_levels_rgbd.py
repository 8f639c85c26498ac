"""Difficulty levels of the RGB-D tasks (depth ordering, relative position): each level is harder than the one before
in a measured, geometric sense, on two seeds. Depth: the smallest gap in normalised depth between depth-consecutive
regions (and its relative form, and the region size) falls. Position: the margin between the components that decide
the answer and those that do not, and the distance between the regions, fall; so does the angle to the nearest
boundary between the eight directions, first level to last. The measures are recomputed here from the raw metadata
(not through ``task.difficulty``); every leveled sample records its level and knobs, still verifies, and the levels
reject few candidates on the demo corpus."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from data_builders.pipeline import build
from data_builders.stats import Row, iter_rows
from ssrl_plugin.config import load_config
from ssrl_plugin.demo import demo_refs
from ssrl_plugin.errors import ConfigError
from ssrl_plugin.imaging import decode_image
from ssrl_plugin.registry import create_task, get_task_class
from ssrl_plugin.sources import LoadOptions, load_source
from ssrl_plugin.tasks.position import angle_margin_deg, decisive_margin
from tests.levels_support import check_declared_levels, check_verifies, same

WIDTH, HEIGHT, NUM_RGBD = 320, 240, 16
N = 60  # samples per (task, seed, level)
SEEDS = (0, 1)
VERIFY_PER_LEVEL = 6  # samples per level re-derived by task.verify
MAX_GIVE_UP = 0.15  # share of a level's candidates that may give up (every attempt rejected)
EPS = 1e-6

# measured difficulty that must fall strictly level after level, and by at least this factor first to last
FALLING = {
    "depth": {"min_gap": 0.5, "min_rel_gap": 0.5, "region_frac": 0.8},
    "position": {"margin": 0.5, "distance": 0.7},
}
# measured difficulty that must fall first to last by at least this much (noisier per level: the option set mix)
FIRST_TO_LAST = {"depth": {}, "position": {"angle_margin_deg": 4.0}}
MEASURED_KEYS = {"depth": {"min_gap", "min_rel_gap", "region_frac"}, "position": {"margin", "angle_margin_deg", "distance"}}
TASKS = tuple(FALLING)


def _build(out: Path, task: str, seed: int, level: int) -> tuple[list[Row], dict]:
    overrides = ["demo.num_rgb=0", f"demo.num_rgbd={NUM_RGBD}", f"demo.width={WIDTH}", f"demo.height={HEIGHT}",
                 f"task.{task}.level={level}"]
    config = load_config(None, overrides, out=str(out), tasks=[task], num_samples=N, val_fraction=0, seed=seed)
    build(config, progress=False)
    return list(iter_rows(out)), json.loads((out / "manifest.json").read_text())


@lru_cache(maxsize=None)
def _source(source_id: str):
    refs = {r.id: r for r in demo_refs(0, NUM_RGBD, WIDTH, HEIGHT)}
    return load_source(refs[source_id], LoadOptions())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(rows, manifest) of (task, seed, level), each build made once per module."""
    cache: dict[tuple[str, int, int], tuple[list[Row], dict]] = {}

    def rows(task: str, seed: int, level: int) -> tuple[list[Row], dict]:
        key = (task, seed, level)
        if key not in cache:
            cache[key] = _build(tmp_path_factory.mktemp(f"levels_{task}_{seed}_{level}"), *key)
        return cache[key]

    return rows


# ------------------------------------------------------------------------------- the measures, recomputed by hand
def depth_measure(meta: dict) -> dict[str, float]:
    """Smallest gap between depth-consecutive regions, in normalised depth and as a farness ratio; window side."""
    norm = sorted(float(r["median_norm"]) for r in meta["regions"])
    far = sorted(float(r["median_farness"]) for r in meta["regions"])
    return {"min_gap": min(np.diff(norm)), "min_rel_gap": min(b / a - 1.0 for a, b in zip(far, far[1:])),
            "region_frac": meta["window_size"] / min(meta["image_size"])}


def position_measure(meta: dict) -> dict[str, float]:
    """Margin (smallest counting component minus largest zero one), angle to the nearest of the eight direction
    boundaries (22.5 + k 45 degrees, signed by the answer's option set), planar distance; depth-range units."""
    scale = meta["thresholds"]["depth_range"]
    comps = np.array([meta["components"]["forward"], meta["components"]["right"]]) / scale
    counts = np.abs(comps) >= meta["thresholds"]["count_at"] / scale
    mags = np.abs(comps)
    margin = mags[counts].min() - (mags[~counts].max() if (~counts).any() else 0.0)
    off_axis = math.degrees(math.atan(mags.min() / mags.max()))
    diagonal = bool(counts.all())
    assert diagonal == (meta["option_set"] == "diagonal")
    return {"margin": float(margin), "angle_margin_deg": off_axis - 22.5 if diagonal else 22.5 - off_axis,
            "distance": float(np.hypot(*comps))}


MEASURE = {"depth": depth_measure, "position": position_measure}


def test_position_measures_on_hand_made_components():
    assert decisive_margin(0.6, 0.02, 0.15) == pytest.approx(0.58)  # straight: major - minor
    assert decisive_margin(-0.2, 0.5, 0.15) == pytest.approx(0.2)  # diagonal: the smaller axis
    assert angle_margin_deg(1.0, 0.0, diagonal=False) == pytest.approx(22.5)
    assert angle_margin_deg(1.0, 1.0, diagonal=True) == pytest.approx(22.5)
    assert angle_margin_deg(1.0, math.tan(math.radians(10)), diagonal=True) == pytest.approx(-12.5)
    assert angle_margin_deg(-math.tan(math.radians(20)), -1.0, diagonal=False) == pytest.approx(2.5)


# ------------------------------------------------------------------------------------------------ the levels
@pytest.mark.parametrize("task", TASKS)
def test_levels_are_declared_and_build_valid_configs(task):
    check_declared_levels(task)


def test_upper_bound_knobs_default_to_none_and_validate():
    assert create_task("depth").config.max_gap is None
    assert create_task("position").config.max_margin is None
    with pytest.raises(ConfigError, match="task.depth.max_gap"):
        create_task("depth", {"min_gap": 0.1, "max_gap": 0.1})
    with pytest.raises(ConfigError, match="task.position.max_margin"):
        create_task("position", {"min_offset": 0.15, "max_zero_offset": 0.05, "max_margin": 0.08})  # below the floor 0.1


def _check_recorded(task: str, level: int, rows: list[Row]) -> list[dict[str, float]]:
    """Every row records its level, knobs and measures; the measures agree with the hand recomputation and lie in
    the band the level's knobs promise. Returns the recomputed measures."""
    cls = get_task_class(task)
    want = cls.levels[level]
    cfg = create_task(task, {"level": level}).config
    out = []
    for r in rows:
        d = r.metadata.get("difficulty")
        assert d is not None, f"{r.id}: no metadata['difficulty']"
        assert d["level"] == level, f"{r.id}: recorded level {d['level']}, built at {level}"
        assert same(d["knobs"], dict(want)), f"{r.id}: recorded knobs {d['knobs']}, level {level} sets {dict(want)}"
        assert set(d["measured"]) == MEASURED_KEYS[task], f"{r.id}: measured keys {sorted(d['measured'])}"
        mine = MEASURE[task](r.metadata)
        for k, v in mine.items():
            assert d["measured"][k] == pytest.approx(v, abs=1e-4), f"{r.id}: recorded {k} {d['measured'][k]}, recomputed {v}"
        if task == "depth":
            assert cfg.min_gap - EPS <= mine["min_gap"], f"{r.id}: gap {mine['min_gap']} under min_gap {cfg.min_gap}"
            assert cfg.max_gap is None or mine["min_gap"] <= cfg.max_gap + EPS, f"{r.id}: gap {mine['min_gap']} over max_gap {cfg.max_gap}"
            assert mine["min_rel_gap"] >= cfg.min_rel_gap - EPS
        else:
            floor = cfg.min_offset - cfg.max_zero_offset
            assert floor - EPS <= mine["margin"], f"{r.id}: margin {mine['margin']} under {floor}"
            assert cfg.max_margin is None or mine["margin"] <= cfg.max_margin + EPS, f"{r.id}: margin {mine['margin']} over {cfg.max_margin}"
        out.append(mine)
    return out


def _check_verifies(task: str, level: int, rows: list[Row]) -> None:
    check_verifies(task, level, rows[:VERIFY_PER_LEVEL], _source)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("task", TASKS)
def test_levels_get_harder_as_measured(built, task, seed):
    levels = sorted(get_task_class(task).levels)
    means = []
    for level in levels:
        rows, manifest = built(task, seed, level)
        assert len(rows) == N, f"{task} seed {seed} level {level}: {len(rows)} rows, asked {N}"
        candidates = manifest["candidates"]["train"][task]
        gave_up = manifest["rejected"].get(task, {}).get("gave_up_after_attempts", 0)
        assert gave_up <= MAX_GIVE_UP * candidates, f"{task} seed {seed} level {level}: {gave_up} of {candidates} candidates gave up"
        measured = _check_recorded(task, level, rows)
        _check_verifies(task, level, rows)
        means.append({k: float(np.mean([m[k] for m in measured])) for k in MEASURED_KEYS[task]})

    for key, factor in FALLING[task].items():
        values = [m[key] for m in means]
        rounded = np.round(values, 4).tolist()
        assert all(b < a for a, b in zip(values, values[1:])), f"{task} seed {seed}: mean {key} per level {rounded} does not fall"
        assert values[-1] <= factor * values[0], f"{task} seed {seed}: mean {key} per level {rounded}: no clear drop"
    for key, drop in FIRST_TO_LAST[task].items():
        values = [m[key] for m in means]
        assert values[-1] <= values[0] - drop, f"{task} seed {seed}: mean {key} per level {np.round(values, 3).tolist()}: no clear drop"
        assert values[1] < values[0], f"{task} seed {seed}: mean {key} per level {np.round(values, 3).tolist()} rises"


def test_verify_checks_the_recorded_max_gap(built):
    rows, _ = built("depth", SEEDS[0], max(get_task_class("depth").levels))
    r = rows[0]
    source = _source(r.metadata["source"]["id"])
    images = [decode_image(b) for b in r.images]
    task = create_task("depth", {"level": max(get_task_class("depth").levels)})
    assert task.verify(images, r.answer, r.metadata, source) == []
    meta = json.loads(json.dumps(r.metadata))
    meta["thresholds"]["max_gap"] = depth_measure(meta)["min_gap"] / 2
    assert any("max_gap" in p for p in task.verify(images, r.answer, meta, source))
