"""Temporal order: answers re-derived from the sequences' clocks, verify against tampering, rejections built by hand
(static, doubling back, too short), determinism, slot balance, levels, config errors, clips and videos, hooks."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits

from conftest import textured_rgb
from data_builders.stats import Row
from data_builders.task_hooks import temporal_order as hooks
from ssrl_plugin.demo_sequence import demo_sequence_refs, load_demo_sequence
from ssrl_plugin.errors import ConfigError, Reject
from ssrl_plugin.imaging import decode_image, encode_image
from ssrl_plugin.seeding import rng_for
from ssrl_plugin.sequence import FRAME_CACHE, ArraySequence
from ssrl_plugin.sources import LoadOptions
from ssrl_plugin.tasks.temporal_order import TILE_GAP, TemporalOrderTask, candidate_orders, path_margin, thumbnail
from tests.levels_support import check_declared_levels

W, H = 128, 96


def pan_sequence(seed: int, n: int = 40, speed: float = 60.0, vfr: bool = False) -> ArraySequence:
    """A camera panning right over a wide texture at ``speed`` px/s; ``vfr``: irregular frame times."""
    rng = np.random.default_rng(seed)
    dt = rng.uniform(0.04, 0.16, n - 1) if vfr else np.full(n - 1, 0.1)
    t = np.concatenate([[0.0], np.cumsum(dt)])
    wide = textured_rgb(seed, H, W + int(math.ceil(speed * t[-1])) + 1)
    frames = [np.ascontiguousarray(wide[:, int(round(speed * ti)):int(round(speed * ti)) + W]) for ti in t]
    return ArraySequence(f"pan{seed}{'v' if vfr else ''}", frames, t)


def hand_sequence(name: str, offsets: list[int], seed: int = 0, fps: float = 10.0) -> ArraySequence:
    """Frames cut from one texture at the given x offsets (a path written by hand)."""
    wide = textured_rgb(seed, H, W + max(offsets) + 1)
    frames = [np.ascontiguousarray(wide[:, o:o + W]) for o in offsets]
    return ArraySequence(name, frames, np.arange(len(offsets)) / fps)


@lru_cache(maxsize=None)
def demo_seq(i: int):
    return load_demo_sequence(demo_sequence_refs(i + 1, 160, 120, 48)[i], LoadOptions(min_side=64))


def generate(task: TemporalOrderTask, seq, key, slot: int = 0, attempts: int = 8):
    for a in range(attempts):
        try:
            return task.generate(seq, rng_for("test", seq.id, key, a), slot)
        except Reject:
            continue
    raise AssertionError(f"{seq.id}: every attempt rejected")


def jpeg(images):
    return [decode_image(encode_image(im, "jpeg", 95)) for im in images]


def rederive(sample, seq) -> str:
    """Labels sorted by the sequence's own timestamps at each item's first frame (labels = prompt positions)."""
    firsts = {str(it["label"]): int(it["frame_indices"][0]) for it in sample.metadata["items"]}
    return "-".join(sorted(firsts, key=lambda lab: seq.timestamps[firsts[lab]]))


# ------------------------------------------------------------------------------------------------ answers
def test_answers_rederived_on_many_samples():
    task = TemporalOrderTask({"num_frames": 5})
    seqs = [pan_sequence(s) for s in range(2)] + [pan_sequence(s, vfr=True) for s in range(2, 4)] + [demo_seq(0)]
    for seq in seqs:
        for key in range(6):
            slot = key % task.num_slots
            s = generate(task, seq, key, slot)
            k = 5
            assert s.answer == rederive(s, seq)
            labels = s.answer.split("-")
            assert sorted(labels, key=int) == [str(i) for i in range(1, k + 1)] and labels[0] == str(slot + 1)
            assert f"Frame {slot + 1} is the earliest" in s.question
            assert [ln.split(":")[0] for ln in s.question.splitlines()[:k]] == [f"Frame {i}" for i in range(1, k + 1)]
            starts = sorted(int(it["frame_indices"][0]) for it in s.metadata["items"])
            gaps = np.diff(seq.timestamps[starts])
            assert np.all(gaps >= 0.2 - 1e-9) and np.all(gaps <= 0.6 + 1e-9)
            for it, img in zip(s.metadata["items"], s.images):  # the exact decoded frame, never resized or marked
                assert np.array_equal(np.asarray(img), seq.frame(int(it["frame_indices"][0])).rgb)
            # the recorded margin is the brute-force one over every anchored order
            d = np.asarray(s.metadata["distance_matrix"])
            costs = {o: sum(d[a, b] for a, b in zip(o, o[1:])) for o in itertools.permutations(range(k)) if o[0] == 0}
            true = costs.pop(tuple(range(k)))
            assert min(costs.values()) > true
            assert s.metadata["margin"] == pytest.approx((min(costs.values()) - true) * (k - 1) / true, abs=2e-3)


def test_path_margin_and_thumbnail_by_hand():
    assert len(candidate_orders(5, True)) == 24 and len(candidate_orders(4, False)) == 24
    assert (candidate_orders(5, True)[:, 0] == 0).all() and list(candidate_orders(5, True)[0]) == [0, 1, 2, 3, 4]
    pos = np.array([0.0, 1.0, 2.0, 3.0])  # items on a line: the path in order costs 3, the best other order 4
    cost, margin, other = path_margin(np.abs(pos[:, None] - pos[None]), True)
    assert cost == 3 and margin == pytest.approx(1.0) and other == [0, 1, 3, 2]
    rgb = np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)
    g = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.allclose(thumbnail(rgb, 48, 36), g.reshape(36, 2, 48, 2).mean(axis=(1, 3)), atol=1e-3)


# ------------------------------------------------------------------------------------------------ verify
def test_verify_passes_and_catches_tampering():
    task = TemporalOrderTask({"num_frames": 4})
    seq = pan_sequence(7, vfr=True)
    s = generate(task, seq, "v", slot=2)
    images = jpeg(s.images)
    assert task.verify(images, s.answer, s.metadata, seq) == []
    assert task.verify(images, s.answer, s.metadata, None)[0].startswith("source unavailable")
    labels = s.answer.split("-")
    swapped = "-".join([labels[0], labels[2], labels[1], *labels[3:]])
    assert any("timestamps order" in p for p in task.verify(images, swapped, s.metadata, seq))
    # wrong frame: two images exchanged (the metadata still maps label -> frame)
    assert any("differs from frames" in p for p in task.verify([images[1], images[0], *images[2:]], s.answer, s.metadata, seq))
    # tampered metadata: one item points at another frame; a digest changed; the anchor moved
    meta = json.loads(json.dumps(s.metadata))
    meta["items"][0]["frame_indices"] = [meta["items"][0]["frame_indices"][0] + 1]
    assert task.verify(images, s.answer, meta, seq)
    meta = json.loads(json.dumps(s.metadata))
    meta["items"][1]["digests"][0] = "xxh3_128:0"
    assert any("digests" in p for p in task.verify(images, s.answer, meta, seq))
    meta = json.loads(json.dumps(s.metadata))
    meta["anchor_label"] = labels[1]
    assert any("anchor" in p for p in task.verify(images, s.answer, meta, seq))
    meta = json.loads(json.dumps(s.metadata))
    meta["distance_matrix"][0][1] += 3.0
    assert any("distance matrix" in p for p in task.verify(images, s.answer, meta, seq))
    # the source's clock decides, not the metadata's: a sequence whose frames come in the other order disagrees
    backwards = ArraySequence(seq.id, seq.rgb[::-1], seq.timestamps)
    assert task.verify(images, s.answer, s.metadata, backwards)


# ------------------------------------------------------------------------------------------------ rejections
def test_rejections_built_by_hand():
    task = TemporalOrderTask({"num_frames": 4, "max_tries": 2})
    still = hand_sequence("still", [0] * 30)
    with pytest.raises(Reject) as exc:
        task.generate(still, rng_for(0), 0)
    assert exc.value.reason == "temporal_order/static"
    # the camera pans right and comes back half way: the view at 0.3 s lies between those at 0.1 s and 0.2 s, so
    # the path 0 -> 1 -> 3 -> 2 is smoother than the true one (either chain of four frames 1 s apart)
    to_and_fro = hand_sequence("to_and_fro", [0, 24, 48, 36, 12], fps=1.0)
    one_second = TemporalOrderTask({"num_frames": 4, "min_gap_s": 1.0, "max_gap_s": 1.0, "max_tries": 4})
    for key in range(4):
        with pytest.raises(Reject) as exc:
            one_second.generate(to_and_fro, rng_for(key), 0)
        assert exc.value.reason == "temporal_order/ambiguous"
    short = hand_sequence("short", list(range(0, 50, 10)))  # 5 frames, 0.4 s: four items need 0.6 s
    with pytest.raises(Reject) as exc:
        task.generate(short, rng_for(0), 0)
    assert exc.value.reason == "temporal_order/too_short"
    # a clear pan at the hardest level: its margin is above the level's band
    hard = TemporalOrderTask({"level": 3, "max_tries": 2})
    with pytest.raises(Reject) as exc:
        hard.generate(pan_sequence(1, speed=30.0), rng_for(0), 0)
    assert exc.value.reason == "temporal_order/too_clear"


def test_sequence_frames_with_a_full_cache():
    seq = pan_sequence(3, n=FRAME_CACHE + 8)
    seq.frames(range(FRAME_CACHE))
    got = seq.frames([0, FRAME_CACHE, FRAME_CACHE + 1])  # frame 0 is the oldest cached one
    assert [f.index for f in got] == [0, FRAME_CACHE, FRAME_CACHE + 1]


# ------------------------------------------------------------------------------------------------ determinism, balance
def test_determinism():
    task = TemporalOrderTask({"num_frames": 6, "clip_frames": 2, "videos": True})

    def fingerprint(seq):
        s = task.generate(seq, rng_for(5, "det"), 3)
        return ([encode_image(im) for im in s.images], [[encode_image(f) for f in v] for v in s.videos],
                s.question, s.video_question, s.answer, json.dumps(s.metadata, sort_keys=True))

    assert fingerprint(pan_sequence(11)) == fingerprint(pan_sequence(11))


def test_slots_balance_labels_over_ranks():
    task = TemporalOrderTask({"num_frames": 4})
    seqs = [pan_sequence(s) for s in range(4)]
    cells: Counter = Counter()
    for slot in range(task.num_slots):
        for key in range(40):
            s = generate(task, seqs[key % 4], (slot, key), slot)
            labels = s.answer.split("-")
            assert labels[0] == str(slot + 1)
            cells.update((lab, r) for r, lab in enumerate(labels) if r > 0)
    # every label at every later rank: expected 160 / 4 = 40 each
    assert len(cells) == 12 and min(cells.values()) >= 22 and max(cells.values()) <= 58, cells


# ------------------------------------------------------------------------------------------------ levels
def test_levels_declared_and_monotone():
    check_declared_levels("temporal_order")
    seqs = [demo_seq(i) for i in range(4)]
    means = {}
    for level in (1, 2, 3):
        task = TemporalOrderTask({"level": level})
        measured = [task.difficulty(generate(task, seqs[key % 4], ("lv", key), key % 4).metadata) for key in range(16)]
        means[level] = {m: float(np.mean([d[m] for d in measured])) for m in ("margin", "mean_gap_s")}
    assert means[1]["margin"] > means[2]["margin"] > means[3]["margin"], means
    assert means[1]["mean_gap_s"] < means[2]["mean_gap_s"] < means[3]["mean_gap_s"], means


def test_config_errors_name_the_key():
    bad = {"num_frames": 9, "min_gap_s": 0.0, "max_gap_s": 0.1, "clip_frames": 0, "thumb_width": 4, "min_change": -1.0,
           "min_margin": -0.5, "max_margin": 0.1, "max_tries": 0}
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=f"task.temporal_order.{key}"):
            TemporalOrderTask({key: value})
    with pytest.raises(ConfigError, match="task.temporal_order.anchor_first"):
        TemporalOrderTask({"anchor_first": False})


# ------------------------------------------------------------------------------------------------ clips and videos
def test_clips_videos_and_no_anchor():
    seq = pan_sequence(4, n=60)
    task = TemporalOrderTask({"num_frames": 4, "clip_frames": 3, "anchor_first": False, "videos": True})
    s = generate(task, seq, "clip", slot=1)
    assert s.answer == rederive(s, seq) and "earliest of them" not in s.question
    assert all(im.size == (3 * W + 2 * TILE_GAP, H) for im in s.images)
    assert s.metadata["orders_compared"] == 24 and len(s.videos) == 4 and all(len(v) == 3 for v in s.videos)
    assert s.video_question.count("<video>") == 4 and "<image>" not in s.video_question
    for it, img in zip(s.metadata["items"], s.images):
        tiles = [np.asarray(img)[:, j * (W + TILE_GAP):j * (W + TILE_GAP) + W] for j in range(3)]
        assert all(np.array_equal(tile, seq.frame(i).rgb) for tile, i in zip(tiles, it["frame_indices"]))
    assert task.verify(jpeg(s.images), s.answer, s.metadata, seq) == []
    row = Row(id="c", split="train", task="temporal_order", variant="temporal_order", question=s.question,
              gt={"answer": s.answer}, metadata=json.loads(json.dumps(s.metadata)), images=[encode_image(i) for i in s.images])
    got = hooks.sighted_item(row)  # no anchor: every order, directed from each clip's last frame to the next's first
    assert got["correct"] == 1.0 and not got["anchored"] and hooks.check_metadata(s.answer, row.metadata) == []
    single = TemporalOrderTask({"num_frames": 3, "videos": True})  # single frames: 2-frame clips in the video form
    s = generate(single, seq, "single")
    assert [len(v) for v in s.videos] == [2, 2, 2] and all(im.size == (W, H) for im in s.images)
    assert all(np.array_equal(np.asarray(v[1]), seq.frame(it["frame_indices"][0] + 1).rgb)
               for v, it in zip(s.videos, s.metadata["items"]))
    assert single.verify(jpeg(s.images), s.answer, s.metadata, seq) == []


# ------------------------------------------------------------------------------------------------ hooks
@lru_cache(maxsize=None)
def demo_rows(level: int | None = 1) -> tuple:
    task = TemporalOrderTask({} if level is None else {"level": level})
    rows = []
    for key in range(36):
        seq = demo_seq(key % 6)
        s = generate(task, seq, ("rows", key), key % task.num_slots)
        meta = json.loads(json.dumps({**s.metadata, "source": {"id": seq.id},
                                      "difficulty": task.describe_difficulty(s.metadata)}))
        rows.append(Row(id=f"t{key}", split="train", task="temporal_order", variant="temporal_order",
                        question=s.question, gt={"answer": s.answer}, metadata=meta,
                        images=[encode_image(im) for im in s.images]))
    return tuple(rows)


def test_hooks_on_generated_rows(monkeypatch):
    from sklearn.dummy import DummyClassifier

    from data_builders import audit_learned

    # the plumbing is tested here, not the trees' power (a hundred small fits cost ~30 s)
    monkeypatch.setattr(audit_learned, "_model", lambda small=False: DummyClassifier(strategy="prior"))
    rows = demo_rows(1)
    for r in rows:
        assert hooks.check_metadata(r.answer, r.metadata) == []
    bad = json.loads(json.dumps(rows[0].metadata))
    bad["items"][0]["timestamps"][0] += 100.0
    assert hooks.check_metadata(rows[0].answer, bad)
    items = []
    for r in rows:
        it = hooks.extract(r, {"id": r.id, "group": r.metadata["source"]["id"], "answer": r.answer})
        it["learned"] = hooks.learned_item(r, r.array, it)
        assert it["learned"]["x"].shape[0] == 4
        items.append(it)
    rules = hooks.audit(items, "temporal_order")
    assert rules and all(0 <= r.score <= r.n == len(rows) for r in rules)
    assert {r.counted for r in rules} == {True, False}  # closeness to the anchor: reference only
    with threadpool_limits(limits=1, user_api="openmp"):  # as the audit runs them: libgomp barriers are slow
        learned = hooks.learned(items, "temporal_order")
    assert [r.target for r in learned] == ["answer", "per position", "time direction"]
    sighted = [{**hooks.sighted_item(r), "id": r.id, "level": 1} for r in rows]
    (result,) = hooks.sighted("temporal_order", sighted)
    assert result.counted and result.accuracy == 1.0  # level 1 rows are solved from the stored images
    ov = hooks.overlay(rows[0], [decode_image(b) for b in rows[0].images], None)
    assert ov.notes == [] and ov.image.width > 4 * 200 and isinstance(ov.image, Image.Image)
