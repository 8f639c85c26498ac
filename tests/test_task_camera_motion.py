"""Camera motion between two frames of a posed RGB-D sequence: conventions on hand-built poses, answers re-derived
with scipy's rotations, rejections, verify, determinism, levels, video form, the tool hooks."""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from answer_support import wrong_answer
from levels_support import check_declared_levels
from ssrl_plugin.core import DepthMap
from ssrl_plugin.errors import ConfigError, Reject
from ssrl_plugin.imaging import decode_image, encode_image
from ssrl_plugin.sequence import ArraySequence, Intrinsics, relative_pose
from ssrl_plugin.tasks.camera_motion import (
    COMPONENTS,
    LETTERS,
    PAIRS,
    CameraMotionConfig,
    CameraMotionTask,
    clip_indices,
    grid_points,
    label_pairs,
    motion_table,
)

# ------------------------------------------------------------------------------------------ a synthetic room
ROOM_LO, ROOM_HI = np.array([-3.0, -1.6, -4.0]), np.array([3.0, 1.2, 4.0])  # world y points down, like the cameras
PILLARS = [(np.array([-1.2, -1.6, 0.6]), np.array([-0.8, 1.2, 1.0])), (np.array([1.0, 0.2, -1.5]), np.array([1.6, 1.2, -0.9]))]
COLOURS = np.array([[0.8, 0.5, 0.4], [0.4, 0.6, 0.8], [0.7, 0.7, 0.5], [0.5, 0.4, 0.3], [0.6, 0.8, 0.5],
                    [0.8, 0.7, 0.8], [0.9, 0.3, 0.3], [0.3, 0.3, 0.9]])


def look(position, yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world with OpenCV axes written out by hand: yaw turns the optical axis (0, 0, 1) towards +x
    (right), pitch towards -y (up), roll turns x towards y."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = ry @ rx @ rz
    pose[:3, 3] = position
    return pose


def render(pose: np.ndarray, k: Intrinsics) -> tuple[np.ndarray, DepthMap]:
    """Ray-cast a textured box room with two pillars: RGB and exact z-depth (rays have unit z in the camera)."""
    u, v = np.meshgrid(np.arange(k.width) + 0.5, np.arange(k.height) + 0.5)
    d = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], -1) @ pose[:3, :3].T
    o = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        walls = np.stack([np.where(d[..., a] > 0, (ROOM_HI[a] - o[a]) / d[..., a], (ROOM_LO[a] - o[a]) / d[..., a]) for a in range(3)])
        walls = np.where(np.isfinite(walls) & (walls > 0), walls, np.inf)
        face = 2 * walls.argmin(axis=0) + (np.take_along_axis(d, walls.argmin(axis=0)[..., None], -1)[..., 0] > 0)
        t = walls.min(axis=0)
        for n, (lo, hi) in enumerate(PILLARS):
            t0, t1 = (lo - o) / d, (hi - o) / d
            near, far = np.nanmax(np.minimum(t0, t1), axis=-1), np.nanmin(np.maximum(t0, t1), axis=-1)
            hit = (near <= far) & (near > 0) & (near < t)
            t, face = np.where(hit, near, t), np.where(hit, 6 + n, face)
    p = o + d * t[..., None]
    noise = (np.sin(7.3 * p[..., 0] + 3 * np.sin(2.3 * p[..., 2])) * np.cos(5.1 * p[..., 1] + 1.7 * p[..., 2])
             + np.sin(11.0 * p[..., 0] * p[..., 2] + 4.0 * p[..., 1]))
    checker = (np.floor(2 * p[..., 0]) + np.floor(2 * p[..., 1]) + np.floor(2 * p[..., 2])) % 2
    rgb = np.clip(COLOURS[face] * (0.55 + 0.12 * noise + 0.2 * checker)[..., None] * 255, 0, 255).astype(np.uint8)
    return rgb, DepthMap(t.astype(np.float32), np.isfinite(t), "metric")


