"""Cross-view correspondence: answers re-derived by plain projection, verify against tampering, the by-design
properties (the shown query position could belong to any candidate), rejections on built sequences, levels, hooks."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from PIL import ImageDraw

from conftest import textured_rgb
from levels_support import check_declared_levels
from ssrl_plugin.core import DepthMap
from ssrl_plugin.demo_sequence import demo_sequence_refs
from ssrl_plugin.errors import ConfigError, Reject
from ssrl_plugin.imaging import decode_image, encode_image
from ssrl_plugin.registry import Task
from ssrl_plugin.seeding import rng_for
from ssrl_plugin.sequence import ArraySequence, Intrinsics
from ssrl_plugin.sources import LoadOptions, load_source
from ssrl_plugin.tasks.cross_view import LETTERS, CrossViewTask

W, H = 240, 180


@lru_cache(maxsize=None)
def demo_seq(index: int):
    return load_source(demo_sequence_refs(index + 1, W, H, 48)[index], LoadOptions(min_side=16))


def make(seq, seed: int, slot: int, task: Task | None = None):
    """A sample, or None when the draw is rejected (a few are: the bands leave some pairs without a 4-set)."""
    task = task or CrossViewTask()
    try:
        return task.generate(seq, rng_for("test", "cross_view", seq.id, seed), slot)
    except Reject:
        return None


@lru_cache(maxsize=None)
def samples(level: int | None = None, n_seq: int = 6, per: int = 3) -> tuple:
    task = CrossViewTask({"level": level} if level else {})
    out = []
    for i in range(n_seq):
        for s in range(per):
            smp = make(demo_seq(i), s, (i * per + s) % 4, task)
            if smp is not None:
                out.append((i, smp))
    return tuple(out)


def jpeg(images):
    return [decode_image(encode_image(im, "jpeg", 95)) for im in images]


def rederive(seq, meta: dict) -> tuple[list[str], float]:
    """Which candidate boxes hold the query's point in frame 2, by hand: the median of frame 1's valid depth in the
    query's box, the box centre through K^-1, the world and frame 2's camera (poses from the sequence), K; and the
    relative gap between frame 2's depth there and the point's z."""
    a, b = meta["frames"]
    d1, d2 = seq.frame(a).depth, seq.frame(b).depth
    x0, y0, x1, y1 = meta["query"]["box"]
    vals = d1.values[y0:y1, x0:x1][d1.valid[y0:y1, x0:x1]]
    z = float(np.median(vals.astype(np.float64)))
    k = seq.intrinsics
    u, v = (x0 + x1) / 2, (y0 + y1) / 2
    cam1 = np.array([(u - k.cx) / k.fx * z, (v - k.cy) / k.fy * z, z, 1.0])
    p1, p2 = seq.pose(a), seq.pose(b)
    world = p1 @ cam1
    r2, t2 = p2[:3, :3], p2[:3, 3]
    cam2 = r2.T @ (world[:3] - t2)
    u2, v2 = k.fx * cam2[0] / cam2[2] + k.cx, k.fy * cam2[1] / cam2[2] + k.cy
    holding = [c["label"] for c in meta["candidates"]
               if c["box"][0] <= u2 < c["box"][2] and c["box"][1] <= v2 < c["box"][3]]
    seen = float(d2.values[int(v2), int(u2)])
    return holding, abs(seen - cam2[2]) / cam2[2]


# ------------------------------------------------------------------------------------------------- answers


def test_answers_rederived_by_hand_and_verified():
    got = samples()
    assert len(got) >= 15, f"only {len(got)} of 18 draws made a sample"
    for i, smp in got:
        seq = demo_seq(i)
        holding, gap = rederive(seq, smp.metadata)
        assert holding == [smp.answer], (seq.id, holding, smp.answer)
        assert gap <= smp.metadata["thresholds"]["occlusion_tol"], "the query's point is hidden in frame 2"
        assert smp.question.count("<image>") == 2 and len(smp.images) == 2
        (cw, ch), (w, h) = smp.metadata["image_sizes"]
        assert smp.images[0].size == (cw, ch) and smp.images[1].size == (w, h) == (W, H)
        assert task_verify(smp, seq) == []


def task_verify(smp, seq, images=None, answer=None, meta=None):
    return CrossViewTask().verify(images or jpeg(smp.images), answer or smp.answer, meta or smp.metadata, seq)


def test_query_position_could_belong_to_any_candidate():
    """The by-design property: for EVERY candidate, a crop of the recorded size placed so that the query sits where it
    is shown would hold that candidate's own frame-1 window inside frame 1; the candidates' frame-1 windows are
    their true correspondences (each candidate could have been the answer)."""
    for i, smp in samples():
        meta = smp.metadata
        (cw, ch), (w, h) = meta["image_sizes"]
        dx, dy = meta["query"]["shown_center"]
        for c in meta["candidates"]:
            ox, oy = c["frame1_center"][0] - dx, c["frame1_center"][1] - dy
            assert 0 <= ox <= w - cw and 0 <= oy <= h - ch, (c["label"], ox, oy)
        true = next(c for c in meta["candidates"] if c["label"] == smp.answer)
        assert true["frame1_center"] == meta["query"]["center"]



def test_which_member_answers_changes_nothing_a_blind_solver_sees():
    """The answer is decided after the set: forcing each of the four members to be the answer (same seed, same slot,
    the same draws consumed) leaves image 2, the candidates' positions and regions and the query's shown position
    unchanged - only which candidate sits at the answer's letter, image 1's content and the crop's place differ."""

    class Forced(CrossViewTask):
        pick = 0

        def _answer_member(self, rng):
            super()._answer_member(rng)  # keep the random stream aligned with the unforced task
            return self.pick

    checked = 0
    for i in range(3):
        seq = demo_seq(i)
        for seed in range(2):
            outs = []
            for pick in range(4):
                task = Forced()
                task.pick = pick
                outs.append(make(seq, seed, (i + seed) % 4, task))
            if any(o is None for o in outs):
                continue
            checked += 1
            metas = [o.metadata for o in outs]
            sets = [sorted(tuple(c["center"]) for c in m["candidates"]) for m in metas]
            assert all(s == sets[0] for s in sets)
            assert len({tuple(m["query"]["shown_center"]) for m in metas}) == 1
            assert len({tuple(m["frames"]) for m in metas}) == 1
            answers = {tuple(next(c for c in m["candidates"] if c["label"] == m["answer"])["center"]) for m in metas}
            assert len(answers) == 4  # each member answered once
            for o in outs[1:]:  # image 2 differs only in the letters of the badges
                a, b = (np.asarray(x.images[1], dtype=np.int16) for x in (outs[0], o))
                boxes = np.zeros(a.shape[:2], bool)
                for c in o.metadata["candidates"]:
                    x0, y0, x1, y1 = c["box"]
                    boxes[y0:y1, x0:x1] = True
                assert np.array_equal(a[boxes], b[boxes])
    assert checked >= 3

