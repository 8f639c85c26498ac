"""Shuffled patch reordering (paper task 1, RGB).

The image is centre-cropped to a size divisible by the grid (the crop is recorded), cut into R x C patches,
shuffled by a random NON-identity permutation, reassembled with a thin border and the display label
0..K-1 (reading order of the display) at each patch centre. In the ``_mask`` variants one patch is painted pure
white first, so the order cannot be solved by matching edges alone.

Answer: for each ORIGINAL position k in reading order, the label of the patch that belongs there, joined by
'-' (``0-2-3-1``): putting displayed patch ``answer[k]`` at position ``k`` restores the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..core import Sample, Source
from ..errors import Reject
from ..registry import Task, TaskConfig, check, register_task
from . import grid as G

# Variant weights proportional to the released Spatial-SSRL-81k counts: 2x2 4,000; 2x2 with a white patch 4,028;
# horizontal strips 4,991 (split evenly 1x3 / 1x4); vertical strips 3,009 (split evenly 3x1 / 4x1).
PAPER_VARIANT_WEIGHTS: dict[str, float] = {
    "2x2": 4000.0,
    "2x2_mask": 4028.0,
    "1x3": 2495.5,
    "1x4": 2495.5,
    "3x1": 1504.5,
    "4x1": 1504.5,
}

MASK_COLOR = (255, 255, 255)


@dataclass
class ShuffleConfig(TaskConfig):
    """``variants``: weight per variant name ``RxC`` or ``RxC_mask`` (sides 1..4, at least 2 cells).
    None means the paper's mix (PAPER_VARIANT_WEIGHTS); a given dict REPLACES it (it is not merged into it)."""

    variants: Optional[dict[str, float]] = None
    min_patch_side: int = 32  # px; smaller patches -> Reject("shuffle/too_small")
    min_patch_std: float = 6.0  # per-channel std (0..255) of a patch thumbnail; below -> "shuffle/uniform_patch"
    min_pair_diff: float = 0.25  # pair mean |diff| / whole-crop std; below -> "shuffle/near_duplicate_patches"
    label_fraction: float = 0.22  # label font size / patch shorter side

    def weights(self) -> dict[str, float]:
        return dict(PAPER_VARIANT_WEIGHTS if self.variants is None else self.variants)

    def validate(self) -> None:
        if self.variants is not None:
            check(len(self.variants) > 0, "task.shuffle.variants", "needs at least one variant (or null for the paper's mix)")
            for name, w in self.variants.items():
                key = f"task.shuffle.variants.{name}"
                parsed = G.parse_grid_name(str(name))
                check(parsed is not None, key, "variant names are 'RxC' or 'RxC_mask', e.g. '2x2', '1x4', '2x2_mask'")
                problem = G.grid_problem(parsed[0], parsed[1])  # type: ignore[index]
                check(problem is None, key, str(problem))
                check(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0, key, f"weight must be a finite number >= 0, got {w!r}")
            check(sum(self.variants.values()) > 0, "task.shuffle.variants", "at least one variant needs a positive weight")
        check(8 <= self.min_patch_side <= 4096, "task.shuffle.min_patch_side", f"must be in 8..4096 px, got {self.min_patch_side}")
        check(math.isfinite(self.min_patch_std) and 0 <= self.min_patch_std < 128, "task.shuffle.min_patch_std",
              f"must be in [0, 128), got {self.min_patch_std}")
        check(math.isfinite(self.min_pair_diff) and 0 <= self.min_pair_diff <= 2, "task.shuffle.min_pair_diff",
              f"must be in [0, 2], got {self.min_pair_diff}")
        check(math.isfinite(self.label_fraction) and 0.05 <= self.label_fraction <= 0.5, "task.shuffle.label_fraction",
              f"must be in [0.05, 0.5], got {self.label_fraction}")


def random_non_identity_permutation(k: int, rng: np.random.Generator) -> list[int]:
    """A permutation of range(k) drawn uniformly from the k! - 1 NON-identity permutations.

    Draws a rank in [1, k!) and decodes it as a Lehmer code (rank 0 is the identity), so there is no rejection
    loop and the distribution is exactly uniform (16! < 2**63, so int64 suffices up to 4x4).
    """
    rank = int(rng.integers(1, math.factorial(k)))
    pool = list(range(k))
    perm = []
    for i in range(k - 1, -1, -1):
        q, rank = divmod(rank, math.factorial(i))
        perm.append(pool.pop(q))
    return perm


def _layout_phrase(rows: int, cols: int) -> str:
    if rows == 1:
        return f"{cols} strips side by side (1 row x {cols} columns)"
    if cols == 1:
        return f"{rows} strips stacked from top to bottom ({rows} rows x 1 column)"
    return f"a {rows}x{cols} grid ({rows} rows x {cols} columns) of {rows * cols} pieces"


