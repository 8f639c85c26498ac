"""Sequences of frames (videos, folders of frames, posed RGB-D sequences): the input of the video tasks.

A :class:`Sequence` is opened cheaply (its index: frame list, timestamps, poses, intrinsics) and decodes only the
frames a task asks for (:meth:`Sequence.frames`), by seeking. Tasks pick frame indices from ``rng`` using what is
known without decoding (timestamps, poses), then decode just those.

Conventions (every reader converts to them, so tasks never see a dataset's own):

- ``timestamps``: seconds from the first frame, float64, strictly increasing, one per frame of the sequence AFTER
  the reader's sampling (``fps=`` / ``frames=`` options): index ``i`` always means the i-th sampled frame.
- ``pose(i)``: 4x4 float64 camera-to-world, OpenCV camera axes (x right, y down, z forward), metres; ``None``
  where the dataset has no pose for that frame (a missing or invalid pose line). ScanNet and TUM already use
  these axes.
- ``intrinsics``: pinhole ``fx, fy, cx, cy`` in pixels of the frames as delivered (after any resize), with pixel
  centres at integer coordinates + 0.5 (the pixel (col, row) covers [col, col + 1) x [row, row + 1)).
- depth: :class:`~ssrl_plugin.core.DepthMap` aligned with the delivered RGB frame (z-depth along the optical
  axis, metres for ``metric``).

A decoded frame is a :class:`Frame` whose ``source`` is an ordinary :class:`~ssrl_plugin.core.Source`
(id ``"<sequence id>#<frame index>"``), so image helpers written for the single-image tasks work on frames.
"""

from __future__ import annotations

import abc
import os
from collections import OrderedDict
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from .core import DepthMap, Source
from .errors import BadFrame, SourceError
from .imaging import digest_text

FRAME_CACHE = 24  # decoded frames kept per open sequence (tasks retry attempts on the same frames)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera for the image resized to ``width`` x ``height`` (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy),
                "width": int(self.width), "height": int(self.height)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Intrinsics:
        return cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"]))


@dataclass
class Frame:
    """One decoded frame of a sequence."""

    index: int  # position in the (sampled) sequence
    timestamp: float  # seconds from the sequence's first frame
    source: Source  # rgb (+ aligned depth); id "<sequence id>#<index>", digest of this frame's own bytes
    pose: np.ndarray | None = None  # 4x4 camera-to-world (OpenCV axes), None when unknown
    intrinsics: Intrinsics | None = None

    @property
    def rgb(self) -> np.ndarray:
        return self.source.rgb

    @property
    def depth(self) -> DepthMap | None:
        return self.source.depth


class Sequence(abc.ABC):
    """An opened sequence: its index is in memory, its frames are decoded on demand.

    Subclasses set ``id``, ``digest`` (fingerprint of the index: file names, sizes, pose and timestamp text; each
    frame's ``source.digest`` fingerprints the frame itself), ``info`` (JSON-serialisable provenance: layout,
    path, original size, fps...), ``timestamps``, ``width``/``height`` (of delivered frames) and implement
    :meth:`_decode`. The attributes ``id``, ``digest``, ``info``, ``width`` and ``height`` mirror
    :class:`~ssrl_plugin.core.Source`, so the builder records provenance the same way for both.
    """

    id: str
    digest: str
    info: dict[str, Any]
    timestamps: np.ndarray
    width: int
    height: int
    intrinsics: Intrinsics | None = None
    has_depth: bool = False

    def __len__(self) -> int:
        return int(len(self.timestamps))

    def pose(self, index: int) -> np.ndarray | None:
        """Camera-to-world of frame ``index`` (no decoding); None when unknown. Default: no poses."""
        return None

    def posed_indices(self) -> np.ndarray:
        """Indices of the frames that have a pose."""
        return np.array([i for i in range(len(self)) if self.pose(i) is not None], np.int64)

    @property
    def has_pose(self) -> bool:
        return any(self.pose(i) is not None for i in range(len(self)))

    @abc.abstractmethod
    def _decode(self, indices: list[int]) -> list[tuple[np.ndarray, DepthMap | None, str]]:
        """(rgb uint8 (H, W, 3), aligned depth or None, frame digest ``"xxh3_128:<hex>"``) for each of
        ``indices`` (sorted, distinct, in range), at ``width`` x ``height``. Raise SourceError naming the file."""

    def frames(self, indices: Seq[int]) -> list[Frame]:
        """The frames at ``indices`` (any order, repeats allowed), decoding only those not cached, in ascending
        order (one forward pass of seeks through a video).

        A frame that cannot be decoded raises :class:`~ssrl_plugin.errors.BadFrame` (a rejected draw, not a dead
        sequence): always for the first bad index in ``indices`` order, whatever was decoded or cached before, so
        which frame is reported never depends on visit order or worker count. Bad frames are remembered, and a
        request starting with one raises at once."""
        cache, bad = self._cache(), self._bad_frames()
        wanted = [int(i) for i in indices]
        for i in wanted:
            if not 0 <= i < len(self):
                raise IndexError(f"{self.id}: frame {i} out of range [0, {len(self)})")
        # only the frames before the first known-bad one decide which bad frame comes first
        stop = next((k for k, i in enumerate(wanted) if i in bad), len(wanted))
        missing = sorted({i for i in wanted[:stop] if i not in cache})
        if missing:
            try:
                decoded = list(zip(missing, self._decode(missing)))
            except SourceError:
                # one frame alone at a time: the bad ones are then the same whatever batch they came in
                decoded = []
                for i in missing:
                    try:
                        decoded.append((i, self._decode([i])[0]))
                    except SourceError as exc:
                        bad[i] = str(exc)
            for i, (rgb, depth, digest) in decoded:
                src = Source(id=f"{self.id}#{i}", rgb=rgb, digest=digest, depth=depth,
                             info={"frame_index": i, "timestamp": float(self.timestamps[i])})
                cache[i] = Frame(i, float(self.timestamps[i]), src, self.pose(i), self.intrinsics)
        first_bad = next((i for i in wanted if i in bad), None)
        out = []
        if first_bad is None:
            for i in wanted:
                cache.move_to_end(i)
                out.append(cache[i])
        # evict only now: evicting while the missing frames went in could drop a wanted frame that was cached
        while len(cache) > FRAME_CACHE:
            cache.popitem(last=False)
        if first_bad is not None:
            raise BadFrame(self._frame_file(bad[first_bad], first_bad), bad[first_bad], first_bad)
        return out

    def frame(self, index: int) -> Frame:
        return self.frames([index])[0]

    def _bad_frames(self) -> dict[int, str]:
        """Frames found undecodable: index -> the one-line message of their SourceError."""
        return self.__dict__.setdefault("_bad_frame_errors", {})

    def _frame_file(self, message: str, index: int) -> str:
        """The file a bad frame's message names (SourceError messages start with ``PATH: ``: the first prefix that
        exists or lies in the sequence's folder, since a path may hold ": " itself); ``<sequence>#<index>`` when
        that is the sequence's own file (a video: its frames are no files of their own) or no file is named."""
        own = self.info.get("path") if isinstance(getattr(self, "info", None), dict) else None
        inside = os.path.join(own, "") if own else None
        parts = message.split(": ")
        for head in (": ".join(parts[:k]) for k in range(1, len(parts))):
            if os.path.exists(head) or (inside and head.startswith(inside)):
                return head if head != own and not os.path.isdir(head) else f"{own}#{index}"
        return f"{own or self.id}#{index}"

    def _cache(self) -> OrderedDict:
        cache = self.__dict__.get("_frame_cache")
        if cache is None:
            cache = self.__dict__["_frame_cache"] = OrderedDict()
        return cache


