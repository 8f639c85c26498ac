"""Sequence inputs: videos, folders of frames and posed RGB-D layouts (ScanNet, TUM RGB-D, our own ``posed``).

``--sequences KIND:PATH[,key=value...]`` specs are parsed by :func:`parse_sequence_spec` and found by
:func:`discover_sequences` (picklable :class:`~ssrl_plugin.sources.SourceRef` objects, ``scheme="sequence"``);
:func:`open_sequence` turns a ref into a :class:`~ssrl_plugin.sequence.Sequence` that holds only the index (file
lists, timestamps, poses, intrinsics; for a video the timestamp of every frame, read by demuxing) and decodes a
frame only when a task asks for it. Readers: :mod:`ssrl_plugin.sequence_video` (videos),
:mod:`ssrl_plugin.sequence_layouts` (frames, scannet, tum, posed; their index files are parsed by
:mod:`ssrl_plugin.sequence_index`); writers of every layout: :mod:`ssrl_plugin.sequence_export`.

Options of every KIND (applied in this order, on the sequence's own timeline):

- ``fps=R``: sample the timeline at R frames per second (the frame nearest to each multiple of 1/R, earlier on a
  tie; a rate above the native one keeps every frame);
- ``frames=N``: N frames evenly spaced over the sequence (all of them when it has fewer); not with ``fps=``;
- ``max_frames=N``: keep the first N frames (a cap that keeps the spacing).

A sequence exposes only its sampled frames: index ``i`` is the i-th sampled frame and timestamps start at 0.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np
from PIL import Image

from .errors import ConfigError, SourceError
from .sources import (
    IMAGE_EXTS,
    SEQUENCE_SCHEME,
    LoadOptions,
    SourceRef,
    _file_problem,
    _make_id,
    _root_name,
    split_spec,
    walk_folders,
)

KINDS = ("video", "frames", "scannet", "tum", "posed")
POSED_KINDS = ("scannet", "tum", "posed")  # layouts whose refs carry depth (SourceRef.depth_format = the kind)
VIDEO_EXTS = (".mp4", ".webm", ".mov", ".mkv", ".avi")
COMMON_KEYS = ("fps", "frames", "max_frames")
KIND_KEYS = {
    "video": (),
    "frames": ("rate",),
    "scannet": ("rate", "depth_scale"),
    "tum": ("max_dt", "depth_scale", "intrinsics"),
    "posed": ("depth_scale",),
}
DEFAULT_RATE = 30.0  # native frame rate of frame folders and ScanNet exports (no timestamps of their own)
TUM_MAX_DT = 0.02  # seconds: rgb-depth association and groundtruth bracketing
MIN_FRAMES = 2

Skipped = list[tuple[str, str]]


# ------------------------------------------------------------------------------------------------------ specs

def _number(spec: str, key: str, value: str, *, integer: bool = False) -> float | int:
    try:
        x = int(value) if integer else float(value)
    except ValueError:
        raise ConfigError(f"--sequences {spec}: {key}={value!r} is not {'an integer' if integer else 'a number'}") from None
    if not math.isfinite(x):
        raise ConfigError(f"--sequences {spec}: {key}={value!r} must be finite")
    return x


def parse_sequence_spec(spec: str) -> dict:
    """Parse ``KIND:PATH[,key=value...]`` (KIND: video | frames | scannet | tum | posed).

    Returns ``{"kind", "path", "options"}`` with ``options`` the given keys only, typed (see the module docstring
    for ``fps``, ``frames``, ``max_frames``). Kind-specific keys: ``rate=`` (frames, scannet: the native frame rate
    that gives timestamps, default 30), ``depth_scale=`` (scannet, tum, posed: stored value x depth_scale = metres;
    defaults 0.001 for millimetre PNG, 1/5000 for TUM, 1 for ``.npy``), ``max_dt=`` (tum: seconds, default 0.02),
    ``intrinsics=fx;fy;cx;cy`` (tum, in TUM's convention: integer pixel centres). Trailing comma parts that are not
    ``key=value`` belong to the path, as in ``--rgbd`` specs.
    """
    kind, path, items = split_spec(os.fspath(spec), "--sequences", KINDS)
    allowed = COMMON_KEYS + KIND_KEYS[kind]
    options: dict[str, Any] = {}
    for key, value in items:
        if key not in allowed:
            raise ConfigError(f"--sequences {spec}: unknown key {key!r} for {kind} (expected one of {', '.join(allowed)})")
        if key in ("frames", "max_frames"):
            x = _number(spec, key, value, integer=True)
            if x < MIN_FRAMES:
                raise ConfigError(f"--sequences {spec}: {key}={value} must be >= {MIN_FRAMES}")
        elif key == "intrinsics":
            nums = [_number(spec, key, v) for v in value.replace(";", " ").split()]
            if len(nums) != 4 or nums[0] <= 0 or nums[1] <= 0:
                raise ConfigError(f"--sequences {spec}: intrinsics={value!r} must be fx;fy;cx;cy with fx, fy > 0")
            x = tuple(float(v) for v in nums)
        else:
            x = float(_number(spec, key, value))
            if x <= 0:
                raise ConfigError(f"--sequences {spec}: {key}={value} must be > 0")
            if key == "depth_scale" and kind in ("scannet", "tum") and x >= 1:
                raise ConfigError(f"--sequences {spec}: depth_scale={value} multiplies the stored 16-bit value "
                                  f"(metres per unit: 0.001 for millimetres, 0.0002 for TUM's factor 5000)")
        options[key] = x
    if "fps" in options and "frames" in options:
        raise ConfigError(f"--sequences {spec}: give fps= or frames=, not both")
    return {"kind": kind, "path": path, "options": options}


def _canon(value: Any) -> str:
    if isinstance(value, tuple):
        return ";".join(repr(float(v)) for v in value)
    return str(value) if isinstance(value, int) else repr(float(value))


def spec_extra(kind: str, options: dict) -> tuple:
    """``SourceRef.extra`` of a sequence ref: sorted ``(key, text)`` pairs, the kind included."""
    return tuple(sorted([("kind", kind)] + [(k, _canon(v)) for k, v in options.items()]))


def ref_options(ref: SourceRef) -> tuple[str, dict]:
    """(kind, typed options) back from ``ref.extra`` (see :func:`spec_extra`)."""
    extra = dict(ref.extra)
    kind = extra.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(f"{ref.id}: sequence ref without a known kind (extra={ref.extra!r})")
    out: dict[str, Any] = {}
    for k, v in extra.items():
        if k in ("frames", "max_frames"):
            out[k] = int(v)
        elif k == "intrinsics":
            out[k] = tuple(float(x) for x in v.split(";"))
        else:
            out[k] = float(v)
    return kind, out


# --------------------------------------------------------------------------------------------------- sampling

def sample_indices(timestamps: np.ndarray, options: dict) -> np.ndarray:
    """Indices of the frames kept by ``fps=`` / ``frames=`` / ``max_frames=`` (sorted, distinct)."""
    t = np.asarray(timestamps, np.float64)
    n = len(t)
    idx = np.arange(n)
    if n == 0:
        return idx
    fps = options.get("fps")
    if fps:
        t0 = t - t[0]
        k = int(math.floor(t0[-1] * fps + 1e-9)) + 1
        grid = np.arange(k, dtype=np.float64) / fps  # k / fps, not a running sum: no drift over long sequences
        right = np.clip(np.searchsorted(t0, grid), 0, n - 1)
        left = np.clip(right - 1, 0, n - 1)
        idx = np.unique(np.where(np.abs(t0[left] - grid) <= np.abs(t0[right] - grid), left, right))
    frames = options.get("frames")
    if frames and frames < len(idx):
        idx = idx[np.unique(np.rint(np.linspace(0, len(idx) - 1, frames)).astype(np.int64))]
    cap = options.get("max_frames")
    if cap:
        idx = idx[:cap]
    return idx


def sampled(label: str, timestamps: np.ndarray, options: dict) -> np.ndarray:
    """:func:`sample_indices`, failing with a one-line SourceError naming ``label`` below two frames."""
    n = len(timestamps)
    if n < MIN_FRAMES:
        raise SourceError(f"{label}: {n} frame{'s' if n != 1 else ''}; a sequence needs at least {MIN_FRAMES}")
    idx = sample_indices(timestamps, options)
    if len(idx) < MIN_FRAMES:
        raise SourceError(f"{label}: {len(idx)} frame left of {n} after sampling ({_describe(options)}); "
                          f"a sequence needs at least {MIN_FRAMES}")
    return idx


def _describe(options: dict) -> str:
    return ", ".join(f"{k}={_canon(v)}" for k, v in sorted(options.items()) if k in COMMON_KEYS) or "no options"


# ----------------------------------------------------------------------------------------------- frame sizes

def target_size(w: int, h: int, opts: LoadOptions, label: str) -> tuple[int, int]:
    """Delivered frame size for native ``w`` x ``h``: ``min_side`` checked on the native size (as for images),
    the longer side capped at ``max_side`` (aspect kept, rounded like :func:`ssrl_plugin.imaging.load_rgb`)."""
    if min(w, h) < opts.min_side:
        raise SourceError(f"{label}: frames are {w}x{h}, smaller than source.min_side={opts.min_side}")
    if opts.max_image_pixels > 0 and w * h > opts.max_image_pixels:
        raise SourceError(f"{label}: frames are {w}x{h} = {w * h} pixels, over source.max_image_pixels={opts.max_image_pixels}")
    longer = max(w, h)
    if opts.max_side <= 0 or longer <= opts.max_side:
        return w, h
    scale = opts.max_side / longer
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos resize of an RGB uint8 array to ``size`` (w, h); the array itself when already that size."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return np.ascontiguousarray(rgb)
    out = Image.fromarray(np.ascontiguousarray(rgb)).resize(tuple(size), Image.Resampling.LANCZOS)
    return np.ascontiguousarray(np.asarray(out, np.uint8))


_NAT = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame_2`` before ``frame_10``: digit runs compare as numbers, text case-insensitively;
    the name itself breaks ties, so the order is total and the same on every machine."""
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in _NAT.split(name) if p)
    return parts, name


