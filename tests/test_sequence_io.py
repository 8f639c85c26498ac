"""Sequence readers: videos (seeking, VFR, rotation, damage), frame folders, ScanNet, TUM and posed layouts
(round trips through the writers, missing poses, depth holes, broken indices), specs, sampling, determinism."""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from sequence_fixtures import array_sequence, moving_frames, write_layout  # noqa: E402

from ssrl_plugin.errors import ConfigError, SourceError  # noqa: E402
from ssrl_plugin.sequence_export import matrix_to_quat, write_frames, write_tum, write_video  # noqa: E402
from ssrl_plugin.sequence_io import (  # noqa: E402
    discover_sequences,
    open_sequence,
    parse_sequence_spec,
    sample_indices,
)
from ssrl_plugin.sequence_index import tum_pose_at  # noqa: E402
from ssrl_plugin.sources import LoadOptions, load_source  # noqa: E402

OPTS = LoadOptions(min_side=32, max_side=0)


def only_ref(spec: str):
    refs, skipped = discover_sequences(spec)
    assert len(refs) == 1, (refs, skipped)
    return refs[0], skipped


def one_line(e: pytest.ExceptionInfo, path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def sequential_decode(path) -> list[np.ndarray]:
    """Every frame in presentation order by plain decoding from the start (no seeking): the reference."""
    import av

    with av.open(str(path)) as c:
        frames = sorted(((f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])), key=lambda x: x[0])
    return [a for _, a in frames]


def nearest_original(rgb: np.ndarray, originals: list[np.ndarray]) -> tuple[int, float]:
    errs = [float(np.abs(rgb.astype(np.int16) - o.astype(np.int16)).mean()) for o in originals]
    return int(np.argmin(errs)), min(errs)


# ------------------------------------------------------------------------------------------------------ specs

def test_spec_parsing_and_errors(tmp_path):
    cfg = parse_sequence_spec("tum:/data/a,b,max_dt=0.03,intrinsics=500;501;320;240,fps=5")
    assert cfg == {"kind": "tum", "path": "/data/a,b",
                   "options": {"max_dt": 0.03, "intrinsics": (500.0, 501.0, 320.0, 240.0), "fps": 5.0}}
    assert parse_sequence_spec("frames:x,rate=12,frames=4,max_frames=3")["options"] == {"rate": 12.0, "frames": 4, "max_frames": 3}
    for bad, key in [("mpeg:x", "unknown kind"), ("video", "expected KIND:PATH"), ("video:x,rate=3", "unknown key 'rate'"),
                     ("video:x,fps=2,frames=3", "not both"), ("tum:x,depth_scale=5000", "depth_scale=5000"),
                     ("posed:x,frames=1", "frames=1"), ("video:x,fps=-1", "fps=-1"), ("video:x,fps=abc", "not a number")]:
        with pytest.raises(ConfigError, match=key):
            parse_sequence_spec(bad)
    with pytest.raises(SourceError, match="no such file"):
        discover_sequences(f"video:{tmp_path}/missing")


def test_sample_indices_rules():
    ts = np.arange(31) / 30.0  # 1 s at 30 fps
    assert sample_indices(ts, {"fps": 10.0}).tolist() == list(range(0, 31, 3))
    assert sample_indices(ts, {"fps": 100.0}).tolist() == list(range(31))  # above the native rate: every frame
    assert sample_indices(ts, {"frames": 4}).tolist() == [0, 10, 20, 30]
    assert sample_indices(ts, {"fps": 10.0, "max_frames": 3}).tolist() == [0, 3, 6]
    vfr = np.array([0.0, 0.01, 0.02, 0.5, 0.51, 1.2])
    # nearest frame to 0, 0.25 (tie between 0.02 and 0.5 -> distances 0.23, 0.25: 0.02), 0.5, 0.75 (0.51), 1.0 (1.2)
    assert sample_indices(vfr, {"fps": 4.0}).tolist() == [0, 2, 3, 4, 5]


# ------------------------------------------------------------------------------------------------------ videos

