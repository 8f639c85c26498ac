"""The video form of the sequence tasks (``output.videos=true``: ``easyr1_video/``, ``verl_video/``) inside the
trainers' own data code, with the real ``qwen_vl_utils`` 0.0.14 and an offline Qwen2.5-VL processor.

* verl 0.9.1: ``RLHFDataset`` turns every ``<video>`` into a video entry holding our frame list, in order; its
  overlong-prompt filter (which runs the processor on the videos) keeps every row; the processor's prompt carries
  one vision span per clip with exactly the video tokens of that clip's grid.
* EasyR1 (by contract, its ``RLHFDataset`` video branch, see tests/test_easyr1_contract.py for the image one): the
  prompt split on ``<video>``, each clip through ``qwen_vl_utils.fetch_video`` as a frame list (EasyR1's
  ``process_video``), the processor on ``videos=``: one span per clip with its grid's tokens.
* Both layouts hold the same samples as the image layouts, with the same answers, ids and metadata.

``qwen_vl_utils`` imports torchvision, which cannot be installed beside the torch 2.13.0 CPU wheel; for frame lists
it only calls ``torchvision.transforms.functional.resize`` (bicubic, antialiased). A stand-in module provides that
one function (Pillow, per frame) for the duration of these tests; everything else is the real package. The
processor's video part is ``int_support.QwenVideoGrid`` (Qwen2-VL's patch grid; its real class needs torchvision).
"""

from __future__ import annotations

import base64
import enum
import importlib
import io
import json
import sys
import types
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from int_support import MAX_PROMPT_LENGTH, data_config, parquet_rows, shards

SEQUENCE_TASKS = ("temporal_order", "camera_motion")  # the tasks with a video form


def _torchvision_stand_in() -> types.ModuleType:
    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.28.0"
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")

    class InterpolationMode(enum.Enum):
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    def resize(video, size, interpolation=InterpolationMode.BILINEAR, antialias=True):
        # PIL per frame, not torch.nn.functional.interpolate: datasets' filter forks, and torch's OpenMP pool does
        # not survive a fork (the child hangs). fetch_video's frames usually arrive at the target size already.
        h, w = (int(x) for x in size)
        if tuple(video.shape[-2:]) == (h, w):
            return video.float()
        method = Image.BICUBIC if interpolation is InterpolationMode.BICUBIC else Image.BILINEAR
        frames = [Image.fromarray(f.permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy()).resize((w, h), method)
                  for f in video]
        return torch.stack([torch.from_numpy(np.asarray(f).copy()).permute(2, 0, 1) for f in frames]).float()

    functional.resize = resize
    transforms.functional = functional
    transforms.InterpolationMode = InterpolationMode
    tv.transforms = transforms
    tv.io = types.ModuleType("torchvision.io")
    return tv


@pytest.fixture(scope="module")
def real_qwen_vl_utils():
    """The installed qwen_vl_utils (not the image-only stub), importable for this module's tests."""
    saved = {k: v for k, v in sys.modules.items() if k == "qwen_vl_utils" or k.startswith(("qwen_vl_utils.", "torchvision"))}
    stub_paths = [p for p in sys.path if p.endswith("stubs")]
    for k in saved:
        del sys.modules[k]
    for p in stub_paths:
        sys.path.remove(p)
    tv = _torchvision_stand_in()
    # fetch_video stacks frames with torch inside the forked workers of verl's overlong-prompt filter; a torch
    # thread pool the parent started does not survive the fork (the worker hangs), so the parent keeps one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                        "torchvision.transforms.functional": tv.transforms.functional, "torchvision.io": tv.io})
    try:
        module = importlib.import_module("qwen_vl_utils")
        assert not getattr(module, "__ssrl_stub__", False), "the real qwen_vl_utils is not installed"
        yield module
    finally:
        torch.set_num_threads(threads)
        for k in [k for k in sys.modules if k == "qwen_vl_utils" or k.startswith(("qwen_vl_utils.", "torchvision"))]:
            del sys.modules[k]
        sys.modules.update(saved)
        sys.path[:0] = stub_paths


@pytest.fixture(scope="module")
def built_video(tmp_path_factory):
    from data_builders import build
    from ssrl_plugin.config import load_config

    out = tmp_path_factory.mktemp("built_video")
    config = load_config(None, [f"tasks=[{','.join(SEQUENCE_TASKS)}]", "output.videos=true"], out=str(out),
                         num_samples=12, val_fraction=0.25, seed=0,
                         demo={"num_sequences": 6, "width": 320, "height": 240})
    result = build(config, progress=False)
    assert result.total == 12
    return out


def _frames(clip: list[str]) -> list[Image.Image]:
    out = []
    for uri in clip:
        head, _, data = uri.partition("base64,")
        assert head in ("data:image/jpeg;", "data:image/png;"), head
        out.append(Image.open(io.BytesIO(base64.b64decode(data))))
    return out


