"""Video files as sequences (PyAV): an index read by demuxing, frames decoded by seeking.

Opening a video reads its packets once without decoding them (their bytes fingerprint the sequence) to get the
presentation timestamp (pts) of every frame and which packets are keyframes; timestamps are pts x time base, so
variable-frame-rate videos keep their real timing. The first frame is decoded at open because PyAV exposes the
display-matrix rotation only on decoded frames (``VideoFrame.rotation``, counter-clockwise degrees); frames are
delivered upright (rotated by that angle, to the nearest quarter turn; display-matrix flips are ignored).

Decoding a set of frames is one forward pass: for each wanted pts (ascending) the decoder seeks to the keyframe at
or before it (``container.seek(pts, backward=True)``) unless that keyframe lies behind what it has already decoded,
in which case it keeps decoding forward; it never decodes the whole stream. A seek that lands after the wanted frame
(an index whose keyframe timestamps disagree with the packets') falls back to earlier keyframes, then to the start.
"""

from __future__ import annotations

import os
import weakref
from fractions import Fraction

import numpy as np
import xxhash

from .errors import SourceError
from .imaging import digest_text
from .sequence import Sequence, frame_digest
from .sequence_io import VIDEO_EXTS, _canon, make_ref, resize_rgb, sampled, sequence_id, target_size
from .sources import LoadOptions, SourceRef, _file_problem, _walk

SEEK_RETRIES = 3  # earlier keyframes tried when a seek lands after the wanted frame, before the stream start


def _short(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e).strip().splitlines()[0:1] or [type(e).__name__]
    return text if isinstance(text, str) else text[0]


def _open(path: str):
    import av  # lazy: only video sequences need PyAV

    problem = _file_problem(path)
    if problem:
        raise SourceError(f"{path}: {problem}")
    try:
        container = av.open(path, "r")
    except Exception as e:  # noqa: BLE001 - av.error.*, OSError: a truncated or foreign file, never a crash
        raise SourceError(f"{path}: cannot open video ({_short(e)})") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{path}: no video stream")
    fmt = container.format.name
    if fmt.endswith("_pipe") or fmt == "image2":  # FFmpeg opens a lone image as a one-frame "video"
        container.close()
        raise SourceError(f"{path}: not a video: an image ({fmt.removesuffix('_pipe')}) with a video file's name")
    return container


def reason_not_video(path: str) -> str:
    ext = os.path.splitext(path)[1]
    return f"not a supported video ({f'extension {ext}' if ext else 'no extension'}; supported: {', '.join(VIDEO_EXTS)})"


def probe_video(path: str) -> str | None:
    """Why ``path`` cannot be a video sequence (header only), or None."""
    try:
        container = _open(path)
    except SourceError as e:
        return str(e).split(": ", 1)[1] if str(e).startswith(f"{path}: ") else str(e)
    try:
        s = container.streams.video[0]
        if not (s.codec_context.width > 0 and s.codec_context.height > 0):
            return "video stream without a frame size"
    finally:
        container.close()
    return None


def discover_videos(root: str, options: dict) -> tuple[list[SourceRef], list[tuple[str, str]]]:
    """One ref per video file: PATH itself, or every .mp4/.webm/.mov/.mkv/.avi below the folder PATH."""
    if os.path.isdir(root):
        files, skipped = _walk(root)
    else:
        files, skipped = [os.path.abspath(root)], []
    refs = []
    for p in files:
        problem = _file_problem(p) or (None if p.lower().endswith(VIDEO_EXTS) else reason_not_video(p)) or probe_video(p)
        if problem:
            skipped.append((p, problem))
        else:
            refs.append(make_ref("video", sequence_id(root, p), p, options, depth=False))
    return refs, skipped


