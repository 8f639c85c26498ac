"""Temporal order (video): put K shuffled frames (or short clips) of one sequence back in the order they were filmed.

Construction. K frame indices are drawn from ``rng`` using the sequence's timestamps only (nothing decoded): every
consecutive pair is ``min_gap_s``..``max_gap_s`` seconds apart on the sequence's own timeline, so variable frame
rates and readers' ``fps=`` sampling are handled alike. The chain is drawn by a backward pass that marks which frames
can still start a chain of the remaining length (prefix sums over the successor windows, vectorised), then a start
and successors uniformly among the feasible ones: no retry loop, no bias towards the start of the sequence. Only
those K frames (K clips) are decoded. With ``clip_frames`` c >= 2 each item is the picked frame and the next c - 1
frames of the sequence, the image form shows them side by side (left to right in time, ``TILE_GAP`` px of black
between them) and every clip ends before the next item starts.

Labels are prompt positions only ("Frame 1: <image>"): no timestamp, frame number or mark is drawn, every frame goes
through the same decode and encode, frames are never resized. The answer lists the labels from the earliest to the
latest item ("3-1-4-2", a permutation of 1..K: the reward's permutation rules and partial credit apply).

Anchor (``anchor_first``, default on). A camera sweep played backwards is as plausible as forwards, so K still
frames are only ordered up to reversal; the question therefore names the label of the EARLIEST item. Without the
anchor the direction has to come from inside the items, so ``anchor_first = False`` requires clips
(``clip_frames >= 2``: each clip is said to run forward in time, and its motion tells which way time runs).

Rejections, measured on grey thumbnails of the items (``thumb_width`` x ``thumb_height``, area-averaged over
near-equal integer pixel blocks by an integral image). The distance of two thumbnails is their mean |difference| in
grey levels (0..255) over their overlap at the best alignment within +-``max_shift`` thumbnail pixels: a pan or a turn
shifts the whole picture, and aligned it reads as the small step it is (on the demo sequences the alignment doubles
the agreement of the margin with the camera poses' own path margin, correlation 0.37 -> 0.60, and lets through
3 % instead of 14 % of the chains whose poses double back):

- ``temporal_order/too_short``: the sequence cannot hold K items with those gaps (and clips);
- ``temporal_order/static``: two time-consecutive items differ by less than ``min_change``, unaligned (nothing
  moved or changed: their order is a coin toss);
- ``temporal_order/ambiguous``: the true order must be the unique cheapest path through the items by visual
  continuity (the sum, along the order, of the distance from one item's LAST frame to the next item's FIRST frame;
  single frames: symmetric) with the anchor fixed, cheaper than EVERY other order by a ``margin`` of at least
  ``min_margin``, counted in mean steps of the true path ((best other cost - true cost) / (true cost / (K - 1)), so
  one threshold suits every K). K <= 8, so all (K-1)! <= 5040 anchored orders (K! without
  the anchor) are scored at once in numpy. A path that doubles back (forward then back, a turn there and back), a
  cyclic motion or a scene where far frames look alike fails it, so the answer is always recoverable from the
  pictures;
- ``temporal_order/too_clear``: the margin is above ``max_margin`` (only the harder levels set one).
``max_tries`` fresh chains are drawn per call before the last reason is raised. The metadata records the distance
matrix (rank order), its summary and the margin; :meth:`TemporalOrderTask.verify` recomputes them from the source.

Answer balance (``num_slots`` = K): the slot is the label of the earliest item, so the builder deals every label as
the anchor equally often; the other labels are placed on the later items by a seeded shuffle, so every label holds
every rank equally often in expectation (K! slots, one per answer, is 40,320 at K = 8: too many to cycle).

No shortcut by design: the labels carry no order (anchor balanced by slot, the rest shuffled), nothing drawn or
encoded differs between items, and the chains are drawn uniformly along the sequence. A statistic of a frame
(brightness, sharpness, JPEG size) still drifts smoothly with the content over a second or two, so it orders the items
up to direction: continuity seen through a keyhole (a one-pixel thumbnail), which the audit reports as reference.
What would be a shortcut is a drift that runs the same way in every video (exposure, motion blur, encoder quality, a
camera that always moves forward): ``data_builders/task_hooks/temporal_order.py`` counts it (each statistic sorted in
the direction fitted on other sources against a coin-flip direction; a time-arrow test without an anchor).

Difficulty levels (:attr:`TemporalOrderTask.levels`) widen the gaps (less overlap between consecutive items) and move
a band of the margin down (more nearly-as-cheap orders); ``difficulty`` measures the margin and the gaps. Video form
(``videos``): each item as a clip of ``max(clip_frames, 2)`` frames (with single frames: the picked frame and the
next one; the image form keeps single frames), same question with one ``<video>`` per clip, same answer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..core import Sample
from ..errors import Reject
from ..imaging import grey
from ..registry import Task, TaskConfig, check, register_task
from ..sequence import Sequence

TILE_GAP = 4  # px of black between the frames of a clip in the image form
GAP_EPS = 1e-6  # s: timestamps are floats (k / fps); a gap of exactly min_gap_s must count
JPEG_TOL = 4.0  # mean |difference| (0..255) between a shown image and its decoded frame(s) that still counts as equal


@dataclass
class TemporalOrderConfig(TaskConfig):
    num_frames: int = 4  # K items to order (3..8)
    min_gap_s: float = 0.2  # seconds between consecutive items (sequence timeline)
    max_gap_s: float = 0.6
    anchor_first: bool = True  # the question names the earliest item's label (else clips must show the direction)
    clip_frames: int = 1  # 1: single frames; c >= 2: clips of c consecutive frames side by side in one image
    videos: bool = False  # also the video form: each item a clip of max(clip_frames, 2) frames
    thumb_width: int = 48  # grey thumbnails for the rejection tests
    thumb_height: int = 36
    max_shift: int = 4  # thumbnail px of alignment searched in x and y when comparing two thumbnails (0: none)
    min_change: float = 2.0  # grey levels: time-consecutive items closer than this -> "temporal_order/static"
    min_margin: float = 0.2  # every other order costs this many mean true steps more, else "ambiguous"
    max_margin: Optional[float] = None  # harder levels: orders clearer than this are passed over ("too_clear")
    max_tries: int = 6  # fresh chains of frames per call before rejecting with the last reason

    def validate(self) -> None:
        key = "task.temporal_order"
        check(isinstance(self.num_frames, int) and 3 <= self.num_frames <= 8, f"{key}.num_frames",
              f"must be an integer in 3..8, got {self.num_frames!r}")
        check(math.isfinite(self.min_gap_s) and 0 < self.min_gap_s <= 3600, f"{key}.min_gap_s",
              f"must be in (0, 3600] seconds, got {self.min_gap_s}")
        check(math.isfinite(self.max_gap_s) and self.min_gap_s <= self.max_gap_s <= 3600, f"{key}.max_gap_s",
              f"must be in [min_gap_s = {self.min_gap_s}, 3600] seconds, got {self.max_gap_s}")
        check(isinstance(self.clip_frames, int) and 1 <= self.clip_frames <= 8, f"{key}.clip_frames",
              f"must be an integer in 1..8, got {self.clip_frames!r}")
        check(self.anchor_first or self.clip_frames >= 2, f"{key}.anchor_first",
              "false needs clip_frames >= 2: single frames of a sweep are ordered only up to reversal")
        for name in ("thumb_width", "thumb_height"):
            v = getattr(self, name)
            check(isinstance(v, int) and 8 <= v <= 256, f"{key}.{name}", f"must be an integer in 8..256, got {v!r}")
        check(isinstance(self.max_shift, int) and 0 <= self.max_shift <= min(self.thumb_width, self.thumb_height) // 4,
              f"{key}.max_shift", f"must be an integer in 0..{min(self.thumb_width, self.thumb_height) // 4} "
              f"(a quarter of the thumbnail's shorter side), got {self.max_shift!r}")
        check(math.isfinite(self.min_change) and 0 <= self.min_change < 255, f"{key}.min_change",
              f"must be in [0, 255) grey levels, got {self.min_change}")
        check(math.isfinite(self.min_margin) and 0 <= self.min_margin <= 10, f"{key}.min_margin",
              f"must be in [0, 10], got {self.min_margin}")
        if self.max_margin is not None:
            check(math.isfinite(self.max_margin) and self.min_margin < self.max_margin <= 100, f"{key}.max_margin",
                  f"must be null or in (min_margin = {self.min_margin}, 100], got {self.max_margin}")
        check(isinstance(self.max_tries, int) and 1 <= self.max_tries <= 100, f"{key}.max_tries",
              f"must be an integer in 1..100, got {self.max_tries!r}")

    @property
    def video_clip_frames(self) -> int:
        return max(self.clip_frames, 2) if self.videos else 0

    @property
    def frames_per_item(self) -> int:
        """Frames each item takes from the sequence (the picked one and the ones after it)."""
        return max(self.clip_frames, self.video_clip_frames)


# ---------------------------------------------------------------------------------------------- measures


def thumbnail(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Grey (height, width) float64 thumbnail: the mean of near-equal integer pixel blocks (block edges at
    round(k * H / height)), summed with an integral image (cumulative sums: the same bytes on every machine)."""
    g = grey(rgb).astype(np.float64)
    h, w = g.shape
    ys = np.round(np.linspace(0, h, height + 1)).astype(np.int64)
    xs = np.round(np.linspace(0, w, width + 1)).astype(np.int64)
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = g.cumsum(axis=0).cumsum(axis=1)
    s = integral[ys[1:]][:, xs[1:]] - integral[ys[:-1]][:, xs[1:]] - integral[ys[1:]][:, xs[:-1]] + integral[ys[:-1]][:, xs[:-1]]
    area = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    return s / np.maximum(area, 1)


