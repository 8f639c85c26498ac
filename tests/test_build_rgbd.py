"""End-to-end RGB-D builds from format-faithful folders (DIODE, MegaDepth_v1, generic pairs) written from the demo
renderer (real geometry, exact depth), through the CLI.

Every depth-ordering answer is re-derived here from the ORIGINAL depth file (read with numpy / h5py / Pillow, not the
library's readers) at the region boxes recorded in the metadata: median of the valid pixels, sorted.
"""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_builders.pipeline import largest_remainder
from data_builders.verify import verify_dataset
from data_builders.cli import main
from ssrl_plugin.config import load_config
from ssrl_plugin.demo import render_rgbd

h5py = pytest.importorskip("h5py")

W, H = 320, 240
RGBD_TASKS = "depth,position"


# ------------------------------------------------------------------------------------------------- scenes

@functools.cache
def scene(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Demo RGB-D scene ``index`` at 320x240: RGB uint8, exact metric z-depth (0 where invalid), valid mask."""
    rgb, depth, _ = render_rgbd(index, W, H)
    arrays = (rgb, depth.values.copy(), depth.valid.copy())
    for a in arrays:
        a.flags.writeable = False
    return arrays


def blobs(seed: int, h: int, w: int, fraction: float) -> np.ndarray:
    """Bool mask of random discs covering about ``fraction`` of the image (MegaDepth's unreconstructed holes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w), bool)
    while out.mean() < fraction:
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.18) * min(h, w)
        out |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    return out


def write_diode(root: Path, indices: list[int]) -> dict[str, dict]:
    """DIODE: ``scene_x/scan_y/NAME.png`` + ``NAME_depth.npy`` float32 (H, W, 1) metres + ``NAME_depth_mask.npy``.

    As in DIODE, masked-out pixels may still hold a (wrong) depth: the mask, not the value, says what is valid.
    Returns source id -> {"depth": path, "read": reader}.
    """
    out = {}
    for k, i in enumerate(indices):
        rgb, z, valid = scene(i)
        folder = root / f"scene_{k // 2:05d}" / f"scan_{k:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{k:05d}_{k:05d}_indoors_000_010"
        Image.fromarray(rgb).save(folder / f"{name}.png")
        mask = valid & ~blobs(100 + i, H, W, 0.08)
        depth = np.where(valid, z, 0).astype(np.float32)
        depth[valid & ~mask] *= 3.0  # a wrong value under the mask: must never be used
        np.save(folder / f"{name}_depth.npy", depth[..., None])
        np.save(folder / f"{name}_depth_mask.npy", mask.astype(np.float32))

        def read(d=folder / f"{name}_depth.npy", m=folder / f"{name}_depth_mask.npy"):
            v = np.load(d)[..., 0].astype(np.float64)
            return v, (np.load(m) > 0) & np.isfinite(v) & (v > 0), False

        out[f"{root.name}/{(folder / f'{name}.png').relative_to(root).as_posix()}"] = {"depth": folder / f"{name}_depth.npy", "read": read}
    return out


def write_megadepth(root: Path, indices: list[int], scale: float = 37.0) -> dict[str, dict]:
    """MegaDepth_v1: ``SCENE/dense0/imgs/NAME.jpg`` + ``SCENE/dense0/depths/NAME.h5`` (``depth``, arbitrary scale,
    0 = no depth, about half of the pixels in holes)."""
    out = {}
    for k, i in enumerate(indices):
        rgb, z, valid = scene(i)
        dense = root / f"{5000 + k // 2:04d}" / "dense0"
        (dense / "imgs").mkdir(parents=True, exist_ok=True)
        (dense / "depths").mkdir(parents=True, exist_ok=True)
        name = f"{1000 + k}_{9 * k + 7}_o"
        Image.fromarray(rgb).save(dense / "imgs" / f"{name}.jpg", quality=92)
        keep = valid & ~blobs(200 + i, H, W, 0.5)
        with h5py.File(dense / "depths" / f"{name}.h5", "w") as f:
            f.create_dataset("depth", data=np.where(keep, z * scale, 0).astype(np.float32))

        def read(p=dense / "depths" / f"{name}.h5"):
            with h5py.File(p, "r") as f:
                v = f["depth"][()].astype(np.float64)
            return v, np.isfinite(v) & (v > 0), False

        out[f"{root.name}/{(dense / 'imgs' / f'{name}.jpg').relative_to(root).as_posix()}"] = {
            "depth": dense / "depths" / f"{name}.h5", "read": read}
    return out


def write_png16_pairs(root: Path, indices: list[int]) -> dict[str, dict]:
    """Generic pairs ``ROOT/rgb/NAME.png`` + ``ROOT/depth/NAME.png``: 16-bit millimetres, 0 = invalid."""
    out = {}
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(indices):
        rgb, z, valid = scene(i)
        name = f"frame_{k:06d}"
        Image.fromarray(rgb).save(root / "rgb" / f"{name}.png")
        mm = np.where(valid, np.round(z * 1000.0), 0).astype(np.uint16)
        img = Image.fromarray(mm)
        assert img.mode == "I;16"
        img.save(root / "depth" / f"{name}.png")

        def read(p=root / "depth" / f"{name}.png"):
            with Image.open(p) as im:
                v = np.asarray(im).astype(np.float64)
            return v, v != 0, False

        out[f"{root.name}/rgb/{name}.png"] = {"depth": root / "depth" / f"{name}.png", "read": read}
    return out


def write_npy_pairs(root: Path, indices: list[int], inverse: bool) -> dict[str, dict]:
    """Generic side-by-side pairs ``NAME.png`` + ``NAME_depth.npy`` float32 (H, W): z, or 1/z with ``inverse``."""
    out = {}
    root.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(indices):
        rgb, z, valid = scene(i)
        name = f"img_{k:03d}"
        Image.fromarray(rgb).save(root / f"{name}.png")
        with np.errstate(divide="ignore"):
            v = np.where(valid, (1.0 / z) if inverse else z, 0).astype(np.float32)
        np.save(root / f"{name}_depth.npy", v)

        def read(p=root / f"{name}_depth.npy"):
            a = np.load(p).astype(np.float64)
            return a, np.isfinite(a) & (a > 0), inverse

        out[f"{root.name}/{name}.png"] = {"depth": root / f"{name}_depth.npy", "read": read}
    return out


# ------------------------------------------------------------------------------------------------- builds

def cli_build(out: Path, specs: list[str], n: int, *overrides: str, tasks: str = RGBD_TASKS, val_fraction: float | None = None) -> dict:
    argv = ["build", "--out", str(out)]
    for spec in specs:
        argv += ["--rgbd", spec]
    argv += ["--tasks", tasks, "--num-samples", str(n), "--quiet"]
    if val_fraction is not None:
        argv += ["--val-fraction", str(val_fraction)]
    assert main([*argv, *overrides]) == 0
    return json.loads((out / "manifest.json").read_text())


def read_rows(out: Path, split: str | None = None) -> list[dict]:
    pattern = f"{split}-*.parquet" if split else "*.parquet"
    rows = [r for p in sorted((out / "easyr1").glob(pattern)) for r in pq.read_table(p).to_pylist()]
    for r in rows:
        r["gt"], r["meta"] = json.loads(r["answer"]), json.loads(r["metadata"])
    return rows


def expected_counts(manifest: dict, tasks: str) -> dict[str, dict[str, int]]:
    """Per split and task, the counts the config asks for (largest remainder of the task weights)."""
    config = load_config(None, None, **manifest["config"])
    weights = config.weights()
    n_val = sum(sum(v.values()) for v in manifest["counts"]["val"].values())
    assert n_val == round(config.num_samples * config.val_fraction)
    totals = {"train": config.num_samples - n_val, "val": n_val}
    assert set(weights) == set(tasks.split(","))
    return {s: {t: q for t, q in largest_remainder(totals[s], weights).items() if q} for s in totals}


def check_counts(out: Path, manifest: dict, n: int, tasks: str = RGBD_TASKS) -> list[dict]:
    rows = read_rows(out)
    assert len(rows) == n
    assert sum(manifest["counts"]["total"].values()) == n
    assert manifest["shortfall"] == {}
    want = expected_counts(manifest, tasks)
    for split in ("train", "val"):
        got = Counter(r["task"] for r in read_rows(out, split))
        assert dict(got) == want[split], split
        assert {t: sum(v.values()) for t, v in manifest["counts"][split].items()} == want[split]
    return rows


def check_rows_against_files(rows: list[dict], files: dict[str, dict], scale: float = 1.0) -> Counter:
    """Re-derive every depth-ordering answer from the original depth files and check every recorded region median
    (depth and position) against them; ``scale`` turns stored values into the recorded units. Returns the number
    of rows checked per task."""
    checked = Counter()
    loaded: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    for r in rows:
        sid = r["meta"]["source"]["id"]
        assert sid in files, sid
        assert Path(r["meta"]["source"]["depth_path"]) == Path(files[sid]["depth"]).resolve()
        if sid not in loaded:
            loaded.clear()
            loaded[sid] = files[sid]["read"]()
        values, valid, larger_is_nearer = loaded[sid]
        medians = {}
        for region in r["meta"]["regions"]:
            x0, y0, x1, y1 = region["box"]
            ok = valid[y0:y1, x0:x1]
            stored = values[y0:y1, x0:x1][ok]
            assert ok.mean() >= 0.9 - 1e-9, (sid, region)
            medians[region["label"]] = float(np.median(stored))
            # the library records the median farness: stored * scale, or 1 / stored for inverse depth
            farness = float(np.median(1.0 / stored)) if larger_is_nearer else medians[region["label"]] * scale
            assert np.isclose(farness, region["median_farness"], rtol=1e-4), (sid, region, farness)
        if r["task"] == "depth":
            order = sorted(medians, key=lambda k: medians[k], reverse=larger_is_nearer)
            assert "-".join(order) == r["gt"]["answer"], (sid, medians, r["gt"]["answer"])
            assert r["gt"]["answer"] == "-".join(r["meta"]["order_near_to_far"])
        checked[r["task"]] += 1
    return checked


def assert_verified(out: Path, n: int) -> None:
    report = verify_dataset(out)
    assert report.checked == n
    assert report.problems == []


def assert_disjoint_splits(rows: list[dict]) -> None:
    ids = defaultdict(set)
    for r in rows:
        ids[r["meta"]["seed"]["split"]].add(r["meta"]["source"]["id"])
    assert ids["train"] and ids["val"]
    assert not ids["train"] & ids["val"]


@pytest.fixture(scope="module")
def diode_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("diode") / "val"
    return root, write_diode(root, [0, 1, 2, 3, 4, 5])


# ------------------------------------------------------------------------------------------------- layouts

def test_diode_build(diode_root, tmp_path):
    root, files = diode_root
    out = tmp_path / "out"
    manifest = cli_build(out, [f"diode:{root}"], 48, val_fraction=0.2)
    assert manifest["sources"]["rgbd"] == len(files) and not manifest["sources"]["demo"]
    assert manifest["skipped_inputs"] == []
    rows = check_counts(out, manifest, 48)
    checked = check_rows_against_files(rows, files)
    assert checked["depth"] > 0 and checked["position"] > 0
    assert {r["meta"]["depth_kind"] for r in rows if r["task"] == "depth"} == {"metric"}
    assert_disjoint_splits(rows)
    assert_verified(out, 48)


def test_megadepth_build(tmp_path):
    root = tmp_path / "MegaDepth_v1"
    files = write_megadepth(root, [6, 7, 8, 9], scale=37.0)
    out = tmp_path / "out"
    manifest = cli_build(out, [f"megadepth:{root}"], 40, val_fraction=0.25)
    assert manifest["sources"]["rgbd"] == 4 and manifest["skipped_inputs"] == []
    rows = check_counts(out, manifest, 40)
    checked = check_rows_against_files(rows, files)
    assert checked["depth"] > 0
    assert {r["meta"]["depth_kind"] for r in rows if r["task"] == "depth"} == {"relative"}  # megadepth's default
    for r in rows:  # about half of every map is holes, never inside a region
        assert 0.3 < r["meta"]["source"]["valid_fraction"] < 0.6
    assert_verified(out, 40)


def test_png16_millimetre_pairs_build(tmp_path):
    root = tmp_path / "kinect"
    files = write_png16_pairs(root, [10, 11, 12, 13])
    out = tmp_path / "out"
    manifest = cli_build(out, [f"pairs:{root},scale=0.001,invalid=0"], 40, val_fraction=0.25)
    assert manifest["sources"]["rgbd"] == 4 and manifest["skipped_inputs"] == []
    rows = check_counts(out, manifest, 40)
    checked = check_rows_against_files(rows, files, scale=0.001)  # medians recorded in metres
    assert checked["depth"] > 0
    for r in rows:
        assert r["meta"]["source"]["depth_format"] == "png16"
    assert_verified(out, 40)


def test_inverse_depth_build_matches_metric_build(tmp_path):
    indices = [14, 15, 16, 17]
    inv_root, met_root = tmp_path / "inv" / "scenes", tmp_path / "met" / "scenes"  # same root name: same ids
    inv_files = write_npy_pairs(inv_root, indices, inverse=True)
    met_files = write_npy_pairs(met_root, indices, inverse=False)
    assert set(inv_files) == set(met_files)
    inv = cli_build(tmp_path / "out_inv", [f"pairs:{inv_root},kind=inverse"], 40, val_fraction=0.25)
    met = cli_build(tmp_path / "out_met", [f"pairs:{met_root}"], 40, val_fraction=0.25)
    inv_rows = check_counts(tmp_path / "out_inv", inv, 40)
    met_rows = check_counts(tmp_path / "out_met", met, 40)
    # every inverse answer re-derives from 1/z with the order reversed (larger stored value = nearer)
    checked = check_rows_against_files(inv_rows, inv_files)
    assert checked["depth"] > 0
    assert {r["meta"]["depth_kind"] for r in inv_rows if r["task"] == "depth"} == {"inverse"}
    check_rows_against_files(met_rows, met_files)

    def key(r):
        s = r["meta"]["seed"]
        return (r["task"], s["split"], r["meta"]["source"]["id"], s["round"], s["slot"], s["attempt"])

    # Same ids and seed: the same candidates. farness = 1/(1/z) equals z up to float32 rounding, so the regions
    # (and then the answers) are the same; allow a few threshold flips from that rounding, never a different answer.
    met_by_key = {key(r): r for r in met_rows}
    same_regions = 0
    for r in inv_rows:
        m = met_by_key.get(key(r))
        if m is None or [g["box"] for g in m["meta"]["regions"]] != [g["box"] for g in r["meta"]["regions"]]:
            continue
        same_regions += 1
        assert m["gt"]["answer"] == r["gt"]["answer"], key(r)
        for a, b in zip(m["meta"]["regions"], r["meta"]["regions"]):
            assert np.isclose(a["median_farness"], b["median_farness"], rtol=1e-5)
    assert same_regions >= 0.9 * len(inv_rows)
    assert_verified(tmp_path / "out_inv", 40)


# ------------------------------------------------------------------------------------------------- bad inputs

def write_bad_folders(tmp_path: Path) -> tuple[Path, Path, dict, dict, dict]:
    """Good DIODE and MegaDepth sources plus one bad file of each kind. Returns (diode root, megadepth root, good
    sources, bad stem -> the file a reason must name, the source usable with ``source.depth_resize=nearest``)."""
    diode = tmp_path / "indoor"
    good = write_diode(diode, [20, 21, 22, 23])
    resizable: dict[str, dict] = {}
    folder = diode / "scene_00009" / "scan_00099"
    folder.mkdir(parents=True)
    rgb, z, valid = scene(24)
    # depth at half the RGB's size
    Image.fromarray(rgb).save(folder / "size_mismatch.png")
    np.save(folder / "size_mismatch_depth.npy", np.where(valid, z, 0)[::2, ::2, None].astype(np.float32))

    def read_upsampled(p=folder / "size_mismatch_depth.npy"):  # nearest neighbour, x2: pixel (y, x) <- (y//2, x//2)
        v = np.load(p)[..., 0].astype(np.float64).repeat(2, axis=0).repeat(2, axis=1)
        return v, np.isfinite(v) & (v > 0), False

    resizable["indoor/scene_00009/scan_00099/size_mismatch.png"] = {"depth": folder / "size_mismatch_depth.npy", "read": read_upsampled}
    # depth full of NaN
    Image.fromarray(rgb).save(folder / "all_nan.png")
    np.save(folder / "all_nan_depth.npy", np.full((H, W, 1), np.nan, np.float32))
    # no depth at all for this image
    Image.fromarray(rgb).save(folder / "missing_depth_for.png")
    mega = tmp_path / "outdoor"
    good_mega = write_megadepth(mega, [25, 26])
    dense = mega / "0999" / "dense0"
    (dense / "imgs").mkdir(parents=True)
    (dense / "depths").mkdir(parents=True)
    Image.fromarray(rgb).save(dense / "imgs" / "no_key.jpg", quality=92)
    with h5py.File(dense / "depths" / "no_key.h5", "w") as f:
        f.create_dataset("dist", data=np.where(valid, z, 0).astype(np.float32))
    bad = {
        "size_mismatch": folder / "size_mismatch_depth.npy",
        "all_nan": folder / "all_nan_depth.npy",
        "missing_depth_for": folder / "missing_depth_for.png",
        "no_key": dense / "depths" / "no_key.h5",
    }
    return diode, mega, {**good, **good_mega}, bad, resizable


def test_bad_rgbd_inputs_are_skipped_once_and_good_ones_used(tmp_path):
    diode, mega, good, bad, resizable = write_bad_folders(tmp_path)
    specs = [f"diode:{diode}", f"megadepth:{mega}"]
    out = tmp_path / "out"
    manifest = cli_build(out, specs, 40, val_fraction=0.0)
    assert manifest["sources"]["rgbd"] == len(good) + 3  # missing_depth_for is dropped at discovery
    skipped = manifest["skipped_inputs"]
    texts = [json.dumps(s) for s in skipped]
    assert len(skipped) == len(bad), texts
    for s in skipped:
        assert "\n" not in s["reason"] and s["reason"].strip()
    for stem, path in bad.items():
        hits = [s for s, t in zip(skipped, texts) if stem in t]
        assert len(hits) == 1, (stem, texts)
        reason = hits[0]["reason"]
        if stem == "missing_depth_for":
            assert Path(hits[0]["path"]).resolve() == path.resolve()
            assert "missing_depth_for_depth.npy" in reason
        else:
            assert path.name in reason, reason
    size_reason = next(s["reason"] for s in skipped if "size_mismatch" in json.dumps(s))
    assert "320x240" in size_reason and "160x120" in size_reason and "depth_resize" in size_reason
    assert "'depth'" in next(s["reason"] for s in skipped if "no_key" in json.dumps(s))
    for sid in good:
        assert all(sid not in t for t in texts), sid
    rows = check_counts(out, manifest, 40)
    used = {r["meta"]["source"]["id"] for r in rows}
    assert used == set(good)
    check_rows_against_files(rows, good)
    assert_verified(out, 40)

    # with nearest resizing the half-size depth is used (and verified); the other bad files are still skipped
    out2 = tmp_path / "out_nearest"
    manifest2 = cli_build(out2, specs, 40, "source.depth_resize=nearest", val_fraction=0.0)
    texts2 = [json.dumps(s) for s in manifest2["skipped_inputs"]]
    assert len(texts2) == len(bad) - 1 and not any("size_mismatch" in t for t in texts2), texts2
    rows2 = check_counts(out2, manifest2, 40)
    resized = [r for r in rows2 if r["meta"]["source"]["id"].endswith("size_mismatch.png")]
    assert resized, "the resized source was never used"
    for r in resized:
        assert r["meta"]["source"]["depth_resized"] == "nearest"
        assert r["meta"]["source"]["depth_orig_size"] == [W // 2, H // 2]
    assert {r["meta"]["source"]["id"] for r in rows2} == set(good) | set(resizable)
    check_rows_against_files(rows2, {**good, **resizable})  # answers hold on the x2 nearest upsampling of the file
    assert_verified(out2, 40)


# ------------------------------------------------------------------------------------------------- RGB tasks

def test_rgb_tasks_use_rgbd_images_and_splits_are_disjoint(diode_root, tmp_path):
    root, files = diode_root
    out = tmp_path / "out"
    tasks = "shuffle,flip,crop,depth,position"
    manifest = cli_build(out, [f"diode:{root}"], 50, tasks=tasks, val_fraction=0.3)
    assert manifest["sources"]["rgb_tasks_use_rgbd_images"] is True
    assert manifest["sources"]["rgb"] == manifest["sources"]["rgbd"] == len(files)
    rows = check_counts(out, manifest, 50, tasks)
    assert {r["task"] for r in rows} == set(tasks.split(","))
    for r in rows:
        assert r["meta"]["source"]["id"] in files
    assert_disjoint_splits(rows)
    assert_verified(out, 50)
