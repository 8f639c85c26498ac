"""Camera motion (posed RGB-D sequence): how does the camera move from the first shown frame to the second?

Geometry. ``T = relative_pose(pose1, pose2)`` is camera 2 in camera 1's frame (OpenCV axes: x right, y DOWN, z
forward). Its translation ``t`` gives ``right = t_x``, ``up = -t_y``, ``forward = t_z`` (metres). Its rotation is
split as ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` about camera 1's own axes (:func:`euler_yxz`): ``yaw = atan2(R[0, 2],
R[2, 2])`` is where camera 2's optical axis points in camera 1's x-z plane, POSITIVE = TURNED RIGHT (a rotation
about +y, which points down, carries +z towards +x: the scene then shifts left in the image); ``pitch =
asin(-R[1, 2])``, positive = looking up; ``roll = atan2(R[1, 0], R[1, 1])``. The tests check these signs on
hand-built poses and on pixels.

Which motion dominates. Metres and degrees do not compare, so every part of the motion is turned into the image
motion it causes ON ITS OWN: a ``flow_grid`` x rows grid of frame-1 pixel centres with valid metric depth is
back-projected with the intrinsics, moved and projected again; a flow is the mean displacement over the grid in
image widths (a point that ends up behind the camera, or any point, counts one width at most). Each rotation (yaw,
pitch, roll) is applied alone. The translation is applied whole and its flow is shared among right/up/forward in
proportion to the metres along each: among translations the direction of travel decides (where the focus of
expansion lies; a camera pitched down walking level moves mostly "forward", not partly "up"), against the
rotations the size of its image motion does (0.2 m sideways is a big motion in front of a wall and nothing
outdoors). The largest of the six flows names the answer (right -> move right/left by its sign, forward -> move
forward/backward, up -> move up/down, yaw -> turn right/left). Rejected pairs: less than ``min_overlap`` of the grid
still in view in frame 2 ("camera_motion/no_overlap"), |pitch| or |roll| above ``max_tilt_deg`` ("tilt"), the
largest flow below ``min_flow`` ("static"), pitch, roll or (without ``vertical``) up the largest ("off_axis"), the
second largest at least ``max_ratio`` x the largest ("ambiguous"), a detour on the way (at some posed frame between
the two, another flow reached ``max_ratio`` x the final largest, or the largest exceeded ``max_detour`` x its final
value: "detour"; the clip of the video form then shows one motion), and for the levels a pair clearer than asked
(ratio below ``min_ratio`` or largest flow above ``max_flow``: "too_clear"). Also "no_pose" (no two posed frames
``min_gap_s``..``max_gap_s`` apart) and "no_depth" (less than ``min_valid_depth`` of the grid valid). The six
components, their flows, the whole translation's flow, the ratio and the overlap are in the metadata.

Frame pair, and what is balanced. A camera mostly does one thing (walks forward, pans), so the draw does not
follow the data, and nothing that decides whether a draw is accepted depends on the answer:

- a first frame 1 is drawn among the posed frames with a frame ``min_gap_s``..``max_gap_s`` away (its window; with
  ``reverse``, the default, a window runs both ways in time: frame 2 may be filmed before frame 1, and the question
  never says which image was filmed first) and decoded (the next one if too little of its depth is valid). Its grid
  stands in for the scene seen from every frame 1 (a room keeps its scale): from the poses alone, every window is
  labelled in both time directions (vectorised), which says which motions each frame 1 may show. A few frames 1
  covering every motion seen that way (at most ``max_pair_tries`` decoded beyond the first, each drawn among the
  frames covering most motions not covered yet; a motion not confirmed gets a second frame) are decoded and their
  windows labelled exactly, both ways. Only what is seen exactly counts (the hits, each with its time direction);
- a confusable pair (below) is shown when BOTH its motions are among the hits, for every pair (forward/backward
  too: walking forward shows "move backward" only when reversed windows are labelled and pass); fewer than two
  shown pairs: "camera_motion/few_motions" (a clip of one motion gives no sample; no clear pair at all: the
  commonest reason above). The shown pairs are fixed before anything about the answer is drawn, so acceptance
  cannot favour one answer (drawing the time direction first and rejecting when it showed too little did: the
  direction the camera mostly went won);
- then the answer's pair is drawn uniformly among the shown pairs and the distractor pair among the rest, the
  motion uniformly within the pair, and the frame pair uniformly among that motion's hits in either time direction
  (``metadata["reversed"]``). What this guarantees: GIVEN THE OPTIONS (two whole pairs A, B), the answer is in A
  half of the time and each motion of its pair half of that, so the option words tell a blind solver nothing. The
  marginal answer distribution over a dataset is not flat: it follows which pairs the sequences show (a sequence
  showing three pairs puts each in the options two thirds of the time, one showing two always both): on a 400-row
  demo build (demo sequences v2) forward/backward was in 48 % of the option sets and 23 % of the answers. Reversing a pair gives the inverse motion's
  direction but not exactly its flows (they are measured from frame 1's depth, and the other frame is then frame
  1), so a reversed window may pass or fail where the forward one did not: both are labelled, neither assumed.

Options, and why they give nothing away. The motions come in confusable pairs that shift the image the same way:
(move left, turn left), (move right, turn right), (move forward, move backward), (move up, move down). The four
options are the answer's pair plus one other pair shown by the sequence, drawn uniformly: the answer always stands next to the motion it
is most easily confused with (telling move left from turn left needs parallax, not "things shifted right"), and
the options are two whole pairs whatever the answer, so with the answer balanced within each option set (above)
their words say nothing. Letters are
shuffled with the answer at ``slot``. ``ssrl audit`` measures the letter, word and option-set priors and boosted
trees on the options and frame statistics (``data_builders/task_hooks/camera_motion.py``).

Levels move a band of the ratio (second/largest flow) up towards ``max_ratio`` and the largest flow down;
``difficulty`` measures both. Video form (``videos``): one clip of ``video_frames`` frames evenly spaced from frame 1
to frame 2 in the order shown, same answer. ``verify`` (:mod:`.camera_motion_check`) recomputes everything from the
re-opened sequence by another route.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..core import Sample
from ..errors import Reject, SourceError
from ..registry import Task, TaskConfig, check, register_task
from ..sequence import Intrinsics, Sequence, back_project, project, relative_pose

LETTERS = "ABCD"
PAIRS: tuple[tuple[str, str], ...] = (("move left", "turn left"), ("move right", "turn right"),
                                      ("move forward", "move backward"), ("move up", "move down"))
COMPONENTS = ("right", "up", "forward", "yaw", "pitch", "roll")  # flow keys; the first four name answers
LABEL_OF = {"right": ("move right", "move left"), "up": ("move up", "move down"),
            "forward": ("move forward", "move backward"), "yaw": ("turn right", "turn left")}
COMPONENT_OF = {w: c for c, pair in LABEL_OF.items() for w in pair}
BEHIND = 0.05  # metres: a point nearer than this to the moved camera's image plane counts as lost (flow = cap)
FLOW_CAP = 1.0  # image widths: the most one grid point contributes
PROXY_POINTS = 64  # grid points of the first decoded frame used to screen the other frames 1 from their poses
PROXY_FRAMES = 48  # frames 1 screened at most
QUESTION = (
    "The two images were taken by the same camera moving through a still scene. What is the dominant motion of the "
    "camera from where it took the first image to where it took the second, as seen from the camera at the first "
    "image? \"Move\" means the camera travels that way without rotating; \"turn\" means it rotates in place towards "
    "that side."
)
VIDEO_QUESTION = "How does the camera move in this video? Pick the dominant motion."


@dataclass
class CameraMotionConfig(TaskConfig):
    vertical: bool = False  # offer "move up" / "move down" (vertical motion is an answer, not off-axis)
    videos: bool = False  # add the video form (one clip from frame 1 to frame 2)
    video_frames: int = 8  # frames of the clip, evenly spaced, both ends included (fewer if the pair is closer)
    min_gap_s: float = 0.3  # frames 1 and 2 are at least this many seconds apart
    max_gap_s: float = 3.0  # ... and this many at most
    max_pair_tries: int = 8  # frames 1 decoded and labelled exactly at most (one per motion the poses suggest)
    flow_grid: int = 24  # grid columns over frame 1 (rows follow the aspect) where the flows are measured
    min_valid_depth: float = 0.25  # share of the grid with valid metric depth
    min_overlap: float = 0.5  # share of the valid grid still inside frame 2
    max_tilt_deg: float = 10.0  # |pitch| and |roll| at most this
    min_flow: float = 0.04  # the largest flow (fraction of the image width) at least this
    max_ratio: float = 0.5  # second-largest flow below this x the largest
    min_ratio: float = 0.0  # levels: second-largest at least this x the largest (0: no floor)
    max_flow: Optional[float] = None  # levels: the largest flow at most this (None: no cap)
    # On the way from frame 1 to frame 2 (every posed frame between), the dominant flow never exceeds this x its
    # value at frame 2 and every other flow stays below max_ratio x it: the clip shows one motion, not a detour.
    max_detour: float = 1.25
    # Windows run both ways in time (frame 2 may be filmed first): a camera walking forward then also shows "move
    # backward" (and a pan one way its inverse), which whole pairs need. Off: only forward in time.
    reverse: bool = True

    def validate(self) -> None:
        key = "task.camera_motion"
        check(2 <= self.video_frames <= 64, f"{key}.video_frames", f"must be in [2, 64], got {self.video_frames}")
        check(math.isfinite(self.min_gap_s) and self.min_gap_s > 0, f"{key}.min_gap_s", f"must be > 0, got {self.min_gap_s}")
        check(math.isfinite(self.max_gap_s) and self.max_gap_s >= self.min_gap_s, f"{key}.max_gap_s",
              f"must be finite and >= min_gap_s={self.min_gap_s}, got {self.max_gap_s}")
        check(1 <= self.max_pair_tries <= 1000, f"{key}.max_pair_tries", f"must be in [1, 1000], got {self.max_pair_tries}")
        check(4 <= self.flow_grid <= 256, f"{key}.flow_grid", f"must be in [4, 256], got {self.flow_grid}")
        check(0.0 < self.min_valid_depth <= 1.0, f"{key}.min_valid_depth", f"must be in (0, 1], got {self.min_valid_depth}")
        check(0.0 < self.min_overlap <= 1.0, f"{key}.min_overlap", f"must be in (0, 1], got {self.min_overlap}")
        check(0.0 < self.max_tilt_deg <= 90.0, f"{key}.max_tilt_deg", f"must be in (0, 90], got {self.max_tilt_deg}")
        check(0.0 < self.min_flow < FLOW_CAP, f"{key}.min_flow", f"must be in (0, {FLOW_CAP}), got {self.min_flow}")
        check(0.0 < self.max_ratio <= 1.0, f"{key}.max_ratio", f"must be in (0, 1], got {self.max_ratio}")
        check(0.0 <= self.min_ratio < self.max_ratio, f"{key}.min_ratio",
              f"must be in [0, max_ratio={self.max_ratio}), got {self.min_ratio}")
        check(1.0 <= self.max_detour <= 10.0, f"{key}.max_detour", f"must be in [1, 10], got {self.max_detour}")
        if self.max_flow is not None:
            check(self.min_flow < self.max_flow <= FLOW_CAP, f"{key}.max_flow",
                  f"must be null or in (min_flow={self.min_flow}, {FLOW_CAP}], got {self.max_flow}")


# ------------------------------------------------------------------------------------------------ geometry


def euler_yxz(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(yaw, pitch, roll) in radians of rotations ``r`` (..., 3, 3) = Ry(yaw) Rx(pitch) Rz(roll); yaw > 0 = turned
    right, pitch > 0 = looking up (y points down)."""
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return yaw, pitch, roll


