"""``ssrl audit``'s learned blind solvers (data_builders/audit_learned.py): a shortcut planted across several
statistics is found and fails, noise stays at chance, the decision rule (3 points and a significant lower bound),
determinism, the one-line message without scikit-learn, and the paper's crop construction failing on a real build."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest

from data_builders import audit as A
from data_builders import audit_learned as L
from data_builders.pipeline import build
from data_builders.cli import main
from ssrl_plugin.config import load_config

pytest.importorskip("sklearn", reason="the learned audit needs scikit-learn (spatial-ssrl[audit], in the test extra)")

SMALL_DEMO = ["demo.num_rgb=12", "demo.num_rgbd=12", "demo.width=320", "demo.height=240"]
PAPER_CROP = {"scale_mode": "paper", "rotate_window": "crop", "source_blur": "0", "equalize": "false"}


def decided(results: list, **kw) -> list:
    """Results with accuracy, interval and status filled in, as run_audit does."""
    report = A.AuditReport(results=list(results), **kw)
    A._decide(report)
    return report.results


def crop_items(n: int, seed: int, shift: float = 0.0, planted: tuple[int, ...] = (), per_group: int = 5) -> list[dict]:
    """Synthetic crop items: noise statistics for four options; the true option gets ``shift`` on each ``planted``
    feature (each alone a weak cue, together a strong one)."""
    rng = np.random.default_rng(seed)
    f = len(L.CROP_FEATURES)
    items = []
    for i in range(n):
        x = rng.normal(size=(4, f))
        t = int(rng.integers(4))
        x[t, list(planted)] += shift
        items.append({"id": f"s{i}", "group": f"g{i // per_group}", "answer": "ABCD"[t], "answer_index": t,
                      "learned": {"x": x}})
    return items


PLANTED = (0, 7, 14, 20, 26)  # brightness, contrast, sharpness, edges, histogram: five groups


@pytest.fixture(scope="module")
def planted_results():
    return decided(L.audit_learned("crop", "crop", crop_items(500, 1, shift=0.55, planted=PLANTED)))


# ------------------------------------------------------------------------------------------------ solvers
def test_planted_multi_feature_shortcut_is_found(planted_results):
    (r,) = planted_results
    assert r.kind == "learned" and r.task == "crop" and r.chance == 0.25 and r.n == 500
    assert r.status == "FAIL" and r.accuracy > 0.45, (r.accuracy, r.detail)
    # no single planted group is as good as all of them together; each is named with its accuracy
    assert set(r.groups) == set(L.CROP_FEATURES.values())
    assert max(r.groups.values()) < r.accuracy - 0.05
    best = next(iter(r.groups))
    assert best in {L.CROP_FEATURES[list(L.CROP_FEATURES)[i]] for i in PLANTED}
    assert f"most useful group (fitted alone, same folds): {best}" in r.detail
    assert "5-fold source-grouped" in r.detail


def test_noise_stays_at_chance():
    (r,) = decided(L.audit_learned("crop", "crop", crop_items(600, 3)))
    assert r.status == "ok" and abs(r.accuracy - 0.25) < 0.04, r.accuracy


def test_learned_solvers_are_deterministic(planted_results):
    (again,) = decided(L.audit_learned("crop", "crop", crop_items(500, 1, shift=0.55, planted=PLANTED)))
    (r,) = planted_results
    assert (again.score, again.groups, again.detail) == (r.score, r.groups, r.detail)


def test_folds_split_sources_deterministically():
    groups = [f"src{i % 37}" for i in range(500)]
    folds = L.fold_ids(groups)
    assert np.array_equal(folds, L.fold_ids(list(groups)))
    by_group: dict[str, set] = {}
    for g, f in zip(groups, folds):
        by_group.setdefault(g, set()).add(int(f))
    assert all(len(v) == 1 for v in by_group.values())  # every source in one fold
    sizes = np.bincount(folds, minlength=5)
    assert len(sizes) == 5 and sizes.max() - sizes.min() <= 14  # balanced up to one source


def test_shuffle_assignment_finds_a_planted_position_cue_and_never_predicts_identity():
    rng = np.random.default_rng(3)
    k, f = 4, len(L.SHUFFLE_FEATURES)
    items = []
    for i in range(160):
        while True:
            perm = rng.permutation(k)
            if not np.array_equal(perm, np.arange(k)):
                break
        labels = [int(d) for d in np.argsort(perm)]  # labels[pos] = displayed patch of that position
        x = rng.normal(size=(k, f))
        x[:, 0] += 2.0 * perm  # displayed patch d comes from position perm[d]: its brightness says where
        items.append({"id": f"s{i}", "group": f"g{i // 3}", "answer": "-".join(map(str, labels)), "labels": labels,
                      "learned": {"x": x}})
    exact, per_pos = decided(L.audit_learned("shuffle", "2x2", items))
    assert exact.target == "answer" and per_pos.target == "per position"
    assert exact.chance == pytest.approx(1 / 23) and per_pos.chance == pytest.approx(6 / 23)
    # found, and reported as reference: a patch's content saying where it belongs is the scene's layout
    assert exact.status == per_pos.status == "reference" and not exact.counted and exact.accuracy > 0.6
    assert next(iter(exact.groups)) == "brightness"
    cost = np.full((4, 4), 5.0)
    np.fill_diagonal(cost, 0.0)  # the identity is by far the cheapest: the best non-identity swaps two
    p = L.best_permutation(cost, exclude_identity=True)
    assert not np.array_equal(p, np.arange(4)) and sorted(p) == [0, 1, 2, 3] and (p != np.arange(4)).sum() == 2
    assert np.array_equal(L.best_permutation(cost, exclude_identity=False), np.arange(4))


def test_flip_features_are_flip_invariant():
    """The flip solver sees only statistics that flipping a patch leaves unchanged (up to the pairing of forward
    differences in the edge measures), so it cannot see the flip itself."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:120, 0:160]
    base = (60 + 80 * (yy / 120) ** 2 + 40 * np.sin(xx / 9.0))[..., None] * np.array([1.0, 0.8, 0.6])
    small = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    # 240 x 320, over MAX_SAMPLES, and every row and column doubled (an upscaled source): a flip of an even-sized
    # patch moves that pattern by one pixel, which statistics on every other row would see
    patch = small.repeat(2, axis=0).repeat(2, axis=1)
    assert patch.shape[0] * patch.shape[1] > L.MAX_SAMPLES
    mask = np.zeros((240, 320), bool)
    mask[4:-4, 4:-4] = True
    mask[100:140, 130:190] = False  # a centred label
    batch = np.stack([patch, patch[::-1], patch[:, ::-1]])
    stats = L.image_stats(batch, mask, asymmetry=True)
    for name in L.FLIP_FEATURES:
        if name in ("bytes", "block_h", "block_v"):  # of the stored JPEG, encoded after the flip
            continue
        v = stats[name]
        tol = 0.05 * abs(v[0]) + 0.01 if name.startswith("edge") else 1e-3 * abs(v[0]) + 1e-4
        assert np.all(np.abs(v - v[0]) <= tol), (name, v)
    assert stats["asym_tb"][0] > 5  # ... and the patch IS asymmetric: only the flip's direction is invisible


