"""Shared machinery of the RGB-D tasks (regional depth ordering, relative 3D position).

Everything works on ``DepthMap.farness()`` (larger = farther whatever the depth kind), so inverse-depth sources
never flip an answer. Every size and threshold is relative to the image (fractions of the shorter side or of the
diagonal) or to the scene (fractions of the robust depth range), never absolute pixels or metres.

Pipeline shared by both tasks::

    field = prepare_depth(source, ...)          # farness, validity, percentile-robust normalisation
    geom = marker_geometry(w, h, cfg)           # window side, ring/badge radii, min distance between centres
    cands = flat_candidates(field, geom, cfg, rng)  # windows that are mostly valid and flat on their own pixels
    region = region_record(field, cx, cy, half)     # exact statistics of one chosen window
    image, badges = draw_markers(source, regions, geom, task)  # rings + circled labels, never over a window

Window statistics over the strided grid of candidate centres come from box sums (integral images of the valid
count, the sum and the sum of squares), so no per-pixel Python loop runs; the exact robust statistics (percentiles
of the window's own valid pixels) are computed, vectorised, on a bounded random subset only.

The ``verify`` helpers at the bottom re-read the source by a different route (plain slicing of the depth map at
the recorded boxes, pixel comparison of the output image) so that a bug in the window machinery is caught.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw

from .. import render
from ..core import DepthMap, Source
from ..errors import Reject
from ..registry import TaskConfig, check

MARKER_COLOR = render.RED
BOX_CONVENTION = "[x0, y0, x1, y1] pixel bounds, x0/y0 inclusive, x1/y1 exclusive"


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class DepthWindowConfig(TaskConfig):
    """Fields shared by the RGB-D tasks (each task subclasses it and adds its own)."""

    window_frac: float = 0.05  # window side, fraction of the shorter image side (made odd, at least 7 px)
    stride_frac: float = 0.5  # step between candidate centres, fraction of the window side
    min_valid_fraction: float = 0.9  # share of the window's own pixels that must carry valid depth
    min_map_valid_fraction: float = 0.1  # share of the whole map that must be valid, else "<task>/too_few_valid"
    norm_low_pct: float = 0.5  # normalisation: this percentile of valid farness maps to 0 ...
    norm_high_pct: float = 99.5  # ... and this one to 1 (outliers cannot move the thresholds)
    flat_tol: float = 0.06  # a window is flat when p90 - p10 of its normalised depth is below this
    min_marker_distance: float = 0.15  # centres at least this fraction of the image diagonal apart
    badge_frac: float = 0.045  # badge radius, fraction of the shorter image side (at least 10 px)
    max_candidates: int = 512  # exact percentiles computed on at most this many (random) flat-looking windows...
    min_candidates: int = 48  # ...stopping once this many are flat (the pickers need a handful, not hundreds)

    def _validate_common(self, key: str) -> None:
        check(0.005 <= self.window_frac <= 0.3, f"{key}.window_frac", f"must be in [0.005, 0.3], got {self.window_frac}")
        check(0.1 <= self.stride_frac <= 2.0, f"{key}.stride_frac", f"must be in [0.1, 2], got {self.stride_frac}")
        check(0.5 <= self.min_valid_fraction <= 1.0, f"{key}.min_valid_fraction",
              f"must be in [0.5, 1] (markers must not sit on invalid depth), got {self.min_valid_fraction}")
        check(0.0 < self.min_map_valid_fraction <= 1.0, f"{key}.min_map_valid_fraction",
              f"must be in (0, 1], got {self.min_map_valid_fraction}")
        check(0.0 <= self.norm_low_pct <= 25.0, f"{key}.norm_low_pct", f"must be a percentile in [0, 25], got {self.norm_low_pct}")
        check(75.0 <= self.norm_high_pct <= 100.0, f"{key}.norm_high_pct", f"must be a percentile in [75, 100], got {self.norm_high_pct}")
        check(0.0 < self.flat_tol <= 0.5, f"{key}.flat_tol", f"must be in (0, 0.5], got {self.flat_tol}")
        check(0.0 <= self.min_marker_distance <= 0.7, f"{key}.min_marker_distance",
              f"must be in [0, 0.7] (fraction of the image diagonal), got {self.min_marker_distance}")
        check(0.01 <= self.badge_frac <= 0.2, f"{key}.badge_frac", f"must be in [0.01, 0.2], got {self.badge_frac}")
        check(16 <= self.max_candidates <= 100_000, f"{key}.max_candidates",
              f"must be in [16, 100000], got {self.max_candidates}")
        check(2 <= self.min_candidates <= self.max_candidates, f"{key}.min_candidates",
              f"must be in [2, max_candidates={self.max_candidates}], got {self.min_candidates}")


# ------------------------------------------------------------------------------------------------- depth field


@dataclass(frozen=True)
class DepthField:
    """Farness of one source, its validity and its percentile-robust normalisation."""

    far: np.ndarray  # float32 (H, W), larger = farther, NaN where invalid
    valid: np.ndarray  # bool (H, W)
    lo: float  # farness at the low percentile
    hi: float  # farness at the high percentile
    low_pct: float
    high_pct: float
    valid_fraction: float
    kind: str

    @property
    def depth_range(self) -> float:
        """Robust depth range (hi - lo) in farness units: the scene's scale for relative thresholds."""
        return self.hi - self.lo

    def to_norm(self, far: Any) -> Any:
        return (far - self.lo) / (self.hi - self.lo)

    @functools.cached_property
    def norm(self) -> np.ndarray:
        """float32 (H, W), (far - lo) / (hi - lo), NaN where invalid (not clipped). Built on first use only: the
        generators normalise the few windows they look at instead (a full map costs ~3 ms at 1600x1064)."""
        norm = np.subtract(self.far, np.float32(self.lo))
        np.divide(norm, np.float32(self.hi - self.lo), out=norm)
        return norm

    def normalisation_metadata(self) -> dict[str, float]:
        return {"low_pct": float(self.low_pct), "high_pct": float(self.high_pct), "low": float(self.lo), "high": float(self.hi)}


