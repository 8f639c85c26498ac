"""EasyR1 by contract (it is not on PyPI): our EasyR1 parquet and reward go through the steps EasyR1's code
takes, as documented in shared/reference/trainers.md and its sources (verl/utils/dataset.py RLHFDataset and
collate_fn, verl/workers/reward/function.py), with the libraries it uses (datasets, PIL, jinja2, a Qwen2.5-VL
processor, numpy/torch collation).

* ``load_dataset("parquet", data_dir=DIR/easyr1, split=...)`` (the ``DIR@split`` form of the example YAML);
* ``problem`` (with the jinja format prompt) split on ``<image>``: one image entry per stored image, in order
  (the same pictures as the verl rows of the same sample); images open with PIL from ``{"bytes"}``, resized by
  min/max pixels, and the processor's prompt carries one vision span each and fits ``max_prompt_length``;
* the ``answer`` column becomes ``ground_truth`` and survives collation (numpy object array, torch's
  default_collate) as the same string;
* the reward file loads by path as EasyR1 loads it, with its ``REWARD_TYPE``; the batch function returns
  ``overall`` and one key set for every sample, all finite floats, and the reward lands at the last token;
* the example YAMLs hold only keys of EasyR1's config schema (transcribed in tests/test_example_configs.py).
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
from collections import defaultdict
from functools import partial

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from datasets import load_dataset
from jinja2 import Template
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import default_collate

import reward_fns
from int_support import ROOT, shards

CONFIGS = ROOT / "example_configs"
YAMLS = [CONFIGS / "easyr1_grpo.yaml", CONFIGS / "easyr1_grpo_inpainting.yaml"]
FORMAT_PROMPT = ROOT / "ssrl_plugin" / "templates" / "format_prompt.jinja"


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # EasyR1 registers the reward module the same way
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def yaml_cfg():
    return OmegaConf.to_container(OmegaConf.load(CONFIGS / "easyr1_grpo.yaml"), resolve=False)


def load_split(built, split):
    """EasyR1's RLHFDataset: a folder -> load_dataset(<ext of its first file>, data_dir=..., split=...)."""
    folder = built / "easyr1"
    names = sorted(p.name for p in folder.iterdir())
    assert names and all(n.endswith(".parquet") for n in names), names  # EasyR1 reads the first file's extension
    return load_dataset("parquet", data_dir=str(folder), split=split)


def build_messages(problem: str, format_prompt: str | None):
    """EasyR1's _build_messages for an image row: jinja format prompt, then split on <image>."""
    if format_prompt:
        problem = Template(format_prompt.strip()).render(content=problem)
    content = []
    for i, part in enumerate(problem.split("<image>")):
        if i != 0:
            content.append({"type": "image"})
        if part:
            content.append({"type": "text", "text": part})
    return [{"role": "user", "content": content}]


def process_image(image, min_pixels, max_pixels):
    """EasyR1's process_image for a {"bytes"} entry."""
    image = Image.open(io.BytesIO(image["bytes"]))
    image.load()
    if max_pixels is not None and image.width * image.height > max_pixels:
        f = math.sqrt(max_pixels / (image.width * image.height))
        image = image.resize((int(image.width * f), int(image.height * f)))
    if min_pixels is not None and image.width * image.height < min_pixels:
        f = math.sqrt(min_pixels / (image.width * image.height))
        image = image.resize((int(image.width * f), int(image.height * f)))
    return image.convert("RGB") if image.mode != "RGB" else image


def easyr1_collate(features):
    """EasyR1's collate_fn: tensors stacked, everything else np.array(values, dtype=object)."""
    tensors, others = defaultdict(list), defaultdict(list)
    for feature in features:
        for k, v in feature.items():
            (tensors if isinstance(v, torch.Tensor) else others)[k].append(v)
    return {**{k: torch.stack(v) for k, v in tensors.items()}, **{k: np.array(v, dtype=object) for k, v in others.items()}}


