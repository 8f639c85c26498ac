"""Sighted solvers (``data_builders.audit_sighted``): crop and shuffle are solvable from the pixels of built data,
and a construction that destroys the content (noise candidates, a grey picture, noise patches) falls to chance."""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:  # conftest is importable by name under pytest's default (prepend) import mode
    from conftest import textured_rgb
except ImportError:  # pragma: no cover - package-style test layout
    from tests.conftest import textured_rgb
from data_builders import audit_sighted as S
from data_builders.stats import Row, iter_rows
from data_builders.cli import main
from ssrl_plugin.imaging import encode_image

SMALL_DEMO = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240"]


def build(out: Path, task: str, n: int, seed: int, *extra: str) -> list[Row]:
    argv = ["build", "--out", str(out), "--tasks", task, "--num-samples", str(n), "--seed", str(seed), *extra]
    assert main(argv) == 0
    return list(iter_rows(out))


def jpeg(arr: np.ndarray) -> bytes:
    return encode_image(Image.fromarray(np.ascontiguousarray(arr, np.uint8)), "jpeg", 95)


def with_images(row: Row, images: list[bytes]) -> Row:
    """``row`` with other image bytes (and no decoded copy of the old ones, if the Row keeps any)."""
    new = dataclasses.replace(row, images=images)
    if isinstance(getattr(new, "_arrays", None), dict):
        new._arrays = {}
    return new


def solve(rows: list[Row]) -> list[dict]:
    items = []
    for row in rows:
        it = S.sighted_item(row)
        assert it is not None and 0.0 <= it["correct"] <= 1.0
        items.append({**it, "id": row.id, "group": row.metadata["source"]["id"]})
    return items


def accuracy(items: list[dict]) -> float:
    return sum(it["correct"] for it in items) / len(items)


@pytest.fixture(scope="module")
def crop_rows(tmp_path_factory) -> list[Row]:
    return build(tmp_path_factory.mktemp("sighted_crop"), "crop", 120, 1)


@pytest.fixture(scope="module")
def shuffle_rows(tmp_path_factory) -> list[Row]:
    return build(tmp_path_factory.mktemp("sighted_shuffle"), "shuffle", 150, 1)


# ------------------------------------------------------------------------------------------------ crop
def test_crop_is_solvable_from_the_pixels(crop_rows):
    items = solve(crop_rows)
    assert len(items) == 120
    acc = accuracy(items)
    assert acc >= max(S.SIGHTED_MIN, 0.95), [it for it in items if it["correct"] < 1][:5]  # measured: 100 %
    assert all(it["pred"] in "ABCD" and len(it["costs"]) == 4 and 1 <= it["sides"] <= 4 for it in items)
    (res,) = S.audit_sighted("crop", "crop", items)
    assert (res.task, res.variant, res.target, res.kind, res.counted) == ("crop", "crop", "answer", "sighted", True)
    assert res.n == 120 and res.score == pytest.approx(acc * 120) and res.chance == 0.25
    assert res.accuracy == pytest.approx(acc) and res.ci95[0] <= acc <= res.ci95[1]


def test_crop_small_pictures_and_paper_construction(tmp_path):
    small = solve(build(tmp_path / "small", "crop", 80, 2, *SMALL_DEMO))  # 320x240: options of ~60 px
    assert accuracy(small) >= S.SIGHTED_MIN
    paper = solve(build(tmp_path / "paper", "crop", 80, 2, "task.crop.scale_mode=paper"))
    assert accuracy(paper) >= S.SIGHTED_MIN


def test_crop_destroyed_content_falls_to_chance(crop_rows):
    rng = np.random.default_rng(0)
    noise_options, grey_picture = [], []
    for row in crop_rows:
        side = Image.open(io.BytesIO(row.images[1])).size[0]
        options = [jpeg(rng.integers(0, 256, (side, side, 3))) for _ in range(4)]
        noise_options.append(with_images(row, [row.images[0], *options]))
        w, h = row.metadata["source_size"]
        grey_picture.append(with_images(row, [jpeg(np.full((h, w, 3), 128)), *row.images[1:5]]))
    for rows in (noise_options, grey_picture):
        items = solve(rows)
        acc = accuracy(items)
        assert acc <= 0.45  # chance is 0.25; n = 120 puts 0.45 five standard deviations above it
        (res,) = S.audit_sighted("crop", "crop", items)
        assert res.accuracy < S.SIGHTED_MIN  # the audit calls this construction a FAIL