@pytest.mark.parametrize("ext", [".mp4", ".webm", ".avi"])
def test_seeking_equals_sequential_decode(tmp_path, ext):
    path = tmp_path / f"v{ext}"
    frames = moving_frames(48, seed=3)
    write_video(frames, path, fps=24, gop=7)  # x264: B-frames reorder pts within each small GOP
    reference = sequential_decode(path)
    assert len(reference) == 48
    ref = only_ref(f"video:{path}")[0]
    rng = np.random.default_rng(0)
    for trial in range(6):
        seq = open_sequence(ref, OPTS)  # fresh: no cached frame helps
        idx = rng.choice(48, size=int(rng.integers(1, 9)), replace=False).tolist()
        if trial == 0:
            idx = [47, 0, 46, 1, 23]  # unsorted, both ends, neighbours in one GOP
        got = seq.frames(idx)
        for i, fr in zip(idx, got):
            assert fr.index == i and np.array_equal(fr.rgb, reference[i]), (ext, idx, i)
            assert fr.timestamp == pytest.approx(i / 24, abs=2e-3)
    assert nearest_original(seq.frame(30).rgb, frames)[0] == 30


def test_video_discovery_skips_and_reports(tmp_path):
    root = tmp_path / "clips"
    frames = moving_frames(12)
    write_video(frames, root / "a.mp4", gop=4)
    write_video(frames, root / "sub" / "b.mkv", gop=4)
    (root / "notes.txt").write_text("x")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "empty.webm").write_bytes(b"")
    data = (root / "a.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    Image.fromarray(frames[0]).save(root / "photo.mov", format="JPEG")  # FFmpeg would call it a 1-frame video
    refs, skipped = discover_sequences(f"video:{root},fps=10")
    assert [r.id for r in refs] == ["clips/a.mp4", "clips/sub/b.mkv"]
    assert all(r.pool == "video" and r.scheme == "sequence" and os.path.isabs(r.rgb_path) for r in refs)
    assert refs[0].extra == (("fps", "10.0"), ("kind", "video"))
    reasons = dict(skipped)
    assert set(reasons) == {str(root / n) for n in ("notes.txt", "garbage.mp4", "empty.webm", "cut.mp4", "photo.mov")}
    assert "not a video: an image (jpeg)" in reasons[str(root / "photo.mov")]
    assert "not a supported video" in reasons[str(root / "notes.txt")]
    assert "empty file" in reasons[str(root / "empty.webm")]
    assert "cannot open video" in reasons[str(root / "garbage.mp4")]
    for name in ("garbage.mp4", "cut.mp4"):
        with pytest.raises(SourceError) as e:
            open_sequence(dataclasses.replace(refs[0], rgb_path=str(root / name)), OPTS)
        one_line(e, root / name)
    single = only_ref(f"video:{root / 'a.mp4'}")[0]
    assert single.id == "clips/a.mp4"


def test_truncated_matroska_is_an_error(tmp_path):
    path = tmp_path / "long.mkv"
    write_video(moving_frames(90, 96, 64), path, fps=30, gop=10)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 3])  # header (with the duration) intact, packets stop early
    ref = only_ref(f"video:{path}")[0]
    ref_cut = dataclasses.replace(ref, rgb_path=str(cut))
    with pytest.raises(SourceError, match="truncated") as e:
        open_sequence(ref_cut, OPTS)
    one_line(e, cut)



def _mux_audio_first(path, frames, first_pts: int) -> None:
    """A 30 fps H.264 video stream muxed AFTER an audio stream (stream 0 is audio), its first frame at
    ``first_pts`` / 30 s: what phones and screen recorders write."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        audio = c.add_stream("pcm_s16le" if str(path).endswith(".mkv") else "aac", rate=48000)
        audio.codec_context.layout = "mono"
        video = c.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        video.codec_context.time_base = Fraction(1, 30)
        fmt = audio.codec_context.format.name
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts, vf.time_base = first_pts + i, Fraction(1, 30)
            c.mux(video.encode(vf))
            wave = np.sin(np.arange(1024) * 0.05 + i)
            samples = (wave * 3000).astype(np.int16) if fmt == "s16" else (wave * 0.1).astype(np.float32)
            af = av.AudioFrame.from_ndarray(samples[None], format=fmt, layout="mono")
            af.sample_rate = 48000
            c.mux(audio.encode(af))
        c.mux(video.encode())
        c.mux(audio.encode())


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_audio_stream_first_and_late_start(tmp_path, ext):
    """Stream 0 is audio and the first frame is at 5 s: every frame decodes, times count from the first frame, and a
    Matroska header's duration (which counts from 0) is not mistaken for a truncated file."""
    frames = moving_frames(24, 96, 64)
    path = tmp_path / f"late{ext}"
    _mux_audio_first(path, frames, first_pts=150)
    seq = open_sequence(only_ref(f"video:{path}")[0], OPTS)
    assert len(seq) == 24
    np.testing.assert_allclose(seq.timestamps, np.arange(24) / 30, atol=1e-3)
    for fr in seq.frames([0, 9, 23]):
        idx, err = nearest_original(fr.rgb, frames)
        assert idx == fr.index and err < 12, (idx, fr.index, err)