class VideoSequence(Sequence):
    """A video file; ``info``: layout, path, codec, native size, rotation, time base, native frame count and
    frame rate, sampling options."""

    def __init__(self, ref: SourceRef, opts: LoadOptions, options: dict):
        self.id, self.path, self.opts = ref.id, ref.rgb_path, opts
        container = _open(self.path)
        try:
            self._index(container, options)
        except BaseException:
            container.close()
            raise
        # kept open for _decode (a build decodes several sets of frames per opened sequence); closed when the
        # sequence is collected or by close()
        self._keep(container)

    def _index(self, container, options: dict) -> None:
        stream = container.streams.video[0]
        self._stream_index = stream.index  # among ALL streams (an audio stream may come first)
        self._time_base = stream.time_base or Fraction(1, 90000)
        pts, keys, discard, bytes_digest, first = self._demux(container, stream)
        declared = int(stream.frames or 0)
        stream_duration, container_duration = stream.duration, container.duration
        n_streams, codec = len(container.streams), stream.codec_context.name
        if first is None:
            raise SourceError(f"{self.path}: no frame could be decoded")
        pts_arr = np.asarray(pts, np.int64)
        key_arr = np.unique(pts_arr[np.asarray(keys, bool)]) if pts else np.zeros(0, np.int64)
        if len(key_arr) == 0:
            raise SourceError(f"{self.path}: no keyframe in the video stream")
        if declared and len(pts) < declared:
            raise SourceError(f"{self.path}: truncated video ({len(pts)} of {declared} frames readable)")
        shown = np.delete(pts_arr, discard)
        native = np.unique(shown[shown >= key_arr[0]])  # frames before the first keyframe cannot be decoded
        if len(native) == 0:
            raise SourceError(f"{self.path}: no frame to show (every packet is discarded by the edit list)")
        tb = float(self._time_base)
        seconds = (native - native[0]).astype(np.float64) * tb
        if not declared:  # Matroska / WebM: no frame count in the header, but a duration
            self._check_truncated(seconds, float(native[-1]) * tb, stream_duration, container_duration, n_streams)
        sel = sampled(self.path, seconds, options)
        self._pts, self._keys = native[sel], key_arr
        self.timestamps = seconds[sel] - seconds[sel[0]]
        rotation = float(getattr(first, "rotation", 0) or 0)
        self._quarter_turns = int(round(rotation / 90.0)) % 4
        w0, h0 = first.width, first.height
        if self._quarter_turns % 2:
            w0, h0 = h0, w0
        self.width, self.height = target_size(w0, h0, self.opts, self.path)
        self.intrinsics = None
        self.has_depth = False
        native_fps = (len(native) - 1) / seconds[-1] if seconds[-1] > 0 else 0.0
        self.info = {"layout": "video", "path": self.path, "codec": codec, "orig_size": [w0, h0],
                     "size": [self.width, self.height], "rotation": rotation, "time_base": str(self._time_base),
                     "native_frames": int(len(native)), "native_fps": round(native_fps, 6),
                     "duplicate_pts": int(len(pts) - len(np.unique(pts_arr))), "discarded": len(discard),
                     "sampling": {k: v for k, v in options.items()}}
        h = xxhash.xxh3_128(b"video\0")
        h.update(bytes_digest)
        h.update(self._pts.tobytes())
        h.update(repr(sorted((k, _canon(v)) for k, v in options.items())).encode())
        h.update(f"{self.width}x{self.height}".encode())
        self.digest = digest_text(h)
        self._first = first if int(first.pts if first.pts is not None else -1) == int(self._pts[0]) else None

    def _keep(self, container) -> None:
        self._av, self._av_state = container, {"it": None, "pos": None}
        self._av_closer = weakref.finalize(self, container.close)

    def close(self) -> None:
        """Close the video file (reopened on the next decode)."""
        closer = self.__dict__.pop("_av_closer", None)
        self.__dict__.pop("_av", None)
        if closer is not None:
            closer()

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_av", "_av_state", "_av_closer", "_first")}
        state["_first"] = None
        return state

    def _demux(self, container, stream):
        """(pts per packet, keyframe flags, packet-bytes digest, first decoded frame) in one read of the file."""
        pts: list[int] = []
        keys: list[bool] = []
        h = xxhash.xxh3_128()
        first = None
        seen_key = False
        discard: list[int] = []
        try:
            for pkt in container.demux(stream):
                if pkt.size == 0:  # the end-of-stream flush packet
                    continue
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                if ts is None:
                    raise SourceError(f"{self.path}: packets without timestamps (cannot seek)")
                pts.append(int(ts))
                keys.append(bool(pkt.is_keyframe))
                if pkt.is_discard:  # outside an edit list: decoded as a reference, never shown
                    discard.append(len(pts) - 1)
                h.update(memoryview(pkt))
                seen_key = seen_key or keys[-1]
                if first is None and seen_key:  # packets before the first keyframe cannot be decoded
                    frames = stream.decode(pkt)
                    first = frames[0] if frames else None
            if first is None and pts:
                frames = stream.decode(None)  # drain: a decoder with reorder delay holds its first frame
                first = frames[0] if frames else None
        except SourceError:
            raise
        except Exception as e:  # noqa: BLE001 - av.error.* on damaged data
            raise SourceError(f"{self.path}: cannot read video ({_short(e)})") from None
        return pts, keys, discard, h.digest(), first

    def _check_truncated(self, seconds, last_pts_s: float, stream_duration, container_duration, n_streams) -> None:
        """A file cut short keeps its header's duration (Matroska, WebM) while its packets stop early.

        Muxers disagree on whether that duration counts from the first frame or from time 0 (a file starting at
        5 s), so the frames cover the larger of their span and the last frame's time from 0."""
        tb = float(self._time_base)
        if stream_duration:
            declared = stream_duration * tb
        elif container_duration and n_streams == 1:
            declared = container_duration / 1e6  # AV_TIME_BASE
        else:
            return
        step = float(np.median(np.diff(seconds))) if len(seconds) > 1 else 0.0
        if declared - max(seconds[-1], last_pts_s) > max(1.0, 3 * step):
            raise SourceError(f"{self.path}: truncated video (frames end at {seconds[-1]:.2f} s, the header says "
                              f"{declared:.2f} s)")

    def _deliver(self, frame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        if self._quarter_turns:
            rgb = np.rot90(rgb, self._quarter_turns)  # counter-clockwise, as the display matrix says
        return resize_rgb(rgb, (self.width, self.height))

    def _decode(self, indices: list[int]):
        targets = [int(self._pts[i]) for i in indices]
        if self.__dict__.get("_av") is None:
            self._keep(_open(self.path))
        container, state = self._av, self._av_state
        out = []
        try:
            stream = container.streams[self._stream_index]
            for t in targets:
                if self._first is not None and t == self._pts[0]:
                    frame = self._first  # decoded at open for its rotation
                else:
                    frame = self._grab(container, stream, t, state)
                rgb = self._deliver(frame)
                out.append((rgb, None, frame_digest(rgb)))
        except BaseException as e:
            self.close()  # the decoder state is unknown after an error: reopen next time
            if isinstance(e, SourceError) or not isinstance(e, Exception):
                raise
            raise SourceError(f"{self.path}: cannot decode video ({_short(e)})") from None
        return out

    def _grab(self, container, stream, t: int, state: dict):
        """The decoded frame with pts ``t``; ``state`` (decoder iterator, pts of the last decoded frame) carries
        the position between calls so ascending targets in one GOP are reached without a second seek."""
        k = int(np.searchsorted(self._keys, t, side="right")) - 1
        keys_before = self._keys[: k + 1][::-1]  # the keyframe at or before t first, then earlier ones
        for attempt in range(SEEK_RETRIES + 2):
            pos = state["pos"]
            if attempt or state["it"] is None or pos is None or pos >= t or keys_before[0] > pos:
                seek_to = keys_before[attempt] if attempt < min(len(keys_before), SEEK_RETRIES + 1) else self._keys[0]
                container.seek(int(seek_to), stream=stream, backward=True, any_frame=False)
                state["it"], state["pos"] = container.decode(stream), None
            for frame in state["it"]:
                fp = frame.pts if frame.pts is not None else frame.dts
                if fp is None:
                    continue
                if fp == t:
                    state["pos"] = fp
                    return frame
                if fp > t:
                    break
                state["pos"] = fp
            state["it"] = None  # overshot or reached the end: seek again, from an earlier keyframe
        raise SourceError(f"{self.path}: frame at {(t - self._pts[0]) * float(self._time_base):.3f} s (pts {t}) "
                          f"could not be decoded (damaged or truncated video)")
