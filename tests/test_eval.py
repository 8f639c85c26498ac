"""``ssrl eval`` without a model: a fake backend (right on shuffle/flip/crop, wrong on depth/position) drives the
prompts, scoring, JSONL, per-task statistics, ``--compare`` (exact McNemar) and the HTML report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from data_builders import build, evaluate
from data_builders.cli import main
from data_builders.score import ground_truths
from ssrl_plugin.config import load_config
from tests.answer_support import wrong_answer

DEMO = ["demo.num_rgb=12", "demo.num_rgbd=12", "demo.width=192", "demo.height=128"]
RIGHT = {"shuffle", "flip", "crop"}




def fake_backend(right=RIGHT):
    def generate(batch):
        out = []
        for p in batch:
            assert p.images and "\\boxed{}" in p.text  # images decoded from the rows, the instruction added
            answer = json.loads(p.ground_truth)["answer"]
            out.append(f"<think>looking</think> \\boxed{{{answer if p.task in right else wrong_answer(answer)}}}")
        return out
    return generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "data"
    build(load_config(None, DEMO, out=str(out), num_samples=40, val_fraction=0.25), progress=False)
    return out


@pytest.fixture()
def fake(monkeypatch):
    calls = []

    def make(name, model, max_new_tokens):
        calls.append((name, model, max_new_tokens))
        return fake_backend()
    monkeypatch.setattr(evaluate, "make_backend", make)
    return calls


def run(dataset, tmp_path, name="run.jsonl", extra=()):
    out = tmp_path / name
    assert main(["eval", "--data", str(dataset), "--model", str(tmp_path), "--out", str(out), "--batch-size", "3",
                 *extra]) == 0
    return out, [json.loads(line) for line in out.read_text().splitlines()]


def test_jsonl_lines_rescore_identically_through_both_rewards(dataset, tmp_path, fake, capsys):
    from reward_fns import easyr1, verl

    out, recs = run(dataset, tmp_path)
    truths = ground_truths(dataset, "val")
    assert [r["id"] for r in recs] == list(truths)  # every val sample, in dataset order
    assert fake == [("transformers", str(tmp_path), 256)]
    for r in recs:
        assert set(r) == {"id", "task", "variant", "level", "response", "score"} and r["level"] == 0
        v = verl.compute_score(f"spatial_ssrl/{r['task']}", r["response"], truths[r["id"]], {"task": r["task"]})
        assert (v["score"], v["acc"], v["format"]) == (r["score"]["overall"], r["score"]["accuracy"], r["score"]["format"])
        assert r["score"]["accuracy"] == (1.0 if r["task"] in RIGHT else 0.0) and r["score"]["format"] == 1.0
    e = easyr1.compute_score([{"response": r["response"], "ground_truth": truths[r["id"]]} for r in recs])
    assert [{k: d[k] for k in r["score"]} for d, r in zip(e, recs)] == [r["score"] for r in recs]  # + accuracy_<task>
    text = capsys.readouterr().out
    assert "shuffle" in text and "wrote" in text


def test_per_task_accuracy_and_wilson_intervals(dataset, tmp_path, fake):
    _, recs = run(dataset, tmp_path)
    s = evaluate.summarise(recs)
    tasks = {r["task"] for r in recs}
    for t in tasks:
        n = sum(r["task"] == t for r in recs)
        k = n if t in RIGHT else 0
        assert s[t]["n"] == n and s[t]["accuracy"] == k / n
        # Wilson by hand
        z, p = evaluate.Z95, k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert s[t]["accuracy_ci"] == pytest.approx([max(0, min(p, centre - half)), min(1, max(p, centre + half))])
        assert s[t]["format"] == 1.0
    assert s["all"]["n"] == len(recs)
    assert any("/" in key for key in s)  # per-variant rows


def test_output_is_deterministic(dataset, tmp_path, fake):
    a, _ = run(dataset, tmp_path, "a.jsonl")
    b, _ = run(dataset, tmp_path, "b.jsonl")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("b,c,p", [(0, 0, 1.0), (0, 5, 2 / 32), (1, 5, 2 * 7 / 64), (3, 3, 1.0), (0, 10, 2 / 1024),
                                   (2, 8, 2 * (1 + 10 + 45) / 1024)])
def test_mcnemar_exact_by_hand(b, c, p):
    assert evaluate.mcnemar_exact(b, c) == pytest.approx(p)
    assert evaluate.mcnemar_exact(c, b) == pytest.approx(p)


def test_compare_and_html(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluate, "make_backend", lambda *a: fake_backend(right={"shuffle"}))
    a, ra = run(dataset, tmp_path, "a.jsonl")
    monkeypatch.setattr(evaluate, "make_backend", lambda *a: fake_backend(right={"shuffle", "flip", "crop"}))
    b, rb = run(dataset, tmp_path, "b.jsonl")
    capsys.readouterr()
    html = tmp_path / "report.html"
    assert main(["eval", "--compare", str(a), str(b), "--data", str(dataset), "--html", str(html)]) == 0
    text = capsys.readouterr().out
    result = evaluate.compare(ra, rb)
    for t in ("flip", "crop"):
        n = sum(r["task"] == t for r in ra)
        assert result[t]["b_only"] == n and result[t]["a_only"] == 0 and result[t]["difference"] == 1.0
        assert result[t]["p_value"] == pytest.approx(min(1.0, 2 / 2 ** n))
    assert result["shuffle"]["p_value"] == 1.0 and result["depth"]["difference"] == 0.0
    assert "McNemar" in text and "flip" in text
    page = html.read_text()
    assert page.count("<svg") == 2 and "data:image/jpeg;base64," in page and "Worst failures" in page
    # a subset shares ids: paired on the shared ones only
    (tmp_path / "half.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rb[:4]))
    assert evaluate.compare(ra, evaluate.read_jsonl(tmp_path / "half.jsonl"))["all"]["n"] == 4


def test_html_of_a_run(dataset, tmp_path, fake):
    html = tmp_path / "r.html"
    run(dataset, tmp_path, extra=["--html", str(html), "--limit", "5"])
    page = html.read_text()
    assert "<svg" in page and page.count('class="fail"') >= 1 and "data:image/jpeg" in page


@pytest.mark.parametrize("case,needle", [
    ("no_data", "no such folder"),
    ("no_model", "--model"),
    ("no_jsonl", "no such file"),
    ("bad_line", "not a line of an `ssrl eval` run"),
    ("no_shared", "share no sample id"),
    ("vllm", "--backend vllm needs vllm: pip install vllm"),
])
def test_errors_are_one_line(dataset, tmp_path, capsys, case, needle):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "x", "task": "flip", "score": {"accuracy": 1.0, "format": 1.0}}) + "\n")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "y", "task": "flip", "score": {"accuracy": 1.0, "format": 1.0}}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + "{not json\n")
    argv = {
        "no_data": ["eval", "--data", str(tmp_path / "nope"), "--model", str(tmp_path)],
        "no_model": ["eval", "--data", str(dataset), "--model", str(tmp_path / "nomodel")],
        "no_jsonl": ["eval", "--compare", str(good), str(tmp_path / "missing.jsonl")],
        "bad_line": ["eval", "--compare", str(good), str(bad)],
        "no_shared": ["eval", "--compare", str(good), str(other)],
        "vllm": ["eval", "--data", str(dataset), "--model", str(tmp_path), "--backend", "vllm"],
    }[case]
    if case == "vllm":
        try:  # vllm is not installed in the default environment
            import vllm  # noqa: F401
            pytest.skip("vllm is installed")
        except ImportError:
            pass
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssrl: error: ") and err.count("\n") == 1 and needle in err, err
    if case == "bad_line":
        assert "bad.jsonl:2" in err
