"""Writers for small on-disk RGB / RGB-D fixtures in the layouts real datasets use (all under a tmp folder)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth, non-uniform uint8 (H, W, 3) content (gradients + blocky noise) that JPEG keeps recognisable."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 255 // max(h + w - 2, 1)], -1)
    blocks = rng.integers(0, 64, (h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return np.clip(base + blocks - 32, 0, 255).astype(np.uint8)


def write_rgb(path: str | os.PathLike, w: int = 160, h: int = 128, seed: int = 0, **save_kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(textured(h, w, seed)).save(path, **save_kw)
    return path


def ramp_depth(h: int, w: int, near: float = 1.0, far: float = 10.0) -> np.ndarray:
    """Float32 depth increasing from bottom (near) to top (far)."""
    return np.repeat(np.linspace(far, near, h, dtype=np.float32)[:, None], w, axis=1)


def write_diode(folder: str | os.PathLike, stem: str, w: int = 160, h: int = 128, mask: bool = True,
                depth: np.ndarray | None = None) -> dict[str, Path]:
    """DIODE layout: ``stem.png``, ``stem_depth.npy`` (H, W, 1) float32 metres, ``stem_depth_mask.npy``.

    The mask invalidates the top quarter; the depth has 0 there too, as in DIODE's sky pixels.
    """
    folder = Path(folder)
    rgb = write_rgb(folder / f"{stem}.png", w, h)
    d = ramp_depth(h, w) if depth is None else depth
    m = np.ones((h, w), np.float32)
    m[: h // 4] = 0
    if depth is None:
        d = d.copy()
        d[: h // 4] = 0
    np.save(folder / f"{stem}_depth.npy", d[..., None] if d.ndim == 2 else d)
    out = {"rgb": rgb, "depth": folder / f"{stem}_depth.npy"}
    if mask:
        np.save(folder / f"{stem}_depth_mask.npy", m)
        out["mask"] = folder / f"{stem}_depth_mask.npy"
    return out


def write_megadepth(scene_dense: str | os.PathLike, stem: str, w: int = 200, h: int = 150, zero_fraction: float = 0.6,
                    image: bool = True, key: str = "depth") -> dict[str, Path]:
    """MegaDepth_v1 layout: ``dense0/depths/stem.h5`` (key ``depth``, many zeros) + ``dense0/imgs/stem.jpg``."""
    import h5py

    scene_dense = Path(scene_dense)
    (scene_dense / "depths").mkdir(parents=True, exist_ok=True)
    d = ramp_depth(h, w, 0.2, 3.0) * 7.3  # arbitrary scale
    d[: int(h * zero_fraction)] = 0  # sky / unreconstructed
    with h5py.File(scene_dense / "depths" / f"{stem}.h5", "w") as f:
        f.create_dataset(key, data=d)
    out = {"depth": scene_dense / "depths" / f"{stem}.h5"}
    if image:
        out["rgb"] = write_rgb(scene_dense / "imgs" / f"{stem}.jpg", w, h, quality=90)
    return out


def write_png16(path: str | os.PathLike, values: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(values.astype(np.uint16))
    assert img.mode == "I;16"
    img.save(path)
    return path