def prepare_depth(source: Source, task: str, low_pct: float, high_pct: float, min_map_valid_fraction: float,
                  flat_reason: str) -> DepthField:
    """Farness + validity + normalisation, or a :class:`Reject` keyed ``<task>/...``.

    Pixels count as valid only where the map says so AND the farness is finite and positive (a zero or negative
    distance is not physical; it would also break the relative-gap test).

    The field is a pure function of the depth map and the two percentiles, so it is computed once per source and
    reused by later attempts and by the other RGB-D task of the same source visit (see :func:`_cached`).
    """
    depth = source.depth
    if depth is None:
        raise Reject(f"{task}/no_depth", f"source {source.id} has no depth map")
    if depth.shape != (source.height, source.width):
        raise Reject(f"{task}/no_depth", f"depth {depth.shape} does not match the RGB {(source.height, source.width)}")
    far, valid, n_valid, lo, hi = _cached(depth, ("field", float(low_pct), float(high_pct)),
                                          lambda: _depth_field(depth, low_pct, high_pct))
    fraction = n_valid / valid.size
    if n_valid == 0 or fraction < min_map_valid_fraction:
        raise Reject(f"{task}/too_few_valid", f"{fraction:.1%} of the depth map is valid (< {min_map_valid_fraction:.1%})")
    if not hi > lo * (1.0 + 1e-6):
        raise Reject(flat_reason, f"the depth range is empty (p{low_pct:g} = p{high_pct:g} = {lo:.4g})")
    return DepthField(far, valid, lo, hi, low_pct, high_pct, fraction, depth.kind)


def _depth_field(depth: DepthMap, low_pct: float, high_pct: float) -> tuple:
    """(far, valid, n_valid, lo, hi) of :func:`prepare_depth`; lo/hi are None when nothing is valid."""
    if depth.kind == "inverse":
        far = depth.farness()
    else:  # x / True = x where valid, 0 / False = NaN where the readers stored 0: one pass, no mask copy
        with np.errstate(divide="ignore", invalid="ignore"):
            far = np.divide(depth.values, depth.valid, dtype=np.float32)
    valid = (far > 0) & (far < np.inf)  # = depth.valid & isfinite & positive, whatever the invalid pixels held
    n_valid = int(np.count_nonzero(valid))
    if int(np.count_nonzero(np.isnan(far))) != far.size - n_valid:  # an invalid pixel is not NaN (inf, <= 0)
        np.copyto(far, np.float32(np.nan), where=~valid)
    if n_valid == 0:
        return far, valid, 0, None, None
    lo, hi = exact_percentiles(far[valid], (low_pct, high_pct))
    return far, valid, n_valid, lo, hi


