"""Cropped patch inpainting (paper task 3): which of four candidates fills the blacked-out square?

Image 1 is the source with a square hole, filled black and outlined in red and white *inside* the hole, so the hole
is unmistakable on dark and bright images alike and no context pixel is hidden. Images 2-5 are options A-D: the
hole's content and three distractors that show the same place at the wrong scale.

The default construction (``scale_mode: nested``) is shortcut-free by design: the four candidates come out of one
sampling process, and which of them is the answer is decided afterwards, independently of their pixels.

1. Four concentric square windows of sides n1 < n2 < n3 < n4 are drawn around one centre: the log sides are four
   uniform draws in a band of ratio ``scale_span`` around ``size_frac * min(H, W)``, at least ``scale_gap`` apart
   (the paper's zoom-to-context range around the crop is 0.5 s to 2 s), and the centre is uniform among those that
   keep the largest window inside the picture.
2. Every window takes the same path: area-average resampling to the smallest window's side (capped at
   ``max_option_side``; never upscaled). Every window must pass the same checks: it is not uniform
   (``min_option_std``) and it differs from each of the other three (``min_option_diff``).
3. Only then is one of the four, uniformly at random, made the hole: its window is blacked out in image 1, it is
   the true option, and the others become ``zoom_in`` (a smaller window: the hole's centre, magnified) or
   ``context`` (a larger one: the hole with surroundings, shrunk). The answer letter is the builder's balanced
   slot; the three distractors fill the other letters in random order.

Why no candidate can be singled out without the picture: the four option images are a function of the source,
the centre and the four sides, none of which depends on which window becomes the hole; the checks look at all four
alike; and the hole's rank is drawn uniformly and independently of them. So, given the four options, every one of
them is the answer with probability exactly 1/4, whatever statistic, learned or not, a solver computes from them
(their scales, sharpness, colours, byte sizes, how they nest into each other). Which one fills the hole is only
visible against the picture: its content continues the hole's surroundings at the hole's scale. The price is that
the hole's side varies (0.35-0.71 of the short side by default, the paper's 0.5 in the middle of the band), and
that there are no rotated distractors: the true option is never turned, so a turned one gives itself away by its
orientation (sky, gravity, lighting) or by how it turns against the other options.

``scale_mode: paper`` gives the paper's construction for comparison: the hole's side is ``size_frac * min(H, W)``,
its top-left uniform, and three distinct distractors come from the paper's five methods (weights
``distractor_weights``, 0.2 each): ``zoom_in`` (the centre ``[s/4, 3s/4]``), ``context_0.25`` / ``context_0.5``
(the crop with a margin of 0.25 s / 0.5 s; shifted, never clipped, to stay inside the image) and ``rotate_cw`` /
``rotate_ccw`` (the crop turned 90 degrees). The true crop is then the middle of the fields of view and the option
with rotated twins, so ``ssrl audit`` finds it without the picture; the construction is kept for comparison only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..core import Sample, Source
from ..errors import Reject
from ..imaging import GREY_WEIGHTS, grey
from ..registry import Task, TaskConfig, check, register_task
from ..render import RED, WHITE

LETTERS = ("A", "B", "C", "D")
TRUE_METHOD = "true_crop"
ZOOM, CONTEXT = "zoom_in", "context"  # nested mode: a smaller / a larger concentric window than the hole
METHODS = ("zoom_in", "context_0.25", "context_0.5", "rotate_cw", "rotate_ccw")  # the paper's five
CONTEXT_MARGINS = {"context_0.25": 0.25, "context_0.5": 0.5}
ROTATIONS = {"rotate_cw": 90, "rotate_ccw": -90}  # degrees clockwise, as recorded in the metadata
SCALE_MODES = ("nested", "paper")
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
    """Knobs of the crop task; the default construction is the nested one (see the module docstring)."""

    size_frac: float = 0.5  # window sides are centred (log scale) on this fraction of min(H, W); paper: the hole side
    scale_mode: str = "nested"  # "nested": four concentric windows, the hole one of them at random; "paper"
    scale_span: float = 2.0  # nested: the four window sides lie within this ratio...
    scale_gap: float = 1.2  # ...and at least this ratio apart
    distractor_weights: dict[str, float] = field(default_factory=_default_weights)  # paper mode's methods
    max_option_side: int = 512  # cap on the option side (px); the side is otherwise the smallest window's side
    min_option_side: int = 32  # smaller options (tiny sources) are rejected
    min_option_std: float = 6.0  # grey-level std below which an option (every option) counts as uniform
    min_option_diff: float = 0.25  # every two options differ by at least this mean abs difference / their grey std

    def validate(self) -> None:
        key = "task.crop"
        check(self.scale_mode in SCALE_MODES, f"{key}.scale_mode", f"must be one of {list(SCALE_MODES)}, got {self.scale_mode!r}")
        check(0.05 <= self.size_frac <= 0.8, f"{key}.size_frac", f"must be in [0.05, 0.8], got {self.size_frac}")
        check(1.05 <= self.scale_gap <= 2, f"{key}.scale_gap", f"must be in [1.05, 2], got {self.scale_gap}")
        check(
            self.scale_gap**3 < self.scale_span <= 4,
            f"{key}.scale_span",
            f"must be in (scale_gap^3 = {self.scale_gap**3:.3g}, 4] (four sides, three gaps), got {self.scale_span}",
        )
        if self.scale_mode == "nested":
            check(
                self.size_frac * self.scale_span**0.5 <= 1,
                f"{key}.size_frac",
                f"size_frac * sqrt(scale_span) must be <= 1 (the largest window inside the picture), got "
                f"{self.size_frac} * sqrt({self.scale_span})",
            )
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
        check(0 <= self.min_option_std < 128, f"{key}.min_option_std", f"must be in [0, 128), got {self.min_option_std}")
        check(0 <= self.min_option_diff <= 2, f"{key}.min_option_diff", f"must be in [0, 2], got {self.min_option_diff}")


Box = tuple[int, int, int, int]


@dataclass
class _Option:
    method: str
    window: Box  # square source window (rotations: the window that was turned)
    rotation: int  # degrees clockwise
    shifted: bool  # paper mode: a context window moved inside the image
    image: Image.Image  # the option as shown, side x side


def _hole_widths(side: int) -> int:
    """Width of each of the two outline bands (red outside, white inside), scaled to the hole."""
    return max(1, int(round(side / 80)))


def nested_sides(rng: np.random.Generator, centre: float, span: float, gap: float) -> list[int]:
    """Four integer sides, ascending: log sides i.i.d. uniform in a band of ratio ``span`` around ``centre`` given
    gaps of at least ``gap`` (uniform order statistics plus the gaps)."""
    g = np.log(gap)
    u = np.sort(rng.uniform(0.0, np.log(span) - 3 * g, size=4)) + g * np.arange(4) - np.log(span) / 2
    return [int(round(centre * float(np.exp(v)))) for v in u]


def concentric_windows(sides: list[int], width: int, height: int, rng: np.random.Generator) -> list[Box]:
    """Square windows of the given sides around one centre, uniform among those keeping the largest inside."""
    big = max(sides)
    cx = rng.uniform(big / 2, width - big / 2)
    cy = rng.uniform(big / 2, height - big / 2)
    out = []
    for n in sides:
        x0 = min(max(int(np.floor(cx - n / 2 + 0.5)), 0), width - n)
        y0 = min(max(int(np.floor(cy - n / 2 + 0.5)), 0), height - n)
        out.append((x0, y0, x0 + n, y0 + n))
    return out


def _paper_zoom(box: Box) -> Box:
    """The paper's zoom: the centre [s/4, 3s/4] of the crop, symmetric in pixels."""
    x0, y0, x1, _ = box
    q = (x1 - x0) // 4
    return (x0 + q, y0 + q, x1 - q, y0 + (x1 - x0) - q)