def frame_digest(rgb: np.ndarray, depth: DepthMap | None = None) -> str:
    """Digest of decoded pixels (for frames that are not files of their own, e.g. video frames)."""
    h = xxhash.xxh3_128(np.ascontiguousarray(rgb).tobytes())
    if depth is not None:
        h.update(np.ascontiguousarray(depth.values, np.float32).tobytes())
    return digest_text(h)


@dataclass
class ArraySequence(Sequence):
    """A sequence held in memory (demo renders, tests): frames are given as arrays."""

    id: str
    rgb: list[np.ndarray]
    timestamps: np.ndarray
    depth: list[DepthMap] | None = None
    poses: list[np.ndarray | None] | None = None
    intrinsics: Intrinsics | None = None
    info: dict[str, Any] = field(default_factory=dict)
    digest: str = ""

    def __post_init__(self):
        self.timestamps = np.asarray(self.timestamps, np.float64)
        if len(self.rgb) != len(self.timestamps):
            raise ValueError(f"{self.id}: {len(self.rgb)} frames for {len(self.timestamps)} timestamps")
        if len(self.timestamps) > 1 and not np.all(np.diff(self.timestamps) > 0):
            raise ValueError(f"{self.id}: timestamps must increase strictly")
        self.height, self.width = (int(s) for s in self.rgb[0].shape[:2])
        self.has_depth = self.depth is not None
        if not self.digest:
            h = xxhash.xxh3_128(self.timestamps.tobytes())
            for i in range(len(self.rgb)):
                h.update(frame_digest(self.rgb[i], self.depth[i] if self.depth else None).encode())
                pose = self.pose(i)
                h.update(b"-" if pose is None else np.asarray(pose, np.float64).tobytes())
            self.digest = digest_text(h)

    def pose(self, index: int) -> np.ndarray | None:
        if self.poses is None:
            return None
        p = self.poses[index]
        return None if p is None else np.asarray(p, np.float64)

    def _decode(self, indices: list[int]) -> list[tuple[np.ndarray, DepthMap | None, str]]:
        out = []
        for i in indices:
            depth = self.depth[i] if self.depth else None
            out.append((self.rgb[i], depth, frame_digest(self.rgb[i], depth)))
        return out


# ------------------------------------------------------------------------------------------------- geometry


def relative_pose(pose_a: np.ndarray, pose_b: np.ndarray) -> np.ndarray:
    """Camera b in camera a's frame: ``inv(pose_a) @ pose_b`` (both camera-to-world), computed with the
    rigid-transform inverse (R^T, -R^T t), not a general matrix inverse."""
    r, t = pose_a[:3, :3], pose_a[:3, 3]
    inv = np.eye(4)
    inv[:3, :3] = r.T
    inv[:3, 3] = -r.T @ t
    return inv @ pose_b


def back_project(u: np.ndarray, v: np.ndarray, z: np.ndarray, k: Intrinsics) -> np.ndarray:
    """Camera-frame points (N, 3) of pixel coordinates ``u`` (x, columns) and ``v`` (y, rows) at z-depth ``z``
    (pixel coordinates in the continuous convention: the centre of pixel (col, row) is (col + 0.5, row + 0.5))."""
    u, v, z = (np.asarray(a, np.float64) for a in (u, v, z))
    return np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], axis=-1)


def project(points: np.ndarray, k: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, z) of camera-frame points (N, 3); u, v in the continuous pixel convention of :func:`back_project`."""
    p = np.asarray(points, np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return k.fx * p[..., 0] / z + k.cx, k.fy * p[..., 1] / z + k.cy, z


def transform(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to points (N, 3)."""
    p = np.asarray(points, np.float64)
    return p @ pose[:3, :3].T + pose[:3, 3]
