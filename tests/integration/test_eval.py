"""``ssrl eval --backend transformers`` end to end on CPU: a tiny random Qwen2.5-VL and a tiny random Qwen3-VL (built
from configs, saved with the offline tokenizers/processors of int_support, no download) answer the val split of a tiny
demo build; the JSONL has one line per sample and its scores re-score identically through both rewards.

The saved processors' video part is int_support's stand-in class, which ``AutoProcessor`` finds only while
``int_support.offline_auto_processor`` registers it (transformers registers no video processor without torchvision).
"""

from __future__ import annotations

import io
import json
from unittest import mock

import pytest
from PIL import Image

from data_builders.cli import main
from data_builders.evaluate import load_prompts
from data_builders.score import ground_truths
from data_builders.stats import QWEN3_PROCESSOR_MAX_PIXELS, QWEN3_PROCESSOR_MIN_PIXELS, smart_resize
from int_support import make_qwen3_tokenizer, make_qwen3vl_processor, offline_auto_processor, tiny_qwen25vl, tiny_qwen3vl

TASKS = {"shuffle", "flip", "crop", "depth", "position"}


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


def _rescore_identically(recs, truths):
    from reward_fns import easyr1, verl

    for r in recs:
        assert isinstance(r["response"], str)
        v = verl.compute_score(f"spatial_ssrl/{r['task']}", r["response"], truths[r["id"]], {"task": r["task"]})
        assert (v["score"], v["acc"], v["format"]) == (r["score"]["overall"], r["score"]["accuracy"], r["score"]["format"])
    e = easyr1.compute_score([{"response": r["response"], "ground_truth": truths[r["id"]]} for r in recs])
    assert [{k: d[k] for k in r["score"]} for d, r in zip(e, recs)] == [r["score"] for r in recs]


def test_eval_transformers_backend_end_to_end(tiny_data, model_dir, tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    argv = ["eval", "--data", str(tiny_data), "--model", str(model_dir), "--backend", "transformers",
            "--out", str(out), "--batch-size", "4", "--max-new-tokens", "8", "--html", str(tmp_path / "r.html")]
    with offline_auto_processor():
        assert main(argv) == 0, capsys.readouterr().err
    truths = ground_truths(tiny_data, "val")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert 4 <= len(recs) <= 10 and [r["id"] for r in recs] == list(truths)
    assert {r["task"] for r in recs} == TASKS
    _rescore_identically(recs, truths)
    assert "all" in capsys.readouterr().out and (tmp_path / "r.html").read_text().count("<svg") == 1


@pytest.fixture(scope="module")
def qwen3_model_dir(tmp_path_factory):
    tokenizer = make_qwen3_tokenizer()
    path = tmp_path_factory.mktemp("tiny_qwen3vl")
    tiny_qwen3vl(tokenizer).save_pretrained(path)
    make_qwen3vl_processor(tokenizer).save_pretrained(path)
    return path


def test_eval_transformers_backend_qwen3vl(tiny_data, qwen3_model_dir, tmp_path, capsys):
    """The same with Qwen3-VL: AutoModelForImageTextToText loads its class, the saved processor comes back as a
    Qwen3-VL one (16 px patches), and generate gets the processor's mm_token_type_ids (without them it quietly gives
    image tokens text positions instead of M-RoPE ones). Two runs: the JSONL is byte-identical (greedy decoding)."""
    from transformers import Qwen3VLForConditionalGeneration

    seen = []
    real_generate = Qwen3VLForConditionalGeneration.generate

    def generate(self, *args, **kwargs):
        seen.append((type(self).__name__, kwargs))
        return real_generate(self, *args, **kwargs)

    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}.jsonl"
        argv = ["eval", "--data", str(tiny_data), "--model", str(qwen3_model_dir), "--backend", "transformers",
                "--out", str(out), "--batch-size", "3", "--max-new-tokens", "8"]
        with offline_auto_processor(), mock.patch.object(Qwen3VLForConditionalGeneration, "generate", generate):
            assert main(argv) == 0, capsys.readouterr().err
        runs.append(out.read_bytes())
    assert runs[0] == runs[1]
    truths = ground_truths(tiny_data, "val")
    recs = [json.loads(line) for line in runs[0].decode().splitlines()]
    assert [r["id"] for r in recs] == list(truths) and {r["task"] for r in recs} == TASKS
    _rescore_identically(recs, truths)

    assert len(seen) == 2 * -(-len(recs) // 3) and {name for name, _ in seen} == {"Qwen3VLForConditionalGeneration"}
    # the reloaded processor resizes as Qwen3-VL's: 32-px cells of 16-px patches in its own 65,536.. pixel range
    sizes = [Image.open(io.BytesIO(b)).size for p in load_prompts(tiny_data, "val") for b in p.images]
    grids = [g for _, kwargs in seen[:len(seen) // 2] for g in kwargs["image_grid_thw"].tolist()]
    assert len(grids) == len(sizes)
    for (w, h), (t, gh, gw) in zip(sizes, grids):
        assert (t, gh * 16, gw * 16) == (1, *smart_resize(h, w, QWEN3_PROCESSOR_MIN_PIXELS, QWEN3_PROCESSOR_MAX_PIXELS,
                                                          factor=32))
    for _, kwargs in seen:
        types = kwargs["mm_token_type_ids"]
        assert types.shape == kwargs["input_ids"].shape
        # image positions marked exactly where the processor put image pads; each span = grid_h * grid_w / 4
        pad = kwargs["input_ids"] == qwen3_image_token_id(qwen3_model_dir)
        assert ((types == 1) == pad).all()
        assert int(pad.sum()) == int((kwargs["image_grid_thw"].prod(-1) // 4).sum())


def test_eval_without_torchvision_says_so_in_one_line(tiny_data, qwen3_model_dir, tmp_path, capsys):
    """Without the stand-in registered, transformers finds no video processor (no torchvision here): one line
    naming the model folder and the fix, no traceback, no JSONL."""
    out = tmp_path / "run.jsonl"
    code = main(["eval", "--data", str(tiny_data), "--model", str(qwen3_model_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and not out.exists()
    assert len(err.splitlines()) == 1 and str(qwen3_model_dir) in err and "pip install torchvision" in err, err


def qwen3_image_token_id(model_dir) -> int:
    return json.loads((model_dir / "config.json").read_text())["image_token_id"]