def test_variable_frame_rate_uses_presentation_times(tmp_path):
    frames = moving_frames(20)
    times = np.cumsum(np.r_[0.0, np.random.default_rng(1).uniform(0.01, 0.2, 19)])
    for ext in (".mp4", ".mkv"):
        path = tmp_path / f"vfr{ext}"
        write_video(frames, path, vfr_timestamps=times, gop=5)
        seq = open_sequence(only_ref(f"video:{path}")[0], OPTS)
        tol = 1e-3 if ext == ".mkv" else 1e-4  # Matroska stores milliseconds
        np.testing.assert_allclose(seq.timestamps, times - times[0], atol=tol)
        for fr in seq.frames([3, 11, 19]):
            assert nearest_original(fr.rgb, frames)[0] == fr.index
        sub = open_sequence(only_ref(f"video:{path},fps=4")[0], OPTS)
        want = sample_indices(times, {"fps": 4.0})
        np.testing.assert_allclose(sub.timestamps, times[want] - times[want[0]], atol=tol)


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotated_video_is_delivered_upright(tmp_path, rotate):
    frames = moving_frames(10, 96, 64, seed=rotate)
    path = tmp_path / f"r{rotate}.mp4"
    write_video(frames, path, rotate=rotate, gop=5)
    stored = sequential_decode(path)[0]
    assert stored.shape[:2] == ((96, 64) if rotate % 180 else (64, 96))  # the file holds turned pixels
    seq = open_sequence(only_ref(f"video:{path}")[0], OPTS)
    assert (seq.width, seq.height) == (96, 64) and (seq.info["rotation"] - rotate) % 360 == 0
    for fr in seq.frames([0, 4, 9]):
        i, err = nearest_original(fr.rgb, frames)
        assert fr.rgb.shape == (64, 96, 3) and i == fr.index and err < 8


def test_odd_size_and_downscale(tmp_path):
    frames = [f[:119, :159] for f in moving_frames(8)]
    path = tmp_path / "odd.mp4"
    write_video(frames, path, gop=4)
    seq = open_sequence(only_ref(f"video:{path}")[0], OPTS)
    assert (seq.width, seq.height) == (159, 119)
    assert nearest_original(seq.frame(5).rgb, frames) [0] == 5
    small = open_sequence(only_ref(f"video:{path}")[0], LoadOptions(min_side=32, max_side=80))
    assert (small.width, small.height) == (80, 60) and small.frame(2).rgb.shape == (60, 80, 3)
    assert small.digest != seq.digest
    with pytest.raises(SourceError, match="min_side=128") as e:
        open_sequence(only_ref(f"video:{path}")[0], LoadOptions())
    one_line(e, path)


