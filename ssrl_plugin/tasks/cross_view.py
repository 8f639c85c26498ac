"""Cross-view correspondence (posed RGB-D sequence): which of four regions of frame 2 shows the surface point that a
region of frame 1 shows?

Image 1 is a part of frame 1 (a ``crop_frac`` crop) with one region circled and tagged ``Q``; image 2 is frame 2,
whole, with four regions circled and tagged A-D, all drawn alike (same colour, same ring, same badge). The answer is
the candidate whose window contains the projection of Q's centre.

Geometry (OpenCV camera axes, metres). A point is a window's centre pixel ``(col + 0.5, row + 0.5)`` at the median
of the window's valid metric depth (a flat window, so the median is the surface there, not an edge). It is
back-projected with the intrinsics, moved into the other camera with ``relative_pose`` and projected. A point is
VISIBLE in a frame when that frame's depth at the pixel it projects into agrees with its projected z within
``occlusion_tol`` (relative); else something stands in front of it ("occluded").

Construction: the four candidates are drawn first, as a set, and only then is one of them made the answer.

1. Frame pair (poses only, nothing decoded): frame 1 uniform among the posed frames, frame 2 uniform among the
   posed frames ``min_gap_s``..``max_gap_s`` away from it (before OR after, so motions come in both directions) whose
   viewpoint change ``view_deg`` = relative rotation angle + ``atan(baseline / ref_depth)`` lies in
   [``min_view_deg``, ``max_view_deg``]. Then both frames are decoded.
2. Matchable windows: flat, mostly valid windows of frame 2 (:func:`~.depth_common.flat_candidates`, a uniform
   random subset) whose point lands inside frame 1 with a marker's margin ("out_of_view" otherwise), is visible
   there ("occluded"), lands on a flat valid window of frame 1 ("not_flat_in_view1"), and whose frame-1 window's
   point projects back into frame 2 within ``centre_tol_frac`` x the window of the candidate's centre and is visible
   in frame 2 ("round_trip"). Each matchable window could be the answer: its frame-1 window is its query.
3. The set: four matchable windows, pairwise: far apart in frame 2 (markers never cover another window), within
   ``depth_band`` of each other's depth (relative), within ``colour_band`` (mean RGB distance) and ``texture_band``
   (|log| ratio of grey std + 4) of each other's appearance, at least ``min_3d_frac`` x their depth apart in 3-D (no
   distractor shows the query's point too), and their frame-1 windows within the crop's slack of each other (so the
   crop can hold any of them). Every condition is symmetric in the four: a random 4-clique of the compatibility
   graph.
4. Only now: the answer is one of the four, uniformly; the query is its frame-1 window. The query's position INSIDE
   the crop is drawn uniformly among the positions that would keep the crop inside frame 1 for ANY of the four
   queries (a set symmetric in them), and the crop is placed around the query there.

Why nothing but the pictures' content gives the answer away. The candidates' positions, windows, depths and
appearance statistics are a function of the set, which does not depend on which member becomes the answer; the
answer is drawn uniformly afterwards; the query's displayed position is uniform on a region that is the same
whichever member is the answer, and the crop's place in frame 1 is not shown. So, given everything a solver can read
without matching content (the four markers' positions in frame 2, their order, the query's position in image 1,
the statistics of the marked regions, the letters, the marker colour), each candidate is the answer with probability
exactly 1/4: "the candidate nearest the query's position", "nearest the image centre", "moved the least", "the
most typical region" all score chance. Showing frame 1 whole would not do: the cameras move little between frames
(the true candidate then sits near the query's position and on its row, 80 % of the time in the demo sequences),
and distractors drawn like true displacements would all crowd one spot. The letter is the builder's balanced slot.

The crop is half of frame 1's sides by default: the four queries must fit one crop's slack, and four markers far
enough apart in frame 2 rarely have correspondences closer together than half the frame (at 240 x 180, level 3,
47 % of the draws made a sample with a 60 % crop, 73 % with a 50 % one).

Levels raise the viewpoint change and tighten the distractors' similarity bands (depth, colour, texture);
``difficulty`` measures both on each sample (``view_deg``, ``parallax_deg``, ``scale_change``, and the closest
distractor's ``depth_gap`` and ``appearance_gap``). No video form: a clip from frame 1 to frame 2 would show the
whole of frame 1, and the query's place in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..core import Sample, Source
from ..errors import Reject
from ..imaging import grey
from ..registry import Task, check, register_task
from ..sequence import Frame, Sequence, back_project, project, relative_pose, transform
from .depth_common import (
    BOX_CONVENTION,
    DepthField,
    DepthWindowConfig,
    MarkerGeometry,
    draw_markers,
    flat_candidates,
    gather_windows,
    marker_geometry,
    nan_quantiles,
    prepare_depth,
    region_record,
    window_box,
)

LETTERS = "ABCD"
QUERY_LABEL = "Q"
TASK = "cross_view"
TEXTURE_FLOOR = 4.0  # grey levels added to a window's std before the log ratio (sensor / JPEG noise)
QUESTION = (
    "<image>\n<image>\n"
    "The two images show one scene from two camera positions: the first is a part of one video frame, the second "
    "a whole frame taken at another moment. In the first image one small region is circled in red and tagged Q. "
    "In the second image four small regions are circled in red and tagged A, B, C and D. Which of them shows the "
    "same point of the scene as the centre of region Q?\n"
    "Answer with the letter of the region (A, B, C or D)."
)
FAILS = ("out_of_view", "occluded", "not_flat_in_view1", "round_trip")  # matchable-window failures, in test order


@dataclass
class CrossViewConfig(DepthWindowConfig):
    window_frac: float = 0.06
    min_gap_s: float = 0.3  # time between the two frames (either order)
    max_gap_s: float = 4.0
    min_view_deg: float = 6.0  # viewpoint change: rotation angle + atan(baseline / ref_depth), degrees
    max_view_deg: float = 40.0
    ref_depth: float = 2.5  # metres: the viewing distance that turns the baseline into an angle
    crop_frac: float = 0.5  # image 1 is this share of frame 1's width and height
    occlusion_tol: float = 0.05  # visible: the frame's depth at the projection within this share of the projected z
    centre_tol_frac: float = 0.25  # round trip lands within this share of the window side of the candidate's centre
    depth_band: float = 0.4  # candidates pairwise: |z_a - z_b| <= band * min(z_a, z_b)
    colour_band: float = 70.0  # candidates pairwise: distance of mean RGB (0-255 units) at most this
    texture_band: float = 0.8  # candidates pairwise: |log((std_a + 4) / (std_b + 4))| of grey at most this
    min_3d_frac: float = 0.15  # candidates pairwise: 3-D distance >= this * their mean depth
    pool_size: int = 240  # flat frame-2 windows examined per pair (a uniform random subset)
    max_pair_tries: int = 6  # frame pairs decoded before rejecting with the commonest reason
    max_set_tries: int = 200  # random 4-cliques tried per pair
    max_candidates: int = 1500
    min_candidates: int = 48

    def validate(self) -> None:
        key = f"task.{TASK}"
        self._validate_common(key)
        check(0.0 < self.min_gap_s <= self.max_gap_s, f"{key}.min_gap_s",
              f"must be in (0, max_gap_s={self.max_gap_s}], got {self.min_gap_s}")
        check(self.max_gap_s <= 3600.0, f"{key}.max_gap_s", f"must be at most 3600 s, got {self.max_gap_s}")
        check(0.0 <= self.min_view_deg < self.max_view_deg <= 180.0, f"{key}.min_view_deg",
              f"needs 0 <= min_view_deg < max_view_deg <= 180, got {self.min_view_deg} and {self.max_view_deg}")
        check(0.05 <= self.ref_depth <= 100.0, f"{key}.ref_depth", f"must be in [0.05, 100] metres, got {self.ref_depth}")
        check(0.3 <= self.crop_frac <= 0.9, f"{key}.crop_frac", f"must be in [0.3, 0.9], got {self.crop_frac}")
        check(0.0 < self.occlusion_tol <= 0.5, f"{key}.occlusion_tol", f"must be in (0, 0.5], got {self.occlusion_tol}")
        check(0.0 < self.centre_tol_frac <= 0.5, f"{key}.centre_tol_frac",
              f"must be in (0, 0.5] (the projection must stay inside the window), got {self.centre_tol_frac}")
        check(0.0 < self.depth_band <= 10.0, f"{key}.depth_band", f"must be in (0, 10], got {self.depth_band}")
        check(0.0 < self.colour_band <= 450.0, f"{key}.colour_band", f"must be in (0, 450], got {self.colour_band}")
        check(0.0 < self.texture_band <= 10.0, f"{key}.texture_band", f"must be in (0, 10], got {self.texture_band}")
        check(0.0 <= self.min_3d_frac <= 2.0, f"{key}.min_3d_frac", f"must be in [0, 2], got {self.min_3d_frac}")
        check(8 <= self.pool_size <= self.max_candidates, f"{key}.pool_size",
              f"must be in [8, max_candidates={self.max_candidates}], got {self.pool_size}")
        check(1 <= self.max_pair_tries <= 100, f"{key}.max_pair_tries", f"must be in [1, 100], got {self.max_pair_tries}")
        check(1 <= self.max_set_tries <= 10_000, f"{key}.max_set_tries", f"must be in [1, 10000], got {self.max_set_tries}")


def rotation_deg(rel: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) of rigid transforms (..., 4, 4), from the trace (clipped against rounding)."""
    tr = np.trace(rel[..., :3, :3], axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def view_change_deg(rel: np.ndarray, ref_depth: float) -> np.ndarray:
    """Viewpoint change of camera pairs: rotation angle + the angle a ``ref_depth`` away subtends over the baseline."""
    baseline = np.linalg.norm(rel[..., :3, 3], axis=-1)
    return rotation_deg(rel) + np.degrees(np.arctan2(baseline, ref_depth))


def appearance(rgb: np.ndarray, cx: np.ndarray, cy: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean RGB (n, 3), grey std (n,)) of the windows centred at (cx, cy), float64."""
    means = np.stack([gather_windows(rgb[..., c], cx, cy, half).mean(axis=1, dtype=np.float64) for c in range(3)], 1)
    g = gather_windows(grey(rgb), cx, cy, half).astype(np.float64)
    return means, g.std(axis=1)


@dataclass
class Matchable:
    """Frame-2 windows whose point is seen in frame 1 on a flat window (arrays of length n)."""

    cx: np.ndarray  # frame-2 window centres (pixels)
    cy: np.ndarray
    z: np.ndarray  # frame-2 window median depth
    point: np.ndarray  # (n, 3) camera-2 coordinates of the window's point
    qx: np.ndarray  # frame-1 window centres (pixels): the query each would have
    qy: np.ndarray
    colour: np.ndarray  # (n, 3) mean RGB in frame 2
    texture: np.ndarray  # grey std in frame 2

    def __len__(self) -> int:
        return int(self.cx.size)


@register_task
class CrossViewTask(Task):
    name = TASK
    config_cls = CrossViewConfig
    input_kind = "posed"
    needs_depth = True
    description = "Which of four marked regions of frame 2 shows the surface point marked in frame 1 (posed RGB-D)."

    # Level by level the two views differ more (view_deg bands 4-14, 10-26, 20-50 degrees) and the four candidates
    # look more alike (pairwise depth, colour and texture bands tighten; level 1 leaves colour and texture free).
    # Measured per sample by ``difficulty``: view_deg rises, depth_gap and appearance_gap fall.
    levels = {
        1: {"min_view_deg": 4.0, "max_view_deg": 14.0, "depth_band": 1.0, "colour_band": 450.0, "texture_band": 10.0},
        2: {"min_view_deg": 10.0, "max_view_deg": 26.0, "depth_band": 0.4, "colour_band": 70.0, "texture_band": 0.8},
        3: {"min_view_deg": 20.0, "max_view_deg": 50.0, "depth_band": 0.2, "colour_band": 45.0, "texture_band": 0.5},
    }

    config: CrossViewConfig

    @property
    def num_slots(self) -> int:
        return len(LETTERS)

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """``view_deg`` (the pair's viewpoint change), ``parallax_deg`` (angle at the query's point between the two
        camera centres), ``scale_change`` (|log| of the point's depth ratio between the views); of the distractor
        closest to the answer: ``depth_gap`` (relative depth difference) and ``appearance_gap`` (mean RGB distance
        / 255) - lower gaps mean look-alike distractors."""
        cands = metadata["candidates"]
        true = next(c for c in cands if c["label"] == metadata["answer"])
        others = [c for c in cands if c is not true]
        zt = true["median_farness"]
        colour_gap = min(float(np.linalg.norm(np.subtract(c["colour"], true["colour"]))) for c in others)
        return {
            "view_deg": round(float(metadata["view"]["view_deg"]), 6),
            "parallax_deg": round(float(metadata["view"]["parallax_deg"]), 6),
            "scale_change": round(abs(math.log(metadata["query"]["median_farness"] / metadata["projection"][2])), 6),
            "depth_gap": round(min(abs(c["median_farness"] - zt) / zt for c in others), 6),
            "appearance_gap": round(colour_gap / 255.0, 6),
        }

    # -------------------------------------------------------------------------------------------- generate

    def generate(self, source: Sequence, rng: np.random.Generator, slot: int = 0) -> Sample:
        cfg = self.config
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"{TASK}: slot must be in [0, {self.num_slots}), got {slot}")
        if not isinstance(source, Sequence):
            raise Reject(f"{TASK}/no_pose", f"{getattr(source, 'id', source)} is not a sequence")
        posed = source.posed_indices()
        if source.intrinsics is None or not source.has_depth or posed.size < 2:
            raise Reject(f"{TASK}/no_pose", f"{source.id}: needs intrinsics, depth and >= 2 posed frames "
                                            f"({posed.size} posed)")
        poses = np.stack([source.pose(int(i)) for i in posed])
        times = source.timestamps[posed]
        reasons: list[tuple[str, str]] = []
        for _ in range(cfg.max_pair_tries):
            a = int(rng.integers(posed.size))
            near = np.arange(np.searchsorted(times, times[a] - cfg.max_gap_s),
                             np.searchsorted(times, times[a] + cfg.max_gap_s, "right"))
            near = near[np.abs(times[near] - times[a]) >= cfg.min_gap_s]
            rel = relative_pose(poses[a], poses[near]) if near.size else np.zeros((0, 4, 4))
            view = view_change_deg(rel, cfg.ref_depth)
            ok = near[(view >= cfg.min_view_deg) & (view <= cfg.max_view_deg)]
            if ok.size == 0:
                reasons.append((f"{TASK}/no_pair", f"frame {int(posed[a])}: none of {near.size} frames "
                                f"{cfg.min_gap_s}-{cfg.max_gap_s} s away changes the view by {cfg.min_view_deg}-"
                                f"{cfg.max_view_deg} degrees"))
                continue
            b = int(ok[int(rng.integers(ok.size))])
            f1, f2 = source.frames([int(posed[a]), int(posed[b])])
            try:
                return self._sample(source, f1, f2, rng, slot)
            except Reject as exc:
                reasons.append((exc.reason, exc.detail))
        names = [r for r, _ in reasons]
        commonest = max(set(names), key=lambda r: (names.count(r), -names.index(r)))
        raise Reject(commonest, next(d for r, d in reversed(reasons) if r == commonest))

    def _field(self, frame: Frame) -> DepthField:
        cfg = self.config
        src = frame.source
        if src.depth is None or src.depth.kind != "metric":
            kind = None if src.depth is None else src.depth.kind
            raise Reject(f"{TASK}/no_depth", f"{src.id}: needs metric depth, got {kind}")
        return prepare_depth(src, TASK, cfg.norm_low_pct, cfg.norm_high_pct, cfg.min_map_valid_fraction,
                             flat_reason=f"{TASK}/no_flat_regions")

    def _matchable(self, f1: Frame, f2: Frame, field1: DepthField, field2: DepthField, geom: MarkerGeometry,
                   rng: np.random.Generator) -> tuple[Matchable, dict[str, int], int]:
        """Step 2 of the construction, vectorised over a random subset of frame 2's flat windows."""
        cfg = self.config
        k = f1.intrinsics
        w, h = k.width, k.height
        cands = flat_candidates(field2, geom, cfg, rng, lambda found: len(found) >= cfg.pool_size)
        fails = dict.fromkeys(FAILS, 0)
        if len(cands) == 0:
            return Matchable(*([np.zeros(0)] * 8)), fails, 0
        half = geom.half
        z2 = field2.lo + cands.median * field2.depth_range
        pts2 = back_project(cands.cx + 0.5, cands.cy + 0.5, z2, k)
        u1, v1, z1 = project(transform(relative_pose(f1.pose, f2.pose), pts2), k)
        m = geom.margin
        inside = (z1 > 0) & (u1 >= m) & (u1 < w - m) & (v1 >= m) & (v1 < h - m)
        qx = np.where(inside, np.floor(np.nan_to_num(u1)), m).astype(np.int64)
        qy = np.where(inside, np.floor(np.nan_to_num(v1)), m).astype(np.int64)
        seen1 = field1.far[qy, qx]
        with np.errstate(invalid="ignore"):
            visible = inside & (np.abs(seen1 - z1) <= cfg.occlusion_tol * z1)
        rows = gather_windows(field1.far, qx, qy, half).astype(np.float64)
        vf = np.count_nonzero(~np.isnan(rows), axis=1) / rows.shape[1]
        p10, med1, p90 = nan_quantiles(rows, (0.1, 0.5, 0.9), overwrite_input=True)
        flat = visible & (vf >= cfg.min_valid_fraction) & (field1.to_norm(p90) - field1.to_norm(p10) < cfg.flat_tol)
        # the way back: the query's own point (its window's median depth) must land on this candidate and be seen there
        back = back_project(qx + 0.5, qy + 0.5, np.where(flat, med1, 1.0), k)
        u2, v2, zb = project(transform(relative_pose(f2.pose, f1.pose), back), k)
        close = flat & (zb > 0) & (np.hypot(u2 - cands.cx - 0.5, v2 - cands.cy - 0.5) <= cfg.centre_tol_frac * geom.window)
        px = np.clip(np.floor(np.nan_to_num(u2)), 0, w - 1).astype(np.int64)
        py = np.clip(np.floor(np.nan_to_num(v2)), 0, h - 1).astype(np.int64)
        with np.errstate(invalid="ignore"):
            good = close & (np.abs(field2.far[py, px] - zb) <= cfg.occlusion_tol * zb)
        fails["out_of_view"] = int(np.count_nonzero(~inside))
        fails["occluded"] = int(np.count_nonzero(inside & ~visible))
        fails["not_flat_in_view1"] = int(np.count_nonzero(visible & ~flat))
        fails["round_trip"] = int(np.count_nonzero(flat & ~good))
        keep = np.flatnonzero(good)
        colour, texture = appearance(f2.rgb, cands.cx[keep], cands.cy[keep], half)
        return (Matchable(cands.cx[keep], cands.cy[keep], z2[keep], pts2[keep], qx[keep], qy[keep], colour, texture),
                fails, len(cands))

    def _compatible(self, mt: Matchable, geom: MarkerGeometry, slack: tuple[int, int]) -> np.ndarray:
        """(n, n) bool: every pairwise condition of step 3 (symmetric, False on the diagonal)."""
        cfg = self.config
        d2 = np.hypot(mt.cx[:, None] - mt.cx[None], mt.cy[:, None] - mt.cy[None])
        zmin = np.minimum(mt.z[:, None], mt.z[None])
        depth = np.abs(mt.z[:, None] - mt.z[None]) <= cfg.depth_band * zmin
        colour = np.linalg.norm(mt.colour[:, None] - mt.colour[None], axis=2) <= cfg.colour_band
        tex = np.log(mt.texture + TEXTURE_FLOOR)
        texture = np.abs(tex[:, None] - tex[None]) <= cfg.texture_band
        dist3d = np.linalg.norm(mt.point[:, None] - mt.point[None], axis=2)
        apart3d = dist3d >= cfg.min_3d_frac * 0.5 * (mt.z[:, None] + mt.z[None])
        crop = (np.abs(mt.qx[:, None] - mt.qx[None]) <= slack[0]) & (np.abs(mt.qy[:, None] - mt.qy[None]) <= slack[1])
        ok = (d2 >= geom.min_distance) & depth & colour & texture & apart3d & crop
        np.fill_diagonal(ok, False)
        return ok

    @staticmethod
    def _clique(ok: np.ndarray, rng: np.random.Generator, tries: int) -> list[int] | None:
        """A random 4-clique of ``ok``: a random vertex, then random common neighbours (None after ``tries``)."""
        degree = ok.sum(axis=1)
        starts = np.flatnonzero(degree >= 3)
        if starts.size == 0:
            return None
        for _ in range(tries):
            chosen = [int(starts[int(rng.integers(starts.size))])]
            common = ok[chosen[0]].copy()
            while len(chosen) < 4:
                pool = np.flatnonzero(common)
                if pool.size == 0:
                    break
                nxt = int(pool[int(rng.integers(pool.size))])
                chosen.append(nxt)
                common &= ok[nxt]
            if len(chosen) == 4:
                return chosen
        return None

    @staticmethod
    def _answer_member(rng: np.random.Generator) -> int:
        """Which member of the set becomes the answer: uniform, drawn after the set (a test forces each in turn)."""
        return int(rng.integers(4))

    def _sample(self, seq: Sequence, f1: Frame, f2: Frame, rng: np.random.Generator, slot: int) -> Sample:
        cfg = self.config
        k = f1.intrinsics
        if (f1.source.width, f1.source.height) != (k.width, k.height):
            raise Reject(f"{TASK}/no_pose", f"{f1.source.id}: frame {f1.source.width}x{f1.source.height} != "
                                            f"intrinsics {k.width}x{k.height}")
        field1, field2 = self._field(f1), self._field(f2)
        geom = marker_geometry(k.width, k.height, cfg)
        cw, ch = int(round(cfg.crop_frac * k.width)), int(round(cfg.crop_frac * k.height))
        if min(cw, ch) < 2 * geom.margin + geom.window:
            raise Reject(f"{TASK}/too_small", f"a {cw}x{ch} crop cannot hold a marker of margin {geom.margin}")
        slack = (k.width - cw, k.height - ch)
        mt, fails, pool = self._matchable(f1, f2, field1, field2, geom, rng)
        if len(mt) < 4:
            reason = max(FAILS, key=lambda r: fails[r])
            raise Reject(f"{TASK}/{reason}" if pool else f"{TASK}/no_flat_regions",
                         f"{len(mt)} of {pool} flat frame-2 windows are matchable in frame {f1.index} ({fails})")
        members = self._clique(self._compatible(mt, geom, slack), rng, cfg.max_set_tries)
        if members is None:
            raise Reject(f"{TASK}/no_candidate_set", f"no 4 of {len(mt)} matchable windows are spaced, alike and "
                                                     f"within the crop's slack {slack}")
        true = members[self._answer_member(rng)]
        qx, qy = mt.qx[members], mt.qy[members]
        m = geom.margin
        lo_x, hi_x = max(m, int(qx.max()) - slack[0]), min(cw - 1 - m, int(qx.min()))
        lo_y, hi_y = max(m, int(qy.max()) - slack[1]), min(ch - 1 - m, int(qy.min()))
        dx, dy = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))  # the query's place in the crop
        ox, oy = int(mt.qx[true]) - dx, int(mt.qy[true]) - dy
        return self._assemble(seq, f1, f2, field1, field2, geom, mt, members, true, (ox, oy, cw, ch), (dx, dy),
                              slot, rng, {"matchable": len(mt), "flat_windows": pool, "fails": fails})

    def _assemble(self, seq: Sequence, f1: Frame, f2: Frame, field1: DepthField, field2: DepthField,
                  geom: MarkerGeometry, mt: Matchable, members: list[int], true: int, crop: tuple[int, int, int, int],
                  shown: tuple[int, int], slot: int, rng: np.random.Generator, stats: dict[str, Any]) -> Sample:
        cfg = self.config
        k = f1.intrinsics
        ox, oy, cw, ch = crop
        others = [i for i in members if i != true]
        others = [others[int(j)] for j in rng.permutation(3)]
        order = others[:slot] + [true] + others[slot:]
        half = geom.half
        candidates = []
        for letter, i in zip(LETTERS, order):
            rec = region_record(field2, int(mt.cx[i]), int(mt.cy[i]), half)
            candidates.append({"label": letter, **rec, "point": [float(v) for v in mt.point[i]],
                               "frame1_center": [int(mt.qx[i]), int(mt.qy[i])],
                               "colour": [round(float(v), 4) for v in mt.colour[i]],
                               "texture": round(float(mt.texture[i]), 4)})
        image2, badges = draw_markers(f2.source, candidates, geom, TASK)
        for c, badge in zip(candidates, badges):
            c["badge_center"] = badge
        query = region_record(field1, int(mt.qx[true]), int(mt.qy[true]), half)
        p1 = back_project(np.array([query["center"][0] + 0.5]), np.array([query["center"][1] + 0.5]),
                          np.array([query["median_farness"]]), k)
        rel21 = relative_pose(f2.pose, f1.pose)  # camera 1 in camera 2's frame: maps camera-1 points into camera 2
        u2, v2, z2 = (float(a[0]) for a in project(transform(rel21, p1), k))
        crop_rgb = np.ascontiguousarray(f1.rgb[oy:oy + ch, ox:ox + cw])
        crop_src = Source(id=f"{f1.source.id}@crop", rgb=crop_rgb, digest=f1.source.digest)
        dx, dy = shown
        shown_q = {"label": QUERY_LABEL, "center": [dx, dy], "box": window_box(dx, dy, half)}
        image1, qbadge = draw_markers(crop_src, [shown_q], geom, TASK)
        centres = np.array([query["center"][0] + 0.5, query["center"][1] + 0.5])
        c1 = f1.pose[:3, 3]
        c2 = f2.pose[:3, 3]
        world = f1.pose[:3, :3] @ p1[0] + c1
        ray1, ray2 = c1 - world, c2 - world
        cos = ray1 @ ray2 / (np.linalg.norm(ray1) * np.linalg.norm(ray2))
        parallax = math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))
        rel12 = relative_pose(f1.pose, f2.pose)
        metadata: dict[str, Any] = {
            "frames": [f1.index, f2.index],  # as shown: image 1 is cut from frame 1, image 2 is frame 2
            "timestamps": [f1.timestamp, f2.timestamp],
            "reversed": f2.timestamp < f1.timestamp,
            "frame_digests": [f1.source.digest, f2.source.digest],
            "poses": [np.asarray(f1.pose).tolist(), np.asarray(f2.pose).tolist()],
            "relative_pose": rel12.tolist(),  # camera 2 in camera 1's frame
            "intrinsics": k.to_json(),
            "depth_kind": field1.kind,
            "normalisation": [field1.normalisation_metadata(), field2.normalisation_metadata()],
            "image_sizes": [[cw, ch], [k.width, k.height]],
            "crop_box": [ox, oy, ox + cw, oy + ch],  # image 1 = frame 1 [y0:y1, x0:x1]
            **geom.metadata(),
            "box_convention": BOX_CONVENTION,
            "query": {**query, "label": QUERY_LABEL, "shown_center": [dx, dy], "shown_box": shown_q["box"],
                      "badge_center": qbadge[0], "point": [float(v) for v in p1[0]],
                      "pixel": [float(v) for v in centres]},
            "projection": [u2, v2, z2],  # the query's point in frame 2: (u, v) pixels, z metres
            "candidates": candidates,
            "answer": LETTERS[slot],
            "view": {"view_deg": float(view_change_deg(rel12, cfg.ref_depth)), "rotation_deg": float(rotation_deg(rel12)),
                     "baseline": float(np.linalg.norm(rel12[:3, 3])), "parallax_deg": parallax},
            "thresholds": {
                "min_gap_s": cfg.min_gap_s, "max_gap_s": cfg.max_gap_s, "min_view_deg": cfg.min_view_deg,
                "max_view_deg": cfg.max_view_deg, "ref_depth": cfg.ref_depth, "crop_frac": cfg.crop_frac,
                "occlusion_tol": cfg.occlusion_tol, "centre_tol_frac": cfg.centre_tol_frac, "depth_band": cfg.depth_band,
                "colour_band": cfg.colour_band, "texture_band": cfg.texture_band, "min_3d_frac": cfg.min_3d_frac,
                "flat_tol": cfg.flat_tol, "min_valid_fraction": cfg.min_valid_fraction,
            },
            "pool": stats,
        }
        return Sample(self.name, self.name, QUESTION, [image1, image2], LETTERS[slot], metadata)

    # ---------------------------------------------------------------------------------------------- verify

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Sequence | None) -> list[str]:
        """Re-open the two recorded frames, re-read frame 1's depth in the query box by slicing, project with plain
        numpy from the SOURCE's poses and intrinsics, check visibility and which recorded box holds the projection;
        check the markers and that the shown images are those frames (see :mod:`.cross_view_check`)."""
        from .cross_view_check import verify_sample

        return verify_sample(images, answer, metadata, source)
