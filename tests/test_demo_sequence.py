"""Procedural demo sequences: cheap refs, lazy deterministic frames, and poses / intrinsics / depth that agree with
each other (reprojection between frames) and with the scene geometry (the path guarantees)."""

from __future__ import annotations

import dataclasses
import json
import pickle
import time

import numpy as np
import pytest
import xxhash

from ssrl_plugin import demo
from ssrl_plugin.demo_sequence import MOTIONS, demo_sequence_refs, load_demo_sequence
from ssrl_plugin.errors import SourceError
from ssrl_plugin.sequence import Sequence, back_project, project, relative_pose, transform
from ssrl_plugin.sources import LoadOptions, SourceRef, load_source

OPTS = LoadOptions(min_side=16)
W, H = 160, 120
GUARANTEE_INDICES = range(40)  # sequences whose paths are checked (opening one costs ~2 ms, nothing rendered)


def _open(index: int, width: int = W, height: int = H, frames: int = 48, opts: LoadOptions = OPTS):
    return load_demo_sequence(demo_sequence_refs(index + 1, width, height, frames)[index], opts)


def _to_demo_world(p: np.ndarray) -> np.ndarray:
    """Poses use the demo's axes reordered (x, z, y); undo it to compare with the scene geometry."""
    return np.asarray(p)[..., [0, 2, 1]]


# ------------------------------------------------------------------------------------------- references


def test_refs_ids_fields_and_pool():
    refs = demo_sequence_refs(3, 320, 240, frames=20)
    assert [r.id for r in refs] == ["demo/seq/0000", "demo/seq/0001", "demo/seq/0002"]
    assert refs[2].extra == ("seq", 2, 320, 240, 20)
    assert all(r.scheme == "demo" and r.depth_format == "demo" and r.depth_kind == "metric" for r in refs)
    assert all(r.is_sequence and r.pool == "posed" for r in refs)
    assert demo_sequence_refs(2)[0].extra == ("seq", 0, 640, 480, 48)
    assert pickle.loads(pickle.dumps(refs)) == refs and len(set(refs)) == 3
    with pytest.raises(ValueError):
        demo_sequence_refs(2, frames=0)


def test_refs_are_cheap():
    start = time.perf_counter()
    refs = demo_sequence_refs(20000)
    assert len(refs) == 20000 and time.perf_counter() - start < 1.0


def test_load_source_dispatches_to_a_sequence():
    ref = demo_sequence_refs(2, W, H)[1]
    seq = load_source(ref, OPTS)
    assert isinstance(seq, Sequence) and seq.id == ref.id
    assert seq.digest == _open(1).digest


def test_bad_refs_and_sizes_raise_source_error():
    with pytest.raises(SourceError, match="not a demo sequence"):
        load_demo_sequence(SourceRef(id="demo/rgbd/0000", scheme="demo", extra=("rgbd", 0, 64, 64)), OPTS)
    with pytest.raises(SourceError, match="at least 1 frame"):
        load_demo_sequence(SourceRef(id="demo/seq/0000", scheme="demo", extra=("seq", 0, 64, 64, 0)), OPTS)
    with pytest.raises(SourceError, match="min_side"):
        _open(0, opts=LoadOptions(min_side=128))


# ------------------------------------------------------------------------------------------ lazy frames


def test_opening_renders_nothing_and_frames_render_only_what_is_asked(monkeypatch):
    calls = []
    real = demo.render_view
    monkeypatch.setattr(demo, "render_view", lambda shader: calls.append(shader.scene.camera) or real(shader))
    seq = _open(3)
    assert calls == [] and seq.renders == 0
    assert len(seq) == 48 and seq.has_pose and seq.has_depth
    assert np.allclose(np.diff(seq.timestamps), 1.0 / seq.info["fps"]) and seq.timestamps[0] == 0.0
    assert seq.pose(47).shape == (4, 4) and seq.intrinsics.width == W
    frames = seq.frames([7, 3])
    assert len(calls) == 2 and seq.renders == 2
    assert [f.index for f in frames] == [7, 3]
    seq.frames([3, 7, 3])  # cached
    assert len(calls) == 2
    f = frames[0]
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.depth.values.shape == (H, W) and f.depth.kind == "metric"
    assert np.array_equal(f.pose, seq.pose(7)) and f.intrinsics == seq.intrinsics
    assert f.source.id == "demo/seq/0003#7"