K = Intrinsics(110.85, 110.85, 64.0, 48.0, 128, 96)  # 60 degrees across 128 px


def room_sequence(poses: list, fps: float = 10.0, name: str = "room") -> ArraySequence:
    frames = [render(p if p is not None else look((0, 0, 0)), K) for p in poses]
    return ArraySequence(name, [f[0] for f in frames], np.arange(len(poses)) / fps, [f[1] for f in frames], list(poses), K)


def walk(steps: list[tuple[str, int]], start=(0.0, 0.0, -2.5), yaw: float = 0.0) -> list[np.ndarray]:
    """Poses of a path of segments: ("f"/"b"/"l"/"r", frames) 0.12 m a frame along the heading, ("tl"/"tr", frames)
    3 degrees a frame."""
    pos, poses = np.array(start, float), []
    for kind, n in steps:
        for _ in range(n):
            poses.append(look(pos.copy(), yaw))
            r = look(pos, yaw)[:3, :3]
            pos = pos + 0.12 * {"f": r[:, 2], "b": -r[:, 2], "r": r[:, 0], "l": -r[:, 0]}.get(kind, np.zeros(3))
            yaw += {"tl": -3.0, "tr": 3.0}.get(kind, 0.0)
    return poses


@lru_cache(maxsize=None)
def tour() -> ArraySequence:
    return room_sequence(walk([("f", 8), ("tl", 8), ("r", 8), ("tr", 8), ("b", 8), ("l", 8), ("tr", 6), ("f", 8)]))


@lru_cache(maxsize=None)
def demo(i: int):
    from ssrl_plugin.demo_sequence import demo_sequence_refs
    from ssrl_plugin.sources import LoadOptions, load_source

    return load_source(demo_sequence_refs(8, 192, 144, 48)[i], LoadOptions(min_side=64))


def samples(seq, n: int, config=None, seed: int = 0) -> list:
    task = CameraMotionTask(config)
    out = []
    for i in range(n):
        try:
            out.append(task.generate(seq, np.random.default_rng([seed, i]), i % 4))
        except Reject:
            pass
    return out


# ------------------------------------------------------------------------------------- independent labels
def rederive(meta: dict, seq) -> str | None:
    """The answer from the sequence's poses and depth alone: scipy's intrinsic Y-X-Z angles, each part of the motion
    applied as its own rigid transform to frame 1's grid, projected by hand; None when no answer is clear."""
    i1, i2 = meta["frames"]
    rel = np.linalg.inv(seq.pose(i1)) @ seq.pose(i2)
    yaw, pitch, roll = Rotation.from_matrix(rel[:3, :3]).as_euler("YXZ")  # intrinsic: R = Ry Rx Rz
    frame = seq.frame(i1)
    cols = meta["grid"]["cols"]
    rows = max(2, round(cols * K_of(seq).height / K_of(seq).width))
    k = K_of(seq)
    us = np.floor((np.arange(cols) + 0.5) * k.width / cols).astype(int)
    vs = np.floor((np.arange(rows) + 0.5) * k.height / rows).astype(int)
    uu, vv = (a.ravel() for a in np.meshgrid(us, vs))
    z = frame.depth.values[vv, uu].astype(np.float64)
    ok = frame.depth.valid[vv, uu] & (z > 0)
    pts = np.stack([(uu[ok] + 0.5 - k.cx) / k.fx * z[ok], (vv[ok] + 0.5 - k.cy) / k.fy * z[ok], z[ok]], 1)

    def flow(rot: Rotation, shift) -> float:
        moved = rot.inv().apply(pts - shift)
        du = k.fx * moved[:, 0] / moved[:, 2] - k.fx * pts[:, 0] / pts[:, 2]
        dv = k.fy * moved[:, 1] / moved[:, 2] - k.fy * pts[:, 1] / pts[:, 2]
        d = np.where(moved[:, 2] > 0.05, np.minimum(np.hypot(du, dv) / k.width, 1.0), 1.0)
        return float(d.mean())

    t = rel[:3, 3]
    none = Rotation.identity()
    moved = flow(none, t)
    flows = {"right": moved * abs(t[0]) / np.linalg.norm(t), "up": moved * abs(t[1]) / np.linalg.norm(t),
             "forward": moved * abs(t[2]) / np.linalg.norm(t)} if np.linalg.norm(t) > 0 else {"right": 0, "up": 0, "forward": 0}
    flows.update(yaw=flow(Rotation.from_euler("Y", yaw), 0), pitch=flow(Rotation.from_euler("X", pitch), 0),
                 roll=flow(Rotation.from_euler("Z", roll), 0))
    for name in COMPONENTS:
        assert flows[name] == pytest.approx(meta["flows"][name], rel=1e-5, abs=1e-7), name
    first, second = sorted(flows, key=lambda c: -flows[c])[:2]
    if flows[second] >= meta["thresholds"]["max_ratio"] * flows[first]:
        return None
    sign = {"right": t[0], "up": -t[1], "forward": t[2], "yaw": yaw}.get(first)
    words = {"right": ("move right", "move left"), "up": ("move up", "move down"),
             "forward": ("move forward", "move backward"), "yaw": ("turn right", "turn left")}
    return None if sign is None else words[first][0 if sign > 0 else 1]