def test_video_determinism_and_sampling(tmp_path):
    path = tmp_path / "v.mp4"
    frames = moving_frames(30)
    write_video(frames, path, fps=30, gop=6)
    ref = only_ref(f"video:{path}")[0]
    a, b = open_sequence(ref, OPTS), open_sequence(ref, OPTS)
    fa, fb = a.frames([4, 17, 29]), b.frames([29, 4, 17])
    assert a.digest == b.digest and a.digest.startswith("xxh3_128:")
    for x, y in zip(fa, [fb[1], fb[2], fb[0]]):
        assert np.array_equal(x.rgb, y.rgb) and x.source.digest == y.source.digest
    assert load_source(ref, OPTS).digest == a.digest  # sources.py dispatches sequence refs here
    a.close()  # the kept-open file is reopened on demand, and a pickled sequence opens its own
    c = pickle.loads(pickle.dumps(b))
    for seq in (a, c):
        seq._cache().clear()
        assert [f.source.digest for f in seq.frames([17, 4])] == [fa[1].source.digest, fa[0].source.digest]
    every3 = open_sequence(only_ref(f"video:{path},fps=10")[0], OPTS)
    assert len(every3) == 10 and every3.digest != a.digest
    np.testing.assert_allclose(every3.timestamps, np.arange(10) * 0.1, atol=1e-6)
    assert nearest_original(every3.frame(4).rgb, frames)[0] == 12
    five = open_sequence(only_ref(f"video:{path},frames=5")[0], OPTS)
    assert [nearest_original(f.rgb, frames)[0] for f in five.frames(range(5))] == [0, 7, 14, 22, 29]
    assert len(open_sequence(only_ref(f"video:{path},max_frames=4")[0], OPTS)) == 4


# ------------------------------------------------------------------------------------------------ round trips

def check_round_trip(seq, got, *, pixels_exact: bool, depth_tol: float, rgb_tol: float = 0.0):
    assert len(got) == len(seq)
    np.testing.assert_allclose(got.timestamps, seq.timestamps, atol=2e-6)
    assert got.intrinsics is not None
    for name in ("fx", "fy", "cx", "cy", "width", "height"):
        assert getattr(got.intrinsics, name) == pytest.approx(getattr(seq.intrinsics, name), abs=1e-9), name
    for fr in got.frames(range(len(got))):
        want = seq.rgb[fr.index]
        if pixels_exact:
            assert np.array_equal(fr.rgb, want)
        else:
            assert np.abs(fr.rgb.astype(int) - want).mean() < rgb_tol
        p, q = got.pose(fr.index), seq.pose(fr.index)
        assert (p is None) == (q is None) and (p is None or np.abs(p - q).max() < 1e-6)
        d, e = fr.depth, seq.depth[fr.index]
        assert np.array_equal(d.valid, e.valid)  # holes (0 in the file) come back invalid, nothing else does
        assert np.abs(d.values[d.valid] - e.values[e.valid]).max() <= depth_tol
        assert np.all(d.values[~d.valid] == 0)


@pytest.mark.parametrize("kind,kw,exact,depth_tol", [
    ("posed", {}, True, 0.0005 + 1e-6),
    ("posed", {"depth_format": "npy"}, True, 0.0),
    ("tum", {"depth_offset": 0.004}, True, 0.0001 + 1e-6),
    ("scannet", {}, False, 0.0005 + 1e-6),
])
def test_posed_layouts_round_trip(tmp_path, kind, kw, exact, depth_tol):
    seq = array_sequence(6, unposed=(2,))
    write_layout(kind, seq, tmp_path / kind / "s0", **kw)
    ref, skipped = only_ref(f"{kind}:{tmp_path / kind}")
    assert skipped == [] and ref.id == f"{kind}/s0" and ref.pool == "posed" and ref.depth_format == kind
    got = open_sequence(ref, OPTS)
    check_round_trip(seq, got, pixels_exact=exact, depth_tol=depth_tol, rgb_tol=6.0)
    assert got.has_depth and got.pose(2) is None and list(got.posed_indices()) == [0, 1, 3, 4, 5]


def test_frames_and_video_round_trip(tmp_path):
    seq = array_sequence(12, fps=12.0, depth=False)
    names = [f"frame_{i}" for i in range(12)]
    write_frames(seq.rgb, tmp_path / "shots" / "a")
    (tmp_path / "shots" / "lonely").mkdir()
    Image.fromarray(seq.rgb[0]).save(tmp_path / "shots" / "lonely" / "x.png")
    refs, skipped = discover_sequences(f"frames:{tmp_path / 'shots'},rate=12")
    assert [r.id for r in refs] == ["shots/a"] and refs[0].pool == "video"
    assert skipped == [(str(tmp_path / "shots" / "lonely" / "x.png"), skipped[0][1])] and "only image" in skipped[0][1]
    got = open_sequence(refs[0], OPTS)
    assert [os.path.basename(p)[:-4] for p in got._rgb] == names  # frame_2 before frame_10
    np.testing.assert_allclose(got.timestamps, np.arange(12) / 12)
    assert all(np.array_equal(f.rgb, seq.rgb[f.index]) for f in got.frames(range(12)))
    video = write_layout("video", seq, tmp_path / "clip", fps=12)
    vid = open_sequence(only_ref(f"video:{video}")[0], OPTS)
    np.testing.assert_allclose(vid.timestamps, seq.timestamps, atol=1e-6)
    for fr in vid.frames(range(12)):
        i, err = nearest_original(fr.rgb, seq.rgb)
        assert i == fr.index and err < 8


