"""Flipped patch recognition (paper task 2, RGB).

The image is centre-cropped to a size divisible by the grid (recorded), cut into R x C patches (2x2 in the
released data) labelled 0..K-1 in reading order, nothing shuffled; one patch is flipped vertically (upside
down, direction 0) or horizontally (mirror, direction 1). Borders and labels are drawn AFTER flipping, so the
label text is never mirrored. Answer 'Label-Direction', e.g. ``3-0``.

``slot`` fixes the answer: patch = slot // 2, direction = slot % 2 (num_slots = 2K), so cycling slots balances
both the flipped position and the direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..core import Sample, Source
from ..errors import Reject
from ..registry import Task, TaskConfig, check, register_task
from . import grid as G

DIRECTION_NAMES = ["vertical (upside down)", "horizontal (mirror)"]
# direction 0 = vertical flip (upside down, rows reversed), 1 = horizontal flip (mirror, columns reversed)
PIL_FLIPS = (Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.FLIP_LEFT_RIGHT)


@dataclass
class FlipConfig(TaskConfig):
    grid: list[int] = field(default_factory=lambda: [2, 2])  # [rows, cols], each 1..4, at least 2 cells
    min_patch_side: int = 32  # px; smaller patches -> Reject("flip/too_small")
    # The flip must be visible: mean |thumb - flipped thumb| (0..255) at least min_flip_diff AND at least
    # min_flip_ratio x the patch's own std; otherwise symmetric or flat content -> Reject("flip/invisible_flip").
    # The same test between the vertical and the horizontal flip guards the direction ("flip/ambiguous_direction").
    min_flip_diff: float = 8.0
    min_flip_ratio: float = 0.3
    # Upper bound on the same score (None: none): flips that change the patch by more -> Reject("flip/too_visible").
    # The hard levels use it to keep only subtle flips.
    max_flip_diff: Optional[float] = None
    label_fraction: float = 0.22  # label font size / patch shorter side

    def validate(self) -> None:
        check(len(self.grid) == 2, "task.flip.grid", f"must be [rows, cols], got {list(self.grid)}")
        problem = G.grid_problem(int(self.grid[0]), int(self.grid[1]))
        check(problem is None, "task.flip.grid", str(problem))
        check(8 <= self.min_patch_side <= 4096, "task.flip.min_patch_side", f"must be in 8..4096 px, got {self.min_patch_side}")
        check(math.isfinite(self.min_flip_diff) and 0 <= self.min_flip_diff < 128, "task.flip.min_flip_diff",
              f"must be in [0, 128), got {self.min_flip_diff}")
        check(math.isfinite(self.min_flip_ratio) and 0 <= self.min_flip_ratio <= 2, "task.flip.min_flip_ratio",
              f"must be in [0, 2], got {self.min_flip_ratio}")
        if self.max_flip_diff is not None:
            check(math.isfinite(self.max_flip_diff) and self.min_flip_diff < self.max_flip_diff <= 255, "task.flip.max_flip_diff",
                  f"must be null or in (min_flip_diff = {self.min_flip_diff}, 255], got {self.max_flip_diff}")
        check(math.isfinite(self.label_fraction) and 0.05 <= self.label_fraction <= 0.5, "task.flip.label_fraction",
              f"must be in [0.05, 0.5], got {self.label_fraction}")


def build_question(rows: int, cols: int) -> str:
    k = rows * cols
    if rows == 1:
        layout = f"{cols} strips side by side"
    elif cols == 1:
        layout = f"{rows} strips stacked from top to bottom"
    else:
        layout = f"a {rows}x{cols} grid of {k} patches"
    return (
        f"<image>\nThis image is divided into {layout}, labelled 0 to {k - 1} {G.reading_order_phrase(rows, cols)}; "
        "the label is drawn at the centre of each piece. Exactly one piece has been flipped, either vertically "
        "(upside down) or horizontally (mirrored left to right). Which piece was flipped, and how? "
        "Answer in the format 'Label-Direction', where Direction is 0 for a vertical flip (upside down) and 1 for "
        "a horizontal flip (mirror); for example 3-0."
    )


@register_task
class FlipTask(Task):
    name = "flip"
    config_cls = FlipConfig
    needs_depth = False
    description = "Find the one patch of a labelled grid that was flipped, and whether vertically or horizontally."

    # Smaller patches, and a band of flip visibility (flip_score: mean grey-level change the flip makes to the
    # patch's thumbnail) that moves down: level 1 clearly visible flips of a quarter of the picture, level 3
    # subtle flips of a sixteenth. Measured per sample by ``difficulty``: cells up, flip_score down.
    levels = {
        1: {"grid": [2, 2], "min_flip_diff": 24.0, "max_flip_diff": None},
        2: {"grid": [3, 3], "min_flip_diff": 12.0, "max_flip_diff": 36.0},
        3: {"grid": [4, 4], "min_flip_diff": 8.0, "max_flip_diff": 26.0},
    }

    config: FlipConfig

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """``cells``: patches to search; ``flip_score``: how much the flip changes the patch (mean grey levels,
        lower = subtler); ``direction_score``: how much the two flips differ from each other (lower = the direction
        is harder to tell)."""
        rows, cols = metadata["grid"]
        return {"cells": int(rows) * int(cols), "flip_score": float(metadata["flip_score"]),
                "direction_score": float(metadata["direction_score"])}

    @property
    def rows_cols(self) -> tuple[int, int]:
        return int(self.config.grid[0]), int(self.config.grid[1])

    def variants(self) -> list[str]:
        r, c = self.rows_cols
        return [f"{r}x{c}"]

    @property
    def num_slots(self) -> int:
        r, c = self.rows_cols
        return r * c * 2

    def generate(self, source: Source, rng: np.random.Generator, slot: int = 0) -> Sample:
        # Everything random in this task is fixed by the slot (which patch, which direction); rng is unused.
        if slot not in range(self.num_slots):
            raise ValueError(f"flip: slot {slot} out of range({self.num_slots})")
        cfg = self.config
        rows, cols = self.rows_cols
        k = rows * cols
        index, direction = divmod(slot, 2)
        grid = G.make_grid(source.height, source.width, rows, cols)
        if min(grid.patch_h, grid.patch_w) < cfg.min_patch_side:
            raise Reject("flip/too_small", f"{rows}x{cols} patches of {grid.patch_w}x{grid.patch_h} px are under "
                                           f"min_patch_side={cfg.min_patch_side}")
        view = source.pil_view()
        cell = view.crop(tuple(grid.cell_box(index)))
        stats = self._check_visible(cell, direction)

        image = view.crop(grid.crop_box)
        x0, y0, _, _ = grid.local_box(index)
        image.paste(cell.transpose(PIL_FLIPS[direction]), (x0, y0))
        overlay = G.draw_overlay(image, grid, [str(i) for i in range(k)], cfg.label_fraction)  # after the flip
        metadata = {
            "grid": [rows, cols],
            "source_size": [source.width, source.height],
            "crop_box": list(grid.crop_box),
            "output_size": list(grid.out_size),
            "patch_size": [grid.patch_w, grid.patch_h],
            "cell_boxes": grid.cell_boxes(),
            "display_boxes": grid.local_boxes(),
            "flipped_index": index,
            "direction": direction,
            "direction_names": list(DIRECTION_NAMES),
            **stats,
            **overlay,
        }
        variant = f"{rows}x{cols}"
        return Sample(self.name, variant, build_question(rows, cols), [image], f"{index}-{direction}", metadata)

    def _check_visible(self, cell: Image.Image, direction: int) -> dict:
        """Reject flips nobody could see (symmetric or flat content) or whose direction is undecidable
        (content symmetric under 180 degree rotation makes both flips give the same image)."""
        cfg = self.config
        # Thumbnails of the flipped cells themselves (not flips of the thumbnail: resampling is not exactly
        # mirror-symmetric, which would make perfectly symmetric content look flippable).
        whole = (0, 0, *cell.size)
        versions = [cell, cell.transpose(PIL_FLIPS[direction]), cell.transpose(PIL_FLIPS[1 - direction])]
        thumb, flipped, other_flip = G.thumbnails([(v, whole) for v in versions])
        std = float(G.patch_std(thumb[None])[0])
        score = float(np.abs(thumb - flipped).mean())
        need = max(cfg.min_flip_diff, cfg.min_flip_ratio * std)
        if score < need:
            raise Reject("flip/invisible_flip", f"{DIRECTION_NAMES[direction]} flip changes the patch by {score:.1f} "
                                                f"< {need:.1f} (patch std {std:.1f})")
        other = float(np.abs(flipped - other_flip).mean())
        if other < need:
            raise Reject("flip/ambiguous_direction", f"vertical and horizontal flips differ by {other:.1f} < {need:.1f}")
        if cfg.max_flip_diff is not None and score > cfg.max_flip_diff:
            raise Reject("flip/too_visible", f"{DIRECTION_NAMES[direction]} flip changes the patch by {score:.1f} "
                                             f"> max_flip_diff={cfg.max_flip_diff}")
        return {"flip_score": round(score, 3), "direction_score": round(other, 3), "patch_std": round(std, 3)}

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Compare every output patch with its source cell and with both flips of it (border and labels
        excluded): exactly one patch must differ from its cell, and one flip must explain it."""
        if source is None:
            return ["source unavailable: flip is verified by comparing output patches with the source cells"]
        if len(images) != 1:
            return [f"expected 1 image, got {len(images)}"]
        rows, cols = metadata["grid"]
        k = rows * cols
        problems = G.check_crop(metadata["crop_box"], metadata["cell_boxes"], rows, cols, source.width, source.height)
        parts = answer.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) >= k or parts[1] not in ("0", "1"):
            return problems + [f"answer {answer!r} is not 'Label-Direction' with label < {k} and direction 0/1"]
        label, direction = int(parts[0]), int(parts[1])

        out = np.asarray(images[0] if images[0].mode == "RGB" else images[0].convert("RGB"))
        boxes = metadata["display_boxes"]
        pw, ph = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
        if out.shape[:2] != (ph * rows, pw * cols):
            return problems + [f"image is {out.shape[1]}x{out.shape[0]}, expected {pw * cols}x{ph * rows}"]
        mask = G.comparison_mask(ph, pw, boxes, metadata["label_boxes"], metadata["border_px"])
        shown = [out[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
        cells = [source.rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in metadata["cell_boxes"]]

        flat = G.comparison_pixels(mask)

        def rms(a: np.ndarray, b: np.ndarray) -> float:
            diff = G.masked(a, mask, flat).astype(np.float32) - G.masked(b, mask, flat)
            return float(np.sqrt(np.mean(diff * diff)))

        same = np.array([rms(s, c) for s, c in zip(shown, cells)])
        changed = int(np.argmax(same))
        others = np.delete(same, changed)
        if others.size and not others.max() < 0.5 * same[changed]:
            problems.append(f"no single changed patch: distances to the source cells are {np.round(same, 1).tolist()}")
        # Which flip of the changed cell explains the output (vertical = rows reversed, horizontal = columns).
        flips = [rms(shown[changed], cells[changed][::-1]), rms(shown[changed], cells[changed][:, ::-1])]
        found = int(np.argmin(flips))
        if not flips[found] < 0.5 * min(same[changed], flips[1 - found]):
            problems.append(f"patch {changed} is not explained by one flip (identity {same[changed]:.1f}, "
                            f"vertical {flips[0]:.1f}, horizontal {flips[1]:.1f} RMS)")
        if (changed, found) != (label, direction):
            problems.append(f"output shows patch {changed} flipped in direction {found}, answer says {answer}")
        return problems
