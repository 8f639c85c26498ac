"""Crop task (cropped patch inpainting): answers re-derived independently, shortcut cues measured, rejections."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import make_source
from ssrl_plugin.core import Source
from ssrl_plugin.errors import ConfigError, Reject
from ssrl_plugin.imaging import decode_image, encode_image
from ssrl_plugin.tasks.crop import LETTERS, METHODS, CropTask

SIZES = [(240, 320), (480, 640), (333, 517), (301, 301), (257, 190), (131, 411)]  # odd, non-divisible, portrait
PAPER = {"scale_mode": "paper"}


def jpeg_roundtrip(img: Image.Image, quality: int = 95) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def stored(img: Image.Image) -> tuple[np.ndarray, int]:
    """An option as the build stores it (output defaults: JPEG q95, 4:4:4): decoded pixels and byte size."""
    data = encode_image(img, "jpeg", 95)
    return np.asarray(decode_image(data)), len(data)


def area_resize(patch: np.ndarray, side: int) -> np.ndarray:
    """Test-only reference resampler: exact area averaging via cumulative sums (no Pillow involved)."""
    n = patch.shape[0]
    edges = np.linspace(0, n, side + 1)

    def weights() -> np.ndarray:  # (side, n): overlap of output cell i with input pixel j, normalised
        lo, hi = edges[:-1, None], edges[1:, None]
        j = np.arange(n)[None, :]
        return np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None) / (hi - lo)

    wm = weights()
    rows = np.tensordot(wm.astype(np.float32), patch.astype(np.float32), axes=(1, 0))  # (side, n, 3)
    return np.tensordot(rows, wm.astype(np.float32), axes=(1, 1)).transpose(0, 2, 1)  # (side, side, 3)


def normalised(rgb: np.ndarray, block: int = 4) -> np.ndarray:
    """Grey, zero mean and unit std, averaged over block x block cells (blind to blur, gain and offset)."""
    g = np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])
    g = (g - g.mean()) / max(g.std(), 1e-6)
    n = g.shape[0] // block * block
    return g[:n, :n].reshape(n // block, block, n // block, block).mean(axis=(1, 3))


def rederive(images: list[Image.Image], metadata: dict, source: Source) -> str:
    """The letter whose option is nearest to the area-averaged source crop (contrast-normalised)."""
    x0, y0, x1, y1 = metadata["crop_box"]
    side = images[1].width
    ref = normalised(area_resize(source.rgb[y0:y1, x0:x1], side))
    dists = [np.abs(normalised(np.asarray(im)) - ref).mean() for im in images[1:]]
    return LETTERS[int(np.argmin(dists))]


def samples(task: CropTask, n: int, seed0: int = 0, max_rejects: int | None = None):
    """(source, sample) pairs over many sizes, seeds and slots: n of them, skipping the rare rejected draw."""
    made = rejected = 0
    i = seed0
    while made < n:
        src = make_source(i, *SIZES[i % len(SIZES)])
        try:
            s = task.generate(src, np.random.default_rng(i + 10_000), i % 4)
        except Reject as exc:
            rejected += 1
            assert rejected <= (n if max_rejects is None else max_rejects) and exc.reason in ("crop/too_few_distractors", "crop/uniform_window", "crop/look_alike_options"), exc
        else:
            made += 1
            yield src, s
        i += 1


def image_bytes(sample) -> list[str]:
    return [hashlib.sha256(im.tobytes()).hexdigest() for im in sample.images]


# --------------------------------------------------------------------------- correctness


def test_answer_rederived_raw_and_after_jpeg():
    task = CropTask()
    n = 0
    for src, s in samples(task, 90):
        assert len(s.images) == 5 and s.question.count("<image>") == 5
        assert s.answer in LETTERS and s.options[s.answer] == "true_crop"
        assert rederive(s.images, s.metadata, src) == s.answer
        assert task.verify(s.images, s.answer, s.metadata, src) == []
        jpg = [jpeg_roundtrip(im) for im in s.images]
        assert rederive(jpg, s.metadata, src) == s.answer
        assert task.verify(jpg, s.answer, s.metadata, src) == []
        n += 1
    assert n == 90


def test_paper_mode_answers_and_verify():
    task = CropTask(PAPER)
    for src, s in samples(task, 40, seed0=700):
        assert rederive(s.images, s.metadata, src) == s.answer
        assert task.verify(s.images, s.answer, s.metadata, src) == []
        assert s.metadata["field_of_view_rank"] is None and s.metadata["scale_mode"] == "paper"


def test_metadata_geometry_and_json():
    task = CropTask()
    for src, s in samples(task, 60, seed0=500):
        md = s.metadata
        json.dumps(md)  # plain python types only
        x0, y0, x1, y1 = md["crop_box"]
        side = x1 - x0
        assert side == y1 - y0 and md["crop_side"] == side
        assert 0 <= x0 and x1 <= src.width and 0 <= y0 and y1 <= src.height
        assert all(im.size == (md["option_side"],) * 2 for im in s.images[1:])
        smallest = min(o["window"][2] - o["window"][0] for o in md["options"])
        assert md["option_side"] == min(smallest, 512)  # the smallest window's side: never upscaled
        assert s.images[0].size == (src.width, src.height)
        methods = [o["method"] for o in md["options"]]
        assert methods.count("true_crop") == 1 and set(methods) <= {"true_crop", "zoom_in", "context"}
        for o in md["options"]:
            wx0, wy0, wx1, wy1 = o["window"]
            assert wx1 - wx0 == wy1 - wy0 >= md["option_side"]
            assert 0 <= wx0 and 0 <= wy0 and wx1 <= src.width and wy1 <= src.height
            assert o["rotation"] == 0
            assert o["field_of_view"] == pytest.approx((wx1 - wx0) / side, abs=1e-4)
        assert md["field_of_view_rank"] == sum(o["field_of_view"] < 1 for o in md["options"])


# --------------------------------------------------------------------------- the nested construction


def window_side(o: dict) -> int:
    return o["window"][2] - o["window"][0]


def test_nested_windows_are_concentric_in_the_band_and_the_hole_rank_is_uniform():
    """Four concentric windows, sides within a factor 2 around min(H, W) / 2 and >= 1.2x apart; the hole is one of
    them at a uniform rank; smaller ones are zoom_in (inside the hole, centred), larger ones context (around it)."""
    task = CropTask()
    ranks = Counter()
    for src, s in samples(task, 200, seed0=2000):
        md = s.metadata
        box = md["crop_box"]
        sides = sorted(window_side(o) for o in md["options"])
        mid = min(src.width, src.height) / 2
        assert mid / 2**0.5 - 1 <= sides[0] and sides[-1] <= mid * 2**0.5 + 1
        assert min(b / a for a, b in zip(sides, sides[1:])) >= 1.2 * (1 - 1 / sides[0])
        centres = np.array([[o["window"][0] + o["window"][2], o["window"][1] + o["window"][3]] for o in md["options"]]) / 2
        assert np.abs(centres - centres[0]).max() <= 1.0
        rank = sides.index(box[2] - box[0])
        assert md["field_of_view_rank"] == rank
        ranks[rank] += 1
        for o in md["options"]:
            w = o["window"]
            if window_side(o) < box[2] - box[0]:
                assert o["method"] == "zoom_in" and box[0] < w[0] and w[2] < box[2] and box[1] < w[1] and w[3] < box[3]
            elif window_side(o) > box[2] - box[0]:
                assert o["method"] == "context" and w[0] <= box[0] and w[1] <= box[1] and box[2] <= w[2] and box[3] <= w[3]
            else:
                assert o["method"] == "true_crop" and w == box
            assert o["rotation"] == 0
    assert all(30 <= ranks[r] <= 72 for r in range(4)), ranks  # 50 expected each


class ForcedRank:
    """Generator stand-in whose draw of the hole's rank (``integers(4)``) returns ``rank``; random otherwise."""

    def __init__(self, seed: int, rank: int):
        self._rng, self._rank = np.random.default_rng(seed), rank

    def integers(self, low, high=None, *args, **kwargs):
        return self._rank if (low, high) == (4, None) else self._rng.integers(low, high, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._rng, name)