def test_scannet_colour_larger_than_depth(tmp_path):
    seq = array_sequence(4)
    write_layout("scannet", seq, tmp_path / "scans" / "scene0000_00", color_size=(320, 240))
    scene = tmp_path / "scans" / "scene0000_00"
    assert Image.open(scene / "color" / "0.jpg").size == (320, 240)
    (scene / "scene0000_00.sens").write_bytes(b"raw")
    ref, skipped = only_ref(f"scannet:{tmp_path / 'scans'}")
    assert skipped == [(str(scene / "scene0000_00.sens"), skipped[0][1])] and "ScanNet scene" in skipped[0][1]
    assert only_ref(f"scannet:{scene}")[0].id == "scans/scene0000_00"  # PATH is the scene itself: same id
    got = open_sequence(ref, OPTS)
    assert (got.width, got.height) == (160, 120) and got.info["orig_size"] == [320, 240]
    check_round_trip(seq, got, pixels_exact=False, depth_tol=0.0005 + 1e-6, rgb_tol=6.0)
    # the intrinsic file's own numbers, read independently: integer-centre convention -> +0.5
    m = np.loadtxt(scene / "intrinsic" / "intrinsic_depth.txt")
    assert got.intrinsics.cx == pytest.approx(m[0, 2] + 0.5) and got.intrinsics.fy == pytest.approx(m[1, 1])
    half = open_sequence(ref, LoadOptions(min_side=32, max_side=80))
    assert (half.width, half.height) == (80, 60)
    assert half.intrinsics.fx == pytest.approx(seq.intrinsics.fx / 2) and half.intrinsics.cx == pytest.approx(seq.intrinsics.cx / 2)
    d = half.frame(1).depth
    assert d.values.shape == (60, 80) and set(np.unique(d.values[d.valid])) <= set(np.unique(got.frame(1).depth.values))


# --------------------------------------------------------------------------------------------- missing poses

def test_missing_pose_lines_give_none(tmp_path):
    seq = array_sequence(8, 640, 480)  # the built-in freiburg1 intrinsics are for 640x480 frames
    write_tum(seq, tmp_path / "rgbd_dataset_freiburg1_xyz", drop_pose_every=3, intrinsics_file=False)
    got = open_sequence(only_ref(f"tum:{tmp_path}")[0], OPTS)
    assert [got.pose(i) is None for i in range(8)] == [i % 3 == 2 for i in range(8)]
    assert got.info["unposed"] == 2 and got.info["intrinsics_source"] == "freiburg1"
    assert (got.intrinsics.fx, got.intrinsics.cx) == pytest.approx((517.3, 318.6 + 0.5))
    scan = tmp_path / "scan"
    write_layout("scannet", seq, scan / "s")
    (scan / "s" / "pose" / "3.txt").unlink()
    (scan / "s" / "pose" / "5.txt").write_text("-inf -inf -inf -inf\n" * 4)
    got = open_sequence(only_ref(f"scannet:{scan}")[0], OPTS)
    assert [got.pose(i) is None for i in range(8)] == [i in (3, 5) for i in range(8)]


def test_tum_interpolation_and_gaps():
    def rz(a):
        return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    gt_t = np.array([10.0, 10.01, 10.5])
    gt_p = np.array([[0, 0, 0], [1.0, 2.0, 0], [5, 5, 5]])
    gt_q = np.array([matrix_to_quat(rz(a)) for a in (0.2, 0.6, 0.0)])
    m = tum_pose_at(10.0025, gt_t, gt_p, gt_q, 0.02)  # a quarter of the way: angle 0.3, translation (0.25, 0.5, 0)
    np.testing.assert_allclose(m[:3, :3], rz(0.3), atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [0.25, 0.5, 0], atol=1e-12)
    np.testing.assert_allclose(tum_pose_at(10.01, gt_t, gt_p, gt_q, 0.02)[:3, :3], rz(0.6), atol=1e-12)
    assert tum_pose_at(10.2, gt_t, gt_p, gt_q, 0.02) is None  # the bracketing lines are 0.19 and 0.3 s away
    assert tum_pose_at(9.99, gt_t, gt_p, gt_q, 0.02) is None  # before the first line