_BRACKET_SAMPLE_STEP = 64  # every 64th value locates each wanted rank's neighbourhood
_BRACKET_MIN_SIZE = 65_536  # below this a full partition is as cheap


def exact_percentiles(values: np.ndarray, pcts: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, pcts)`` (linear interpolation), bit for bit, on a 1-D array without NaN.

    A full partition of 500k depth values costs ~2.7 ms; the order statistics needed here (two adjacent ranks per
    percentile) are instead found inside a narrow value bracket located on a strided sample: counting the values
    below the bracket and partitioning the few inside it gives the same ranks exactly. If the sample misjudges a
    bracket (it cannot contain the rank), the full partition is used, so the result never depends on luck.
    """
    n = values.size
    if n < _BRACKET_MIN_SIZE:
        return [float(v) for v in np.percentile(values, pcts)]
    sample = np.sort(values[::_BRACKET_SAMPLE_STEP])
    m = sample.size
    slack = int(4 * math.sqrt(m)) + 2  # ~8 standard deviations of a sample rank
    out = []
    for pct in pcts:
        pos = pct / 100.0 * (n - 1)
        k = int(math.floor(pos))
        ranks = (k, min(k + 1, n - 1))
        centre = k * m // n
        lo_v, hi_v = sample[max(0, centre - slack)], sample[min(m - 1, centre + slack)]
        below = int(np.count_nonzero(values < lo_v))
        inside = values[(values >= lo_v) & (values <= hi_v)]
        if not (below <= ranks[0] and ranks[1] < below + inside.size):
            return [float(v) for v in np.percentile(values, pcts)]
        inside.partition([r - below for r in ranks])
        a, b = (float(inside[r - below]) for r in ranks)
        out.append(_lerp(a, b, pos - k))
    return out


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's percentile interpolation, in numpy's own form (so the bits agree)."""
    diff = b - a
    return float(a + diff * t if t < 0.5 else b - diff * (1 - t))


# Per-process memo of the pure functions of one depth map (its field, its window statistics), keyed by the identity of
# the DepthMap object and checked through a weak reference, so a new source never hits a stale entry. Sources are
# never modified after decoding; the few entries kept are the last sources seen (a visit's RGB-D tasks and the
# retries of one candidate all use the same source).
_CACHE: OrderedDict[tuple, tuple[weakref.ref, Any]] = OrderedDict()
_CACHE_ENTRIES = 6


def _cached(owner: Any, key: tuple, compute: Any) -> Any:
    full = (id(owner), *key)
    hit = _CACHE.get(full)
    if hit is not None and hit[0]() is owner:
        _CACHE.move_to_end(full)
        return hit[1]
    value = compute()
    _CACHE[full] = (weakref.ref(owner), value)
    while len(_CACHE) > _CACHE_ENTRIES:
        _CACHE.popitem(last=False)
    return value


# ---------------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class MarkerGeometry:
    """Sizes derived from the image size: the window, the ring around it, the badge, spacing and margins."""

    window: int  # odd window side in px
    ring_radius: float  # the hollow ring encloses the whole window with a clear band (survives JPEG)
    badge_radius: float
    extent: float  # farthest point of a marker (ring or badge) from its centre
    min_distance: float  # px between two centres: the config's share of the diagonal, or enough to keep markers apart
    margin: int  # centres at least this far from the border, so the whole ring is visible

    @property
    def half(self) -> int:
        return self.window // 2

    def metadata(self) -> dict[str, Any]:
        return {"window_size": self.window, "ring_radius": round(self.ring_radius, 3), "badge_radius": round(self.badge_radius, 3),
                "min_center_distance_px": round(self.min_distance, 3), "border_margin_px": self.margin}


def ring_width(ring_radius: float) -> int:
    """Width of the coloured ring, as :func:`render.draw_region_marker` draws it (the white under-ring is 2 px wider)."""
    return max(2, int(ring_radius / 6))