def distance_matrix(first: np.ndarray, last: np.ndarray, max_shift: int) -> np.ndarray:
    """(K, K): the cost of item b coming right after item a: mean |last[a] - first[b]| of thumbnails (K, h, w) over
    their overlap, at the best alignment within +-``max_shift`` thumbnail pixels in x and y (a camera that pans or
    turns shifts the whole picture: aligned, the step reads as the small change it is, not as a new picture)."""
    h, w = first.shape[1:]
    best = None
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            a = last[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            b = first[:, max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            d = np.abs(a[:, None] - b[None, :]).mean(axis=(2, 3))
            best = d if best is None else np.minimum(best, d)
    return best


@lru_cache(maxsize=16)
def candidate_orders(k: int, anchored: bool) -> np.ndarray:
    """Every order of items 0..k-1 (lexicographic, so row 0 is the identity), starting with item 0 when anchored."""
    if anchored:
        rest = np.array(list(itertools.permutations(range(1, k))), np.int64).reshape(-1, k - 1)
        return np.concatenate([np.zeros((len(rest), 1), np.int64), rest], axis=1)
    return np.array(list(itertools.permutations(range(k))), np.int64)


def path_margin(dist: np.ndarray, anchored: bool) -> tuple[float, float, list[int]]:
    """(cost of the identity order, margin, cheapest other order) for a distance matrix in TRUE temporal order (item
    i is the i-th earliest). margin = (cheapest other cost - true cost) / (true cost / (K - 1)): how many mean
    steps of the true path the best wrong order costs more (the same scale for every K; 0 when the true path
    costs nothing, which the static test rejects first)."""
    k = dist.shape[0]
    orders = candidate_orders(k, anchored)
    cost = dist[orders[:, :-1], orders[:, 1:]].sum(axis=1)
    true_cost = float(cost[0])
    other = int(np.argmin(cost[1:])) + 1
    margin = (float(cost[other]) - true_cost) * (k - 1) / true_cost if true_cost > 0 else 0.0
    return true_cost, margin, [int(v) for v in orders[other]]


# ------------------------------------------------------------------------------------------------ text


def build_question(k: int, clip_frames: int, anchor: int | None, video: bool) -> str:
    noun = "Clip" if (clip_frames > 1 or video) else "Frame"
    holder = "<video>" if video else "<image>"
    lines = "".join(f"{noun} {i}: {holder}\n" for i in range(1, k + 1))
    plural = noun.lower() + "s"
    if video:
        what = f"These {k} short video clips were cut from one video and are shown in a random order; each clip plays forward in time. "
    elif clip_frames > 1:
        what = (f"Each image is a short clip of {clip_frames} consecutive video frames placed side by side, left to right "
                f"in time. These {k} clips were cut from one video and are shown in a random order. ")
    else:
        what = f"These {k} frames were taken from one video and are shown in a random order. "
    if anchor is not None:
        what += f"{noun} {anchor} is the earliest of them. "
        rest = [i for i in range(k, 0, -1) if i != anchor]
        example = "-".join(str(i) for i in [anchor, *rest])
    else:
        example = "-".join(str(i) for i in range(k, 0, -1))
    return (f"{lines}{what}Put the {plural} in the order in which they were recorded: answer with the {noun.lower()} "
            f"numbers from the earliest to the latest, joined by '-' (for example {example}).")


# ------------------------------------------------------------------------------------------------ the task


@register_task
class TemporalOrderTask(Task):
    name = "temporal_order"
    config_cls = TemporalOrderConfig
    input_kind = "video"
    description = "Order shuffled frames (or short clips) of one video in time; the earliest one is named."

    # Level by level the items lie farther apart in time (less overlap between consecutive ones: level 1 0.1-0.4 s,
    # level 2 0.2-0.6 s, level 3 0.3-0.8 s; the demo sequences film at 10 fps and move up to 0.15 m and 4 degrees a
    # frame) and a band of the continuity margin moves down (level 1 at least 0.45: every other order costs 0.45 mean
    # steps more; level 2 0.2-0.45; level 3 0.05-0.2: nearly-as-cheap orders exist, the true one still the unique
    # cheapest). Measured per sample by ``difficulty``: margin falls, the gaps rise.
    levels = {
        1: {"min_gap_s": 0.1, "max_gap_s": 0.4, "min_margin": 0.45, "max_margin": None},
        2: {"min_gap_s": 0.2, "max_gap_s": 0.6, "min_margin": 0.2, "max_margin": 0.45},
        3: {"min_gap_s": 0.3, "max_gap_s": 0.8, "min_margin": 0.05, "max_margin": 0.2},
    }

    config: TemporalOrderConfig

    def difficulty(self, metadata: dict) -> dict[str, Any]:
        """``margin``: how much costlier the cheapest other order is than the true one by visual continuity
        (lower = nearly-as-good wrong orders exist); ``min_gap_s`` / ``mean_gap_s``: seconds between time-consecutive
        items (larger = less overlap between them); ``min_change``: the smallest distance between consecutive items'
        thumbnails over the mean distance between all items (lower = a pair that barely moved)."""
        gaps = [float(g) for g in metadata["gaps_s"]]
        summary = metadata["distance_summary"]
        return {"margin": round(float(metadata["margin"]), 6), "min_gap_s": round(min(gaps), 6),
                "mean_gap_s": round(sum(gaps) / len(gaps), 6),
                "min_change": round(float(summary["min_consecutive"]) / max(float(summary["mean_all"]), 1e-9), 6)}

    @property
    def num_slots(self) -> int:
        return self.config.num_frames

    # -------------------------------------------------------------------------------------------- generate

    def _chain(self, t: np.ndarray, rng: np.random.Generator) -> list[int]:
        """K frame indices, each min_gap_s..max_gap_s after the previous one and after its clip ends."""
        cfg = self.config
        n, k, c = len(t), cfg.num_frames, cfg.frames_per_item
        idx = np.arange(n)
        lo = np.maximum(np.searchsorted(t, t + cfg.min_gap_s - GAP_EPS, "left"), idx + c)
        hi = np.searchsorted(t, t + cfg.max_gap_s + GAP_EPS, "right")
        # can[r][i]: a chain of r + 1 items can start at frame i (its clip, and the rest, fit in the sequence)
        can = [idx + c <= n]
        for _ in range(k - 1):
            csum = np.concatenate([[0], np.cumsum(can[-1])])
            can.append((hi > lo) & (csum[np.minimum(hi, n)] - csum[np.minimum(lo, n)] > 0))
        starts = np.flatnonzero(can[k - 1])
        if starts.size == 0:
            raise Reject("temporal_order/too_short", f"{n} frames over {t[-1] - t[0]:.3g} s hold no {k} items "
                                                     f"{cfg.min_gap_s}-{cfg.max_gap_s} s apart ({c} frames each)")
        chain = [int(rng.choice(starts))]
        for r in range(k - 2, -1, -1):
            i = chain[-1]
            nxt = np.arange(lo[i], min(hi[i], n))
            chain.append(int(rng.choice(nxt[can[r][nxt]])))
        return chain

    def generate(self, source: Sequence, rng: np.random.Generator, slot: int = 0) -> Sample:
        cfg = self.config
        k = cfg.num_frames
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"temporal_order: slot must be in [0, {self.num_slots}), got {slot}")
        if not isinstance(source, Sequence):
            raise TypeError(f"temporal_order: needs a Sequence, got {type(source).__name__}")
        t = np.asarray(source.timestamps, np.float64)
        reason, detail = "temporal_order/too_short", ""
        for _ in range(cfg.max_tries):
            chain = self._chain(t, rng)
            clips = [[i + j for j in range(cfg.frames_per_item)] for i in chain]
            measured = self._measure(source, clips)
            failed = self._check(measured)
            if failed is None:
                break
            reason, detail = failed
        else:
            raise Reject(reason, detail)

        # slot = label (0-based) of the earliest item; the later items get the other labels in a seeded shuffle
        others = [lab for lab in range(k) if lab != slot]
        others = [others[i] for i in rng.permutation(k - 1)]
        label_of_rank = [slot, *others]
        rank_of_label = [label_of_rank.index(lab) for lab in range(k)]
        frames = {f.index: f for f in source.frames(sorted({i for clip in clips for i in clip}))}
        images, videos = [], []
        for lab in range(k):
            clip = clips[rank_of_label[lab]]
            images.append(self._image([frames[i] for i in clip[: cfg.clip_frames]]))
            if cfg.videos:
                videos.append([frames[i].source.image() for i in clip[: cfg.video_clip_frames]])
        anchor = slot + 1 if cfg.anchor_first else None
        answer = "-".join(str(lab + 1) for lab in label_of_rank)
        items = []
        for lab in range(k):
            clip = clips[rank_of_label[lab]]
            items.append({"label": str(lab + 1), "rank": rank_of_label[lab], "frame_indices": clip,
                          "timestamps": [float(t[i]) for i in clip], "digests": [frames[i].source.digest for i in clip]})
        gaps = [float(t[b] - t[a]) for a, b in zip(chain, chain[1:])]
        metadata: dict[str, Any] = {
            "num_frames": k,
            "clip_frames": cfg.clip_frames,
            "video_clip_frames": cfg.video_clip_frames,
            "tile_gap": TILE_GAP if cfg.clip_frames > 1 else 0,
            "frame_size": [source.width, source.height],
            "anchor_first": cfg.anchor_first,
            "anchor_label": None if anchor is None else str(anchor),
            "items": items,
            "order": [str(lab + 1) for lab in label_of_rank],
            "frame_indices": chain,
            "timestamps": [float(t[i]) for i in chain],
            "gaps_s": gaps,
            "sequence_length": len(t),
            "sequence_span_s": float(t[-1] - t[0]),
            "distance": f"mean |grey difference| (0..255) of {cfg.thumb_width}x{cfg.thumb_height} area-averaged thumbnails "
                        f"at the best alignment within +-{cfg.max_shift} px, from an item's last frame to the next "
                        f"item's first frame",
            "distance_matrix": [[round(float(v), 4) for v in row] for row in measured["dist"]],
            "distance_summary": measured["summary"],
            "path_cost": round(measured["true_cost"], 4),
            "margin": round(measured["margin"], 6),
            "runner_up_order": measured["runner_up"],
            "orders_compared": int(len(candidate_orders(k, cfg.anchor_first))),
            "thresholds": {"min_gap_s": cfg.min_gap_s, "max_gap_s": cfg.max_gap_s, "min_change": cfg.min_change,
                           "min_margin": cfg.min_margin, "thumb_size": [cfg.thumb_width, cfg.thumb_height],
                           "max_shift": cfg.max_shift,
                           **({} if cfg.max_margin is None else {"max_margin": cfg.max_margin})},
        }
        question = build_question(k, cfg.clip_frames, anchor, video=False)
        extra: dict[str, Any] = {}
        if cfg.videos:
            extra = {"videos": videos, "video_question": build_question(k, cfg.video_clip_frames, anchor, video=True)}
        return Sample(self.name, self.name, question, images, answer, metadata, **extra)

    def _measure(self, source: Sequence, clips: list[list[int]]) -> dict[str, Any]:
        """Thumbnail distances of the items (in true order) and the continuity margin of the true order. Clips are
        measured on the frames the image form shows (first and last of ``clip_frames``)."""
        cfg = self.config
        c = cfg.clip_frames
        needed = sorted({clip[0] for clip in clips} | {clip[c - 1] for clip in clips})
        thumbs = {f.index: thumbnail(f.rgb, cfg.thumb_width, cfg.thumb_height) for f in source.frames(needed)}
        first = np.stack([thumbs[clip[0]] for clip in clips])
        last = np.stack([thumbs[clip[c - 1]] for clip in clips])
        dist = distance_matrix(first, last, cfg.max_shift)
        change = distance_matrix(first, first, 0)  # first frames, unaligned: did anything change between items?
        true_cost, margin, runner_up = path_margin(dist, cfg.anchor_first)
        k = len(clips)
        off = ~np.eye(k, dtype=bool)
        consecutive = np.array([change[i, i + 1] for i in range(k - 1)])
        summary = {"min_consecutive": round(float(consecutive.min()), 4), "mean_consecutive": round(float(consecutive.mean()), 4),
                   "mean_all": round(float(change[off].mean()), 4), "max_all": round(float(change[off].max()), 4)}
        return {"dist": dist, "consecutive": consecutive, "summary": summary, "true_cost": true_cost, "margin": margin,
                "runner_up": runner_up}

    def _check(self, m: dict[str, Any]) -> tuple[str, str] | None:
        cfg = self.config
        worst = int(np.argmin(m["consecutive"]))
        if m["consecutive"][worst] < cfg.min_change or not m["true_cost"] > 0:
            return "temporal_order/static", (f"items {worst} and {worst + 1} (time order) differ by "
                                             f"{m['consecutive'][worst]:.2f} < min_change={cfg.min_change}")
        if not m["margin"] >= cfg.min_margin:
            return "temporal_order/ambiguous", (f"order {m['runner_up']} costs {m['margin']:+.3f} relative to the true "
                                                f"order (min_margin={cfg.min_margin})")
        if cfg.max_margin is not None and m["margin"] > cfg.max_margin:
            return "temporal_order/too_clear", f"margin {m['margin']:.3f} > max_margin={cfg.max_margin}"
        return None

    @staticmethod
    def _image(frames: list) -> Image.Image:
        if len(frames) == 1:
            return frames[0].source.image()
        w, h = frames[0].source.width, frames[0].source.height
        out = Image.new("RGB", (len(frames) * w + (len(frames) - 1) * TILE_GAP, h), (0, 0, 0))
        for j, f in enumerate(frames):
            out.paste(f.source.pil_view(), (j * (w + TILE_GAP), 0))
        return out

    # ---------------------------------------------------------------------------------------------- verify

    def verify(self, images: list[Image.Image], answer: str, metadata: dict, source: Sequence | None) -> list[str]:
        """Decode the recorded frames from the re-opened sequence, check digests and the shown pixels (label ->
        frames from the metadata), order the labels by the SOURCE's timestamps, check gaps and clips, and recompute
        the thumbnail distances and the cheapest path with a plain loop over every order."""
        if source is None:
            return ["source unavailable: temporal_order is verified by decoding the recorded frames of the sequence"]
        if not isinstance(source, Sequence):
            return [f"source is a {type(source).__name__}, not a Sequence"]
        k = int(metadata["num_frames"])
        c = int(metadata["clip_frames"])
        items = metadata["items"]
        if len(images) != k or len(items) != k:
            return [f"expected {k} images and items, got {len(images)} images and {len(items)} items"]
        if [str(it["label"]) for it in items] != [str(i) for i in range(1, k + 1)]:
            return [f"items are labelled {[it['label'] for it in items]}, expected 1..{k} in prompt order"]
        problems: list[str] = []
        n = len(source)
        t = np.asarray(source.timestamps, np.float64)
        clips = [[int(i) for i in it["frame_indices"]] for it in items]
        for it, clip in zip(items, clips):
            if len(clip) < c or any(not 0 <= i < n for i in clip) or clip != list(range(clip[0], clip[0] + len(clip))):
                return [f"item {it['label']}: frames {clip} are not {c}+ consecutive frames of a {n}-frame sequence"]
        frames = {f.index: f for f in source.frames(sorted({i for clip in clips for i in clip}))}
        for it, clip, img in zip(items, clips, images):
            digests = [frames[i].source.digest for i in clip]
            if digests != list(it["digests"]):
                problems.append(f"item {it['label']}: frame digests differ from the recorded ones (sequence changed?)")
            shown = np.asarray(img.convert("RGB"), np.float32)
            expected = np.asarray(self._image([frames[i] for i in clip[:c]]), np.float32)
            if shown.shape != expected.shape:
                problems.append(f"image {it['label']} is {shown.shape[1]}x{shown.shape[0]}, its frames make "
                                f"{expected.shape[1]}x{expected.shape[0]}")
                continue
            err = float(np.abs(shown - expected).mean())
            if err > JPEG_TOL:
                problems.append(f"image {it['label']} differs from frames {clip[:c]} by {err:.1f} grey levels (> {JPEG_TOL})")
        # the answer, from the source's own clock
        derived = [str(it["label"]) for _, it in sorted(zip((t[clip[0]] for clip in clips), items), key=lambda p: p[0])]
        if "".join(answer.split()) != "-".join(derived):
            problems.append(f"answer {answer!r} but the sequence's timestamps order the items {'-'.join(derived)}")
        if metadata.get("anchor_first") and metadata.get("anchor_label") != derived[0]:
            problems.append(f"anchor label {metadata.get('anchor_label')!r} is not the earliest item ({derived[0]})")
        th = metadata["thresholds"]
        starts = sorted(clip[0] for clip in clips)
        by_start = {clip[0]: clip for clip in clips}
        for a, b in zip(starts, starts[1:]):
            gap = t[b] - t[a]
            if not th["min_gap_s"] - GAP_EPS <= gap <= th["max_gap_s"] + GAP_EPS:
                problems.append(f"frames {a} and {b} are {gap:.4g} s apart, outside {th['min_gap_s']}-{th['max_gap_s']} s")
            if by_start[a][-1] >= b:
                problems.append(f"the clip at frame {a} runs into the item at frame {b}")
        problems += self._verify_continuity(frames, [by_start[s] for s in starts], c, metadata)
        return problems

    @staticmethod
    def _verify_continuity(frames: dict, clips: list[list[int]], c: int, metadata: dict) -> list[str]:
        """Recompute the distance matrix (time order) from the decoded frames, compare with the recorded one, and
        check by an explicit loop over every order that the true one is the cheapest by the recorded margin."""
        th = metadata["thresholds"]
        tw, tht = th["thumb_size"]
        first = [thumbnail(frames[clip[0]].rgb, tw, tht) for clip in clips]
        last = [thumbnail(frames[clip[c - 1]].rgb, tw, tht) for clip in clips]
        k = len(clips)
        shift = int(th.get("max_shift", 0))

        def aligned(a: np.ndarray, b: np.ndarray) -> float:
            hh, ww = a.shape
            return min(float(np.mean(np.abs(a[max(0, dy):hh + min(0, dy), max(0, dx):ww + min(0, dx)]
                                            - b[max(0, -dy):hh + min(0, -dy), max(0, -dx):ww + min(0, -dx)])))
                       for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1))

        dist = [[aligned(last[a], first[b]) for b in range(k)] for a in range(k)]
        recorded = np.asarray(metadata["distance_matrix"], np.float64)
        problems = []
        if recorded.shape != (k, k) or not np.allclose(recorded, dist, atol=2e-4):
            problems.append("recorded distance matrix differs from the one recomputed from the frames")
        anchored = bool(metadata.get("anchor_first"))
        true_cost = sum(dist[i][i + 1] for i in range(k - 1))
        best_other = math.inf
        for order in itertools.permutations(range(k)):
            if order == tuple(range(k)) or (anchored and order[0] != 0):
                continue
            best_other = min(best_other, sum(dist[a][b] for a, b in zip(order, order[1:])))
        margin = (best_other - true_cost) * (k - 1) / true_cost if true_cost > 0 else 0.0
        if not margin >= th["min_margin"] - 1e-6:
            problems.append(f"the true order is not the cheapest path by min_margin={th['min_margin']} (margin {margin:.4f})")
        if abs(margin - float(metadata["margin"])) > 1e-4 * (1 + abs(margin)):
            problems.append(f"margin {margin:.6f} recomputed, {metadata['margin']} recorded")
        return problems
