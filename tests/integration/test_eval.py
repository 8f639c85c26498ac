"""``ssrl eval --backend transformers`` end to end on CPU: a tiny random Qwen2.5-VL (built from a config, saved with
the offline tokenizer/processor of int_support, no download) answers the val split of a tiny demo build; the JSONL
has one line per sample and its scores re-score identically through both rewards."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from transformers import processing_utils
from transformers.video_processing_utils import BaseVideoProcessor

from data_builders.cli import main
from data_builders.score import ground_truths
from int_support import tiny_qwen25vl


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from data_builders import build
    from ssrl_plugin.config import load_config

    out = tmp_path_factory.mktemp("evaldata")
    overrides = ["demo.num_rgb=4", "demo.num_rgbd=4", "demo.width=160", "demo.height=128"]
    mix = {"shuffle": 1, "flip": 1, "crop": 1, "depth": 1, "position": 1}
    build(load_config(None, overrides, out=str(out), num_samples=24, val_fraction=0.25, seed=0, mix=mix),
          progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tokenizer, processor, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen25vl")
    tiny_qwen25vl(tokenizer).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_eval_transformers_backend_end_to_end(tiny_data, model_dir, tmp_path, capsys):
    from reward_fns import easyr1, verl

    out = tmp_path / "run.jsonl"
    argv = ["eval", "--data", str(tiny_data), "--model", str(model_dir), "--backend", "transformers",
            "--out", str(out), "--batch-size", "4", "--max-new-tokens", "8", "--html", str(tmp_path / "r.html")]
    # without torchvision, AutoProcessor needs the same stand-in for BaseVideoProcessor as int_support.make_processor
    with mock.patch.object(processing_utils.transformers_module, "BaseVideoProcessor", BaseVideoProcessor):
        assert main(argv) == 0, capsys.readouterr().err
    truths = ground_truths(tiny_data, "val")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert 4 <= len(recs) <= 10 and [r["id"] for r in recs] == list(truths)
    assert {r["task"] for r in recs} == {"shuffle", "flip", "crop", "depth", "position"}
    for r in recs:
        assert isinstance(r["response"], str)
        v = verl.compute_score(f"spatial_ssrl/{r['task']}", r["response"], truths[r["id"]], {"task": r["task"]})
        assert (v["score"], v["acc"], v["format"]) == (r["score"]["overall"], r["score"]["accuracy"], r["score"]["format"])
    e = easyr1.compute_score([{"response": r["response"], "ground_truth": truths[r["id"]]} for r in recs])
    assert [{k: d[k] for k in r["score"]} for d, r in zip(e, recs)] == [r["score"] for r in recs]
    assert "all" in capsys.readouterr().out and (tmp_path / "r.html").read_text().count("<svg") == 1