def test_candidates_spaced_alike_and_far_in_3d():
    for _, smp in samples():
        meta, th = smp.metadata, smp.metadata["thresholds"]
        cands = meta["candidates"]
        for i, a in enumerate(cands):
            for b in cands[i + 1:]:
                assert math.dist(a["center"], b["center"]) >= meta["min_center_distance_px"] - 1e-6
                za, zb = a["median_farness"], b["median_farness"]
                assert abs(za - zb) <= th["depth_band"] * min(za, zb) * 1.05  # window medians vs exact: a small slack
                assert math.dist(a["colour"], b["colour"]) <= th["colour_band"] + 1e-6
                assert math.dist(a["point"], b["point"]) >= th["min_3d_frac"] * 0.5 * (za + zb) * 0.95


def test_verify_catches_tampering():
    i, smp = samples()[0]
    seq = demo_seq(i)
    wrong = LETTERS[(LETTERS.index(smp.answer) + 1) % 4]
    assert task_verify(smp, seq, answer=wrong)
    moved = copy.deepcopy(smp.metadata)  # the answer's box moved off the projection
    true = next(c for c in moved["candidates"] if c["label"] == smp.answer)
    true["box"] = [v + 12 for v in true["box"]]
    assert task_verify(smp, seq, meta=moved)
    other = copy.deepcopy(smp.metadata)  # another frame pair recorded
    other["frames"] = [other["frames"][0], (other["frames"][1] + 7) % len(seq)]
    assert any("digest" in p for p in task_verify(smp, seq, meta=other))
    shifted = copy.deepcopy(smp.metadata)  # the crop placed elsewhere
    shifted["crop_box"] = [shifted["crop_box"][0] + 5, *shifted["crop_box"][1:]]
    assert task_verify(smp, seq, meta=shifted)
    swapped = jpeg(smp.images)  # image 2 is not frame 2
    frame = seq.frame((smp.metadata["frames"][1] + 9) % len(seq)).source.image()
    assert any("image 2" in p for p in task_verify(smp, seq, images=[swapped[0], frame]))
    marked = jpeg(smp.images)  # a stroke drawn on image 2 away from every marker
    cands = smp.metadata["candidates"]
    far = max(((x, y) for x in range(20, W - 20, 10) for y in range(20, H - 20, 10)),
              key=lambda p: min(math.dist(p, c["center"]) for c in cands))
    ImageDraw.Draw(marked[1]).line((far[0] - 8, far[1], far[0] + 8, far[1]), fill=(230, 25, 25), width=3)
    assert any("image 2" in p for p in task_verify(smp, seq, images=marked))
    assert task_verify(smp, None) == ["source sequence unavailable: cannot re-read the frames"]