# -------------------------------------------------------------------------------------------------- discovery

_walk_dirs = walk_folders  # the folder walk of image discovery: same hidden-entry, link-loop and error rules


def sequence_id(root: str, folder_or_file: str) -> str:
    """``<root name>/<path relative to root>``; a PATH that is itself the sequence gets ``<parent name>/<name>``
    (as a single image given to ``--rgb``)."""
    root_abs, p = os.path.abspath(root), os.path.abspath(folder_or_file)
    if p == root_abs:
        return _make_id(_root_name(os.path.dirname(root_abs)), os.path.basename(root_abs))
    return _make_id(_root_name(root_abs), os.path.relpath(p, root_abs))


def make_ref(kind: str, ref_id: str, path: str, options: dict, *, depth: bool, depth_scale: float = 1.0,
             invalid_value: float | None = None) -> SourceRef:
    """A sequence ref; ``depth`` False makes a ``video``-pool ref even for a posed layout (no depth files)."""
    return SourceRef(id=ref_id, scheme=SEQUENCE_SCHEME, rgb_path=os.path.abspath(path),
                     depth_format=kind if depth else None, depth_kind="metric",
                     depth_scale=float(depth_scale) if depth else 1.0,
                     invalid_value=invalid_value if depth else None, extra=spec_extra(kind, options))