def test_frames_are_deterministic_and_independent_of_render_order():
    a = _open(4).frames([5])[0]
    b_seq = _open(4)
    b_seq.frames([9, 2])
    b = b_seq.frames([5])[0]
    assert a.rgb.tobytes() == b.rgb.tobytes()
    assert a.depth.values.tobytes() == b.depth.values.tobytes() and np.array_equal(a.depth.valid, b.depth.valid)
    assert a.source.digest == b.source.digest
    expected = xxhash.xxh3_128(a.rgb.tobytes() + a.depth.values.astype(np.float32).tobytes()).hexdigest()
    assert a.source.digest == f"xxh3_128:{expected}"


def test_digests_differ_between_indices_and_frames():
    s0, s1 = _open(0), _open(1)
    assert s0.digest != s1.digest
    f = s0.frames([0, 1]) + s1.frames([0])
    assert len({x.source.digest for x in f}) == 3
    assert _open(0, frames=20).digest != s0.digest  # the frame count is a parameter of the sequence


def test_sequence_digest_is_stable():
    """Golden value: the path (poses) and its parameters. If a change to the path generator is deliberate, bump
    demo_sequence.SEQ_VERSION and update this value (datasets built from the old paths differ)."""
    assert _open(0).digest == "xxh3_128:6e4e5ad554fbc0cc8f538631d5704ea1"


def test_info_is_json_and_describes_the_path():
    seq = _open(2)
    info = json.loads(json.dumps(seq.info))
    assert info["demo"] is True and info["index"] == 2 and info["fps"] > 0 and info["frames"] == 48
    segs = info["path"]
    assert segs[0]["start"] == 1 and segs[-1]["end"] == 48
    assert all(a["end"] == b["start"] for a, b in zip(segs, segs[1:]))
    assert all(s["motion"] in MOTIONS and s["end"] > s["start"] for s in segs)


# ----------------------------------------------------------------------------------- sizes and options


def test_max_side_gives_the_small_render_with_scaled_intrinsics():
    ref = demo_sequence_refs(2, 640, 480, frames=10)[1]
    big = load_demo_sequence(ref, LoadOptions(min_side=16, max_side=0))
    small = load_demo_sequence(ref, LoadOptions(min_side=16, max_side=W))
    direct = _open(1, frames=10)
    assert (small.width, small.height) == (W, H) and small.info["orig_size"] == [640, 480]
    assert small.intrinsics == big.intrinsics.scaled(W, H)
    assert all(np.array_equal(small.pose(i), big.pose(i)) for i in range(10))  # the path ignores the size
    assert small.frames([4])[0].source.digest == direct.frames([4])[0].source.digest


def test_path_is_prefix_stable():
    short, long = _open(6, frames=20), _open(6, frames=48)
    assert all(np.array_equal(short.pose(i), long.pose(i)) for i in range(20))


# ------------------------------------------------------------------------------ reprojection consistency


