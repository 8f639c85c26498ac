"""Writing any :class:`~ssrl_plugin.sequence.Sequence` in the layouts :mod:`ssrl_plugin.sequence_io` reads.

Used by the tests (round trips) and to convert the demo sequences for other tools::

    from ssrl_plugin.sequence_export import write_posed, write_video
    write_posed(seq, "out/posed/seq0")                       # rgb/ depth/ poses.txt intrinsics.txt
    write_video([f.rgb for f in seq.frames(range(len(seq)))], "out/seq0.mp4", fps=10)

Every writer takes the frames with ``seq.frames`` in chunks (a long sequence is never held in memory at once) and
writes numbers with ``repr`` (17 significant digits), so poses and intrinsics read back to float64 precision.
Depth is quantised where the format is 16-bit: millimetres (ScanNet, posed PNG) or 1/5000 m (TUM); invalid pixels
and depths beyond the 16-bit range are written as 0 (no depth).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np
from PIL import Image

from .sequence import Frame, Sequence

CHUNK = 16
VIDEO_CODECS = {  # extension -> encoders to try, in order
    ".mp4": ("libx264", "mpeg4"), ".mov": ("libx264", "mpeg4"), ".mkv": ("libx264", "mpeg4"),
    ".webm": ("libvpx-vp9", "libvpx"), ".avi": ("mpeg4",),
}


def _frames(seq: Sequence) -> Iterator[Frame]:
    for start in range(0, len(seq), CHUNK):
        yield from seq.frames(range(start, min(start + CHUNK, len(seq))))


def _num(x: float) -> str:
    return repr(float(x))


def _mkdir(*parts: str) -> str:
    p = os.path.join(*parts)
    os.makedirs(p, exist_ok=True)
    return p


def _quantise(depth, scale: float) -> np.ndarray:
    """Metres -> uint16 units of ``scale`` metres; invalid or out-of-range pixels -> 0."""
    v = np.where(depth.valid, depth.values, 0).astype(np.float64) / scale
    v = np.rint(v)
    v[(v > 65535) | ~np.isfinite(v)] = 0
    return v.astype(np.uint16)


def _save_png16(a: np.ndarray, path: str) -> None:
    img = Image.fromarray(np.ascontiguousarray(a, np.uint16))  # Pillow picks I;16 for uint16
    if img.mode != "I;16":
        raise RuntimeError(f"Pillow made mode {img.mode} from uint16 depth, not I;16")
    img.save(path)


def _pick_codec(ext: str, codec: str | None) -> str:
    import av

    names = (codec,) if codec else VIDEO_CODECS.get(ext.lower(), ("libx264", "mpeg4"))
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - not built into this FFmpeg
            continue
    raise ValueError(f"no encoder for {ext} in this PyAV build (tried {', '.join(names)})")


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 30.0, rotate: int = 0,
                vfr_timestamps: Iterable[float] | None = None, *, codec: str | None = None, gop: int = 30,
                crf: int = 18, preset: str = "veryfast", bframes: int | None = None) -> str:
    """Encode upright RGB uint8 frames (all one size) into ``path`` (.mp4 .mov .mkv: H.264, else MPEG-4 Part 2;
    .webm: VP9, else VP8; .avi: MPEG-4 Part 2).

    ``rotate`` (a multiple of 90, counter-clockwise degrees, PyAV's ``set_display_rotation`` convention) stores the
    pixels turned by ``-rotate`` and a display matrix that turns them back, as a phone does for portrait video: a
    reader that honours the matrix sees the given frames. ``vfr_timestamps`` (seconds, increasing) give every frame
    its own presentation time (variable frame rate); otherwise frame i is at i / fps. A keyframe every ``gop``
    frames; odd frame sizes are encoded 4:4:4 (4:2:0 needs even sizes). Single-threaded encoding: same bytes on
    every run.
    """
    import av

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    codec = _pick_codec(os.path.splitext(path)[1], codec)
    if rotate % 90:
        raise ValueError(f"rotate={rotate} must be a multiple of 90")
    turns = (-rotate // 90) % 4
    times = None if vfr_timestamps is None else [float(t) for t in vfr_timestamps]
    time_base = Fraction(1, 90000) if times is not None else Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
    container = av.open(path, "w")
    try:
        stream = None
        for i, rgb in enumerate(frames):
            stored = np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb, np.uint8)
            if stream is None:
                h, w = stored.shape[:2]
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = w, h
                odd = w % 2 or h % 2
                stream.pix_fmt = "yuv444p" if odd and codec in ("libx264", "libvpx-vp9") else "yuv420p"
                stream.codec_context.time_base = time_base
                stream.gop_size = gop
                stream.codec_context.thread_count = 1
                opts = {"threads": "1"}
                if codec == "libx264":
                    opts.update(preset=preset, crf=str(crf))
                    if bframes is not None:
                        opts["bf"] = str(bframes)
                elif codec.startswith("libvpx"):
                    opts.update(crf=str(crf), **({"b": "0"} if codec == "libvpx-vp9" else {"b": "4M"}))
                else:
                    stream.codec_context.options = {}
                    stream.codec_context.bit_rate = 8_000_000
                stream.codec_context.options = opts
                if rotate:
                    stream.set_display_rotation(rotate)
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = round(times[i] / time_base) if times is not None else i
            frame.time_base = time_base
            for pkt in stream.encode(frame):
                container.mux(pkt)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for pkt in stream.encode():
            container.mux(pkt)
    finally:
        container.close()
    return path


def write_frames(frames: Sequence | Iterable[np.ndarray], folder: str | os.PathLike, ext: str = "png",
                 name: str = "frame_{i}", quality: int = 95) -> list[str]:
    """One image per frame, ``name.format(i=index)`` + ``.ext`` (unpadded by default: ``frame_2`` sorts before
    ``frame_10`` only in natural order, which the ``frames`` reader uses)."""
    folder = _mkdir(os.fspath(folder))
    rgbs = (f.rgb for f in _frames(frames)) if isinstance(frames, Sequence) else frames
    out = []
    for i, rgb in enumerate(rgbs):
        p = os.path.join(folder, f"{name.format(i=i)}.{ext}")
        Image.fromarray(np.asarray(rgb, np.uint8)).save(p, **({"quality": quality} if ext in ("jpg", "jpeg") else {}))
        out.append(p)
    return out


def _matrix_lines(m: np.ndarray) -> str:
    return "".join(" ".join(_num(x) for x in row) + "\n" for row in m)


def write_scannet(seq: Sequence, folder: str | os.PathLike, *, rate: float = 30.0,
                  color_size: tuple[int, int] | None = None, jpeg_quality: int = 95) -> str:
    """ScanNet SensReader export: ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm), ``pose/<i>.txt`` (4x4; rows of
    ``-inf`` for an unknown pose), ``intrinsic/intrinsic_{color,depth}.txt`` and identity ``extrinsic_*.txt``.
    Frame numbers are ``round(timestamp * rate)`` (so the reader's ``i / rate`` gives the timestamps back).
    ``color_size`` (w, h) writes the colour at another size, as real ScanNet does (1296x968 for 640x480 depth)."""
    if not seq.has_depth or seq.intrinsics is None:
        raise ValueError(f"{seq.id}: ScanNet needs depth and intrinsics")
    numbers = np.rint(np.asarray(seq.timestamps) * rate).astype(np.int64)
    if len(np.unique(numbers)) != len(numbers):
        raise ValueError(f"{seq.id}: timestamps closer than 1/{rate:g} s collide as ScanNet frame numbers")
    folder = os.fspath(folder)
    dirs = {d: _mkdir(folder, d) for d in ("color", "depth", "pose", "intrinsic")}
    k = seq.intrinsics
    cw, ch = color_size or (k.width, k.height)
    for name, kk in (("intrinsic_depth.txt", k), ("intrinsic_color.txt", k.scaled(cw, ch))):
        m = np.array([[kk.fx, 0, kk.cx - 0.5, 0], [0, kk.fy, kk.cy - 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        with open(os.path.join(dirs["intrinsic"], name), "w") as f:
            f.write(_matrix_lines(m))
    for name in ("extrinsic_color.txt", "extrinsic_depth.txt"):
        with open(os.path.join(dirs["intrinsic"], name), "w") as f:
            f.write(_matrix_lines(np.eye(4)))
    for fr in _frames(seq):
        n = int(numbers[fr.index])
        img = Image.fromarray(fr.rgb)
        if (cw, ch) != img.size:
            img = img.resize((cw, ch), Image.Resampling.LANCZOS)
        img.save(os.path.join(dirs["color"], f"{n}.jpg"), quality=jpeg_quality)
        _save_png16(_quantise(fr.depth, 0.001), os.path.join(dirs["depth"], f"{n}.png"))
        pose = np.full((4, 4), -np.inf) if fr.pose is None else fr.pose
        with open(os.path.join(dirs["pose"], f"{n}.txt"), "w") as f:
            f.write(_matrix_lines(pose))
    return folder


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(qx, qy, qz, qw) of a rotation matrix, with qw >= 0 (Shepperd's method: stable for every angle)."""
    r = np.asarray(m, np.float64)[:3, :3]
    tr = np.trace(r)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = np.array([(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = np.zeros(4)
        q[i] = 0.25 * s
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
        q[3] = (r[k, j] - r[j, k]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def write_tum(seq: Sequence, folder: str | os.PathLike, *, drop_pose_every: int = 0, t0: float = 1305031102.0,
              depth_offset: float = 0.0, intrinsics_file: bool = True) -> str:
    """TUM RGB-D: ``rgb/<t>.png``, ``depth/<t>.png`` (uint16, 5000 per metre), ``rgb.txt``, ``depth.txt``,
    ``groundtruth.txt`` (``t tx ty tz qx qy qz qw``) and, unless ``intrinsics_file=False``, ``intrinsics.txt``
    (``fx fy cx cy`` in TUM's integer-centre convention). Timestamps are ``t0 + timestamp``; depth frames are
    stamped ``depth_offset`` seconds later (real TUM pairs differ by a few ms). ``drop_pose_every=k`` leaves out
    the groundtruth line of every k-th frame (frames k-1, 2k-1, ...), as tracking gaps do; unknown poses are
    left out too."""
    if not seq.has_depth:
        raise ValueError(f"{seq.id}: TUM needs depth")
    folder = os.fspath(folder)
    rgb_dir, depth_dir = _mkdir(folder, "rgb"), _mkdir(folder, "depth")
    rgb_lines = ["# color images", f"# file: '{seq.id}'", "# timestamp filename"]
    depth_lines = ["# depth maps", f"# file: '{seq.id}'", "# timestamp filename"]
    gt_lines = ["# ground truth trajectory", f"# file: '{seq.id}'", "# timestamp tx ty tz qx qy qz qw"]
    for fr in _frames(seq):
        t = t0 + float(seq.timestamps[fr.index])
        ts, tds = f"{t:.6f}", f"{t + depth_offset:.6f}"
        Image.fromarray(fr.rgb).save(os.path.join(rgb_dir, f"{ts}.png"))
        _save_png16(_quantise(fr.depth, 1 / 5000), os.path.join(depth_dir, f"{tds}.png"))
        rgb_lines.append(f"{ts} rgb/{ts}.png")
        depth_lines.append(f"{tds} depth/{tds}.png")
        dropped = drop_pose_every and fr.index % drop_pose_every == drop_pose_every - 1
        if fr.pose is not None and not dropped:
            q = matrix_to_quat(fr.pose)
            gt_lines.append(" ".join([ts] + [_num(x) for x in fr.pose[:3, 3]] + [_num(x) for x in q]))
    for name, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines), ("groundtruth.txt", gt_lines)):
        with open(os.path.join(folder, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    if intrinsics_file and seq.intrinsics is not None:
        k = seq.intrinsics
        with open(os.path.join(folder, "intrinsics.txt"), "w") as f:
            f.write(" ".join(_num(x) for x in (k.fx, k.fy, k.cx - 0.5, k.cy - 0.5)) + "\n")
    return folder


def write_posed(seq: Sequence, folder: str | os.PathLike, *, depth_format: str = "png") -> str:
    """Our ``posed`` layout: ``rgb/<name>.png``, ``depth/<name>.png`` (uint16 mm) or ``.npy`` (float32 metres, 0 =
    none) when the sequence has depth, ``poses.txt`` (``name timestamp`` + the 16 numbers of the 4x4
    camera-to-world, or ``none``) and ``intrinsics.txt`` (``fx fy cx cy width height``, pixel centres at +0.5)."""
    if seq.intrinsics is None:
        raise ValueError(f"{seq.id}: the posed layout needs intrinsics")
    if depth_format not in ("png", "npy"):
        raise ValueError(f"depth_format={depth_format!r} (expected png or npy)")
    folder = os.fspath(folder)
    rgb_dir = _mkdir(folder, "rgb")
    depth_dir = _mkdir(folder, "depth") if seq.has_depth else None
    lines = ["# name timestamp camera-to-world (4x4 row-major, OpenCV axes, metres) or none"]
    for fr in _frames(seq):
        name = f"{fr.index:06d}"
        Image.fromarray(fr.rgb).save(os.path.join(rgb_dir, f"{name}.png"))
        if depth_dir:
            if depth_format == "png":
                _save_png16(_quantise(fr.depth, 0.001), os.path.join(depth_dir, f"{name}.png"))
            else:
                np.save(os.path.join(depth_dir, f"{name}.npy"),
                        np.where(fr.depth.valid, fr.depth.values, 0).astype(np.float32))
        pose = "none" if fr.pose is None else " ".join(_num(x) for x in np.asarray(fr.pose).ravel())
        lines.append(f"{name} {_num(seq.timestamps[fr.index])} {pose}")
    with open(os.path.join(folder, "poses.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    k = seq.intrinsics
    with open(os.path.join(folder, "intrinsics.txt"), "w") as f:
        f.write(" ".join([_num(k.fx), _num(k.fy), _num(k.cx), _num(k.cy), str(k.width), str(k.height)]) + "\n")
    return folder
