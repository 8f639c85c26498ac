"""Regional depth ordering: answers re-derived from the depth map, slot balance, inverse/relative depth, rejections."""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import make_source, textured_rgb
from ssrl_plugin.core import DepthMap, Source
from ssrl_plugin.errors import ConfigError, Reject
from ssrl_plugin.imaging import decode_image, encode_image
from ssrl_plugin.tasks.depth_common import DepthField, exact_percentiles, nan_quantiles, prepare_depth, window_stats
from ssrl_plugin.tasks.depth_order import PAPER_BANDS, PERMUTATIONS, DepthOrderTask

SIZES = [(240, 320), (241, 333), (480, 640), (333, 250), (301, 417), (128, 171)]


@lru_cache(maxsize=None)
def cached_source(seed: int, h: int, w: int, kind: str = "metric") -> Source:
    return make_source(seed, h, w, depth=True, kind=kind)


def jpeg(img: Image.Image) -> Image.Image:
    return decode_image(encode_image(img, "jpeg", 95))


def source_with_depth(values: np.ndarray, valid: np.ndarray | None = None, kind: str = "metric", seed: int = 0) -> Source:
    h, w = values.shape
    rgb = textured_rgb(seed, h, w)
    valid = np.isfinite(values) if valid is None else valid
    return Source(id="synthetic", rgb=rgb, digest=hashlib.sha256(rgb.tobytes()).hexdigest(),
                  depth=DepthMap(values.astype(np.float32), valid, kind))


def noise_depth(h: int, w: int, seed: int = 0, lo: float = 1.0, hi: float = 9.0) -> np.ndarray:
    """Per-pixel random depth: valid everywhere, flat nowhere."""
    return np.random.default_rng(seed).uniform(lo, hi, (h, w)).astype(np.float32)


def plates_source(h: int, w: int, plates: list[tuple[float, float, float, float, float]], seed: int = 0) -> Source:
    """Noise background (no flat window) with fronto-parallel plates (x0, y0, x1, y1 as fractions, depth)."""
    depth = noise_depth(h, w, seed)
    for x0, y0, x1, y1, z in plates:
        depth[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)] = z
    return source_with_depth(depth, seed=seed)


def box_median(source: Source, box: list[int]) -> float:
    """Depth of a region, read the plain way: median of the box's valid raw values, turned into a distance."""
    x0, y0, x1, y1 = box
    values = source.depth.values[y0:y1, x0:x1].astype(np.float64)
    ok = source.depth.valid[y0:y1, x0:x1]
    med = float(np.median(values[ok]))
    return 1.0 / med if source.depth.kind == "inverse" else med


def rederive(sample, source: Source) -> str:
    regions = sample.metadata["regions"]
    dist = {r["label"]: box_median(source, r["box"]) for r in regions}
    return "-".join(sorted(dist, key=dist.get))


TASK = DepthOrderTask()


