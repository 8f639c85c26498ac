"""``ssrl stats`` and ``ssrl audit``: sane numbers on a demo build; a deliberately biased dataset fails the audit
and names the solver that found the bias."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_builders import audit as A
from data_builders.pipeline import build
from data_builders.stats import qwen_image_tokens, smart_resize
from data_builders.cli import main
from ssrl_plugin.config import load_config

TASKS = {"shuffle", "flip", "crop", "depth", "position"}
SMALL_DEMO = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stats_ds")
    build(load_config(None, SMALL_DEMO, out=str(out), num_samples=120, val_fraction=0.1), progress=False)
    return out


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(list(argv))
    return rc, json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------------ stats
def test_smart_resize_matches_qwen():
    # values worked out in example_configs/easyr1_grpo_inpainting.yaml (and transformers' smart_resize)
    assert qwen_image_tokens(1600, 1200) == 2451
    assert qwen_image_tokens(600, 600) == 441
    assert smart_resize(240, 320) == (448, 616)  # small images are scaled up to min_pixels
    assert qwen_image_tokens(320, 240) == 16 * 22
    h, w = smart_resize(4000, 3000)
    assert h * w <= 4_194_304 and h % 28 == 0 and w % 28 == 0
    assert qwen_image_tokens(1600, 1200, max_pixels=501_760) <= 672


def test_stats_json_is_sane(dataset, tmp_path, capsys):
    manifest = json.loads((dataset / "manifest.json").read_text())
    rc, rep = run_json(capsys, "stats", str(dataset), "--json", "--plots", str(tmp_path / "plots"))
    assert rc == 0
    assert rep["rows"] == 120 == sum(rep["counts"]["total"].values())
    assert rep["counts"]["total"] == manifest["counts"]["total"]
    for split in ("train", "val"):
        assert rep["counts"][split] == manifest["counts"][split]
    slots = rep["answer_slots"]
    n = manifest["counts"]["total"]
    assert sum(slots["crop"]["letter"].values()) == n["crop"] and set(slots["crop"]["letter"]) <= set("ABCD")
    assert sum(slots["position"]["letter"].values()) == n["position"]
    assert sum(slots["flip"]["patch"].values()) == sum(slots["flip"]["direction"].values()) == n["flip"]
    assert set(slots["flip"]["direction"]) <= {"0", "1"}
    assert sum(slots["depth"]["order"].values()) == n["depth"]
    for variant, d in slots["shuffle"].items():
        count = sum(manifest["counts"][s]["shuffle"].get(variant, 0) for s in ("train", "val") if "shuffle" in manifest["counts"][s])
        assert all(sum(c.values()) == count for c in d["label_per_position"])
    src = rep["source_images"]
    assert src["sizes"] == {"320x240": src["unique_sources"]} and src["unique_sources"] <= 16
    tok = rep["tokens"]
    assert tok["min_pixels"] == 262144 and tok["max_pixels"] == 4194304
    crop = tok["per_task_variant"]["crop/crop"]
    assert crop["images_per_prompt"] == 5 and crop["image"]["min"] > 4 * 354  # 5 images, each at least min_pixels
    for d in tok["per_task_variant"].values():
        assert d["total"]["min"] > d["image"]["min"] and d["text"]["min"] > 20
    assert tok["over_max_prompt_length"] == 0
    assert rep["skipped_inputs"]["total"] == 0
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert "counts.png" in plots and "tokens_hist.png" in plots and any(p.startswith("answers_crop") for p in plots)
    # the text form runs too, and a smaller max_pixels gives fewer tokens
    capsys.readouterr()
    assert main(["stats", str(dataset), "--max-pixels", "300000"]) == 0
    assert "estimated Qwen2.5-VL prompt tokens" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ audit
def test_wilson_and_choice_rules():
    lo, hi = A.wilson(50, 100, 1.96)
    assert 0.40 < lo < 0.41 and 0.59 < hi < 0.60
    assert A.choose([3, 1, 2, 5], "rank0") == [1] and A.choose([3, 1, 2, 5], "rank3") == [3]
    assert A.choose([1, 1, 2, 9], "odd") == [3] and A.choose([1, 1, 1, 1], "rank0") == [0, 1, 2, 3]
    assert A.set_score([0, 1], 1) == 0.5 and A.set_score([2], 1) == 0.0


@pytest.fixture(scope="module")
def audit_report(dataset):
    return A.run_audit(dataset)


def test_audit_runs_every_solver_family(audit_report):
    groups = {k.split("/")[0] for k in audit_report.groups}
    assert groups == TASKS
    names = {(r.task, r.solver) for r in audit_report.results}
    for task, solver in [("crop", "most frequent letter"), ("crop", "option sharpness"), ("crop", "option bytes"),
                         ("crop", "option size"), ("crop", "option aspect"), ("crop", "option brightness"),
                         ("flip", "patch contrast"), ("flip", "most frequent direction"),
                         ("shuffle", "identity order"), ("shuffle", "most frequent label per position"),
                         ("depth", "most frequent order"), ("position", "most frequent answer word")]:
        assert (task, solver) in names, (task, solver)
    for r in audit_report.results:
        assert 0 <= r.accuracy <= 1 and r.ci95[0] <= r.accuracy <= r.ci95[1] and r.n >= 2
    # option size and aspect are equal for all four candidates: exactly chance (ties are broken at random)
    for r in audit_report.results:
        if r.solver in ("option size", "option aspect"):
            assert r.accuracy == pytest.approx(0.25)


def test_audit_passes_on_our_data(audit_report):
    """No shortcut solver beats chance on any task: shuffle, flip, crop, depth and position."""
    assert {r.task for r in audit_report.results} == TASKS
    failures = [f"{r.task}/{r.variant}: {r.solver} {r.accuracy:.0%} vs {r.chance:.0%}" for r in audit_report.failures]
    assert failures == []


def test_audit_crop_has_no_shortcut(audit_report):
    """Crop in particular: no rotated twins among the options (rotations turn windows of their own), and no option
    statistic (size, aspect, sharpness, brightness, contrast, bytes) or answer prior finds the true crop."""
    crop = [r for r in audit_report.results if r.task == "crop"]
    assert {r.solver for r in crop} >= {"most frequent letter", "option sharpness", "option bytes", "option contrast",
                                        "option brightness", "option with the most 90-degree rotated twins among the options"}
    assert [r.solver for r in crop if r.status == "FAIL"] == []
    twins = next(r for r in crop if "rotated twins" in r.solver)
    assert twins.accuracy == pytest.approx(0.25)  # no option has a twin: every option ties, a quarter each


def _rewrite_crop(src: Path, dst: Path, change) -> None:
    """Copy the crop rows of ``src`` into a new dataset folder, passing each row through ``change``."""
    dst.mkdir()
    manifest = json.loads((src / "manifest.json").read_text())
    manifest.pop("audit", None)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    (dst / "easyr1").mkdir()
    for path in sorted((src / "easyr1").glob("*.parquet")):
        table = pq.read_table(path)
        rows = [change(r) for r in table.to_pylist() if r["task"] == "crop"]
        pq.write_table(table.schema.empty_table().from_pylist(rows, schema=table.schema), dst / "easyr1" / path.name)


def _reencode(data: bytes, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_biased_true_option_fails_the_audit(dataset, tmp_path, capsys):
    """The true candidate stored at a much lower JPEG quality than the distractors: 'option bytes' finds it."""
    def degrade(row):
        k = 1 + "ABCD".index(json.loads(row["answer"])["answer"])
        row["images"][k] = {"bytes": _reencode(row["images"][k]["bytes"], 15)}
        return row

    biased = tmp_path / "biased"
    _rewrite_crop(dataset, biased, degrade)
    rc, rep = run_json(capsys, "audit", str(biased), "--json", "--write-manifest")
    assert rc == 1 and rep["result"] == "FAIL"
    failed = {f["solver"]: f for f in rep["failures"]}
    assert "option bytes" in failed and failed["option bytes"]["accuracy"] > 0.9
    assert failed["option bytes"]["n"] >= 20
    assert json.loads((biased / "manifest.json").read_text())["audit"]["result"] == "FAIL"
    # the gallery shows the recorded audit
    html = tmp_path / "g.html"
    assert main(["preview", str(biased), "--out", str(html), "--per-task", "2", "--no-sources"]) == 0
    text = html.read_text()
    assert 'id="audit-result">FAIL' in text and "option bytes" in text


def test_biased_answer_letter_fails_the_audit(dataset, tmp_path, capsys):
    """Every answer moved to A (images, options and ground truth rewritten consistently)."""
    def all_a(row):
        gt = json.loads(row["answer"])
        k = "ABCD".index(gt["answer"])
        order = [k] + [i for i in range(4) if i != k]
        row["images"] = [row["images"][0]] + [row["images"][1 + i] for i in order]
        meta = json.loads(row["metadata"])
        meta["options"] = [{**meta["options"][i], "letter": "ABCD"[j]} for j, i in enumerate(order)]
        meta["answer_index"] = 0
        row["metadata"] = json.dumps(meta)
        row["answer"] = json.dumps({**gt, "answer": "A"})
        return row

    biased = tmp_path / "letter"
    _rewrite_crop(dataset, biased, all_a)
    rc, rep = run_json(capsys, "audit", str(biased), "--json")
    assert rc == 1
    failed = {f["solver"]: f for f in rep["failures"]}
    assert failed["most frequent letter"]["accuracy"] == 1.0
    capsys.readouterr()
    assert main(["audit", str(biased)]) == 1
    out = capsys.readouterr().out
    assert "FAIL crop/crop: 'most frequent letter'" in out and "audit: FAIL" in out
    assert "a real shortcut fails again" in out  # how to tell a leak from the 5 % false alarms


def test_audit_user_errors(tmp_path, capsys):
    assert main(["audit", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{}")
    assert main(["stats", str(tmp_path)]) == 2
    assert "parquet" in capsys.readouterr().err


def test_rule_decision_is_calibrated_under_random_answers():
    """Random answers (no shortcut can exist): the two cross-fitted halves of a rule are correlated, so the plain
    binomial bound over the summed score fails far more often than its 5 % family-wise rate; the decision bound
    (half the count) stays within it."""
    import random
    from statistics import NormalDist

    from data_builders import audit as A
    from data_builders.task_hooks import cross_view as H

    rng = random.Random(7)
    feats = [{k: [rng.random() for _ in range(4)] for k in (*H.POSITION, *H.REGION)} for _ in range(300)]
    z = NormalDist().inv_cdf(1 - 0.05 / 12)
    plain = halved = 0
    for _ in range(60):
        items = []
        for i, f in enumerate(feats):
            a = rng.randrange(4)
            items.append({"id": str(i), "group": str(i // 8), "answer": "ABCD"[a], "answer_index": a, "feats": f})
        rs = H.audit(items, "cross_view")
        plain += any(r.score / r.n - r.chance > 0.05 and A.wilson(r.score, r.n, z)[0] > r.chance for r in rs)
        halved += any(r.score / r.n - r.chance > 0.05 and A.decision_bound(r, z) > r.chance for r in rs)
    assert halved <= 3 < plain, (halved, plain)
