"""Shuffled patch reordering: answers re-derived independently, determinism, rejection, config errors."""

from __future__ import annotations

import itertools
import json
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

try:  # conftest is importable by name under pytest's default (prepend) import mode
    from conftest import make_source
except ImportError:  # pragma: no cover - package-style test layout
    from tests.conftest import make_source
from ssrl_plugin.core import Source
from ssrl_plugin.errors import ConfigError, Reject
from ssrl_plugin.imaging import decode_image, encode_image
from ssrl_plugin.tasks.shuffle import PAPER_VARIANT_WEIGHTS, ShuffleTask, random_non_identity_permutation

SIZES = [(240, 320), (301, 417), (480, 640), (257, 199), (333, 500)]  # (h, w), several not divisible by 3 or 4
ALL_GRIDS = {"2x2": 1, "2x2_mask": 1, "1x3": 1, "1x4": 1, "3x1": 1, "4x1": 1, "3x3": 1, "2x3_mask": 1, "4x4": 1, "1x2": 1}


@lru_cache(maxsize=None)
def cached_source(seed: int, h: int, w: int) -> Source:
    """The conftest source, built once per (seed, size) for the raw and the JPEG runs (read-only use)."""
    return make_source(seed, h, w)


def jpeg(img: Image.Image) -> Image.Image:
    return decode_image(encode_image(img, "jpeg", 95))


def source_from(rgb: np.ndarray, name: str = "synthetic") -> Source:
    return Source(id=name, rgb=np.ascontiguousarray(rgb, dtype=np.uint8), digest="0" * 64)