@lru_cache(maxsize=None)
def many_samples():
    out = []
    for i in range(125):
        h, w = SIZES[i % len(SIZES)]
        source = cached_source(i // len(SIZES), h, w)
        out.append((source, TASK.generate(source, np.random.default_rng(i), i % 6), i % 6))
    return out


def test_answers_rederived_from_the_depth_map_over_many_seeds():
    samples = many_samples()
    assert len(samples) >= 100
    for source, sample, slot in samples:
        assert sample.answer == rederive(sample, source)
        assert sample.answer == "-".join(map(str, PERMUTATIONS[slot]))
        assert sample.images[0].size == (source.width, source.height)
        assert TASK.verify(sample.images, sample.answer, sample.metadata, source) == []


def test_verify_passes_after_jpeg_roundtrip():
    for source, sample, _ in many_samples()[::2]:
        assert TASK.verify([jpeg(sample.images[0])], sample.answer, sample.metadata, source) == []


def test_regions_are_flat_valid_spaced_separated_and_not_hidden():
    for source, sample, _ in many_samples():
        meta = sample.metadata
        rgb = np.asarray(sample.images[0])
        regions = sorted(meta["regions"], key=lambda r: r["median_farness"])
        for r in regions:
            x0, y0, x1, y1 = r["box"]
            assert x1 - x0 == y1 - y0 == meta["window_size"] and meta["window_size"] % 2 == 1
            assert np.array_equal(rgb[y0:y1, x0:x1], source.rgb[y0:y1, x0:x1]), "a marker covers a region"
            assert r["valid_fraction"] >= 0.9 and r["spread"] < meta["thresholds"]["flat_tol"]
        for a, b in zip(regions, regions[1:]):
            assert b["median_norm"] - a["median_norm"] >= meta["thresholds"]["min_gap"]
            assert b["median_farness"] >= a["median_farness"] * (1 + meta["thresholds"]["min_rel_gap"])
            assert b["p10_norm"] > a["p90_norm"]
        centres = np.array([r["center"] for r in regions], float)
        for i in range(3):
            for j in range(i + 1, 3):
                assert np.hypot(*(centres[i] - centres[j])) >= meta["min_center_distance_px"]
        w, h = meta["image_size"]
        assert meta["min_center_distance_px"] >= 0.15 * np.hypot(w, h) - 1e-6


def test_metadata_is_json_and_question_states_the_format():
    source, sample, _ = many_samples()[0]
    meta = json.loads(json.dumps(sample.metadata))
    assert meta == sample.metadata
    for key in ("depth_kind", "normalisation", "window_size", "regions", "ring_radius", "badge_radius"):
        assert key in meta
    assert {"label", "center", "box", "median_farness", "median_norm", "valid_fraction", "spread", "badge_center"} <= set(meta["regions"][0])
    assert "source" not in meta and "seed" not in meta
    assert sample.question.count("<image>") == 1
    assert "Smallest-Middle-Largest" in sample.question and "nearest" in sample.question and "farthest" in sample.question
    assert sample.task == "depth" and TASK.num_slots == 6


def test_verify_catches_corruption():
    source, sample, _ = many_samples()[3]
    meta = sample.metadata
    order = sample.answer.split("-")
    wrong = "-".join([order[1], order[0], order[2]])
    assert TASK.verify(sample.images, wrong, meta, source)

    swapped = json.loads(json.dumps(meta))  # region boxes exchanged: the depth read there no longer matches
    swapped["regions"][0]["box"], swapped["regions"][1]["box"] = swapped["regions"][1]["box"], swapped["regions"][0]["box"]
    assert TASK.verify(sample.images, sample.answer, swapped, source)

    badges = json.loads(json.dumps(meta))  # badges exchanged: the drawn labels no longer match the regions
    r0, r1 = badges["regions"][0], badges["regions"][1]
    r0["badge_center"], r1["badge_center"] = r1["badge_center"], r0["badge_center"]
    assert any("badge" in p for p in TASK.verify(sample.images, sample.answer, badges, source))

    erased = sample.images[0].copy()  # marker 1 painted over with the source: no ring there any more
    x, y = meta["regions"][0]["center"]
    r = int(meta["ring_radius"]) + 2
    box = (max(0, x - r), max(0, y - r), x + r, y + r)
    erased.paste(source.image().crop(box), box[:2])
    assert any("ring" in p for p in TASK.verify([erased], sample.answer, meta, source))

    hidden = sample.images[0].copy()  # region 2 painted over: it is no longer visible
    ImageDraw.Draw(hidden).rectangle([v - 1 for v in meta["regions"][1]["box"]], fill=(255, 255, 255))
    assert any("hidden" in p for p in TASK.verify([hidden], sample.answer, meta, source))

    assert TASK.verify(sample.images, sample.answer, meta, None)


def test_determinism():
    source = cached_source(7, 241, 333)
    a = TASK.generate(source, np.random.default_rng(42), 3)
    b = TASK.generate(source, np.random.default_rng(42), 3)
    assert a.images[0].tobytes() == b.images[0].tobytes()
    assert json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True)
    assert (a.question, a.answer) == (b.question, b.answer)
    c = TASK.generate(source, np.random.default_rng(43), 3)
    assert [r["center"] for r in c.metadata["regions"]] != [r["center"] for r in a.metadata["regions"]]


