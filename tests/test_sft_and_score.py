"""Cold-start SFT export (LLaMA-Factory layout) and offline scoring of saved responses."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from data_builders.pipeline import build
from data_builders.score import score_file
from ssrl_plugin import scoring
from data_builders.cli import main
from ssrl_plugin.config import load_config

SMALL_DEMO = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240"]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    config = load_config(None, [*SMALL_DEMO, "output.formats=[easyr1,sft]"], out=str(out), num_samples=40, val_fraction=0.1)
    return out, build(config, progress=False).manifest


def test_sft_layout_matches_dataset_info(both):
    out, manifest = both
    info = json.loads((out / "sft" / "dataset_info.json").read_text())
    assert set(info) == {"spatial_ssrl_sft", "spatial_ssrl_sft_val"}
    total = 0
    for name, entry in info.items():
        assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
        items = json.loads((out / "sft" / entry["file_name"]).read_text())
        total += len(items)
        for item in items:
            user, assistant = item["messages"]
            assert user["role"] == "user" and assistant["role"] == "assistant"
            assert user["content"].count("<image>") == len(item["images"])
            for rel in item["images"]:
                assert (out / "sft" / rel).is_file() and not rel.startswith("/")
    assert total == 40


def test_sft_reasoning_ends_in_the_right_answer_and_passes_the_reward(both):
    out, _ = both
    truths = {r["id"]: r["answer"] for p in (out / "easyr1").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    items = json.loads((out / "sft" / "train.json").read_text())
    assert {i["task"] for i in items} == {"shuffle", "flip", "crop", "depth", "position"}
    for item in items:
        reply = item["messages"][1]["content"]
        assert re.fullmatch(r"<think>\n.+\n</think>\n\\boxed\{[^{}]+\}", reply, re.S)
        assert scoring.score(reply, truths[item["id"]]) == {**scoring.ZEROS, "overall": 1.0, "accuracy": 1.0, "format": 1.0}


def test_sft_alone_defaults_to_the_paper_size(tmp_path, monkeypatch):
    import data_builders.cli as cli

    seen = {}

    def fake_build(config, **kwargs):
        seen["n"] = config.num_samples
        raise SystemExit(0)

    monkeypatch.setattr("data_builders.pipeline.build", fake_build)
    with pytest.raises(SystemExit):
        cli.main(["build", "--out", str(tmp_path / "o"), "--format", "sft"])
    assert seen["n"] == 3600


def test_score_reports_per_task_accuracy(both, tmp_path, capsys):
    out, manifest = both
    rows = [r for p in sorted((out / "easyr1").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    lines = []
    for i, r in enumerate(rows):
        answer = json.loads(r["answer"])["answer"]
        good = i % 2 == 0
        lines.append({"id": r["id"], "response": f"<think>ok</think>\\boxed{{{answer if good else 'nonsense'}}}"})
    lines.append({"id": "not-a-sample", "response": "x"})
    path = tmp_path / "responses.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines[1:]) + "\n")  # one sample left without a response
    report = score_file(out, path)
    assert report.missing == 1 and len(report.unknown_ids) == 1
    assert report.overall["n"] == len(rows) - 1
    expected_right = sum(1 for i in range(1, len(rows)) if i % 2 == 0)
    assert report.overall["accuracy"] == pytest.approx(expected_right / (len(rows) - 1))
    assert report.overall["format"] == 1.0
    assert set(report.per_task) == set(manifest["counts"]["total"])
    assert main(["score", "--data", str(out), "--responses", str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["overall"]["n"] == len(rows) - 1


def test_score_rejects_malformed_lines_with_the_line_number(both, tmp_path, capsys):
    out, _ = both
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "response": "x"}\nnot json\n')
    assert main(["score", "--data", str(out), "--responses", str(path)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_paths_are_absolute_and_exist(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["paths", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    for key in ("SSRL_REWARD_EASYR1", "SSRL_REWARD_VERL", "SSRL_FORMAT_PROMPT"):
        assert paths[key].startswith("/")
        assert __import__("os").path.exists(paths[key])