def test_video_layouts_hold_the_image_layouts_samples(built_video):
    for fmt, video_fmt in (("easyr1", "easyr1_video"), ("verl", "verl_video")):
        for split in ("train", "val"):
            image_rows = {(r.get("id") or r["extra_info"]["id"]): r for r in parquet_rows(shards(built_video, fmt, split))}
            video_rows = parquet_rows(shards(built_video, video_fmt, split))
            assert video_rows and "images" not in video_rows[0]
            for row in video_rows:
                rid = row.get("id") or row["extra_info"]["id"]
                twin = image_rows[rid]
                if fmt == "easyr1":
                    assert row["answer"] == twin["answer"] and row["metadata"] == twin["metadata"]
                    prompt = row["problem"]
                else:
                    assert row["reward_model"] == twin["reward_model"] and row["extra_info"] == twin["extra_info"]
                    prompt = row["prompt"][0]["content"]
                assert "<image>" not in prompt and prompt.count("<video>") == len(row["videos"]) >= 1
                assert all(len(_frames(clip)) >= 2 for clip in row["videos"])
            tasks = Counter(json.loads(r["metadata"] if fmt == "easyr1" else r["extra_info"]["metadata"])["seed"]["split"]
                            for r in video_rows)
            assert set(tasks) == {split}


def test_verl_rlhf_dataset_reads_our_video_layout(built_video, tokenizer, processor, tmp_path, real_qwen_vl_utils):
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    vs, ve, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>"))
    merge = processor.video_processor.merge_size
    for split in ("train", "val"):
        files = shards(built_video, "verl_video", split)
        rows = parquet_rows(files)
        ds = RLHFDataset(files, tokenizer, data_config(tmp_path, video_key="videos"), processor=processor)
        assert len(ds) == len(rows) > 0  # verl's filter ran the processor on every clip and dropped none
        for i, row in enumerate(rows):
            item = ds[i]
            entries = item["raw_prompt"][0]["content"]
            videos = [e for e in entries if e["type"] == "video"]
            assert [e["video"] for e in videos] == row["videos"]
            images, clips, _ = RLHFDataset._process_multi_modal_info(item["raw_prompt"], ds.image_patch_size, ds.config)
            assert not images and len(clips) == len(row["videos"])
            text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
            inputs = build_multimodal_processor_inputs(processor, text=[text], videos=clips)  # as verl's rollout
            ids = inputs["input_ids"][0].tolist()
            grid = inputs["video_grid_thw"]
            assert len(grid) == len(row["videos"]) and ids.count(vs) == ids.count(ve) == len(row["videos"])
            per_clip = (grid.prod(-1) // merge**2).tolist()
            starts = [k for k, t in enumerate(ids) if t == vs]
            ends = [k for k, t in enumerate(ids) if t == ve]
            assert [b - a - 1 for a, b in zip(starts, ends)] == per_clip and ids.count(pad) == sum(per_clip)
            # temporal patches of 2: a clip of n frames gives ceil(n / 2) temporal steps
            assert grid[:, 0].tolist() == [-(-len(clip) // 2) for clip in row["videos"]]
            assert len(ids) <= MAX_PROMPT_LENGTH


def test_easyr1_video_branch_by_contract(built_video, processor, real_qwen_vl_utils):
    """EasyR1's RLHFDataset for a row without ``images``: ``<video>`` splits the prompt, each clip goes through
    ``fetch_video`` (its ``process_video``) with video_fps, the processor runs on ``videos=``."""
    ds = __import__("datasets").load_dataset("parquet", data_dir=str(built_video / "easyr1_video"), split="train")
    assert len(ds) > 0 and "images" not in ds.column_names
    merge = processor.video_processor.merge_size
    for example in ds:
        content = []
        for i, part in enumerate(example["problem"].split("<video>")):
            if i:
                content.append({"type": "video"})
            if part:
                content.append({"type": "text", "text": part})
        messages = [{"role": "user", "content": content}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        clips = [real_qwen_vl_utils.fetch_video({"video": v, "min_pixels": 3136, "max_pixels": 200704, "fps": 2.0},
                                                return_video_sample_fps=True)[0] for v in example["videos"]]
        assert all(c.shape[0] % 2 == 0 and c.shape[0] >= len(v) for c, v in zip(clips, example["videos"]))
        inputs = processor(videos=clips, text=[prompt], add_special_tokens=False, return_tensors="pt",
                           do_sample_frames=False)
        grid = inputs["video_grid_thw"]
        ids = inputs["input_ids"][0].tolist()
        pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
        assert len(grid) == len(example["videos"]) and ids.count(pad) == int((grid.prod(-1) // merge**2).sum())
        gt = json.loads(example["answer"])
        assert gt["task"] in SEQUENCE_TASKS and gt["answer"]