def test_options_do_not_depend_on_which_window_is_the_hole():
    """The four option images are made before the hole is drawn: forcing every possible rank, the same draws give the
    same four images (as a set) and only the letters and the hole move. This is what makes the construction blind-
    proof: given the options, each one is the answer with probability 1/4."""
    import ssrl_plugin.tasks.crop as crop_mod

    task = CropTask()
    src = make_source(4, 333, 517)
    seed = next(k for k in range(50) if _accepted(task, src, k))
    seen = []
    for rank in range(4):
        s = task.generate(src, ForcedRank(seed, rank), 1)  # type: ignore[arg-type]
        assert s.metadata["field_of_view_rank"] == rank
        seen.append(sorted(hashlib.sha256(im.tobytes()).hexdigest() for im in s.images[1:]))
        assert task.verify(s.images, s.answer, s.metadata, src) == []
    assert all(x == seen[0] for x in seen)
    assert crop_mod.CONTEXT == "context" and crop_mod.ZOOM == "zoom_in"


def _accepted(task: CropTask, src: Source, seed: int) -> bool:
    try:
        task.generate(src, np.random.default_rng(seed), 0)
        return True
    except Reject:
        return False


def test_checks_treat_all_four_windows_alike():
    """A uniform or a look-alike window rejects the sample whichever window it is, not only when it is the hole:
    otherwise the accepted samples' true option would be the least uniform one."""
    flat = np.full((240, 320, 3), 90, np.uint8)
    yy, xx = np.mgrid[0:240, 0:320]
    flat[(yy // 8 + xx // 8) % 2 == 0] = 200  # a checkerboard frame...
    flat[50:190, 90:230] = 90  # ...around a flat centre: the smallest windows can fall inside it
    src = Source("test/flat_centre", flat, "x")
    reasons = Counter()
    for seed in range(60):
        outcomes = set()
        for rank in range(4):  # the hole anywhere in the chain: the same verdict
            try:
                CropTask().generate(src, ForcedRank(seed, rank), 0)  # type: ignore[arg-type]
                outcomes.add("ok")
            except Reject as e:
                outcomes.add(e.reason)
        assert len(outcomes) == 1, (seed, outcomes)
        reasons[outcomes.pop()] += 1
    assert reasons["crop/uniform_window"] > 0 and reasons["ok"] > 0, reasons


def test_no_single_statistic_finds_the_answer():
    """Picking the sharpest/blurriest, brightest/darkest or largest/smallest stored option finds the answer at chance
    (25 %): on 240 samples every such rule stays inside a 99 % binomial band around 1/4. ``ssrl audit`` runs the
    rules, the learned blind solvers and the sighted ones on a build."""
    task = CropTask()
    hits = {f"{k}_{e}": 0 for k in ("lap", "bright", "jpeg") for e in ("max", "min")}
    n = 0
    for _, s in samples(task, 240, seed0=3000):
        opts = [stored(im) for im in s.images[1:]]
        a = s.metadata["answer_index"]
        for key, fn in (("lap", lambda o: lap_var(o[0])), ("bright", lambda o: float(o[0].mean())), ("jpeg", lambda o: o[1])):
            v = [fn(o) for o in opts]
            hits[f"{key}_max"] += int(np.argmax(v) == a)
            hits[f"{key}_min"] += int(np.argmin(v) == a)
        n += 1
    band = 2.58 * (0.25 * 0.75 / n) ** 0.5
    rates = {k: v / n for k, v in hits.items()}
    assert all(abs(r - 0.25) < band for r in rates.values()), (rates, band)


def lap_var(a: np.ndarray) -> float:
    g = np.asarray(a, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


# --------------------------------------------------------------------------- rotations, contexts, the hole


def test_rotation_direction_is_clockwise():
    # paper mode: a rotation is the true option turned
    task = CropTask({**PAPER, "distractor_weights": {"zoom_in": 0, "context_0.25": 0, "context_0.5": 1, "rotate_cw": 1, "rotate_ccw": 1}})
    src = make_source(3, 240, 320)
    s = task.generate(src, np.random.default_rng(1), 0)
    true = np.asarray(s.images[1], np.float32)
    for o, im in zip(s.metadata["options"], s.images[1:]):
        if o["method"] == "rotate_cw":
            assert np.abs(np.asarray(im, np.float32) - np.rot90(true, k=-1)).max() < 1e-6
        if o["method"] == "rotate_ccw":
            assert np.abs(np.asarray(im, np.float32) - np.rot90(true, k=1)).max() < 1e-6


def test_context_windows_are_shifted_not_clipped():
    for cfg in (PAPER,):
        task = CropTask({**cfg, "distractor_weights": {"zoom_in": 1, "rotate_cw": 0, "rotate_ccw": 0, "context_0.25": 1, "context_0.5": 1}})
        shifted = 0
        for src, s in samples(task, 40, seed0=900, max_rejects=40):  # only three methods: fewer ways out
            x0, y0, x1, y1 = s.metadata["crop_box"]
            for o in s.metadata["options"]:
                if o["method"].startswith("context"):
                    wx0, wy0, wx1, wy1 = o["window"]
                    m = (wx1 - wx0 - (x1 - x0)) // 2
                    if cfg:
                        assert m == int(float(o["method"].split("_")[1]) * (x1 - x0))  # the paper's margins
                    assert wx1 - wx0 == (x1 - x0) + 2 * m and m > 0  # full size, square
                    assert wx0 <= x0 and wy0 <= y0 and x1 <= wx1 and y1 <= wy1  # still contains the crop
                    assert o["shifted"] == ((wx0, wy0) != (x0 - m, y0 - m))
                    shifted += o["shifted"]
            assert task.verify(s.images, s.answer, s.metadata, src) == []
        assert shifted > 0


def test_context_too_big_is_unavailable():
    # paper scales, s = 0.6 * min(H, W): the 0.5 margin window (2s) cannot fit, the 0.25 one (1.5s) can.
    task = CropTask({**PAPER, "size_frac": 0.6})
    seen_unavailable = False
    for src, s in samples(task, 30, seed0=1300):
        assert "context_0.5" not in [o["method"] for o in s.metadata["options"]]
        seen_unavailable |= any(u[0] == "context_0.5" for u in s.metadata["unavailable_methods"])
        assert task.verify(s.images, s.answer, s.metadata, src) == []
    assert seen_unavailable
    # nested: size_frac * sqrt(scale_span) > 1 would put the largest window outside the picture: a config error
    with pytest.raises(ConfigError) as exc:
        CropTask({"size_frac": 0.75})
    assert str(exc.value).startswith("task.crop.size_frac")


def test_hole_is_visible_on_dark_images():
    task = CropTask()
    src = make_source(7, 240, 320)
    src = Source("test/dark", (src.rgb // 4).astype(np.uint8), "x")  # dark photo (values <= 63)
    for seed in range(10):  # distractors too close to the crop in a dark, smooth picture can reject a draw
        try:
            s = task.generate(src, np.random.default_rng(seed), 1)
            break
        except Reject:
            continue
    x0, y0, x1, y1 = s.metadata["crop_box"]
    hole = np.asarray(s.images[0], np.float32)
    bands = s.metadata["hole"]["outline"]
    inner_edge = bands[0]["width"]  # the white band starts after the red one
    white = hole[y0 + inner_edge + bands[1]["width"] // 2, x0 + inner_edge + 2 : x1 - inner_edge - 2]
    assert white.mean() > 200  # bright outline on a dark picture
    assert hole[y0 + 20 : y1 - 20, x0 + 20 : x1 - 20].max() == 0
    assert s.metadata["hole"]["fill"] == [0, 0, 0]
    assert task.verify(s.images, s.answer, s.metadata, src) == []


# --------------------------------------------------------------------------- verify catches corruption


def test_verify_catches_corruption():
    task = CropTask()
    src, s = next(samples(task, 1, seed0=42))
    assert task.verify(s.images, s.answer, s.metadata, src) == []
    wrong = LETTERS[(LETTERS.index(s.answer) + 1) % 4]
    assert task.verify(s.images, wrong, s.metadata, src)

    md = {**s.metadata, "crop_box": [v + 17 for v in s.metadata["crop_box"]]}
    assert task.verify(s.images, s.answer, md, src)

    imgs = list(s.images)
    a = LETTERS.index(s.answer) + 1
    b = 1 if a != 1 else 2
    imgs[a], imgs[b] = imgs[b], imgs[a]  # options swapped behind the metadata's back
    assert task.verify(imgs, s.answer, s.metadata, src)

    opts = [dict(o) for o in s.metadata["options"]]
    k = next(i for i, o in enumerate(opts) if o["method"] != "true_crop")
    opts[k]["window"] = [0, 0, 10, 10]  # distractor no longer matches its described construction
    assert task.verify(s.images, s.answer, {**s.metadata, "options": opts}, src)

    opts = [dict(o) for o in s.metadata["options"]]
    opts[k]["window"] = list(s.metadata["crop_box"])  # a distractor claiming the crop's own window
    assert task.verify(s.images, s.answer, {**s.metadata, "options": opts}, src)

    assert task.verify(s.images, s.answer, {**s.metadata, "field_of_view_rank": (s.metadata["field_of_view_rank"] + 1) % 4}, src)

    filled = s.images[0].copy()  # hole painted over with the original content
    filled.paste(Image.fromarray(src.rgb), (0, 0))
    assert task.verify([filled] + s.images[1:], s.answer, s.metadata, src)
    assert task.verify(s.images, s.answer, s.metadata, None)


# --------------------------------------------------------------------------- determinism, balance


def test_determinism():
    task = CropTask()
    src = make_source(11, 333, 517)
    a = task.generate(src, np.random.default_rng(123), 2)
    b = task.generate(src, np.random.default_rng(123), 2)
    assert image_bytes(a) == image_bytes(b) and a.metadata == b.metadata and a.answer == b.answer
    c = task.generate(src, np.random.default_rng(124), 2)
    assert c.metadata != a.metadata


def test_slot_balance():
    task = CropTask()
    counts = Counter()
    for i in range(80):
        slot = i % 4
        try:
            s = task.generate(make_source(i), np.random.default_rng(i), slot)
        except Reject:
            continue
        assert s.answer == LETTERS[slot] and s.metadata["answer_index"] == slot
        for o in s.metadata["options"]:
            counts[o["method"]] = counts.get(o["method"], 0) + 1
    with pytest.raises(ValueError):
        task.generate(make_source(0), np.random.default_rng(0), 4)
    assert counts["zoom_in"] > 40 and counts["context"] > 40, counts  # 1.5 of each per sample expected


# --------------------------------------------------------------------------- rejections


class CentredRng:
    """Generator stand-in that puts the crop in the middle of the image (integers) and is random otherwise."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)

    def integers(self, low, high=None, *args, **kwargs):
        return (high - 1) // 2 if high is not None else low // 2

    def __getattr__(self, name):
        return getattr(self._rng, name)


def rings_source(size: int = 200) -> Source:
    """Concentric rings about the image centre: any centred square crop is 90-degree rotation-symmetric."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    r = np.hypot(xx, yy)
    grey = (127 + 120 * np.cos(r / 3.0)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    return Source("test/rings", rgb, "x")


def test_rotation_symmetric_content_drops_rotations():
    # paper mode (rotations turn the crop): a rotation-symmetric crop makes them useless, so they are dropped
    task = CropTask(PAPER)
    src = rings_source()
    for seed in range(8):
        s = task.generate(src, CentredRng(seed), seed % 4)  # type: ignore[arg-type]
        methods = [o["method"] for o in s.metadata["options"]]
        assert not any(m.startswith("rotate") for m in methods), methods
        dropped = [u[0] for u in s.metadata["unavailable_methods"]]
        assert all(m.startswith("rotate") for m in dropped)
        assert task.verify(s.images, s.answer, s.metadata, src) == []
    only_rot = CropTask({**PAPER, "distractor_weights": {"zoom_in": 1, "context_0.25": 0, "context_0.5": 0, "rotate_cw": 1, "rotate_ccw": 1}})
    with pytest.raises(Reject) as exc:
        only_rot.generate(src, CentredRng(0), 0)  # type: ignore[arg-type]
    assert exc.value.reason == "crop/too_few_distractors"


def test_uniform_crop_rejected():
    flat = Source("test/flat", np.full((240, 320, 3), 90, np.uint8), "x")
    with pytest.raises(Reject) as exc:
        CropTask().generate(flat, np.random.default_rng(0), 0)
    assert exc.value.reason == "crop/uniform_window"
    # a flat region in a textured picture: only crops that land inside it are rejected
    img = Image.fromarray(make_source(5, 240, 320).rgb)
    ImageDraw.Draw(img).rectangle((0, 0, 200, 239), fill=(30, 30, 30))
    half = Source("test/half", np.asarray(img), "x")
    reasons = set()
    for seed in range(40):
        try:
            CropTask().generate(half, np.random.default_rng(seed), 0)
            reasons.add("ok")
        except Reject as e:
            reasons.add(e.reason)
    assert {"ok", "crop/uniform_window"} <= reasons <= {"ok", "crop/uniform_window", "crop/look_alike_options"}


def test_tiny_source_rejected():
    with pytest.raises(Reject) as exc:
        CropTask().generate(make_source(1, 50, 60), np.random.default_rng(0), 0)
    assert exc.value.reason == "crop/source_too_small"


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "override, key",
    [
        ({"size_frac": 1.5}, "task.crop.size_frac"),
        ({"size_frac": 0.0}, "task.crop.size_frac"),
        ({"distractor_weights": {"smear": 0.2}}, "task.crop.distractor_weights"),
        ({"distractor_weights": {"zoom_in": -1.0}}, "task.crop.distractor_weights.zoom_in"),
        ({"distractor_weights": {"zoom_in": 0, "context_0.25": 0, "context_0.5": 0}}, "task.crop.distractor_weights"),
        ({"max_option_side": 4}, "task.crop.max_option_side"),
        ({"min_option_std": -1}, "task.crop.min_option_std"),
        ({"min_option_diff": 5}, "task.crop.min_option_diff"),
        ({"scale_mode": "random"}, "task.crop.scale_mode"),
        ({"scale_span": 1.5}, "task.crop.scale_span"),
        ({"scale_gap": 1.0}, "task.crop.scale_gap"),
        ({"equalize": False}, "task.crop"),  # the old construction's keys are gone
        ({"no_such_key": 1}, "task.crop"),
    ],
)
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        CropTask(override)
    assert str(exc.value).startswith(key), str(exc.value)
    assert "\n" not in str(exc.value)


def test_config_defaults_follow_paper():
    cfg = CropTask().config
    assert cfg.size_frac == 0.5
    assert cfg.distractor_weights == {m: 0.2 for m in METHODS}
    assert cfg.scale_mode == "nested" and cfg.scale_span == 2.0 and cfg.scale_gap == 1.2
    assert CropTask().num_slots == 4 and CropTask().variants() == ["crop"] and not CropTask.needs_depth


def test_paper_preset_reproduces_the_paper_construction():
    """scale_mode paper: the hole's side is min(H, W) / 2, zoom = centre [s/4, 3s/4], contexts with margins
    0.25 s / 0.5 s, rotations = the true option turned."""
    task = CropTask(PAPER)
    for src, s in samples(task, 30, seed0=5100):
        box = s.metadata["crop_box"]
        side = box[2] - box[0]
        assert side == int(min(src.width, src.height) * 0.5)
        true = np.asarray(s.images[1 + s.metadata["answer_index"]])
        for o, im in zip(s.metadata["options"], s.images[1:]):
            n = o["window"][2] - o["window"][0]
            if o["method"] == "zoom_in":
                q = side // 4
                assert o["window"] == [box[0] + q, box[1] + q, box[2] - q, box[3] - q]
            elif o["method"].startswith("context"):
                assert n == side + 2 * int(float(o["method"].split("_")[1]) * side)
            elif o["method"].startswith("rotate"):
                assert o["window"] == box and not o["shifted"]
                assert np.array_equal(np.asarray(im), np.rot90(true, k=-1 if o["rotation"] == 90 else 1))
