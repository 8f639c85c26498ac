"""Folders of frames and posed RGB-D layouts (ScanNet, TUM RGB-D, ``posed``) as sequences: discovery and opening.

The index (which files, timestamps, poses, intrinsics) comes from :mod:`ssrl_plugin.sequence_index`. Frames are
decoded by :class:`LayoutSequence` when asked for: RGB through :func:`ssrl_plugin.imaging.decode_rgb_file` (EXIF
applied), depth through :func:`ssrl_plugin.depth_io.read_generic_depth` (0, NaN and inf invalid), both fingerprinted
from the frame's own file bytes. ScanNet frames are delivered at the depth resolution (see
:mod:`ssrl_plugin.sequence_index`).
"""

from __future__ import annotations

import os

import numpy as np
import xxhash
from PIL import Image

from .core import DepthMap
from .depth_io import read_generic_depth
from .errors import SourceError
from .imaging import _open_guarded, decode_rgb_file, digest_text, update_digest
from .sequence import Intrinsics, Sequence
from .sequence_index import (
    EXPECTS,
    LayoutIndex,
    _fail,
    _rigid,
    index_frames,
    index_posed,
    index_scannet,
    index_tum,
    read_matrix_file,
)
from .sequence_io import (
    MIN_FRAMES,
    _canon,
    _walk_dirs,
    find_sequence_folders,
    is_image_name,
    make_ref,
    resize_rgb,
    sampled,
    sequence_id,
    target_size,
)
from .sources import LoadOptions, SourceRef, _file_problem, reason_not_image, resize_depth_nearest

Skipped = list[tuple[str, str]]


# --------------------------------------------------------------------------------------------------- discovery

_CANDIDATE = {
    "scannet": lambda f: os.path.isdir(os.path.join(f, "color")),
    "tum": lambda f: os.path.exists(os.path.join(f, "rgb.txt")),
    "posed": lambda f: os.path.exists(os.path.join(f, "poses.txt")) or os.path.isdir(os.path.join(f, "rgb")),
}
_INDEX = {"scannet": index_scannet, "tum": index_tum, "posed": index_posed}


def _split_error(e: SourceError, fallback: str) -> tuple[str, str]:
    msg = str(e)
    head, sep, tail = msg.partition(": ")
    return (head, tail) if sep and os.path.isabs(head) else (fallback, msg)


def discover_layout(kind: str, root: str, options: dict) -> tuple[list[SourceRef], Skipped]:
    if kind == "frames":
        return _discover_frames(root, options)
    folders, skipped = find_sequence_folders(root, _CANDIDATE[kind], f"not part of {EXPECTS[kind]}")
    refs = []
    for folder in folders:
        try:
            index = _INDEX[kind](folder, options)
            sampled(folder, index.timestamps, options)
        except SourceError as e:
            skipped.append(_split_error(e, folder))
            continue
        skipped += index.skipped
        skipped += _leftovers(folder, index.used, {p for p, _ in index.skipped}, f"not part of {EXPECTS[kind]}")
        depth = index.depth is not None and (kind != "tum" or index.poses is not None)
        refs.append(make_ref(kind, sequence_id(root, folder), folder, options, depth=depth,
                             depth_scale=index.depth_scale, invalid_value=index.invalid_value))
    return refs, skipped


LAYOUT_DIRS = ("color", "depth", "pose", "intrinsic", "rgb")


def _leftovers(folder: str, used: set, reported: set, reason: str) -> Skipped:
    """What a sequence folder holds that its index neither used nor reported: files at its top and one level into
    its layout folders (``rgb/``, ``depth/``, ...: e.g. a TUM image no list names), and other folders (not walked)."""
    out = []

    def entries(d: str) -> list[str]:
        try:
            return [os.path.join(d, n) for n in sorted(os.listdir(d)) if not n.startswith(".")]
        except OSError:
            return []

    for p in entries(folder):
        if os.path.isdir(p):
            if os.path.basename(p) in LAYOUT_DIRS:
                out += [(q, _file_problem(q) or reason) for q in entries(p) if q not in used and q not in reported]
            else:
                out.append((p, f"folder {reason}"))
        elif p not in used and p not in reported:
            out.append((p, _file_problem(p) or reason))
    return out