def test_deterministic_and_balanced():
    seq = demo_seq(2)
    a, b = make(seq, 5, 2), make(seq, 5, 2)
    assert a is not None and b is not None
    assert json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.images, b.images))
    answers = Counter()
    for slot in range(8):
        smp = make(seq, 100 + slot, slot % 4)
        if smp is not None:
            assert smp.answer == LETTERS[slot % 4]
            answers[smp.answer] += 1
    assert len(answers) >= 3
    with pytest.raises(ValueError):
        CrossViewTask().generate(seq, rng_for(0), 4)


# ------------------------------------------------------------------------------------------------ rejections


def plane_sequence(depth1: float, depth2: float, pose2: np.ndarray, poses: bool = True, n: int = 2) -> ArraySequence:
    """Two textured frames of a wall at constant depth (a far patch in a corner gives the scene a depth range);
    frame 2 at ``pose2`` (camera-to-world), frame 1 at the origin."""
    k = Intrinsics(180.0, 180.0, W / 2, H / 2, W, H)
    rgb = [textured_rgb(s, H, W) for s in range(n)]
    depth = []
    for z in (depth1, depth2)[:n]:
        values = np.full((H, W), z, np.float32)
        values[:24, :24] = 8.0
        depth.append(DepthMap(values, np.ones((H, W), bool)))
    return ArraySequence("plane", rgb, np.arange(n) * 0.5, depth=depth,
                         poses=[np.eye(4), pose2][:n] if poses else None, intrinsics=k)


def shifted(x: float) -> np.ndarray:
    p = np.eye(4)
    p[0, 3] = x
    return p


