"""Built-in procedural demo corpus: ``ssrl build`` works with no download.

Two kinds of source, both rendered from nothing but their index:

- ``rgb``: "photo-like" layered images (gradient background, multi-octave value noise, a dozen anti-aliased
  shapes with their own gradients, stripes and shadows, thin strokes, grain);
- ``rgbd``: a ray-cast 3-D room (textured ground, walls, optional open sky) holding 3-6 boxes and spheres at
  clearly different distances, with EXACT metric z-depth from the same ray hits that coloured the pixels.

Determinism: every draw comes from a PCG64 generator keyed (through sha256, see :mod:`ssrl_plugin.seeding`)
by ``("demo", kind, index, purpose)``, never global state. Per-pixel maths uses only + - * / sqrt floor
min/max and comparisons, which IEEE 754 rounds exactly the same everywhere; no transcendental functions
(their SIMD implementations differ by an ulp between CPUs), no BLAS (its summation order differs between
machines), no Pillow drawing (its C code may be compiled with FMA contraction on some platforms). So the same
index gives byte-identical arrays on any machine with the same numpy major version.

Everything is vectorised; objects are ray-cast only inside the screen rectangle their bounding box projects to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .core import DepthMap, Source
from .errors import SourceError
from .seeding import rng_for
from .sources import LoadOptions, SourceRef

DEMO_SCHEME = "demo"
RGB_KIND = "rgb"
RGBD_KIND = "rgbd"
DEMO_DEPTH_FORMAT = "demo"

FOCAL_PER_WIDTH = 0.8  # pinhole focal length in pixels = 0.8 * image width (~64 degree horizontal FOV)
TILE = 256  # side of the tileable noise textures (power of two: wrap-around is a bit mask)
TILE_MASK = TILE - 1
GRAIN = 0.025  # amplitude of per-pixel grain: no patch is ever perfectly flat
OUTDOOR_FRACTION = 0.4  # share of RGB-D scenes with an open sky (invalid depth) above the walls
OBJECT_NEAR, OBJECT_FAR = 1.8, 12.0  # metres: range of object distances along the viewing direction

# Room surface ids; objects follow (6 ids per box: one per face, 1 per sphere).
GROUND, TOP, LEFT, RIGHT, BACK, FRONT = range(6)
ROOM_SURFACES = 6
# Which two world coordinates texture a surface: the normal's axis is dropped.
AXIS_X, AXIS_Y, AXIS_Z = 0, 1, 2


# ----------------------------------------------------------------------------------------------- public API


def demo_refs(num_rgb: int = 48, num_rgbd: int = 48, width: int = 640, height: int = 480) -> list[SourceRef]:
    """References to the demo sources: ``demo/rgb/0000``... then ``demo/rgbd/0000``... (cheap, nothing rendered)."""
    if width < 1 or height < 1 or num_rgb < 0 or num_rgbd < 0:
        raise ValueError(f"demo_refs: bad counts/size ({num_rgb}, {num_rgbd}, {width}x{height})")
    refs = [
        SourceRef(id=f"demo/{RGB_KIND}/{i:04d}", scheme=DEMO_SCHEME, extra=(RGB_KIND, i, width, height))
        for i in range(num_rgb)
    ]
    refs += [
        SourceRef(
            id=f"demo/{RGBD_KIND}/{i:04d}",
            scheme=DEMO_SCHEME,
            depth_format=DEMO_DEPTH_FORMAT,
            depth_kind="metric",
            extra=(RGBD_KIND, i, width, height),
        )
        for i in range(num_rgbd)
    ]
    return refs


def load_demo(ref: SourceRef, opts: LoadOptions) -> Source:
    """Render the source ``ref`` points to, at its size shrunk to fit ``opts.max_side`` (never enlarged)."""
    if ref.scheme != DEMO_SCHEME or len(ref.extra) != 4:
        raise SourceError(f"{ref.id}: not a demo reference (scheme={ref.scheme!r}, extra={ref.extra!r})")
    kind, index, width, height = ref.extra
    if kind not in (RGB_KIND, RGBD_KIND):
        raise SourceError(f"{ref.id}: unknown demo kind {kind!r}")
    width, height = fit_size(int(width), int(height), opts.max_side)
    if min(width, height) < opts.min_side:
        raise SourceError(f"{ref.id}: demo size {width}x{height} is below min_side={opts.min_side}")
    if kind == RGB_KIND:
        rgb = render_rgb(int(index), width, height)
        depth, extra_info = None, {}
    else:
        rgb, depth, extra_info = render_rgbd(int(index), width, height)
    digest = hashlib.sha256(rgb.tobytes())
    if depth is not None:
        digest.update(depth.values.astype(np.float32).tobytes())
    info = {"demo": True, "kind": kind, "index": int(index), "size": [width, height], **extra_info}
    return Source(id=ref.id, rgb=rgb, sha256=digest.hexdigest(), depth=depth, info=info)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most ``max_side`` (0 = no limit)."""
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return width, height
    return max(1, (width * max_side) // longest), max(1, (height * max_side) // longest)


# -------------------------------------------------------------------------------------------- noise helpers


def _smoothstep(f: np.ndarray) -> np.ndarray:
    """C1 interpolation weight: value noise without the grid-aligned creases of linear interpolation."""
    return f * f * (3.0 - 2.0 * f)


def _interp_index(cells: int, n: int, periodic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice indices and smoothstep weights to stretch ``cells`` lattice steps over ``n`` samples."""
    pos = np.arange(n, dtype=np.float64) * (cells / n)
    i0 = np.floor(pos).astype(np.intp)
    w = _smoothstep(pos - i0).astype(np.float32)
    i1 = (i0 + 1) % cells if periodic else i0 + 1
    return i0, i1, w


def _upsample(lattice: np.ndarray, height: int, width: int, periodic: bool) -> np.ndarray:
    """Separable smooth upsampling of a small random lattice (periodic: the result tiles seamlessly)."""
    gy, gx = lattice.shape
    cy, cx = (gy, gx) if periodic else (gy - 1, gx - 1)
    i0, i1, wx = _interp_index(cx, width, periodic)
    rows = lattice[:, i0] * (1.0 - wx) + lattice[:, i1] * wx
    j0, j1, wy = _interp_index(cy, height, periodic)
    return rows[j0] * (1.0 - wy)[:, None] + rows[j1] * wy[:, None]


def _normalise(a: np.ndarray) -> np.ndarray:
    """Stretch to [0, 1]: summed octaves lose contrast, and min/max are exact so this stays deterministic."""
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) * (1.0 / max(hi - lo, 1e-6))).astype(np.float32)


def _noise(
    rng: np.random.Generator,
    height: int,
    width: int,
    cells: tuple[int, int],
    octaves: int,
    persistence: float = 0.55,
    periodic: bool = False,
) -> np.ndarray:
    """Multi-octave value noise in [0, 1], float32 (height, width); ``cells`` = (rows, cols) of octave 0."""
    out = np.zeros((height, width), np.float32)
    amp = 1.0
    for o in range(octaves):
        gy, gx = min(cells[0] << o, height), min(cells[1] << o, width)
        shape = (gy, gx) if periodic else (gy + 1, gx + 1)
        out += np.float32(amp) * _upsample(rng.random(shape, dtype=np.float32), height, width, periodic)
        amp *= persistence
    return _normalise(out)


def _tile_lookup(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear, wrap-around lookup of a TILE x TILE texture at texel coordinates (u, v) of any size."""
    fu, fv = np.floor(u), np.floor(v)
    wu, wv = u - fu, v - fv
    iu, iv = fu.astype(np.intp) & TILE_MASK, fv.astype(np.intp) & TILE_MASK
    iu1, iv1 = (iu + 1) & TILE_MASK, (iv + 1) & TILE_MASK
    flat = tile.ravel()
    r0, r1 = iv * TILE, iv1 * TILE
    top = flat[r0 + iu] * (1.0 - wu) + flat[r0 + iu1] * wu
    bottom = flat[r1 + iu] * (1.0 - wu) + flat[r1 + iu1] * wu
    return top * (1.0 - wv) + bottom * wv


def _triangle(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1: stripes without calling sin()."""
    return np.abs(2.0 * (x - np.floor(x)) - 1.0)


def _unit2(rng: np.random.Generator) -> tuple[float, float]:
    """A random 2-D unit vector without trigonometry (rejection sampling, then sqrt)."""
    while True:
        a, b = rng.uniform(-1.0, 1.0, 2)
        n2 = a * a + b * b
        if 0.01 < n2 <= 1.0:
            n = n2**0.5
            return float(a / n), float(b / n)


def _colour(rng: np.random.Generator, saturation: float, lo: float = 0.1, hi: float = 0.95) -> np.ndarray:
    """Random RGB in [lo, hi], mixed towards its grey by ``1 - saturation`` (walls muted, objects vivid).

    Shape (3, 1, 1): images are rendered channel-first, where broadcasting a colour over a plane runs
    along contiguous rows (an (H, W, 3) layout makes numpy loop over runs of 3 and is ~20x slower).
    """
    c = rng.uniform(lo, hi, 3)
    return (c.mean() + (c - c.mean()) * saturation).astype(np.float32).reshape(3, 1, 1)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Channel-first float image in [0, 1] -> contiguous uint8 (H, W, 3), rounding half up."""
    u8 = np.clip(img * np.float32(255.0) + np.float32(0.5), 0.0, 255.0).astype(np.uint8)
    return np.ascontiguousarray(u8.transpose(1, 2, 0))


# ---------------------------------------------------------------------------------------- "photo" RGB images


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel-centre coordinates in units of the longer side (shapes keep their aspect at any size)."""
    s = float(max(width, height))
    x = ((np.arange(width, dtype=np.float32) + 0.5) / s)[None, :]
    y = ((np.arange(height, dtype=np.float32) + 0.5) / s)[:, None]
    return x, y, s


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear two-colour gradient at a random angle plus an off-centre glow: no axis of symmetry."""
    dx, dy = _unit2(rng)
    g = x * np.float32(dx) + y * np.float32(dy)
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    c0, c1, c2 = _colour(rng, 0.7), _colour(rng, 0.7), _colour(rng, 0.9)
    img = c0 + g * (c1 - c0)
    gx, gy, gr = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.7), rng.uniform(0.1, 0.35)
    glow = 1.0 / (1.0 + ((x - gx) ** 2 + (y - gy) ** 2) * np.float32(1.0 / (gr * gr)))
    return img + (glow * np.float32(rng.uniform(0.2, 0.5))) * (c2 - img)


def _polygon(rng: np.random.Generator, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """3-7 vertices on an (a, b) ellipse in increasing angle, so the polygon is convex.

    Angles come from the rational parametrisation of the circle, ((1-t^2), 2t) / (1+t^2): no trigonometry.
    """
    n = int(rng.integers(3, 8))
    p = np.sort(rng.uniform(-0.98, 0.98, n))
    t = p / (1.0 - p * p)
    return a * (1.0 - t * t) / (1.0 + t * t), b * 2.0 * t / (1.0 + t * t)


def _shape_sd(
    kind: str, lx: np.ndarray, ly: np.ndarray, a: float, b: float, poly: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """Signed distance (pixels, < 0 inside) of a shape in its local frame; drives anti-aliased coverage."""
    if kind == "rect":
        return np.maximum(np.abs(lx) - np.float32(a), np.abs(ly) - np.float32(b))
    if kind == "ellipse":
        k = np.sqrt((lx * np.float32(1.0 / a)) ** 2 + (ly * np.float32(1.0 / b)) ** 2)
        return (k - 1.0) * np.float32(min(a, b))
    assert poly is not None
    vx, vy = poly
    n = len(vx)
    sd = np.full(np.broadcast_shapes(lx.shape, ly.shape), -np.inf, np.float32)
    for i in range(n):
        ex, ey = vx[(i + 1) % n] - vx[i], vy[(i + 1) % n] - vy[i]
        norm = (ex * ex + ey * ey) ** 0.5
        if norm < 1e-6:
            continue
        nx, ny = ey / norm, -ex / norm  # outward for counter-clockwise (increasing angle) vertices
        sd = np.maximum(sd, (lx - np.float32(vx[i])) * np.float32(nx) + (ly - np.float32(vy[i])) * np.float32(ny))
    return sd


def _fill(rng: np.random.Generator, lx: np.ndarray, ly: np.ndarray, a: float, noise: np.ndarray) -> np.ndarray:
    """A shape's own paint: colour gradient across it, plus stripes or noise texture, plus a lit bulge."""
    c0, c1 = _colour(rng, 0.9), _colour(rng, 0.9)
    g = np.clip(0.5 + lx * np.float32(rng.uniform(-0.5, 0.5) / a) + ly * np.float32(rng.uniform(-0.5, 0.5) / a), 0, 1)
    paint = c0 + g * (c1 - c0)
    style = rng.random()
    if style < 0.4:  # stripes at a random angle and period (high-frequency detail for small periods)
        dx, dy = _unit2(rng)
        period = float(rng.uniform(3.0, 0.4 * a + 4.0))
        st = _triangle((lx * np.float32(dx) + ly * np.float32(dy)) * np.float32(1.0 / period))
        paint = paint * (1.0 - np.float32(rng.uniform(0.2, 0.5)) * st)
    elif style < 0.8:  # the image's noise field seen through its own colour ramp
        tint = _colour(rng, 1.0)
        paint = paint + ((noise - 0.5) * np.float32(rng.uniform(0.4, 0.9))) * tint
    if rng.random() < 0.6:  # shading as if lit from one side: fake volume
        lx_, ly_ = _unit2(rng)
        paint = paint * (0.8 + 0.25 * np.clip((lx * lx_ + ly * ly_) / np.float32(a), -1, 1))
    return paint


def _draw_shape(
    rng: np.random.Generator,
    img: np.ndarray,
    noise: np.ndarray,
    centre: tuple[float, float],
    radius: float,
    kind: str,
) -> None:
    """Composite one rotated, anti-aliased, painted shape (with an optional soft drop shadow) into ``img``."""
    h, w = img.shape[1:]
    cx, cy = centre
    a = radius
    b = radius * float(rng.uniform(0.35, 1.0))
    c, s = _unit2(rng)
    shadow = rng.random() < 0.5
    sx, sy = (float(rng.uniform(2, 0.15 * a + 3)), float(rng.uniform(2, 0.15 * a + 3))) if shadow else (0.0, 0.0)
    pad = a + max(sx, sy) + 4
    r0, r1 = max(0, int(cy - pad)), min(h, int(cy + pad) + 1)
    c0, c1 = max(0, int(cx - pad)), min(w, int(cx + pad) + 1)
    if r0 >= r1 or c0 >= c1:
        return
    px = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5 - cx)
    py = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
    lx, ly = px * np.float32(c) + py * np.float32(s), py * np.float32(c) - px * np.float32(s)
    poly = _polygon(rng, a, b) if kind == "polygon" else None
    sd = _shape_sd(kind, lx, ly, a, b, poly)
    if kind == "ellipse" and rng.random() < 0.5:  # organic outline: wobble the border with the noise field
        sd = sd + (noise[r0:r1, c0:c1] - 0.5) * np.float32(rng.uniform(0.1, 0.4) * a)
    region = img[:, r0:r1, c0:c1]
    if shadow:  # the same outline, offset and with a wider (blurrier) coverage ramp
        ox, oy = sx * c + sy * s, sy * c - sx * s
        sd_sh = _shape_sd(kind, lx - np.float32(ox), ly - np.float32(oy), a, b, poly)
        sh_cov = np.clip(0.5 - sd_sh * np.float32(1.0 / (0.1 * a + 2.0)), 0, 1) * np.float32(rng.uniform(0.25, 0.5))
        region *= (1.0 - sh_cov)
    cover = np.clip(0.5 - sd, 0.0, 1.0)
    paint = _fill(rng, lx, ly, a, noise[r0:r1, c0:c1])
    region += cover * (paint - region)


def _draw_stroke(rng: np.random.Generator, img: np.ndarray, s: float) -> None:
    """A thin anti-aliased line segment (capsule): sharp, high-frequency edges that pin down orientation."""
    h, w = img.shape[1:]
    x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
    dx, dy = _unit2(rng)
    length = float(rng.uniform(0.1, 0.5) * s)
    x1, y1 = x0 + dx * length, y0 + dy * length
    half = float(rng.uniform(0.6, 2.5))
    r0, r1 = max(0, int(min(y0, y1) - half - 2)), min(h, int(max(y0, y1) + half + 3))
    c0, c1 = max(0, int(min(x0, x1) - half - 2)), min(w, int(max(x0, x1) + half + 3))
    if r0 >= r1 or c0 >= c1:
        return
    px = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5 - x0)
    py = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5 - y0)
    along = np.clip(px * np.float32(dx) + py * np.float32(dy), 0.0, np.float32(length))
    ex, ey = px - along * np.float32(dx), py - along * np.float32(dy)
    cover = np.clip(half + 0.5 - np.sqrt(ex * ex + ey * ey), 0.0, 1.0)
    region = img[:, r0:r1, c0:c1]
    region += cover * (_colour(rng, 1.0, 0.0, 1.0) - region)


def render_rgb(index: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A photo-like RGB image, uint8 (height, width, 3), fully determined by ``index``.

    Layers: gradient background with a glow, two octave-rich noise fields, 12-16 shapes (one big shape
    centred in each quadrant first, so every quadrant has structure), thin strokes, then per-pixel grain.
    """
    rng = rng_for("demo", RGB_KIND, index, "image")
    x, y, s = _pixel_grid(height, width)
    img = _background(rng, x, y)
    n1 = _noise(rng, height, width, (3, 4), 6)
    n2 = _noise(rng, height, width, (2, 5), 5)
    img += (n1 - 0.5) * (_colour(rng, 1.0) - 0.5) * np.float32(0.9)
    img *= (0.75 + 0.5 * n2)

    quadrants = rng.permutation(4)
    n_shapes = int(rng.integers(12, 17))
    kinds = ("ellipse", "rect", "polygon")
    for i in range(n_shapes):
        if i < 4:  # one big shape per quadrant, in random order
            q = int(quadrants[i])
            cx = (q % 2 + rng.uniform(0.15, 0.85)) * width / 2
            cy = (q // 2 + rng.uniform(0.15, 0.85)) * height / 2
            radius = float(rng.uniform(0.08, 0.2)) * s
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            radius = float(rng.uniform(0.02, 0.12)) * s
        _draw_shape(rng, img, n1 if i % 2 else n2, (float(cx), float(cy)), radius, kinds[int(rng.integers(0, 3))])
    for _ in range(int(rng.integers(3, 8))):
        _draw_stroke(rng, img, s)
    img += (rng.random((height, width), dtype=np.float32) - 0.5) * np.float32(2 * GRAIN)
    return _to_uint8(img)
