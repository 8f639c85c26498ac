"""A frame that cannot be decoded is a rejected draw, not a dead sequence: the build keeps the sequence's good
frames, lists the bad files (manifest ``skipped_frames`` and the summary), writes the same bytes for any number of
workers and after a resume; every input is in exactly one of the four states of ``inputs``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import data_builders.pipeline as pipeline
from data_builders.cli import main
from data_builders.pipeline import STATE_FILE, SplitStats, build
from data_builders.report import summary_table
from ssrl_plugin.config import load_config
from ssrl_plugin.errors import Reject, SourceError
from ssrl_plugin.sequence import ArraySequence

sys.path.insert(0, os.path.dirname(__file__))
from sequence_fixtures import moving_frames  # noqa: E402

N = 12
BAD_FRAME = 17  # of 40: inside the sequence, so draws meet it and draws around it still succeed


def frames_args(folder: Path, out: Path, workers: str = "1") -> list[str]:
    return ["build", "--out", str(out), "--quiet", "--tasks", "temporal_order", "--num-samples", str(N),
            "--val-fraction", "0", "--workers", workers, "--sequences", f"frames:{folder},rate=10",
            "output.shard_size=2"]


def rows(out: Path) -> list[dict]:
    return [r for p in sorted((out / "easyr1").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def check_inputs(inputs: dict) -> None:
    states = ("used", "not_needed", "skipped", "no_sample")
    assert all(inputs[s] >= 0 for s in states), inputs
    assert sum(inputs[s] for s in states) == inputs["total"], inputs


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    """40 panning frames as JPEGs, one of them not an image (found only when decoded, not at discovery)."""
    folder = tmp_path_factory.mktemp("bad_frames") / "clip"
    from ssrl_plugin.sequence_export import write_frames

    paths = write_frames(moving_frames(40, 256, 192, seed=3), folder, ext="jpg")
    bad = Path(paths[BAD_FRAME])
    bad.write_bytes(b"not an image")
    return folder, bad


@pytest.fixture(scope="module")
def clip_built(clip, tmp_path_factory):
    folder, _ = clip
    root = tmp_path_factory.mktemp("bad_frames_out")
    outs = {}
    for workers in ("1", "2"):
        out = root / f"w{workers}"
        assert main(frames_args(folder, out, workers)) == 0
        outs[workers] = out
    return outs


# ------------------------------------------------------------------------------------------- Sequence.frames
class Flaky(ArraySequence):
    """An ArraySequence whose ``bad`` frames fail to decode with a SourceError naming a file; counts decodes."""

    def __init__(self, *args, bad: dict[int, str], **kw):
        super().__init__(*args, **kw)
        self.bad, self.decoded = bad, []

    def _decode(self, indices):
        self.decoded.append(list(indices))
        for i in indices:
            if i in self.bad:
                raise SourceError(f"{self.bad[i]}: cannot identify image file")
        return super()._decode(indices)


def flaky(tmp_path: Path, bad: tuple[int, ...]) -> Flaky:
    files = {i: tmp_path / f"f{i:03d}.png" for i in bad}
    for p in files.values():
        p.write_bytes(b"x")
    rgb = moving_frames(10, 64, 48)
    return Flaky("t/seq", rgb, np.arange(10) / 10.0, info={"path": str(tmp_path)},
                 bad={i: str(p) for i, p in files.items()})


def test_a_bad_frame_is_a_rejected_draw_named_by_its_file_whatever_was_decoded_before(tmp_path):
    from ssrl_plugin.errors import BadFrame

    seq = flaky(tmp_path, (2, 7))
    with pytest.raises(BadFrame) as info:
        seq.frames([5, 7, 2])  # 7 is the first bad one in the order asked
    assert isinstance(info.value, Reject) and info.value.reason == "bad_frame"
    assert info.value.index == 7 and info.value.path == str(tmp_path / "f007.png")
    assert str(tmp_path / "f007.png") in info.value.detail and "\n" not in info.value.detail
    # the good frame was kept, the bad ones remembered: nothing is decoded again
    seq.decoded.clear()
    assert seq.frames([5])[0].rgb.shape == (48, 64, 3) and seq.decoded == []
    with pytest.raises(BadFrame) as info:
        seq.frames([2, 5])
    assert info.value.index == 2 and seq.decoded == []
    # another history (2 met first, alone) reports the same frame for the same request: the first bad one asked
    other = flaky(tmp_path, (2, 7))
    with pytest.raises(BadFrame):
        other.frames([2])
    with pytest.raises(BadFrame) as info:
        other.frames([5, 7, 2])
    assert info.value.index == 7 and info.value.path == str(tmp_path / "f007.png")
    # good frames asked alongside a bad one are the frames a clean sequence gives
    clean = ArraySequence("t/clean", moving_frames(10, 64, 48), np.arange(10) / 10.0)
    assert [f.source.digest for f in other.frames([0, 5, 9])] == [f.source.digest for f in clean.frames([0, 5, 9])]


def test_a_bad_frame_of_a_file_that_is_the_whole_sequence_is_named_by_index(tmp_path):
    """A video's frames are no files of their own: the path is the video's with the frame index."""
    from ssrl_plugin.errors import BadFrame

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    seq = Flaky("t/video", moving_frames(10, 64, 48), np.arange(10) / 10.0, info={"path": str(video)},
                bad={4: str(video)})
    with pytest.raises(BadFrame) as info:
        seq.frames([1, 4])
    assert info.value.path == f"{video}#4"


# ------------------------------------------------------------------------------------------- builds
def test_a_corrupt_frame_in_a_frames_folder_keeps_the_sequence_and_is_listed(clip, clip_built):
    folder, bad = clip
    out = clip_built["1"]
    m = manifest(out)
    assert len(rows(out)) == N and m["shortfall"] == {}
    assert m["skipped_frames"] == [{"path": str(bad), "reason": "cannot identify image file (supported: JPEG, PNG, "
                                    "WEBP, BMP, TIFF, GIF)", "sequence": str(folder)}]
    assert m["rejected"]["temporal_order"]["bad_frame"] >= 1  # the frame was met, and the draw made again
    assert m["inputs"]["used"] == 1 and m["inputs"]["total"] == 1 and m["skipped_inputs"] == []
    check_inputs(m["inputs"])
    # no row shows the bad frame
    for row in rows(out):
        shown = {i for item in json.loads(row["metadata"])["items"] for i in item["frame_indices"]}
        assert BAD_FRAME not in shown
    # the summary lists it, apart from the inputs
    summary = summary_table(m)
    assert "frames skipped: 1" in summary and f"  {bad}: cannot identify image file" in summary
    assert "inputs: 1 = 1 used + 0 not needed + 0 skipped + 0 without a sample" in summary



def test_summary_lists_a_task_that_made_no_rows(clip_built):
    """A task every draw of which was rejected still has its line (0 rows, its rejections), in a column wide
    enough for the longest task name."""
    m = manifest(clip_built["1"])
    m["rejected"]["camera_motion"] = {"camera_motion/few_motions": 7, "gave_up_after_attempts": 2}
    lines = summary_table(m).splitlines()
    row = next(line for line in lines if line.startswith("camera_motion "))
    assert row.split() == ["camera_motion", "0", "0", "7"]
    header = lines[0]
    assert all(len(line) == len(header) for line in lines[1:4]), lines[:4]

def test_same_bytes_and_same_skipped_frames_for_any_number_of_workers(clip_built):
    one, two = manifest(clip_built["1"]), manifest(clip_built["2"])
    assert one["content_hash"] == two["content_hash"] and one["files"] == two["files"]
    assert one["skipped_frames"] == two["skipped_frames"] and one["rejected"] == two["rejected"]
    assert one["inputs"] == two["inputs"]


def test_a_depth_map_of_the_wrong_size_in_a_scannet_export_skips_that_frame(tmp_path):
    from ssrl_plugin.demo_sequence import demo_sequence_refs
    from ssrl_plugin.sequence_export import write_scannet
    from ssrl_plugin.sources import LoadOptions, load_source

    root = tmp_path / "scannet"
    for k, ref in enumerate(demo_sequence_refs(2, 320, 240, frames=40)):
        write_scannet(load_source(ref, LoadOptions()), root / f"scene000{k}_00")
    scene = root / "scene0000_00"
    depths = sorted((scene / "depth").glob("*.png"), key=lambda p: int(p.stem))
    assert Image.open(depths[0]).size == (320, 240)
    broken = depths[1::3]  # not the first: the sequence's depth size is read from it
    for p in broken:
        Image.fromarray(np.full((60, 80), 1500, np.uint16)).save(p)
    out = tmp_path / "out"
    assert main(["build", "--out", str(out), "--quiet", "--tasks", "cross_view", "--num-samples", str(N),
                 "--val-fraction", "0", "--sequences", f"scannet:{root}"]) == 0
    m = manifest(out)
    assert len(rows(out)) == N
    frames = m["skipped_frames"]
    assert frames and {e["path"] for e in frames} <= {str(p) for p in broken}
    assert all(e["sequence"] == str(scene) and e["reason"].startswith("depth is 80x60") for e in frames), frames
    assert m["inputs"]["used"] == 2 and m["skipped_inputs"] == []  # the broken scene still gave samples
    check_inputs(m["inputs"])
    used = {json.loads(r["metadata"])["source"]["id"] for r in rows(out)}
    assert any("scene0000_00" in u for u in used), used


def test_a_source_that_fails_after_making_samples_is_skipped_with_its_kept_samples(tmp_path, monkeypatch):
    """Exclusive states: a source whose later candidate crashed the task is skipped (not also used), and its
    reason (without its path repeated) says how many of its samples are in the output."""
    import ssrl_plugin.tasks.flip as flip
    from tests.test_faults import write_corpus

    folder = tmp_path / "imgs"
    write_corpus(folder, 6)
    real = flip.FlipTask.generate
    made: list[str] = []

    def fragile(self, source, rng, slot):
        if source.id.endswith("img03.jpg") and made:
            raise ZeroDivisionError("odd input")
        sample = real(self, source, rng, slot)
        if source.id.endswith("img03.jpg"):
            made.append(source.id)
        return sample

    monkeypatch.setattr(flip.FlipTask, "generate", fragile)
    out = tmp_path / "out"
    m = build(load_config(None, None, out=str(out), rgb=[str(folder)], num_samples=24, val_fraction=0,
                          tasks=["flip"]), progress=False).manifest
    inputs = m["inputs"]
    check_inputs(inputs)
    kept = [r for r in rows(out) if json.loads(r["metadata"])["source"]["id"].endswith("img03.jpg")]
    assert made and len(kept) == 1
    assert inputs == {"total": 6, "used": 5, "not_needed": 0, "skipped": 1, "no_sample": 0}
    entry = next(e for e in m["skipped_inputs"] if e["path"].endswith("img03.jpg"))
    assert entry["reason"] == ("flip failed on this input (ZeroDivisionError: odd input); "
                               "1 sample made before it failed kept")


class Crash(Exception):
    pass


def test_resume_keeps_the_skipped_frames(clip, clip_built, tmp_path, monkeypatch):
    folder, bad = clip
    reference = manifest(clip_built["1"])
    out = tmp_path / "out"
    real_save = pipeline.save_state
    crashed: list[dict] = []

    def crashing_save(out_dir, state):
        real_save(out_dir, state)
        train = state["splits"].get("train", {})
        if train.get("bad_frames") and N - 2 <= sum(train.get("built", {}).values()) < N:
            crashed.append(json.loads(json.dumps(train)))
            raise Crash  # late: the frame was met before, so only the checkpoint can bring it back

    monkeypatch.setattr(pipeline, "save_state", crashing_save)
    config = load_config(None, ["output.shard_size=2"], out=str(out), sequences=[f"frames:{folder},rate=10"],
                         tasks=["temporal_order"], num_samples=N, val_fraction=0)
    with pytest.raises(Crash):
        build(config, progress=False)
    monkeypatch.setattr(pipeline, "save_state", real_save)
    assert list(crashed[0]["bad_frames"]) == [str(bad)] and (out / STATE_FILE).exists()
    resumed = build(config, progress=False, resume=True).manifest
    assert resumed["skipped_frames"] == reference["skipped_frames"]
    assert resumed["content_hash"] == reference["content_hash"] and resumed["rejected"] == reference["rejected"]
    assert resumed["inputs"] == reference["inputs"]


def test_a_checkpoint_without_skipped_frames_still_loads():
    stats = SplitStats()
    stats.record_bad_frames("t/seq", {"/x/f1.jpg": "/x/f1.jpg: cannot identify image file"})
    d = stats.to_json()
    assert SplitStats.from_json(json.loads(json.dumps(d))).bad_frames == stats.bad_frames
    del d["bad_frames"]  # written before frames were reported
    assert SplitStats.from_json(d).bad_frames == {}