@pytest.mark.parametrize("split", ["train", "validation"])
def test_dataset_contract(built, processor, yaml_cfg, split, record_property):
    data = yaml_cfg["data"]
    ds = load_split(built, split)
    verl_rows = {r["extra_info"]["id"]: r for f in shards(built, "verl", "train" if split == "train" else "val")
                 for r in pq.read_table(f).to_pylist()}
    assert len(ds) == len(verl_rows) > 0
    assert {data["prompt_key"], data["answer_key"], data["image_key"]} <= set(ds.column_names)
    fmt = FORMAT_PROMPT.read_text(encoding="utf-8")
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    vs = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    lengths = defaultdict(list)
    for example in ds:
        problem, images = example[data["prompt_key"]], example[data["image_key"]]
        messages = build_messages(problem, fmt)
        entries = messages[0]["content"]
        assert sum(e["type"] == "image" for e in entries) == problem.count("<image>") == len(images) >= 1
        assert "\\boxed{}" in entries[-1]["text"]  # the format prompt was rendered after the question
        twin = verl_rows[example["id"]]  # the same sample in the verl layout: same pictures, same order
        assert [im["bytes"] for im in images] == [im["bytes"] for im in twin["images"]]
        assert twin["prompt"][0]["content"].startswith(problem)
        for im in images:
            assert set(im) == {"bytes"} and Image.open(io.BytesIO(im["bytes"])).format == "JPEG"
        processed = [process_image(im, data["min_pixels"], data["max_pixels"]) for im in images]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(processed, [prompt], add_special_tokens=False, return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        assert ids.count(vs) == len(images) == len(inputs["image_grid_thw"])
        assert ids.count(pad) == int((inputs["image_grid_thw"].prod(-1) // 4).sum())
        assert len(ids) <= data["max_prompt_length"]
        lengths[example["task"]].append(len(ids))
        gt = json.loads(example[data["answer_key"]])
        assert gt["task"] == example["task"] and isinstance(gt["answer"], str)
    summary = {t: [min(v), max(v)] for t, v in sorted(lengths.items())}
    record_property("prompt_tokens", summary)
    print(f"\nEasyR1 prompt tokens ({split}, YAML pixels {data['min_pixels']}..{data['max_pixels']}): {summary}")


def test_ground_truth_survives_collation(built, yaml_cfg):
    data = yaml_cfg["data"]
    ds = load_split(built, "train")
    features = []
    for example in ds.select(range(8)):
        example = dict(example)
        example.pop(data["prompt_key"])
        example.pop(data["image_key"])
        example["input_ids"] = torch.zeros(4, dtype=torch.long)
        example["ground_truth"] = example.pop(data["answer_key"])
        features.append(example)
    truths = [f["ground_truth"] for f in features]
    batch = easyr1_collate(features)
    gt = batch["ground_truth"]
    assert gt.dtype == object and gt.shape == (8,) and all(type(g) is str for g in gt) and list(gt) == truths
    assert batch["input_ids"].shape == (8, 4)
    assert default_collate(features)["ground_truth"] == truths  # torch's default collation keeps strings too
    for key in ("task", "variant", "id", "metadata"):
        assert batch[key].shape == (8,) and all(type(v) is str for v in batch[key])


def _responses(truth: str):
    answer = json.loads(truth)["answer"]
    return [f"<think>look</think>\\boxed{{{answer}}}", "\\boxed{Z}", "no answer", "", "<think>" * 3, "\\boxed{" * 40]


@pytest.mark.parametrize("spec_suffix", ["", ":compute_score", ":main"])
def test_reward_contract(built, tokenizer, yaml_cfg, spec_suffix):
    reward_cfg = yaml_cfg["worker"]["reward"]
    # EasyR1: "path[:function]" (no function: main); the module loaded by path, REWARD_TYPE picks the manager
    path, _, name = (reward_fns.EASYR1_FILE + spec_suffix).partition(":")
    module = _module(path, "custom_reward_fn")
    assert module.REWARD_TYPE == "batch" and isinstance(module.REWARD_NAME, str)
    fn = partial(getattr(module, name or "main"), **reward_cfg["reward_function_kwargs"])

    ds = load_split(built, "validation")
    truths = list(easyr1_collate([{"ground_truth": t} for t in ds["answer"]])["ground_truth"])
    inputs, lengths = [], []
    for truth in truths:
        for text in _responses(truth):
            ids = tokenizer.encode(text, add_special_tokens=False)
            assert tokenizer.decode(ids, skip_special_tokens=True) == text
            inputs.append({"response": text, "response_length": len(ids), "ground_truth": truth})
            lengths.append(max(len(ids), 1))
    scores = fn(inputs)
    assert isinstance(scores, list) and len(scores) == len(inputs)
    keys = set(scores[0])
    assert "overall" in keys and {"accuracy", "format"} <= keys
    assert all(set(s) == keys for s in scores), "EasyR1 zips metric lists with samples: one key set for all"
    assert all(isinstance(v, float) and math.isfinite(v) for s in scores for v in s.values())
    # BatchFunctionRewardManager: reward at the last valid token; metrics averaged per key
    width = max(lengths) + 3
    reward = torch.zeros(len(scores), width)
    metrics = defaultdict(list)
    for i, s in enumerate(scores):
        reward[i, lengths[i] - 1] = s["overall"]
        for k, v in s.items():
            metrics[k].append(v)
    assert {k: float(np.mean(v)) for k, v in metrics.items()}["overall"] == pytest.approx(float(reward.sum()) / len(scores))
    correct = scores[:: len(_responses(truths[0]))]
    assert all(s["accuracy"] == 1.0 and s["overall"] == pytest.approx(1.0) for s in correct)
    # per-task accuracy keys average to the task's accuracy over the batch (see reward_fns/easyr1.py)
    tasks = [json.loads(t)["task"] for t in truths for _ in _responses(t)]
    for task in set(tasks):
        acc = [s["accuracy"] for s, t in zip(scores, tasks) if t == task]
        assert float(np.mean(metrics[f"accuracy_{task}"])) == pytest.approx(sum(acc) / len(acc))


def test_sequential_contract(built):
    module = _module(reward_fns.EASYR1_FILE, "custom_reward_fn_seq")
    truth = load_split(built, "train")["answer"][0]
    score = module.compute_score_sequential({"response": "\\boxed{A}", "response_length": 3, "ground_truth": truth})
    assert isinstance(score, dict) and "overall" in score and all(math.isfinite(v) for v in score.values())


def _example_configs_module():
    return _module(ROOT / "tests" / "test_example_configs.py", "ssrl_test_example_configs")


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_example_yaml_keys_are_easyr1_keys(path, built):
    schema_module = _example_configs_module()
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert schema_module._unknown_keys(raw, schema_module.EASYR1_SCHEMA) == []
    assert raw["data"]["prompt_key"] == "problem" and raw["data"]["answer_key"] == "answer"
    most_images = max(len(r["images"]) for f in shards(built, "easyr1", "train") for r in pq.read_table(f).to_pylist())
    assert raw["worker"]["rollout"]["limit_images"] >= most_images == 5
    assert raw["worker"]["reward"]["reward_function"] == "${oc.env:SSRL_REWARD_EASYR1,null}"