# ------------------------------------------------------------------------------------------------ decision
def _result(kind: str, accuracy: float, n: int, chance: float = 0.25, counted: bool = True) -> A.SolverResult:
    return A.SolverResult("crop", "crop", f"{kind} {accuracy}", "answer", n, accuracy * n, chance, counted, kind=kind)


def test_decision_rule_three_points_for_learned_five_for_rules_and_the_lower_bound():
    rs = decided([
        _result("learned", 0.285, 20000),  # +3.5 points, tight interval -> FAIL
        _result("learned", 0.279, 20000),  # +2.9 points -> ok however significant
        _result("learned", 0.30, 60),  # +5 points on 60 samples: the lower bound is below chance
        _result("rule", 0.29, 20000),  # +4 points is fine for a rule (5-point threshold)
        _result("rule", 0.31, 20000),  # +6 points is not
        _result("learned", 0.40, 10),  # below min_n
        _result("learned", 0.60, 500, counted=False),  # reference
    ])
    assert [r.status for r in rs] == ["FAIL", "ok", "not significant", "ok", "FAIL", "few samples", "reference"]
    report = A.AuditReport(results=rs)
    assert report.result == "FAIL" and {r.kind for r in report.failures} == {"learned", "rule"}
    best = report.best()["crop/crop"]  # the largest counted margin (the reference solver is not counted)
    assert best["kind"] == "learned" and best["solver"] == "learned 0.4"