def _crop_row(picture: np.ndarray, box: list[int], options: list[np.ndarray], answer: str) -> Row:
    meta = {"crop_box": box, "source": {"id": "synthetic"}, "options": [{"method": "hidden"}] * 4}
    return Row(id="crop:synthetic:0", split="train", task="crop", variant="crop", question="", gt={"answer": answer},
               metadata=meta, images=[jpeg(picture)] + [jpeg(o) for o in options])


def test_crop_hole_at_the_border_and_edited_candidate():
    """A hole in the corner has a ring on two sides only; the true candidate still wins when its brightness and
    contrast were changed (a construction may equalise them) and it is at a different size from the others."""
    rgb = textured_rgb(7, 240, 320)
    s, side = 120, 60
    box = [0, 0, s, s]
    src = Image.fromarray(rgb)
    true = np.asarray(src.resize((side, side), Image.BOX, box=tuple(box)), np.float32)
    true = np.clip((true - true.mean()) * 1.2 + true.mean() - 15, 0, 255)
    others = [np.asarray(src.resize((side, side), Image.BOX, box=b)) for b in ((15, 15, 105, 105), (0, 0, 150, 150), (140, 60, 260, 180))]
    picture = rgb.copy()
    picture[: s, : s] = 0
    for slot in range(4):
        options = others[:slot] + [true] + others[slot:]
        options[(slot + 1) % 4] = np.asarray(Image.fromarray(np.uint8(options[(slot + 1) % 4])).resize((72, 72), Image.BOX))
        it = S.sighted_item(_crop_row(picture, box, options, "ABCD"[slot]))
        assert it["sides"] == 2 and it["pred"] == "ABCD"[slot] and it["correct"] == 1.0, it


def test_crop_without_any_ring_is_a_uniform_guess():
    rgb = textured_rgb(3, 100, 100)
    options = [rgb[i * 10 : i * 10 + 50, :50] for i in range(4)]
    it = S.sighted_item(_crop_row(np.zeros((100, 100, 3), np.uint8), [0, 0, 100, 100], options, "C"))
    assert it["sides"] == 0 and it["tied"] == 4 and it["correct"] == 0.25


# ------------------------------------------------------------------------------------------------ shuffle
def test_shuffle_is_solvable_from_the_pixels(shuffle_rows):
    items = solve(shuffle_rows)
    by: dict[str, list[dict]] = {}
    for row, it in zip(shuffle_rows, items):
        by.setdefault(row.variant, []).append(it)
        assert sorted(map(int, it["pred"].split("-"))) == list(range(len(row.answer.split("-"))))
        assert it["pred"] != "-".join(map(str, range(len(row.answer.split("-")))))  # never the identity
        assert (it["white"] is not None) == row.variant.endswith("_mask")
        if row.variant.endswith("_mask"):
            assert it["white"] == row.metadata["masked_display"]  # found from the pixels
    assert accuracy(items) >= 0.95  # measured: 100 % (600 samples of seed 5: 99.7 %)
    for variant, group in by.items():
        assert accuracy(group) >= S.SIGHTED_MIN, variant
        (res,) = S.audit_sighted("shuffle", variant, group)
        k = len(group[0]["answer"].split("-"))
        assert res.kind == "sighted" and res.chance == pytest.approx(1 / (math.factorial(k) - 1))
        assert "per-position accuracy" in res.detail
        assert all(it["per_position"] >= it["correct"] for it in group)


def test_shuffle_destroyed_content_falls_to_chance(shuffle_rows):
    rng = np.random.default_rng(1)
    rows = []
    for row in shuffle_rows:
        w, h = row.metadata["output_size"]
        rows.append(with_images(row, [jpeg(rng.integers(0, 256, (h, w, 3)))]))
    items = solve(rows)
    chance = sum(1 / (math.factorial(len(r.answer.split("-"))) - 1) for r in rows) / len(rows)
    assert accuracy(items) <= chance + 0.12
    for variant in {r.variant for r in rows}:
        group = [it for r, it in zip(rows, items) if r.variant == variant]
        assert S.audit_sighted("shuffle", variant, group)[0].accuracy < S.SIGHTED_MIN


