"""verl 0.9.1's own RLHFDataset reads our verl parquet (train and val) with an offline Qwen2.5-VL processor.

Each sample: the ``<image>`` placeholders become image entries, one per stored image and in order; the prompt
tokenised the way verl's rollout does it (chat template, qwen_vl_utils resize, processor) carries one vision span
per image with the right number of image tokens and fits ``max_prompt_length`` -- checked twice, by hand and by
verl's own overlong-prompt filter, which drops every sample it cannot process or that is too long.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from int_support import MAX_PROMPT_LENGTH, PAPER_PIXELS, data_config, parquet_rows, prompt_inputs, shards

@pytest.mark.parametrize("pixels", ["default", "paper"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_rlhf_dataset_reads_our_parquet(built, tokenizer, processor, tmp_path, split, pixels, record_property):
    mm_kwargs = PAPER_PIXELS if pixels == "paper" else {}
    files = shards(built, "verl", split)
    rows = parquet_rows(files)
    cfg = data_config(tmp_path, mm_processor_kwargs=mm_kwargs)
    ds = RLHFDataset(files, tokenizer, cfg, processor=processor)
    # verl's filter tokenises every prompt with its images; errors and overlong prompts are dropped
    assert len(ds) == len(rows) > 0

    vs, ve, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>"))
    lengths = defaultdict(list)
    for i, row in enumerate(rows):
        item = ds[i]
        assert item["data_source"] == row["data_source"] == f"spatial_ssrl/{row['extra_info']['task']}"
        assert item["reward_model"] == row["reward_model"]
        assert json.loads(item["reward_model"]["ground_truth"])["task"] == row["extra_info"]["task"]
        assert item["extra_info"]["split"] == split and item["index"] == row["extra_info"]["index"]
        assert "images" not in item and torch.equal(item["dummy_tensor"], torch.tensor([0], dtype=torch.uint8))

        # <image> placeholders -> image entries: one per stored image, in order, text in between kept
        content = row["prompt"][0]["content"]
        messages = item["raw_prompt"]
        assert len(messages) == 1 and messages[0]["role"] == "user"
        entries = messages[0]["content"]
        image_entries = [e for e in entries if e["type"] == "image"]
        assert content.count("<image>") == len(row["images"]) == len(image_entries) >= 1
        assert [e["bytes"] for e in image_entries] == [im["bytes"] for im in row["images"]]
        assert "".join(e.get("text", "<image>") for e in entries) == content
        for e in image_entries:
            assert e["image"].size == Image.open(io.BytesIO(e["bytes"])).size

        images, text, inputs = prompt_inputs(ds, processor, messages, mm_kwargs)
        ids = inputs["input_ids"][0].tolist()
        grid = inputs["image_grid_thw"]
        assert len(images) == len(grid) == len(row["images"])
        assert ids.count(vs) == ids.count(ve) == len(row["images"])
        assert ids.count(pad) == int((grid.prod(-1) // processor.image_processor.merge_size**2).sum())
        # every vision span holds exactly the tokens of its own image, in order
        starts = [k for k, t in enumerate(ids) if t == vs]
        ends = [k for k, t in enumerate(ids) if t == ve]
        spans = [ids[a + 1:b] for a, b in zip(starts, ends)]
        per_image = (grid.prod(-1) // processor.image_processor.merge_size**2).tolist()
        assert [len(sp) for sp in spans] == per_image and all(set(sp) == {pad} for sp in spans)
        assert len(ids) <= MAX_PROMPT_LENGTH
        lengths[row["extra_info"]["task"]].append(len(ids))

    summary = {t: [min(v), max(v)] for t, v in sorted(lengths.items())}
    record_property("prompt_tokens", summary)
    print(f"\nprompt tokens ({split}, {pixels} pixels, demo 320x240): {summary}")
    assert set(lengths) == {"shuffle", "flip", "crop", "depth", "position"}


def test_overlong_filter_sees_the_image_tokens(built, tokenizer, processor, tmp_path):
    """With the paper's pixel range the 5-image crop prompts are the longest; a limit below them makes verl's
    filter drop exactly those (the length check is not vacuous)."""
    files = shards(built, "verl", "train")
    rows = parquet_rows(files)
    full = RLHFDataset(files, tokenizer, data_config(tmp_path, mm_processor_kwargs=PAPER_PIXELS), processor=processor)
    lengths = []
    for i in range(len(full)):
        _, _, inputs = prompt_inputs(full, processor, full[i]["raw_prompt"], PAPER_PIXELS)
        lengths.append(len(inputs["input_ids"][0]))
    crop = [n for n, r in zip(lengths, rows) if r["extra_info"]["task"] == "crop"]
    other = [n for n, r in zip(lengths, rows) if r["extra_info"]["task"] != "crop"]
    assert min(crop) > max(other), "crop prompts (5 images) should be the longest"
    limit = max(other)
    small = RLHFDataset(files, tokenizer, data_config(tmp_path, max_prompt_length=limit, mm_processor_kwargs=PAPER_PIXELS),
                        processor=processor)
    assert len(small) == len(other)
    assert {small[i]["data_source"] for i in range(len(small))} == {r["data_source"] for r in rows} - {"spatial_ssrl/crop"}


def test_verl_collate_keeps_ground_truth_and_extra_info(built, tokenizer, processor, tmp_path):
    files = shards(built, "verl", "train")
    rows = parquet_rows(files)
    ds = RLHFDataset(files, tokenizer, data_config(tmp_path, filter_overlong_prompts=False), processor=processor)
    batch = next(iter(DataLoader(ds, batch_size=8, shuffle=False, collate_fn=collate_fn)))
    assert batch["dummy_tensor"].shape == (8, 1)
    for key in ("data_source", "reward_model", "extra_info", "raw_prompt", "index"):
        assert isinstance(batch[key], np.ndarray) and batch[key].dtype == object and batch[key].shape == (8,)
    for k in range(8):
        gt = batch["reward_model"][k]["ground_truth"]
        assert isinstance(gt, str) and gt == rows[k]["reward_model"]["ground_truth"]
        assert batch["extra_info"][k]["metadata"] == rows[k]["extra_info"]["metadata"]