def test_slot_balance_each_slot_gives_its_permutation():
    source = cached_source(11, 240, 320)
    for slot, perm in enumerate(PERMUTATIONS):
        for k in range(3):
            sample = TASK.generate(source, np.random.default_rng(100 * slot + k), slot)
            assert sample.answer == "-".join(map(str, perm)) == rederive(sample, source)
    with pytest.raises(ValueError):
        TASK.generate(source, np.random.default_rng(0), 6)


@pytest.mark.parametrize("kind", ["inverse", "relative"])
def test_inverse_and_relative_depth_give_the_metric_answers(kind):
    """Same scene geometry as disparity (larger = nearer) or rescaled relative depth: identical samples."""
    for seed in range(20):
        h, w = SIZES[seed % len(SIZES)]
        metric = cached_source(seed, h, w)
        if kind == "inverse":
            other = cached_source(seed, h, w, "inverse")
        else:
            d = metric.depth
            other = Source("rel", metric.rgb, metric.digest, DepthMap(d.values * np.float32(37.5), d.valid, "relative"))
        a = TASK.generate(metric, np.random.default_rng(seed), seed % 6)
        b = TASK.generate(other, np.random.default_rng(seed), seed % 6)
        assert b.answer == a.answer == rederive(b, other)
        assert [r["box"] for r in b.metadata["regions"]] == [r["box"] for r in a.metadata["regions"]]
        assert b.metadata["depth_kind"] == kind and a.metadata["depth_kind"] == "metric"
        assert TASK.verify(b.images, b.answer, b.metadata, other) == []


def test_three_plates_are_found_and_ordered():
    source = plates_source(240, 320, [(0.05, 0.1, 0.3, 0.45, 2.0), (0.65, 0.1, 0.95, 0.45, 5.0), (0.35, 0.6, 0.65, 0.95, 12.0)])
    task = DepthOrderTask({"bands": PAPER_BANDS})
    for slot in range(6):
        sample = task.generate(source, np.random.default_rng(slot), slot)
        depths = sorted(r["median_farness"] for r in sample.metadata["regions"])
        assert depths == [2.0, 5.0, 12.0]
        assert sample.answer == rederive(sample, source)


def test_rejections():
    h, w = 240, 320
    rgb_only = make_source(1, h, w)
    with pytest.raises(Reject) as e:
        TASK.generate(rgb_only, np.random.default_rng(0))
    assert e.value.reason == "depth/no_depth"

    nan_map = source_with_depth(np.full((h, w), np.nan, np.float32), valid=np.ones((h, w), bool))
    all_invalid = source_with_depth(noise_depth(h, w), valid=np.zeros((h, w), bool))
    sparse = np.full((h, w), np.nan, np.float32)
    sparse[::5, ::5] = 3.0  # 4% valid, like a very sparse MegaDepth map
    for source in (nan_map, all_invalid, source_with_depth(sparse)):
        with pytest.raises(Reject) as e:
            TASK.generate(source, np.random.default_rng(0))
        assert e.value.reason == "depth/too_few_valid"

    with pytest.raises(Reject) as e:  # uniform depth: nothing can be ordered
        TASK.generate(source_with_depth(np.full((h, w), 4.0, np.float32)), np.random.default_rng(0))
    assert e.value.reason == "depth/no_separated_triple"

    with pytest.raises(Reject) as e:  # per-pixel noise: no window is flat
        TASK.generate(source_with_depth(noise_depth(h, w)), np.random.default_rng(0))
    assert e.value.reason == "depth/no_flat_regions"

    two_layers = plates_source(h, w, [(0.0, 0.0, 0.5, 1.0, 2.0), (0.5, 0.0, 1.0, 1.0, 8.0)])
    with pytest.raises(Reject) as e:  # only two distinct depths
        TASK.generate(two_layers, np.random.default_rng(0))
    assert e.value.reason == "depth/no_separated_triple"

    close = plates_source(h, w, [(0.05, 0.1, 0.3, 0.45, 5.0), (0.65, 0.1, 0.95, 0.45, 5.2), (0.35, 0.6, 0.65, 0.95, 5.4)])
    with pytest.raises(Reject) as e:  # three flat plates, but within 4% of each other
        TASK.generate(close, np.random.default_rng(0))
    assert e.value.reason == "depth/no_separated_triple"

    mismatched = Source("m", make_source(1, h, w).rgb, "0", DepthMap(np.ones((h + 1, w), np.float32), np.ones((h + 1, w), bool)))
    with pytest.raises(Reject) as e:
        TASK.generate(mismatched, np.random.default_rng(0))
    assert e.value.reason == "depth/no_depth"


