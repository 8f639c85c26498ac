"""Regional depth ordering (RGB-D): order three marked regions from the nearest to the farthest.

Each region is a square window judged on its OWN valid pixels: mostly valid (``min_valid_fraction``) and flat
(p90 - p10 of normalised depth below ``flat_tol``). Its depth is the median of those pixels, never a single centre
pixel. Consecutive regions are separated by ``min_gap`` in normalised depth, by ``min_rel_gap`` in farness
(a relative gap that holds whatever the depth scale) and their [p10, p90] intervals do not overlap, so the order
cannot be argued. As in the paper, one region comes from each band of normalised depth (near / middle / far by
default) so the three are spread over the scene. Windows are drawn from ``rng`` among all qualifying candidates,
so no image position is favoured.

Difficulty levels (:attr:`DepthOrderTask.levels`) move a band of the smallest consecutive gap down (``min_gap`` /
``min_rel_gap`` below, ``max_gap`` above) and shrink the windows; ``difficulty`` measures the gaps on each sample.

``slot`` indexes ``itertools.permutations((1, 2, 3))``: the ANSWER (labels nearest to farthest). The generator
assigns the labels to the regions to produce it, which balances the six answers exactly.
"""

from __future__ import annotations

import itertools
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

PERMUTATIONS: tuple[tuple[int, int, int], ...] = tuple(itertools.permutations((1, 2, 3)))  # type: ignore[assignment]
LABELS = ["1", "2", "3"]

QUESTION = (
    "<image>\n"
    "Three regions of this image are circled in red, each tagged with a numbered badge: 1, 2 and 3. "
    "Judge how far each circled region is from the camera and order the labels from the nearest region to the "
    "farthest one. Answer in the format 'Smallest-Middle-Largest': the label of the region with the smallest "
    "depth (nearest) first, then the middle one, then the one with the largest depth (farthest), joined by '-'."
)


PAPER_BANDS = [[0.0, 0.3], [0.35, 0.65], [0.7, 1.0]]


@dataclass
class DepthOrderConfig(DepthWindowConfig):
    min_gap: float = 0.08  # consecutive regions: difference of normalised medians (paper: 0.05)
    min_rel_gap: float = 0.1  # consecutive regions: farther median >= nearer median * (1 + min_rel_gap)
    # Optional upper bound on the SMALLEST consecutive gap (normalised depth); None (default): none. The second
    # window drawn is then at most ``max_gap`` from the first, so two of the three regions are close in depth
    # (whatever the third does, the smallest consecutive gap is at most theirs). The hard levels use it.
    max_gap: Optional[float] = None
    # Optional normalised-depth band of each region, near to far (the paper: [[0, 0.3], [0.35, 0.65], [0.7, 1]]).
    # Empty (default): any three windows pairwise separated by the gaps above, so scenes whose depths cluster in
    # two layers (a room's furniture and its back wall) still qualify.
    bands: list[list[float]] = field(default_factory=list)
    max_tries: int = 24  # random first regions tried before "depth/no_separated_triple"

    def validate(self) -> None:
        key = "task.depth"
        self._validate_common(key)
        check(0.0 < self.min_gap <= 0.5, f"{key}.min_gap", f"must be in (0, 0.5], got {self.min_gap}")
        check(0.0 <= self.min_rel_gap <= 2.0, f"{key}.min_rel_gap", f"must be in [0, 2], got {self.min_rel_gap}")
        if self.max_gap is not None:
            check(self.min_gap < self.max_gap <= 1.0, f"{key}.max_gap",
                  f"must be null or in (min_gap = {self.min_gap}, 1], got {self.max_gap}")
        check(1 <= self.max_tries <= 1000, f"{key}.max_tries", f"must be in [1, 1000], got {self.max_tries}")
        if not self.bands:
            return
        check(len(self.bands) == 3 and all(len(b) == 2 for b in self.bands), f"{key}.bands",
              f"needs three [low, high] bands (near, middle, far), got {self.bands}")
        flat = [float(v) for b in self.bands for v in b]
        check(all(0.0 <= v <= 1.0 for v in flat) and all(a < b for a, b in zip(flat[::2], flat[1::2])), f"{key}.bands",
              f"each band needs 0 <= low < high <= 1, got {self.bands}")
        check(all(flat[i] <= flat[i + 1] for i in (1, 3)), f"{key}.bands", f"bands must be ordered near to far without overlap, got {self.bands}")


