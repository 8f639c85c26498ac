"""Cropped patch inpainting (paper task 3): which of four candidates fills the blacked-out square?

Image 1 is the source with a square hole (side ``s = min(H, W) * size_frac``, top-left uniform), filled black and
outlined in red and white *inside* the hole, so the hole is unmistakable on dark and bright images alike and no
context pixel is hidden. Images 2-5 are options A-D: the true crop and three distinct distractors drawn from the
paper's five methods (weights ``distractor_weights``, 0.2 each in the paper):

- ``zoom_in``: a square at the centre of the crop, smaller than it (the paper: ``[s/4, 3s/4]``), i.e. magnified;
- ``context_0.25`` / ``context_0.5``: the crop with a margin on every side (the paper: 0.25 s / 0.5 s), i.e. shrunk;
- ``rotate_cw`` / ``rotate_ccw``: a square window turned 90 degrees clockwise / counter-clockwise.

Every option is a square source window resampled by the SAME filter (area averaging) to the SAME side, never
upscaled.

Shortcut cues, and how they are removed (``ssrl audit`` checks that no option-only solver beats chance):

- *Rotated twins.* In the paper a rotation is the true crop turned, so the true option is the one with a 90-degree
  rotated twin among the options. Here (``rotate_window: shifted``) each rotation turns its own window, whose centre
  is 0.25-0.75 s (Chebyshev) from the crop's and from the other rotation's, inside the image.
- *The middle field of view.* With the paper's fixed scales the options see s/2, s, 1.5 s and 2 s of the picture,
  so the true crop is always the middle one and any statistic that grows with the field of view (detail, contrast,
  encoded size) finds it without a look at the hole. With ``scale_mode: balanced`` the four fields of view are four
  independent log-uniform draws in a band of ratio ``scale_span`` (2, as the paper's zoom-to-context range around
  the crop) at least ``scale_gap`` (1.2x) apart, and the crop is one of them at a uniformly random rank: zoom_in
  takes a smaller one (any zoom factor), the contexts larger ones (any margin; context_0.25 the smaller of two),
  the rotations any (their windows are larger or smaller than the crop). No option's place among the four is special.
- *Native resolution.* A window shown at (nearly) its own resolution keeps the source's pixel noise and softness,
  which shrinking removes, so sharpness would tell the scale. Every option is blurred by ``source_blur`` SOURCE
  pixels (sigma / d option pixels for a window shrunk d times) on top of the common ``option_blur``: the same
  optical softness at every field of view.
- *Option statistics* (``equalize``). Brightness, grey contrast and sharpness (variance of the Laplacian) still
  depend on what a window contains (the crop sits inside the contexts and around the zoom, so its numbers are the
  typical ones). Each option therefore gets a luma offset and gain and a luma blur or unsharp mask that hit a
  brightness, contrast and sharpness target, solved in closed form on the float pixels (the Laplacian is linear,
  so sharpness after the gain is a ratio of two quadratics in the blur knob: a quadratic equation) and checked on
  the rounded 8-bit option (rounding and clipping: at most two corrections; the sharpness rounding adds is learnt
  from the sample's earlier options, as near-grey colours round alike in R, G and B). The encoded byte size still
  differs with the rest matched (the COCO-like audit's byte solver found the crop 31 % of the time), so each option
  is encoded once as it will be stored (``equalize_format`` / ``equalize_quality``: keep them equal to
  ``output.image_format`` / ``output.jpeg_quality``) and a chroma-only blur or sharpening (the grey image is left
  alone up to rounding) takes at most two secant steps towards a byte target (the first from the slopes of the
  sample's earlier options). The targets are the mean of the four, each option drawing its own within
  +-``equalize_jitter`` (log scale; brightness: 25x that in grey levels), so the small misses of the matching
  carry no information. JPEG q95 raises every option's sharpness alike (~15 %, spread ~2 % within a sample). The
  true crop is edited like the others; geometry is never touched.
- Context windows that would cross the border are shifted inside the image, kept square and full size, never
  clipped and stretched; a window that does not fit makes that method unavailable for the sample.
- A distractor that looks like the true crop (self-similar texture; with ``rotate_window: crop`` rotation-symmetric
  content) is dropped and another method set is drawn; with no usable set the sample is rejected.

``scale_mode: paper``, ``rotate_window: crop``, ``source_blur: 0``, ``equalize: false`` give the paper's
construction (with the border fixes above), for comparison; ``ssrl audit`` fails it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..core import Sample, Source
from ..errors import Reject
from ..registry import Task, TaskConfig, check, register_task
from ..render import RED, WHITE

LETTERS = ("A", "B", "C", "D")
TRUE_METHOD = "true_crop"
METHODS = ("zoom_in", "context_0.25", "context_0.5", "rotate_cw", "rotate_ccw")
CONTEXT_MARGINS = {"context_0.25": 0.25, "context_0.5": 0.5}  # the paper's margins (scale_mode: paper)
PAPER_FOV = {"zoom_in": 0.5, "context_0.25": 1.5, "context_0.5": 2.0, "rotate_cw": 1.0, "rotate_ccw": 1.0}
ROTATIONS = {"rotate_cw": 90, "rotate_ccw": -90}  # degrees clockwise, as recorded in the metadata
SCALE_MODES = ("balanced", "paper")
ROTATE_WINDOWS = ("shifted", "crop")
ENCODINGS = ("jpeg", "png", "webp")
HOLE_FILL = (0, 0, 0)

QUESTION = (
    "<image>\n"
    "A square region of this picture has been blacked out (its edge is outlined in red and white). "
    "Which candidate fills the hole exactly, at the same scale and orientation?\n"
    "A. <image>\nB. <image>\nC. <image>\nD. <image>\n"
    "Answer with the letter of the candidate (A, B, C or D)."
)


def _default_weights() -> dict[str, float]:
    return {m: 0.2 for m in METHODS}


@dataclass
class CropConfig(TaskConfig):
    """Knobs of the crop task; defaults follow the paper where it says something and remove its shortcuts."""

    size_frac: float = 0.5  # hole side as a fraction of min(H, W)
    distractor_weights: dict[str, float] = field(default_factory=_default_weights)
    max_option_side: int = 512  # cap on the option side (px); the side is otherwise the smallest window's side
    min_option_side: int = 32  # smaller options (tiny sources) are rejected
    option_blur: float = 0.6  # Gaussian sigma (option px) applied to every option
    source_blur: float = 1.0  # Gaussian sigma (SOURCE px) applied to every option: the same softness at every scale
    min_crop_std: float = 6.0  # grey-level std below which the crop counts as uniform
    min_distractor_diff: float = 8.0  # mean abs difference (0-255) a distractor needs from the true option
    scale_mode: str = "balanced"  # "balanced": random fields of view, the crop's rank uniform; "paper": fixed scales
    scale_span: float = 2.0  # balanced: the four fields of view lie within this ratio...
    scale_gap: float = 1.2  # ...and at least this ratio apart
    rotate_window: str = "shifted"  # "shifted": rotations turn windows of their own; "crop": the crop (paper)
    rotate_shift_min: float = 0.25  # offset of a rotation window's centre from the crop's (Chebyshev, units of s)
    rotate_shift_max: float = 0.75
    equalize: bool = True  # match brightness, contrast, sharpness and stored size across the four options
    equalize_format: str = "jpeg"  # the encoding the options are stored with (output.image_format)
    equalize_quality: int = 95  # and its quality (output.jpeg_quality)
    equalize_jitter: float = 0.05  # each option's own target: +-5 % (log) around the common one (brightness +-1.25)
    equalize_tol: float = 0.01  # matching tolerance (log scale; brightness: 25x that in grey levels)

    def validate(self) -> None:
        key = "task.crop"
        check(0.05 <= self.size_frac <= 0.8, f"{key}.size_frac", f"must be in [0.05, 0.8], got {self.size_frac}")
        unknown = sorted(set(self.distractor_weights) - set(METHODS))
        check(not unknown, f"{key}.distractor_weights", f"unknown methods {unknown}; known: {list(METHODS)}")
        for m, w in self.distractor_weights.items():
            ok = isinstance(w, (int, float)) and np.isfinite(w) and w >= 0
            check(ok, f"{key}.distractor_weights.{m}", f"must be a finite number >= 0, got {w!r}")
        positive = sum(1 for w in self.distractor_weights.values() if w > 0)
        check(positive >= 3, f"{key}.distractor_weights", f"needs at least 3 methods with weight > 0, got {positive}")
        check(self.min_option_side >= 8, f"{key}.min_option_side", f"must be >= 8, got {self.min_option_side}")
        check(
            self.max_option_side >= self.min_option_side,
            f"{key}.max_option_side",
            f"must be >= min_option_side ({self.min_option_side}), got {self.max_option_side}",
        )
        check(0 <= self.option_blur <= 3, f"{key}.option_blur", f"must be in [0, 3], got {self.option_blur}")
        check(0 <= self.source_blur <= 4, f"{key}.source_blur", f"must be in [0, 4], got {self.source_blur}")
        check(0 <= self.min_crop_std < 128, f"{key}.min_crop_std", f"must be in [0, 128), got {self.min_crop_std}")
        check(
            0 <= self.min_distractor_diff < 128,
            f"{key}.min_distractor_diff",
            f"must be in [0, 128), got {self.min_distractor_diff}",
        )
        check(self.scale_mode in SCALE_MODES, f"{key}.scale_mode", f"must be one of {list(SCALE_MODES)}, got {self.scale_mode!r}")
        check(1.05 <= self.scale_gap <= 2, f"{key}.scale_gap", f"must be in [1.05, 2], got {self.scale_gap}")
        check(
            self.scale_gap**3 < self.scale_span <= 4,
            f"{key}.scale_span",
            f"must be in (scale_gap^3 = {self.scale_gap**3:.3g}, 4] (four fields of view, three gaps), got {self.scale_span}",
        )
        check(
            self.rotate_window in ROTATE_WINDOWS,
            f"{key}.rotate_window",
            f"must be one of {list(ROTATE_WINDOWS)}, got {self.rotate_window!r}",
        )
        check(
            not (self.rotate_window == "crop" and self.scale_mode == "balanced"),
            f"{key}.rotate_window",
            "'crop' (turn the crop itself) needs scale_mode 'paper': balanced rotations have their own fields of view",
        )
        check(0 < self.rotate_shift_min <= 1, f"{key}.rotate_shift_min", f"must be in (0, 1], got {self.rotate_shift_min}")
        check(
            self.rotate_shift_min <= self.rotate_shift_max <= 2,
            f"{key}.rotate_shift_max",
            f"must be in [rotate_shift_min ({self.rotate_shift_min}), 2], got {self.rotate_shift_max}",
        )
        check(
            self.equalize_format in ENCODINGS,
            f"{key}.equalize_format",
            f"must be one of {list(ENCODINGS)}, got {self.equalize_format!r}",
        )
        check(1 <= self.equalize_quality <= 100, f"{key}.equalize_quality", f"must be in [1, 100], got {self.equalize_quality}")
        check(0 <= self.equalize_jitter <= 0.2, f"{key}.equalize_jitter", f"must be in [0, 0.2], got {self.equalize_jitter}")
        check(0.001 <= self.equalize_tol <= 0.05, f"{key}.equalize_tol", f"must be in [0.001, 0.05], got {self.equalize_tol}")


Box = tuple[int, int, int, int]


@dataclass
class _Option:
    method: str
    window: Box  # square source window (rotations: the window that was turned)
    rotation: int  # degrees clockwise
    shifted: bool  # context window moved inside the image / rotation of a window other than the crop
    image: np.ndarray  # float32 RGB, side x side: the resampled, blurred option (uint8 once finished)
    fov: float  # window side / crop side
    equalize: dict[str, Any] | None = None
    encoded: bytes | None = None  # the option as stored (equalize_format / equalize_quality), measured while matching


def _hole_widths(side: int) -> int:
    """Width of each of the two outline bands (red outside, white inside), scaled to the hole."""
    return max(1, int(round(side / 80)))


def _zoom_window(box: Box, fov: float | None = None) -> Box:
    """A centred square of side ``fov * s`` (the paper, fov None: the centre [s/4, 3s/4], symmetric in pixels)."""
    x0, y0, x1, y1 = box
    s = x1 - x0
    q = s // 4 if fov is None else (s - max(1, int(round(fov * s)))) // 2
    n = s - 2 * q if fov is None else max(1, int(round(fov * s)))
    return (x0 + q, y0 + q, x0 + q + n, y0 + q + n)


def _context_window(box: Box, frac: float, width: int, height: int) -> tuple[Box, bool] | None:
    """The crop grown by ``frac * s`` per side, shifted (never clipped) to lie inside the image; None if too big."""
    x0, y0, x1, y1 = box
    s = x1 - x0
    m = int(frac * s)  # floor: with size_frac 0.5 the 0.5-margin window (<= 2s) still fits
    side = s + 2 * m
    if side > width or side > height:
        return None
    wx0 = min(max(x0 - m, 0), width - side)
    wy0 = min(max(y0 - m, 0), height - side)
    return (wx0, wy0, wx0 + side, wy0 + side), (wx0, wy0) != (x0 - m, y0 - m)


def _draw_fovs(rng: np.random.Generator, span: float, gap: float) -> tuple[int, list[float]]:
    """Four log fields of view i.i.d. uniform in a band of ratio ``span`` given gaps of at least ``gap`` (uniform
    order statistics plus the gaps), the crop's one at a uniform rank. Returns (rank, the three distractors' fields
    of view relative to the crop's, ascending): exchangeable, so no option's place among the four is special."""
    g = np.log(gap)
    u = np.sort(rng.uniform(0.0, np.log(span) - 3 * g, size=4)) + g * np.arange(4)
    rank = int(rng.integers(4))
    return rank, [float(np.exp(v - u[rank])) for i, v in enumerate(u) if i != rank]


def _rotation_windows(box: Box, width: int, height: int, fov: float, lo_frac: float, hi_frac: float,
                      rng: np.random.Generator, taken: list[Box]) -> list[Box]:
    """Square windows of side ``fov * s`` whose centre is a Chebyshev distance in [lo, hi] * s from the crop's centre
    and at least lo * s from the centre of every window in ``taken``, inside the image: 32 uniform draws (a fixed
    number, so the rng stays in step), the valid ones in draw order."""
    x0, y0, x1, _ = box
    s = x1 - x0
    n = max(1, int(round(fov * s)))
    off = rng.uniform(-hi_frac * s, hi_frac * s, size=(2, 32))
    wx = np.rint(x0 + (s - n) / 2 + off[0]).astype(np.int64)
    wy = np.rint(y0 + (s - n) / 2 + off[1]).astype(np.int64)
    ok = (wx >= 0) & (wy >= 0) & (wx + n <= width) & (wy + n <= height)
    for tx0, ty0, tx1, _ in [box] + taken:
        tn = tx1 - tx0
        dist = np.maximum(np.abs(wx + n / 2 - tx0 - tn / 2), np.abs(wy + n / 2 - ty0 - tn / 2))
        ok &= dist >= lo_frac * s - 1e-9
    ok &= np.maximum(np.abs(wx + n / 2 - x0 - s / 2), np.abs(wy + n / 2 - y0 - s / 2)) <= hi_frac * s + 1
    return [(int(a), int(b), int(a) + n, int(b) + n) for a, b in zip(wx[ok], wy[ok])]


# ------------------------------------------------------------------------------------------------ pixel operations
# The audit's grey (0.299 R + 0.587 G + 0.114 B, JPEG's full-range luma). An option is split into this luma and the
# chroma residual rgb - luma (per channel), so luma edits add the same amount to R, G and B and leave chroma alone.
_GREY = np.array([0.299, 0.587, 0.114])
# Rounding R, G and B to integers adds independent errors of variance 1/12 to each: sum(w^2) / 12 to the grey, and
# (1 + 1 + 1 + 1 + 16) times that to its 4-neighbour Laplacian. The sharpness solve aims below its target by this.
ROUNDING_LAP_VAR = 20.0 * float(np.sum(_GREY**2)) / 12.0


def _mix(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m.T`` over the last axis, written out as elementwise sums: matrix products go through BLAS, whose
    rounding can change with its thread count (worker processes must give the same bytes as the main one)."""
    out = [sum(x[..., j] * m.dtype.type(row[j]) for j in range(x.shape[-1]) if row[j] != 0.0) for row in np.atleast_2d(m)]
    return out[0] if np.ndim(m) == 1 else np.stack(out, axis=-1)


