"""Grid helpers shared by the patch tasks (shuffle, flip).

An image is cut into an R x C grid after an EXPLICIT centre crop to a size divisible by the grid: at most R-1
rows and C-1 columns are dropped, split evenly between the two sides, and the crop box is recorded in the
metadata (the reference dropped edge pixels silently). Cells are numbered in reading order ``k = i * C + j``.

Generation-side helpers: :func:`make_grid`, :func:`thumbnails`,
:func:`patch_std`, :func:`pairwise_mad`, :func:`draw_overlay`, :func:`position_names`.
Verification-side helpers (used only by ``verify``, never by ``generate``): :func:`comparison_mask`,
:func:`comparison_pixels`, :func:`masked_rms`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .. import render

MAX_GRID_SIDE = 4  # up to 4x4, as the config contract allows
GRID_RE = re.compile(r"^([1-9])x([1-9])(_mask)?$")

BORDER_COLOR = render.RED  # the reference meant red (it passed BGR to an RGB API)
Box = tuple[int, int, int, int]  # [x0, y0, x1, y1], end-exclusive
THUMB_SIDE = 48  # shorter side of the thumbnails used for ambiguity statistics


@dataclass(frozen=True)
class Grid:
    """An R x C grid laid over ``crop_box`` = [x0, y0, x1, y1] in source pixel coordinates."""

    rows: int
    cols: int
    crop_box: tuple[int, int, int, int]

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def patch_w(self) -> int:
        return (self.crop_box[2] - self.crop_box[0]) // self.cols

    @property
    def patch_h(self) -> int:
        return (self.crop_box[3] - self.crop_box[1]) // self.rows

    @property
    def out_size(self) -> tuple[int, int]:
        """(width, height) of the assembled output image (= the crop)."""
        return (self.patch_w * self.cols, self.patch_h * self.rows)

    def local_box(self, k: int) -> list[int]:
        """Box of cell ``k`` in output (crop) coordinates."""
        i, j = divmod(k, self.cols)
        return [j * self.patch_w, i * self.patch_h, (j + 1) * self.patch_w, (i + 1) * self.patch_h]

    def cell_box(self, k: int) -> list[int]:
        """Box of cell ``k`` in source coordinates."""
        x0, y0 = self.crop_box[0], self.crop_box[1]
        b = self.local_box(k)
        return [b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0]

    def local_boxes(self) -> list[list[int]]:
        return [self.local_box(k) for k in range(self.count)]

    def cell_boxes(self) -> list[list[int]]:
        return [self.cell_box(k) for k in range(self.count)]


def parse_grid_name(name: str) -> tuple[int, int, bool] | None:
    """``"2x2_mask"`` -> (2, 2, True); None when the name is not of the form ``RxC`` / ``RxC_mask``."""
    m = GRID_RE.match(name)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), bool(m.group(3))


def grid_problem(rows: int, cols: int) -> str | None:
    """Why an R x C grid is not allowed (None when it is): 1..4 per side and at least two cells."""
    if not (1 <= rows <= MAX_GRID_SIDE and 1 <= cols <= MAX_GRID_SIDE):
        return f"grid sides must be in 1..{MAX_GRID_SIDE}, got {rows}x{cols}"
    if rows * cols < 2:
        return "grid needs at least 2 cells"
    return None


def make_grid(height: int, width: int, rows: int, cols: int) -> Grid:
    """The largest centred crop whose size is divisible by the grid (odd remainders leave the extra pixel
    on the right/bottom)."""
    ch, cw = height - height % rows, width - width % cols
    y0, x0 = (height - ch) // 2, (width - cw) // 2
    return Grid(rows, cols, (x0, y0, x0 + cw, y0 + ch))


def thumbnails(regions: list[tuple[Image.Image, Box]], side: int = THUMB_SIDE) -> np.ndarray:
    """(K, th, tw, 3) float32 box-averaged thumbnails of equal-sized ``(image, box)`` regions: each region reduced by
    the smallest integer factor that brings its shorter side to at most ``side`` (the few rightmost/bottom pixels
    that do not fill a whole box are left out).

    Ambiguity statistics run on these: box averaging removes sensor/JPEG noise (which would otherwise make
    two flat sky patches look "different") and keeps the cost independent of the source resolution. An integer
    factor is a plain block mean (``Image.reduce`` reads the region in place), several times cheaper than
    resampling to an exact size.
    """
    x0, y0, x1, y1 = regions[0][1]
    pw, ph = x1 - x0, y1 - y0
    factor = max(1, -(-min(ph, pw) // side))
    tw, th = pw // factor, ph // factor
    out = np.empty((len(regions), th, tw, 3), np.float32)
    for i, (image, (bx, by, _, _)) in enumerate(regions):
        box = (bx, by, bx + tw * factor, by + th * factor)
        out[i] = np.asarray(image.reduce(factor, box) if factor > 1 else image.crop(box))
    return out


def _channels_last_to_rows(thumbs: np.ndarray) -> np.ndarray:
    """(K, h, w, 3) -> contiguous (K, 3, h * w): numpy reduces a contiguous last axis ~10x faster than (1, 2)."""
    k = thumbs.shape[0]
    return np.ascontiguousarray(thumbs.reshape(k, -1, thumbs.shape[-1]).transpose(0, 2, 1))


def patch_std(thumbs: np.ndarray) -> np.ndarray:
    """(K,) content measure per patch: per-channel standard deviation, averaged over the channels."""
    return _channels_last_to_rows(thumbs).std(axis=2).mean(axis=1)


def content_scale(thumbs: np.ndarray) -> float:
    """Standard deviation of all thumbnail pixels together (per channel, averaged): the whole crop's contrast."""
    return float(patch_std(thumbs.reshape(1, -1, 1, thumbs.shape[-1]))[0])  # all pixels as one patch


