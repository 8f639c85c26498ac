"""Independent re-derivation of a camera_motion answer (``CameraMotionTask.verify`` and the metadata check).

Nothing here calls the generator's helpers: the relative pose comes from a general matrix inverse
(``inv(pose1) @ pose2``), the angles from camera 2's optical axis (yaw, pitch) and the remaining rotation (roll),
the whole translation and each rotation become a homogeneous 4x4 camera motion applied as ``inv(M) @ X`` to frame
1's grid points, which are made and projected with the K matrix; the translation's flow is shared among its axes
by the metres along each. The label is read from the flows with plain Python on the recorded
thresholds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

LETTERS = "ABCD"
PAIRS = (("move left", "turn left"), ("move right", "turn right"), ("move forward", "move backward"),
         ("move up", "move down"))
WORDS = {"right": ("move right", "move left"), "up": ("move up", "move down"),
         "forward": ("move forward", "move backward"), "yaw": ("turn right", "turn left")}
ORDER = ("right", "up", "forward", "yaw", "pitch", "roll")
IMAGE_TOL = 6.0  # mean |shown - frame| (0..255) a JPEG at quality >= ~75 stays under


def label_from_flows(flows: dict[str, float], components: dict[str, float], th: dict[str, Any], vertical: bool,
                     overlap: float) -> tuple[str | None, list[str]]:
    """(answer word, problems): the largest flow's component and sign, checked against the recorded thresholds."""
    problems = []
    ranked = sorted(ORDER, key=lambda c: -float(flows[c]))
    top, second = float(flows[ranked[0]]), float(flows[ranked[1]])
    if overlap < th["min_overlap"]:
        problems.append(f"overlap {overlap:.3f} < min_overlap {th['min_overlap']}")
    tilt = max(abs(float(components["pitch"])), abs(float(components["roll"])))
    if tilt > th["max_tilt_deg"]:
        problems.append(f"pitch/roll {tilt:.2f} deg > max_tilt_deg {th['max_tilt_deg']}")
    if top < th["min_flow"]:
        problems.append(f"largest flow {top:.4f} < min_flow {th['min_flow']}: the camera hardly moves")
    if top <= 0 or second / top >= th["max_ratio"]:
        problems.append(f"{ranked[1]} flow {second:.4f} >= {th['max_ratio']} x {ranked[0]} flow {top:.4f}: ambiguous")
    if ranked[0] not in WORDS or (ranked[0] == "up" and not vertical):
        problems.append(f"the largest flow is {ranked[0]}, not an answer")
        return None, problems
    return WORDS[ranked[0]][0 if float(components[ranked[0]]) > 0 else 1], problems


def option_problems(options: dict[str, str], answer_text: str | None, vertical: bool) -> list[str]:
    """The options must be the answer's confusable pair plus one other pair, at letters A-D."""
    pairs = PAIRS if vertical else PAIRS[:3]
    if sorted(options) != list(LETTERS):
        return [f"options are lettered {sorted(options)}, expected {list(LETTERS)}"]
    words = set(options.values())
    used = [p for p in pairs if set(p) <= words]
    if len(words) != 4 or len(used) != 2:
        return [f"options {sorted(words)} are not two of the pairs {pairs}"]
    if answer_text is not None and not any(answer_text in p for p in used):
        return [f"answer {answer_text!r} is not among the options {sorted(words)}"]
    return []