@pytest.mark.parametrize(("override", "key"), [
    ({"window_frac": 2.0}, "task.depth.window_frac"),
    ({"min_valid_fraction": 0.1}, "task.depth.min_valid_fraction"),
    ({"norm_low_pct": 60.0}, "task.depth.norm_low_pct"),
    ({"flat_tol": 0.0}, "task.depth.flat_tol"),
    ({"min_gap": -0.1}, "task.depth.min_gap"),
    ({"min_rel_gap": 5.0}, "task.depth.min_rel_gap"),
    ({"bands": [[0.0, 0.5]]}, "task.depth.bands"),
    ({"bands": [[0.0, 0.5], [0.4, 0.6], [0.7, 1.0]]}, "task.depth.bands"),
    ({"max_tries": 0}, "task.depth.max_tries"),
    ({"no_such_key": 1}, "task.depth"),
])
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        DepthOrderTask(override)
    assert str(e.value).startswith(key)


def test_window_statistics_match_a_direct_computation():
    """Box sums and row-sorted quantiles agree with plain numpy on every window (invalid pixels left out)."""
    source = cached_source(3, 241, 333)
    field = prepare_depth(source, "depth", 0.5, 99.5, 0.1, "depth/x")
    xs, ys = np.array([6, 57, 200, 326]), np.array([6, 100, 234])
    rows = []
    for step in (1, 2, 3):  # the screen reads the pixels whose row and column are multiples of step
        stats = window_stats(field, xs, ys, 6, step)
        for k, (x, y) in enumerate(zip(stats.cx, stats.cy)):
            win = field.norm[y - 6:y + 7, x - 6:x + 7]
            ry, rx = np.arange(y - 6, y + 7), np.arange(x - 6, x + 7)
            lattice = win[np.ix_(ry % step == 0, rx % step == 0)]
            vals = lattice[np.isfinite(lattice)].astype(np.float64)
            if step == 1:
                rows.append(win.ravel())
            assert stats.valid_fraction[k] == pytest.approx(vals.size / lattice.size)
            if vals.size:
                assert stats.mean[k] == pytest.approx(vals.mean(), abs=1e-6)
                assert stats.std[k] == pytest.approx(vals.std(), abs=1e-4)
    q = nan_quantiles(np.array(rows), (0.1, 0.5, 0.9))
    for k, row in enumerate(rows):
        if np.isfinite(row).any():
            assert q[:, k] == pytest.approx(np.nanpercentile(row.astype(np.float64), (10, 50, 90)), abs=1e-6)
    assert isinstance(field, DepthField) and field.kind == "metric"


def test_generation_time_on_640x480():
    source = cached_source(5, 480, 640)
    TASK.generate(source, np.random.default_rng(0), 0)
    start = time.perf_counter()
    for i in range(20):
        TASK.generate(source, np.random.default_rng(i), i % 6)
    per_sample = (time.perf_counter() - start) / 20
    assert per_sample < 0.1, f"{per_sample * 1000:.1f} ms per sample"


@pytest.mark.parametrize("maker", [
    lambda rng: rng.random(400_000).astype(np.float32),
    lambda rng: rng.lognormal(0.0, 2.0, 300_000).astype(np.float32),  # long tail: the high percentile moves
    lambda rng: np.round(rng.random(250_000) * 7).astype(np.float32),  # heavy ties at every rank
    lambda rng: np.concatenate([np.full(120_000, 2.5, np.float32), rng.random(500).astype(np.float32)]),
])
def test_exact_percentiles_equal_numpy_bit_for_bit(maker):
    values = maker(np.random.default_rng(7))
    for pcts in ((0.5, 99.5), (0.0, 100.0), (10.0, 90.0), (0.01, 99.99)):
        assert exact_percentiles(values, pcts) == [float(v) for v in np.percentile(values, pcts)]