def pairwise_mad(thumbs: np.ndarray) -> np.ndarray:
    """(K, K) mean absolute difference between every pair of thumbnails (0..255 units)."""
    k = thumbs.shape[0]
    flat = thumbs.reshape(k, -1)
    out = np.zeros((k, k), np.float64)
    for i in range(k - 1):  # upper triangle only: half the work of a (K, K, N) broadcast, and less memory
        out[i, i + 1 :] = np.abs(flat[i + 1 :] - flat[i]).mean(axis=-1)
    return out + out.T


def border_width(grid: Grid) -> int:
    """Thin border: about 1% of the patch's shorter side, at least 1 px."""
    return max(1, min(grid.patch_h, grid.patch_w) // 100)


def draw_overlay(image: Image.Image, grid: Grid, labels: list[str], label_fraction: float = 0.22) -> dict:
    """Draw a thin border around every cell and its outlined label at the cell centre, in place.

    ``labels[k]`` is drawn on output cell ``k``. The font scales with the patch (``render.label_size``) so it
    stays legible at any resolution. Returns what was drawn, for the metadata: ``border_px``, ``border_color``,
    ``font_px``, ``label_centers`` and ``label_boxes`` (text extent incl. outline, output coords).
    """
    draw = ImageDraw.Draw(image)
    bw = border_width(grid)
    size = render.label_size(min(grid.patch_h, grid.patch_w), fraction=label_fraction)
    fnt = render.font(size)
    stroke = max(2, size // 12)  # the outline width render.draw_label uses
    centers, boxes = [], []
    for k, text in enumerate(labels):
        x0, y0, x1, y1 = grid.local_box(k)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BORDER_COLOR, width=bw)
        center = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
        render.draw_label(draw, center, text, size)
        bbox = draw.textbbox(center, text, font=fnt, anchor="mm", stroke_width=stroke)
        centers.append([float(center[0]), float(center[1])])
        boxes.append([int(math.floor(bbox[0])), int(math.floor(bbox[1])), int(math.ceil(bbox[2])), int(math.ceil(bbox[3]))])
    return {"border_px": bw, "border_color": list(BORDER_COLOR), "font_px": int(size), "label_centers": centers, "label_boxes": boxes}


# --- answer-format wording ---------------------------------------------------------------------------------

_SIDE_NAMES = {
    1: [""],
    2: ["{a}", "{b}"],
    3: ["{a}", "Middle", "{b}"],
    4: ["{a}", "Middle1", "Middle2", "{b}"],
}


def _axis_names(n: int, first: str, last: str) -> list[str]:
    return [s.format(a=first, b=last) for s in _SIDE_NAMES[n]]


def position_names(rows: int, cols: int) -> list[str]:
    """Names of the grid positions in reading order, as the released data's answer formats spell them.

    1xN strips: Left-Middle-Right / Left-Middle1-Middle2-Right; Nx1: Top-Middle-Bottom / Top-Middle1-Middle2-Bottom;
    2x2: TopLeft-TopRight-BottomLeft-BottomRight (2x3 / 3x2 compose the same way: TopMiddle, MiddleLeft...).
    Larger 2-D grids (3x3 and up, or a side of 4) would need names like "Middle1Middle2", so they use
    R<row>C<column> (1-based) instead.
    """
    if rows == 1:
        return _axis_names(cols, "Left", "Right")
    if cols == 1:
        return _axis_names(rows, "Top", "Bottom")
    if rows * cols <= 6 and max(rows, cols) <= 3:
        rn, cn = _axis_names(rows, "Top", "Bottom"), _axis_names(cols, "Left", "Right")
        return [r + c for r in rn for c in cn]
    return [f"R{i + 1}C{j + 1}" for i in range(rows) for j in range(cols)]


def reading_order_phrase(rows: int, cols: int) -> str:
    """How positions are ordered, in words."""
    if rows == 1:
        return "from left to right"
    if cols == 1:
        return "from top to bottom"
    return "in reading order (rows from top to bottom, left to right within each row)"


# --- verification-side helpers (independent of the generation path) ----------------------------------------


def comparison_mask(ph: int, pw: int, display_boxes: list[list[int]], label_boxes: list[list[int]], border_px: int) -> np.ndarray:
    """(ph, pw) bool: pixels of a cell that carry untouched content in every cell.

    Drops a margin of ``border_px + 2`` on each side (the border and JPEG ringing around it) and the union of
    every cell's label box padded by 2 px (relative to that cell's origin), so one mask serves all cells.
    """
    mask = np.zeros((ph, pw), bool)
    m = int(border_px) + 2
    mask[m : ph - m, m : pw - m] = True
    for (dx0, dy0, _, _), (lx0, ly0, lx1, ly1) in zip(display_boxes, label_boxes):
        x0, y0 = max(0, lx0 - dx0 - 2), max(0, ly0 - dy0 - 2)
        x1, y1 = min(pw, lx1 - dx0 + 2), min(ph, ly1 - dy0 + 2)
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = False
    return mask


VERIFY_PIXELS = 16_384  # per patch: the matches are relative (best against second best), and a lattice of this
# many pixels decides them as surely as every pixel (a right match differs by JPEG noise, a wrong one by content)


def comparison_pixels(mask: np.ndarray, budget: int = VERIFY_PIXELS) -> np.ndarray:
    """Flat indices of the mask's pixels, thinned to an even lattice of at most ~``budget`` of them."""
    flat = np.flatnonzero(mask)
    return flat[:: max(1, flat.size // budget)]


def masked(patch: np.ndarray, mask: np.ndarray, flat: np.ndarray | None = None) -> np.ndarray:
    """``patch[mask]`` for an (H, W, C) patch and an (H, W) mask (``flat``: ``np.flatnonzero(mask)``, computed
    once by the caller): the same array, gathered by flat index, which is several times faster."""
    if patch.shape[:2] != mask.shape:
        return patch[mask]  # boolean indexing raises its usual IndexError
    flat = np.flatnonzero(mask) if flat is None else flat
    return np.take(patch.reshape(-1, *patch.shape[2:]), flat, axis=0)


def masked_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) RMS distance between two stacks of masked patches (flattened to (Na, N) and (Nb, N)), via
    |a|^2 + |b|^2 - 2 a.b (one matrix product instead of Na*Nb pixel loops)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    n = max(1, a.shape[1])
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0) / n)