@register_task
class DepthOrderTask(Task):
    name = "depth"
    config_cls = DepthOrderConfig
    needs_depth = True
    description = "Order three marked flat regions from the nearest to the farthest (RGB-D)."

    # Level by level the regions come closer in depth and get smaller: a band of the smallest consecutive gap in
    # normalised depth that moves down (level 1: at least 0.2, i.e. a fifth of the scene's depth range; level 2:
    # 0.1-0.2; level 3: 0.05-0.1, the paper's own minimum gap), the relative gap following it, and the window side
    # (7%, 5%, 4% of the shorter image side). Measured per sample by ``difficulty``: min_gap, min_rel_gap and
    # region_frac all fall.
    levels = {
        1: {"min_gap": 0.2, "min_rel_gap": 0.25, "max_gap": None, "window_frac": 0.07},
        2: {"min_gap": 0.1, "min_rel_gap": 0.12, "max_gap": 0.2, "window_frac": 0.05},
        3: {"min_gap": 0.05, "min_rel_gap": 0.05, "max_gap": 0.1, "window_frac": 0.04},
    }

    config: DepthOrderConfig

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """Read from the regions: ``min_gap``, the smallest difference of normalised medians between depth-consecutive
        regions (lower = harder to order); ``min_rel_gap``, the smallest farther/nearer median farness ratio minus 1
        between them; ``region_frac``, the window side over the shorter image side (smaller = less to look at)."""
        regions = sorted(metadata["regions"], key=lambda r: r["median_norm"])
        pairs = list(zip(regions, regions[1:]))
        return {
            "min_gap": round(min(b["median_norm"] - a["median_norm"] for a, b in pairs), 6),
            "min_rel_gap": round(min(b["median_farness"] / a["median_farness"] - 1.0 for a, b in pairs), 6),
            "region_frac": round(metadata["window_size"] / min(metadata["image_size"]), 6),
        }

    @property
    def num_slots(self) -> int:
        return len(PERMUTATIONS)

    # -------------------------------------------------------------------------------------------- generate

    def generate(self, source: Source, rng: np.random.Generator, slot: int = 0) -> Sample:
        cfg = self.config
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"depth: slot must be in [0, {self.num_slots}), got {slot}")
        field_ = prepare_depth(source, "depth", cfg.norm_low_pct, cfg.norm_high_pct, cfg.min_map_valid_fraction,
                               flat_reason="depth/no_separated_triple")
        geom = marker_geometry(source.width, source.height, cfg)
        cands = flat_candidates(field_, geom, cfg, rng, self._enough if cfg.bands else None)
        if len(cands) == 0:
            raise Reject("depth/no_flat_regions", f"none of {cands.considered} windows of {geom.window}px is valid and flat")
        triple = self._pick_triple(field_, cands, geom, rng)

        order = PERMUTATIONS[slot]  # labels, nearest to farthest
        regions = []
        for idx, label in zip(triple, order):
            region = region_record(field_, int(cands.cx[idx]), int(cands.cy[idx]), geom.half)
            regions.append({"label": str(label), **region})
        regions.sort(key=lambda r: r["label"])
        image, badges = draw_markers(source, regions, geom, "depth")
        for region, badge in zip(regions, badges):
            region["badge_center"] = badge

        answer = "-".join(str(label) for label in order)
        metadata: dict[str, Any] = {
            "depth_kind": field_.kind,
            "normalisation": field_.normalisation_metadata(),
            "map_valid_fraction": round(field_.valid_fraction, 6),
            "image_size": [source.width, source.height],
            **geom.metadata(),
            "box_convention": BOX_CONVENTION,
            "regions": regions,
            "order_near_to_far": [str(label) for label in order],
            "thresholds": {
                "flat_tol": cfg.flat_tol, "min_gap": cfg.min_gap, "min_rel_gap": cfg.min_rel_gap,
                "min_valid_fraction": cfg.min_valid_fraction, "bands": [[float(a), float(b)] for a, b in cfg.bands],
                **({} if cfg.max_gap is None else {"max_gap": cfg.max_gap}),
            },
            "num_candidates": len(cands),
            "windows_considered": cands.considered,
        }
        return Sample(self.name, self.name, QUESTION, [image], answer, metadata)

    def _enough(self, found: Candidates) -> bool:
        """With bands, the pickers draw one window per band: stop once every band holds a few flat windows."""
        need = max(2, self.config.min_candidates // 4)
        banded = np.clip(found.median, 0.0, 1.0)
        return all(np.count_nonzero((banded >= lo) & (banded <= hi)) >= need for lo, hi in self.config.bands)

    def _pick_triple(self, field_: DepthField, cands: Candidates, geom: MarkerGeometry, rng: np.random.Generator) -> tuple[int, int, int]:
        """Indices (near, middle, far) of three candidates, spaced apart and clearly separated in depth.

        Without bands: a random window, then a random window clearly nearer or farther, then a random window clearly
        separated from both (before, between or after them). With bands: one random window per band, near to far.
        With ``max_gap``, the second window is also within ``max_gap`` of the first: the third lies before, between
        or after the two, so the smallest consecutive gap is at most theirs.
        """
        cfg = self.config
        med = cands.median
        far_med = field_.lo + med * field_.depth_range

        def farther(near: np.ndarray | int, far: np.ndarray | int) -> np.ndarray:
            """Is ``far`` clearly farther than ``near``: gap, relative gap and disjoint p10-p90 intervals."""
            return ((med[far] - med[near] >= cfg.min_gap) & (cands.p10[far] > cands.p90[near])
                    & (far_med[far] >= far_med[near] * (1.0 + cfg.min_rel_gap)))

        def separated(i: int, js: np.ndarray) -> np.ndarray:
            return farther(i, js) | farther(js, i)

        def close(i: int, js: np.ndarray) -> np.ndarray:
            """Within ``max_gap`` of ``i`` (every window when there is no upper bound)."""
            if cfg.max_gap is None:
                return np.ones(js.shape, bool)
            return np.abs(med[js] - med[i]) <= cfg.max_gap

        def apart(js: np.ndarray, i: int) -> np.ndarray:
            return centre_distances(cands.cx[js], cands.cy[js], cands.cx[i], cands.cy[i]) >= geom.min_distance

        if cfg.bands:
            banded = np.clip(med, 0.0, 1.0)  # windows beyond the percentiles belong to the end bands
            pools = [np.flatnonzero((banded >= lo) & (banded <= hi)) for lo, hi in cfg.bands]
            for k, members in enumerate(pools):
                if members.size == 0:
                    raise Reject("depth/no_separated_triple", f"no flat window in band {cfg.bands[k]} ({len(cands)} flat windows)")
        everyone = np.arange(len(cands))
        for _ in range(cfg.max_tries):
            if cfg.bands:
                a = int(rng.choice(pools[0]))
                seconds = pools[1][apart(pools[1], a) & farther(a, pools[1]) & close(a, pools[1])]
            else:
                a = int(rng.integers(len(cands)))
                seconds = everyone[apart(everyone, a) & separated(a, everyone) & close(a, everyone)]
            if seconds.size == 0:
                continue
            b = int(rng.choice(seconds))
            if cfg.bands:
                thirds = pools[2][apart(pools[2], a) & apart(pools[2], b) & farther(b, pools[2])]
            else:
                thirds = everyone[apart(everyone, a) & apart(everyone, b) & separated(a, everyone) & separated(b, everyone)]
            if thirds.size == 0:
                continue
            c = int(rng.choice(thirds))
            near, mid, far = sorted((a, b, c), key=lambda i: med[i])
            return near, mid, far
        raise Reject("depth/no_separated_triple", f"no spaced, depth-separated triple in {cfg.max_tries} tries ({len(cands)} flat windows)")

    # ---------------------------------------------------------------------------------------------- verify

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Source | None) -> list[str]:
        """Read the depth map at each recorded box (valid pixels only, own median), sort, compare; check the markers."""
        if source is None or source.depth is None:
            return ["source (with depth) unavailable: cannot read the depth at the regions"]
        if len(images) != 1:
            return [f"expected 1 image, got {len(images)}"]
        problems: list[str] = []
        regions = metadata["regions"]
        thresholds = metadata["thresholds"]
        labels = sorted(str(r["label"]) for r in regions)
        if labels != LABELS:
            return [f"regions are labelled {labels}, expected {LABELS}"]
        medians: dict[str, float] = {}
        for r in regions:
            med, vf = read_box_depth(source, r["box"])
            medians[str(r["label"])] = med
            if not vf >= thresholds["min_valid_fraction"] - 1e-9:
                problems.append(f"region {r['label']}: only {vf:.0%} of its box has valid depth")
            if not np.isclose(med, r["median_farness"], rtol=1e-4, atol=1e-9):
                problems.append(f"region {r['label']}: median farness {med:.6g} != recorded {r['median_farness']:.6g}")
        if problems:
            return problems
        for i, a in enumerate(regions):
            for b in regions[i + 1:]:
                ax0, ay0, ax1, ay1 = a["box"]
                bx0, by0, bx1, by1 = b["box"]
                if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                    problems.append(f"regions {a['label']} and {b['label']} overlap")
        order = sorted(medians, key=lambda k: medians[k])
        derived = "-".join(order)
        if "".join(answer.split()) != derived:
            problems.append(f"answer {answer!r} but the depth map orders the regions {derived} (medians {medians})")
        for near, far in zip(order, order[1:]):
            if medians[far] < medians[near] * (1.0 + 0.99 * thresholds["min_rel_gap"]):
                problems.append(f"regions {near} and {far} are too close in depth ({medians[near]:.4g} vs {medians[far]:.4g})")
        if thresholds.get("max_gap") is not None:
            norm = metadata["normalisation"]
            smallest = min(medians[f] - medians[n] for n, f in zip(order, order[1:])) / (norm["high"] - norm["low"])
            if smallest > thresholds["max_gap"] + 1e-6:
                problems.append(f"smallest consecutive gap {smallest:.4g} exceeds max_gap {thresholds['max_gap']}")
        problems += check_markers(images[0], source, regions, metadata["ring_radius"], metadata["badge_radius"], LABELS)
        return problems
