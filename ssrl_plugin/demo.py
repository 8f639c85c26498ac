"""Built-in procedural demo corpus: ``ssrl build`` works with no download.

Two kinds of source, both rendered from nothing but their index:

- ``rgb``: "photo-like" layered images (gradient background, multi-octave value noise, a dozen anti-aliased
  shapes with their own gradients, stripes and shadows, thin strokes, grain);
- ``rgbd``: a ray-cast 3-D room (textured ground, walls, optional open sky) holding 3-6 boxes and spheres at
  clearly different distances, with EXACT metric z-depth from the same ray hits that coloured the pixels.

Posed sequences of such rooms along camera paths (same renderer, see :func:`render_view`) live in
:mod:`ssrl_plugin.demo_sequence`.

Determinism: every draw comes from a PCG64 generator keyed (through sha256, see :mod:`ssrl_plugin.seeding`)
by ``("demo", kind, index, purpose)``, never global state. Per-pixel maths uses only + - * / sqrt floor
min/max and comparisons, which IEEE 754 rounds exactly the same everywhere; no transcendental functions
(their SIMD implementations differ by an ulp between CPUs), no BLAS (its summation order differs between
machines), no Pillow drawing (its C code may be compiled with FMA contraction on some platforms). So the same
index gives byte-identical arrays on any machine with the same numpy major version.

Everything is vectorised; objects are ray-cast only inside the screen rectangle their bounding box projects to.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from .core import DepthMap, Source
from .errors import SourceError
from .imaging import digest_text
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
    kind, index, orig_width, orig_height = ref.extra
    if kind not in (RGB_KIND, RGBD_KIND):
        raise SourceError(f"{ref.id}: unknown demo kind {kind!r}")
    width, height = fit_size(int(orig_width), int(orig_height), opts.max_side)
    if min(width, height) < opts.min_side:
        raise SourceError(f"{ref.id}: demo size {width}x{height} is below min_side={opts.min_side}")
    if kind == RGB_KIND:
        rgb = render_rgb(int(index), width, height)
        depth, extra_info = None, {}
    else:
        rgb, depth, extra_info = render_rgbd(int(index), width, height)
    digest = xxhash.xxh3_128(rgb.tobytes())
    info: dict[str, Any] = {
        "demo": True,
        "kind": kind,
        "index": int(index),
        "orig_size": [int(orig_width), int(orig_height)],  # same keys as files (see imaging.load_rgb)
        "size": [width, height],
        "scale": width / int(orig_width),
    }
    if depth is not None:
        digest.update(depth.values.astype(np.float32).tobytes())
        info.update(depth_kind="metric", valid_fraction=float(np.count_nonzero(depth.valid) / depth.valid.size))
    info.update(extra_info)
    return Source(id=ref.id, rgb=rgb, digest=digest_text(digest), depth=depth, info=info)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most ``max_side`` (0 = no limit)."""
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return width, height
    return max(1, (width * max_side) // longest), max(1, (height * max_side) // longest)


# -------------------------------------------------------------------------------------------- noise helpers


def _interp_index(cells: int, n: int, periodic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice indices and linear weights to stretch ``cells`` lattice steps over ``n`` samples.

    Linear, not smoothstep: in the pyramid sum of :func:`_noise` coarse octaves are resampled several
    times, and smoothstep's flat spots at every lattice point would pile up into a visible grid.
    """
    pos = np.arange(n, dtype=np.float64) * (cells / n)
    i0 = np.floor(pos).astype(np.intp)
    w = (pos - i0).astype(np.float32)
    i1 = (i0 + 1) % cells if periodic else i0 + 1
    return i0, i1, w


def _upsample(lattice: np.ndarray, height: int, width: int, periodic: bool) -> np.ndarray:
    """Separable bilinear resampling of a small lattice to (height, width) (periodic: the result tiles)."""
    gy, gx = lattice.shape
    cy, cx = (gy, gx) if periodic else (gy - 1, gx - 1)
    i0, i1, wx = _interp_index(cx, width, periodic)
    rows = lattice[:, i0] * (1.0 - wx) + lattice[:, i1] * wx
    j0, j1, wy = _interp_index(cy, height, periodic)
    out = rows[j1]  # out = rows[j0] + (rows[j1] - rows[j0]) * wy, in place: full-size temporaries are costly
    top = rows[j0]
    out -= top
    out *= wy[:, None]
    out += top
    return out


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
    """Multi-octave value noise in [0, 1], float32 (height, width); ``cells`` = (rows, cols) of octave 0.

    Pyramid form: the octaves are summed on their (small) lattices, each coarser sum resampled onto the
    next finer lattice, and only the final lattice is stretched to full size: one full-size upsample per
    field instead of one per octave (~3x faster for the same cloudy look).
    """
    acc: np.ndarray | None = None
    amp = 1.0
    for o in range(octaves):
        gy, gx = min(cells[0] << o, height), min(cells[1] << o, width)
        shape = (gy, gx) if periodic else (gy + 1, gx + 1)
        lattice = rng.random(shape, dtype=np.float32)
        lattice *= np.float32(amp)
        if acc is not None:
            lattice += _upsample(acc, shape[0], shape[1], periodic)
        acc = lattice
        amp *= persistence
    assert acc is not None
    return _normalise(_upsample(acc, height, width, periodic))


def _atlas(layers: list[np.ndarray]) -> np.ndarray:
    """Texture atlas for bilinear lookups: row ``layer * TILE^2 + v * TILE + u`` holds the four texels
    (u, v), (u+1, v), (u, v+1), (u+1, v+1) (wrapping), so a lookup is one gather of 16-byte rows
    instead of four scattered gathers (gathers dominate the cost of texturing)."""
    packed = []
    for layer in layers:
        right, down = np.roll(layer, -1, axis=1), np.roll(layer, -1, axis=0)
        diag = np.roll(down, -1, axis=1)
        packed.append(np.stack([layer, right, down, diag], axis=-1).reshape(-1, 4))
    return np.ascontiguousarray(np.concatenate(packed), dtype=np.float32)


ATLAS_LAYER = TILE * TILE  # rows per atlas layer


def _atlas_lookup(atlas: np.ndarray, u: np.ndarray, v: np.ndarray, layer: np.ndarray | int = 0) -> np.ndarray:
    """Bilinear, wrap-around lookup at texel coordinates (u, v) (any size) in atlas layer ``layer``
    (a per-pixel intp array of layer numbers times ATLAS_LAYER, or 0)."""
    fu, fv = np.floor(u), np.floor(v)
    wu, wv = u - fu, v - fv
    idx = (fv.astype(np.intp) & TILE_MASK) * TILE + (fu.astype(np.intp) & TILE_MASK)
    idx += layer
    texels = atlas.take(idx, axis=0)
    t00, t01, t10, t11 = (texels[..., k] for k in range(4))
    top = t00 + (t01 - t00) * wu
    bottom = t10 + (t11 - t10) * wu
    bottom -= top
    bottom *= wv
    bottom += top
    return bottom


def _clip01(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] in place (np.clip's Python wrapper costs more than the work on a strip)."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


def _triangle(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1: stripes without calling sin()."""
    return np.abs(2.0 * (x - np.floor(x)) - 1.0)


def _unit2(rng: np.random.Generator) -> tuple[float, float]:
    """A random 2-D unit vector without trigonometry (rejection sampling, then sqrt)."""
    while True:
        a, b = rng.uniform(-1.0, 1.0, 2)
        n2 = a * a + b * b
        if 0.01 < n2 <= 1.0:
            n = math.sqrt(n2)
            return float(a / n), float(b / n)


def _colour(rng: np.random.Generator, saturation: float, lo: float = 0.1, hi: float = 0.95) -> np.ndarray:
    """Random RGB in [lo, hi], mixed towards its grey by ``1 - saturation`` (walls muted, objects vivid).

    Shape (3, 1, 1): images are rendered channel-first, where broadcasting a colour over a plane runs
    along contiguous rows (an (H, W, 3) layout makes numpy loop over runs of 3 and is ~20x slower).
    """
    c = rng.uniform(lo, hi, 3)
    return (c.mean() + (c - c.mean()) * saturation).astype(np.float32).reshape(3, 1, 1)


def grain_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Per-pixel grain in [-GRAIN, GRAIN), float32 (height, width)."""
    return (rng.random((height, width), dtype=np.float32) - 0.5) * np.float32(2 * GRAIN)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Channel-first float image in [0, 1] -> contiguous uint8 (H, W, 3), rounding half up."""
    x = img * np.float32(255.0)
    x += np.float32(0.5)
    np.maximum(x, 0.0, out=x)
    np.minimum(x, 255.0, out=x)
    return np.ascontiguousarray(x.astype(np.uint8).transpose(1, 2, 0))


# ---------------------------------------------------------------------------------------- "photo" RGB images


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel-centre coordinates in units of the longer side (shapes keep their aspect at any size)."""
    s = float(max(width, height))
    x = ((np.arange(width, dtype=np.float32) + 0.5) / s)[None, :]
    y = ((np.arange(height, dtype=np.float32) + 0.5) / s)[:, None]
    return x, y, s


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear two-colour gradient at a random angle plus an off-centre glow: no axis of symmetry.
    Returns float32 (3, H, W); built in place, channel by channel (big temporaries cost page faults)."""
    dx, dy = _unit2(rng)
    g = x * np.float32(dx) + y * np.float32(dy)
    g -= g.min()
    g *= np.float32(1.0 / max(float(g.max()), 1e-6))
    c0, c1, c2 = _colour(rng, 0.7).ravel(), _colour(rng, 0.7).ravel(), _colour(rng, 0.9).ravel()
    gx, gy, gr = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.7), rng.uniform(0.1, 0.35)
    glow = (x - np.float32(gx)) ** 2 + (y - np.float32(gy)) ** 2
    glow *= np.float32(1.0 / (gr * gr))
    glow += 1.0
    np.divide(np.float32(rng.uniform(0.2, 0.5)), glow, out=glow)  # glow strength in (0, 0.5]
    keep = 1.0 - glow
    img = np.empty((3,) + g.shape, np.float32)
    for c in range(3):  # mix(gradient, c2, glow)
        band = img[c]
        np.multiply(g, c1[c] - c0[c], out=band)
        band += c0[c]
        band *= keep
        band += glow * c2[c]
    return img


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
        norm = math.sqrt(ex * ex + ey * ey)
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
    tint = _colour(rng, 1.0)  # the image's noise seen through the shape's own colour ramp: never flat
    paint = paint + ((noise - 0.5) * np.float32(rng.uniform(0.4, 1.0))) * tint
    if rng.random() < 0.45:  # stripes at a random angle and period (high-frequency detail for small periods)
        dx, dy = _unit2(rng)
        period = float(rng.uniform(3.0, 0.4 * a + 4.0))
        st = _triangle((lx * np.float32(dx) + ly * np.float32(dy)) * np.float32(1.0 / period))
        paint = paint * (1.0 - np.float32(rng.uniform(0.2, 0.5)) * st)
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
    tint = (_colour(rng, 1.0).ravel() - 0.5) * np.float32(0.9)
    detail = _noise(rng, height, width, (12, 16), 3, persistence=0.7)  # mid/high frequencies: no flat patch
    light = 0.75 + 0.5 * n2
    n1c, detail_c = n1 - 0.5, (detail - 0.5) * np.float32(0.3)
    for c in range(3):
        band = img[c]
        band += n1c * tint[c]
        band *= light
        band += detail_c

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
        noise = (n1, n2, detail)[int(rng.integers(0, 3))]
        _draw_shape(rng, img, noise, (float(cx), float(cy)), radius, kinds[int(rng.integers(0, 3))])
    for _ in range(int(rng.integers(3, 8))):
        _draw_stroke(rng, img, s)
    grain = rng.random((height, width), dtype=np.float32) - 0.5
    grain *= np.float32(2 * GRAIN)
    img += grain
    return _to_uint8(img)


# ------------------------------------------------------------------------------------- ray-cast RGB-D scenes

Vec3 = tuple[float, float, float]
Rays = tuple[np.ndarray, np.ndarray, np.ndarray]
Window = tuple[int, int, int, int]  # row0, row1, col0, col1 (half-open)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: pixel (col, row) looks along ``forward + right * x + up * y`` with
    ``x = (col + 0.5 - cx) / fx`` and ``y = (cy - row - 0.5) / fy``.

    That ray has a unit component along ``forward``, so the ray parameter ``t`` of a hit IS its z-depth
    (distance along the optical axis), which is what metric depth maps store.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: Vec3
    right: Vec3
    up: Vec3
    forward: Vec3

    def rays(self, row0: int = 0, row1: int | None = None) -> Rays:
        """World ray directions (dx, dy, dz) of image rows [row0, row1), each float64 (rows, width)."""
        row1 = self.height if row1 is None else row1
        xc = (np.arange(self.width, dtype=np.float64) + 0.5 - self.cx) / self.fx
        yc = (self.cy - (np.arange(row0, row1, dtype=np.float64) + 0.5)) / self.fy
        return tuple(  # type: ignore[return-value]
            self.right[k] * xc[None, :] + (self.up[k] * yc + self.forward[k])[:, None] for k in range(3)
        )

    def pixel_window(self, points: np.ndarray, margin: int = 2) -> Window:
        """(row0, row1, col0, col1) covering the projection of ``points`` (N, 3); the whole image if any
        point is not safely in front of the camera. Objects are only ray-cast inside this window."""
        rel = points - np.asarray(self.position)
        z = rel @ np.asarray(self.forward)  # culling only: a BLAS rounding difference cannot change pixels
        if (z < 0.05).any():
            return 0, self.height, 0, self.width
        u = self.cx + self.fx * (rel @ np.asarray(self.right)) / z - 0.5
        v = self.cy - self.fy * (rel @ np.asarray(self.up)) / z - 0.5
        r0 = min(max(int(np.floor(v.min())) - margin, 0), self.height)
        r1 = min(max(int(np.ceil(v.max())) + margin + 1, 0), self.height)
        c0 = min(max(int(np.floor(u.min())) - margin, 0), self.width)
        c1 = min(max(int(np.ceil(u.max())) + margin + 1, 0), self.width)
        return r0, r1, c0, c1

    def to_info(self) -> dict[str, Any]:
        return {
            "model": "pinhole",
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "position": list(self.position),
            "right": list(self.right),
            "up": list(self.up),
            "forward": list(self.forward),
            "depth": "z",  # depth = distance along `forward`
        }


@dataclass(frozen=True)
class Room:
    """Axis-aligned room around the camera: ground y=0, walls x=-left, x=right, z=back, z=-front, and at
    y=top either a ceiling or (``open_sky``) nothing: rays leaving over the walls see sky, depth invalid."""

    left: float
    right: float
    back: float
    front: float
    top: float
    open_sky: bool

    def to_info(self) -> dict[str, Any]:
        return {
            "ground_y": 0.0,
            "left_x": -self.left,
            "right_x": self.right,
            "back_z": self.back,
            "front_z": -self.front,
            "top_y": self.top,
            "open_sky": self.open_sky,
        }


@dataclass(frozen=True)
class Box:
    lo: Vec3
    hi: Vec3

    def corners(self) -> np.ndarray:
        return np.array([[x, y, z] for x in (self.lo[0], self.hi[0]) for y in (self.lo[1], self.hi[1])
                         for z in (self.lo[2], self.hi[2])])

    def to_info(self) -> dict[str, Any]:
        return {"type": "box", "min": list(self.lo), "max": list(self.hi)}


@dataclass(frozen=True)
class Sphere:
    centre: Vec3
    radius: float

    def corners(self) -> np.ndarray:
        c, r = np.asarray(self.centre), self.radius
        return np.array([[c[0] + sx * r, c[1] + sy * r, c[2] + sz * r] for sx in (-1, 1) for sy in (-1, 1)
                         for sz in (-1, 1)])

    def to_info(self) -> dict[str, Any]:
        return {"type": "sphere", "center": list(self.centre), "radius": self.radius}


@dataclass(frozen=True)
class Scene:
    camera: Camera
    room: Room
    objects: tuple[Box | Sphere, ...]
    light: Vec3  # unit vector towards the (directional) light

    def to_info(self) -> dict[str, Any]:
        return {
            "room": self.room.to_info(),
            "objects": [o.to_info() for o in self.objects],
            "light": list(self.light),
        }


def _unit3(x: float, y: float, z: float) -> Vec3:
    n = math.sqrt(x * x + y * y + z * z)
    return (x / n, y / n, z / n)


def _make_camera(rng: np.random.Generator, width: int, height: int) -> Camera:
    """Camera 1.2-1.8 m above the ground, yawed up to ~14 degrees, pitched 5-12 degrees down.

    Angles enter as tangents and become cos/sin through sqrt only, so the pose is bit-exact everywhere.
    """
    h = float(rng.uniform(1.2, 1.8))
    x0 = float(rng.uniform(-0.4, 0.4))
    ty, tp = float(rng.uniform(-0.25, 0.25)), float(rng.uniform(0.08, 0.22))
    cyaw = 1.0 / math.sqrt(1.0 + ty * ty)
    syaw = ty * cyaw
    cp = 1.0 / math.sqrt(1.0 + tp * tp)
    sp = tp * cp
    f = FOCAL_PER_WIDTH * width
    return Camera(
        width=width,
        height=height,
        fx=f,
        fy=f,
        cx=width / 2.0,
        cy=height / 2.0,
        position=(x0, h, 0.0),
        right=(cyaw, 0.0, -syaw),
        up=(syaw * sp, cp, cyaw * sp),
        forward=(syaw * cp, -sp, cyaw * cp),
    )


def _make_objects(rng: np.random.Generator, cam: Camera, room: Room) -> tuple[Box | Sphere, ...]:
    """3-6 boxes/spheres standing in distance bins along the view direction (so their depths differ
    clearly), at random lateral offsets inside the view (so some are left/right of or hide others)."""
    n = int(rng.integers(3, 7))
    hx, hz = cam.forward[0], cam.forward[2]  # horizontal viewing direction (unnormalised)
    hn = math.sqrt(hx * hx + hz * hz)
    hx, hz = hx / hn, hz / hn
    far = min(OBJECT_FAR, room.back - 1.0)
    edges = np.linspace(OBJECT_NEAR, far, n + 1)
    objects: list[Box | Sphere] = []
    for i in range(n):
        bin_w = float(edges[i + 1] - edges[i])
        size_d = float(min(1.2, 0.8 * bin_w) * rng.uniform(0.4, 1.0))
        dist = float(rng.uniform(edges[i] + size_d / 2, edges[i + 1] - size_d / 2))
        lat = float(rng.uniform(-0.45, 0.45)) * dist
        cx = cam.position[0] + hx * dist + hz * lat
        cz = cam.position[2] + hz * dist - hx * lat
        if rng.random() < 0.65:
            near_cap = 0.3 + 0.35 * dist  # near objects stay small enough not to fill the view
            w = float(rng.uniform(0.4, min(1.6, near_cap)))
            tall = rng.random() < 0.2
            hgt = float(rng.uniform(1.5, 3.0) if tall else rng.uniform(0.4, 2.0))
            hgt = min(hgt, near_cap + 0.3)
            hgt = min(hgt, room.top - 0.1) if not room.open_sky else hgt
            cx = min(max(cx, -room.left + w / 2 + 0.1), room.right - w / 2 - 0.1)
            cz = min(cz, room.back - size_d / 2 - 0.1)
            objects.append(Box((cx - w / 2, 0.0, cz - size_d / 2), (cx + w / 2, hgt, cz + size_d / 2)))
        else:
            r = float(min(rng.uniform(0.25, 0.8), size_d / 2 + 0.05))
            cy = r + (float(rng.uniform(0.2, 1.0)) if rng.random() < 0.3 else 0.0)
            cx = min(max(cx, -room.left + r + 0.1), room.right - r - 0.1)
            cz = min(cz, room.back - r - 0.1)
            objects.append(Sphere((cx, cy, cz), r))
    return tuple(objects)


def make_scene(index: int, width: int = 640, height: int = 480, kind: str = RGBD_KIND) -> Scene:
    """The geometry of RGB-D demo scene ``index`` (independent of the size, except the intrinsics); ``kind``
    keys the random draws, so other demo kinds (sequences) get scenes of their own from the same generator."""
    rng = rng_for("demo", kind, index, "scene")
    cam = _make_camera(rng, width, height)
    open_sky = bool(rng.random() < OUTDOOR_FRACTION)
    room = Room(
        left=float(rng.uniform(2.5, 7.0)) - cam.position[0],
        right=float(rng.uniform(2.5, 7.0)) + cam.position[0],
        back=float(rng.uniform(9.0, 15.0)),
        front=float(rng.uniform(1.0, 3.0)),
        top=float(rng.uniform(3.0, 5.0) if open_sky else rng.uniform(2.6, 4.0)),
        open_sky=open_sky,
    )
    objects = _make_objects(rng, cam, room)
    light = _unit3(float(rng.uniform(-1, 1)), float(rng.uniform(0.8, 1.6)), float(rng.uniform(-1.0, 0.5)))
    return Scene(cam, room, objects, light)


# Per-surface material parameters: columns of the (n_surfaces, N_PARAMS) table gathered per pixel.
P_TEX_A, P_TEX_B, P_OFF_U, P_OFF_V = 0, 1, 2, 3  # texel coords: u = s*A - q*B + off_u, v = s*B + q*A + off_v
P_W_NOISE, P_W_MACRO = 4, 5  # weights of the surface's texture layer and of large-scale blotches
P_STRIPE_A, P_STRIPE_B, P_STRIPE_PHASE, P_W_STRIPE, P_SHARP = 6, 7, 8, 9, 10  # stripes (cycles per metre)
P_SHADE = 11  # Lambert shading of a flat surface (constant over it); spheres are shaded per pixel
P_LO, P_SPAN = 12, 15  # three rows each: darkest colour, brightest - darkest
P_AXIS, P_LAYER = 18, 19  # texture projection axis (AXIS_*), atlas layer offset (exact small ints as float)
N_PARAMS = 20
N_LAYERS = 3  # atlas layers: fine value noise, wood-like streaks, hard-edged blotches
MACRO_SCALE = 1.0 / 7.0  # blotch texture is the fine one seen 7x larger (breaks up the tile's repetition)
AMBIENT, DIFFUSE = 0.3, 0.8  # half-Lambert: shade = AMBIENT + DIFFUSE * (1 + n.l) / 2


def _surfaces(scene: Scene) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Axis (texture projection), normal and material group of every surface id; boxes own 6 consecutive
    ids (face 2k: the min side along axis k, normal -e_k; 2k+1: the max side), spheres one (normal per pixel)."""
    axes = [AXIS_Y, AXIS_Y, AXIS_X, AXIS_X, AXIS_Z, AXIS_Z]
    normals = [(0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, -1), (0, 0, 1)]
    groups = list(range(ROOM_SURFACES))
    for g, obj in enumerate(scene.objects, start=ROOM_SURFACES):
        if isinstance(obj, Box):
            for face in range(6):
                k = face // 2
                axes.append(k)
                normals.append(tuple((1 if face % 2 else -1) if j == k else 0 for j in range(3)))
                groups.append(g)
        else:
            axes.append(AXIS_Z)
            normals.append((0, 0, -1))  # replaced per pixel
            groups.append(g)
    return np.array(axes, np.int8), np.array(normals, np.float64), groups


def _half_lambert(ndl: np.ndarray | float) -> np.ndarray | float:
    """Soft shading: surfaces facing away from the light stay readable (textures must survive)."""
    return AMBIENT + DIFFUSE * 0.5 * (ndl + 1.0)


def _materials(
    rng: np.random.Generator, axes: np.ndarray, normals: np.ndarray, groups: list[int], light: Vec3
) -> np.ndarray:
    """(n_surfaces, N_PARAMS) float32 parameter table, gathered per pixel by surface id (one row gather).

    Surfaces of one object share palette and pattern, but every surface gets its own texture rotation,
    scale and offset so no two faces (and no two image patches) look alike.
    """
    table = np.zeros((len(groups), N_PARAMS), np.float32)
    group_params: dict[int, np.ndarray] = {}
    for i, g in enumerate(groups):
        if g not in group_params:
            p = np.zeros(N_PARAMS, np.float32)
            sat = float(rng.uniform(0.25, 0.7) if g < ROOM_SURFACES else rng.uniform(0.7, 1.0))
            c1, c2 = _colour(rng, sat).ravel(), _colour(rng, sat).ravel()
            lo = c1 * np.float32(rng.uniform(0.25, 0.5))
            hi = np.minimum(c1 * np.float32(0.5) + c2 * np.float32(0.6) + np.float32(0.15), 1.0)
            p[P_LO : P_LO + 3], p[P_SPAN : P_SPAN + 3] = lo, hi - lo
            p[P_W_NOISE] = rng.uniform(0.9, 1.8)
            p[P_W_MACRO] = rng.uniform(0.3, 0.8)
            sa, sb = _unit2(rng)
            freq = float(rng.uniform(0.7, 5.0))
            p[P_STRIPE_A], p[P_STRIPE_B] = sa * freq, sb * freq
            p[P_W_STRIPE] = rng.uniform(0.2, 0.6) if rng.random() < 0.6 else 0.0
            p[P_SHARP] = rng.uniform(1.0, 5.0)
            p[P_LAYER] = int(rng.integers(0, N_LAYERS)) * ATLAS_LAYER
            group_params[g] = p
        p = group_params[g].copy()
        c, s = _unit2(rng)
        scale = float(rng.uniform(40.0, 100.0))  # texels per metre
        p[P_TEX_A], p[P_TEX_B] = c * scale, s * scale
        p[P_OFF_U], p[P_OFF_V] = rng.uniform(0, TILE), rng.uniform(0, TILE)
        p[P_STRIPE_PHASE] = rng.random()
        n = normals[i]
        p[P_SHADE] = _half_lambert(float(n[0] * light[0] + n[1] * light[1] + n[2] * light[2]))
        p[P_AXIS] = axes[i]
        table[i] = p
    return table


@functools.lru_cache(maxsize=1)
def _texture_atlas() -> np.ndarray:
    """Three tileable texture layers shared by all scenes (each surface sees them through its own random
    rotation, scale, offset and palette): fine multi-octave noise, streaks (wood/brushed), blotches."""
    rng = rng_for("demo", RGBD_KIND, "texture-atlas")
    fine = _noise(rng, TILE, TILE, (4, 4), 6, periodic=True)
    streaks = _noise(rng, TILE, TILE, (2, 16), 4, periodic=True)
    blotch = np.clip((_noise(rng, TILE, TILE, (6, 6), 3, periodic=True) - 0.5) * 4.0 + 0.5, 0.0, 1.0)
    atlas = _atlas([fine, 0.35 * fine + 0.65 * streaks, 0.7 * blotch + 0.3 * fine])
    atlas.flags.writeable = False  # shared between calls
    return atlas


STRIP_ROWS = 32  # RGB-D scenes render in strips: temporaries stay in cache and are reused, not page-faulted


def _strip_window(window: Window, row0: int, row1: int) -> Window | None:
    """``window`` clipped to rows [row0, row1), in strip-local rows; None if they do not overlap."""
    r0, r1 = max(window[0], row0), min(window[1], row1)
    if r0 >= r1 or window[2] >= window[3]:
        return None
    return r0 - row0, r1 - row0, window[2], window[3]


def _cast_room(room: Room, o: Vec3, d: Rays) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance of every ray from the room box (the camera is inside) and the surface it leaves by."""
    dx, dy, dz = d
    with np.errstate(divide="ignore"):
        tx = np.maximum((room.right - o[0]) / dx, (-room.left - o[0]) / dx)
        ty = np.maximum((room.top - o[1]) / dy, (0.0 - o[1]) / dy)
        tz = np.maximum((room.back - o[2]) / dz, (-room.front - o[2]) / dz)
    t = tz
    sid = np.where(dz > 0, np.int32(BACK), np.int32(FRONT))
    np.copyto(sid, np.where(dx > 0, np.int32(RIGHT), np.int32(LEFT)), where=tx < t)
    t = np.minimum(t, tx)
    np.copyto(sid, np.where(dy > 0, np.int32(TOP), np.int32(GROUND)), where=ty < t)
    np.minimum(t, ty, out=t)
    return t, sid


def _cast_box(box: Box, o: Vec3, d: Rays, t: np.ndarray, sid: np.ndarray, base: int, window: Window) -> None:
    """Slab test inside ``window``; where the box is the nearest hit so far, update ``t`` and ``sid``."""
    r0, r1, c0, c1 = window
    near = np.full((r1 - r0, c1 - c0), -np.inf)
    far = np.full((r1 - r0, c1 - c0), np.inf)
    face = np.zeros((r1 - r0, c1 - c0), np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            dk = d[k][r0:r1, c0:c1]
            a, b = (box.lo[k] - o[k]) / dk, (box.hi[k] - o[k]) / dk
            nk = np.minimum(a, b)
            np.copyto(face, 2 * k + (dk <= 0), where=nk > near)
            np.maximum(near, nk, out=near)
            np.minimum(far, np.maximum(a, b), out=far)
    tw, sw = t[r0:r1, c0:c1], sid[r0:r1, c0:c1]
    hit = (near <= far) & (near > 0) & (near < tw)
    tw[hit] = near[hit]
    sw[hit] = base + face[hit]


def _cast_sphere(sph: Sphere, o: Vec3, d: Rays, t: np.ndarray, sid: np.ndarray, base: int, window: Window) -> None:
    """Nearer root of |o + t d - c|^2 = r^2 inside ``window``; update ``t`` and ``sid`` where nearest."""
    r0, r1, c0, c1 = window
    dx, dy, dz = (dk[r0:r1, c0:c1] for dk in d)
    ox, oy, oz = (o[k] - sph.centre[k] for k in range(3))
    a = dx * dx + dy * dy + dz * dz
    b = dx * ox + dy * oy + dz * oz
    disc = b * b - a * (ox * ox + oy * oy + oz * oz - sph.radius * sph.radius)
    root = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    tw, sw = t[r0:r1, c0:c1], sid[r0:r1, c0:c1]
    hit = (disc >= 0) & (root > 0) & (root < tw)
    tw[hit] = root[hit]
    sw[hit] = base


def object_windows(scene: Scene) -> list[Window]:
    """Screen rectangle of each object (projected bounding box): rays outside it cannot hit the object."""
    return [scene.camera.pixel_window(obj.corners()) for obj in scene.objects]


def cast_rows(scene: Scene, windows: list[Window], row0: int, row1: int) -> tuple[Rays, np.ndarray, np.ndarray]:
    """Ray-cast image rows [row0, row1): ray directions, t = z-depth float64 and surface id int32 (rows, W)."""
    cam = scene.camera
    d = cam.rays(row0, row1)
    t, sid = _cast_room(scene.room, cam.position, d)
    base = ROOM_SURFACES
    for obj, window in zip(scene.objects, windows):
        local = _strip_window(window, row0, row1)
        if local is not None:
            (_cast_box if isinstance(obj, Box) else _cast_sphere)(obj, cam.position, d, t, sid, base, local)
        base += 6 if isinstance(obj, Box) else 1
    return d, t, sid


class _Shader:
    """Everything random about a scene's look, drawn once (so it cannot depend on the strip size),
    and the per-strip colouring: texture x half-Lambert x contact shadows, haze, sky, grain."""

    SHADOW_SOFT = 0.35  # metres over which a contact shadow fades out
    SHADOW_DARK = 0.5  # darkening at the centre of a contact shadow

    def __init__(self, index: int, scene: Scene, kind: str = RGBD_KIND, grain: bool = True):
        rng = rng_for("demo", kind, index, "materials")
        cam = scene.camera
        self.scene = scene
        axes, normals, groups = _surfaces(scene)
        self.table = _materials(rng, axes, normals, groups, scene.light)
        self.atlas = _texture_atlas()
        self.haze_amount = np.float32(rng.uniform(0.15, 0.45))
        self.haze_dist = np.float32(rng.uniform(15.0, 40.0))
        if scene.room.open_sky:
            self.haze_col = _colour(rng, 0.4, 0.5, 0.9).ravel()
        else:
            self.haze_col = _colour(rng, 0.4, 0.05, 0.3).ravel()
        self.horizon = _colour(rng, 0.5, 0.55, 0.95)[:, :, 0]
        self.zenith = _colour(rng, 0.8, 0.2, 0.8)[:, :, 0]
        self.cloud_scale = float(rng.uniform(8.0, 20.0))
        self.cloud_cut = np.float32(rng.uniform(0.3, 0.55))
        # the last draw, so callers that bring their own grain (one per frame of a sequence) skip it
        self.grain = grain_field(rng, cam.height, cam.width) if grain else None
        self.spheres: list[tuple[int, Sphere]] = []
        self.footprints = []
        base = ROOM_SURFACES
        for obj in scene.objects:
            if isinstance(obj, Sphere):
                self.spheres.append((base, obj))
            self.footprints.append(self._shadow_footprint(obj))
            base += 6 if isinstance(obj, Box) else 1
        self.shadows = self._shadow_windows(cam)

    def with_view(self, camera: Camera, grain: np.ndarray) -> _Shader:
        """The same materials seen from another camera (a frame of a camera path), with its own grain."""
        view = copy.copy(self)
        view.scene = dataclasses.replace(self.scene, camera=camera)
        view.shadows = view._shadow_windows(camera)
        view.grain = grain
        return view

    def _shadow_windows(self, cam: Camera) -> list[tuple[float, float, float, float, bool, Window]]:
        """Each footprint with the screen window of its soft edge as seen by ``cam``."""
        e = self.SHADOW_SOFT
        out = []
        for cx, cz, hx, hz, round_ in self.footprints:
            pts = np.array([[cx + sx * (hx + e), 0.0, cz + sz * (hz + e)] for sx in (-1, 1) for sz in (-1, 1)])
            out.append((cx, cz, hx, hz, round_, cam.pixel_window(pts)))
        return out

    def _shadow_footprint(self, obj: Box | Sphere) -> tuple[float, float, float, float, bool]:
        """Ground footprint (centre x/z, half sizes, round?) displaced away from the light."""
        light = self.scene.light
        if isinstance(obj, Box):
            lift = (obj.hi[1] - obj.lo[1]) * 0.5
            cx, cz = (obj.lo[0] + obj.hi[0]) / 2, (obj.lo[2] + obj.hi[2]) / 2
            hx, hz = (obj.hi[0] - obj.lo[0]) / 2, (obj.hi[2] - obj.lo[2]) / 2
        else:
            lift = obj.centre[1]
            cx, cz = obj.centre[0], obj.centre[2]
            hx = hz = obj.radius
        cx -= light[0] / light[1] * lift
        cz -= light[2] / light[1] * lift
        return cx, cz, hx, hz, isinstance(obj, Sphere)

    def _contact_shadows(self, row0: int, p: tuple[np.ndarray, ...], sid: np.ndarray, shade: np.ndarray) -> None:
        """Darken the ground around each object's footprint: anchors objects to the floor visually
        (soft blob shadows; geometry and depth are unaffected)."""
        for cx, cz, hx, hz, round_, window in self.shadows:
            local = _strip_window(window, row0, row0 + sid.shape[0])
            if local is None:
                continue
            r0, r1, c0, c1 = local
            ex = p[0][r0:r1, c0:c1] - np.float32(cx)
            ez = p[2][r0:r1, c0:c1] - np.float32(cz)
            if round_:
                dist = np.maximum(np.sqrt(ex * ex + ez * ez) - np.float32(hx), 0.0)
            else:
                ex = np.maximum(np.abs(ex) - np.float32(hx), 0.0)
                ez = np.maximum(np.abs(ez) - np.float32(hz), 0.0)
                dist = np.sqrt(ex * ex + ez * ez)
            dark = np.float32(self.SHADOW_DARK) * np.clip(1.0 - dist * np.float32(1.0 / self.SHADOW_SOFT), 0.0, 1.0)
            dark *= sid[r0:r1, c0:c1] == GROUND
            shade[r0:r1, c0:c1] *= 1.0 - dark

    def _sphere_shading(self, p: tuple[np.ndarray, ...], sid: np.ndarray, shade: np.ndarray) -> None:
        """Per-pixel half-Lambert shading of sphere pixels (normal = (hit - centre) / radius)."""
        light = self.scene.light
        for surface, sph in self.spheres:
            m = sid == surface
            if m.any():
                ndl = sum((p[k][m] - np.float32(sph.centre[k])) * np.float32(light[k] / sph.radius) for k in range(3))
                shade[m] = _half_lambert(ndl)

    def _sky(self, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """Colour (3, N) of sky rays (all with dy > 0): horizon-to-zenith gradient plus clouds projected on
        a high plane, so the sky is textured like everything else and never a flat patch."""
        elev = dy / np.sqrt(dx * dx + dy * dy + dz * dz)
        g = np.clip(elev * 2.5, 0.0, 1.0).astype(np.float32)
        inv = self.cloud_scale / dy
        clouds = _atlas_lookup(self.atlas, (dx * inv).astype(np.float32), (dz * inv).astype(np.float32))
        cover = np.clip((clouds - self.cloud_cut) * np.float32(2.5), 0.0, 1.0)
        sky = self.horizon + g * (self.zenith - self.horizon)
        return sky + cover * (np.float32(0.95) - sky)

    def shade(self, row0: int, d: Rays, t: np.ndarray, sid: np.ndarray) -> np.ndarray:
        """Colour of rows [row0, row0 + len(t)) from their hits: float32 (3, rows, W) in ~[0, 1]."""
        o = self.scene.camera.position
        p = tuple((o[k] + t * d[k]).astype(np.float32) for k in range(3))  # hit points
        prm = self.table.take(sid.astype(np.intp), axis=0)  # (rows, W, N_PARAMS)
        tex_a, tex_b, axis = prm[..., P_TEX_A], prm[..., P_TEX_B], prm[..., P_AXIS]
        s = np.where(axis == AXIS_X, p[2], p[0])  # texture-plane coordinates: drop the normal's axis
        q = np.where(axis == AXIS_Y, p[2], p[1])
        u = s * tex_a - q * tex_b + prm[..., P_OFF_U]
        v = s * tex_b + q * tex_a + prm[..., P_OFF_V]
        value = _atlas_lookup(self.atlas, u, v, prm[..., P_LAYER].astype(np.intp)) - 0.5
        value *= prm[..., P_W_NOISE]
        u *= np.float32(MACRO_SCALE)
        v *= np.float32(MACRO_SCALE)
        value += prm[..., P_W_MACRO] * (_atlas_lookup(self.atlas, u, v) - 0.5)
        stripes = _triangle(s * prm[..., P_STRIPE_A] + q * prm[..., P_STRIPE_B] + prm[..., P_STRIPE_PHASE])
        stripes -= 0.5
        stripes *= prm[..., P_SHARP]
        np.maximum(stripes, -0.5, out=stripes)
        np.minimum(stripes, 0.5, out=stripes)
        value += prm[..., P_W_STRIPE] * stripes
        value += 0.5
        _clip01(value)

        shade = prm[..., P_SHADE].copy()
        self._sphere_shading(p, sid, shade)
        self._contact_shadows(row0, p, sid, shade)
        tf = t.astype(np.float32)
        haze = self.haze_amount * tf / (tf + self.haze_dist)
        shade *= 1.0 - haze
        img = np.empty((3,) + t.shape, np.float32)
        for c in range(3):
            img[c] = (prm[..., P_LO + c] + prm[..., P_SPAN + c] * value) * shade + haze * self.haze_col[c]
        if self.scene.room.open_sky:
            sky_rays = sid == TOP
            if sky_rays.any():
                img[:, sky_rays] = self._sky(*(dk[sky_rays] for dk in d))
        img += self.grain[row0 : row0 + t.shape[0]]
        return img


def render_rgbd(index: int, width: int = 640, height: int = 480) -> tuple[np.ndarray, DepthMap, dict[str, Any]]:
    """RGB-D demo scene ``index``: uint8 (H, W, 3), metric z-depth (invalid = open sky, stored as 0), and an
    info dict with the camera and the scene geometry (enough to re-derive every depth value)."""
    scene = make_scene(index, width, height)
    rgb, depth = render_view(_Shader(index, scene))
    info = {"camera": scene.camera.to_info(), "scene": scene.to_info(), "depth_units": "m"}
    return rgb, depth, info


def render_view(shader: _Shader) -> tuple[np.ndarray, DepthMap]:
    """Ray-cast and shade the shader's scene from its camera: uint8 (H, W, 3) and metric z-depth (invalid =
    open sky, stored as 0)."""
    scene = shader.scene
    width, height = scene.camera.width, scene.camera.height
    windows = object_windows(scene)
    rgb = np.empty((height, width, 3), np.uint8)
    depth = np.empty((height, width), np.float32)
    valid = np.ones((height, width), bool)
    for row0 in range(0, height, STRIP_ROWS):
        row1 = min(height, row0 + STRIP_ROWS)
        d, t, sid = cast_rows(scene, windows, row0, row1)
        rgb[row0:row1] = _to_uint8(shader.shade(row0, d, t, sid))
        depth[row0:row1] = t
        if scene.room.open_sky:
            valid[row0:row1] = sid != TOP
    depth[~valid] = 0.0
    return rgb, DepthMap(depth, valid, "metric")