def discover_sequences(spec: str) -> tuple[list[SourceRef], Skipped]:
    """Sequence sources from ``KIND:PATH[,key=value...]`` (see :func:`parse_sequence_spec`).

    Returns ``(refs sorted by id, skipped (absolute path, reason))``. Every file looked at and not used is in
    ``skipped`` with its reason: files of another kind, frames without their depth, a folder that looks like a
    sequence of KIND but is not one (with what the layout expects), a sequence whose index is broken (a garbage
    pose line, a missing intrinsics file, fewer than 2 frames: the reason is the one-line error ``open_sequence``
    would raise). One bad sequence never stops discovery. Videos are probed (container header: a truncated or
    corrupt file is reported here); frames are not decoded.
    """
    cfg = parse_sequence_spec(spec)
    root = cfg["path"]
    if not os.path.exists(root):
        raise SourceError(f"--sequences {spec}: no such file or folder {root}")
    kind = cfg["kind"]
    if kind != "video" and not os.path.isdir(root):
        raise SourceError(f"--sequences {spec}: {root} is not a folder")
    if kind == "video":
        from .sequence_video import discover_videos

        refs, skipped = discover_videos(root, cfg["options"])
    else:
        from .sequence_layouts import discover_layout

        refs, skipped = discover_layout(kind, root, cfg["options"])
    return sorted(refs, key=lambda r: r.id), sorted(skipped)


def find_sequence_folders(root: str, is_candidate, unused_reason: str) -> tuple[list[str], Skipped]:
    """Folders below ``root`` (``root`` included) for which ``is_candidate(folder)`` holds; not descended into.
    Files outside every such folder are reported with ``unused_reason`` (or their own file problem)."""
    skipped: Skipped = []
    found: list[str] = []
    for folder, subdirs, files in _walk_dirs(root, skipped):
        if is_candidate(folder):
            found.append(folder)
            subdirs[:] = []
            continue
        for f in files:
            p = os.path.join(folder, f)
            skipped.append((p, _file_problem(p) or unused_reason))
    return found, skipped


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


# ----------------------------------------------------------------------------------------------------- opening

def open_sequence(ref: SourceRef, opts: LoadOptions):
    """Open a ``scheme="sequence"`` ref: reads its index only (no frame is decoded, except a video's first frame,
    whose display rotation PyAV reports only on decoded frames). Problems -> SourceError naming the file."""
    kind, options = ref_options(ref)
    if kind == "video":
        from .sequence_video import VideoSequence

        return VideoSequence(ref, opts, options)
    from .sequence_layouts import open_layout

    return open_layout(kind, ref, opts, options)