def check_crop(crop_box: list[int], cell_boxes: list[list[int]], rows: int, cols: int, src_w: int, src_h: int) -> list[str]:
    """Problems with a recorded crop: not inside the source, not centred, dropping more than the remainder,
    or cell boxes that do not tile it in reading order."""
    problems = []
    x0, y0, x1, y1 = crop_box
    cw, ch = x1 - x0, y1 - y0
    if not (0 <= x0 < x1 <= src_w and 0 <= y0 < y1 <= src_h):
        return [f"crop_box {crop_box} is not inside the {src_w}x{src_h} source"]
    if cw % cols or ch % rows:
        problems.append(f"crop {cw}x{ch} is not divisible by the {rows}x{cols} grid")
    if src_w - cw >= cols or src_h - ch >= rows:
        problems.append(f"crop {cw}x{ch} drops more pixels than needed from {src_w}x{src_h}")
    if abs(x0 - (src_w - x1)) > 1 or abs(y0 - (src_h - y1)) > 1:
        problems.append(f"crop_box {crop_box} is not centred in {src_w}x{src_h}")
    pw, ph = cw // cols, ch // rows
    expected = [[x0 + j * pw, y0 + i * ph, x0 + (j + 1) * pw, y0 + (i + 1) * ph] for i in range(rows) for j in range(cols)]
    if [list(b) for b in cell_boxes] != expected:
        problems.append("cell_boxes do not tile crop_box in reading order")
    return problems
