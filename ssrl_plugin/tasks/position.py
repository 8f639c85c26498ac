"""Relative 3D position (RGB-D): where is region Y as seen by a camera standing at region X with a given facing?

Two windows are marked 1 and 2. Both are mostly valid and flat on their own pixels (markers never land on sky or
on missing depth), drawn as a FRESH random pair from ``rng`` for every sample (no centre bias). Each centre is
back-projected with a pinhole model: Z = median farness of the window's valid pixels, X = (u - cx) Z / f, with f
from ``source.info["focal_px"]`` (or a pinhole ``info["camera"]["fx"]``) when known, else from an assumed
horizontal field of view ``fov_deg``. The unknown scale of relative depth cancels: every threshold is a fraction
of the scene's robust depth range.

The camera at X faces "away" (0 deg, into the scene), "left" (90 deg, towards the image's left), "towards" (180
deg, towards the viewer) or "right" (270 deg); its heading is parallel to the ground, so everything happens in the
x-z plane. Vector d = P_Y - P_X; forward(theta) = (-sin theta, cos theta), right(theta) = (cos theta, sin theta) in
(x, z). An axis counts when |component| >= ``min_offset`` * range and is "zero" when <= ``max_zero_offset`` *
range; an axis in between is ambiguous ("position/ambiguous"), both axes zero is "position/too_close". One axis
counting -> {Left, Right, Front, Back}; both -> {Left-Front, Right-Front, Right-Back, Left-Back}. The four options
are shuffled; ``slot`` is the index of the correct letter.

Difficulty levels (:attr:`PositionTask.levels`) bring the count threshold down towards the zero band and cap the
margin (:func:`decisive_margin`) with ``max_margin``; ``difficulty`` measures the margin, the angle to the nearest
direction boundary and the distance on each sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..core import Sample, Source
from ..errors import Reject
from ..registry import Task, check, register_task
from .depth_common import (
    BOX_CONVENTION,
    Candidates,
    DepthField,
    DepthWindowConfig,
    MarkerGeometry,
    centre_distances,
    check_markers,
    draw_markers,
    flat_candidates,
    marker_geometry,
    prepare_depth,
    read_box_depth,
    region_record,
)

LETTERS = "ABCD"
LABELS = ["1", "2"]
FACINGS: dict[str, int] = {"away": 0, "left": 90, "towards": 180, "right": 270}
FACING_TEXT = {
    "away": "facing away from the viewer, straight into the scene",
    "left": "facing towards the left side of the image",
    "towards": "facing towards the viewer, out of the image",
    "right": "facing towards the right side of the image",
}
STRAIGHT = ["Left", "Right", "Front", "Back"]
DIAGONAL = ["Left-Front", "Right-Front", "Right-Back", "Left-Back"]


def _uniform_facings() -> dict[str, float]:
    return {name: 1.0 for name in FACINGS}


@dataclass
class PositionConfig(DepthWindowConfig):
    flat_tol: float = 0.1  # looser than depth ordering: a region only needs a well-defined depth
    min_offset: float = 0.15  # an axis counts when |component| >= this fraction of the robust depth range
    max_zero_offset: float = 0.05  # an axis is "zero" when |component| <= this fraction; in between = ambiguous
    # Optional upper bound on the sample's margin (:func:`decisive_margin`, a fraction of the depth range): pairs
    # whose answer is clearer are passed over ("position/too_clear"). None (default): none. The hard levels use it.
    max_margin: Optional[float] = None
    fov_deg: float = 60.0  # assumed horizontal field of view when the source does not give ``focal_px``
    facing_weights: dict[str, float] = field(default_factory=_uniform_facings)  # away/left/towards/right; 0 disables
    max_pair_tries: int = 8  # random pairs tried in one call before rejecting with the last reason

    def validate(self) -> None:
        key = "task.position"
        self._validate_common(key)
        check(0.0 < self.min_offset <= 2.0, f"{key}.min_offset", f"must be in (0, 2], got {self.min_offset}")
        check(0.0 <= self.max_zero_offset < self.min_offset, f"{key}.max_zero_offset",
              f"must be in [0, min_offset={self.min_offset}), got {self.max_zero_offset}")
        if self.max_margin is not None:
            floor = self.min_offset - self.max_zero_offset  # no valid sample has a smaller margin
            check(floor < self.max_margin <= 2.0, f"{key}.max_margin",
                  f"must be null or in (min_offset - max_zero_offset = {floor:.4g}, 2], got {self.max_margin}")
        check(5.0 <= self.fov_deg <= 170.0, f"{key}.fov_deg", f"must be in [5, 170] degrees, got {self.fov_deg}")
        unknown = sorted(set(self.facing_weights) - set(FACINGS))
        check(not unknown, f"{key}.facing_weights", f"unknown facings {unknown}; use {sorted(FACINGS)}")
        weights = list(self.facing_weights.values())
        check(all(math.isfinite(w) and w >= 0 for w in weights) and sum(weights) > 0, f"{key}.facing_weights",
              f"weights must be finite, >= 0 and not all 0, got {self.facing_weights}")
        check(1 <= self.max_pair_tries <= 1000, f"{key}.max_pair_tries", f"must be in [1, 1000], got {self.max_pair_tries}")


def _positive(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def axis_state(value: float, count_at: float, zero_at: float) -> str:
    """'pos' / 'neg' when the axis clears ``count_at``, 'zero' when within ``zero_at``, else 'ambiguous'."""
    if abs(value) >= count_at:
        return "pos" if value > 0 else "neg"
    return "zero" if abs(value) <= zero_at else "ambiguous"


def facing_components(dx: float, dz: float, degrees: int) -> tuple[float, float]:
    """(forward, right) components of the planar vector (dx, dz) for a camera whose heading is ``degrees``
    counter-clockwise (seen from above) from "into the scene": 90 = towards the image's left."""
    t = math.radians(degrees)
    forward = -math.sin(t) * dx + math.cos(t) * dz
    right = math.cos(t) * dx + math.sin(t) * dz
    return forward, right