def K_of(seq) -> Intrinsics:
    return seq.intrinsics


# ------------------------------------------------------------------------------------------------ conventions
@pytest.mark.parametrize(("motion", "word"), [
    (dict(yaw_deg=8), "turn right"), (dict(yaw_deg=-8), "turn left"),
    (dict(position=(0.4, 0, -2.5)), "move right"), (dict(position=(-0.4, 0, -2.5)), "move left"),
    (dict(position=(0, 0, -1.6)), "move forward"), (dict(position=(0, 0, -3.4)), "move backward"),
    (dict(position=(0, -0.4, -2.5)), "move up"), (dict(position=(0, 0.4, -2.5)), "move down"),
])
def test_hand_built_motions_get_their_words(motion, word):
    pose1 = look((0, 0, -2.5))
    pose2 = look(motion.get("position", (0, 0, -2.5)), motion.get("yaw_deg", 0.0))
    frame_depth = render(pose1, K)[1]
    points, _ = grid_points(frame_depth, K, 24)
    table = motion_table(points, relative_pose(pose1, pose2)[None], K)
    labels, reasons, _, _ = label_pairs(table, CameraMotionConfig(vertical=True, min_flow=0.01))
    assert (labels[0], reasons[0]) == (word, "")


def test_turning_right_moves_the_view_left():
    """The sign convention, checked on pixels: after a turn right the scene point straight ahead appears left of
    the centre, and the task calls the motion 'turn right'."""
    pose1, pose2 = look((0, 0, -2.5)), look((0, 0, -2.5), 6.0)
    ahead = pose1[:3, 3] + 3.0 * pose1[:3, 2]
    cam2 = np.linalg.inv(pose2) @ np.append(ahead, 1.0)
    assert K.fx * cam2[0] / cam2[2] + K.cx < K.cx - 5
    table = motion_table(np.array([[0.0, 0.0, 3.0]]), relative_pose(pose1, pose2)[None], K)
    assert table["yaw"][0] == pytest.approx(6.0) and abs(table["pitch"][0]) < 1e-9


