"""Relative 3D position: answers re-derived by back-projecting the depth map, hand-built geometry, rejections."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from conftest import make_source, textured_rgb
from ssrl_plugin.core import DepthMap, Source
from ssrl_plugin.errors import ConfigError, Reject
from ssrl_plugin.imaging import decode_image, encode_image
from ssrl_plugin.tasks.position import DIAGONAL, LETTERS, STRAIGHT, PositionTask

SIZES = [(240, 320), (241, 333), (480, 640), (333, 250), (301, 417), (128, 171)]

# (forward, right) unit vectors in the image's (x, z) ground plane for each facing, written out by hand
AXES = {"away": ((0, 1), (1, 0)), "left": ((-1, 0), (0, 1)), "towards": ((0, -1), (-1, 0)), "right": ((1, 0), (0, -1))}


@lru_cache(maxsize=None)
def cached_source(seed: int, h: int, w: int, kind: str = "metric") -> Source:
    return make_source(seed, h, w, depth=True, kind=kind)


def jpeg(img: Image.Image) -> Image.Image:
    return decode_image(encode_image(img, "jpeg", 95))


def source_with_depth(values: np.ndarray, valid: np.ndarray | None = None, seed: int = 0, info: dict | None = None) -> Source:
    h, w = values.shape
    rgb = textured_rgb(seed, h, w)
    valid = np.isfinite(values) if valid is None else valid
    return Source(id="synthetic", rgb=rgb, digest=hashlib.sha256(rgb.tobytes()).hexdigest(),
                  depth=DepthMap(values.astype(np.float32), valid, "metric"), info=info or {})


def plates_source(h: int, w: int, plates: list[tuple[int, int, int, int, float]], seed: int = 0) -> Source:
    """Per-pixel noise depth in [1, 9] (valid, never flat) with fronto-parallel plates (x0, y0, x1, y1 px, depth)."""
    depth = np.random.default_rng(seed).uniform(1.0, 9.0, (h, w)).astype(np.float32)
    for x0, y0, x1, y1, z in plates:
        depth[y0:y1, x0:x1] = z
    return source_with_depth(depth, seed=seed)


def distance(source: Source, box: list[int]) -> float:
    x0, y0, x1, y1 = box
    values = source.depth.values[y0:y1, x0:x1].astype(np.float64)
    med = float(np.median(values[source.depth.valid[y0:y1, x0:x1]]))
    return 1.0 / med if source.depth.kind == "inverse" else med


def rederive(sample, source: Source) -> str:
    """Back-project both box centres, project the offset on the facing's hand-written axes, label it."""
    meta = sample.metadata
    pts = {}
    for r in meta["regions"]:
        z = distance(source, r["box"])
        u = (r["box"][0] + r["box"][2] - 1) / 2
        pts[r["label"]] = np.array([(u - meta["cx"]) * z / meta["focal_px"], z])
    d = pts[meta["target_label"]] - pts[meta["camera_label"]]
    fwd_axis, right_axis = AXES[meta["facing"]["name"]]
    forward, right = float(d @ fwd_axis), float(d @ right_axis)
    far = source.depth.farness()[source.depth.valid]
    scale = np.percentile(far, 99.5) - np.percentile(far, 0.5)
    count_at, zero_at = meta["thresholds"]["min_offset"] * scale, meta["thresholds"]["max_zero_offset"] * scale
    words = []
    for value, pos, neg in ((right, "Right", "Left"), (forward, "Front", "Back")):
        if abs(value) >= count_at:
            words.append(pos if value > 0 else neg)
        else:
            assert abs(value) <= zero_at, "an ambiguous component slipped through"
    return "-".join(words)


TASK = PositionTask()