def _discover_frames(root: str, options: dict) -> tuple[list[SourceRef], Skipped]:
    skipped: Skipped = []
    refs = []
    for folder, _, files in _walk_dirs(root, skipped):
        images = []
        for f in files:
            p = os.path.join(folder, f)
            problem = _file_problem(p) or (None if is_image_name(f) else reason_not_image(p))
            if problem:
                skipped.append((p, problem))
            else:
                images.append(f)
        if len(images) < MIN_FRAMES:
            skipped += [(os.path.join(folder, f), f"only image in its folder ({EXPECTS['frames']})") for f in images]
            continue
        try:
            sampled(folder, index_frames(folder, images, options).timestamps, options)
        except SourceError as e:
            skipped.append(_split_error(e, folder))
            continue
        refs.append(make_ref("frames", sequence_id(root, folder), folder, options, depth=False))
    return refs, skipped


# ----------------------------------------------------------------------------------------------------- opening

def _header_size(path: str, max_pixels: int) -> tuple[int, int]:
    """(w, h) of an image as delivered (EXIF orientation applied), from its header only."""
    img = _open_guarded(path, path, max_pixels)
    try:
        w, h = img.size
        try:
            swap = int(img.getexif().get(0x0112, 1)) in (5, 6, 7, 8)
        except Exception:  # noqa: BLE001 - corrupt EXIF is ignored by the decoder too
            swap = False
    finally:
        img.close()
    return (h, w) if swap else (w, h)


def _depth_size(path: str, fmt: str) -> tuple[int, int]:
    try:
        if fmt == "npy":
            shape = [s for s in np.load(path, mmap_mode="r", allow_pickle=False).shape if s != 1] or [1, 1]
            return int(shape[1]), int(shape[0])
        with Image.open(path, formats=["PNG"]) as img:
            return img.size
    except Exception as e:  # noqa: BLE001 - the reader gives the detailed reason when the frame is decoded
        raise _fail(path, f"cannot read depth header ({type(e).__name__})") from None


def open_layout(kind: str, ref: SourceRef, opts: LoadOptions, options: dict) -> LayoutSequence:
    folder = ref.rgb_path
    if not os.path.isdir(folder):
        raise _fail(folder, "no such folder")
    if kind == "frames":
        names = [n for n in sorted(os.listdir(folder)) if is_image_name(n) and not n.startswith(".")
                 and _file_problem(os.path.join(folder, n)) is None]
        index = index_frames(folder, names, options)
    else:
        index = _INDEX[kind](folder, options)
    return LayoutSequence(kind, ref, opts, index, options)


