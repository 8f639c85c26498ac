"""Procedural posed RGB-D sequences: the demo room of :mod:`ssrl_plugin.demo` filmed along a camera path.

Each sequence ``index`` is a demo room (its own scene: random draws keyed ``("demo", "seq", index, ...)``) and a
camera path through it at :data:`FPS` frames per second, rendered by the same ray caster and shader as the still
demo images, so every frame has exact metric z-depth (0 / invalid where an open sky is seen) and an exact pose.

Opening a sequence builds the path only (poses, intrinsics, timestamps: no pixels); a frame is rendered when a
task asks for it (:meth:`Sequence.frames`).

World frame of the poses: the demo room's axes reordered to (x, z, y), i.e. right-handed with **z up**, the
ground at z = 0 (the demo's own world is y-up with a left-handed camera basis). Camera-to-world poses use OpenCV
camera axes (x right, y down, z forward), metres.

The path is a chain of segments, each with one dominant motion, drawn from ``rng_for("demo", "seq", index,
"path")``. Per frame (at 10 fps):

- ``forward`` / ``back``: 0.05-0.15 / 0.05-0.12 m along the horizontal heading, no turning;
- ``strafe_left`` / ``strafe_right``: 0.05-0.12 m sideways, no turning;
- ``turn_left`` / ``turn_right``: 1.5-4 degrees of yaw in place;
- ``rise`` / ``sink``: 0.03-0.06 m straight up / down (short segments);
- ``arc_left`` / ``arc_right``: 0.05-0.12 m forward while yawing 1-3 degrees (a curve);
- ``orbit_left`` / ``orbit_right``: 0.05-0.12 m sideways while yawing the other way, around a point 2.5-6 m ahead.

Every segment also drifts pitch and roll slowly (at most ~0.25 and ~0.12 degrees per frame; pitch stays 2-16
degrees down, roll within +-1.7 degrees). Segments last 4-12 frames (rise/sink 3-6); a segment never repeats the
previous one's motion nor reverses it (no back-and-forth over the same views). Guarantees, checked at every
frame by the generator (a candidate segment that breaks one is redrawn) and by the tests:

- the camera centre is at least :data:`CLEARANCE` (0.6 m) from every object and wall, 0.9-2.1 m above the
  ground and 0.6 m below the ceiling / wall tops;
- (if no candidate segment fits after :data:`MAX_ATTEMPTS` draws, a 4-frame turn in place towards the objects
  is used, marked ``"fallback": true`` in ``info["path"]``; it keeps clearance and heights but may, in
  principle, lose the objects from view: it never happened in 300 paths of 48 frames nor 60 of 300)
- the heading stays within ~35 degrees of the room's initial viewing direction (towards the objects) and at
  least one object's centre is well inside the view (``|x| <= 0.5 z``, ``|y| <= 0.3 z``, ``z >= 0.5`` m);
- per frame, the camera moves at most 0.15 m and turns at most ~4.1 degrees, so consecutive frames overlap
  strongly, and every step moves at least 0.03 m or turns at least 1 degree; the path is prefix-stable (``frames=20`` gives the first 20 poses of ``frames=48``) and does not
  depend on the image size.

Determinism: poses are built with + - * / sqrt on Python floats only (angles enter as tangents, as in
:func:`ssrl_plugin.demo._make_camera`, and yaw steps compose as exact-arithmetic rotations), because the pose
enters every pixel's ray direction; frames are therefore byte-identical on every machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from . import demo
from .core import DepthMap
from .errors import SourceError
from .imaging import digest_text
from .seeding import rng_for
from .sequence import Intrinsics, Sequence, frame_digest
from .sources import LoadOptions, SourceRef

SEQ_KIND = "seq"
FPS = 10.0
CLEARANCE = 0.6  # metres between the camera centre and any object or wall, at every frame
MIN_HEIGHT, MAX_HEIGHT = 0.9, 2.1  # camera height above the ground
PITCH_RANGE = (0.03, 0.28)  # tangent of the downward pitch
ROLL_MAX = 0.03  # tangent of the roll
COS_MAX_YAW = 0.8191520442889918  # cos(35 degrees), as a literal: thresholds must not depend on libm
VIEW_X, VIEW_Y, VIEW_Z = 0.5, 0.3, 0.5  # "object in view": |x| <= VIEW_X z, |y| <= VIEW_Y z, z >= VIEW_Z
MAX_ATTEMPTS = 60  # candidate segments drawn before the fallback turn
SEQ_VERSION = 2  # bump when paths or rendering change (enters the sequence digest)

# Motion kind -> (weight, frames range); the per-frame step parameters are drawn in _draw_segment.
# Travel has no time arrow on average: a corpus that mostly walks forward lets "the frames get less sharp" order
# temporal_order's frames without matching them (measured: +6 points over chance at 1,000 rows). Backing up is
# blocked by walls more often, hence its larger weight; arcs travel either way. Over 100 sequences of 48 frames
# 18.4 % of the frame steps go forward by more than 1 cm and 20.4 % back, mean -2.2 mm (version 1: 31 % / 9 %).
MOTIONS: dict[str, tuple[float, tuple[int, int]]] = {
    "forward": (1.0, (4, 12)),
    "back": (2.0, (4, 12)),
    "strafe_left": (1.0, (4, 12)),
    "strafe_right": (1.0, (4, 12)),
    "turn_left": (1.5, (4, 12)),
    "turn_right": (1.5, (4, 12)),
    "rise": (0.5, (3, 6)),
    "sink": (0.5, (3, 6)),
    "arc_left": (1.0, (4, 12)),
    "arc_right": (1.0, (4, 12)),
    "orbit_left": (1.0, (4, 12)),
    "orbit_right": (1.0, (4, 12)),
}
_KINDS = tuple(MOTIONS)
_WEIGHTS = np.array([MOTIONS[k][0] for k in _KINDS]) / sum(MOTIONS[k][0] for k in _KINDS)


# ----------------------------------------------------------------------------------------------- public API


def demo_sequence_refs(num: int, width: int = 640, height: int = 480, frames: int = 48) -> list[SourceRef]:
    """References to the demo sequences ``demo/seq/0000``... (cheap, nothing rendered; pool ``posed``)."""
    if num < 0 or width < 1 or height < 1 or frames < 1:
        raise ValueError(f"demo_sequence_refs: bad count/size/frames ({num}, {width}x{height}, {frames})")
    return [
        SourceRef(id=f"demo/{SEQ_KIND}/{i:04d}", scheme=demo.DEMO_SCHEME, depth_format=demo.DEMO_DEPTH_FORMAT,
                  depth_kind="metric", extra=(SEQ_KIND, i, width, height, frames))
        for i in range(num)
    ]


def load_demo_sequence(ref: SourceRef, opts: LoadOptions) -> DemoSequence:
    """Open demo sequence ``ref`` at its size shrunk to fit ``opts.max_side``: the path is built, nothing rendered."""
    if ref.scheme != demo.DEMO_SCHEME or len(ref.extra) != 5 or ref.extra[0] != SEQ_KIND:
        raise SourceError(f"{ref.id}: not a demo sequence reference (scheme={ref.scheme!r}, extra={ref.extra!r})")
    _, index, orig_width, orig_height, frames = ref.extra
    if int(frames) < 1:
        raise SourceError(f"{ref.id}: demo sequence needs at least 1 frame, got {frames}")
    width, height = demo.fit_size(int(orig_width), int(orig_height), opts.max_side)
    if min(width, height) < opts.min_side:
        raise SourceError(f"{ref.id}: demo size {width}x{height} is below min_side={opts.min_side}")
    return DemoSequence(ref.id, int(index), width, height, int(frames), (int(orig_width), int(orig_height)))


# ------------------------------------------------------------------------------------------------ the path

Vec3 = tuple[float, float, float]


def _tan_to_cos_sin(t: float) -> tuple[float, float]:
    c = 1.0 / math.sqrt(1.0 + t * t)
    return c, t * c


@dataclass(frozen=True)
class PathState:
    """Camera state along the path, in the demo's world (y up): centre, unit horizontal heading (sin, cos of
    the yaw: heading (hx, 0, hz)), tangents of the downward pitch and of the roll."""

    x: float
    y: float
    z: float
    hx: float
    hz: float
    pitch: float
    roll: float

    def basis(self) -> tuple[Vec3, Vec3, Vec3]:
        """(right, up, forward) world vectors, as :class:`ssrl_plugin.demo.Camera` wants them."""
        s, c = self.hx, self.hz
        cp, sp = _tan_to_cos_sin(self.pitch)
        cr, sr = _tan_to_cos_sin(self.roll)
        right0 = (c, 0.0, -s)
        up0 = (s * sp, cp, c * sp)
        forward = (s * cp, -sp, c * cp)
        right = tuple(cr * a + sr * b for a, b in zip(right0, up0))
        up = tuple(cr * b - sr * a for a, b in zip(right0, up0))
        return right, up, forward  # type: ignore[return-value]

    def camera(self, width: int, height: int) -> demo.Camera:
        right, up, forward = self.basis()
        f = demo.FOCAL_PER_WIDTH * width
        return demo.Camera(width, height, f, f, width / 2.0, height / 2.0, (self.x, self.y, self.z), right, up, forward)

    def pose(self) -> np.ndarray:
        """4x4 camera-to-world, OpenCV camera axes, z-up world (demo axes reordered x, z, y)."""
        right, up, forward = self.basis()
        swap = lambda v: (v[0], v[2], v[1])  # noqa: E731
        pose = np.eye(4)
        pose[:3, 0] = swap(right)
        pose[:3, 1] = swap(tuple(-u for u in up))
        pose[:3, 2] = swap(forward)
        pose[:3, 3] = swap((self.x, self.y, self.z))
        return pose


@dataclass(frozen=True)
class Segment:
    """Per-frame steps of one stretch of the path: metres along the heading / to the right / up, tangent of the
    yaw step (> 0 turns right), pitch and roll tangent increments."""

    motion: str
    frames: int
    forward: float = 0.0
    lateral: float = 0.0
    vertical: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def step(self, s: PathState) -> PathState:
        cy, sy = _tan_to_cos_sin(self.yaw)
        hx, hz = s.hx * cy + s.hz * sy, s.hz * cy - s.hx * sy
        n = math.sqrt(hx * hx + hz * hz)  # keeps the heading unit over many composed steps
        hx, hz = hx / n, hz / n
        return PathState(
            s.x + self.forward * hx + self.lateral * hz,
            s.y + self.vertical,
            s.z + self.forward * hz - self.lateral * hx,
            hx, hz, s.pitch + self.pitch, s.roll + self.roll,
        )


def _box_distance(p: Vec3, lo: Vec3, hi: Vec3) -> float:
    d2 = 0.0
    for k in range(3):
        e = max(lo[k] - p[k], 0.0, p[k] - hi[k])
        d2 += e * e
    return math.sqrt(d2)


def clearance(scene: demo.Scene, p: Vec3) -> float:
    """Distance from point ``p`` (demo world) to the nearest object or wall (ground and ceiling excluded:
    the height has its own bounds)."""
    room = scene.room
    d = min(p[0] + room.left, room.right - p[0], p[2] + room.front, room.back - p[2])
    for obj in scene.objects:
        if isinstance(obj, demo.Box):
            d = min(d, _box_distance(p, obj.lo, obj.hi))
        else:
            c = obj.centre
            d = min(d, math.sqrt(sum((p[k] - c[k]) ** 2 for k in range(3))) - obj.radius)
    return d


def object_centres(scene: demo.Scene) -> list[Vec3]:
    out = []
    for obj in scene.objects:
        if isinstance(obj, demo.Box):
            out.append(tuple((a + b) / 2 for a, b in zip(obj.lo, obj.hi)))
        else:
            out.append(obj.centre)
    return out  # type: ignore[return-value]


def objects_in_view(scene: demo.Scene, s: PathState) -> int:
    """How many object centres are well inside the view of state ``s`` (size-independent test)."""
    right, up, forward = s.basis()
    n = 0
    for c in object_centres(scene):
        rel = (c[0] - s.x, c[1] - s.y, c[2] - s.z)
        z = sum(a * b for a, b in zip(rel, forward))
        x = sum(a * b for a, b in zip(rel, right))
        y = sum(a * b for a, b in zip(rel, up))
        n += z >= VIEW_Z and abs(x) <= VIEW_X * z and abs(y) <= VIEW_Y * z
    return n


def state_ok(scene: demo.Scene, s: PathState, heading0: tuple[float, float]) -> bool:
    """Whether ``s`` keeps every path guarantee (see the module docstring)."""
    if not MIN_HEIGHT <= s.y <= min(MAX_HEIGHT, scene.room.top - CLEARANCE):
        return False
    if s.hx * heading0[0] + s.hz * heading0[1] < COS_MAX_YAW:
        return False
    return clearance(scene, (s.x, s.y, s.z)) >= CLEARANCE and objects_in_view(scene, s) > 0


def _drift(rng: np.random.Generator, value: float, frames: int, per_frame: float, lo: float, hi: float) -> float:
    """Per-frame increment moving ``value`` by up to ``per_frame`` a frame, staying inside [lo, hi]."""
    target = min(max(value + float(rng.uniform(-1.0, 1.0)) * per_frame * frames, lo), hi)
    return (target - value) / frames


def _opposite(motion: str) -> str:
    for a, b in (("forward", "back"), ("rise", "sink"), ("_left", "_right")):
        if motion.endswith(a):
            return motion[: len(motion) - len(a)] + b
        if motion.endswith(b):
            return motion[: len(motion) - len(b)] + a
    raise ValueError(motion)


def _draw_segment(rng: np.random.Generator, s: PathState, short: bool, previous: str | None) -> Segment:
    """A random segment starting at ``s``: never ``previous`` again (variety) nor its reversal (back-and-forth
    paths would revisit views and blur the temporal order)."""
    banned = () if previous is None else (previous, _opposite(previous))
    motion = _KINDS[int(rng.choice(len(_KINDS), p=_WEIGHTS))]
    while motion in banned:
        motion = _KINDS[int(rng.choice(len(_KINDS), p=_WEIGHTS))]
    lo, hi = MOTIONS[motion][1]
    frames = int(rng.integers(lo, (lo + hi) // 2 + 1 if short else hi + 1))
    sign = -1.0 if motion.endswith(("_left", "back", "sink")) else 1.0
    kw: dict[str, float] = {}
    if motion == "forward":
        kw["forward"] = float(rng.uniform(0.05, 0.15))
    elif motion == "back":
        kw["forward"] = -float(rng.uniform(0.05, 0.15))
    elif motion.startswith("strafe"):
        kw["lateral"] = sign * float(rng.uniform(0.05, 0.12))
    elif motion.startswith("turn"):
        kw["yaw"] = sign * float(rng.uniform(0.0262, 0.0699))  # tan(1.5 deg), tan(4 deg)
    elif motion in ("rise", "sink"):
        kw["vertical"] = sign * float(rng.uniform(0.03, 0.06))
    elif motion.startswith("arc"):
        kw["forward"] = float(rng.choice((-1.0, 1.0))) * float(rng.uniform(0.05, 0.12))
        kw["yaw"] = sign * float(rng.uniform(0.0175, 0.0524))  # tan(1 deg), tan(3 deg)
    else:  # orbit: sideways while turning back towards a point `radius` ahead (yaw tangent ~ step / radius)
        step = float(rng.uniform(0.05, 0.12))
        kw["lateral"] = sign * step
        kw["yaw"] = -sign * step / float(rng.uniform(2.5, 6.0))
    kw["pitch"] = _drift(rng, s.pitch, frames, 0.004, *PITCH_RANGE)
    kw["roll"] = _drift(rng, s.roll, frames, 0.002, -ROLL_MAX, ROLL_MAX)
    return Segment(motion, frames, **kw)


def _roll_out(seg: Segment, s: PathState) -> list[PathState]:
    out = []
    for _ in range(seg.frames):
        s = seg.step(s)
        out.append(s)
    return out


def _fallback(scene: demo.Scene, s: PathState, heading0: tuple[float, float]) -> tuple[Segment, list[PathState]]:
    """A short turn in place towards the objects (position unchanged, so clearance holds); tried both ways."""
    cx = sum(c[0] for c in object_centres(scene)) / len(scene.objects) - s.x
    cz = sum(c[2] for c in object_centres(scene)) / len(scene.objects) - s.z
    towards_right = cx * s.hz - cz * s.hx > 0  # centroid to the right of the heading
    first = None
    for sign in ((1.0, -1.0) if towards_right else (-1.0, 1.0)):
        seg = Segment("turn_right" if sign > 0 else "turn_left", 4, yaw=sign * 0.035)
        states = _roll_out(seg, s)
        first = first or (seg, states)
        if all(state_ok(scene, x, heading0) for x in states):
            return seg, states
    assert first is not None
    return first


def initial_state(scene: demo.Scene) -> PathState:
    cam = scene.camera
    pitch = -cam.forward[1] / cam.up[1]  # the demo camera: forward.y = -sin(pitch), up.y = cos(pitch)
    return PathState(*cam.position, hx=-cam.right[2], hz=cam.right[0], pitch=pitch, roll=0.0)


def make_path(scene: demo.Scene, index: int, frames: int) -> tuple[list[PathState], list[dict[str, Any]]]:
    """States of ``frames`` frames and the segments that made them (``motion``, ``start`` frame of the
    segment's first step, ``end`` exclusive: frame ``start - 1`` to ``start`` is its first step)."""
    rng = rng_for("demo", SEQ_KIND, index, "path")
    s0 = initial_state(scene)
    heading0 = (s0.hx, s0.hz)
    states, segments = [s0], []
    while len(states) < frames:
        info: dict[str, Any] = {}
        for attempt in range(MAX_ATTEMPTS):
            seg = _draw_segment(rng, states[-1], attempt >= MAX_ATTEMPTS // 2, segments[-1]["motion"] if segments else None)
            new = _roll_out(seg, states[-1])
            if all(state_ok(scene, x, heading0) for x in new):
                break
        else:
            seg, new = _fallback(scene, states[-1], heading0)
            info["fallback"] = True
        # whole segments are checked even where they are cut: paths are prefix-stable in `frames`
        new = new[: frames - len(states)]
        segments.append({"motion": seg.motion, "start": len(states), "end": len(states) + len(new), **info})
        states.extend(new)
    return states, segments


# --------------------------------------------------------------------------------------------- the sequence


class DemoSequence(Sequence):
    """A demo room filmed along its path; frames are rendered on demand (``renders`` counts them)."""

    def __init__(self, ref_id: str, index: int, width: int, height: int, frames: int, orig_size: tuple[int, int]):
        self.id = ref_id
        self.index = index
        self.width, self.height = width, height
        self.scene = demo.make_scene(index, width, height, kind=SEQ_KIND)
        self.states, self.segments = make_path(self.scene, index, frames)
        self._poses = [s.pose() for s in self.states]
        self.timestamps = np.arange(frames, dtype=np.float64) / FPS
        cam = self.scene.camera
        self.intrinsics = Intrinsics(cam.fx, cam.fy, cam.cx, cam.cy, width, height)
        self.has_depth = True
        self.renders = 0
        self._shader: demo._Shader | None = None
        params = {"kind": SEQ_KIND, "version": SEQ_VERSION, "index": index, "size": [width, height],
                  "frames": frames, "fps": FPS}
        h = xxhash.xxh3_128(json.dumps(params, sort_keys=True).encode())
        for p in self._poses:
            h.update(p.tobytes())
        self.digest = digest_text(h)
        self.info = {
            "demo": True,
            "kind": SEQ_KIND,
            "index": index,
            "fps": FPS,
            "frames": frames,
            "orig_size": list(orig_size),
            "size": [width, height],
            "scale": width / orig_size[0],
            "open_sky": self.scene.room.open_sky,
            "world": "demo room axes (x, z, y): z up, ground at z = 0; OpenCV camera axes",
            "path": self.segments,
            "depth_units": "m",
        }

    def pose(self, index: int) -> np.ndarray:
        return self._poses[index].copy()

    def camera(self, index: int) -> demo.Camera:
        """The demo camera of frame ``index`` (demo world axes)."""
        return self.states[index].camera(self.width, self.height)

    def _decode(self, indices: list[int]) -> list[tuple[np.ndarray, DepthMap | None, str]]:
        if self._shader is None:  # materials are drawn once per sequence, at the first render
            self._shader = demo._Shader(self.index, self.scene, kind=SEQ_KIND, grain=False)
        out = []
        for i in indices:
            grain = demo.grain_field(rng_for("demo", SEQ_KIND, self.index, "grain", i), self.height, self.width)
            rgb, depth = demo.render_view(self._shader.with_view(self.camera(i), grain))
            self.renders += 1
            out.append((rgb, depth, frame_digest(rgb, depth)))
        return out
