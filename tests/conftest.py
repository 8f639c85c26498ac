"""Shared fixtures: sources generated in memory (no files, no network)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ssrl_plugin.core import DepthMap, Source

# tests/integration runs inside verl/torch (its own environment, made by .ci/run) and only when named, in a
# session of its own: `python -m pytest -q tests/integration`. The light default run (`pytest tests`) never
# collects it (a path given on the command line is collected even when listed here).
collect_ignore = ["integration"]


def value_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Multi-octave smooth noise in [0, 1], shape (h, w, 3)."""
    out = np.zeros((h, w, 3), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        small = rng.random((cells, cells, 3)).astype(np.float32)
        layer = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32) / 255
        out += amp * layer
        total += amp
        amp *= 0.6
    return out / total


def textured_rgb(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = value_noise(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img *= (0.6 + 0.4 * (xx / w))[..., None] * (0.7 + 0.3 * (yy / h))[..., None]
    pil = Image.fromarray((img * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(8):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(10, w // 3), y0 + rng.integers(10, h // 3)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return np.ascontiguousarray(np.asarray(pil, np.uint8))


def layered_depth(seed: int, h: int, w: int, sky: bool = True) -> DepthMap:
    """A ground plane receding upwards, a back wall, and fronto-parallel boxes at distinct depths."""
    rng = np.random.default_rng(seed + 1000)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = h * 0.35
    ground = np.where(yy > horizon, 1.6 * h / np.maximum(yy - horizon, 1.0), np.inf)
    depth = np.minimum(ground, 30.0).astype(np.float32)
    for _ in range(4):
        bw, bh = rng.integers(w // 8, w // 3), rng.integers(h // 8, h // 3)
        x0, y0 = rng.integers(0, w - bw), rng.integers(int(horizon) - bh // 2, h - bh)
        depth[y0 : y0 + bh, x0 : x0 + bw] = np.minimum(depth[y0 : y0 + bh, x0 : x0 + bw], rng.uniform(1.5, 12.0))
    valid = np.ones((h, w), bool)
    if sky:
        valid[: int(horizon * 0.5)] = False
        depth[~valid] = 0
    return DepthMap(depth, valid, "metric")


def make_source(seed: int, h: int = 240, w: int = 320, depth: bool = False, kind: str = "metric") -> Source:
    rgb = textured_rgb(seed, h, w)
    d = layered_depth(seed, h, w) if depth else None
    if d is not None and kind == "inverse":
        inv = np.where(d.valid, 1.0 / np.maximum(d.values, 1e-6), 0).astype(np.float32)
        d = DepthMap(inv, d.valid, "inverse")
    sha = hashlib.sha256(rgb.tobytes()).hexdigest()
    return Source(id=f"test/{seed:04d}", rgb=rgb, digest=sha, depth=d, info={})


@pytest.fixture
def rgb_source():
    """Factory: ``rgb_source(seed, h=240, w=320)`` → RGB-only Source with textured, asymmetric content."""
    return lambda seed, h=240, w=320: make_source(seed, h, w)


@pytest.fixture
def rgbd_source():
    """Factory: ``rgbd_source(seed, h=240, w=320, kind="metric")`` → Source with layered metric depth and a sky."""
    return lambda seed, h=240, w=320, kind="metric": make_source(seed, h, w, depth=True, kind=kind)