@pytest.mark.parametrize(("pose2", "reason"), [
    (look((0, 0, -2.5), 0.3), "camera_motion/static"),
    (look((0, 0, -2.5), 50), "camera_motion/no_overlap"),
    (look((0, 0, -2.5), 0, 15), "camera_motion/tilt"),
    (look((0, 0, -2.5), 0, 6), "camera_motion/off_axis"),
    (look((0, -0.4, -2.5)), "camera_motion/off_axis"),  # vertical motion without the up/down options
    (look((0.22, 0, -2.5), 4), "camera_motion/ambiguous"),
])
def test_rejection_reasons_on_hand_built_pairs(pose2, reason):
    pose1 = look((0, 0, -2.5))
    points, _ = grid_points(render(pose1, K)[1], K, 24)
    labels, reasons, _, _ = label_pairs(motion_table(points, relative_pose(pose1, pose2)[None], K), CameraMotionConfig())
    assert (labels[0], reasons[0]) == ("", reason)


def test_a_detour_is_rejected_although_the_ends_agree():
    """Turn 12 degrees left, then 9 back right: the ends show 'turn left' (3 degrees), the way there much more."""
    yaws = [0, -4, -8, -12, -9, -6, -3]
    pose0 = look((0, 0, -2.5))
    points, _ = grid_points(render(pose0, K)[1], K, 24)
    rel = np.stack([relative_pose(pose0, look((0, 0, -2.5), y)) for y in yaws[1:]])
    labels, reasons, _, _ = label_pairs(motion_table(points, rel, K), CameraMotionConfig(min_flow=0.01))
    assert labels[2] == "turn left" and reasons[-1] == "camera_motion/detour"


def test_generate_rejections():
    task = CameraMotionTask()
    lone = room_sequence([look((0, 0, -2.5)), None, None], name="lone")
    with pytest.raises(Reject, match="camera_motion/no_pose"):
        task.generate(lone, np.random.default_rng(0))
    # a still camera (no pair is clear: the pairs' own reason), and a pan (turns only: no confusable pair shows both
    # its motions)
    for poses, reason in (([look((0, 0, -2.5), 0.05 * i) for i in range(12)], "camera_motion/static"),
                          (walk([("tl", 10), ("tr", 10)]), "camera_motion/few_motions")):
        seq = room_sequence(poses, name="few")
        for seed in range(3):
            with pytest.raises(Reject, match=reason):
                task.generate(seq, np.random.default_rng(seed))
    blind = tour()
    blind = ArraySequence("blind", blind.rgb, blind.timestamps,
                          [DepthMap(d.values, np.zeros_like(d.valid), "metric") for d in blind.depth], blind.poses, K)
    with pytest.raises(Reject, match="camera_motion/no_depth"):
        task.generate(blind, np.random.default_rng(0))


# ------------------------------------------------------------------------------------ answers, verify, options
@pytest.mark.parametrize("seq_of", [tour, lambda: demo(0), lambda: demo(4)], ids=["room", "demo0", "demo4"])
def test_answers_rederived_and_verified(seq_of):
    seq = seq_of()
    made = samples(seq, 24) + samples(seq, 8, {"reverse": False}, seed=1)
    assert len(made) >= 8
    task = CameraMotionTask()
    for s in made:
        assert rederive(s.metadata, seq) == s.options[s.answer] == s.metadata["answer_text"]
        assert s.metadata["reversed"] == (s.metadata["frames"][1] < s.metadata["frames"][0])
        words = set(s.options.values())
        assert sum(set(p) <= words for p in PAIRS[:3]) == 2, "two whole confusable pairs"
        images = [decode_image(encode_image(im, "jpeg", 95)) for im in s.images]
        assert task.verify(images, s.answer, s.metadata, seq) == []


def test_verify_catches_tampering():
    seq = tour()
    task = CameraMotionTask()
    s = samples(seq, 4)[0]
    images = list(s.images)
    assert task.verify(images, wrong_answer(s.answer), s.metadata, seq)
    assert task.verify(images[::-1], s.answer, s.metadata, seq)  # frames swapped
    other = seq.frame((s.metadata["frames"][1] + 5) % len(seq)).source.image()
    assert any("image 2" in p for p in task.verify([images[0], other], s.answer, s.metadata, seq))
    meta = json.loads(json.dumps(s.metadata))
    meta["poses"][1][0][3] += 0.5
    assert any("pose of frame" in p for p in task.verify(images, s.answer, meta, seq))
    meta = json.loads(json.dumps(s.metadata))
    meta["flows"]["yaw"] += 0.05
    assert task.verify(images, s.answer, meta, seq)
    assert task.verify(images, s.answer, s.metadata, None) == ["source sequence unavailable: cannot re-read the poses and depth of the frames"]


