"""A tiny random Qwen2.5-VL (2 text layers, 2 vision blocks, built from a config, no download) runs on our data:
verl's RLHFDataset item -> the offline processor -> forward with every image of the prompt (5 for crop),
backward into the vision tower, a few generated tokens -> decoded -> our verl reward scores them.

The model is untrained: the point is that pixel values, grids and image tokens of every task line up in the real
Qwen2.5-VL code (a placeholder/feature mismatch raises there), and that whatever comes out is scored.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from verl.utils.dataset.rl_dataset import RLHFDataset

from int_support import shards
from int_support import data_config, prompt_inputs, tiny_qwen25vl


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_qwen25vl(tokenizer)


def test_tiny_qwen_runs_every_task(built, tokenizer, processor, model, tmp_path):
    from reward_fns import verl as reward

    files = shards(built, "verl", "val")
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    ds = RLHFDataset(files, tokenizer, data_config(tmp_path, filter_overlong_prompts=False), processor=processor)
    first = {}
    for i, row in enumerate(rows):
        first.setdefault(row["extra_info"]["task"], i)
    assert set(first) == {"shuffle", "flip", "crop", "depth", "position"}
    for task, i in sorted(first.items()):
        item = ds[i]
        _, _, inputs = prompt_inputs(ds, processor, item["raw_prompt"], {})
        inputs = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
        assert len(inputs["image_grid_thw"]) == len(rows[i]["images"])

        model.train()
        model.zero_grad()
        out = model(**inputs, labels=inputs["input_ids"])
        assert torch.isfinite(out.loss)
        out.loss.backward()
        vision_grad = sum(p.grad.abs().sum().item() for p in model.model.visual.parameters() if p.grad is not None)
        assert vision_grad > 0, f"{task}: no gradient reached the vision tower"

        model.eval()
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        new = generated[0, inputs["input_ids"].shape[1]:]
        assert 0 < len(new) <= 6
        text = tokenizer.decode(new, skip_special_tokens=True)
        score = reward.compute_score(item["data_source"], text, item["reward_model"]["ground_truth"], item["extra_info"])
        assert set(score) == {"score", "acc", "format", "hedged", "length_penalty", "repetition_penalty"}
        assert score["score"] == 0.0  # six random tokens are neither formatted nor right