class LayoutSequence(Sequence):
    """Frames of a folder layout; depth delivered only for refs with ``depth_format`` (the ``posed`` pool)."""

    def __init__(self, kind: str, ref: SourceRef, opts: LoadOptions, index: LayoutIndex, options: dict):
        self.id, self.kind, self.opts = ref.id, kind, opts
        sel = sampled(index.folder, index.timestamps, options)
        self._rgb = [index.rgb[i] for i in sel]
        self.has_depth = ref.depth_format is not None and index.depth is not None
        self._depth = [index.depth[i] for i in sel] if self.has_depth else None
        self._depth_format, self._depth_scale, self._invalid = index.depth_format, ref.depth_scale, index.invalid_value
        if index.pose_files is not None:
            self._poses = [None if p is None else _rigid(read_matrix_file(p, "ScanNet pose"), p, "pose")
                           for p in (index.pose_files[i] for i in sel)]
        else:
            self._poses = None if index.poses is None else [index.poses[i] for i in sel]
        ts = np.asarray(index.timestamps, np.float64)
        self.timestamps = ts[sel] - ts[sel[0]]
        self._rgb_size = _header_size(self._rgb[0], opts.max_image_pixels)
        base = self._rgb_size
        self._depth_size = None
        if index.depth is not None and kind != "frames":
            self._depth_size = _depth_size(index.depth[sel[0]], index.depth_format)
            if kind == "scannet":
                base = self._depth_size  # delivered at the depth resolution (see the module docstring)
            elif self.has_depth and self._depth_size != base and opts.depth_resize != "nearest":
                raise _fail(self._rgb[0], f"RGB is {base[0]}x{base[1]} but depth {index.depth[sel[0]]} is "
                                          f"{self._depth_size[0]}x{self._depth_size[1]}; set source.depth_resize=nearest to resize")
        self.width, self.height = target_size(base[0], base[1], opts, self._rgb[0])
        self.intrinsics = None
        if index.raw_intrinsics is not None:
            iw, ih = index.intrinsics_size or base
            src = index.info.get("intrinsics_source")
            if index.intrinsics_size and index.intrinsics_size != base and kind == "tum":
                raise _fail(index.folder, f"the built-in {src} intrinsics are for {iw}x{ih} frames, these are "
                                          f"{base[0]}x{base[1]}: give intrinsics=fx;fy;cx;cy or an intrinsics.txt")
            if index.intrinsics_size and index.intrinsics_size != base:
                raise _fail(os.path.join(index.folder, "intrinsics.txt"),
                            f"intrinsics are for {iw}x{ih} but the frames are {base[0]}x{base[1]}")
            cx, cy = index.raw_intrinsics[2:]
            if not (0 < cx < iw and 0 < cy < ih):  # a principal point off the frame: values for another size
                raise _fail(index.folder, f"principal point ({cx:g}, {cy:g}) lies outside the {iw}x{ih} frames "
                                          f"(intrinsics from {src or 'the layout'})")
            self.intrinsics = Intrinsics(*index.raw_intrinsics, iw, ih).scaled(self.width, self.height)
        self.info = {"layout": kind, "path": index.folder, "orig_size": list(self._rgb_size), "base_size": list(base),
                     "size": [self.width, self.height], "native_frames": len(index.rgb),
                     "depth_size": list(self._depth_size) if self._depth_size else None,
                     "sampling": dict(options), **index.info}
        self.digest = self._index_digest(index, sel, options)

    def _index_digest(self, index: LayoutIndex, sel: np.ndarray, options: dict) -> str:
        h = xxhash.xxh3_128(f"{self.kind}\0{self.width}x{self.height}\0".encode())
        h.update(repr(sorted((k, _canon(v)) for k, v in options.items())).encode())
        h.update(index.text)
        for j, i in enumerate(sel):
            for p in (index.rgb[i], index.depth[i] if self._depth else None):
                if p:
                    try:
                        size = os.stat(p).st_size
                    except OSError as e:
                        raise _fail(p, f"cannot read file ({e.strerror or e})") from None
                    h.update(f"{os.path.relpath(p, index.folder)}\0{size}\0".encode())
            pose = self.pose(j)
            h.update(b"-" if pose is None else pose.tobytes())
        h.update(self.timestamps.tobytes())
        return digest_text(h)

    def pose(self, index: int) -> np.ndarray | None:
        if self._poses is None:
            return None
        p = self._poses[index]
        return None if p is None else np.array(p, np.float64)

    def _decode(self, indices: list[int]):
        raw = LoadOptions(min_side=1, max_side=0, max_image_pixels=self.opts.max_image_pixels)
        out = []
        for i in indices:
            h = xxhash.xxh3_128()
            path = self._rgb[i]
            rgb, info, _ = decode_rgb_file(path, raw, h)
            if tuple(info["orig_size"]) != self._rgb_size:
                w, hh = info["orig_size"]
                raise _fail(path, f"frame is {w}x{hh} but the sequence's first frame {os.path.basename(self._rgb[0])} "
                                  f"is {self._rgb_size[0]}x{self._rgb_size[1]}")
            rgb = resize_rgb(rgb, (self.width, self.height))
            depth = None
            if self.has_depth:
                depth = self._load_depth(self._depth[i])
                try:
                    update_digest(h, self._depth[i])
                except OSError as e:
                    raise _fail(self._depth[i], f"cannot read depth file ({e.strerror or e})") from None
            out.append((rgb, depth, digest_text(h)))
        return out

    def _load_depth(self, path: str) -> DepthMap:
        values, valid = read_generic_depth(path, self._depth_format, scale=self._depth_scale,
                                           invalid_value=self._invalid, min_valid_fraction=self.opts.min_valid_fraction)
        if (values.shape[1], values.shape[0]) != self._depth_size:
            raise _fail(path, f"depth is {values.shape[1]}x{values.shape[0]} but the sequence's first depth map is "
                              f"{self._depth_size[0]}x{self._depth_size[1]}")
        values, valid = resize_depth_nearest(values, valid, (self.height, self.width))
        if not valid.any():
            raise _fail(path, f"depth map has no valid pixels after resizing to {self.width}x{self.height}")
        return DepthMap(values, valid, kind="metric")