def build_question(rows: int, cols: int, masked: bool) -> str:
    k = rows * cols
    fmt = "-".join(G.position_names(rows, cols))
    example = "-".join(str(d) for d in reversed(range(k)))
    legend = " (RiCj = row i, column j, counted from 1)" if fmt.startswith("R1C1") else ""
    mask = ("One piece has been painted white so its content is hidden; it still carries a label and still "
            "belongs to exactly one position. ") if masked else ""
    return (
        f"<image>\nThis image was cut into {_layout_phrase(rows, cols)}, and the pieces were shuffled. "
        f"Each piece shows its label (0 to {k - 1}) at its centre. {mask}"
        f"Restore the original image: for each original position, {G.reading_order_phrase(rows, cols)}, give the "
        f"label of the piece that belongs there. Answer with the labels in the order '{fmt}'{legend}, separated by '-' "
        f"(for example {example})."
    )


@register_task
class ShuffleTask(Task):
    name = "shuffle"
    config_cls = ShuffleConfig
    needs_depth = False
    description = "Reorder shuffled, labelled image patches (2x2, 2x2 with a white patch, 1xN and Nx1 strips)."

    # More and smaller pieces, then a white piece whose content is gone, and pieces allowed to look more alike
    # (min_pair_diff). Measured per sample by ``difficulty``: cells up, masked up, min_pair_ratio down.
    levels = {
        1: {"variants": {"2x2": 1.0}, "min_pair_diff": 0.4},
        2: {"variants": {"3x3": 1.0, "3x3_mask": 1.0}, "min_pair_diff": 0.25},
        3: {"variants": {"4x4_mask": 1.0}, "min_pair_diff": 0.25},
    }

    config: ShuffleConfig

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """``cells``: pieces to place; ``masked``: 1 when one piece is white (its place is only known by
        elimination); ``min_pair_ratio``: how different the two most alike pieces are (mean |difference| over the
        crop's std; lower = easier to confuse)."""
        rows, cols = metadata["grid"]
        return {"cells": int(rows) * int(cols), "masked": int(bool(metadata.get("masked"))),
                "min_pair_ratio": float(metadata["min_pair_ratio"])}

    def variants(self) -> list[str]:
        return [n for n, w in self.config.weights().items() if w > 0]

    @property
    def num_slots(self) -> int:
        return 1

    def _draw_variant(self, rng: np.random.Generator) -> str:
        weights = self.config.weights()
        names = sorted(n for n, w in weights.items() if w > 0)  # sorted: independent of dict order
        p = np.array([weights[n] for n in names], np.float64)
        return names[int(rng.choice(len(names), p=p / p.sum()))]

    def generate(self, source: Source, rng: np.random.Generator, slot: int = 0) -> Sample:
        if slot not in range(self.num_slots):
            raise ValueError(f"shuffle: slot {slot} out of range({self.num_slots})")
        cfg = self.config
        variant = self._draw_variant(rng)
        rows, cols, masked = G.parse_grid_name(variant)  # type: ignore[misc]
        k = rows * cols
        grid = G.make_grid(source.height, source.width, rows, cols)
        if min(grid.patch_h, grid.patch_w) < cfg.min_patch_side:
            raise Reject("shuffle/too_small", f"{variant} patches of {grid.patch_w}x{grid.patch_h} px are under "
                                              f"min_patch_side={cfg.min_patch_side}")
        masked_pos = int(rng.integers(k)) if masked else None
        perm = random_non_identity_permutation(k, rng)  # display position d shows original patch perm[d]

        view = source.pil_view()
        stats = self._check_ambiguity(view, grid, masked_pos)

        masked_display = perm.index(masked_pos) if masked_pos is not None else None
        image = Image.new("RGB", grid.out_size)
        for d, original in enumerate(perm):  # display position d shows original cell perm[d]
            x0, y0, x1, y1 = grid.local_box(d)
            if d == masked_display:
                image.paste(MASK_COLOR, (x0, y0, x1, y1))
            else:
                image.paste(view.crop(tuple(grid.cell_box(original))), (x0, y0))
        overlay = G.draw_overlay(image, grid, [str(d) for d in range(k)], cfg.label_fraction)

        answer_labels = [perm.index(pos) for pos in range(k)]
        metadata = {
            "grid": [rows, cols],
            "variant": variant,
            "masked": bool(masked),
            "source_size": [source.width, source.height],
            "crop_box": list(grid.crop_box),
            "output_size": list(grid.out_size),
            "patch_size": [grid.patch_w, grid.patch_h],
            "cell_boxes": grid.cell_boxes(),
            "display_boxes": grid.local_boxes(),
            "permutation": perm,
            "answer_labels": answer_labels,
            "position_names": G.position_names(rows, cols),
            "masked_position": masked_pos,
            "masked_display": masked_display,
            **stats,
            **overlay,
        }
        answer = "-".join(str(d) for d in answer_labels)
        return Sample(self.name, variant, build_question(rows, cols, masked), [image], answer, metadata)

    def _check_ambiguity(self, view: Image.Image, grid: G.Grid, masked_pos: int | None) -> dict:
        """Reject grids where several orders would be correct: a near-uniform patch (its place is a guess) or
        two near-identical patches (swapping them gives the same image). The white patch is excluded."""
        cfg = self.config
        thumbs = G.thumbnails([(view, tuple(grid.cell_box(k))) for k in range(grid.count)])
        scale = max(G.content_scale(thumbs), 1e-6)
        keep = [i for i in range(grid.count) if i != masked_pos]
        std = G.patch_std(thumbs)
        worst = min(keep, key=lambda i: std[i])
        if std[worst] < cfg.min_patch_std:
            raise Reject("shuffle/uniform_patch", f"patch {worst} std {std[worst]:.1f} < min_patch_std={cfg.min_patch_std}")
        mad = G.pairwise_mad(thumbs[keep]) / scale
        iu = np.triu_indices(len(keep), 1)
        worst_pair = int(np.argmin(mad[iu]))
        ratio = float(mad[iu][worst_pair])
        if ratio < cfg.min_pair_diff:
            a, b = keep[iu[0][worst_pair]], keep[iu[1][worst_pair]]
            raise Reject("shuffle/near_duplicate_patches", f"patches {a} and {b} differ by {ratio:.2f} x crop std "
                                                           f"< min_pair_diff={cfg.min_pair_diff}")
        return {"min_patch_std": round(float(std[worst]), 3), "min_pair_ratio": round(ratio, 4), "content_std": round(scale, 3)}

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Match every displayed patch to the source cell it came from by pixel distance (border, label and
        white patch excluded), then check that the order this induces is the answer."""
        if source is None:
            return ["source unavailable: shuffle is verified by matching output patches to the source cells"]
        if len(images) != 1:
            return [f"expected 1 image, got {len(images)}"]
        rows, cols = metadata["grid"]
        k = rows * cols
        problems = G.check_crop(metadata["crop_box"], metadata["cell_boxes"], rows, cols, source.width, source.height)
        try:
            labels = [int(t) for t in answer.split("-")]
        except ValueError:
            return problems + [f"answer {answer!r} is not '-'-separated integers"]
        if sorted(labels) != list(range(k)):
            return problems + [f"answer {answer!r} is not a permutation of 0..{k - 1}"]
        if labels == list(range(k)):
            problems.append("answer is the identity permutation (nothing was shuffled)")

        out = np.asarray(images[0] if images[0].mode == "RGB" else images[0].convert("RGB"))
        boxes = metadata["display_boxes"]
        pw, ph = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
        if out.shape[:2] != (ph * rows, pw * cols):
            return problems + [f"image is {out.shape[1]}x{out.shape[0]}, expected {pw * cols}x{ph * rows}"]
        mask = G.comparison_mask(ph, pw, boxes, metadata["label_boxes"], metadata["border_px"])
        flat = G.comparison_pixels(mask)
        shown = np.stack([G.masked(out[y0:y1, x0:x1], mask, flat) for x0, y0, x1, y1 in boxes])
        cells = np.stack([G.masked(source.rgb[y0:y1, x0:x1], mask, flat) for x0, y0, x1, y1 in metadata["cell_boxes"]])

        # White patches: displays whose visible content is (near) pure white.
        white = [d for d in range(k) if shown[d].mean() >= 248 and shown[d].astype(np.float32).std() < 6]
        if metadata.get("masked"):
            if len(white) != 1:
                problems.append(f"expected exactly one white (masked) patch, found {len(white)}")
        elif white:
            problems.append(f"unexpected white patch(es) at display {white}")
        dist = G.masked_rms(shown, cells)  # (display, original)
        origin_of: dict[int, int] = {}
        for d in range(k):
            if d in white and metadata.get("masked"):
                continue
            order = np.argsort(dist[d])
            best, second = dist[d, order[0]], dist[d, order[1]]
            if not best < 0.75 * second:  # a clear winner, not a coin toss between two similar cells
                problems.append(f"display patch {d} matches source cells {int(order[0])} and {int(order[1])} "
                                f"almost equally ({best:.1f} vs {second:.1f} RMS)")
            origin_of[d] = int(order[0])
        if len(set(origin_of.values())) != len(origin_of):
            return problems + ["two displayed patches match the same source cell"]
        missing = sorted(set(range(k)) - set(origin_of.values()))
        for d in range(k):  # the white patch belongs to the one position no visible patch came from
            if d not in origin_of and len(missing) == 1:
                origin_of[d] = missing[0]
        if len(origin_of) == k:
            induced = [d for pos in range(k) for d in range(k) if origin_of[d] == pos]
            if induced != labels:
                problems.append(f"patches matched to the source give {'-'.join(map(str, induced))}, answer says {answer}")
            mpos = metadata.get("masked_position")
            if metadata.get("masked") and len(white) == 1 and origin_of[white[0]] != mpos:
                problems.append(f"white patch sits where original position {origin_of[white[0]]} belongs, "
                                f"metadata says {mpos}")
        return problems
