"""Independent verification of :mod:`ssrl_plugin.tasks.cross_view` samples.

A different route from ``generate``: the two recorded frames are re-decoded from the re-opened sequence (their
digests must match), the poses and intrinsics come from the SOURCE (and must equal the recorded ones), frame 1's
depth is read in the query's box by plain slicing (median of the valid pixels), and the point goes through
homogeneous 4x4 transforms with general matrix inverses and the K matrix (no helper of :mod:`ssrl_plugin.sequence`).
The projection must be visible in frame 2 and fall inside the answer's box and no other; every distractor's own
point (re-read from frame 2's depth) must be far from the query's point. The images must be the frames: pixels away
from the markers equal the frame (JPEG tolerance) and the markers are where the metadata says
(:func:`~.depth_common.check_markers`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..core import Source
from ..errors import SSRLError
from .depth_common import check_markers

LETTERS = ["A", "B", "C", "D"]
LABELS = ["Q", *LETTERS]
MAX_MEAN_DIFF = 10.0  # mean |shown - frame| (0-255) away from the markers: JPEG stays below ~4 at quality 85, ~6 at 60
BIG_DIFF = 48  # a pixel off by more than this was changed, not compressed ...
MAX_BIG_SHARE = 0.3  # ... and no 8 x 8 block may have more than this share of such pixels (a drawn stroke has ~half)


def _median_depth(depth, box: list[int]) -> tuple[float, float]:
    x0, y0, x1, y1 = box
    vals = np.asarray(depth.values[y0:y1, x0:x1], np.float64)
    ok = np.asarray(depth.valid[y0:y1, x0:x1]) & np.isfinite(vals) & (vals > 0)
    return (float(np.median(vals[ok])) if ok.any() else float("nan")), float(ok.mean())


def _away_from_markers(image: Image.Image, rgb: np.ndarray, marks: list[tuple[list[float], float]], what: str) -> list[str]:
    """The shown image equals ``rgb`` outside discs (centre, radius) around the drawn marks."""
    img = np.asarray(image.convert("RGB"), np.int16)
    if img.shape != rgb.shape:
        return [f"{what}: shown {img.shape[1]}x{img.shape[0]}, the frame gives {rgb.shape[1]}x{rgb.shape[0]}"]
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    away = np.ones((h, w), bool)
    for (cx, cy), r in marks:
        away &= np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) > r
    diff = np.abs(img - rgb.astype(np.int16)).max(axis=2)
    mean = float(diff[away].mean())
    hb, wb = h // 8 * 8, w // 8 * 8
    big = ((diff > BIG_DIFF) & away)[:hb, :wb].reshape(hb // 8, 8, wb // 8, 8).sum(axis=(1, 3))
    count = away[:hb, :wb].reshape(hb // 8, 8, wb // 8, 8).sum(axis=(1, 3))
    share = float(np.where(count >= 16, big / np.maximum(count, 1), 0.0).max())
    if mean > MAX_MEAN_DIFF or share > MAX_BIG_SHARE:
        return [f"{what}: away from the markers it differs from the frame (mean {mean:.2f}; an 8x8 block has {share:.0%} "
                f"of its pixels off by > {BIG_DIFF})"]
    return []


def verify_sample(images: list[Image.Image], answer: str, meta: dict[str, Any], seq) -> list[str]:
    if seq is None:
        return ["source sequence unavailable: cannot re-read the frames"]
    if len(images) != 2:
        return [f"expected 2 images, got {len(images)}"]
    a, b = (int(i) for i in meta["frames"])
    try:
        f1, f2 = seq.frames([a, b])
    except (IndexError, SSRLError) as exc:
        return [f"frames {a}, {b} cannot be decoded: {exc}"]
    problems = [f"frame {f.index}: digest {f.source.digest} != recorded {d}"
                for f, d in zip((f1, f2), meta["frame_digests"]) if f.source.digest != d]
    poses = [seq.pose(a), seq.pose(b)]
    if any(p is None for p in poses):
        return problems + ["the source has no pose for a recorded frame"]
    for i, (p, rec) in enumerate(zip(poses, meta["poses"])):
        if not np.allclose(p, np.asarray(rec, np.float64), rtol=0, atol=1e-9):
            problems.append(f"pose of frame {i + 1} differs from the recorded one")
    k = seq.intrinsics
    if k is None or k.to_json() != meta["intrinsics"]:
        problems.append(f"intrinsics {None if k is None else k.to_json()} != recorded {meta['intrinsics']}")
    if f1.depth is None or f2.depth is None:
        return problems + ["a recorded frame has no depth"]
    if problems:
        return problems
    kmat = np.array([[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]])
    th = meta["thresholds"]
    q = meta["query"]
    ox, oy, x1c, y1c = (int(v) for v in meta["crop_box"])
    sx0, sy0, sx1, sy1 = (int(v) for v in q["shown_box"])
    box = [sx0 + ox, sy0 + oy, sx1 + ox, sy1 + oy]
    if box != [int(v) for v in q["box"]]:
        problems.append(f"query box {q['box']} != shown box {q['shown_box']} + crop offset ({ox}, {oy})")
    z, vf = _median_depth(f1.depth, box)
    if not vf >= th["min_valid_fraction"] - 1e-9:
        return problems + [f"query box {box}: only {vf:.0%} valid depth"]
    u, v = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0  # the centre pixel's centre (odd window)
    cam1 = np.linalg.inv(kmat) @ np.array([u, v, 1.0]) * z
    world = poses[0] @ np.append(cam1, 1.0)
    cam2 = (np.linalg.inv(poses[1]) @ world)[:3]
    if cam2[2] <= 0:
        return problems + ["the query's point is behind camera 2"]
    u2, v2 = (kmat @ (cam2 / cam2[2]))[:2]
    if not np.allclose([u2, v2, cam2[2]], meta["projection"], rtol=1e-6, atol=1e-4):
        problems.append(f"projection ({u2:.3f}, {v2:.3f}, {cam2[2]:.4f}) != recorded {meta['projection']}")
    h, w = f2.depth.shape
    col, row = int(np.floor(u2)), int(np.floor(v2))
    if not (0 <= col < w and 0 <= row < h):
        return problems + [f"the query's point projects to ({u2:.1f}, {v2:.1f}), outside frame 2"]
    seen = float(f2.depth.values[row, col]) if f2.depth.valid[row, col] else float("nan")
    if not abs(seen - cam2[2]) <= th["occlusion_tol"] * cam2[2]:
        problems.append(f"occluded: frame 2's depth at ({col}, {row}) is {seen:.4g}, the point is at {cam2[2]:.4g}")
    cands = meta["candidates"]
    labels = [str(c["label"]) for c in cands]
    if labels != LETTERS:
        return problems + [f"candidates are labelled {labels}, expected {LETTERS}"]
    holding = [c["label"] for c in cands if c["box"][0] <= u2 < c["box"][2] and c["box"][1] <= v2 < c["box"][3]]
    if holding != [answer.strip()]:
        problems.append(f"answer {answer!r}, but the projection ({u2:.1f}, {v2:.1f}) lies in "
                        f"{holding or 'no candidate box'}")
    for i, c in enumerate(cands):
        cz, cvf = _median_depth(f2.depth, c["box"])
        if not cvf >= th["min_valid_fraction"] - 1e-9:
            problems.append(f"candidate {c['label']}: only {cvf:.0%} valid depth")
            continue
        if not np.isclose(cz, c["median_farness"], rtol=1e-5):
            problems.append(f"candidate {c['label']}: depth {cz:.5g} != recorded {c['median_farness']:.5g}")
        cu, cv = (c["box"][0] + c["box"][2]) / 2.0, (c["box"][1] + c["box"][3]) / 2.0
        point = np.linalg.inv(kmat) @ np.array([cu, cv, 1.0]) * cz
        if c["label"] != answer.strip() and np.linalg.norm(point - cam2) < 0.99 * th["min_3d_frac"] * 0.5 * (cz + cam2[2]):
            problems.append(f"distractor {c['label']} shows a point {np.linalg.norm(point - cam2):.3g} m from the query's")
        for d in cands[i + 1:]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = c["box"], d["box"]
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                problems.append(f"candidates {c['label']} and {d['label']} overlap")
    ring, badge = float(meta["ring_radius"]), float(meta["badge_radius"])
    crop = np.ascontiguousarray(f1.rgb[oy:y1c, ox:x1c])
    marks1 = [(q["shown_center"], ring + 3.0), (q["badge_center"], badge + 3.0)]
    marks2 = [m for c in cands for m in ((c["center"], ring + 3.0), (c["badge_center"], badge + 3.0))]
    problems += _away_from_markers(images[0], crop, [([x + 0.5, y + 0.5], r) for (x, y), r in marks1], "image 1")
    problems += _away_from_markers(images[1], f2.rgb, [([x + 0.5, y + 0.5], r) for (x, y), r in marks2], "image 2")
    if not problems:
        crop_src = Source(id=f"{f1.source.id}@crop", rgb=crop, digest=f1.source.digest)
        shown_q = {"label": q["label"], "center": q["shown_center"], "box": q["shown_box"],
                   "badge_center": q["badge_center"]}
        problems += check_markers(images[0], crop_src, [shown_q], ring, badge, LABELS)
        problems += check_markers(images[1], f2.source, cands, ring, badge, LABELS)
    return problems