def marker_geometry(width: int, height: int, cfg: DepthWindowConfig) -> MarkerGeometry:
    short = min(width, height)
    window = max(7, int(round(cfg.window_frac * short)))
    window += 1 - window % 2  # odd: the centre is a pixel
    half_diagonal = (window / 2) * math.sqrt(2.0)
    clear = max(2.0, 0.01 * short)  # untouched band between the window's corners and the ring's inner edge
    ring = half_diagonal + clear + 3.0
    # Pillow draws outlines inwards from the bounding circle: the inner edge of the white ring is width + 2 inside.
    while ring - (ring_width(ring) + 2) < half_diagonal + clear:
        ring += 1.0
    badge = max(10.0, cfg.badge_frac * short)
    extent = max(ring, (ring + badge) * math.sqrt(0.5) + badge)
    min_distance = max(cfg.min_marker_distance * math.hypot(width, height), 2.0 * extent + 2.0)
    return MarkerGeometry(window, float(ring), float(badge), float(extent), float(min_distance), int(math.ceil(ring)) + 1)


# ------------------------------------------------------------------------------------------- window statistics


@dataclass
class WindowStats:
    """Statistics of the valid pixels of windows centred at (cx, cy) (normalised depth)."""

    cx: np.ndarray  # int64 (n,)
    cy: np.ndarray
    valid_fraction: np.ndarray  # float64 (n,)
    mean: np.ndarray  # NaN where a window has no valid pixel
    std: np.ndarray

    def subset(self, keep: np.ndarray) -> WindowStats:
        return WindowStats(self.cx[keep], self.cy[keep], self.valid_fraction[keep], self.mean[keep], self.std[keep])

    def __len__(self) -> int:
        return int(self.cx.size)