@lru_cache(maxsize=None)
def many_samples():
    out = []
    for i in range(125):
        h, w = SIZES[i % len(SIZES)]
        source = cached_source(i // len(SIZES), h, w)
        try:
            out.append((source, TASK.generate(source, np.random.default_rng(i), i % 4), i % 4))
        except Reject:
            pass
    return out


def test_answers_rederived_by_back_projection_over_many_seeds():
    samples = many_samples()
    assert len(samples) >= 110
    for source, sample, slot in samples:
        meta = sample.metadata
        assert sample.answer == LETTERS[slot]
        assert sample.options == meta["options"] and sample.options[sample.answer] == meta["answer_text"]
        assert meta["answer_text"] == rederive(sample, source)
        pool = DIAGONAL if meta["option_set"] == "diagonal" else STRAIGHT
        assert sorted(sample.options.values()) == sorted(pool) and list(sample.options) == list(LETTERS)
        assert TASK.verify(sample.images, sample.answer, meta, source) == []
    texts = Counter(s.metadata["answer_text"] for _, s, _ in samples)
    assert set(texts) == set(STRAIGHT) | set(DIAGONAL), texts  # every answer text occurs


def test_verify_passes_after_jpeg_roundtrip():
    for source, sample, _ in many_samples()[::2]:
        assert TASK.verify([jpeg(sample.images[0])], sample.answer, sample.metadata, source) == []


def test_markers_on_valid_flat_windows_and_regions_visible():
    for source, sample, _ in many_samples():
        meta = sample.metadata
        rgb = np.asarray(sample.images[0])
        for r in meta["regions"]:
            x0, y0, x1, y1 = r["box"]
            assert source.depth.valid[y0:y1, x0:x1].mean() >= 0.9  # never on the sky / missing depth
            assert np.array_equal(rgb[y0:y1, x0:x1], source.rgb[y0:y1, x0:x1])
        (ax, ay), (bx, by) = (r["center"] for r in meta["regions"])
        assert np.hypot(ax - bx, ay - by) >= meta["min_center_distance_px"]


def test_fresh_random_pairs_without_centre_bias():
    source = cached_source(2, 240, 320)
    pairs, xs = set(), []
    for seed in range(40):
        try:
            sample = TASK.generate(source, np.random.default_rng(seed), seed % 4)
        except Reject:
            continue
        pairs.add(tuple(tuple(r["center"]) for r in sample.metadata["regions"]))
        xs += [r["center"][0] for r in sample.metadata["regions"]]
    assert len(pairs) >= 30
    assert min(xs) < 320 * 0.25 and max(xs) > 320 * 0.75  # markers reach both sides, not only the middle


def test_metadata_is_json_and_question_names_everything():
    source, sample, _ = many_samples()[0]
    meta = json.loads(json.dumps(sample.metadata))
    assert meta == sample.metadata
    for key in ("depth_kind", "focal_px", "cx", "normalisation", "regions", "camera_label", "target_label", "facing",
                "components", "thresholds", "option_set", "options", "answer_text"):
        assert key in meta
    assert {"label", "center", "box", "median_farness", "valid_fraction", "X", "Z"} <= set(meta["regions"][0])
    assert "source" not in meta and "seed" not in meta
    q = sample.question
    assert q.count("<image>") == 1
    assert f"region {meta['camera_label']}" in q and f"region {meta['target_label']}" in q
    for letter, text in sample.options.items():
        assert f"{letter}. {text}\n" in q
    assert "letter" in q


def test_verify_catches_corruption():
    source, sample, _ = many_samples()[5]
    meta = sample.metadata
    wrong = next(letter for letter in LETTERS if letter != sample.answer)
    assert TASK.verify(sample.images, wrong, meta, source)

    for field, value in (("facing", {"name": "x", "degrees": (meta["facing"]["degrees"] + 180) % 360}),
                         ("camera_label", meta["target_label"])):
        bad = json.loads(json.dumps(meta))
        bad[field] = value
        if field == "camera_label":
            bad["target_label"] = meta["camera_label"]
        assert TASK.verify(sample.images, sample.answer, bad, source), field

    moved = json.loads(json.dumps(meta))  # a region moved: the ring is no longer around it
    moved["regions"][0]["box"] = [v + 7 for v in moved["regions"][0]["box"]]
    moved["regions"][0]["center"] = [v + 7 for v in moved["regions"][0]["center"]]
    assert TASK.verify(sample.images, sample.answer, moved, source)

    assert TASK.verify(sample.images, sample.answer, meta, None)


def test_determinism():
    source = cached_source(4, 301, 417)
    a = TASK.generate(source, np.random.default_rng(9), 2)
    b = TASK.generate(source, np.random.default_rng(9), 2)
    assert a.images[0].tobytes() == b.images[0].tobytes()
    assert json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True)
    assert (a.question, a.answer, a.options) == (b.question, b.answer, b.options)


def test_slot_balance_each_slot_is_the_answer_letter():
    source = cached_source(8, 240, 320)
    for slot in range(4):
        for k in range(4):
            sample = TASK.generate(source, np.random.default_rng(10 * slot + k), slot)
            assert sample.answer == LETTERS[slot]
            assert sample.options[LETTERS[slot]] == sample.metadata["answer_text"] == rederive(sample, source)


# Two plates: A on the left and near (z = 2), B on the right and far (z = 8): expected label from A to B per facing
FROM_NEAR_LEFT = {"away": "Right-Front", "towards": "Left-Back", "left": "Right-Back", "right": "Left-Front"}
FROM_FAR_RIGHT = {"away": "Left-Back", "towards": "Right-Front", "left": "Left-Front", "right": "Right-Back"}


@pytest.mark.parametrize("facing", ["away", "left", "towards", "right"])
def test_hand_built_geometry_every_facing(facing):
    h, w = 240, 320
    source = plates_source(h, w, [(20, 60, 100, 180, 2.0), (220, 60, 300, 180, 8.0)])
    task = PositionTask({"facing_weights": {f: float(f == facing) for f in AXES}})
    seen = set()
    for seed in range(12):
        sample = task.generate(source, np.random.default_rng(seed), seed % 4)
        meta = sample.metadata
        assert meta["facing"]["name"] == facing and meta["focal_from"] == "fov_deg"
        cam = next(r for r in meta["regions"] if r["label"] == meta["camera_label"])
        expected = FROM_NEAR_LEFT if cam["median_farness"] == 2.0 else FROM_FAR_RIGHT
        assert sample.options[sample.answer] == expected[facing]
        seen.add(cam["median_farness"])
    assert seen == {2.0, 8.0}  # the camera stood on both plates