def decisive_margin(forward: float, right: float, count_at: float) -> float:
    """How clearly the components read: the smallest component that counts (``|c| >= count_at``) minus the largest
    one that does not (0 when both count). A straight answer's major minus minor axis, a diagonal one's smaller axis;
    same units as the components. Every valid sample has at least ``count_at - zero_at``."""
    counting = [abs(c) for c in (forward, right) if abs(c) >= count_at]
    zeros = [abs(c) for c in (forward, right) if abs(c) < count_at]
    return (min(counting) if counting else 0.0) - (max(zeros) if zeros else 0.0)


def angle_margin_deg(forward: float, right: float, diagonal: bool) -> float:
    """Degrees from the direction of (right, forward) to the nearest boundary between the eight directions the options
    name (boundaries at 22.5 + k * 45 degrees), positive on the side of the answer: a straight answer pointing right
    along its axis has 22.5, one at 20 degrees off it 2.5; a diagonal answer at 45 degrees has 22.5, one 10 degrees
    off an axis -12.5 (it reads more like the straight answer)."""
    off_axis = math.degrees(math.atan2(min(abs(forward), abs(right)), max(abs(forward), abs(right))))  # in [0, 45]
    return off_axis - 22.5 if diagonal else 22.5 - off_axis


@register_task
class PositionTask(Task):
    name = "position"
    config_cls = PositionConfig
    needs_depth = True
    description = "Where is one marked region as seen from a camera standing at another, with a given facing (RGB-D)."
    word_options = True  # options are words ("Front", "Left-Back"): stored with the answer so "B. Front" can be checked

    # Level by level the answer reads less clearly: the count threshold comes down towards the zero band and a band
    # of the margin (:func:`decisive_margin`, fractions of the depth range) moves down: level 1 at least 0.25
    # (components of 0.3 or more against at most 0.05), level 2 0.1 to 0.3 (the default thresholds), level 3 0.08 to
    # 0.15 (0.12 against 0.04: a straight answer still lies within 18.4 degrees of its axis). More pairs are tried
    # where the band turns many down. Measured per sample by ``difficulty``: margin, angle_margin_deg and distance
    # fall.
    levels = {
        1: {"min_offset": 0.3, "max_zero_offset": 0.05, "max_margin": None, "max_pair_tries": 32},
        2: {"min_offset": 0.15, "max_zero_offset": 0.05, "max_margin": 0.3, "max_pair_tries": 24},
        3: {"min_offset": 0.12, "max_zero_offset": 0.04, "max_margin": 0.15, "max_pair_tries": 48},
    }

    config: PositionConfig

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """Read from the components and thresholds, in fractions of the scene's depth range: ``margin``
        (:func:`decisive_margin`, lower = the answer is nearer another option), ``angle_margin_deg``
        (:func:`angle_margin_deg`), ``distance`` (|Y - X| in the ground plane)."""
        th = metadata["thresholds"]
        scale = float(th["depth_range"])
        forward, right = float(metadata["components"]["forward"]), float(metadata["components"]["right"])
        return {
            "margin": round(decisive_margin(forward, right, float(th["count_at"])) / scale, 6),
            "angle_margin_deg": round(angle_margin_deg(forward, right, metadata["option_set"] == "diagonal"), 6),
            "distance": round(math.hypot(forward, right) / scale, 6),
        }

    @property
    def num_slots(self) -> int:
        return len(LETTERS)

    # -------------------------------------------------------------------------------------------- generate

    def generate(self, source: Source, rng: np.random.Generator, slot: int = 0) -> Sample:
        cfg = self.config
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"position: slot must be in [0, {self.num_slots}), got {slot}")
        field_ = prepare_depth(source, "position", cfg.norm_low_pct, cfg.norm_high_pct, cfg.min_map_valid_fraction,
                               flat_reason="position/too_close")
        geom = marker_geometry(source.width, source.height, cfg)
        cands = flat_candidates(field_, geom, cfg, rng)
        if len(cands) < 2:
            raise Reject("position/no_valid_windows", f"{len(cands)} of {cands.considered} windows are valid and flat")
        focal, cx, focal_from = self._intrinsics(source)
        count_at = cfg.min_offset * field_.depth_range
        zero_at = cfg.max_zero_offset * field_.depth_range
        names = list(cfg.facing_weights)
        probs = np.array([cfg.facing_weights[n] for n in names], np.float64)
        probs /= probs.sum()

        reason, detail = "position/no_valid_windows", "no pair of windows far enough apart"
        for _ in range(cfg.max_pair_tries):
            pair = self._pick_pair(cands, geom, rng)
            if pair is None:
                continue
            camera_label = "1" if rng.random() < 0.5 else "2"
            facing = names[int(rng.choice(len(names), p=probs))]
            regions = [self._region(field_, cands, idx, label, geom, focal, cx) for idx, label in zip(pair, LABELS)]
            cam, tgt = (regions[0], regions[1]) if camera_label == "1" else (regions[1], regions[0])
            forward, right = facing_components(tgt["X"] - cam["X"], tgt["Z"] - cam["Z"], FACINGS[facing])
            fwd_state, right_state = axis_state(forward, count_at, zero_at), axis_state(right, count_at, zero_at)
            if "ambiguous" in (fwd_state, right_state):
                reason, detail = "position/ambiguous", f"forward {forward:.3g} / right {right:.3g}: one lies between {zero_at:.3g} and {count_at:.3g}"
                continue
            if fwd_state == right_state == "zero":
                reason, detail = "position/too_close", f"forward {forward:.3g} and right {right:.3g} both within {zero_at:.3g}"
                continue
            if cfg.max_margin is not None:
                margin = decisive_margin(forward, right, count_at) / field_.depth_range
                if margin > cfg.max_margin:
                    reason, detail = "position/too_clear", f"forward {forward:.3g} / right {right:.3g}: margin {margin:.3g} > max_margin={cfg.max_margin}"
                    continue
            break
        else:
            raise Reject(reason, detail)

        answer_text, option_set = self._answer_text(fwd_state, right_state)
        pool = STRAIGHT if option_set == "straight" else DIAGONAL
        others = [t for t in pool if t != answer_text]
        others = [others[i] for i in rng.permutation(len(others))]
        texts = others[:slot] + [answer_text] + others[slot:]
        options = {letter: text for letter, text in zip(LETTERS, texts)}
        answer = LETTERS[slot]

        image, badges = draw_markers(source, regions, geom, "position")
        for region, badge in zip(regions, badges):
            region["badge_center"] = badge
        target_label = "2" if camera_label == "1" else "1"
        question = self._question(camera_label, target_label, facing, options)
        metadata: dict[str, Any] = {
            "depth_kind": field_.kind,
            "normalisation": field_.normalisation_metadata(),
            "map_valid_fraction": round(field_.valid_fraction, 6),
            "image_size": [source.width, source.height],
            "focal_px": float(focal),
            "focal_from": focal_from,
            "fov_deg": float(cfg.fov_deg),
            "cx": cx,
            **geom.metadata(),
            "box_convention": BOX_CONVENTION,
            "regions": regions,
            "camera_label": camera_label,
            "target_label": target_label,
            "facing": {"name": facing, "degrees": FACINGS[facing]},
            "components": {"forward": float(forward), "right": float(right)},
            "thresholds": {
                "depth_range": float(field_.depth_range), "min_offset": cfg.min_offset, "max_zero_offset": cfg.max_zero_offset,
                "count_at": float(count_at), "zero_at": float(zero_at), "min_valid_fraction": cfg.min_valid_fraction,
                "flat_tol": cfg.flat_tol, **({} if cfg.max_margin is None else {"max_margin": cfg.max_margin}),
            },
            "option_set": option_set,
            "options": options,
            "answer_text": answer_text,
            "num_candidates": len(cands),
        }
        return Sample(self.name, self.name, question, [image], answer, metadata, options=dict(options))

    def _intrinsics(self, source: Source) -> tuple[float, float, str]:
        """(focal px, principal point x, where f came from): ``info["focal_px"]`` / ``info["cx"]``, else a pinhole
        ``info["camera"]`` (``fx``, ``cx``, scaled when it was given for another width), else ``fov_deg``."""
        info = source.info or {}
        camera = info.get("camera") if isinstance(info.get("camera"), dict) else {}
        scale = source.width / float(camera["width"]) if _positive(camera.get("width")) else 1.0
        cx_default = (source.width - 1) / 2.0
        if _positive(info.get("focal_px")):
            return float(info["focal_px"]), float(info.get("cx", cx_default)), "source"
        if _positive(camera.get("fx")):
            cx = float(camera["cx"]) * scale if _positive(camera.get("cx")) else cx_default
            return float(camera["fx"]) * scale, cx, "camera"
        focal = (source.width / 2.0) / math.tan(math.radians(self.config.fov_deg) / 2.0)
        return focal, float(info.get("cx", cx_default)), "fov_deg"

    @staticmethod
    def _pick_pair(cands: Candidates, geom: MarkerGeometry, rng: np.random.Generator) -> tuple[int, int] | None:
        """A uniformly random window, then a uniformly random window far enough from it (None if there is none)."""
        a = int(rng.integers(len(cands)))
        far_enough = np.flatnonzero(centre_distances(cands.cx, cands.cy, cands.cx[a], cands.cy[a]) >= geom.min_distance)
        if far_enough.size == 0:
            return None
        return a, int(rng.choice(far_enough))

    @staticmethod
    def _region(field_: DepthField, cands: Candidates, idx: int, label: str, geom: MarkerGeometry, focal: float, cx: float) -> dict[str, Any]:
        record = region_record(field_, int(cands.cx[idx]), int(cands.cy[idx]), geom.half)
        z = record["median_farness"]
        x = (record["center"][0] - cx) * z / focal
        return {"label": label, **record, "X": float(x), "Z": float(z)}

    @staticmethod
    def _answer_text(fwd_state: str, right_state: str) -> tuple[str, str]:
        lateral = {"pos": "Right", "neg": "Left"}.get(right_state)
        depth = {"pos": "Front", "neg": "Back"}.get(fwd_state)
        if lateral and depth:
            return f"{lateral}-{depth}", "diagonal"
        return (lateral or depth), "straight"  # type: ignore[return-value]

    @staticmethod
    def _question(camera: str, target: str, facing: str, options: dict[str, str]) -> str:
        lines = "\n".join(f"{letter}. {text}" for letter, text in options.items())
        return (
            "<image>\n"
            f"Two regions of this image are circled in red and tagged 1 and 2. Imagine a camera standing at region "
            f"{camera}, {FACING_TEXT[facing]}, with its heading parallel to the ground. From this camera's point of "
            f"view, where is region {target}? Ignore differences in height.\n{lines}\n"
            "Answer with the letter of the correct option (A, B, C or D)."
        )

    # ---------------------------------------------------------------------------------------------- verify

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Re-read the depth at both boxes, back-project, rotate into the camera's frame (as a complex number),
        label with the recorded thresholds and compare with the option text under the answer letter."""
        if source is None or source.depth is None:
            return ["source (with depth) unavailable: cannot read the depth at the regions"]
        if len(images) != 1:
            return [f"expected 1 image, got {len(images)}"]
        problems: list[str] = []
        regions = {str(r["label"]): r for r in metadata["regions"]}
        if sorted(regions) != LABELS:
            return [f"regions are labelled {sorted(regions)}, expected {LABELS}"]
        th = metadata["thresholds"]
        focal, cx = float(metadata["focal_px"]), float(metadata["cx"])
        points: dict[str, complex] = {}
        for label, r in regions.items():
            z, vf = read_box_depth(source, r["box"])
            if not vf >= th["min_valid_fraction"] - 1e-9:
                problems.append(f"region {label}: only {vf:.0%} of its box has valid depth")
            u = (r["box"][0] + r["box"][2] - 1) / 2.0
            points[label] = complex((u - cx) * z / focal, z)  # x + i z: the ground plane seen from above
        if problems:
            return problems
        # the scene scale, recomputed from the source, must agree with the recorded one
        far = source.depth.farness()
        ok = source.depth.valid & np.isfinite(far) & (far > 0)
        lo, hi = np.percentile(far[ok], (metadata["normalisation"]["low_pct"], metadata["normalisation"]["high_pct"]))
        if not np.isclose(hi - lo, th["depth_range"], rtol=1e-4):
            problems.append(f"depth range {hi - lo:.6g} != recorded {th['depth_range']:.6g}")
        count_at, zero_at = th["min_offset"] * (hi - lo), th["max_zero_offset"] * (hi - lo)
        # rotating by -theta puts the camera's forward on +imag and its right on +real
        rel = (points[metadata["target_label"]] - points[metadata["camera_label"]]) * complex(
            math.cos(math.radians(-metadata["facing"]["degrees"])), math.sin(math.radians(-metadata["facing"]["degrees"])))
        words = []
        for value, pos, neg in ((rel.real, "Right", "Left"), (rel.imag, "Front", "Back")):
            if abs(value) >= count_at:
                words.append(pos if value > 0 else neg)
            elif abs(value) > zero_at:
                problems.append(f"component {value:.4g} lies between the zero ({zero_at:.4g}) and count ({count_at:.4g}) thresholds")
        if not words:
            problems.append(f"both components (right {rel.real:.4g}, forward {rel.imag:.4g}) are below {count_at:.4g}")
        derived = "-".join(words)
        options = metadata["options"]
        expected_pool = set(DIAGONAL if "-" in derived else STRAIGHT)
        if set(options.values()) != expected_pool or sorted(options) != list(LETTERS):
            problems.append(f"options {options} are not the {'diagonal' if '-' in derived else 'straight'} set")
        letter = answer.strip()
        if options.get(letter) != derived:
            problems.append(f"answer {answer!r} = {options.get(letter)!r} but the depth map gives {derived!r}")
        problems += check_markers(images[0], source, list(regions.values()), metadata["ring_radius"], metadata["badge_radius"], LABELS)
        return problems
