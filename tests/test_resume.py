"""An interrupted build (even kill -9) resumed with --resume ends byte-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import data_builders.pipeline as pipeline
from data_builders.pipeline import STATE_FILE, build
from ssrl_plugin.config import load_config
from ssrl_plugin.errors import ConfigError

OVERRIDES = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240", "output.shard_size=7",
             "output.formats=[easyr1,verl,sft]"]


def config(out: Path, **flags):
    return load_config(None, OVERRIDES, out=str(out), num_samples=60, val_fraction=0.2, **flags)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build(config(tmp_path_factory.mktemp("ref") / "out"), progress=False).manifest


class Crash(Exception):
    pass


def test_resume_after_a_crash_matches_an_uninterrupted_build(tmp_path, monkeypatch, reference):
    out = tmp_path / "out"
    real_save = pipeline.save_state
    saves = []

    def crashing_save(out_dir, state):
        real_save(out_dir, state)
        saves.append(1)
        if len(saves) == 4:  # the fourth checkpoint: mid-build, after complete shards
            raise Crash

    monkeypatch.setattr(pipeline, "save_state", crashing_save)
    with pytest.raises(Crash):
        build(config(out), progress=False)
    monkeypatch.setattr(pipeline, "save_state", real_save)
    assert (out / STATE_FILE).exists() and not (out / "manifest.json").exists()
    resumed = build(config(out, workers=2), progress=False, resume=True).manifest
    assert resumed["content_hash"] == reference["content_hash"]
    assert resumed["files"] == reference["files"]
    assert resumed["counts"] == reference["counts"] and resumed["answers"] == reference["answers"]
    assert not (out / STATE_FILE).exists()


def test_resume_after_kill_9(tmp_path, reference):
    out = tmp_path / "out"
    script = (
        "import sys; from data_builders.pipeline import build; from ssrl_plugin.config import load_config; "
        f"build(load_config(None, {OVERRIDES!r}, out={str(out)!r}, num_samples=60, val_fraction=0.2), progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1])
    state = out / STATE_FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text() or "{}").get("splits", {}).get("train", {}).get("built"):
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the build finished before it could be killed; make it longer")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    resumed = build(config(out), progress=False, resume=True).manifest
    assert resumed["content_hash"] == reference["content_hash"]


def test_resume_refuses_a_different_config(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def crash(out_dir, state):
        if state.get("splits"):  # the first checkpoint (before any sample) is kept
            raise Crash
        real(out_dir, state)

    real = pipeline.save_state
    monkeypatch.setattr(pipeline, "save_state", crash)
    with pytest.raises(Crash):
        build(config(out), progress=False)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="config differs .* in seed "):
        build(config(out, seed=5), progress=False, resume=True)
    (out / STATE_FILE).write_text(json.dumps({"fingerprint": "something else"}))
    with pytest.raises(ConfigError, match="another version of ssrl"):
        build(config(out), progress=False, resume=True)


def test_resume_of_a_finished_build_says_so(tmp_path):
    out = tmp_path / "out"
    build(config(out), progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        build(config(out), progress=False, resume=True)


def test_resume_replays_the_rows_of_an_open_shard(tmp_path, monkeypatch, reference):
    """Checkpoints between shard boundaries: the rows of the open shard come back from the log, byte for byte."""
    monkeypatch.setattr(pipeline, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every window
    out = tmp_path / "out"
    real_save = pipeline.save_state
    pending = []

    def crash_mid_shard(out_dir, state):
        real_save(out_dir, state)
        writer = state.get("writer") or {}
        if writer.get("pending"):
            pending.append(writer["pending"])
            if len(pending) == 3:
                raise Crash

    monkeypatch.setattr(pipeline, "save_state", crash_mid_shard)
    with pytest.raises(Crash):
        build(config(out, window=4), progress=False)
    monkeypatch.setattr(pipeline, "save_state", real_save)
    assert pending[-1] > 0 and not (out / "manifest.json").exists()
    resumed = build(config(out, window=4), progress=False, resume=True).manifest
    assert resumed["content_hash"] == reference["content_hash"]


def test_a_kill_between_a_finished_split_and_its_log_removal_leaves_nothing_behind(tmp_path, monkeypatch, reference):
    """The split's last checkpoint is on disk but its rows log is not removed yet: the resumed build ends clean."""
    out = tmp_path / "out"
    real_save = pipeline.save_state

    def crash_when_val_is_done(out_dir, state):
        real_save(out_dir, state)
        if state.get("done") == ["val"] and "current" not in state:
            raise Crash

    monkeypatch.setattr(pipeline, "save_state", crash_when_val_is_done)
    with pytest.raises(Crash):
        build(config(out), progress=False)
    monkeypatch.setattr(pipeline, "save_state", real_save)
    assert list(out.glob(".ssrl_build_rows-val.pkl"))  # the window this test is about
    assert build(config(out), progress=False, resume=True).manifest["content_hash"] == reference["content_hash"]
    assert not list(out.glob(".ssrl_build_*"))
