"""Cropped patch inpainting (paper task 3): which of four candidates fills the blacked-out square?

Image 1 is the source with a square hole (side ``s = min(H, W) * size_frac``, top-left uniform), filled black and
outlined in red and white *inside* the hole, so the hole is unmistakable on dark and bright images alike and no
context pixel is hidden. Images 2-5 are options A-D: the true crop and three distinct distractors drawn from five
methods (weights ``distractor_weights``, 0.2 each in the paper):

- ``zoom_in``: the centre ``[s/4, 3s/4]`` of the crop;
- ``context_0.25`` / ``context_0.5``: the crop with a margin of 0.25*s / 0.5*s on every side;
- ``rotate_cw`` / ``rotate_ccw``: the true crop turned 90 degrees clockwise / counter-clockwise.

Shortcut cues of the reference scripts are removed:

- every option (the true one included) is a square source window resampled by the SAME filter to the SAME side,
  then blurred by the same light Gaussian. The side is the zoom window's side, so nothing is ever upscaled and no
  option is blurrier or sharper because of its scale;
- context windows that would cross the border are shifted inside the image, kept square and full size, never
  clipped and stretched; a window larger than the image makes that method unavailable for the sample;
- a distractor that looks like the true crop (rotation-symmetric content, self-similar texture) is dropped and
  another method is drawn; with fewer than three usable distractors the sample is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..core import Sample, Source
from ..errors import Reject
from ..registry import Task, TaskConfig, check, register_task
from ..render import RED, WHITE

LETTERS = ("A", "B", "C", "D")
TRUE_METHOD = "true_crop"
METHODS = ("zoom_in", "context_0.25", "context_0.5", "rotate_cw", "rotate_ccw")
CONTEXT_MARGINS = {"context_0.25": 0.25, "context_0.5": 0.5}
ROTATIONS = {"rotate_cw": 90, "rotate_ccw": -90}  # degrees clockwise, as recorded in the metadata
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
    """Knobs of the crop task; defaults follow the paper where it says something."""

    size_frac: float = 0.5  # hole side as a fraction of min(H, W)
    distractor_weights: dict[str, float] = field(default_factory=_default_weights)
    max_option_side: int = 512  # cap on the option side (px); the side is otherwise the zoom window's side
    min_option_side: int = 32  # smaller options (tiny sources) are rejected
    option_blur: float = 0.6  # Gaussian radius (option px) applied to every option: hides native-resolution softness
    min_crop_std: float = 6.0  # grey-level std below which the crop counts as uniform
    min_distractor_diff: float = 8.0  # mean abs difference (0-255) a distractor needs from the true option

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
        check(0 <= self.min_crop_std < 128, f"{key}.min_crop_std", f"must be in [0, 128), got {self.min_crop_std}")
        check(
            0 <= self.min_distractor_diff < 128,
            f"{key}.min_distractor_diff",
            f"must be in [0, 128), got {self.min_distractor_diff}",
        )


Box = tuple[int, int, int, int]


@dataclass
class _Option:
    method: str
    window: Box  # square source window (for rotations: the true crop's window)
    rotation: int  # degrees clockwise
    shifted: bool  # context window moved inside the image
    image: Image.Image


def _hole_widths(side: int) -> int:
    """Width of each of the two outline bands (red outside, white inside), scaled to the hole."""
    return max(1, int(round(side / 80)))


def _zoom_window(box: Box) -> Box:
    """Centre [s/4, 3s/4] of the crop, symmetric in integer pixels."""
    x0, y0, x1, y1 = box
    q = (x1 - x0) // 4
    return (x0 + q, y0 + q, x1 - q, y1 - q)


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

    def _render(self, src: Image.Image, window: Box, side: int) -> Image.Image:
        """The one resampling path every option takes: window -> side x side (Lanczos), then a common blur."""
        out = src.resize((side, side), Image.LANCZOS, box=window)
        if self.config.option_blur > 0:
            out = out.filter(ImageFilter.GaussianBlur(self.config.option_blur))
        return out

    def _method_order(self, rng: np.random.Generator) -> list[str]:
        """All methods with positive weight, in a weighted random order (sequential sampling without replacement)."""
        names = [m for m in METHODS if self.config.distractor_weights.get(m, 0) > 0]
        w = np.array([self.config.distractor_weights[m] for m in names], np.float64)
        order = rng.choice(len(names), size=len(names), replace=False, p=w / w.sum())
        return [names[int(i)] for i in order]

    def _distractor(self, method: str, src: Image.Image, box: Box, true: _Option, side: int) -> _Option | str:
        """Build one distractor, or return why the method is unusable for this sample."""
        if method in ROTATIONS:
            # Image.ROTATE_270 turns counter-clockwise by 270 = clockwise by 90.
            op = Image.Transpose.ROTATE_270 if ROTATIONS[method] == 90 else Image.Transpose.ROTATE_90
            opt = _Option(method, box, ROTATIONS[method], False, true.image.transpose(op))
        elif method == "zoom_in":
            opt = _Option(method, _zoom_window(box), 0, False, self._render(src, _zoom_window(box), side))
        else:
            fit = _context_window(box, CONTEXT_MARGINS[method], src.width, src.height)
            if fit is None:
                return "window_larger_than_image"
            window, shifted = fit
            opt = _Option(method, window, 0, shifted, self._render(src, window, side))
        diff = float(np.abs(np.asarray(opt.image, np.float32) - np.asarray(true.image, np.float32)).mean())
        if diff < self.config.min_distractor_diff:
            return f"too_similar_to_true_crop (mean abs diff {diff:.1f})"
        return opt

    def _hole_image(self, src: Image.Image, box: Box) -> tuple[Image.Image, dict[str, Any]]:
        """The source with the crop filled black and a two-tone outline drawn just inside the hole's edge."""
        img = src.copy()
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
        h, w = source.height, source.width
        s = int(min(h, w) * cfg.size_frac)  # floor: a 2s context window always fits when size_frac = 0.5
        zoom_side = s - 2 * (s // 4)
        side = min(zoom_side, cfg.max_option_side)
        if side < cfg.min_option_side:
            raise Reject("crop/source_too_small", f"{w}x{h}: option side {side} < {cfg.min_option_side}")

        x0 = int(rng.integers(0, w - s + 1))
        y0 = int(rng.integers(0, h - s + 1))
        box: Box = (x0, y0, x0 + s, y0 + s)
        crop = source.rgb[y0 : y0 + s, x0 : x0 + s].astype(np.float32)
        grey_std = float((crop @ np.array([0.299, 0.587, 0.114], np.float32)).std())
        if grey_std < cfg.min_crop_std:
            raise Reject("crop/uniform_crop", f"grey std {grey_std:.1f} < {cfg.min_crop_std}")

        src = source.image()
        true = _Option(TRUE_METHOD, box, 0, False, self._render(src, box, side))
        distractors: list[_Option] = []
        unavailable: list[list[str]] = []
        for method in self._method_order(rng):
            if len(distractors) == 3:
                break
            got = self._distractor(method, src, box, true, side)
            if isinstance(got, str):
                unavailable.append([method, got])
            else:
                distractors.append(got)
        if len(distractors) < 3:
            raise Reject("crop/too_few_distractors", "; ".join(f"{m}: {why}" for m, why in unavailable))

        order = [distractors[int(i)] for i in rng.permutation(3)]
        order.insert(slot, true)
        hole_img, hole = self._hole_image(src, box)
        answer = LETTERS[slot]
        metadata = {
            "crop_box": list(box),
            "crop_side": s,
            "source_size": [w, h],
            "hole": hole,
            "option_side": side,
            "option_resample": f"lanczos box resize, then gaussian blur radius {cfg.option_blur}",
            "rotation_convention": "degrees clockwise",
            "options": [
                {
                    "letter": letter,
                    "method": o.method,
                    "window": list(o.window),
                    "rotation": o.rotation,
                    "shifted": o.shifted,
                }
                for letter, o in zip(LETTERS, order)
            ],
            "answer_index": slot,
            "unavailable_methods": unavailable,
        }
        return Sample(
            task=self.name,
            variant=self.name,
            question=QUESTION,
            images=[hole_img] + [o.image for o in order],
            answer=answer,
            metadata=metadata,
            options={letter: o.method for letter, o in zip(LETTERS, order)},
        )

    # ------------------------------------------------------------------ verification

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Re-derive the answer by matching every option against plainly resampled source windows.

        Independent of ``generate``: bilinear resampling (no blur) and ``np.rot90`` instead of Lanczos + blur and
        PIL transposes; distances are relative (best match), so JPEG q95 storage does not matter.
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
        arrays = []
        for letter, img in zip(LETTERS, images[1:]):
            if img.size != (side, side):
                problems.append(f"option {letter} is {img.size}, expected {side}x{side}")
                return problems
            arrays.append(np.asarray(img.convert("RGB"), np.float32))

        ref_true = _reference(source, box, 0, side)
        d_true = [float(np.abs(a - ref_true).mean()) for a in arrays]
        best = int(np.argmin(d_true))
        if LETTERS[best] != answer:
            problems.append(f"option {LETTERS[best]} matches the crop best (distances {np.round(d_true, 1).tolist()}), answer is {answer}")

        for i, o in enumerate(opts):
            if o.get("method") == TRUE_METHOD:
                if list(o.get("window", [])) != list(box) or o.get("rotation") != 0:
                    problems.append(f"option {o['letter']}: true crop must use crop_box without rotation")
                continue
            problems += _check_distractor_geometry(o, box, w, h)
            window = tuple(int(v) for v in o.get("window", box))
            ref = _reference(source, window, int(o.get("rotation", 0)), side)
            d_own = float(np.abs(arrays[i] - ref).mean())
            if not d_own < d_true[i]:
                problems.append(
                    f"option {o['letter']} ({o.get('method')}): matches its construction no better than the true crop "
                    f"({d_own:.1f} vs {d_true[i]:.1f})"
                )
        return problems


def _reference(source: Source, window: tuple[int, ...], rotation: int, side: int) -> np.ndarray:
    """A source window resized by plain bilinear resampling, rotated by ``rotation`` degrees clockwise."""
    x0, y0, x1, y1 = window
    patch = Image.fromarray(np.ascontiguousarray(source.rgb[y0:y1, x0:x1]), "RGB").resize((side, side), Image.BILINEAR)
    return np.rot90(np.asarray(patch, np.float32), k=-(rotation // 90) % 4).copy()


def _check_distractor_geometry(o: dict, box: tuple[int, ...], width: int, height: int) -> list[str]:
    """Windows must be square, inside the image, and consistent with the method (no clipped or stretched context)."""
    method, letter = o.get("method"), o.get("letter")
    try:
        wx0, wy0, wx1, wy1 = (int(v) for v in o["window"])
    except (KeyError, TypeError, ValueError):
        return [f"option {letter}: window missing"]
    problems = []
    if wx1 - wx0 != wy1 - wy0 or not (0 <= wx0 < wx1 <= width and 0 <= wy0 < wy1 <= height):
        problems.append(f"option {letter} ({method}): window {[wx0, wy0, wx1, wy1]} is not a square inside the image")
    x0, y0, x1, y1 = box
    s = x1 - x0
    if method in ROTATIONS:
        if [wx0, wy0, wx1, wy1] != list(box) or o.get("rotation") != ROTATIONS[method]:
            problems.append(f"option {letter} ({method}): must be the crop window rotated {ROTATIONS[method]} deg cw")
    elif method == "zoom_in":
        if not (x0 < wx0 and y0 < wy0 and wx1 < x1 and wy1 < y1) or abs((wx1 - wx0) - s / 2) > 2:
            problems.append(f"option {letter} (zoom_in): window is not the centre half of the crop")
    elif method in CONTEXT_MARGINS:
        expect = s + 2 * int(CONTEXT_MARGINS[method] * s)
        if wx1 - wx0 != expect or not (wx0 <= x0 and wy0 <= y0 and x1 <= wx1 and y1 <= wy1):
            problems.append(f"option {letter} ({method}): window is not a side-{expect} square containing the crop")
    else:
        problems.append(f"option {letter}: unknown method {method!r}")
    return problems


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