def _paper_context(box: Box, frac: float, width: int, height: int) -> tuple[Box, bool] | None:
    """The crop grown by ``frac * s`` per side, shifted (never clipped) to lie inside the image; None if too big."""
    x0, y0, x1, _ = box
    s = x1 - x0
    m = int(frac * s)  # floor: with size_frac 0.5 the 0.5-margin window (<= 2s) still fits
    side = s + 2 * m
    if side > width or side > height:
        return None
    wx0 = min(max(x0 - m, 0), width - side)
    wy0 = min(max(y0 - m, 0), height - side)
    return (wx0, wy0, wx0 + side, wy0 + side), (wx0, wy0) != (x0 - m, y0 - m)


def render_window(src: Image.Image, window: Box, side: int, rotation: int = 0) -> Image.Image:
    """The one resampling path of every option: the window to side x side by area averaging (Pillow's box filter),
    turned ``rotation`` degrees clockwise."""
    img = src.resize((side, side), Image.BOX, box=window)
    if rotation:
        # Image.ROTATE_270 turns counter-clockwise by 270 = clockwise by 90.
        img = img.transpose(Image.Transpose.ROTATE_270 if rotation == 90 else Image.Transpose.ROTATE_90)
    return img


def _thumb(img: Image.Image) -> np.ndarray:
    """Every second pixel of an option, float32: enough for the uniformity and look-alike checks."""
    return np.asarray(img)[::2, ::2].astype(np.float32)


