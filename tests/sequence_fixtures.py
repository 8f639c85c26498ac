"""Small synthetic sequences for tests: frames, an in-memory posed RGB-D ArraySequence, and writers of every layout
the sequence readers take (videos, frame folders, ScanNet, TUM, posed) into a tmp folder.

Import from a test with ``sys.path.insert(0, os.path.dirname(__file__))`` then ``from sequence_fixtures import ...``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ssrl_plugin.core import DepthMap
from ssrl_plugin.sequence import ArraySequence, Intrinsics
from ssrl_plugin.sequence_export import write_frames, write_posed, write_scannet, write_tum, write_video

W, H = 160, 120


def canvas(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with blocks of distinct colours: every window of it looks different, and a video
    codec keeps it recognisable."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 23 + 1), 128 + 100 * np.sin(yy / 17 + 2),
                    128 + 100 * np.sin((xx + yy) / 31)], axis=-1)
    for _ in range(max(4, h * w // 1500)):
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        img[y:y + int(rng.integers(4, 16)), x:x + int(rng.integers(4, 16))] = rng.integers(0, 256, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def moving_frames(n: int, w: int = W, h: int = H, seed: int = 0, step: tuple[int, int] = (3, 2)) -> list[np.ndarray]:
    """``n`` distinct frames: a window panning over :func:`canvas` by ``step`` (dx, dy) pixels per frame."""
    big = canvas(h + step[1] * n + 1, w + step[0] * n + 1, seed)
    return [np.ascontiguousarray(big[i * step[1]:i * step[1] + h, i * step[0]:i * step[0] + w]) for i in range(n)]


def look_at_pose(i: int, n: int) -> np.ndarray:
    """Camera-to-world (OpenCV axes) of frame ``i`` of ``n`` on an arc around the origin, looking at it, with a
    little roll: rotations about every axis, so a transposed or mis-ordered pose would not pass for this one."""
    a = 0.6 * i / max(n - 1, 1)
    c = np.array([2.5 * math.sin(a), -0.4 - 0.1 * i / max(n, 1), -2.5 * math.cos(a)])
    z = -c / np.linalg.norm(c)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    roll = 0.05 * i
    xr, yr = math.cos(roll) * x + math.sin(roll) * y, -math.sin(roll) * x + math.cos(roll) * y
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = xr, yr, z, c
    return m


def hole_depth(i: int, w: int = W, h: int = H) -> DepthMap:
    """A depth ramp 0.8-6 m with a rectangular hole (invalid), different per frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    values = (0.8 + 5.2 * (xx / w) * 0.5 + 2.6 * (yy / h) * 0.5 + 0.01 * i).astype(np.float32)
    valid = np.ones((h, w), bool)
    valid[h // 4 + i: h // 2 + i, w // 5: w // 3] = False
    values[~valid] = 0
    return DepthMap(values, valid, "metric")


def array_sequence(n: int = 6, w: int = W, h: int = H, fps: float = 30.0, seed: int = 0, depth: bool = True,
                   unposed: tuple[int, ...] = (), seq_id: str = "test/seq") -> ArraySequence:
    """A posed RGB-D ArraySequence: panning frames, arc poses (``unposed`` indices get None), intrinsics with a
    non-centred principal point, depth with holes, timestamps i / fps."""
    poses = [None if i in unposed else look_at_pose(i, n) for i in range(n)]
    k = Intrinsics(fx=0.9 * w, fy=0.95 * w, cx=w / 2 + 3.25, cy=h / 2 - 2.5, width=w, height=h)
    return ArraySequence(id=seq_id, rgb=moving_frames(n, w, h, seed), timestamps=np.arange(n) / fps,
                         depth=[hole_depth(i, w, h) for i in range(n)] if depth else None, poses=poses, intrinsics=k)


def write_layout(kind: str, seq: ArraySequence, folder: str | os.PathLike, **kw) -> Path:
    """Write ``seq`` in the layout of ``--sequences KIND`` under ``folder`` (created); returns the path to give."""
    folder = Path(folder)
    if kind == "video":
        path = folder.with_suffix(kw.pop("ext", ".mp4"))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(seq.rgb, path, fps=kw.pop("fps", 30.0), **kw)
        return path
    if kind == "frames":
        write_frames(seq.rgb, folder, **kw)
    elif kind == "scannet":
        write_scannet(seq, folder, **kw)
    elif kind == "tum":
        write_tum(seq, folder, **kw)
    elif kind == "posed":
        write_posed(seq, folder, **kw)
    else:
        raise ValueError(kind)
    return folder
