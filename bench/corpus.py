"""Generate the fixed benchmark corpus: deterministic, no download.

    python bench/corpus.py OUT [--coco 40] [--diode 40] [--megadepth 40] [--seed 0]
                               [--coco-size 640x480] [--diode-size 1024x768] [--megadepth-size 1600x1064]
                               [--unique-rgb N] [--unique-rgbd N] [--megadepth-invalid 0.7]

Three kinds of input, the sizes and file formats of the paper's sources:

- ``OUT/coco/train2017/NNNNNN.jpg``: photo-like 640x480 JPEG, quality 90, 4:2:0 (COCO-like), from
  :func:`ssrl_plugin.demo.render_rgb`;
- ``OUT/diode/train/indoors/scene_SSSSS/scan_NNNNN/NNNNN_indoors.png`` + ``..._depth.npy`` (float32 (H, W, 1), metres,
  0 where invalid) + ``..._depth_mask.npy`` (float32 (H, W), 1 = valid), 1024x768 (DIODE-like), from the demo RGB-D
  ray caster (:func:`ssrl_plugin.demo.render_rgbd`) plus a few small sensor drop-outs (~3 % of pixels);
- ``OUT/MegaDepth_v1/SSSS/dense0/imgs/NNNNNN.jpg`` (quality 90) + ``.../dense0/depths/NNNNNN.h5`` (dataset ``depth``,
  float32 (H, W), 1600x1064): depth multiplied by a per-image random scale (SfM depth has no units) and about 70 %
  of pixels invalid (stored as 0) in large smooth blobs, the sky of outdoor scenes included (MegaDepth-like).

Every file is a pure function of (seed, kind, index). ``--unique-rgb N`` / ``--unique-rgbd N`` (0 = all unique) make
sources with index >= N hard links to source ``index % N``: a corpus of 20,000 *distinct source ids* without 40 GB of
depth files. Decoding and generation cost per sample are unchanged (the files have the same size and content kind);
only the number of distinct bytes is smaller. Re-running with the same arguments skips files that already exist.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ssrl_plugin.demo import render_rgb, render_rgbd  # noqa: E402

KINDS = ("coco", "diode", "megadepth")
SCENE_SIZE = 50  # sources per DIODE scene / MegaDepth scene folder


def _rng(seed: int, *key) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random lattice upsampled bicubically (blobs ~ w / cells wide)."""
    ch, cw = max(2, round(cells * h / w)), cells
    lattice = rng.random((ch, cw)).astype(np.float32)
    return np.asarray(Image.fromarray(lattice, "F").resize((w, h), Image.Resampling.BICUBIC), np.float32)


def _save_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality)  # Pillow's default 4:2:0, like camera JPEGs
    _atomic_write(path, buf.getvalue())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    _atomic_write(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------ the three kinds
def coco_files(out: Path, i: int) -> list[Path]:
    return [out / "coco" / "train2017" / f"{i:06d}.jpg"]


def diode_files(out: Path, i: int) -> list[Path]:
    stem = out / "diode" / "train" / "indoors" / f"scene_{i // SCENE_SIZE:05d}" / f"scan_{i:05d}" / f"{i:05d}_indoors"
    return [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + "_depth.npy"),
            stem.with_name(stem.name + "_depth_mask.npy")]


def megadepth_files(out: Path, i: int) -> list[Path]:
    scene = out / "MegaDepth_v1" / f"{i // SCENE_SIZE:04d}" / "dense0"
    return [scene / "imgs" / f"{i:06d}.jpg", scene / "depths" / f"{i:06d}.h5"]


FILES = {"coco": coco_files, "diode": diode_files, "megadepth": megadepth_files}


def make_coco(out: Path, i: int, size: tuple[int, int], seed: int) -> None:
    w, h = size
    _save_jpeg(coco_files(out, i)[0], render_rgb(i + 1_000_000 * seed, w, h))


def make_diode(out: Path, i: int, size: tuple[int, int], seed: int) -> None:
    w, h = size
    rgb, depth, _ = render_rgbd(i + 1_000_000 * seed, w, h)
    valid = depth.valid.copy()
    rng = _rng(seed, "diode-dropout", i)
    noise = _smooth_noise(rng, h, w, 48)
    valid &= noise > np.quantile(noise, 0.03)  # small holes, ~3 % of the pixels: sensor drop-outs
    values = np.where(valid, depth.values, np.float32(0)).astype(np.float32)
    png, dpath, mpath = diode_files(out, i)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "PNG")
    _atomic_write(png, buf.getvalue())
    _save_npy(dpath, values[:, :, None])
    _save_npy(mpath, valid.astype(np.float32))