def _taps(var: float) -> np.ndarray:
    """Half of a sampled Gaussian of variance ``var`` ([centre, 1, 2, ...] px, radius ceil(2.5 sigma): the tail
    beyond holds ~1 % of the weight), rounded to integers before normalising (the same taps on any machine)."""
    r = max(1, int(np.ceil(2.5 * np.sqrt(var))))
    j = np.arange(r + 1, dtype=np.float64)
    k = np.round(np.exp(-j * j / (2.0 * var)) * 2.0**30)
    return k / (2.0 * k.sum() - k[0])


def _mirror(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    """``x`` with ``r`` edge samples mirrored on both ends of ``axis`` (0 or 1), edge sample repeated (np.pad
    'symmetric'), by one concatenation."""
    if axis == 0:
        return np.concatenate([x[r - 1 :: -1], x, x[: -r - 1 : -1]], axis=0)
    return np.concatenate([x[:, r - 1 :: -1], x, x[:, : -r - 1 : -1]], axis=1)


def smooth(x: np.ndarray, var: float) -> np.ndarray:
    """Separable Gaussian blur (variance ``var`` px^2) of an (N, M) or (N, M, C) float array, mirrored borders.

    Continuous in ``var`` (Pillow's GaussianBlur jumps where its box sizes change, which would single out whichever
    option always gets the same radius). The taps are symmetric, so each pair of them costs one multiply; the
    result has the input's dtype (float32 in: float32 arithmetic)."""
    if var < 1e-4:
        return x
    half = _taps(var).astype(x.dtype)
    pair = np.empty_like(x)  # in-place products and sums: no temporary arrays per tap
    for axis in (0, 1):
        n = x.shape[axis]
        r = min(len(half) - 1, n - 1)
        p = _mirror(x, r, axis)
        at = (lambda a, p=p, n=n: p[a : a + n]) if axis == 0 else (lambda a, p=p, n=n: p[:, a : a + n])
        out = np.multiply(at(r), half[0])
        for j in range(1, r + 1):
            np.add(at(r - j), at(r + j), out=pair)
            pair *= half[j]
            out += pair
        if r < len(half) - 1:  # a side shorter than the kernel: keep the weights summing to 1
            out /= half[0] + 2 * half[1 : r + 1].sum()
        x = out
    return x


def _binomial(x: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 along the first two axes of an (N, M) or (N, M, C) array (mirrored borders)."""
    p = _mirror(x, 1, 0)
    b = (p[:-2] + p[2:]) * x.dtype.type(0.25) + x * x.dtype.type(0.5)
    p = _mirror(b, 1, 1)
    return (p[:, :-2] + p[:, 2:]) * x.dtype.type(0.25) + b * x.dtype.type(0.5)


def _detail(x: np.ndarray) -> np.ndarray:
    """x - b(x), b the [1, 4, 6, 4, 1] / 16 binomial blur (two [1, 2, 1] / 4 passes): what the luma and chroma
    knobs take away (k > 0) or add (k < 0)."""
    return x - _binomial(_binomial(x))


def _laplacian(g: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian over the interior (the audit's sharpness is its variance)."""
    return g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Round and clip to 8 bits (``x`` itself is overwritten: callers pass a temporary)."""
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def pixel_stats(img: np.ndarray) -> np.ndarray:
    """[mean grey, log grey std, log Laplacian variance] of an 8-bit RGB option (grey in float32, as the audit)."""
    g = _mix(img, _GREY.astype(np.float32))
    mean = _mean(g)
    g -= np.float32(mean)  # centred: float32 sums of squares then lose nothing to cancellation
    lap = _laplacian(g)
    lap_var = _mean(lap * lap) - _mean(lap) ** 2
    return np.array([mean, 0.5 * np.log(max(_mean(g * g), 1e-12)), np.log(max(lap_var, 1e-6))])


# ------------------------------------------------------------------------------------------ statistics equalisation
LUMA_RANGE = (-3.0, 1.0)  # detail knob k: luma y - k (y - b(y)), b = the [1, 4, 6, 4, 1] / 16 binomial blur (variance
# 1 px^2 per axis, two passes of [1, 2, 1] / 4): k = 1 is b(y), 0 < k < 1 a mix, k < 0 an unsharp mask of amount -k
CHROMA_RANGE = (-4.0, 1.0)  # chroma knob: chroma residual c - k (c - b(c)), the same form as the luma knob
CHROMA_SLOPE = -0.03  # prior d log bytes / d chroma knob (benchmark corpus medians: -0.033 at 120 px options,
# -0.019 at 192, -0.016 at 266): the first option's first secant step; later options start from the slopes measured
# on this sample's earlier ones
MAX_ENCODES = 3  # encodes per option for the byte size: the measurement, then at most two secant steps
MAX_PASSES = 3  # renders per option: the closed-form solve, then up to two corrections for rounding and clipping


def _mean(a: np.ndarray) -> float:
    return float(a.sum()) / a.size


def _moments(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Var(a), Cov(a, b), Var(b) of two planes of (near) zero mean, by numpy's pairwise sums: no BLAS dot, whose
    rounding can depend on its thread count."""
    ma, mb = _mean(a), _mean(b)
    return _mean(a * a) - ma * ma, _mean(a * b) - ma * mb, _mean(b * b) - mb * mb


class _Equalizer:
    """One option split into luma y and chroma residual c (rgb - y), with what the closed-form solve needs.

    The option shown is ``gain * (y_k - mean(y_k)) + brightness`` plus c, where y_k = y - k h, h = y - b(y) (see LUMA_RANGE).
    y_k is linear in the detail knob k and so is its Laplacian, so its variance and Laplacian variance are
    quadratics in k: V(k) = V - 2 k D + k^2 E and A(k) = A - 2 k B + k^2 C. With the gain setting the grey std to
    its target sigma, the sharpness is sigma^2 A(k) / V(k); it hits the target S where
    (C - r E) k^2 - 2 (B - r D) k + (A - r V) = 0, r = S / sigma^2: a quadratic, solved, not searched."""

    def __init__(self, rgb: np.ndarray):
        y = _mix(rgb, _GREY.astype(rgb.dtype))
        self.c = rgb - y[..., None]
        self.mean_y = _mean(y)
        y -= y.dtype.type(self.mean_y)  # centred (y is kept as its offset from mean_y): exact float32 moments
        self.y, self.h = y, _detail(y)
        self.mean_h = _mean(self.h)
        self.V, self.D, self.E = _moments(self.y, self.h)
        self.A, self.B, self.C = _moments(_laplacian(self.y), _laplacian(self.h))
        self.gain, self.offset, self.k, self.kc = 1.0, 0.0, 0.0, 0.0
        self._hc: np.ndarray | None = None
        self._luma: tuple[tuple[float, float, float], np.ndarray] | None = None

    def stats(self) -> np.ndarray:
        """[mean grey, log grey std, log Laplacian variance] of the unedited option, from the moments."""
        return np.log(np.maximum([1.0, self.V, self.A], 1e-12)) * [0, 0.5, 1.0] + [self.mean_y, 0.0, 0.0]

    def _ratio(self, k: float) -> float:
        return (self.A - 2 * k * self.B + k * k * self.C) / max(self.V - 2 * k * self.D + k * k * self.E, 1e-12)

    def solve(self, aim: np.ndarray, rounding: float = ROUNDING_LAP_VAR) -> float:
        """Offset, gain and detail knob putting the float option on ``aim`` [brightness, log std, log sharpness],
        the sharpness aimed ``rounding`` below (what rounding to 8 bits will add). Returns the float option's
        Laplacian variance with those knobs."""
        sigma2 = float(np.exp(2 * aim[1]))
        r = max(float(np.exp(aim[2])) - rounding, 0.05 * float(np.exp(aim[2]))) / sigma2
        a2, a1, a0 = self.C - r * self.E, -2 * (self.B - r * self.D), self.A - r * self.V
        lo, hi = LUMA_RANGE
        roots: list[float] = []
        if abs(a2) > 1e-12 * max(abs(a1), abs(a0), 1e-12):
            disc = a1 * a1 - 4 * a2 * a0
            if disc >= 0:
                q = -0.5 * (a1 + np.copysign(np.sqrt(disc), a1))  # the stable pair of roots
                roots = [q / a2] + ([a0 / q] if q != 0 else [])
        elif a1 != 0:
            roots = [-a0 / a1]
        inside = [float(k) for k in roots if lo <= k <= hi]
        if inside:
            k = min(inside, key=abs)  # the smallest edit that hits the target
        else:  # out of reach: the end of the knob's range that comes closest
            k = min((lo, hi), key=lambda e: abs(np.log(max(self._ratio(e), 1e-12) / r)))
        var_k = max(self.V - 2 * k * self.D + k * k * self.E, 1e-12)
        self.k = k
        self.gain = float(np.sqrt(sigma2 / var_k))
        self.offset = float(aim[0]) - (self.mean_y - k * self.mean_h)
        return sigma2 * self._ratio(k)

    def render(self) -> np.ndarray:
        f = self.y.dtype.type
        knobs = (self.k, self.gain, self.offset)
        if self._luma is None or self._luma[0] != knobs:  # chroma steps keep the luma: computed once for them
            # gain * (y_k - mean(y_k)) + mean(y_k) + offset, y_k = mean_y + self.y - k h, mean(y_k) = mean_y - k mean_h
            level = self.mean_y + self.offset + (self.gain - 1.0) * self.k * self.mean_h
            self._luma = knobs, ((self.y - f(self.k) * self.h) * f(self.gain) + f(level))[..., None]
        if self.kc == 0.0:
            return _to_uint8(self._luma[1] + self.c)
        if self._hc is None:
            self._hc = _detail(self.c)
        chroma = self._hc * f(-self.kc)
        chroma += self.c
        chroma += self._luma[1]
        return _to_uint8(chroma)


def _encoded(img: np.ndarray, fmt: str, quality: int) -> tuple[float, bytes]:
    """(log of the stored size, the stored bytes): the bytes of the option finally kept are the sample's own."""
    from ..imaging import encode_image

    data = encode_image(Image.fromarray(img), fmt, quality)
    return float(np.log(len(data))), data


def equalize_options(options: list[np.ndarray], rng: np.random.Generator, fmt: str, quality: int, jitter: float,
                     tol: float) -> tuple[list[np.ndarray], list[dict[str, Any]], dict[str, Any], list[bytes]]:
    """Give the options the same brightness, contrast, sharpness and stored byte size, each within its own target.
    Returns the options, their records, a summary and each option's encoding as ``fmt`` / ``quality``.

    1. the common target is the mean of the four options' [mean grey, log grey std, log Laplacian variance];
    2. each option draws its own target uniformly within +-``jitter`` of it (brightness: +-25 * jitter grey levels),
       so the small misses of the matching are random and say nothing about which option is which;
    3. luma offset, gain and detail knob are solved in closed form (see ``_Equalizer``) on the float option, the
       sharpness aimed below the target by what rounding adds (the median of what it added to the earlier options'
       first renders, at least ``ROUNDING_LAP_VAR``, which the first option uses); the rounded 8-bit option is
       measured, and where clipping or rounding left it outside the tolerance the aim is moved past the target by
       the miss and solved again (at most ``MAX_PASSES`` renders);
    4. byte size as stored (``fmt``, ``quality``), which the grey statistics do not pin down: each option is
       encoded once, the byte target is the mean of the four (+ jitter), and the chroma knob (chroma only, so the
       grey image is untouched up to rounding) takes secant steps, the first with the median slope measured on the
       earlier options (``CHROMA_SLOPE`` for the first), at most ``MAX_ENCODES`` encodes per option.
    """
    eqs = [_Equalizer(o) for o in options]
    jit = rng.uniform(-1.0, 1.0, size=(len(options), 4)) * np.array([25.0 * jitter, jitter, jitter, jitter])
    tols = np.array([25.0 * tol, tol, tol])
    common = np.mean([eq.stats() for eq in eqs], axis=0)
    images, records, done = [], [], []
    # Rounding adds more Laplacian variance than independent per-channel errors would where the colours are near grey
    # (the three channels then round alike): what it added to this sample's earlier options is the next one's guess.
    rounding_seen: list[float] = []
    for eq, j in zip(eqs, jit):
        target = common + j[:3]
        aim = target.copy()
        best = None
        # never below the independent-error model: a low guess only costs passes on the softest pictures
        rounding = max(float(np.median(rounding_seen)), ROUNDING_LAP_VAR) if rounding_seen else ROUNDING_LAP_VAR
        for passes in range(1, MAX_PASSES + 1):
            float_sharpness = eq.solve(aim, rounding)
            img = eq.render()
            st = pixel_stats(img)
            if passes == 1:
                rounding_seen.append(max(float(np.exp(st[2])) - float_sharpness, 0.0))
            miss = float(np.max(np.abs(st - target) / tols))
            if best is None or miss < best[0]:
                best = (miss, img, st, eq.k, eq.gain, eq.offset, aim)
            if miss <= 1.0:
                break
            aim = aim + (target - st)
        miss, img, st, eq.k, eq.gain, eq.offset, aim = best
        done.append((img, st, target, passes, aim))
    first = [_encoded(img, fmt, quality) for img, *_ in done]
    common_bytes = float(np.mean([b for b, _ in first]))
    stored = []
    seen_slopes: list[float] = []  # one picture: its options' slopes are alike (leave-one-out median error 27 %)
    for eq, j, (img, st, target, passes, aim), (b, data) in zip(eqs, jit, done, first):
        byte_target, kc, encodes = common_bytes + j[3], 0.0, 1
        best_b = (abs(b - byte_target), img, b, 0.0, data)
        slope, prev = float(np.median(seen_slopes)) if seen_slopes else CHROMA_SLOPE, None
        while encodes < MAX_ENCODES and best_b[0] > tol:
            if prev is not None and prev[0] != kc:
                measured = (b - prev[1]) / (kc - prev[0])
                if 4 * CHROMA_SLOPE <= measured <= CHROMA_SLOPE / 4:  # a plausible secant slope
                    slope = measured
                    seen_slopes.append(measured)
            new = float(np.clip(kc - (b - byte_target) / slope, *CHROMA_RANGE))
            if new == kc:
                break  # the end of the knob's range: the target cannot be reached
            prev, kc = (kc, b), new
            eq.kc = kc
            img_c = eq.render()
            b, data = _encoded(img_c, fmt, quality)
            encodes += 1
            if abs(b - byte_target) < best_b[0]:
                best_b = (abs(b - byte_target), img_c, b, kc, data)
        _, img, b, eq.kc, data = best_b
        if eq.kc != 0.0:
            st = pixel_stats(img)  # what rounding and clipping of the chroma edit did to the grey statistics
            if np.any(np.abs(st - target) > tols):  # one more luma solve, with the chroma edit in place
                kept = (eq.k, eq.gain, eq.offset)
                eq.solve(aim + (target - st))
                img_l = eq.render()
                st_l = pixel_stats(img_l)
                passes += 1
                if np.max(np.abs(st_l - target) / tols) < np.max(np.abs(st - target) / tols):
                    img, st = img_l, st_l
                    b, data = _encoded(img_l, fmt, quality)
                    encodes += 1
                else:  # the records must describe the option that is kept
                    eq.k, eq.gain, eq.offset = kept
        target = np.append(target, byte_target)
        st = np.append(st, b)
        miss = float(np.max(np.abs(st - target) / np.append(tols, tol)))
        images.append(img)
        stored.append(data)
        records.append({
            "luma_offset": round(eq.offset, 3),
            "luma_gain": round(eq.gain, 4),
            "luma_detail": round(float(eq.k), 4),
            "chroma_detail": round(float(eq.kc), 4),
            "pixels": [round(float(st[0]), 3), round(float(np.exp(st[1])), 3), round(float(np.exp(st[2])), 3),
                       int(round(float(np.exp(st[3]))))],
            "target": [round(float(target[0]), 3), round(float(np.exp(target[1])), 3), round(float(np.exp(target[2])), 3),
                       int(round(float(np.exp(target[3]))))],
            "matched": bool(miss <= 1.0),
            "passes": passes,
            "encodes": encodes,
        })
    summary = {
        "measured_on": "grey statistics: the 8-bit option pixels, before encoding; bytes: the encoded option",
        "stored_as": f"{fmt} q{quality}" if fmt == "jpeg" else fmt,
        "stats": ["mean grey", "grey std", "laplacian variance", "bytes"],
        "common_target": [round(float(common[0]), 3), round(float(np.exp(common[1])), 3),
                          round(float(np.exp(common[2])), 3), int(round(float(np.exp(common_bytes))))],
        "jitter": jitter,
        "tol": tol,
        "knobs": ("luma y -> gain * (y_k - mean) + brightness, y_k = y - k (y - b(y)), b the [1, 4, 6, 4, 1] / 16 blur: k in [-3, 1], k > 0 "
                  "blurs, k < 0 an unsharp mask; offset, gain and k solved in closed form; chroma c -> c - kc (c - b(c)), "
                  "kc in [-4, 1], by secant steps on the encoded size"),
        "all_matched": all(r["matched"] for r in records),
    }
    return images, records, summary, stored


# ------------------------------------------------------------------------------------------------------- the task
@register_task
class CropTask(Task):
    name = "crop"
    config_cls = CropConfig
    needs_depth = False
    description = "Cropped patch inpainting: pick which of four candidates (A-D) fills a blacked-out square."

    config: CropConfig

    @property
    def num_slots(self) -> int:
        return len(LETTERS)

    def variants(self) -> list[str]:
        return [self.name]

    # ------------------------------------------------------------------ generation

    def _render(self, src: Image.Image, window: Box, side: int, rotation: int = 0) -> np.ndarray:
        """The one resampling path every option takes: window -> side x side by area averaging (Pillow's box
        filter; reducing_gap 1: an integer box reduce, then the box filter for the rest, which is area averaging up
        to rounding to 8 bits in between), turned ``rotation`` degrees clockwise, blurred (float32) by option_blur
        (option px) and source_blur (source px, i.e. / the shrink factor). Returns float32 RGB, not rounded."""
        img = src.resize((side, side), Image.BOX, box=window, reducing_gap=1.0)
        if rotation:
            # Image.ROTATE_270 turns counter-clockwise by 270 = clockwise by 90.
            img = img.transpose(Image.Transpose.ROTATE_270 if rotation == 90 else Image.Transpose.ROTATE_90)
        shrink = (window[2] - window[0]) / side
        var = self.config.option_blur**2 + (self.config.source_blur / shrink) ** 2
        return smooth(np.asarray(img, np.float32), var)

    def _plans(self, fovs: list[float] | None) -> list[tuple[tuple[tuple[str, float], ...], float]]:
        """Every way to give three distinct methods the fields of view ``fovs`` (ascending; None: the paper's),
        zoom_in one below 1, contexts ones above 1 (context_0.25 the smaller), rotations any, with its weight: the
        product of the method weights, shared equally by the ways of one method set."""
        if fovs is None:
            return [(tuple((m, PAPER_FOV[m]) for m in combo), weight) for combo, weight in self._method_sets()]
        below = sum(f < 1 for f in fovs)  # fovs ascending: which ways fit depends on this count only
        key = (below, tuple(sorted(self.config.distractor_weights.items())))
        cache = self.__dict__.setdefault("_ways", {})
        if key not in cache:
            plans = []
            for combo, weight in self._method_sets():
                ways = set()
                for perm in itertools.permutations(range(len(fovs))):
                    got = dict(zip(combo, perm))
                    if got.get("zoom_in", -1) >= below or any(got[m] < below for m in CONTEXT_MARGINS if m in got):
                        continue
                    if got.get("context_0.25", -1) > got.get("context_0.5", len(fovs)):
                        continue
                    ways.add(tuple(zip(combo, perm)))
                plans += [(way, weight / len(ways)) for way in sorted(ways)]
            cache[key] = plans
        return [(tuple((m, fovs[i]) for m, i in way), weight) for way, weight in cache[key]]

    def _method_sets(self) -> list[tuple[tuple[str, ...], float]]:
        w = self.config.distractor_weights
        names = [m for m in METHODS if w.get(m, 0) > 0]
        return [(combo, float(np.prod([w[m] for m in combo]))) for combo in itertools.combinations(names, 3)]

    def _too_similar(self, img: np.ndarray, true: _Option) -> str | None:
        diff = float(np.abs(img[::2, ::2] - true.image[::2, ::2]).mean(dtype=np.float64))  # every 2nd pixel: enough
        if diff < self.config.min_distractor_diff:
            return f"too_similar_to_true_crop (mean abs diff {diff:.1f})"
        return None

    def _distractor(self, method: str, fov: float, src: Image.Image, box: Box, true: _Option, side: int,
                    rng: np.random.Generator, taken: list[Box]) -> _Option | str:
        """Build one distractor, or return why the method is unusable for this sample."""
        cfg = self.config
        paper = cfg.scale_mode == "paper"
        if method in ROTATIONS:
            rot = ROTATIONS[method]
            if cfg.rotate_window == "crop":
                img = np.rot90(true.image, k=-rot // 90).copy()
                return self._too_similar(img, true) or _Option(method, box, rot, False, img, 1.0)
            why = "no_room_for_rotation_window"
            for window in _rotation_windows(box, src.width, src.height, fov, cfg.rotate_shift_min,
                                            cfg.rotate_shift_max, rng, taken)[:4]:
                img = self._render(src, window, side, rot)
                why = self._too_similar(img, true) or ""
                if not why:
                    taken.append(window)
                    return _Option(method, window, rot, True, img, (window[2] - window[0]) / (box[2] - box[0]))
            return why
        if method == "zoom_in":
            window, shifted = _zoom_window(box, None if paper else fov), False
        else:
            fit = _context_window(box, CONTEXT_MARGINS[method] if paper else (fov - 1) / 2, src.width, src.height)
            if fit is None:
                return "window_larger_than_image"
            window, shifted = fit
        img = self._render(src, window, side)
        return self._too_similar(img, true) or _Option(method, window, 0, shifted, img,
                                                      (window[2] - window[0]) / (box[2] - box[0]))

    def _hole_image(self, img: Image.Image, box: Box) -> tuple[Image.Image, dict[str, Any]]:
        """The source (``img``, a copy: drawn on) with the crop filled black and a two-tone outline drawn just inside
        the hole's edge."""
        draw = ImageDraw.Draw(img)
        x0, y0, x1, y1 = box
        band = _hole_widths(x1 - x0)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=HOLE_FILL)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=RED, width=band)
        draw.rectangle((x0 + band, y0 + band, x1 - 1 - band, y1 - 1 - band), outline=WHITE, width=band)
        hole = {
            "fill": list(HOLE_FILL),
            "outline": [{"color": list(RED), "width": band}, {"color": list(WHITE), "width": band}],
            "outline_inside_box": True,
            "description": f"black fill; {band}px red band then {band}px white band inside the box edge",
        }
        return img, hole

    def generate(self, source: Source, rng: np.random.Generator, slot: int = 0) -> Sample:
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"crop: slot must be in range({self.num_slots}), got {slot}")
        cfg = self.config
        paper = cfg.scale_mode == "paper"
        h, w = source.height, source.width
        s = int(min(h, w) * cfg.size_frac)  # floor: a 2s context window always fits when size_frac = 0.5
        smallest = s - 2 * (s // 4) if paper else int(s / cfg.scale_span)  # the smallest window any option can have
        side = min(smallest, cfg.max_option_side)
        if side < cfg.min_option_side:
            raise Reject("crop/source_too_small", f"{w}x{h}: option side {side} < {cfg.min_option_side}")

        x0 = int(rng.integers(0, w - s + 1))
        y0 = int(rng.integers(0, h - s + 1))
        box: Box = (x0, y0, x0 + s, y0 + s)
        crop = source.rgb[y0 : y0 + s : 2, x0 : x0 + s : 2]  # every 2nd pixel: the std is the same
        grey_std = float(_mix(crop, _GREY.astype(np.float32)).std(dtype=np.float64))  # float64 sums: no cancellation
        if grey_std < cfg.min_crop_std:
            raise Reject("crop/uniform_crop", f"grey std {grey_std:.1f} < {cfg.min_crop_std}")

        src = source.pil_view()  # read only: every option is resampled from it; the hole image draws on a copy
        true = _Option(TRUE_METHOD, box, 0, False, self._render(src, box, side), 1.0)
        rank, fovs = None, None
        plans = self._plans(None) if paper else []
        for _ in range(0 if paper else 16):  # weights that leave some rank without a method set: draw again
            rank, fovs = _draw_fovs(rng, cfg.scale_span, cfg.scale_gap)
            plans = self._plans(fovs)
            if plans:
                break
        if not plans:
            raise Reject("crop/too_few_distractors", "no method set with positive weight fits the fields of view")
        unavailable: list[list[Any]] = []
        failed: set[tuple[str, float]] = set()
        distractors: list[_Option] = []
        while plans:
            weights = np.array([p[1] for p in plans])
            way = plans[int(rng.choice(len(plans), p=weights / weights.sum()))][0]
            distractors, taken = [], []  # taken: the windows of this set's rotations so far
            for method, fov in way:
                got = self._distractor(method, fov, src, box, true, side, rng, taken)
                if isinstance(got, str):
                    unavailable.append([method, got] if paper else [method, round(fov, 4), got])
                    failed.add((method, fov))
                    break
                distractors.append(got)
            if len(distractors) == 3:
                break
            plans = [p for p in plans if not failed & set(p[0])]
        if len(distractors) < 3:
            raise Reject("crop/too_few_distractors", "; ".join(f"{u[0]}: {u[-1]}" for u in unavailable))

        summary = None
        opts = [true] + distractors
        if cfg.equalize:
            images, records, summary, stored = equalize_options(
                [o.image for o in opts], rng, cfg.equalize_format, cfg.equalize_quality, cfg.equalize_jitter,
                cfg.equalize_tol)
            for o, img, rec, data in zip(opts, images, records, stored):
                o.image, o.equalize, o.encoded = img, rec, data
        else:
            for o in opts:
                o.image = _to_uint8(o.image)

        order = [distractors[int(i)] for i in rng.permutation(3)]
        order.insert(slot, true)
        hole_img, hole = self._hole_image(source.image(), box)
        answer = LETTERS[slot]
        blur = f"gaussian sigma {cfg.option_blur} option px and {cfg.source_blur} source px"
        metadata = {
            "crop_box": list(box),
            "crop_side": s,
            "source_size": [w, h],
            "hole": hole,
            "option_side": side,
            "option_resample": "area average (box) resize, then " + blur + (", then equalisation (see 'equalize')" if summary else ""),
            "rotation_convention": "degrees clockwise",
            "scale_mode": cfg.scale_mode,
            "rotate_window": cfg.rotate_window,
            "field_of_view_rank": rank,  # how many options see less of the picture than the true crop
            "options": [
                {
                    "letter": letter,
                    "method": o.method,
                    "window": list(o.window),
                    "rotation": o.rotation,
                    "shifted": o.shifted,
                    "field_of_view": round(o.fov, 4),
                    **({"equalize": o.equalize} if o.equalize else {}),
                }
                for letter, o in zip(LETTERS, order)
            ],
            "answer_index": slot,
            "unavailable_methods": unavailable,
        }
        if summary:
            metadata["equalize"] = summary
        return Sample(
            task=self.name,
            variant=self.name,
            question=QUESTION,
            images=[hole_img] + [Image.fromarray(o.image) for o in order],
            encoded=[None] + [o.encoded for o in order] if summary else None,
            encoded_as=(cfg.equalize_format, cfg.equalize_quality) if summary else None,
            answer=answer,
            metadata=metadata,
            options={letter: o.method for letter, o in zip(LETTERS, order)},
        )

    # ------------------------------------------------------------------ verification

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Re-derive the answer by matching every option against plainly resampled source windows.

        Independent of ``generate``: bilinear resampling, ``np.rot90`` and block averages of contrast-normalised grey
        instead of Lanczos, blurs, Pillow transposes and the equalisation; distances are relative (best match), so
        the equalisation's small edits and JPEG storage do not matter.
        """
        if source is None:
            return ["source unavailable: cannot re-derive the crop answer"]
        problems: list[str] = []
        if len(images) != 5:
            return [f"expected 5 images (hole + 4 options), got {len(images)}"]
        if answer not in LETTERS:
            return [f"answer {answer!r} is not one of {LETTERS}"]
        try:
            box = tuple(int(v) for v in metadata["crop_box"])
            side = int(metadata["option_side"])
            opts = list(metadata["options"])
        except (KeyError, TypeError, ValueError) as exc:
            return [f"metadata incomplete: {exc!r}"]
        w, h = source.width, source.height
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and x1 - x0 == y1 - y0):
            return [f"crop_box {list(box)} is not a square inside the {w}x{h} source"]
        if len(opts) != 4 or [o.get("letter") for o in opts] != list(LETTERS):
            return [f"metadata options must list letters A-D in order, got {[o.get('letter') for o in opts]}"]
        if metadata.get("answer_index") != LETTERS.index(answer):
            problems.append(f"answer_index {metadata.get('answer_index')} disagrees with answer {answer}")
        truth = [i for i, o in enumerate(opts) if o.get("method") == TRUE_METHOD]
        if truth != [LETTERS.index(answer)]:
            problems.append(f"true crop listed at options {truth}, answer is {answer}")

        problems += _check_hole(images[0], box, source)
        sigs = []
        for letter, img in zip(LETTERS, images[1:]):
            if img.size != (side, side):
                problems.append(f"option {letter} is {img.size}, expected {side}x{side}")
                return problems
            sigs.append(_signature(np.asarray(img.convert("RGB"), np.float64)))

        ref_true = _signature(_reference(source, box, 0, side))
        d_true = [float(np.abs(g - ref_true).mean()) for g in sigs]
        best = int(np.argmin(d_true))
        if LETTERS[best] != answer:
            problems.append(f"option {LETTERS[best]} matches the crop best (distances {np.round(d_true, 3).tolist()}), answer is {answer}")

        problems += self._check_scales(metadata, opts, box)
        for i, o in enumerate(opts):
            if o.get("method") == TRUE_METHOD:
                if list(o.get("window", [])) != list(box) or o.get("rotation") != 0:
                    problems.append(f"option {o['letter']}: true crop must use crop_box without rotation")
                continue
            geometry = self._check_geometry(o, box, w, h, metadata)
            problems += geometry
            if geometry:
                continue
            ref = _signature(_reference(source, tuple(int(v) for v in o["window"]), int(o.get("rotation", 0)), side))
            d_own = float(np.abs(sigs[i] - ref).mean())
            if not d_own < d_true[i]:
                problems.append(
                    f"option {o['letter']} ({o.get('method')}): matches its construction no better than the true crop "
                    f"({d_own:.3f} vs {d_true[i]:.3f})"
                )
        return problems

    def _check_scales(self, metadata: dict, opts: list[dict], box: tuple[int, ...]) -> list[str]:
        """Balanced scales: fields of view within scale_span, scale_gap apart (up to pixel rounding), rank recorded."""
        if metadata.get("scale_mode", "paper") != "balanced":
            return []
        s = box[2] - box[0]
        try:
            fovs = sorted((int(o["window"][2]) - int(o["window"][0])) / s for o in opts)
        except (KeyError, TypeError, ValueError, IndexError):
            return ["options: window missing"]
        slack = 2.0 / s  # windows are whole pixels
        problems = []
        if fovs[-1] / fovs[0] > self.config.scale_span * (1 + slack) + 1e-9:
            problems.append(f"fields of view {np.round(fovs, 3).tolist()} span more than {self.config.scale_span}")
        if min(b / a for a, b in zip(fovs, fovs[1:])) < self.config.scale_gap * (1 - slack) - 1e-9:
            problems.append(f"fields of view {np.round(fovs, 3).tolist()} are closer than {self.config.scale_gap}x")
        rank = sum(f < 1 - 1e-9 for f in fovs)
        if metadata.get("field_of_view_rank") != rank:
            problems.append(f"field_of_view_rank {metadata.get('field_of_view_rank')} but {rank} options see less than the crop")
        return problems

    def _check_geometry(self, o: dict, box: tuple[int, ...], width: int, height: int, metadata: dict) -> list[str]:
        """Windows must be square, inside the image, and consistent with the method (no clipped or stretched context)."""
        method, letter = o.get("method"), o.get("letter")
        try:
            wx0, wy0, wx1, wy1 = (int(v) for v in o["window"])
        except (KeyError, TypeError, ValueError):
            return [f"option {letter}: window missing"]
        if wx1 - wx0 != wy1 - wy0 or not (0 <= wx0 < wx1 <= width and 0 <= wy0 < wy1 <= height):
            return [f"option {letter} ({method}): window {[wx0, wy0, wx1, wy1]} is not a square inside the image"]
        x0, y0, x1, y1 = box
        s, n = x1 - x0, wx1 - wx0
        paper = metadata.get("scale_mode", "paper") == "paper"
        problems = []
        if method in ROTATIONS:
            if o.get("rotation") != ROTATIONS[method]:
                problems.append(f"option {letter} ({method}): rotation must be {ROTATIONS[method]} deg cw")
            if metadata.get("rotate_window", "crop") == "crop":
                if [wx0, wy0, wx1, wy1] != list(box):
                    problems.append(f"option {letter} ({method}): must be the crop window turned")
            else:
                d = max(abs((wx0 + wx1) - (x0 + x1)), abs((wy0 + wy1) - (y0 + y1))) / 2 / s
                lo, hi = self.config.rotate_shift_min, self.config.rotate_shift_max
                if not lo - 1.0 / s <= d <= hi + 1.5 / s:
                    problems.append(f"option {letter} ({method}): window centre {d:.3f} s from the crop's, not in [{lo}, {hi}]")
                if paper and n != s:
                    problems.append(f"option {letter} ({method}): window side {n}, expected the crop's {s}")
        elif method == "zoom_in":
            centred = abs((wx0 - x0) - (x1 - wx1)) <= 1 and abs((wy0 - y0) - (y1 - wy1)) <= 1
            if not (x0 < wx0 and y0 < wy0 and wx1 < x1 and wy1 < y1 and centred):
                problems.append(f"option {letter} (zoom_in): window is not a centred square inside the crop")
            elif paper and abs(n - s / 2) > 2:
                problems.append(f"option {letter} (zoom_in): window is not the centre half of the crop")
        elif method in CONTEXT_MARGINS:
            expect = s + 2 * int(CONTEXT_MARGINS[method] * s)
            if not (wx0 <= x0 and wy0 <= y0 and x1 <= wx1 and y1 <= wy1 and n > s):
                problems.append(f"option {letter} ({method}): window does not contain the crop")
            elif paper and n != expect:
                problems.append(f"option {letter} ({method}): window is not a side-{expect} square containing the crop")
        else:
            problems.append(f"option {letter}: unknown method {method!r}")
        return problems


def _reference(source: Source, window: tuple[int, ...], rotation: int, side: int) -> np.ndarray:
    """A source window resized by plain bilinear resampling, rotated by ``rotation`` degrees clockwise."""
    x0, y0, x1, y1 = window
    patch = Image.fromarray(np.ascontiguousarray(source.rgb[y0:y1, x0:x1]), "RGB").resize((side, side), Image.BILINEAR)
    return np.rot90(np.asarray(patch, np.float64), k=-(rotation // 90) % 4).copy()


def _signature(rgb: np.ndarray, block: int = 4) -> np.ndarray:
    """Contrast-normalised grey, averaged over block x block cells: blind to small blur, sharpening, gain and offset."""
    g = rgb @ np.array([0.299, 0.587, 0.114])
    g = (g - g.mean()) / max(float(g.std()), 1e-6)
    n = (g.shape[0] // block) * block
    return g[:n, :n].reshape(n // block, block, n // block, block).mean(axis=(1, 3))


def _check_hole(img: Image.Image, box: tuple[int, ...], source: Source) -> list[str]:
    """Image 1 must be the source, with a dark hole at ``box`` (outline bands excluded)."""
    if img.size != (source.width, source.height):
        return [f"image 1 is {img.size}, source is {source.width}x{source.height}"]
    x0, y0, x1, y1 = box
    a = np.asarray(img.convert("RGB"), np.float32)
    inset = max(2, (x1 - x0) // 12)  # well clear of the outline bands and of JPEG ringing
    inner = a[y0 + inset : y1 - inset, x0 + inset : x1 - inset]
    problems = []
    if inner.size == 0 or inner.mean() > 25 or np.percentile(inner, 99) > 80:
        problems.append(f"image 1 is not dark inside crop_box {list(box)} (mean {inner.mean() if inner.size else -1:.1f})")
    diff = np.abs(a - source.rgb.astype(np.float32)).sum(axis=2)
    n_out = diff.size - (x1 - x0) * (y1 - y0)
    if n_out > 0 and (float(diff.sum()) - float(diff[y0:y1, x0:x1].sum())) / (3 * n_out) > 6:
        problems.append("image 1 differs from the source outside the hole")
    return problems