def test_larger_grids_use_the_beam(tmp_path):
    rows = build(tmp_path / "grids", "shuffle", 40, 3, "task.shuffle.variants={3x3: 1, 4x4: 1, 3x3_mask: 1}")
    assert accuracy(solve(rows)) >= S.SIGHTED_MIN  # measured: 100 % of 200 COCO-like samples


@pytest.mark.parametrize("rows,cols", [(2, 2), (1, 4), (2, 3), (3, 3), (4, 4)])
def test_best_arrangement_finds_the_planted_order(rows, cols):
    rng = np.random.default_rng(rows * 10 + cols)
    k = rows * cols
    truth = [int(v) for v in rng.permutation(k)]
    if truth == list(range(k)):
        truth = truth[1:] + truth[:1]
    H, V = rng.uniform(1, 2, (k, k)), rng.uniform(1, 2, (k, k))
    for pos in range(k):
        r, c = divmod(pos, cols)
        if c + 1 < cols:
            H[truth[pos], truth[pos + 1]] = 0.1
        if r + 1 < rows:
            V[truth[pos], truth[pos + cols]] = 0.1
    pred, score, tied = S.best_arrangement(H, V, rows, cols, truth)
    assert pred == truth and score == 1.0 and tied == 1


def test_best_arrangement_never_returns_the_identity_and_splits_ties():
    k = 4
    H = np.ones((k, k))
    V = np.ones((k, k))
    for i in range(k - 1):  # the identity 0-1-2-3 is the cheapest order of a 1x4 strip
        H[i, i + 1] = 0.0
    pred, _, _ = S.best_arrangement(H, V, 1, k)
    assert pred != [0, 1, 2, 3]
    pred, score, tied = S.best_arrangement(np.zeros((k, k)), np.zeros((k, k)), 2, 2, [1, 0, 3, 2])
    assert tied == math.factorial(k) - 1 and score == pytest.approx(1 / tied)


def test_other_tasks_have_no_sighted_solver(crop_rows):
    assert S.sighted_item(dataclasses.replace(crop_rows[0], task="depth")) is None


# ------------------------------------------------------------------------------------------------ real photographs
@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    datasets = pytest.importorskip("sklearn.datasets")
    out = tmp_path_factory.mktemp("photos")
    for path, arr in zip(datasets.load_sample_images().filenames, datasets.load_sample_images().images):
        img = Image.fromarray(arr)
        w, h = img.size
        img.save(out / f"{Path(path).stem}.png")
        for i, (fx, fy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):  # four corner views: more holes per photo
            cw, ch = int(w * 0.7), int(h * 0.7)
            x0, y0 = fx * (w - cw), fy * (h - ch)
            img.crop((x0, y0, x0 + cw, y0 + ch)).save(out / f"{Path(path).stem}_{i}.png")
    return out


@pytest.mark.parametrize("task", ["crop", "shuffle"])
def test_real_photographs(photo_dir, tmp_path, task):
    rows = build(tmp_path / task, task, 100, 4, "--rgb", str(photo_dir))
    assert accuracy(solve(rows)) >= S.SIGHTED_MIN  # measured on 300 samples: crop 100 %, shuffle 100 %


def test_harder_levels_are_reported_not_counted():
    """Rows of difficulty level >= 2 are built to defeat the sighted solver: they are reference rows, while rows
    without a level or at level 1 must still be solvable."""
    easy = [{"correct": 1.0, "id": f"e{i}", "group": f"g{i}", "level": lv} for i, lv in enumerate([None, 1] * 10)]
    hard = [{"correct": float(i % 2), "id": f"h{i}", "group": f"h{i}", "level": 3} for i in range(20)]
    counted, reference = S.audit_sighted("crop", "crop", easy + hard)
    assert counted.counted and counted.n == 20 and counted.accuracy == 1.0
    assert not reference.counted and reference.n == 20 and reference.accuracy == 0.5
    assert "difficulty level >= 2" in reference.solver
    (only,) = S.audit_sighted("crop", "crop", hard)
    assert not only.counted