def make_megadepth(out: Path, i: int, size: tuple[int, int], seed: int, invalid: float) -> None:
    import h5py

    w, h = size
    rgb, depth, _ = render_rgbd(i + 1_000_000 * seed + 500_000, w, h)
    rng = _rng(seed, "megadepth", i)
    scale = np.float32(10.0 ** rng.uniform(-1.0, 1.0))  # SfM reconstructions have an arbitrary scale
    valid = depth.valid.copy()
    want = int(round(invalid * valid.size)) - int(np.count_nonzero(~valid))  # pixels still to invalidate
    if want > 0:
        noise = _smooth_noise(rng, h, w, 8)  # blobs ~ an eighth of the width: large holes, like MegaDepth's
        cut = np.partition(noise[valid], want - 1)[want - 1]
        valid &= noise > cut
    values = np.where(valid, depth.values * scale, np.float32(0)).astype(np.float32)
    jpg, h5 = megadepth_files(out, i)
    _save_jpeg(jpg, rgb)
    h5.parent.mkdir(parents=True, exist_ok=True)
    tmp = h5.with_name(h5.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("depth", data=values)
    os.replace(tmp, h5)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        _atomic_write(dst, src.read_bytes())


def generate(out: str | os.PathLike, counts: dict[str, int], sizes: dict[str, tuple[int, int]] | None = None,
             seed: int = 0, unique: dict[str, int] | None = None, megadepth_invalid: float = 0.7,
             verbose: bool = True, link_from: str | os.PathLike | None = None) -> dict[str, str]:
    """Write the corpus (skipping files already present); returns the build arguments for each kind.

    ``link_from``: another corpus made with the same seed and sizes; files it already has are hard-linked from it
    instead of rendered again (a small corpus as a prefix of a large one).
    """
    out = Path(out)
    donor = Path(link_from) if link_from else None
    sizes = {"coco": (640, 480), "diode": (1024, 768), "megadepth": (1600, 1064), **(sizes or {})}
    unique = unique or {}
    for kind in KINDS:
        n, cap = counts.get(kind, 0), unique.get(kind, 0)
        started, made, linked = time.perf_counter(), 0, 0
        for i in range(n):
            targets = FILES[kind](out, i)
            if all(p.exists() for p in targets):
                continue
            if donor is not None and all(p.exists() for p in FILES[kind](donor, i)):
                for src, dst in zip(FILES[kind](donor, i), targets):
                    if not dst.exists():
                        _link_or_copy(src, dst)
                linked += 1
                continue
            if cap and i >= cap:
                for src, dst in zip(FILES[kind](out, i % cap), targets):
                    if not dst.exists():
                        _link_or_copy(src, dst)
                linked += 1
                continue
            if kind == "coco":
                make_coco(out, i, sizes[kind], seed)
            elif kind == "diode":
                make_diode(out, i, sizes[kind], seed)
            else:
                make_megadepth(out, i, sizes[kind], seed, megadepth_invalid)
            made += 1
        if verbose and n:
            print(f"corpus {kind}: {n} sources in {out} ({made} rendered, {linked} hard-linked, "
                  f"{time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return specs(out)


def specs(out: str | os.PathLike) -> dict[str, str]:
    """How each kind is passed to ``ssrl build``: ``--rgb`` folders for the images, ``--rgbd`` specs for depth."""
    out = Path(out)
    return {
        "coco_rgb": str(out / "coco"),
        "diode_rgb": str(out / "diode"),
        "megadepth_rgb": str(out / "MegaDepth_v1"),
        "diode_rgbd": f"diode:{out / 'diode'}",
        "megadepth_rgbd": f"megadepth:{out / 'MegaDepth_v1'}",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--coco", type=int, default=40, help="number of COCO-like 640x480 JPEGs")
    p.add_argument("--diode", type=int, default=40, help="number of DIODE-like 1024x768 PNG + depth + mask")
    p.add_argument("--megadepth", type=int, default=40, help="number of MegaDepth-like 1600x1064 JPEG + .h5")
    p.add_argument("--coco-size", type=_size, default=(640, 480))
    p.add_argument("--diode-size", type=_size, default=(1024, 768))
    p.add_argument("--megadepth-size", type=_size, default=(1600, 1064))
    p.add_argument("--megadepth-invalid", type=float, default=0.7, help="share of invalid (0) depth pixels")
    p.add_argument("--unique-rgb", type=int, default=0, help="COCO sources >= N are hard links (0 = all unique)")
    p.add_argument("--unique-rgbd", type=int, default=0, help="DIODE/MegaDepth sources >= N are hard links")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = generate(a.out, {"coco": a.coco, "diode": a.diode, "megadepth": a.megadepth},
                   {"coco": a.coco_size, "diode": a.diode_size, "megadepth": a.megadepth_size}, a.seed,
                   {"coco": a.unique_rgb, "diode": a.unique_rgbd, "megadepth": a.unique_rgbd}, a.megadepth_invalid)
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
