"""``ssrl build`` on sequences end to end: the demo sequences, and the same camera paths written as files in every
layout the readers take (a variable-frame-rate rotated video, ScanNet, TUM with missing pose lines, our posed
layout), with bad inputs among them. Every answer re-derived by ``ssrl verify``; the same bytes for any number of
workers; bad sequences skipped and reported by path while the good ones are kept; the video layouts written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_builders.cli import main
from ssrl_plugin.demo_sequence import demo_sequence_refs
from ssrl_plugin.sequence_export import write_frames, write_posed, write_scannet, write_tum, write_video
from ssrl_plugin.sources import LoadOptions, load_source

TASKS = "temporal_order,camera_motion,cross_view"
SIZE = ["demo.width=320", "demo.height=240"]


def _build(out: Path, *args: str) -> dict:
    assert main(["build", "--out", str(out), "--quiet", *args]) == 0
    return json.loads((out / "manifest.json").read_text())


def _rows(out: Path, layout: str = "easyr1") -> list[dict]:
    return [r for p in sorted((out / layout).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def demo_built(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq_demo")
    manifest = _build(out, "--tasks", TASKS, "--num-samples", "36", "--val-fraction", "0.2",
                      "demo.num_sequences=8", "output.videos=true", *SIZE)
    return out, manifest


def test_demo_sequences_build_every_task_and_verify(demo_built, capsys):
    out, manifest = demo_built
    counts = manifest["counts"]["total"]
    assert set(counts) == set(TASKS.split(",")) and all(n >= 6 for n in counts.values()), counts
    assert manifest["sources"]["sequences"] == manifest["sources"]["posed_sequences"] == 8
    assert manifest["sources"]["rgb"] == manifest["sources"]["rgbd"] == 0  # no demo images when only sequences are asked
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "0 mismatches" in capsys.readouterr().out
    rows = _rows(out)
    for row in rows:
        meta = json.loads(row["metadata"])
        assert meta["source"]["id"].startswith("demo/seq/") and row["problem"].count("<image>") == len(row["images"])
    # the video form holds the tasks that have one, with the same answers
    video = {r["id"]: r for r in _rows(out, "easyr1_video")}
    assert {r["task"] for r in video.values()} == {"temporal_order", "camera_motion"}
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[i]["answer"] == r["answer"] and r["problem"].count("<video>") == len(r["videos"]) for i, r in video.items())


def test_same_bytes_for_any_number_of_workers(demo_built, tmp_path):
    out, manifest = demo_built
    again = _build(tmp_path / "w2", "--tasks", TASKS, "--num-samples", "36", "--val-fraction", "0.2", "--workers", "2",
                   "demo.num_sequences=8", "output.videos=true", *SIZE)
    assert again["content_hash"] == manifest["content_hash"]
    assert again["files"] == manifest["files"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Demo camera paths written as files: one layout per sequence, plus bad inputs."""
    root = tmp_path_factory.mktemp("seq_files")
    opts = LoadOptions()
    seqs = [load_source(ref, opts) for ref in demo_sequence_refs(6, 320, 240, frames=40)]
    videos = root / "videos"
    videos.mkdir()
    for k, seq in enumerate(seqs[:2]):  # variable frame rate (the clock slows down and speeds up), one rotated
        frames = [f.rgb for f in seq.frames(range(len(seq)))]
        stamps = np.cumsum(np.where(np.arange(len(frames)) % 3 == 0, 0.05, 0.1))
        rgb = [np.ascontiguousarray(np.rot90(f, 1)) if k else f for f in frames]  # stored sideways, display says upright
        write_video(rgb, videos / f"clip{k}.mp4", fps=10, rotate=90 if k else 0, vfr_timestamps=list(stamps - stamps[0]))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))  # not a decodable video
    write_scannet(seqs[2], root / "scannet" / "scene0000_00")
    write_tum(seqs[3], root / "tum" / "rgbd_dataset_freiburg1_demo", drop_pose_every=4)  # missing pose lines
    bad = root / "tum" / "rgbd_dataset_freiburg1_bad"  # a TUM sequence whose rgb list is garbage
    bad.mkdir()
    (bad / "rgb.txt").write_text("# color images\nnot a timestamp line\n")
    (bad / "depth.txt").write_text("# depth maps\n")
    write_posed(seqs[4], root / "posed" / "seq4")
    write_frames(seqs[5], root / "frames" / "seq5")
    return root


@pytest.fixture(scope="module")
def files_built(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq_files_out")
    manifest = _build(out, "--tasks", TASKS, "--num-samples", "24", "--val-fraction", "0",
                      "--sequences", f"video:{corpus / 'videos'}", "--sequences", f"scannet:{corpus / 'scannet'}",
                      "--sequences", f"tum:{corpus / 'tum'}", "--sequences", f"posed:{corpus / 'posed'}",
                      "--sequences", f"frames:{corpus / 'frames'},rate=10")
    return out, manifest


def test_sequence_files_build_verify_and_report_bad_inputs(files_built, corpus, capsys):
    out, manifest = files_built
    assert manifest["sources"]["sequences"] == 6 and manifest["sources"]["posed_sequences"] == 3
    skipped = {Path(e["path"]).name: e["reason"] for e in manifest["skipped_inputs"]}
    assert "broken.mp4" in skipped and any("freiburg1_bad" in p["path"] for p in manifest["skipped_inputs"]), skipped
    assert all("\n" not in reason for reason in skipped.values())
    counts = manifest["counts"]["total"]
    assert set(counts) == set(TASKS.split(",")), counts
    rows = _rows(out)
    sources = {json.loads(r["metadata"])["source"]["id"].split("/")[0] for r in rows}
    assert {"videos", "scannet", "tum", "posed"} <= sources
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "0 mismatches" in capsys.readouterr().out