def recompute(pose1: np.ndarray, pose2: np.ndarray, depth, k: dict[str, Any], cols: int, behind: float,
              cap: float) -> dict[str, Any]:
    """Components, flows and overlap from the poses and frame 1's depth, by the route described above."""
    rel = np.linalg.inv(pose1) @ pose2
    w, h = int(k["width"]), int(k["height"])
    kmat = np.array([[k["fx"], 0.0, k["cx"]], [0.0, k["fy"], k["cy"]], [0.0, 0.0, 1.0]])
    rows = max(2, int(round(cols * h / w)))
    cc, rr = np.meshgrid(((2 * np.arange(cols) + 1) * w) // (2 * cols), ((2 * np.arange(rows) + 1) * h) // (2 * rows))
    cc, rr = cc.ravel(), rr.ravel()
    z = depth.values[rr, cc].astype(np.float64)
    ok = depth.valid[rr, cc] & np.isfinite(z) & (z > 0)
    pix = np.stack([cc[ok] + 0.5, rr[ok] + 0.5, np.ones(int(ok.sum()))])
    xh = np.vstack([np.linalg.solve(kmat, pix) * z[ok], np.ones(pix.shape[1])])  # (4, N) homogeneous

    def image_of(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = (np.linalg.inv(m) @ xh)[:3]
        q = kmat @ p
        with np.errstate(divide="ignore", invalid="ignore"):
            return q[:2] / q[2], p[2]

    uv0, _ = image_of(np.eye(4))

    def flow(m: np.ndarray) -> float:
        uv, zz = image_of(m)
        d = np.sqrt(((uv - uv0) ** 2).sum(axis=0)) / w
        d = np.where((zz > behind) & np.isfinite(d), np.minimum(d, cap), cap)
        return float(d.mean())

    fwd = rel[:3, 2]
    yaw = math.atan2(fwd[0], fwd[2])
    pitch = math.atan2(-fwd[1], math.hypot(fwd[0], fwd[2]))
    cy_, sy_, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = (ry @ rx).T @ rel[:3, :3]
    roll = math.atan2(rz[1, 0], rz[0, 0])
    cr, sr = math.cos(roll), math.sin(roll)
    rz_clean = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    shift = np.eye(4)
    shift[:3, 3] = rel[:3, 3]
    moved = flow(shift)
    length = math.sqrt(float(rel[0, 3] ** 2 + rel[1, 3] ** 2 + rel[2, 3] ** 2))
    flows = {name: (moved * abs(float(rel[axis, 3])) / length if length > 0 else 0.0)
             for axis, name in enumerate(("right", "up", "forward"))}
    for name, r in (("yaw", ry), ("pitch", rx), ("roll", rz_clean)):
        m = np.eye(4)
        m[:3, :3] = r
        flows[name] = flow(m)
    uv, zz = image_of(rel)
    inside = (zz > behind) & (uv[0] >= 0) & (uv[0] <= w) & (uv[1] >= 0) & (uv[1] <= h)
    return {"relative_pose": rel,
            "components": {"right": float(rel[0, 3]), "up": float(-rel[1, 3]), "forward": float(rel[2, 3]),
                           "yaw": math.degrees(yaw), "pitch": math.degrees(pitch), "roll": math.degrees(roll)},
            "flows": flows, "translation_flow": moved,
            "overlap": float(inside.mean()) if inside.size else 0.0,
            "points": int(ok.sum()), "valid_fraction": float(ok.mean())}


def image_problems(images: list[Image.Image], frames: list) -> list[str]:
    """Each shown image is its frame (within JPEG tolerance) and nearer to it than to the other frame."""
    problems = []
    rgbs = [f.rgb.astype(np.int16) for f in frames]
    for n, (img, own, other) in enumerate(zip(images, rgbs, rgbs[::-1])):
        arr = np.asarray(img.convert("RGB"), np.int16)
        if arr.shape != own.shape:
            problems.append(f"image {n + 1} is {arr.shape[1]}x{arr.shape[0]}, frame {frames[n].index} is "
                            f"{own.shape[1]}x{own.shape[0]}")
            continue
        d_own, d_other = float(np.abs(arr - own).mean()), float(np.abs(arr - other).mean())
        if d_own > IMAGE_TOL or (d_other < d_own):
            problems.append(f"image {n + 1} is not frame {frames[n].index} (mean difference {d_own:.2f}; "
                            f"{d_other:.2f} to the other frame)")
    return problems


def verify_sample(images: list[Image.Image], answer: str, meta: dict, source) -> list[str]:
    if source is None:
        return ["source sequence unavailable: cannot re-read the poses and depth of the frames"]
    if len(images) != 2:
        return [f"expected 2 images, got {len(images)}"]
    i1, i2 = (int(i) for i in meta["frames"])
    if not (0 <= i1 < len(source) and 0 <= i2 < len(source)) or i1 == i2:
        return [f"frames {i1}, {i2} are not two distinct frames of a {len(source)}-frame sequence"]
    if (i2 < i1) != bool(meta.get("reversed", False)):
        problems_order = [f"frames {i1} -> {i2} go {'back' if i2 < i1 else 'forward'} in time, metadata says reversed={meta.get('reversed')}"]
        return problems_order
    problems: list[str] = []
    poses = [source.pose(i1), source.pose(i2)]
    if any(p is None for p in poses):
        return [f"frame {i} has no pose in the source" for i, p in zip((i1, i2), poses) if p is None]
    for i, p, rec in zip((i1, i2), poses, meta["poses"]):
        if not np.allclose(p, np.asarray(rec, np.float64), atol=1e-9):
            problems.append(f"pose of frame {i} differs from the recorded one")
    if source.intrinsics is None or source.intrinsics.to_json() != meta["intrinsics"]:
        problems.append(f"intrinsics {None if source.intrinsics is None else source.intrinsics.to_json()} != recorded {meta['intrinsics']}")
        return problems
    frames = source.frames([i1, i2])
    for f, digest in zip(frames, meta["frame_digests"]):
        if f.source.digest != digest:
            problems.append(f"frame {f.index}: digest {f.source.digest} != recorded {digest}")
    if frames[0].depth is None:
        return problems + [f"frame {i1} has no depth"]
    th = meta["thresholds"]
    got = recompute(poses[0], poses[1], frames[0].depth, meta["intrinsics"], int(meta["grid"]["cols"]),
                    float(th["behind_m"]), float(th["flow_cap"]))
    for what in ("flows", "components"):
        for name, value in got[what].items():
            if not math.isclose(value, float(meta[what][name]), rel_tol=1e-5, abs_tol=1e-6):
                problems.append(f"{what[:-1]} {name}: recomputed {value:.6g}, recorded {meta[what][name]:.6g}")
    word, label_problems = label_from_flows(got["flows"], got["components"], th, bool(meta["vertical"]), got["overlap"])
    problems += label_problems
    options = meta.get("options") or {}
    problems += option_problems(options, word, bool(meta["vertical"]))
    if word is not None and options.get(answer.strip()) != word:
        problems.append(f"answer {answer!r} = {options.get(answer.strip())!r} but the poses and depth give {word!r}")
    problems += image_problems(images, frames)
    return problems
