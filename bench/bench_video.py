"""Benchmark: decoding K random frames of a video through ``open_sequence`` + ``frames()``, against its floors.

    python bench/bench_video.py [--seconds 20] [--size 640x480] [--fps 30] [--gop 60] [--k 1,4,8] [--samples 30]
                                [--repeat 2] [--ext .mp4] [--keep DIR]

A ~20 s 640x480 H.264 video is generated first (a window panning and zooming over a photo-like demo render, with
per-frame sensor grain; keyframe every ``--gop`` frames, x264's default B-frames). Then for each K, ``--samples``
samples of K distinct random frames (fixed seeds, the same index sets for every method) are timed three ways, in
the same process, interleaved sample by sample:

- ``ours``: ``open_sequence(ref)`` (index: demux every packet, decode the first frame for its rotation) then
  ``seq.frames(indices)`` (a fresh sequence per sample: no frame cache helps);
- ``floor``: decode exactly those frames, the simplest way: ``av.open``, then for each wanted frame in ascending
  order ``container.seek(pts, backward=True)`` and decode forward to it, ``to_ndarray("rgb24")`` (the pts list is
  given for free: read once, untimed);
- ``warm``: ``seq.frames(indices)`` on one sequence opened before the run and kept open (its frame cache cleared
  before each sample), as a build worker uses a sequence it visits several times;
- ``full``: decode the whole stream in order and convert the K wanted frames (measured on the first
  ``--repeat`` samples only: it costs the same for every K).

Times are CPU time of this process (``time.process_time``; the machine is shared, CPU time moves less than wall
time) and wall time, mean per sample. ``ours / floor`` is the target (<= 2x). Best of ``--repeat`` passes over the
samples. The 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ssrl_plugin.demo import render_rgb  # noqa: E402
from ssrl_plugin.sequence_export import write_video  # noqa: E402
from ssrl_plugin.sequence_io import discover_sequences, open_sequence  # noqa: E402
from ssrl_plugin.sources import LoadOptions  # noqa: E402


def make_video(path: Path, seconds: float, size: tuple[int, int], fps: float, gop: int) -> None:
    w, h = size
    n = int(round(seconds * fps))
    canvas = render_rgb(7, w * 2, h * 2).astype(np.float32)
    rng = np.random.default_rng(0)

    def frames():
        for i in range(n):
            a = i / max(n - 1, 1)
            zoom = 1.0 + 0.3 * np.sin(2 * np.pi * a)  # window side = (w, h) * zoom, within the 2x canvas
            cw, ch = int(w * zoom), int(h * zoom)
            x = int((2 * w - cw) * (0.5 + 0.5 * np.sin(2 * np.pi * a * 1.5)))
            y = int((2 * h - ch) * (0.5 + 0.5 * np.cos(2 * np.pi * a)))
            win = canvas[y:y + ch:max(1, ch // h), x:x + cw:max(1, cw // w)][:h, :w]
            if win.shape[:2] != (h, w):
                win = np.pad(win, ((0, h - win.shape[0]), (0, w - win.shape[1]), (0, 0)), mode="edge")
            yield np.clip(win + rng.normal(0, 2.0, win.shape), 0, 255).astype(np.uint8)

    write_video(frames(), path, fps=fps, gop=gop, crf=23, preset="veryfast")


def all_pts(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(p.pts for p in c.demux(s) if p.size)


def floor_decode(path: Path, pts: list[int], indices: list[int]) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for i in sorted(indices):
            target = pts[i]
            c.seek(target, stream=s, backward=True)
            for f in c.decode(s):
                if f.pts >= target:
                    out.append(f.to_ndarray(format="rgb24"))
                    break
    return out


def full_decode(path: Path, pts: list[int], indices: list[int]) -> list[np.ndarray]:
    import av

    wanted = {pts[i] for i in indices}
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            if f.pts in wanted:
                out.append(f.to_ndarray(format="rgb24"))
    return out


def timed(fn, *args):
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn(*args)
    return result, time.process_time() - c0, time.perf_counter() - w0


def task_samples(name: str, ref, opts: LoadOptions, path: Path, pts: list[int], samples: int, repeat: int) -> None:
    """Whole samples of a video task as a build worker makes them (open the sequence, pick frames, decode them, the
    task's own work, encode nothing), against the floor of decoding exactly the frames each sample used."""
    from ssrl_plugin.dataset import Candidate, generate
    from ssrl_plugin.registry import create_task

    task = create_task(name)
    made, best_ours, best_floor = 0, np.inf, np.inf
    for _ in range(repeat):
        ours = floor = 0.0
        made = 0
        for i in range(samples):
            cand = Candidate("train", name, i, ref, i, i % task.num_slots)
            result, c, _ = timed(lambda: generate(task, cand, open_sequence(ref, opts), 0, 4))
            if result.sample is None:
                continue
            frames = sorted({int(f) for it in result.sample.metadata["items"] for f in it["frame_indices"]})
            _, fc, _ = timed(floor_decode, path, pts, frames)
            ours, floor, made = ours + c, floor + fc, made + 1
        if made:
            best_ours, best_floor = min(best_ours, ours / made), min(best_floor, floor / made)
    if not made:
        print(f"\n{name}: no sample made on this video")
        return
    print(f"\n{name}: {made} samples, {best_ours * 1e3:.1f} ms cpu per sample against {best_floor * 1e3:.1f} ms to "
          f"decode exactly the frames it used: {best_ours / best_floor:.2f}x (target <= 2x); load1 {os.getloadavg()[0]:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--gop", type=int, default=60, help="keyframe interval in frames")
    ap.add_argument("--k", default="1,4,8", help="frames per sample (comma-separated)")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ext", default=".mp4")
    ap.add_argument("--task", default="temporal_order",
                    help="also time whole samples of this video task (empty: skip)")
    ap.add_argument("--keep", help="write the video here and keep it, or reuse the one there (default: a temporary folder)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="ssrl-bench-video-"))
    folder = Path(args.keep) if args.keep else tmp
    path = folder / f"bench{args.ext}"
    try:
        t0 = time.perf_counter()
        if not path.exists():
            make_video(path, args.seconds, (w, h), args.fps, args.gop)
        pts = all_pts(path)
        n = len(pts)
        print(f"video: {path.name} {w}x{h}, {n} frames at {args.fps:g} fps, keyframe every {args.gop}, "
              f"{path.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - t0:.1f} s")
        refs, _ = discover_sequences(f"video:{path}")
        ref, opts = refs[0], LoadOptions(max_side=0)
        warm = open_sequence(ref, opts)
        c_open = min(timed(open_sequence, ref, opts)[1] for _ in range(10))
        print(f"open_sequence (index: demux + first frame): {c_open * 1e3:.1f} ms cpu (best of 10)")
        full_cpu = full_wall = float("inf")
        for _ in range(args.repeat):
            _, c, wl = timed(full_decode, path, pts, [0])
            full_cpu, full_wall = min(full_cpu, c), min(full_wall, wl)
        print(f"\n{'K':>3}{'samples':>8}{'ours cpu':>10}{'floor cpu':>11}{'full cpu':>10}{'ours/floor':>12}"
              f"{'ours/full':>11}{'ours wall':>11}{'floor wall':>12}{'wall ratio':>12}{'warm cpu':>10}{'warm/floor':>12}"
              f"  load1")
        for k in (int(v) for v in args.k.split(",")):
            rng = np.random.default_rng(1000 + k)
            sets = [sorted(rng.choice(n, size=min(k, n), replace=False).tolist()) for _ in range(args.samples)]
            best = {"ours": [np.inf, np.inf], "floor": [np.inf, np.inf], "warm": [np.inf, np.inf]}
            for _ in range(args.repeat):
                tot = {"ours": [0.0, 0.0], "floor": [0.0, 0.0], "warm": [0.0, 0.0]}
                for idx in sets:
                    got, c, wl = timed(lambda ix: [f.rgb for f in open_sequence(ref, opts).frames(ix)], idx)
                    tot["ours"][0] += c
                    tot["ours"][1] += wl
                    want, c, wl = timed(floor_decode, path, pts, idx)
                    tot["floor"][0] += c
                    tot["floor"][1] += wl
                    assert all(np.array_equal(a, b) for a, b in zip(got, want)), "ours and the floor disagree"
                    warm._cache().clear()  # the sequence stays open (as in a build's worker), no frame is cached
                    _, c, wl = timed(lambda ix: [f.rgb for f in warm.frames(ix)], idx)
                    tot["warm"][0] += c
                    tot["warm"][1] += wl
                for key in best:
                    best[key] = [min(best[key][j], tot[key][j] / len(sets)) for j in (0, 1)]
            oc, ow = best["ours"]
            fc, fw = best["floor"]
            wc = best["warm"][0]
            print(f"{k:>3}{len(sets):>8}{oc * 1e3:>9.1f}m{fc * 1e3:>10.1f}m{full_cpu * 1e3:>9.0f}m{oc / fc:>11.2f}x"
                  f"{oc / full_cpu:>10.3f}x{ow * 1e3:>10.1f}m{fw * 1e3:>11.1f}m{ow / fw:>11.2f}x{wc * 1e3:>9.1f}m{wc / fc:>11.2f}x"
                  f"  {os.getloadavg()[0]:.2f}",
                  flush=True)
        print(f"\nfull stream decode: {full_cpu * 1e3:.0f} ms cpu, {full_wall * 1e3:.0f} ms wall ({n} frames); "
              f"times are per sample, m = ms; cores: {os.cpu_count()}")
        if args.task:
            task_samples(args.task, ref, opts, path, pts, args.samples, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