def test_sighted_status_solvable_or_fail():
    report = A.AuditReport(results=[_result("sighted", 0.95, 200), _result("sighted", 0.85, 200),
                                    _result("sighted", 0.5, 5)], sighted_min=0.9)
    A._decide(report)
    assert [r.status for r in report.results] == ["solvable", "FAIL", "few samples"]
    assert report.result == "FAIL" and len(report.failures) == 1
    assert report.best() == {}  # sighted solvers are never the "best shortcut"
    assert "sighted solver FAILS below 90%" in report.decision


# ------------------------------------------------------------------------------------------------ on builds
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("learned_mix")
    build(load_config(None, SMALL_DEMO, out=str(out), num_samples=160, val_fraction=0.1, seed=2), progress=False)
    return out


def test_every_task_gets_a_learned_solver_and_kinds_are_visible(mixed, capsys):
    capsys.readouterr()
    rc = main(["audit", str(mixed), "--json", "--no-sighted"])
    rep = json.loads(capsys.readouterr().out)
    assert rc in (0, 1)
    learned = [s for s in rep["solvers"] if s["kind"] == "learned"]
    assert {s["task"] for s in learned} == {"crop", "flip", "shuffle", "depth", "position"} & {
        k.split("/")[0] for k, n in rep["samples"].items() if n >= L.MIN_SAMPLES}
    assert all(s["feature_groups"] and "most useful group" in s["detail"] for s in learned)
    assert all(not s["counted"] for s in learned if s["task"] == "depth")
    assert rep["kinds"]["rule"] > 0 and rep["kinds"]["learned"] == len(learned)
    assert all(b["kind"] in ("rule", "learned") for b in rep["best"].values())
    capsys.readouterr()
    main(["audit", str(mixed), "--no-sighted"])
    text = capsys.readouterr().out
    assert "[learned]" in text and "[rule]" in text and "most useful feature group" in text
    capsys.readouterr()
    main(["audit", str(mixed), "--json", "--no-learned", "--no-sighted"])
    assert {s["kind"] for s in json.loads(capsys.readouterr().out)["solvers"]} == {"rule"}


def test_without_sklearn_one_line_and_the_rules_still_run(mixed, capsys, monkeypatch):
    for name in ("sklearn", "sklearn.ensemble"):
        monkeypatch.setitem(sys.modules, name, None)  # import sklearn.ensemble -> ImportError
    assert not L.available()
    capsys.readouterr()
    rc = main(["audit", str(mixed), "--no-sighted"])
    out = capsys.readouterr().out
    assert out.count(L.MISSING) == 1 and L.MISSING == "learned solvers skipped: pip install 'spatial-ssrl[audit]'"
    assert "[learned]" not in out and "[rule]" in out and "audit: " in out
    report = A.run_audit(mixed, sighted=False)
    assert report.notes == [L.MISSING] and {r.kind for r in report.results} == {"rule"}
    assert rc == (1 if report.result == "FAIL" else 0)  # a missing extra is not a failure


def test_paper_crop_construction_fails_the_learned_audit(tmp_path):
    """The paper's crop (fixed scales, rotations of the crop itself): four options alone give the answer away."""
    from ssrl_plugin.tasks.crop import CropConfig

    known = {f.name for f in dataclasses.fields(CropConfig)}
    overrides = [f"task.crop.{k}={v}" for k, v in PAPER_CROP.items() if k in known]
    assert "task.crop.scale_mode=paper" in overrides
    cfg = load_config(None, ["demo.num_rgb=24", "demo.num_rgbd=4", "demo.width=320", "demo.height=240", *overrides],
                      out=str(tmp_path), num_samples=240, tasks=["crop"], seed=5)
    build(cfg, progress=False)
    report = A.run_audit(tmp_path, sighted=False)
    (r,) = [r for r in report.results if r.kind == "learned"]
    assert r.n >= 200 and r.status == "FAIL" and r.accuracy > 0.6, (r.accuracy, r.detail)
    lo = A.wilson(r.score, r.n, 1.96)[0]
    assert lo > r.chance + 0.2
    assert "most useful group" in r.detail and math.isfinite(r.groups[next(iter(r.groups))])