def _affine_inverse_depth(inv: np.ndarray, valid: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has (locally) affine inverse depth: on a plane 1/z is affine in the image
    coordinates, so these are away from depth edges and holes and bilinear interpolation of 1/z is exact."""
    ok = np.zeros_like(valid)
    c = inv[1:-1, 1:-1]
    dxx = inv[1:-1, 2:] - 2 * c + inv[1:-1, :-2]
    dyy = inv[2:, 1:-1] - 2 * c + inv[:-2, 1:-1]
    dxy = inv[2:, 2:] - inv[2:, :-2] - inv[:-2, 2:] + inv[:-2, :-2]
    all_valid = np.ones_like(c, bool)
    for dr in range(3):
        for dc in range(3):
            all_valid &= valid[dr : dr + c.shape[0], dc : dc + c.shape[1]]
    ok[1:-1, 1:-1] = all_valid & (np.abs(dxx) <= tol * c) & (np.abs(dyy) <= tol * c) & (np.abs(dxy) <= 2 * tol * c)
    return ok


def _reproject(fa, fb, k, pose_b=None, shift=(0.0, 0.0)):
    """Every valid pixel of frame a carried into frame b; returns (depth error against b's interpolated depth,
    mean colour difference where they agree) over points landing in b's smooth, valid region."""
    v, u = np.nonzero(fa.depth.valid)
    pts = back_project(u + 0.5, v + 0.5, fa.depth.values[v, u], k)
    uu, vv, zz = project(transform(relative_pose(fb.pose if pose_b is None else pose_b, fa.pose), pts), k)
    x, y = uu - 0.5 + shift[0], vv - 0.5 + shift[1]  # continuous coordinates of b's pixel-centre grid
    c0, r0 = np.floor(x).astype(int), np.floor(y).astype(int)
    keep = (zz > 0) & (c0 >= 0) & (r0 >= 0) & (c0 < k.width - 1) & (r0 < k.height - 1)
    zb = fb.depth.values.astype(np.float64)
    with np.errstate(divide="ignore"):
        inv = np.where(fb.depth.valid, 1.0 / zb, 0.0)
    smooth = _affine_inverse_depth(inv, fb.depth.valid)
    c0, r0, x, y, zz, u, v = (a[keep] for a in (c0, r0, x, y, zz, u, v))
    keep = smooth[r0, c0] & smooth[r0, c0 + 1] & smooth[r0 + 1, c0] & smooth[r0 + 1, c0 + 1]
    c0, r0, x, y, zz, u, v = (a[keep] for a in (c0, r0, x, y, zz, u, v))
    wx, wy = x - c0, y - r0

    def bilinear(img):
        return (img[r0, c0] * (1 - wx) * (1 - wy) + img[r0, c0 + 1] * wx * (1 - wy)
                + img[r0 + 1, c0] * (1 - wx) * wy + img[r0 + 1, c0 + 1] * wx * wy)

    err = zz - 1.0 / bilinear(inv)
    agree = np.abs(err) <= 1e-4
    rgb_b = fb.rgb.astype(np.float64)
    colour_b = np.stack([bilinear(rgb_b[..., ch]) for ch in range(3)], axis=-1)
    colour = np.abs(colour_b - fa.rgb[v, u]).mean(axis=-1)
    return err, agree, colour


@pytest.mark.parametrize("index, pairs", [(0, [(0, 1), (10, 20)]), (1, [(0, 5), (30, 47)]),
                                          (2, [(3, 9), (40, 44)]), (5, [(0, 12), (20, 28)])])
def test_reprojection_poses_intrinsics_and_depth_agree(index, pairs):
    seq = _open(index)
    k = seq.intrinsics
    for a, b in pairs:
        fa, fb = seq.frames([a, b])
        err, agree, colour = _reproject(fa, fb, k)
        assert len(err) > 0.3 * W * H, (a, b, len(err))  # frames overlap strongly
        occluded = err > 0.01  # a's point hidden behind something in b
        assert (err < -0.01).mean() < 0.002, (a, b)  # never seen through a surface
        assert agree[~occluded].mean() > 0.95, (a, b, agree[~occluded].mean())
        assert colour[agree].mean() < 10.0, (a, b)
        # controls: the same test rejects half-pixel centre errors, a 1 cm pose error and misplaced colours
        _, bad, _ = _reproject(fa, fb, dataclasses.replace(k, cx=k.cx + 0.5, cy=k.cy + 0.5))
        assert bad.mean() < 0.6 * agree.mean(), (a, b)
        moved = fb.pose.copy()
        moved[:3, 3] += 0.01
        _, bad, _ = _reproject(fa, fb, k, pose_b=moved)
        assert bad.mean() < 0.2 * agree.mean(), (a, b)
        _, _, shifted = _reproject(fa, fb, k, shift=(3.0, 2.0))
        assert colour[agree].mean() < 0.6 * shifted.mean(), (a, b)


# --------------------------------------------------------------------------------------- depth holes


def test_open_sky_frames_have_holes_exactly_where_rays_go_up():
    index = next(i for i in range(20) if _open(i, frames=8).info["open_sky"])
    seq = _open(index, frames=8)
    k = seq.intrinsics
    f = seq.frames([7])[0]
    valid = f.depth.valid
    assert 0 < np.count_nonzero(~valid) < valid.size
    assert np.all(f.depth.values[~valid] == 0.0) and np.all(f.depth.values[valid] > 0.0)
    rows, cols = np.mgrid[0:H, 0:W]
    rays = back_project(cols.ravel() + 0.5, rows.ravel() + 0.5, np.ones(W * H), k) @ f.pose[:3, :3].T
    up = rays[:, 2].reshape(H, W)  # z up in the pose's world
    assert np.all(up[~valid] > 0)
    # valid pixels are the ones below the wall tops: their hit points are inside the room's height
    v, u = np.nonzero(valid)
    world = transform(f.pose, back_project(u + 0.5, v + 0.5, f.depth.values[v, u], k))
    top = seq.scene.room.top
    assert world[:, 2].min() > -1e-3 and world[:, 2].max() < top + 1e-3


# ------------------------------------------------------------------------------------ path guarantees


def _box_distance(p: np.ndarray, lo, hi) -> np.ndarray:
    e = np.maximum(np.maximum(np.asarray(lo) - p, 0.0), p - np.asarray(hi))
    return np.sqrt((e * e).sum(-1))


def _rotation_degrees(r: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def test_path_guarantees_clearance_heights_view_and_speed():
    motions_seen = set()
    for index in GUARANTEE_INDICES:
        seq = _open(index)
        scene, room = seq.scene, seq.scene.room
        poses = np.stack([seq.pose(i) for i in range(len(seq))])
        assert np.allclose(np.linalg.det(poses[:, :3, :3]), 1.0)  # proper rotations, right-handed world
        assert np.allclose(poses[:, :3, :3].transpose(0, 2, 1) @ poses[:, :3, :3], np.eye(3), atol=1e-12)
        centres = _to_demo_world(poses[:, :3, 3])
        walls = np.minimum.reduce([centres[:, 0] + room.left, room.right - centres[:, 0],
                                   centres[:, 2] + room.front, room.back - centres[:, 2]])
        assert walls.min() >= 0.6, index
        for obj in scene.objects:
            if isinstance(obj, demo.Box):
                dist = _box_distance(centres, obj.lo, obj.hi)
            else:
                dist = np.linalg.norm(centres - np.asarray(obj.centre), axis=1) - obj.radius
            assert dist.min() >= 0.6, (index, obj)
        assert centres[:, 1].min() >= 0.9 and centres[:, 1].max() <= min(2.1, room.top - 0.6)

        # at least one object centre projects inside every frame (independently of the generator's own test)
        obj_world = np.array([[(a + b) / 2 for a, b in zip(o.lo, o.hi)] if isinstance(o, demo.Box) else o.centre
                              for o in scene.objects])[:, [0, 2, 1]]
        k = seq.intrinsics
        for i, pose in enumerate(poses):
            u, v, z = project(transform(relative_pose(pose, np.eye(4)), obj_world), k)
            assert ((z > 0.5) & (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height)).any(), (index, i)

        fwd, right = poses[:, :3, 2], poses[:, :3, 0]
        heading = fwd[:, :2] / np.linalg.norm(fwd[:, :2], axis=1, keepdims=True)
        assert np.degrees(np.arccos(np.clip(heading @ heading[0], -1, 1))).max() <= 35.0 + 1e-6
        pitch_down = np.degrees(np.arcsin(-fwd[:, 2]))
        assert pitch_down.min() >= 1.0 and pitch_down.max() <= 16.0, index
        assert np.degrees(np.abs(np.arcsin(right[:, 2]))).max() <= 1.8, index  # roll

        steps = [relative_pose(poses[i - 1], poses[i]) for i in range(1, len(poses))]
        moves = np.array([np.linalg.norm(s[:3, 3]) for s in steps])
        turns = np.array([_rotation_degrees(s[:3, :3]) for s in steps])
        assert moves.max() <= 0.15 + 1e-9 and turns.max() <= 4.1, index
        assert ((moves >= 0.03) | (turns >= 1.0)).all(), index  # every step moves visibly
        assert np.linalg.norm(centres - centres[0], axis=1).max() > 0.3 or turns.sum() > 20, index
        motions_seen |= {s["motion"] for s in seq.info["path"]}
    assert motions_seen == set(MOTIONS)


def _dominant_motion_ok(motion: str, step: np.ndarray) -> bool:
    """Whether one frame-to-frame step (camera i in camera i-1's OpenCV frame) shows the segment's motion."""
    t, r = step[:3, 3], step[:3, :3]
    yaw = r[0, 2]  # x component of the new optical axis: > 0 = turned right
    n = np.linalg.norm(t)
    no_turn = abs(yaw) < 1e-3
    if motion in ("forward", "back"):
        return no_turn and (t[2] > 0) == (motion == "forward") and abs(t[2]) >= 0.9 * n
    if motion.startswith("strafe"):
        return no_turn and (t[0] > 0) == motion.endswith("right") and abs(t[0]) >= 0.95 * n
    if motion.startswith("turn"):
        return n < 1e-9 and (yaw > 0.02 if motion.endswith("right") else yaw < -0.02)
    if motion in ("rise", "sink"):
        return no_turn and (t[1] < 0) == (motion == "rise") and abs(t[1]) >= 0.9 * n  # OpenCV y points down
    if motion.startswith("arc"):
        return abs(t[2]) >= 0.9 * n and (yaw > 0.01 if motion.endswith("right") else yaw < -0.01)  # either way
    # orbit: sideways one way, turning the other way (towards a point ahead)
    right = motion.endswith("right")
    return abs(t[0]) >= 0.9 * n and (t[0] > 0) == right and (yaw < -0.005 if right else yaw > 0.005)


def test_segments_show_their_dominant_motion_in_the_camera_frame():
    checked = 0
    for index in GUARANTEE_INDICES:
        seq = _open(index)
        for seg in seq.info["path"]:
            for i in range(seg["start"], seg["end"]):
                step = relative_pose(seq.pose(i - 1), seq.pose(i))
                assert _dominant_motion_ok(seg["motion"], step), (index, seg, i, step.round(4))
                checked += 1
    assert checked == len(GUARANTEE_INDICES) * 47


def test_fallback_turns_in_place_towards_the_objects(monkeypatch):
    from ssrl_plugin import demo_sequence

    monkeypatch.setattr(demo_sequence, "MAX_ATTEMPTS", 0)  # every segment falls back
    seq = _open(3, frames=13)
    assert [s["motion"].startswith("turn") and s["fallback"] for s in seq.info["path"]] == [True] * 3
    poses = np.stack([seq.pose(i) for i in range(13)])
    assert np.array_equal(poses[:, :3, 3], np.repeat(poses[:1, :3, 3], 13, axis=0))
    turns = [_rotation_degrees(relative_pose(poses[i - 1], poses[i])[:3, :3]) for i in range(1, 13)]
    assert min(turns) > 1.0


# --------------------------------------------------------------------------------------------- timing


def test_render_time_report():
    """Not a benchmark (no assertion): prints the per-frame render time, visible with ``pytest -s``."""
    for width, height in ((640, 480), (320, 240)):
        seq = _open(0, width, height, frames=8)
        seq.frames([0])  # warm-up (materials, texture atlas)
        start = time.perf_counter()
        seq.frames(range(1, 5))
        print(f"\ndemo seq: {(time.perf_counter() - start) / 4 * 1e3:.1f} ms per {width}x{height} frame")