def grid_pixels(width: int, height: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer (col, row) of the grid's pixels: ``cols`` columns, rows by the aspect, at the centres of equal cells."""
    rows = max(2, int(round(cols * height / width)))
    c = np.floor((np.arange(cols) + 0.5) * width / cols).astype(np.int64)
    r = np.floor((np.arange(rows) + 0.5) * height / rows).astype(np.int64)
    cc, rr = np.meshgrid(c, r)
    return cc.ravel(), rr.ravel()


def grid_points(frame_depth, k: Intrinsics, cols: int) -> tuple[np.ndarray, float]:
    """Camera-frame points (N, 3) of the grid pixels with valid positive metric depth, and the valid share."""
    col, row = grid_pixels(k.width, k.height, cols)
    z = frame_depth.values[row, col].astype(np.float64)
    ok = frame_depth.valid[row, col] & np.isfinite(z) & (z > 0)
    return back_project(col[ok] + 0.5, row[ok] + 0.5, z[ok], k), float(ok.mean())


def _mean_flow(start: tuple[np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray, z: np.ndarray, k: Intrinsics) -> np.ndarray:
    """Mean over the last axis of the displacement (image widths, capped) from the pixels ``start`` (u, v) of the
    points to where the moved points (x, y, z) project."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.hypot(k.fx * x / z + k.cx - start[0], k.fy * y / z + k.cy - start[1]) / k.width
    d = np.where((z > BEHIND) & np.isfinite(d), np.minimum(d, FLOW_CAP), FLOW_CAP)
    return d.mean(axis=-1) if d.shape[-1] else np.zeros(d.shape[:-1])


def _turned(p: list[np.ndarray], axis: int, angle: np.ndarray) -> list[np.ndarray]:
    """rot^T p (the points seen from a camera turned by ``rot``) for rotations about one axis, as (C, N) arrays."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out = [np.broadcast_to(q[None], (len(angle), q.size)) for q in p]
    out[i], out[j] = c * p[i][None] + s * p[j][None], c * p[j][None] - s * p[i][None]
    return out


def motion_table(points: np.ndarray, rel: np.ndarray, k: Intrinsics) -> dict[str, np.ndarray]:
    """Per relative pose ``rel`` (C, 4, 4): the six components (metres, degrees), the image motion of each
    (``flow_<component>``: the whole translation's flow shared among its axes in proportion to the metres, each
    rotation's own flow), the whole translation's flow (``flow_translation``) and the share of ``points`` still in
    view after the whole motion (``overlap``)."""
    r, t = rel[:, :3, :3], rel[:, :3, 3]
    yaw, pitch, roll = euler_yxz(r)
    out = {"right": t[:, 0], "up": -t[:, 1], "forward": t[:, 2],
           "yaw": np.degrees(yaw), "pitch": np.degrees(pitch), "roll": np.degrees(roll)}
    u0, v0, _ = project(points, k)
    p = [points[:, 0], points[:, 1], points[:, 2]]
    shifted = [p[a][None] - t[:, a, None] for a in range(3)]  # the camera moved by t, not turned
    moved = _mean_flow((u0, v0), *shifted, k)
    norm = np.linalg.norm(t, axis=1)
    share = np.abs(t) / np.where(norm > 0, norm, 1.0)[:, None]
    out["flow_translation"] = moved
    for axis, name in enumerate(("right", "up", "forward")):
        out[f"flow_{name}"] = moved * share[:, axis]
    for axis, name, angle in ((1, "yaw", yaw), (0, "pitch", pitch), (2, "roll", roll)):
        out[f"flow_{name}"] = _mean_flow((u0, v0), *_turned(p, axis, angle), k)
    # R^T (p - t): the points seen from camera 2
    seen = [sum(shifted[j] * r[:, j, a, None] for j in range(3)) for a in range(3)]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = k.fx * seen[0] / seen[2] + k.cx, k.fy * seen[1] / seen[2] + k.cy
    inside = (seen[2] > BEHIND) & (u >= 0) & (u <= k.width) & (v >= 0) & (v <= k.height)
    out["overlap"] = inside.mean(axis=-1) if points.shape[0] else np.zeros(len(rel))
    return out


WORD_TABLE = np.array([[*LABEL_OF.get(c, ("", ""))] for c in COMPONENTS], dtype=object)  # (6, 2): +, - word


def label_pairs(table: dict[str, np.ndarray], cfg: CameraMotionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(label, reason, ratio, largest flow), shaped like the table's arrays (..., L): the last axis runs along the
    path away from frame 1 (so the way to each frame 2 is known). Label: the answer word ('' when rejected);
    reason: the reject key ('' when accepted)."""
    flows = np.stack([table[f"flow_{c}"] for c in COMPONENTS], axis=-1)  # (..., L, 6)
    order = np.argsort(-flows, axis=-1, kind="stable")
    top = order[..., :1]
    largest = np.take_along_axis(flows, top, -1)[..., 0]
    second = np.take_along_axis(flows, order[..., 1:2], -1)[..., 0]
    ratio = np.where(largest > 0, second / np.where(largest > 0, largest, 1.0), 1.0)
    dom = order[..., 0]
    signs = np.stack([table[c] for c in COMPONENTS], axis=-1)
    negative = np.take_along_axis(signs, top, -1)[..., 0] <= 0
    words = WORD_TABLE[dom, negative.astype(np.int64)]
    answerable = [COMPONENTS.index(c) for c in ("right", "forward", "yaw")] + ([COMPONENTS.index("up")] if cfg.vertical else [])
    # the way there: the largest each flow got at any frame up to this one (a clip shows all of them)
    run = np.maximum.accumulate(flows, axis=-2)
    run_dom = np.take_along_axis(run, top, -1)[..., 0]
    run_other = np.where(np.arange(len(COMPONENTS)) == top, -np.inf, run).max(axis=-1)
    tilt = np.maximum(np.abs(table["pitch"]), np.abs(table["roll"]))
    too_clear = ratio < cfg.min_ratio
    if cfg.max_flow is not None:
        too_clear |= largest > cfg.max_flow
    checks = [  # the first failing check names the reason
        ("camera_motion/no_overlap", table["overlap"] < cfg.min_overlap),
        ("camera_motion/tilt", tilt > cfg.max_tilt_deg),
        ("camera_motion/static", largest < cfg.min_flow),
        ("camera_motion/off_axis", ~np.isin(dom, answerable)),
        ("camera_motion/ambiguous", ratio >= cfg.max_ratio),
        ("camera_motion/detour", (run_other >= cfg.max_ratio * largest) | (run_dom > cfg.max_detour * largest)),
        ("camera_motion/too_clear", too_clear),
    ]
    reason = np.full(largest.shape, "", dtype=object)
    for name, bad in reversed(checks):
        reason = np.where(bad, name, reason)
    return np.where(reason == "", words, ""), reason, ratio, largest


def paths(times: np.ndarray, starts: np.ndarray, step: int, min_gap: float, max_gap: float) -> tuple[np.ndarray, np.ndarray]:
    """For each start position (in the posed frames' ``times``): the positions along the path away from it
    (``step`` +1: later frames, -1: earlier ones) up to ``max_gap`` seconds, padded with -1 to a common length, and
    which of them may be frame 2 (at least ``min_gap`` away)."""
    span = np.abs(times[None, :] - times[starts][:, None])
    ahead = (np.arange(len(times))[None, :] - starts[:, None]) * step > 0
    within = ahead & (span <= max_gap + 1e-9)
    length = within.sum(axis=1)
    width = int(length.max()) if length.size else 0
    pos = starts[:, None] + step * (1 + np.arange(width))[None, :]
    pad = np.arange(width)[None, :] >= length[:, None]
    pos = np.where(pad, -1, pos)
    far = ~pad & (np.abs(times[np.clip(pos, 0, len(times) - 1)] - times[starts][:, None]) >= min_gap - 1e-9)
    return pos, far


def options_for(answer: str, slot: int, others: list[tuple[str, str]], rng: np.random.Generator) -> dict[str, str]:
    """The answer's confusable pair plus one of ``others`` (pairs) drawn uniformly, shuffled, the answer at letter
    ``slot``."""
    own = next(p for p in PAIRS if answer in p)
    words = [w for w in (*own, *others[int(rng.integers(len(others)))]) if w != answer]
    words = [words[i] for i in rng.permutation(len(words))]
    texts = words[:slot] + [answer] + words[slot:]
    return dict(zip(LETTERS, texts))


def clip_indices(i1: int, i2: int, n: int) -> list[int]:
    """``n`` frame indices evenly spaced from i1 to i2 (either way), both included (fewer when the pair is closer)."""
    picked = sorted({int(round(x)) for x in np.linspace(i1, i2, min(n, abs(i2 - i1) + 1))})
    return picked if i2 >= i1 else picked[::-1]


# ------------------------------------------------------------------------------------------------- the task


@register_task
class CameraMotionTask(Task):
    name = "camera_motion"
    config_cls = CameraMotionConfig
    needs_depth = True
    input_kind = "posed"
    description = "The dominant camera motion between two frames of a posed RGB-D sequence (move/turn left/right...)."
    word_options = True

    # Level by level the dominant motion stands out less: the second-largest flow comes closer to the largest
    # (level 1 below 0.3 of it, level 2 between 0.2 and 0.5, level 3 between 0.4 and 0.65) and the largest gets
    # smaller (level 1 at least 6 % of the width, level 3 between 2.5 % and 10 %). More tries where the band is narrow.
    levels = {
        1: {"max_ratio": 0.3, "min_ratio": 0.0, "min_flow": 0.06, "max_flow": None, "max_pair_tries": 12},
        2: {"max_ratio": 0.5, "min_ratio": 0.2, "min_flow": 0.04, "max_flow": 0.2, "max_pair_tries": 16},
        3: {"max_ratio": 0.65, "min_ratio": 0.4, "min_flow": 0.025, "max_flow": 0.1, "max_pair_tries": 24},
    }

    config: CameraMotionConfig

    @property
    def num_slots(self) -> int:
        return len(LETTERS)

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """``ratio``: second-largest flow over the largest (higher = the answer competes with another motion);
        ``flow``: the largest flow, fraction of the image width (lower = a subtler motion)."""
        flows = sorted((float(v) for v in metadata["flows"].values()), reverse=True)
        return {"ratio": round(flows[1] / flows[0], 6) if flows[0] > 0 else 1.0, "flow": round(flows[0], 6)}

    # -------------------------------------------------------------------------------------------- generate

    def generate(self, source: Sequence, rng: np.random.Generator, slot: int = 0) -> Sample:
        cfg = self.config
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"camera_motion: slot must be in [0, {self.num_slots}), got {slot}")
        k = source.intrinsics
        if k is None or not source.has_depth:
            raise SourceError(f"{source.id}: camera_motion needs a posed sequence with depth and intrinsics")
        steps = (1, -1) if cfg.reverse else (1,)  # both time directions are labelled, none is drawn
        posed = np.asarray(source.posed_indices(), np.int64)
        times = np.asarray(source.timestamps, np.float64)[posed]
        ways = {s: paths(times, np.arange(posed.size), s, cfg.min_gap_s, cfg.max_gap_s) for s in steps}
        ways = {s: w for s, w in ways.items() if w[1].any()}
        allowed = np.flatnonzero(np.logical_or.reduce([w[1].any(axis=1) for w in ways.values()])) if ways else np.zeros(0, np.int64)
        if allowed.size == 0:
            raise Reject("camera_motion/no_pose", f"no two posed frames {cfg.min_gap_s}-{cfg.max_gap_s} s apart "
                                                  f"({posed.size} posed of {len(source)})")
        pose_of = np.stack([source.pose(int(i)) for i in posed])

        def scored(starts: np.ndarray, points: np.ndarray, step: int):
            """The table and labels of the paths from ``starts`` (S, L) in time direction ``step``; padding and
            frames too close are ''."""
            pos, far = ways[step]
            p = pos[starts]
            rel = np.stack([relative_pose(pose_of[a], pose_of[np.clip(row, 0, None)]) for a, row in zip(starts, p)])
            table = motion_table(points, rel.reshape(-1, 4, 4), k)
            table = {n: v.reshape(p.shape) for n, v in table.items()}
            labels, reasons, ratio, largest = label_pairs(table, cfg)
            ok = far[starts]
            return p, rel, table, np.where(ok, labels, ""), np.where(ok, reasons, ""), ratio, largest

        def decoded(a: int):
            """Frame 1 at position ``a``, its grid points and valid share (None when its depth is too sparse)."""
            frame = source.frame(int(posed[a]))
            if frame.depth is None or frame.depth.kind != "metric":
                raise SourceError(f"{source.id}#{int(posed[a])}: camera_motion needs metric depth, got "
                                  f"{None if frame.depth is None else frame.depth.kind}")
            points, valid = grid_points(frame.depth, k, cfg.flow_grid)
            return (frame, points, valid) if valid >= cfg.min_valid_depth else None

        first = None
        for a in rng.permutation(allowed)[: cfg.max_pair_tries]:
            first = decoded(int(a))
            if first is not None:
                break
        if first is None:
            raise Reject("camera_motion/no_depth", f"no frame 1 tried has {cfg.min_valid_depth:.0%} of its grid valid")
        # The first frame's grid stands in for the scene seen from every frame 1 (a room keeps its scale): from the
        # poses alone, which motions may each frame 1's windows (both time directions) show? Frames 1 covering them
        # are then decoded and labelled exactly; only what is seen exactly counts, the same way for every motion.
        sub = first[1][:: max(1, first[1].shape[0] // PROXY_POINTS)]
        pool = allowed if allowed.size <= PROXY_FRAMES else np.union1d(rng.choice(allowed, PROXY_FRAMES - 1, replace=False), [a])
        seen = np.concatenate([scored(pool, sub, s)[3] for s in ways], axis=1)  # (pool, L+ + L-)
        # frames 1 covering every motion seen, fewest first: each pick is drawn among the frames whose windows show
        # the most motions not covered yet (a window often shows two or three), which keeps the decoding down
        words = sorted({w for w in seen.ravel() if w})
        shows = np.stack([(seen == w).any(axis=1) for w in words], axis=1) if words else np.zeros((pool.size, 0), bool)
        chosen, left = [int(a)], ~shows[int(np.searchsorted(pool, a))]  # ``a`` is in ``pool`` by construction
        while left.any():
            gain = (shows & left).sum(axis=1)
            best = np.flatnonzero(gain == gain.max())
            pick_row = int(best[int(rng.integers(best.size))])
            chosen.append(int(pool[pick_row]))
            left &= ~shows[pick_row]
        exact: dict[int, tuple] = {}

        def label(frames: list[int]) -> dict[str, list[tuple[int, int, int]]]:
            """Decode and label ``frames`` exactly in every time direction (within the decoding budget): each
            motion's hits as (frame 1, direction, path step), in a fixed order."""
            for b in frames:
                if b not in exact and len(exact) <= cfg.max_pair_tries:
                    got = first if b == a else decoded(b)
                    exact[b] = (got, {s: scored(np.array([b]), got[1], s) for s in ways}) if got is not None else None
            out: dict[str, list[tuple[int, int, int]]] = {}
            for b, v in exact.items():
                for s, sc in ({} if v is None else v[1]).items():
                    for c in np.flatnonzero(sc[3][0] != ""):
                        out.setdefault(str(sc[3][0][c]), []).append((b, s, int(c)))
            return out

        hits = label(chosen)
        # a motion the poses suggest but its frame did not show exactly gets a second frame (the same for every motion)
        retry = []
        for i, w in enumerate(words):
            rows_ = np.flatnonzero(shows[:, i] & ~np.isin(pool, list(exact)))
            if w not in hits and rows_.size:
                retry.append(int(pool[rows_[int(rng.integers(rows_.size))]]))
        hits = label(retry) if retry else hits
        exact = {b: v for b, v in exact.items() if v is not None}
        # A pair is shown only when BOTH its motions are among the exact hits (of either time direction). Nothing
        # drawn so far names an answer, so which pairs are shown cannot favour one answer over another.
        shown = [pair for pair in (PAIRS if cfg.vertical else PAIRS[:3]) if all(w in hits for w in pair)]
        if len(shown) < 2:
            reasons = Counter(r for _, by_step in exact.values() for sc in by_step.values() for r in sc[4][0] if r)
            if not hits and reasons:  # no clear pair at all: say why the frames were turned down
                reason, n = reasons.most_common(1)[0]
                raise Reject(reason, f"all {sum(reasons.values())} pairs of {len(exact)} frames 1 rejected, {n} for this")
            raise Reject("camera_motion/few_motions", f"the sequence shows {sorted(hits) or 'nothing'}: {len(shown)} "
                                                      f"whole confusable pairs, 2 needed")
        # Only now the answer: its pair uniformly among the shown pairs (the distractor pair uniformly among the
        # rest), its motion uniformly within the pair, then the frame pair uniformly among that motion's hits in
        # either time direction. Given the options (two whole pairs), each is the answer's pair half of the time and
        # each motion of it half of that.
        own = shown[int(rng.integers(len(shown)))]
        target, others = own[int(rng.integers(2))], [pair for pair in shown if pair is not own]
        b, step, c = hits[target][int(rng.integers(len(hits[target])))]
        (frame1, points, valid), by_step = exact[b]
        p, rel, table, labels, _, ratio, largest = by_step[step]
        return self._sample(source, frame1, p[0][:c + 1], posed, rel[0][c], {n: float(v[0][c]) for n, v in table.items()},
                            float(ratio[0][c]), float(largest[0][c]), target, options_for(target, slot, others, rng),
                            shown, valid, int(points.shape[0]), int((labels[0] == target).sum()),
                            int(ways[step][1][b].sum()), step, {w: len(h) for w, h in sorted(hits.items())})

    def _sample(self, seq: Sequence, frame1, path: np.ndarray, posed: np.ndarray, rel: np.ndarray, row: dict[str, float],
                ratio: float, largest: float, answer: str, options: dict[str, str], shown: list, valid: float,
                npoints: int, matches: int, window: int, step: int, seen: dict[str, int]) -> Sample:
        cfg = self.config
        frame2 = seq.frame(int(posed[path[-1]]))
        lines = "\n".join(f"{letter}. {text}" for letter, text in options.items())
        tail = f"\n{lines}\nAnswer with the letter of the correct option (A, B, C or D)."
        question = f"<image>\n<image>\n{QUESTION}{tail}"
        images = [frame1.source.image(), frame2.source.image()]
        metadata: dict[str, Any] = {
            "frames": [frame1.index, frame2.index],  # as shown: frame 1, frame 2
            "timestamps": [frame1.timestamp, frame2.timestamp],
            "reversed": step < 0,  # frame 2 was filmed before frame 1 (shown in reverse time order)
            "frame_digests": [frame1.source.digest, frame2.source.digest],
            "poses": [np.asarray(frame1.pose).tolist(), np.asarray(frame2.pose).tolist()],
            "relative_pose": np.asarray(rel).tolist(),
            "intrinsics": seq.intrinsics.to_json(),
            "components": {n: round(row[n], 9) for n in COMPONENTS},
            "flows": {n: round(row[f"flow_{n}"], 9) for n in COMPONENTS},
            "translation_flow": round(row["flow_translation"], 9),
            "ratio": round(ratio, 9),
            "overlap": round(row["overlap"], 6),
            "grid": {"cols": cfg.flow_grid, "valid_fraction": round(valid, 6), "points": npoints},
            "path_frames": [int(posed[i]) for i in path],  # the posed frames on the way, checked for detours
            "thresholds": {"min_flow": cfg.min_flow, "max_ratio": cfg.max_ratio, "min_ratio": cfg.min_ratio,
                           "max_flow": cfg.max_flow, "max_tilt_deg": cfg.max_tilt_deg, "min_overlap": cfg.min_overlap,
                           "min_valid_depth": cfg.min_valid_depth, "min_gap_s": cfg.min_gap_s,
                           "max_gap_s": cfg.max_gap_s, "max_detour": cfg.max_detour, "flow_cap": FLOW_CAP,
                           "behind_m": BEHIND},
            "vertical": cfg.vertical,
            "dominant": COMPONENT_OF[answer],
            "answer_text": answer,
            "options": options,
            "sequence_pairs": [list(pair) for pair in shown],  # the whole pairs seen exactly: the options' pool
            "motions_seen": seen,  # exact hits (frame 1, frame 2) per motion, both time directions
            "window_frames": window,  # frames that could be frame 2 for this frame 1 (in this time direction)
            "window_matches": matches,  # ... and show the answer
        }
        letter = next(a for a, w in options.items() if w == answer)
        sample = Sample(self.name, self.name, question, images, letter, metadata, options=dict(options))
        if cfg.videos:
            idx = clip_indices(frame1.index, frame2.index, cfg.video_frames)  # in the order shown
            sample.videos = [[f.source.image() for f in seq.frames(idx)]]
            sample.video_question = f"<video>\n{VIDEO_QUESTION}{tail}"
            metadata["clip_frames"] = idx
        return sample

    # ---------------------------------------------------------------------------------------------- verify

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Sequence | None) -> list[str]:
        """Re-read both poses and frame 1's depth from the re-opened sequence, recompute the relative pose with a
        general matrix inverse and the six flows with homogeneous 4x4 transforms and the K matrix (plain numpy, no
        helper of ``generate``), re-label and compare with the option under the letter; check the option set and
        that the shown images are those frames."""
        from .camera_motion_check import verify_sample

        return verify_sample(images, answer, metadata, source)