def candidate_axes(width: int, height: int, geom: MarkerGeometry, stride_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates (xs, ys) of candidate centres, ``geom.margin`` px away from the borders, grid centred."""
    stride = max(1, int(round(stride_frac * geom.window)))
    margin = max(geom.margin, geom.half)
    xs = np.arange(margin, width - margin, stride, dtype=np.int64)
    ys = np.arange(margin, height - margin, stride, dtype=np.int64)
    if xs.size and ys.size:  # centre the grid in the usable span so both borders get the same slack
        xs += (width - 1 - margin - xs[-1]) // 2
        ys += (height - 1 - margin - ys[-1]) // 2
    return xs, ys


SCREEN_STEP = 2  # the box-sum screen reads every 2nd pixel of every 2nd row; the exact test reads every pixel


def window_stats(field: DepthField, xs: np.ndarray, ys: np.ndarray, half: int, step: int = SCREEN_STEP) -> WindowStats:
    """Valid fraction, mean and std of the valid normalised depth in the (2 half + 1)^2 windows centred on the grid
    ``xs`` x ``ys`` (flattened row-major: index = iy * len(xs) + ix), over the pixels of the ``step`` lattice
    (rows and columns that are multiples of ``step``) inside each window.

    This is the cheap SCREEN of :func:`flat_candidates`; everything a sample records is computed exactly on every
    pixel afterwards. Box sums of [count, farness, farness^2]: ``np.add.reduceat`` along the contiguous axis sums
    the columns between consecutive window edges, cumulative sums over those segments and then down the rows give
    every window by differences (float64 from the segments on). Working in farness (invalid pixels zeroed by
    ``fmax``: NaN loses to 0) and converting the moments to normalised units afterwards needs no normalised map.
    Memoised per field (both RGB-D tasks use the same grid).
    """
    key = ("window_stats", int(half), int(step), xs.tobytes(), ys.tobytes())
    return _cached(field.far, key, lambda: _window_stats(field, xs, ys, half, step))  # the far array is memoised


def _lattice_span(lo: np.ndarray, hi: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice indices [a, b) of the full-resolution pixels [lo, hi) that are multiples of ``step``."""
    return -(-lo // step), -(-hi // step)


def _window_stats(field: DepthField, xs: np.ndarray, ys: np.ndarray, half: int, step: int) -> WindowStats:
    far0 = np.fmax(field.far[::step, ::step], np.float32(0.0))  # valid farness is > 0; NaN (invalid) becomes 0
    valid = np.ascontiguousarray(field.valid[::step, ::step]).view(np.uint8)
    rows, cols = far0.shape
    r0, r1 = _lattice_span(ys - half, ys + half + 1, step)
    c0, c1 = _lattice_span(xs - half, xs + half + 1, step)
    edges = np.unique(np.concatenate([c0, c1]))
    starts = edges[edges < cols]  # segment j = lattice columns [starts[j], starts[j + 1]) (the last one to the end)
    at0, at1 = np.searchsorted(edges, c0), np.searchsorted(edges, c1)
    sums = []
    for layer in (valid, far0, np.square(far0)):
        # float32 within a segment (at most ~window / step values), float64 from there on
        seg = np.add.reduceat(layer, starts, axis=1, dtype=np.float32 if layer.dtype == np.float32 else np.int32)
        prefix = np.zeros((rows, edges.size), np.float64)
        np.cumsum(seg[:, : edges.size - 1], axis=1, dtype=np.float64, out=prefix[:, 1:])
        down = np.zeros((rows + 1, xs.size), np.float64)
        np.cumsum(prefix[:, at1] - prefix[:, at0], axis=0, out=down[1:])  # (rows, nx) window-row sums, summed down
        sums.append((down[r1] - down[r0]).ravel())  # (ny, nx) flattened
    count, total, squares = sums
    area = ((r1 - r0)[:, None] * (c1 - c0)[None, :]).ravel().astype(np.float64)
    scale = 1.0 / field.depth_range
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_far = total / count
        var_far = np.maximum(squares / count - mean_far * mean_far, 0.0)
    gx, gy = np.meshgrid(xs, ys)
    return WindowStats(gx.ravel(), gy.ravel(), count / area, (mean_far - field.lo) * scale, np.sqrt(var_far) * scale)


def gather_windows(values: np.ndarray, cx: np.ndarray, cy: np.ndarray, half: int) -> np.ndarray:
    """(n, window^2) copy of the windows centred at (cx, cy)."""
    side = 2 * half + 1
    view = sliding_window_view(values, (side, side))
    return view[cy - half, cx - half].reshape(cx.size, side * side)


def nan_quantiles(rows: np.ndarray, qs: tuple[float, ...], overwrite_input: bool = False) -> np.ndarray:
    """(len(qs), n) quantiles of each row over its non-NaN entries (linear interpolation, like np.nanpercentile).

    Rows are sorted once (NaN sorts last), so the k-th valid value is at index k whatever the row's NaN count.
    With ``overwrite_input`` the rows are sorted in place (no second copy of a large array).
    """
    counts = np.count_nonzero(~np.isnan(rows), axis=1)
    if overwrite_input:
        rows.sort(axis=1)
        ordered = rows
    else:
        ordered = np.sort(rows, axis=1)
    out = np.full((len(qs), rows.shape[0]), np.nan)
    ok = counts > 0
    if not ok.any():
        return out
    if not ok.all():
        ordered, counts = ordered[ok], counts[ok]
    for k, q in enumerate(qs):
        pos = q * (counts - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts - 1)
        frac = pos - lo
        a = np.take_along_axis(ordered, lo[:, None], axis=1)[:, 0].astype(np.float64)
        b = np.take_along_axis(ordered, hi[:, None], axis=1)[:, 0].astype(np.float64)
        out[k, ok] = a + frac * (b - a)
    return out


@dataclass
class Candidates:
    """Windows that passed every flatness/validity test, with exact robust statistics (normalised depth)."""

    cx: np.ndarray
    cy: np.ndarray
    valid_fraction: np.ndarray
    median: np.ndarray
    p10: np.ndarray
    p90: np.ndarray
    considered: int  # grid windows examined (for the reject detail)

    def __len__(self) -> int:
        return int(self.cx.size)

    @property
    def spread(self) -> np.ndarray:
        return self.p90 - self.p10

    def extend(self, cx, cy, valid_fraction, median, p10, p90) -> Candidates:
        return Candidates(np.concatenate([self.cx, cx]), np.concatenate([self.cy, cy]),
                          np.concatenate([self.valid_fraction, valid_fraction]), np.concatenate([self.median, median]),
                          np.concatenate([self.p10, p10]), np.concatenate([self.p90, p90]), self.considered)


_EXACT_BATCH = 32  # windows per exact-percentile batch: big enough to amortise numpy's per-call cost


def flat_candidates(field: DepthField, geom: MarkerGeometry, cfg: DepthWindowConfig, rng: np.random.Generator,
                    enough: Callable[[Candidates], bool] | None = None) -> Candidates:
    """Grid windows whose OWN pixels are mostly valid and whose normalised depth spread (p90 - p10) is small.

    Cheap screen first (box sums on a pixel lattice, :func:`window_stats`): valid fraction and std. A window whose
    std exceeds ``flat_tol`` has a large share of pixels away from its bulk (a depth edge, a thin pole), which a
    flat region must not have, so dropping it before the exact test is conservative. The screened windows then get
    their exact valid fraction and percentiles over all their pixels in a random order (drawn from ``rng``, so no
    position is favoured), a batch at a time, until ``enough(found)`` holds
    (default: ``min_candidates`` flat windows) or ``max_candidates`` windows were examined. The result is a uniform
    random subset of the flat windows; examining all of them would cost ~15 ms a 1600x1064 map for nothing.
    """
    h, w = field.valid.shape
    xs, ys = candidate_axes(w, h, geom, cfg.stride_frac)
    if xs.size == 0 or ys.size == 0:
        return _no_candidates(0)
    stats = window_stats(field, xs, ys, geom.half)
    keep = (stats.valid_fraction >= cfg.min_valid_fraction) & (stats.std <= cfg.flat_tol)
    screened = stats.subset(np.flatnonzero(keep))
    order = rng.permutation(len(screened))[: cfg.max_candidates]
    if enough is None:
        enough = lambda found: len(found) >= cfg.min_candidates  # noqa: E731
    found = _no_candidates(len(stats))
    for start in range(0, order.size, _EXACT_BATCH):
        batch = screened.subset(order[start:start + _EXACT_BATCH])
        rows = gather_windows(field.far, batch.cx, batch.cy, geom.half)
        valid_fraction = np.count_nonzero(~np.isnan(rows), axis=1) / rows.shape[1]
        p10, median, p90 = field.to_norm(nan_quantiles(rows, (0.1, 0.5, 0.9), overwrite_input=True))  # our own copy
        flat = np.flatnonzero(((p90 - p10) < cfg.flat_tol) & (valid_fraction >= cfg.min_valid_fraction))
        found = found.extend(batch.cx[flat], batch.cy[flat], valid_fraction[flat], median[flat], p10[flat], p90[flat])
        if enough(found):
            break
    return found


def _no_candidates(considered: int) -> Candidates:
    empty = np.zeros(0)
    return Candidates(empty.astype(np.int64), empty.astype(np.int64), empty, empty, empty, empty, considered=considered)


def centre_distances(cx: np.ndarray, cy: np.ndarray, x: float, y: float) -> np.ndarray:
    return np.hypot(cx - x, cy - y)


# ----------------------------------------------------------------------------------------------------- regions


def window_box(cx: int, cy: int, half: int) -> list[int]:
    return [int(cx - half), int(cy - half), int(cx + half + 1), int(cy + half + 1)]


def region_record(field: DepthField, cx: int, cy: int, half: int) -> dict[str, Any]:
    """Exact statistics of one window on its own valid pixels (what the metadata records)."""
    x0, y0, x1, y1 = window_box(cx, cy, half)
    far = field.far[y0:y1, x0:x1]
    ok = field.valid[y0:y1, x0:x1]
    vals = far[ok].astype(np.float64)
    p10, med, p90 = np.percentile(vals, (10, 50, 90))
    to_norm = field.to_norm
    return {
        "center": [int(cx), int(cy)],
        "box": [x0, y0, x1, y1],
        "median_farness": float(med),
        "median_norm": float(to_norm(med)),
        "p10_norm": float(to_norm(p10)),
        "p90_norm": float(to_norm(p90)),
        "spread": float(to_norm(p90) - to_norm(p10)),
        "valid_fraction": float(ok.mean()),
    }


# ----------------------------------------------------------------------------------------------------- drawing


def draw_markers(source: Source, regions: list[dict[str, Any]], geom: MarkerGeometry, task: str) -> tuple[Image.Image, list[list[float]]]:
    """Draw one ring + circled label per region (``label``, ``center``, ``box``); returns the image and badge centres.

    The geometry keeps every marker off every window; a last cheap check compares the windows with the source and
    rejects (``<task>/marker_overlap``) rather than emit a sample whose marker hides a region it asks about.
    """
    image = source.image()
    badges = []
    for region in regions:
        cx, cy = region["center"]
        bx, by = render.draw_region_marker(image, (float(cx), float(cy)), geom.ring_radius, region["label"], geom.badge_radius,
                                           color=MARKER_COLOR)
        badges.append([round(bx, 3), round(by, 3)])
    for region in regions:
        x0, y0, x1, y1 = region["box"]
        # only the boxes are converted back to an array (a whole-image np.asarray costs a full copy)
        if not np.array_equal(np.asarray(image.crop((x0, y0, x1, y1))), source.rgb[y0:y1, x0:x1]):
            raise Reject(f"{task}/marker_overlap", f"a marker covers region {region['label']}")
    return image, badges


# ------------------------------------------------------------------------------------- independent verification


def read_box_depth(source: Source, box: list[int]) -> tuple[float, float]:
    """(median farness over the box's valid pixels, valid fraction), read straight from the source's depth map."""
    assert source.depth is not None
    x0, y0, x1, y1 = box
    far = source.depth.farness()[y0:y1, x0:x1]
    ok = source.depth.valid[y0:y1, x0:x1] & np.isfinite(far) & (far > 0)
    if not ok.any():
        return float("nan"), 0.0
    return float(np.median(far[ok])), float(ok.mean())


def check_markers(image: Image.Image, source: Source, regions: list[dict[str, Any]], ring_radius: float, badge_radius: float,
                  labels: list[str]) -> list[str]:
    """Image-side checks: each region is visible (its box matches the source), its ring is drawn around it, and the
    badge at the recorded centre shows the region's label (best match among ``labels`` rendered on the source)."""
    problems: list[str] = []
    img = np.asarray(image.convert("RGB"), np.int16)
    src = source.rgb.astype(np.int16)
    if img.shape != src.shape:
        return [f"image size {img.shape[1]}x{img.shape[0]} != source {src.shape[1]}x{src.shape[0]}"]
    h, w = img.shape[:2]
    width = ring_width(ring_radius)
    red = np.array(MARKER_COLOR, np.int16)
    theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    # every half pixel across the ring's width, half a pixel to spare on each side: Pillow rounds the bounding box
    # of a fractional radius, which moves the drawn band by up to a pixel (three fixed radii missed it on small rings)
    radii = np.arange(ring_radius - width - 0.5, ring_radius + 0.5, 0.5)
    for region in regions:
        label = str(region["label"])
        x0, y0, x1, y1 = region["box"]
        # A marker over the box changes many pixels a lot (a ring crossing it at least ~1/4 of them); JPEG changes
        # most pixels a little and a few sharp colour edges a lot (4:2:0 chroma at low quality)
        changed = float((np.abs(img[y0:y1, x0:x1] - src[y0:y1, x0:x1]).max(axis=2) > 64).mean())
        if changed > 0.25:
            problems.append(f"region {label}: {changed:.0%} of box {region['box']} differs from the source: hidden by a marker?")
        # the ring: at most angles, some pixel across the ring's width is (JPEG-blurred) marker red
        cx, cy = region["center"]
        px = np.round(cx + radii[:, None] * np.cos(theta)).astype(int)
        py = np.round(cy + radii[:, None] * np.sin(theta)).astype(int)
        inside = ((px >= 0) & (px < w) & (py >= 0) & (py < h)).all(axis=0)
        if inside.any():
            near_red = np.abs(img[py[:, inside], px[:, inside]] - red).max(axis=2) < 90
            red_share = float(near_red.any(axis=0).mean())
        else:
            red_share = 0.0
        if red_share < 0.75:
            problems.append(f"region {label}: no ring of radius {ring_radius:.1f} around {region['center']} ({red_share:.0%} red)")
        if "badge_center" in region:
            best = _best_badge_label(img, source, region["badge_center"], badge_radius, labels)
            if best != label:
                problems.append(f"region {label}: the badge at {region['badge_center']} reads as {best!r}")
    return problems


def _best_badge_label(img: np.ndarray, source: Source, center: list[float], radius: float, labels: list[str]) -> str | None:
    """Render each candidate badge onto the source crop and return the label whose rendering matches the image best."""
    bx, by = center
    h, w = img.shape[:2]
    r = int(math.ceil(radius)) + 2
    x0, y0 = max(0, int(math.floor(bx)) - r), max(0, int(math.floor(by)) - r)
    x1, y1 = min(w, int(math.floor(bx)) + r + 1), min(h, int(math.floor(by)) + r + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    target = img[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disk = np.hypot(xx - bx, yy - by) <= radius * 0.8  # inside the badge, away from its edge
    best, best_err = None, np.inf
    for label in labels:
        crop = Image.fromarray(source.rgb[y0:y1, x0:x1])
        render.draw_badge(ImageDraw.Draw(crop), (bx - x0, by - y0), label, radius, edge=MARKER_COLOR)
        err = float(np.abs(np.asarray(crop, np.int16) - target)[disk].mean())
        if err < best_err:
            best, best_err = label, err
    return best