def test_tum_association_drops_unmatched_rgb(tmp_path):
    seq = array_sequence(6)
    folder = tmp_path / "tum" / "seq"
    write_tum(seq, folder, depth_offset=0.005)
    lines = (folder / "depth.txt").read_text().splitlines()
    dropped = lines.pop(3 + 2)  # the depth of rgb frame 2
    (folder / "depth.txt").write_text("\n".join(lines) + "\n")
    ref, skipped = only_ref(f"tum:{tmp_path / 'tum'},max_dt=0.02")
    depth_file = str(folder / dropped.split()[1])
    rgb2 = str(folder / "rgb" / f"{1305031102.0 + seq.timestamps[2]:.6f}.png")
    assert dict(skipped) == {rgb2: "no depth frame within max_dt=0.02 s",
                             depth_file: "not part of a TUM RGB-D sequence: rgb.txt + depth.txt [+ groundtruth.txt] and the images they list"}
    got = open_sequence(ref, OPTS)
    assert len(got) == 5 and got.info["unmatched_rgb"] == 1
    np.testing.assert_allclose(got.timestamps, np.delete(seq.timestamps, 2), atol=2e-6)
    assert np.abs(got.pose(2) - seq.pose(3)).max() < 1e-6
    assert np.array_equal(got.frame(2).rgb, seq.rgb[3])


# ------------------------------------------------------------------------------------------- broken indices

def test_broken_sequences_are_skipped_and_reported(tmp_path):
    root = tmp_path / "posed"
    seq = array_sequence(4)
    for name in ("good", "badpose", "nointr", "short", "nodepth"):
        write_layout("posed", seq if name != "nodepth" else array_sequence(4, depth=False), root / name)
    poses = root / "badpose" / "poses.txt"
    lines = poses.read_text().splitlines()
    lines[2] = lines[2][:40] + " banana"
    poses.write_text("\n".join(lines) + "\n")
    (root / "nointr" / "intrinsics.txt").unlink()
    short = root / "short" / "poses.txt"
    short.write_text("\n".join(short.read_text().splitlines()[:2]) + "\n")  # one frame listed
    (root / "stray.txt").write_text("x")
    refs, skipped = discover_sequences(f"posed:{root}")
    assert [r.id for r in refs] == ["posed/good", "posed/nodepth"]
    assert [r.pool for r in refs] == ["posed", "video"]  # no depth/: a frames-only sequence
    reasons = dict(skipped)
    assert "line 3" in reasons[str(poses)]
    assert "no such file" in reasons[str(root / "nointr" / "intrinsics.txt")]
    assert "1 frame" in reasons[str(root / "short")]
    assert str(root / "stray.txt") in reasons
    assert not any(p.startswith(str(root / "short") + os.sep) for p in reasons)  # the folder stands for its files
    good = refs[0]
    for broken, culprit in ((root / "badpose", poses), (root / "nointr", root / "nointr" / "intrinsics.txt")):
        with pytest.raises(SourceError) as e:
            open_sequence(dataclasses.replace(good, rgb_path=str(broken)), OPTS)
        one_line(e, culprit)