def expected_crop(h: int, w: int, rows: int, cols: int) -> list[int]:
    """The centred crop we expect, written out independently of the grid module."""
    dh, dw = h % rows, w % cols
    return [dw // 2, dh // 2, w - (dw - dw // 2), h - (dh - dh // 2)]


def rederive(sample, source: Source) -> tuple[str, int | None]:
    """Answer re-derived from pixels only: each displayed patch's content region (border margin and the central
    label area left out) is compared with every source cell by mean absolute difference; the white patch takes
    the one position left over. Returns (answer, display index of the white patch)."""
    rows, cols = sample.metadata["grid"]
    k = rows * cols
    h, w = source.height, source.width
    x0, y0, x1, y1 = expected_crop(h, w, rows, cols)
    ph, pw = (y1 - y0) // rows, (x1 - x0) // cols
    out = np.asarray(sample.images[0], np.float32)
    assert out.shape == (ph * rows, pw * cols, 3)
    keep = np.zeros((ph, pw), bool)
    my, mx = max(4, ph // 12), max(4, pw // 12)
    keep[my:-my, mx:-mx] = True
    keep[ph // 4 : ph - ph // 4, pw // 4 : pw - pw // 4] = False  # label sits at the centre
    src = source.rgb.astype(np.float32)
    cells = [src[y0 + i * ph : y0 + (i + 1) * ph, x0 + j * pw : x0 + (j + 1) * pw][keep] for i in range(rows) for j in range(cols)]
    shown = [out[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw][keep] for i in range(rows) for j in range(cols)]
    white = [d for d in range(k) if shown[d].min() >= 240]
    origin = {}
    for d in range(k):
        if d in white:
            continue
        diffs = [np.abs(shown[d] - c).mean() for c in cells]
        origin[d] = int(np.argmin(diffs))
    assert len(set(origin.values())) == len(origin), "two patches matched the same cell"
    for d in white:
        (left,) = set(range(k)) - set(origin.values())
        origin[d] = left
    answer = "-".join(str(next(d for d in range(k) if origin[d] == pos)) for pos in range(k))
    return answer, (white[0] if white else None)


def collect(task: ShuffleTask, n_per_size: int) -> list[tuple[object, Source]]:
    out = []
    for (h, w), seed in itertools.product(SIZES, range(n_per_size)):
        src = cached_source(seed, h, w)
        try:
            out.append((task.generate(src, np.random.default_rng(seed * 7919 + h), 0), src))
        except Reject:
            pass
    return out


@pytest.mark.parametrize("roundtrip", [False, True], ids=["raw", "jpeg95"])
def test_answers_rederived_from_pixels(roundtrip):
    task = ShuffleTask({"variants": ALL_GRIDS})
    samples = collect(task, 24)
    assert len(samples) >= 100
    seen = set()
    for s, src in samples:
        if roundtrip:
            s.images = [jpeg(s.images[0])]
        answer, white = rederive(s, src)
        assert answer == s.answer, (s.variant, s.metadata["permutation"])
        assert s.answer != "-".join(str(i) for i in range(len(s.metadata["permutation"])))  # never the identity
        if s.metadata["masked"]:
            assert white == s.metadata["masked_display"]
        else:
            assert white is None
        assert task.verify(s.images, s.answer, s.metadata, src) == []
        seen.add(s.variant)
    assert seen == set(ALL_GRIDS)


def test_crop_is_explicit_and_centred(rgb_source):
    task = ShuffleTask({"variants": {"1x3": 1, "4x1": 1, "3x3_mask": 1}})
    for seed, (h, w) in enumerate([(301, 417), (257, 199), (333, 500), (241, 322)]):
        s = task.generate(rgb_source(seed, h, w), np.random.default_rng(seed), 0)
        rows, cols = s.metadata["grid"]
        assert s.metadata["crop_box"] == expected_crop(h, w, rows, cols)
        x0, y0, x1, y1 = s.metadata["crop_box"]
        assert s.images[0].size == (x1 - x0, y1 - y0) == tuple(s.metadata["output_size"])
        assert (w - (x1 - x0)) < cols and (h - (y1 - y0)) < rows
        assert s.metadata["cell_boxes"][0][:2] == [x0, y0] and s.metadata["cell_boxes"][-1][2:] == [x1, y1]
        json.dumps(s.metadata)  # plain JSON types only


def test_question_names_format():
    task = ShuffleTask()
    from ssrl_plugin.tasks.shuffle import build_question

    assert "'TopLeft-TopRight-BottomLeft-BottomRight'" in build_question(2, 2, False)
    assert "'Left-Middle-Right'" in build_question(1, 3, False)
    assert "'Left-Middle1-Middle2-Right'" in build_question(1, 4, False)
    assert "'Top-Middle-Bottom'" in build_question(3, 1, False)
    assert "'Top-Middle1-Middle2-Bottom'" in build_question(4, 1, False)
    q33 = build_question(3, 3, True)
    assert "R1C1-R1C2-R1C3-R2C1" in q33 and "reading order" in q33 and "white" in q33
    for q in (build_question(2, 2, True), q33):
        assert q.count("<image>") == 1 and "boxed" not in q
    assert task.variants() == list(PAPER_VARIANT_WEIGHTS)


def test_permutation_uniform_non_identity():
    rng = np.random.default_rng(0)
    counts: dict[tuple, int] = {}
    for _ in range(5000):
        p = tuple(random_non_identity_permutation(3, rng))
        counts[p] = counts.get(p, 0) + 1
    assert (0, 1, 2) not in counts and len(counts) == 5
    assert max(counts.values()) / min(counts.values()) < 1.2
    assert all(random_non_identity_permutation(2, rng) == [1, 0] for _ in range(20))
    assert all(random_non_identity_permutation(16, rng) != list(range(16)) for _ in range(50))


def test_variant_mix_follows_weights(rgb_source):
    task = ShuffleTask()
    rng = np.random.default_rng(1)
    draws = [task._draw_variant(rng) for _ in range(6000)]
    total = sum(PAPER_VARIANT_WEIGHTS.values())
    for name, w in PAPER_VARIANT_WEIGHTS.items():
        assert abs(draws.count(name) / len(draws) - w / total) < 0.03
    only = ShuffleTask({"variants": {"2x2_mask": 1.0}})  # a given dict replaces the paper's mix
    assert only.variants() == ["2x2_mask"]
    assert only.generate(rgb_source(3), np.random.default_rng(0)).variant == "2x2_mask"


def test_deterministic(rgb_source):
    task = ShuffleTask({"variants": ALL_GRIDS})
    src = rgb_source(11, 301, 417)
    a = task.generate(src, np.random.default_rng(5), 0)
    b = task.generate(src, np.random.default_rng(5), 0)
    assert a.images[0].tobytes() == b.images[0].tobytes()
    assert encode_image(a.images[0]) == encode_image(b.images[0])
    assert json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True)
    assert (a.question, a.answer) == (b.question, b.answer)
    others = {task.generate(src, np.random.default_rng(s), 0).answer for s in range(20)}
    assert len(others) > 3


def test_verify_catches_corruption(rgb_source):
    task = ShuffleTask({"variants": {"2x2": 1, "2x2_mask": 1, "1x4": 1}})
    checked = 0
    for seed in range(12):
        src = rgb_source(seed)
        s = task.generate(src, np.random.default_rng(seed), 0)
        labels = s.answer.split("-")
        swapped = labels[1:] + labels[:1]
        assert task.verify(s.images, "-".join(swapped), s.metadata, src)  # rotated answer
        assert task.verify(s.images, "0-0-1-2", s.metadata, src)
        bad = json.loads(json.dumps(s.metadata))
        bad["cell_boxes"] = bad["cell_boxes"][::-1]
        assert task.verify(s.images, s.answer, bad, src)
        if s.metadata["masked"]:
            bad = dict(s.metadata, masked_position=(s.metadata["masked_position"] + 1) % 4)
            assert task.verify(s.images, s.answer, bad, src)
        # The unshuffled crop as image: every patch matches its own position -> identity != answer.
        x0, y0, x1, y1 = s.metadata["crop_box"]
        plain = Image.fromarray(np.ascontiguousarray(src.rgb[y0:y1, x0:x1]))
        assert task.verify([plain], s.answer, s.metadata, src)
        assert task.verify(s.images, s.answer, s.metadata, None)
        checked += 1
    assert checked == 12


def test_rejects_uniform_and_duplicates():
    task = ShuffleTask({"variants": {"2x2": 1}})
    flat = source_from(np.full((240, 320, 3), 128, np.uint8))
    with pytest.raises(Reject) as e:
        task.generate(flat, np.random.default_rng(0), 0)
    assert e.value.reason == "shuffle/uniform_patch"

    tile = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    tiled = source_from(np.tile(tile, (2, 2, 1)))  # four identical quadrants: every order is correct
    with pytest.raises(Reject) as e:
        task.generate(tiled, np.random.default_rng(0), 0)
    assert e.value.reason == "shuffle/near_duplicate_patches"

    strips = ShuffleTask({"variants": {"1x3": 1}})
    noise = np.random.default_rng(1).integers(0, 256, (240, 100, 3), dtype=np.uint8)
    with pytest.raises(Reject) as e:  # two identical strips out of three
        strips.generate(source_from(np.concatenate([noise, noise, noise[::-1]], axis=1)), np.random.default_rng(0), 0)
    assert e.value.reason == "shuffle/near_duplicate_patches"

    with pytest.raises(Reject) as e:
        ShuffleTask({"variants": {"4x4": 1}}).generate(source_from(np.zeros((100, 100, 3), np.uint8)), np.random.default_rng(0), 0)
    assert e.value.reason == "shuffle/too_small"


def test_white_patch_is_excluded_from_checks(rgb_source):
    """One flat quadrant: plain 2x2 is rejected, the mask variant is accepted only when it hides that quadrant."""
    rgb = rgb_source(4).rgb.copy()
    rgb[:120, 160:] = 90  # top-right quadrant flat
    src = source_from(rgb)
    masked = ShuffleTask({"variants": {"2x2_mask": 1}})
    outcomes = []
    for seed in range(40):
        try:
            s = masked.generate(src, np.random.default_rng(seed), 0)
            outcomes.append(s.metadata["masked_position"])
            assert masked.verify([jpeg(s.images[0])], s.answer, s.metadata, src) == []
        except Reject as e:
            assert e.reason == "shuffle/uniform_patch"
            outcomes.append(None)
    assert set(outcomes) == {1, None}
    with pytest.raises(Reject):
        ShuffleTask({"variants": {"2x2": 1}}).generate(src, np.random.default_rng(0), 0)


@pytest.mark.parametrize(
    "overrides,key",
    [
        ({"variants": {"5x5": 1}}, "task.shuffle.variants.5x5"),
        ({"variants": {"1x1": 1}}, "task.shuffle.variants.1x1"),
        ({"variants": {"2x2_blur": 1}}, "task.shuffle.variants.2x2_blur"),
        ({"variants": {"2x2": -1}}, "task.shuffle.variants.2x2"),
        ({"variants": {"2x2": 0, "1x3": 0}}, "task.shuffle.variants"),
        ({"variants": {}}, "task.shuffle.variants"),
        ({"min_patch_side": 0}, "task.shuffle.min_patch_side"),
        ({"min_patch_std": -1}, "task.shuffle.min_patch_std"),
        ({"min_pair_diff": 5}, "task.shuffle.min_pair_diff"),
        ({"label_fraction": 0.9}, "task.shuffle.label_fraction"),
        ({"no_such_key": 1}, "task.shuffle"),
    ],
)
def test_config_errors_name_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        ShuffleTask(overrides)
    assert str(e.value).startswith(key)
    assert "\n" not in str(e.value)


def test_slot_out_of_range(rgb_source):
    with pytest.raises(ValueError):
        ShuffleTask().generate(rgb_source(0), np.random.default_rng(0), 1)