def test_deterministic_and_letters_follow_slots():
    seq = tour()
    task = CameraMotionTask()

    def blob(slot: int, seed: int) -> bytes:
        s = task.generate(seq, np.random.default_rng(seed), slot)
        return json.dumps([s.question, s.answer, s.metadata, s.options]).encode() + b"".join(encode_image(i) for i in s.images)

    assert blob(2, 7) == blob(2, 7)
    for slot in range(4):
        s = task.generate(seq, np.random.default_rng(100 + slot), slot)
        assert s.answer == LETTERS[slot] and s.question.count("<image>") == 2


def test_targets_are_balanced_on_the_room_tour():
    """Each draw targets one motion uniformly; on a tour that shows them all, every answer comes about equally."""
    made = samples(tour(), 120)
    counts = Counter(s.metadata["answer_text"] for s in made)
    assert set(counts) == {w for p in PAIRS[:3] for w in p}
    assert max(counts.values()) <= 2.2 * min(counts.values()), counts


@lru_cache(maxsize=None)
def one_way() -> ArraySequence:
    """Walks forward, then moves right, then turns right, always forward in time: "move forward", "move right" and
    "turn right" only in time order, their inverses only reversed."""
    return room_sequence(walk([("f", 10), ("r", 8), ("tr", 8)]), name="one_way")


def test_shown_pairs_fixed_before_the_answer_and_whole():
    """Acceptance must not depend on anything drawn about the answer. The old draw picked the time direction first
    and kept "move forward" alone as the forward/backward pair: in time order this walk showed forward/backward and
    the right pair, reversed forward/backward and the left pair, so the option pool followed the answer's direction.
    Now both directions are labelled before any draw about the answer: every sample of this walk has all three
    pairs, each with both its motions seen, and the time order re-derived from the frames matches the motion."""
    made = samples(one_way(), 72)
    assert len(made) >= 60
    forward_in_time = {"move forward", "move right", "turn right"}
    for s in made:
        meta = s.metadata
        seen = meta.get("motions_seen", {})
        assert sorted(map(tuple, meta["sequence_pairs"])) == sorted(PAIRS[:3]), meta["sequence_pairs"]
        assert all(seen.get(w, 0) > 0 for pair in meta["sequence_pairs"] for w in pair), seen
        assert seen[meta["answer_text"]] >= meta["window_matches"] >= 1
        backwards = meta["frames"][1] < meta["frames"][0]
        assert meta["reversed"] == backwards and backwards != (meta["answer_text"] in forward_in_time), meta
    # given the option set, each pair is the answer's half of the time and each motion half of that: with 1/3 of
    # the draws per pair and 1/2 per motion, ~12 of 72 per motion; the bound fails with probability ~1e-3 per count
    counts = Counter(s.metadata["answer_text"] for s in made)
    for pair in PAIRS[:3]:
        a, b = counts[pair[0]], counts[pair[1]]
        assert abs(a - b) <= 3.3 * np.sqrt(a + b) / 2 + 1, (pair, a, b)
    sets = Counter((frozenset(p for p in PAIRS if set(p) <= set(s.options.values())), next(p for p in PAIRS if s.metadata["answer_text"] in p)) for s in made)
    for options in {o for o, _ in sets}:
        a, b = (sets[(options, p)] for p in sorted(options))
        assert abs(a - b) <= 3.3 * np.sqrt(a + b) / 2 + 1, (options, a, b)