def turned(deg: float) -> np.ndarray:
    p = np.eye(4)
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    p[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    return p


@pytest.mark.parametrize("seq, config, reason", [
    (plane_sequence(2.0, 2.0, shifted(0.3), poses=False), {}, "cross_view/no_pose"),
    (plane_sequence(2.0, 2.0, shifted(0.3)), {"min_gap_s": 2.0, "max_gap_s": 3.0}, "cross_view/no_pair"),
    (plane_sequence(2.0, 2.0, shifted(0.3)), {"min_view_deg": 60.0, "max_view_deg": 90.0}, "cross_view/no_pair"),
    # frame 1 sees something 1 m away where frame 2's surface (2 m) should show: hidden behind it
    (plane_sequence(1.0, 2.0, shifted(0.3)), {"max_view_deg": 90.0}, "cross_view/occluded"),
    # frame 2 looks 80 degrees away: nothing it sees is in frame 1's view
    (plane_sequence(2.0, 2.0, turned(80.0)), {"max_view_deg": 180.0}, "cross_view/out_of_view"),
    # the views match, but no four regions are alike enough
    (plane_sequence(2.0, 2.0, shifted(0.3)), {"max_view_deg": 90.0, "colour_band": 0.5}, "cross_view/no_candidate_set"),
])
def test_rejections(seq, config, reason):
    task = CrossViewTask({"max_pair_tries": 2, **config})
    with pytest.raises(Reject) as exc:
        task.generate(seq, rng_for("reject", reason), 0)
    assert exc.value.reason == reason


def test_consistent_plane_sequence_makes_samples():
    """The same two planes without an occluder: samples, verified (the rejections above are not from a bug)."""
    seq = plane_sequence(2.0, 2.0, shifted(0.3))
    smp = CrossViewTask({"max_view_deg": 90.0}).generate(seq, rng_for("plane"), 3)
    assert smp.answer == "D"
    assert CrossViewTask().verify(jpeg(smp.images), smp.answer, smp.metadata, seq) == []


def test_config_errors_name_the_key():
    for bad, key in [({"crop_frac": 0.95}, "crop_frac"), ({"min_gap_s": 5.0, "max_gap_s": 1.0}, "min_gap_s"),
                     ({"min_view_deg": 30.0, "max_view_deg": 10.0}, "min_view_deg"),
                     ({"occlusion_tol": 0.0}, "occlusion_tol"), ({"depth_band": -1.0}, "depth_band"),
                     ({"centre_tol_frac": 0.7}, "centre_tol_frac"), ({"pool_size": 4}, "pool_size")]:
        with pytest.raises(ConfigError, match=f"task.cross_view.{key}"):
            CrossViewTask(bad)


# ----------------------------------------------------------------------------------------------------- levels


def test_levels_declared_and_monotone():
    check_declared_levels("cross_view")
    med = {}
    for level in (1, 2, 3):
        got = samples(level, n_seq=8, per=2)  # level 3 wants 20-50 degrees: about half the draws find a pair
        assert len(got) >= 6, f"level {level}: {len(got)} samples of 16 draws"
        diffs = [CrossViewTask({"level": level}).difficulty(s.metadata) for _, s in got]
        med[level] = {k: float(np.median([d[k] for d in diffs])) for k in diffs[0]}
        for _, s in got[:2]:
            assert CrossViewTask({"level": level}).verify(jpeg(s.images), s.answer, s.metadata, demo_seq(_)) == []
    assert med[1]["view_deg"] < med[2]["view_deg"] < med[3]["view_deg"], med
    assert med[1]["appearance_gap"] > med[3]["appearance_gap"] and med[1]["depth_gap"] > med[3]["depth_gap"], med


# ------------------------------------------------------------------------------------------------------ hooks


def rows(got):
    from data_builders.stats import Row

    out = []
    for i, smp in got:
        meta = json.loads(json.dumps(smp.metadata))
        meta["source"] = {"id": demo_seq(i).id}
        out.append(Row(id=f"{i}-{len(out)}", split="train", task="cross_view", variant="cross_view", question=smp.question,
                       gt={"answer": smp.answer}, metadata=meta, images=[encode_image(im, "jpeg", 95) for im in smp.images]))
    return out


def test_hooks_run_on_generated_rows():
    from data_builders import task_hooks
    from data_builders.audit_learned import audit_learned
    from data_builders.preview import Overlay

    hk = task_hooks.hooks("cross_view")
    got = rows(samples())
    items, sighted = [], []
    for r in got:
        assert hk.check_metadata(r.answer, r.metadata) == []
        it = hk.extract(r, {"id": r.id, "group": r.metadata["source"]["id"], "answer": r.answer})
        it["learned"] = hk.learned_item(r, r.array, it)
        assert it["learned"]["x"].shape[0] == 4 and np.isfinite(it["learned"]["x"]).all()
        items.append(it)
        sighted.append({**hk.sighted_item(r), "id": r.id, "group": it["group"], "level": None})
        ov = hk.overlay(r, [decode_image(b) for b in r.images], None)
        assert isinstance(ov, Overlay) and ov.notes == [] and ov.image.width > 300
    bad = copy.deepcopy(got[0].metadata)
    bad["answer"] = LETTERS[(LETTERS.index(got[0].answer) + 1) % 4]
    assert hk.check_metadata(got[0].answer, bad)
    results = hk.audit(items, "cross_view")
    assert results and all(r.kind == "rule" and r.n == len(items) for r in results)
    assert any("nearest the query" in r.solver for r in results)
    learned = audit_learned("cross_view", "cross_view", items)  # one OpenMP thread, as the audit runs it
    assert len(learned) == 1 and learned[0].kind == "learned"
    seen = hk.sighted("cross_view", sighted)
    assert seen[0].counted and seen[0].accuracy >= 0.75, [s["ncc"] for s in sighted]