def test_hand_built_straight_answers():
    h, w = 240, 320
    cx = (w - 1) // 2
    # same column (x offsets cancel), different depths: Front / Back only
    column = plates_source(h, w, [(cx - 15, 10, cx + 16, 90, 2.0), (cx - 15, 150, cx + 16, 230, 8.0)])
    away = PositionTask({"facing_weights": {"away": 1.0, "left": 0.0, "towards": 0.0, "right": 0.0}})
    for seed in range(6):
        sample = away.generate(column, np.random.default_rng(seed), seed % 4)
        cam = next(r for r in sample.metadata["regions"] if r["label"] == sample.metadata["camera_label"])
        assert sample.metadata["option_set"] == "straight"
        assert sample.options[sample.answer] == ("Front" if cam["median_farness"] == 2.0 else "Back")
    # same depth, side by side: Left / Right only; a focal length given by the source is used
    row = plates_source(h, w, [(10, 80, 110, 160, 6.0), (210, 80, 310, 160, 6.0)])
    row.info["focal_px"] = 200.0
    for seed in range(6):
        sample = away.generate(row, np.random.default_rng(seed), seed % 4)
        cam = next(r for r in sample.metadata["regions"] if r["label"] == sample.metadata["camera_label"])
        assert sample.metadata["focal_px"] == 200.0 and sample.metadata["focal_from"] == "source"
        assert sample.options[sample.answer] == ("Right" if cam["center"][0] < w / 2 else "Left")
        assert PositionTask().verify(sample.images, sample.answer, sample.metadata, row) == []


def test_inverse_depth_gives_the_metric_answers():
    for seed in range(20):
        h, w = SIZES[seed % len(SIZES)]
        metric, inverse = cached_source(seed, h, w), cached_source(seed, h, w, "inverse")
        try:
            a = TASK.generate(metric, np.random.default_rng(seed), seed % 4)
        except Reject as e:
            with pytest.raises(Reject) as e2:
                TASK.generate(inverse, np.random.default_rng(seed), seed % 4)
            assert e2.value.reason == e.reason
            continue
        b = TASK.generate(inverse, np.random.default_rng(seed), seed % 4)
        assert (b.answer, b.options, b.metadata["answer_text"]) == (a.answer, a.options, a.metadata["answer_text"])
        assert [r["box"] for r in b.metadata["regions"]] == [r["box"] for r in a.metadata["regions"]]
        assert b.metadata["depth_kind"] == "inverse"
        assert b.metadata["answer_text"] == rederive(b, inverse)
        assert TASK.verify(b.images, b.answer, b.metadata, inverse) == []


def test_rejections():
    h, w = 240, 320

    def reason(source: Source, task: PositionTask = TASK) -> str:
        with pytest.raises(Reject) as e:
            task.generate(source, np.random.default_rng(0))
        return e.value.reason

    assert reason(make_source(1, h, w)) == "position/no_depth"
    assert reason(source_with_depth(np.full((h, w), np.nan, np.float32), valid=np.ones((h, w), bool))) == "position/too_few_valid"
    assert reason(source_with_depth(np.ones((h, w), np.float32), valid=np.zeros((h, w), bool))) == "position/too_few_valid"
    noise = np.random.default_rng(0).uniform(1, 9, (h, w)).astype(np.float32)
    assert reason(source_with_depth(noise)) == "position/no_valid_windows"  # nothing flat
    one_plate = plates_source(h, w, [(100, 80, 160, 140, 3.0)])
    assert reason(one_plate) == "position/no_valid_windows"  # flat windows, but no two far enough apart
    # two plates at one depth, ~70 px apart: the lateral offset (~1.3) lies between zero (0.4) and count (4)
    twins = plates_source(h, w, [(90, 80, 130, 160, 5.0), (160, 80, 200, 160, 5.0)])
    assert reason(twins, PositionTask({"min_offset": 0.5, "min_marker_distance": 0.1})) == "position/ambiguous"
    # ... and with a wide zero band (2.4) both axes are zero: too close to tell
    assert reason(twins, PositionTask({"min_offset": 0.5, "max_zero_offset": 0.3, "min_marker_distance": 0.1})) == "position/too_close"


@pytest.mark.parametrize(("override", "key"), [
    ({"min_offset": 0.0}, "task.position.min_offset"),
    ({"max_zero_offset": 0.2}, "task.position.max_zero_offset"),
    ({"fov_deg": 0.0}, "task.position.fov_deg"),
    ({"facing_weights": {"up": 1.0}}, "task.position.facing_weights"),
    ({"facing_weights": {"away": 0.0, "left": 0.0, "towards": 0.0, "right": 0.0}}, "task.position.facing_weights"),
    ({"window_frac": 0.0}, "task.position.window_frac"),
    ({"min_marker_distance": 2.0}, "task.position.min_marker_distance"),
    ({"max_pair_tries": 0}, "task.position.max_pair_tries"),
])
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        PositionTask(override)
    assert str(e.value).startswith(key)