def test_video_form():
    seq = tour()
    s = samples(seq, 3, {"videos": True, "video_frames": 5})[0]
    clip = s.metadata["clip_frames"]
    assert clip[0] == s.metadata["frames"][0] and clip[-1] == s.metadata["frames"][1] and len(s.videos[0]) == len(clip) >= 2
    assert s.video_question.count("<video>") == 1 and "<image>" not in s.video_question
    assert np.array_equal(np.asarray(s.videos[0][-1]), seq.frame(clip[-1]).rgb)
    assert clip_indices(10, 4, 4) == [10, 8, 6, 4] and clip_indices(3, 4, 8) == [3, 4]


# ---------------------------------------------------------------------------------------------- config, levels
@pytest.mark.parametrize(("key", "value"), [("max_ratio", 1.5), ("min_ratio", 0.9), ("min_flow", 0.0), ("max_gap_s", 0.1),
                                            ("video_frames", 1), ("max_flow", 0.01), ("max_detour", 0.5), ("flow_grid", 2)])
def test_config_errors_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"task.camera_motion.{key}"):
        CameraMotionTask({key: value})


def test_levels_declared_and_monotone():
    check_declared_levels("camera_motion")
    means = {}
    for level in (1, 2, 3):
        task = CameraMotionTask({"level": level})
        got = [task.difficulty(s.metadata) for i in range(4) for s in samples(demo(i), 10, {"level": level}, seed=level)]
        assert len(got) >= 8, level
        means[level] = (np.mean([g["ratio"] for g in got]), np.mean([g["flow"] for g in got]))
    assert means[1][0] < means[2][0] < means[3][0], means
    assert means[1][1] > means[2][1] > means[3][1], means


# ------------------------------------------------------------------------------------------------------ hooks
def rows_of(made: list, seq_id: str) -> list:
    from data_builders.stats import Row

    out = []
    for n, s in enumerate(made):
        meta = json.loads(json.dumps({**s.metadata, "source": {"id": f"{seq_id}-{n % 3}"}}))
        out.append(Row(f"{seq_id}-{n}", "train", s.task, s.variant, s.question, {"answer": s.answer, "options": s.options},
                       meta, [encode_image(i, "jpeg", 95) for i in s.images]))
    return out


def test_hooks_run_on_generated_rows(monkeypatch):
    from data_builders import audit_learned
    from data_builders.task_hooks import camera_motion as hooks

    for params in (audit_learned.HGB_PARAMS, audit_learned.GROUP_PARAMS):  # a smoke test: small fits
        monkeypatch.setitem(params, "max_iter", 5)

    rows = rows_of(samples(demo(0), 16) + samples(demo(4), 16), "demo")
    assert len(rows) >= 12
    for r in rows:
        assert hooks.check_metadata(r.answer, r.metadata) == []
    bad = json.loads(json.dumps(rows[0].metadata))
    bad["answer_text"] = next(w for w in bad["options"].values() if w != rows[0].metadata["answer_text"])
    assert hooks.check_metadata(rows[0].answer, bad)
    base = [{"id": r.id, "group": r.metadata["source"]["id"], "answer": r.answer} for r in rows]
    items = [hooks.extract(r, b) for r, b in zip(rows, base)]
    results = hooks.audit(items, "camera_motion")
    assert {r.solver for r in results} >= {"most frequent letter", "answer word given the option set"}
    for it, r in zip(items, rows):
        it["learned"] = hooks.learned_item(r, r.array, it)
    assert len(audit_learned.audit_learned("camera_motion", "camera_motion", items)) == 2
    seen = [{**hooks.sighted_item(r), "id": r.id, "level": None} for r in rows]
    direction = np.mean([s["direction"] for s in seen])
    assert direction >= 0.75, direction
    assert {r.target for r in hooks.sighted("camera_motion", seen)} == {"direction", "answer"}
    ov = hooks.overlay(rows[0], [decode_image(b) for b in rows[0].images], None)
    assert ov.notes == [] and ov.image.width > 300