def _grey_stds(thumbs: list[np.ndarray]) -> list[float]:
    return [float(grey(t).std(dtype=np.float64)) for t in thumbs]


def _uniform(stds: list[float], limit: float) -> str | None:
    low = min(stds)
    return f"grey std {low:.1f} < {limit}" if low < limit else None


def _look_alikes(thumbs: list[np.ndarray], stds: list[float], limit: float, pairs: list[tuple[int, int]]) -> str | None:
    """Two options that differ by less than ``limit`` of their contrast (mean abs difference / mean grey std: the
    same on a dark and on a bright picture) could both be right."""
    for i, j in pairs:
        diff = float(np.abs(thumbs[i] - thumbs[j]).mean(dtype=np.float64)) / max((stds[i] + stds[j]) / 2, 1e-6)
        if diff < limit:
            return f"options {i} and {j}: mean abs diff {diff:.2f} x their grey std < {limit}"
    return None


# ------------------------------------------------------------------------------------------------------- the task
@register_task
class CropTask(Task):
    name = "crop"
    config_cls = CropConfig
    needs_depth = False
    description = "Cropped patch inpainting: pick which of four candidates (A-D) fills a blacked-out square."

    # The nested windows move closer in scale (scale_gap, with scale_span just wide enough for four windows
    # scale_gap apart) and the options get fewer pixels (max_option_side): the hole's nearest distractor shows its
    # edges fewer option pixels away from where the hole's are. Level 2 is the default construction. Measured per
    # sample by ``difficulty``: side_ratio, fov_gap and edge_shift_px all go down.
    levels = {
        1: {"scale_gap": 1.4, "scale_span": 3.0, "max_option_side": 512},
        2: {"scale_gap": 1.2, "scale_span": 2.0, "max_option_side": 512},
        3: {"scale_gap": 1.1, "scale_span": 1.45, "max_option_side": 64},
        4: {"scale_gap": 1.05, "scale_span": 1.2, "max_option_side": 48},
    }

    config: CropConfig

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """Read from the options' windows: ``side_ratio``, the smallest ratio between two neighbouring window
        sides; ``fov_gap``, the hole's field-of-view ratio to its nearest distractor (>= 1; 1 for a rotated copy);
        ``edge_shift_px``, how many option pixels the nearest distractor's picture at the hole's edge lies from
        where the hole's own is (``option_side * |n - s| / (2 n)`` for a window of side n and the hole's side s:
        the scale gap and the options' resolution together). Lower = harder."""
        s = int(metadata["crop_side"])
        p = int(metadata["option_side"])
        sides = [int(o["window"][2]) - int(o["window"][0]) for o in metadata["options"]]
        distractors = [n for n, o in zip(sides, metadata["options"]) if o["method"] != TRUE_METHOD]
        ordered = sorted(sides)
        side_ratio = min(b / a for a, b in zip(ordered, ordered[1:]))
        fov_gap = min(max(n, s) / min(n, s) for n in distractors)
        shift = min(p * abs(n - s) / (2 * n) for n in distractors)
        return {"side_ratio": round(side_ratio, 4), "fov_gap": round(fov_gap, 4), "edge_shift_px": round(shift, 3)}

    @property
    def num_slots(self) -> int:
        return len(LETTERS)

    def variants(self) -> list[str]:
        return [self.name]

    # ------------------------------------------------------------------ generation

    def _nested(self, source: Source, rng: np.random.Generator) -> tuple[Box, int, _Option, list[_Option], dict]:
        """The four concentric windows, checked alike; then the hole drawn among them."""
        cfg = self.config
        h, w = source.height, source.width
        sides = nested_sides(rng, min(h, w) * cfg.size_frac, cfg.scale_span, cfg.scale_gap)
        side = min(sides[0], cfg.max_option_side)
        if side < cfg.min_option_side:
            raise Reject("crop/source_too_small", f"{w}x{h}: option side {side} < {cfg.min_option_side}")
        windows = concentric_windows(sides, w, h, rng)
        src = source.pil_view()
        images = [render_window(src, win, side) for win in windows]
        thumbs = [_thumb(img) for img in images]
        stds = _grey_stds(thumbs)
        why = _uniform(stds, cfg.min_option_std)
        if why:
            raise Reject("crop/uniform_window", why)
        why = _look_alikes(thumbs, stds, cfg.min_option_diff, list(itertools.combinations(range(4), 2)))
        if why:
            raise Reject("crop/look_alike_options", why)
        rank = int(rng.integers(4))  # drawn after everything above: nothing about the options depends on it
        box = windows[rank]
        opts = [_Option(TRUE_METHOD if i == rank else ZOOM if i < rank else CONTEXT, win, 0, False, img)
                for i, (win, img) in enumerate(zip(windows, images))]
        return box, side, opts[rank], opts[:rank] + opts[rank + 1 :], {"field_of_view_rank": rank}

    def _paper(self, source: Source, rng: np.random.Generator) -> tuple[Box, int, _Option, list[_Option], dict]:
        """The paper's construction: fixed hole side, three of its five distractor methods."""
        cfg = self.config
        h, w = source.height, source.width
        s = int(min(h, w) * cfg.size_frac)
        side = min(s - 2 * (s // 4), cfg.max_option_side)  # the zoom's window is the smallest
        if side < cfg.min_option_side:
            raise Reject("crop/source_too_small", f"{w}x{h}: option side {side} < {cfg.min_option_side}")
        x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        box: Box = (x0, y0, x0 + s, y0 + s)
        src = source.pil_view()
        true = _Option(TRUE_METHOD, box, 0, False, render_window(src, box, side))
        true_thumb = _thumb(true.image)
        why = _uniform(_grey_stds([true_thumb]), cfg.min_option_std)
        if why:
            raise Reject("crop/uniform_window", why)
        weights = cfg.distractor_weights
        sets = [c for c in itertools.combinations([m for m in METHODS if weights.get(m, 0) > 0], 3)]
        unavailable: list[list[str]] = []
        failed: set[str] = set()
        while sets:
            p = np.array([np.prod([weights[m] for m in c]) for c in sets])
            combo = sets[int(rng.choice(len(sets), p=p / p.sum()))]
            distractors = []
            for method in combo:
                got = self._paper_distractor(method, src, box, side, true_thumb)
                if isinstance(got, str):
                    unavailable.append([method, got])
                    failed.add(method)
                    break
                distractors.append(got)
            if len(distractors) == 3:
                return box, side, true, distractors, {"field_of_view_rank": None, "unavailable_methods": unavailable}
            sets = [c for c in sets if not failed & set(c)]
        raise Reject("crop/too_few_distractors", "; ".join(f"{u[0]}: {u[1]}" for u in unavailable))

    def _paper_distractor(self, method: str, src: Image.Image, box: Box, side: int, true_thumb: np.ndarray) -> _Option | str:
        """One of the paper's distractors, or why the method is unusable for this sample."""
        shifted, rotation = False, ROTATIONS.get(method, 0)
        if method == "zoom_in":
            window = _paper_zoom(box)
        elif method in CONTEXT_MARGINS:
            fit = _paper_context(box, CONTEXT_MARGINS[method], src.width, src.height)
            if fit is None:
                return "window_larger_than_image"
            window, shifted = fit
        else:
            window = box
        img = render_window(src, window, side, rotation)
        thumbs = [true_thumb, _thumb(img)]
        why = _look_alikes(thumbs, _grey_stds(thumbs), self.config.min_option_diff, [(0, 1)])
        return f"too_similar_to_true_crop ({why})" if why else _Option(method, window, rotation, shifted, img)

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
        build = self._paper if cfg.scale_mode == "paper" else self._nested
        box, side, true, distractors, extra = build(source, rng)
        order = [distractors[int(i)] for i in rng.permutation(3)]
        order.insert(slot, true)
        hole_img, hole = self._hole_image(source.image(), box)
        s = box[2] - box[0]
        metadata = {
            "crop_box": list(box),
            "crop_side": s,
            "source_size": [source.width, source.height],
            "hole": hole,
            "option_side": side,
            "option_resample": "area average (box) resize of each window to option_side",
            "rotation_convention": "degrees clockwise",
            "scale_mode": cfg.scale_mode,
            "options": [
                {
                    "letter": letter,
                    "method": o.method,
                    "window": list(o.window),
                    "rotation": o.rotation,
                    "shifted": o.shifted,
                    "field_of_view": round((o.window[2] - o.window[0]) / s, 4),
                }
                for letter, o in zip(LETTERS, order)
            ],
            "answer_index": slot,
            **extra,
        }
        return Sample(
            task=self.name,
            variant=self.name,
            question=QUESTION,
            images=[hole_img] + [o.image for o in order],
            answer=LETTERS[slot],
            metadata=metadata,
            options={letter: o.method for letter, o in zip(LETTERS, order)},
        )

    # ------------------------------------------------------------------ verification

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Re-derive the answer by matching every option against plainly resampled source windows.

        Independent of ``generate``: bilinear resampling, ``np.rot90`` and block averages of contrast-normalised grey
        instead of Pillow's box filter and transposes; distances are relative (best match), so JPEG storage does not
        matter. The geometry (concentric windows, sides, the hole's rank) is checked against the config.
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
            sigs.append(_signature(np.asarray(img if img.mode == "RGB" else img.convert("RGB"), np.float64)))

        ref_true = _signature(_reference(source, box, 0, side))
        d_true = [float(np.abs(g - ref_true).mean()) for g in sigs]
        best = int(np.argmin(d_true))
        if LETTERS[best] != answer:
            problems.append(f"option {LETTERS[best]} matches the crop best (distances {np.round(d_true, 3).tolist()}), answer is {answer}")

        nested = metadata.get("scale_mode") == "nested"
        problems += self._check_nested(metadata, opts, box, w, h) if nested else []
        for i, o in enumerate(opts):
            if o.get("method") == TRUE_METHOD:
                if list(o.get("window", [])) != list(box) or o.get("rotation") != 0:
                    problems.append(f"option {o['letter']}: true crop must use crop_box without rotation")
                continue
            geometry = self._check_window(o, box, w, h, nested)
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

    def _check_nested(self, metadata: dict, opts: list[dict], box: tuple[int, ...], width: int, height: int) -> list[str]:
        """Nested mode: four concentric windows whose sides lie in the band (up to pixel rounding), scale_gap apart,
        the option side the smallest window's (capped), the hole's rank recorded."""
        cfg = self.config
        try:
            wins = [[int(v) for v in o["window"]] for o in opts]
        except (KeyError, TypeError, ValueError):
            return ["options: window missing"]
        sides = sorted(x1 - x0 for x0, _, x1, _ in wins)
        problems = []
        centres = np.array([[(x0 + x1) / 2, (y0 + y1) / 2] for x0, y0, x1, y1 in wins])
        if np.abs(centres - centres[0]).max() > 1.0:
            problems.append(f"option windows are not concentric (centres {centres.tolist()})")
        mid = min(width, height) * cfg.size_frac
        lo, hi = mid / cfg.scale_span**0.5 - 1, mid * cfg.scale_span**0.5 + 1
        if not (lo <= sides[0] and sides[-1] <= hi):
            problems.append(f"window sides {sides} outside [{lo:.1f}, {hi:.1f}]")
        slack = 1.0 / sides[0]  # whole pixels
        if min(b / a for a, b in zip(sides, sides[1:])) < cfg.scale_gap * (1 - slack) - 1e-9:
            problems.append(f"window sides {sides} are closer than {cfg.scale_gap}x")
        if int(metadata.get("option_side", -1)) != min(sides[0], cfg.max_option_side):
            problems.append(f"option_side {metadata.get('option_side')} is not the smallest window's side {sides[0]} (cap {cfg.max_option_side})")
        rank = sides.index(box[2] - box[0])
        if metadata.get("field_of_view_rank") != rank:
            problems.append(f"field_of_view_rank {metadata.get('field_of_view_rank')} but {rank} windows are smaller than the hole")
        return problems

    def _check_window(self, o: dict, box: tuple[int, ...], width: int, height: int, nested: bool) -> list[str]:
        """A distractor's window: square, inside the image, and what its method says (inside the hole for a zoom,
        around it for a context: never clipped or stretched; the paper's scales and turns in paper mode)."""
        method, letter = o.get("method"), o.get("letter")
        try:
            wx0, wy0, wx1, wy1 = (int(v) for v in o["window"])
        except (KeyError, TypeError, ValueError):
            return [f"option {letter}: window missing"]
        if wx1 - wx0 != wy1 - wy0 or not (0 <= wx0 < wx1 <= width and 0 <= wy0 < wy1 <= height):
            return [f"option {letter} ({method}): window {[wx0, wy0, wx1, wy1]} is not a square inside the image"]
        x0, y0, x1, y1 = box
        s, n = x1 - x0, wx1 - wx0
        zooms, contexts = ((ZOOM,), (CONTEXT,)) if nested else (("zoom_in",), tuple(CONTEXT_MARGINS))
        expected_rotation = 0 if nested else ROTATIONS.get(method, 0)
        if o.get("rotation") != expected_rotation:
            return [f"option {letter} ({method}): rotation must be {expected_rotation} deg cw"]
        if method in zooms:
            centred = abs((wx0 - x0) - (x1 - wx1)) <= 1 and abs((wy0 - y0) - (y1 - wy1)) <= 1
            if not (x0 < wx0 and y0 < wy0 and wx1 < x1 and wy1 < y1 and centred):
                return [f"option {letter} ({method}): window is not a centred square inside the hole"]
            if not nested and abs(n - s / 2) > 2:
                return [f"option {letter} (zoom_in): window is not the centre half of the crop"]
        elif method in contexts:
            if not (wx0 <= x0 and wy0 <= y0 and x1 <= wx1 and y1 <= wy1 and n > s):
                return [f"option {letter} ({method}): window does not contain the hole"]
            if not nested and n != s + 2 * int(CONTEXT_MARGINS[method] * s):
                return [f"option {letter} ({method}): window is not the paper's context square"]
        elif method in ROTATIONS and not nested:
            if [wx0, wy0, wx1, wy1] != list(box):
                return [f"option {letter} ({method}): must be the crop window turned"]
        else:
            return [f"option {letter}: unknown method {method!r} for scale_mode {'nested' if nested else 'paper'}"]
        return []


def _reference(source: Source, window: tuple[int, ...], rotation: int, side: int) -> np.ndarray:
    """A source window resized by plain bilinear resampling, rotated by ``rotation`` degrees clockwise."""
    x0, y0, x1, y1 = window
    patch = Image.fromarray(np.ascontiguousarray(source.rgb[y0:y1, x0:x1]), "RGB").resize((side, side), Image.BILINEAR)
    return np.rot90(np.asarray(patch, np.float64), k=-(rotation // 90) % 4).copy()


def _signature(rgb: np.ndarray, block: int = 4) -> np.ndarray:
    """Contrast-normalised grey, averaged over block x block cells: blind to small blur, sharpening, gain and offset."""
    g = rgb @ np.array(GREY_WEIGHTS)
    g = (g - g.mean()) / max(float(g.std()), 1e-6)
    n = (g.shape[0] // block) * block
    return g[:n, :n].reshape(n // block, block, n // block, block).mean(axis=(1, 3))


def _check_hole(img: Image.Image, box: tuple[int, ...], source: Source) -> list[str]:
    """Image 1 must be the source, with a dark hole at ``box`` (outline bands excluded). Read on every second
    pixel of every second row: a quarter of the work for means over tens of thousands of pixels."""
    if img.size != (source.width, source.height):
        return [f"image 1 is {img.size}, source is {source.width}x{source.height}"]
    x0, y0, x1, y1 = box
    a = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))[::2, ::2]
    inset = max(2, (x1 - x0) // 12)  # well clear of the outline bands and of JPEG ringing
    inner = a[-(-(y0 + inset) // 2) : -(-(y1 - inset) // 2), -(-(x0 + inset) // 2) : -(-(x1 - inset) // 2)]
    problems = []
    if inner.size == 0 or inner.mean() > 25 or np.percentile(inner, 99) > 80:
        problems.append(f"image 1 is not dark inside crop_box {list(box)} (mean {inner.mean() if inner.size else -1:.1f})")
    diff = np.abs(a.astype(np.int16) - source.rgb[::2, ::2]).sum(axis=2)
    hole = diff[-(-y0 // 2) : -(-y1 // 2), -(-x0 // 2) : -(-x1 // 2)]  # the strided pixels inside the box
    n_out = diff.size - hole.size
    if n_out > 0 and (float(diff.sum()) - float(hole.sum())) / (3 * n_out) > 6:
        problems.append("image 1 differs from the source outside the hole")
    return problems
