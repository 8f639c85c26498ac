"""Difficulty levels in builds: --level, the static curriculum (stage order, boundaries, seeds), `ssrl tasks`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_builders.cli import main
from data_builders.pipeline import build
from data_builders.stats import compute_stats
from data_builders.verify import verify_dataset
from ssrl_plugin.config import Curriculum, load_config
from ssrl_plugin.errors import ConfigError
from ssrl_plugin.paper import BUILTIN_ORDER
from ssrl_plugin.registry import create_task

DEMO = ["demo.num_rgb=12", "demo.num_rgbd=12", "demo.width=320", "demo.height=240", "output.shard_size=25"]
SPEC = "levels=1,2,3 shares=1,1,2 batch=16"


def curriculum_build(out: Path, **flags):
    return build(load_config(None, DEMO, out=str(out), num_samples=100, val_fraction=0.15, curriculum=SPEC, **flags),
                 progress=False).manifest


def column(out: Path, split: str, name: str) -> list:
    return [v for p in sorted((out / "easyr1").glob(f"{split}-*.parquet")) for v in pq.read_table(p, columns=[name]).column(name).to_pylist()]


@pytest.fixture(scope="module")
def curriculum(tmp_path_factory):
    out = tmp_path_factory.mktemp("curriculum") / "out"
    return out, curriculum_build(out)


def test_every_task_declares_three_levels_and_ssrl_tasks_lists_them(capsys):
    assert main(["tasks", "--json"]) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    for name in BUILTIN_ORDER:
        levels = rows[name]["levels"]
        assert len(levels) >= 3 and sorted(map(int, levels)) == list(range(1, len(levels) + 1)), name
        assert set(rows[name]["knobs"]) == {k for knobs in levels.values() for k in knobs}
        for level in levels:  # every level makes a valid task whose config holds the level's knobs
            task = create_task(name, {"level": int(level)})
            assert all(getattr(task.config, k) == v or getattr(task.config, k) == type(getattr(task.config, k))(v)
                       for k, v in levels[level].items() if not isinstance(v, dict)), (name, level)


def test_training_rows_come_in_stage_order_with_the_manifest_boundaries(curriculum):
    out, manifest = curriculum
    stages = manifest["curriculum"]["stages"]
    levels = column(out, "train", "difficulty")
    assert [s["level"] for s in stages] == [1, 2, 3]
    assert stages[0]["rows"][0] == 0 and stages[-1]["rows"][1] == len(levels) == manifest["splits"]["train"]["rows"]
    for s in stages:
        lo, hi = s["rows"]
        assert set(levels[lo:hi]) == {s["level"]}, s
        assert s["steps"] == [lo // 16, -(-hi // 16)]
    assert [b["rows"][0] for b in stages[1:]] == [a["rows"][1] for a in stages[:-1]]
    sizes = [hi - lo for lo, hi in (s["rows"] for s in stages)]
    assert sizes[2] > sizes[0] and abs(sizes[0] - sizes[1]) <= len(manifest["counts"]["total"])  # shares 1:1:2
    meta = [json.loads(m) for m in column(out, "train", "metadata")]
    assert [m["difficulty"]["level"] for m in meta] == levels
    assert all(m["seed"]["stage"] == lv for m, lv in zip(meta, levels))  # stage k of the spec has level k here


def test_rows_are_mixed_within_a_stage_and_ids_are_unique(curriculum):
    out, manifest = curriculum
    tasks, ids = column(out, "train", "task"), column(out, "train", "id") + column(out, "val", "id")
    assert len(set(ids)) == len(ids)
    lo, hi = manifest["curriculum"]["stages"][2]["rows"]
    stage = tasks[lo:hi]
    runs = sum(1 for a, b in zip(stage, stage[1:]) if a != b)
    assert len(set(stage)) >= 4 and runs >= len(stage) // 4  # interleaved, not blocks of one task


def test_validation_holds_every_level_and_everything_verifies(curriculum):
    out, manifest = curriculum
    val = column(out, "val", "difficulty")
    assert set(val) == {1, 2, 3} and len(val) == manifest["splits"]["val"]["target"]
    report = verify_dataset(out)
    assert report.checked == manifest["splits"]["train"]["rows"] + len(val) and report.problems == []


def test_a_curriculum_is_deterministic_for_any_worker_count_and_resumes(curriculum, tmp_path, monkeypatch):
    out, manifest = curriculum
    assert curriculum_build(tmp_path / "w2", workers=2)["content_hash"] == manifest["content_hash"]
    import data_builders.pipeline as pipeline

    class Stop(Exception):
        pass

    real, saves = pipeline.save_state, []

    def stop_in_stage_two(out_dir, state):
        real(out_dir, state)
        train = state["splits"].get("train") or {}
        if train.get("stage") == 1 and train.get("position"):
            saves.append(1)
            raise Stop

    monkeypatch.setattr(pipeline, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(pipeline, "save_state", stop_in_stage_two)
    with pytest.raises(Stop):
        curriculum_build(tmp_path / "r", window=8)
    monkeypatch.setattr(pipeline, "save_state", real)
    assert saves
    resumed = build(load_config(None, DEMO, out=str(tmp_path / "r"), num_samples=100, val_fraction=0.15,
                                curriculum=SPEC, window=8), progress=False, resume=True).manifest
    assert resumed["content_hash"] == manifest["content_hash"]


def test_one_level_for_every_task(tmp_path):
    m = build(load_config(None, DEMO, out=str(tmp_path / "o"), num_samples=40, val_fraction=0.1, level=2), progress=False).manifest
    out = tmp_path / "o"
    assert set(column(out, "train", "difficulty") + column(out, "val", "difficulty")) == {2}
    assert "curriculum" not in m


def test_without_levels_the_difficulty_column_is_zero(tmp_path):
    build(load_config(None, DEMO, out=str(tmp_path / "o"), num_samples=20, val_fraction=0.1), progress=False)
    assert set(column(tmp_path / "o", "train", "difficulty")) == {0}  # never null: default_collate takes it
    verl = pq.read_table(tmp_path / "o" / "verl" / "train-00000-of-00001.parquet").column("extra_info").to_pylist()
    assert {e["difficulty"] for e in verl} == {0}


@pytest.mark.parametrize("spec, words", [
    ("levels=1,x", "whole numbers"), ("stages=3", "expected levels="), ("levels=1,2 shares=1", "2 levels"),
    ("levels=0,1", ">= 1"), ("levels=1,2 batch=0", "batch"), ("levels=1,2 shares=1,-1", "positive"),
    ("levels=1,9", "level"),
])
def test_a_bad_curriculum_is_one_line_naming_the_key(tmp_path, capsys, spec, words):
    assert main(["build", "--out", str(tmp_path / "o"), "--curriculum", spec, "--quiet", *DEMO]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err and ("curriculum" in err or "level" in err)


def test_curriculum_spec_parses():
    assert Curriculum.parse("levels=1,2,3") == Curriculum((1, 2, 3), (1.0, 1.0, 1.0), 256)
    assert Curriculum.parse("levels=2,3 shares=0.25,0.75 batch=64") == Curriculum((2, 3), (0.25, 0.75), 64)
    with pytest.raises(ConfigError):
        Curriculum.parse("levels=1 levels=2")


def test_stats_reports_difficulty_per_task_and_level(curriculum):
    out, manifest = curriculum
    rep = compute_stats(out, sighted_per_level=5)
    assert set(rep["difficulty"]) == set(manifest["counts"]["total"])
    for task, levels in rep["difficulty"].items():
        assert set(levels) == {"1", "2", "3"}, task
        assert sum(e["rows"] for e in levels.values()) == manifest["counts"]["total"][task]
    assert rep["difficulty"]["shuffle"]["1"]["sighted_n"] == 5
    assert "measured" in rep["difficulty"]["depth"]["1"]


@pytest.mark.parametrize("seed", [0, 7])
def test_stats_difficulty_rises_with_the_level(tmp_path, seed):
    """What `ssrl stats` measures per level moves the hard way on every task: smaller margins and gaps, and a
    sighted solver that never does better at a higher level (shuffle)."""
    out = tmp_path / "o"
    build(load_config(None, ["demo.num_rgb=24", "demo.num_rgbd=24", "demo.width=320", "demo.height=240",
                             "mix.shuffle=1", "mix.flip=1", "mix.crop=1", "mix.depth=1", "mix.position=1"],
                      out=str(out), num_samples=400, val_fraction=0, seed=seed, curriculum="levels=1,2,3"), progress=False)
    rep = compute_stats(out, sighted_per_level=40)["difficulty"]
    falling = {"shuffle": "min_pair_ratio", "flip": "flip_score", "crop": "side_ratio", "depth": "min_gap",
               "position": "margin"}
    for task, key in falling.items():
        values = [rep[task][lv]["measured"][key] for lv in ("1", "2", "3")]
        assert values[0] > values[1] > values[2], (task, key, values)
    sighted = [rep["shuffle"][lv]["sighted_accuracy"] for lv in ("1", "2", "3")]
    assert sighted[0] >= sighted[1] >= sighted[2] and sighted[2] < sighted[0], sighted