def test_unreadable_frame_and_bad_scannet_pose(tmp_path):
    seq = array_sequence(4)
    write_layout("posed", seq, tmp_path / "p" / "s")
    (tmp_path / "p" / "s" / "rgb" / "000002.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    got = open_sequence(only_ref(f"posed:{tmp_path / 'p'}")[0], OPTS)
    got.frames([0, 1])
    with pytest.raises(SourceError) as e:
        got.frame(2)
    one_line(e, tmp_path / "p" / "s" / "rgb" / "000002.png")
    write_layout("scannet", seq, tmp_path / "sc" / "s")
    bad = tmp_path / "sc" / "s" / "pose" / "1.txt"
    bad.write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    ref = only_ref(f"scannet:{tmp_path / 'sc'}")[0]  # discovery lists poses only; open reads them
    with pytest.raises(SourceError, match="16 numbers") as e:
        open_sequence(ref, OPTS)
    one_line(e, bad)
    bad.write_text("0 1 0 0\n0 0 1 0\n0 0 0 1\n1 0 0 0\n")  # finite but not rigid (rows shifted)
    with pytest.raises(SourceError, match="rigid"):
        open_sequence(ref, OPTS)


def test_depth_holes_nan_and_inf_are_invalid(tmp_path):
    seq = array_sequence(3)
    write_layout("posed", seq, tmp_path / "p" / "s", depth_format="npy")
    d = np.load(tmp_path / "p" / "s" / "depth" / "000001.npy")
    d[:10, :10], d[10:20, :10], d[20:30, :10] = np.nan, np.inf, -1
    np.save(tmp_path / "p" / "s" / "depth" / "000001.npy", d)
    fr = open_sequence(only_ref(f"posed:{tmp_path / 'p'}")[0], OPTS).frame(1)
    assert not fr.depth.valid[:30, :10].any() and np.all(fr.depth.values[:30, :10] == 0)
    assert np.array_equal(fr.depth.valid[30:], seq.depth[1].valid[30:])
    strict = LoadOptions(min_side=32, max_side=0, min_valid_fraction=0.99)
    with pytest.raises(SourceError, match="valid") as e:
        open_sequence(only_ref(f"posed:{tmp_path / 'p'}")[0], strict).frame(1)
    one_line(e, tmp_path / "p" / "s" / "depth" / "000001.npy")


def test_layout_determinism_and_digests(tmp_path):
    seq = array_sequence(5)
    write_layout("posed", seq, tmp_path / "p" / "s")
    ref = only_ref(f"posed:{tmp_path / 'p'}")[0]
    a, b = open_sequence(ref, OPTS), open_sequence(ref, OPTS)
    assert a.digest == b.digest
    fa, fb = a.frames(range(5)), b.frames(range(5))
    assert [f.source.digest for f in fa] == [f.source.digest for f in fb]
    assert all(np.array_equal(x.rgb, y.rgb) and np.array_equal(x.depth.values, y.depth.values) for x, y in zip(fa, fb))
    assert len({f.source.digest for f in fa}) == 5
    sub = open_sequence(only_ref(f"posed:{tmp_path / 'p'},frames=3")[0], OPTS)
    assert sub.digest != a.digest and len(sub) == 3
    assert [f.source.digest for f in sub.frames(range(3))] == [fa[i].source.digest for i in (0, 2, 4)]
    poses = tmp_path / "p" / "s" / "poses.txt"
    poses.write_text(poses.read_text().replace("0.0 ", "0.0  ", 1))  # same numbers, other text: index changed
    assert open_sequence(ref, OPTS).digest != a.digest


def test_layout_variants(tmp_path):
    seq = array_sequence(4)
    tum = tmp_path / "tum" / "s"
    write_tum(seq, tum)
    (tum / "groundtruth.txt").unlink()
    ref = only_ref(f"tum:{tmp_path / 'tum'}")[0]
    assert ref.pool == "video" and ref.depth_format is None  # no groundtruth: frames only
    got = open_sequence(ref, OPTS)
    assert not got.has_depth and got.frame(1).depth is None and got.pose(1) is None
    posed = tmp_path / "posed" / "s"
    write_layout("posed", seq, posed)
    lines = (posed / "poses.txt").read_text().splitlines()
    lines[1:] = [" ".join(line.split()[:14]) for line in lines[1:]]  # 12 numbers: the top three rows
    (posed / "poses.txt").write_text("\n".join(lines) + "\n")
    got = open_sequence(only_ref(f"posed:{tmp_path / 'posed'}")[0], OPTS)
    assert all(np.abs(got.pose(i) - seq.pose(i)).max() < 1e-12 for i in range(4))
    np.save(posed / "depth" / "000001.npy", np.ones((120, 160), np.float32))
    (posed / "depth" / "000001.png").unlink()
    refs, skipped = discover_sequences(f"posed:{tmp_path / 'posed'}")
    assert refs == [] and "mixed depth formats" in dict(skipped)[str(posed / "depth")]



def test_posed_names_with_extensions_and_clear_reasons(tmp_path):
    """Names written with their file's extension in poses.txt are the same frames; two files of one name are
    reported as such; a poses.txt none of whose frames has files says why in its one line."""
    seq = array_sequence(4)
    posed = tmp_path / "posed" / "s"
    write_layout("posed", seq, posed)
    lines = (posed / "poses.txt").read_text().splitlines()
    with_ext = lines[:1] + [f"{line.split()[0]}.png {' '.join(line.split()[1:])}" for line in lines[1:]]
    (posed / "poses.txt").write_text("\n".join(with_ext) + "\n")
    got = open_sequence(only_ref(f"posed:{tmp_path / 'posed'}")[0], OPTS)
    assert len(got) == 4 and all(np.abs(got.pose(i) - seq.pose(i)).max() < 1e-12 for i in range(4))
    Image.open(posed / "rgb" / "000002.png").save(posed / "rgb" / "000002.jpg")
    refs, skipped = discover_sequences(f"posed:{tmp_path / 'posed'}")
    assert len(refs) == 1 and dict(skipped)[str(posed / "rgb" / "000002.png")].startswith("same frame name as 000002.jpg")
    renamed = lines[:1] + [f"x{line}" for line in lines[1:]]  # names no file has
    (posed / "poses.txt").write_text("\n".join(renamed) + "\n")
    refs, skipped = discover_sequences(f"posed:{tmp_path / 'posed'}")
    reason = dict(skipped)[str(posed / "poses.txt")]
    assert refs == [] and "none of its 4 frames has its files" in reason and "x000000" in reason, reason


def test_tum_built_in_intrinsics_only_for_their_frame_size(tmp_path):
    """Without intrinsics.txt or intrinsics=, TUM's built-in values (for 640x480 Kinect frames) would give every
    projection of smaller frames wrong: the sequence is skipped with a line saying what to give; a principal point
    off the frame is an error for any layout."""
    seq = array_sequence(4)  # 160x120
    tum = tmp_path / "tum" / "rgbd_dataset_freiburg1_desk"
    write_tum(seq, tum)
    (tum / "intrinsics.txt").unlink()
    with pytest.raises(SourceError) as e:
        open_sequence(only_ref(f"tum:{tum}")[0], OPTS)
    reason = one_line(e, tum)
    assert "built-in freiburg1 intrinsics are for 640x480 frames, these are 160x120" in reason
    assert "intrinsics=fx;fy;cx;cy" in reason
    k = seq.intrinsics
    ok = only_ref(f"tum:{tum},intrinsics={k.fx};{k.fy};{k.cx - 0.5};{k.cy - 0.5}")[0]
    assert open_sequence(ok, OPTS).intrinsics.cx == pytest.approx(k.cx)
    with pytest.raises(SourceError, match=r"principal point \(320, 240\) lies outside the 160x120 frames") as e:
        open_sequence(only_ref(f"tum:{tum},intrinsics=500;500;319.5;239.5")[0], OPTS)
    one_line(e, tum)

def test_demo_sequence_exports_to_every_layout(tmp_path):
    from ssrl_plugin.demo_sequence import demo_sequence_refs, load_demo_sequence

    seq = load_demo_sequence(demo_sequence_refs(1, 160, 120, frames=4)[0], OPTS)
    for kind in ("posed", "scannet", "tum", "frames", "video"):
        path = write_layout(kind, seq, tmp_path / kind / "s") if kind in ("posed", "scannet", "tum") else None
        if kind == "frames":
            path = tmp_path / kind / "s"
            write_frames(seq, path)
        elif kind == "video":
            path = tmp_path / "clip.mkv"
            write_video([f.rgb for f in seq.frames(range(4))], path, fps=10)
        got = open_sequence(only_ref(f"{kind}:{path if kind == 'video' else tmp_path / kind}")[0], OPTS)
        assert len(got) == 4 and (got.width, got.height) == (160, 120)
        if kind in ("posed", "scannet", "tum"):
            assert all(np.abs(got.pose(i) - seq.pose(i)).max() < 1e-6 for i in range(4))
            np.testing.assert_allclose(got.intrinsics.matrix(), seq.intrinsics.matrix(), atol=1e-9)
