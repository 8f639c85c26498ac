"""Qwen3-VL token counts of ``ssrl stats --model-family qwen3-vl`` against transformers' own image processor, and
our verl parquet through verl 0.9.1's ``RLHFDataset`` with an offline ``Qwen3VLProcessor``.

transformers has no Qwen3-VL image processor of its own: ``qwen3_vl`` maps to ``Qwen2VLImageProcessor``, built
here offline from the Qwen3-VL checkpoints' preprocessor_config.json (patch_size 16, merge_size 2, 65,536..16,777,216
pixels); no download. Tokens per image = grid_h * grid_w / merge_size**2.

Inside verl, an image passes two resizes: ``qwen_vl_utils.fetch_image`` (sides to multiples of 2 x
``image_patch_size``, the real package here, see int_support.real_qwen_vl_utils_images), then the processor's
(multiples of 32 within ``mm_processor_kwargs``' pixel range). ``RLHFDataset`` takes ``image_patch_size`` from its
data config and only without one from ``processor.image_processor.patch_size``; verl's own data YAML declares 14,
while the rollout (``AgentLoopWorker``) always takes the processor's. For Qwen3-VL the config must say 16 (or nothing),
or the overlong filter measures other images than the rollout feeds the model
(``test_dataset_patch_size_follows_the_config_before_the_processor``).
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from unittest import mock

import pytest
from PIL import Image

from data_builders.stats import (MODEL_FAMILIES, QWEN3_DEFAULT_MAX_PIXELS, QWEN3_DEFAULT_MIN_PIXELS,
                                 QWEN3_PROCESSOR_MAX_PIXELS, QWEN3_PROCESSOR_MIN_PIXELS, qwen_image_tokens, smart_resize)
from int_support import (MAX_PROMPT_LENGTH, QWEN3_PREPROCESSOR, data_config, make_qwen3_tokenizer,
                         make_qwen3vl_processor, parquet_rows, prompt_inputs, qwen3_image_processor,
                         real_qwen_vl_utils_images, shards)

SIZES = [(640, 480), (600, 600), (320, 240), (1600, 1200), (2048, 2048), (560, 1169), (1169, 560), (100, 2000)]
RANGES = [(262_144, 655_360), (262_144, 4_194_304), (65_536, 16_777_216)]
QWEN3_CONFIG_PIXELS = {"min_pixels": QWEN3_DEFAULT_MIN_PIXELS, "max_pixels": QWEN3_DEFAULT_MAX_PIXELS}  # verl_grpo_qwen3vl.overrides
# qwen_vl_utils 0.0.14's own image range: 4..16384 merged cells of (2 x patch)^2 pixels
QVU_MIN_CELLS, QVU_MAX_CELLS = 4, 16384


def test_transformers_maps_qwen3_vl_to_the_qwen2_vl_processor():
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig

    names = IMAGE_PROCESSOR_MAPPING_NAMES["qwen3_vl"]
    names = names.values() if isinstance(names, dict) else names
    assert any(str(n).startswith("Qwen2VLImageProcessor") for n in names if n)
    vision = Qwen3VLVisionConfig()
    fam = MODEL_FAMILIES["qwen3-vl"]
    assert (vision.patch_size, vision.spatial_merge_size) == (fam.patch_size, fam.merge_size) == (16, 2)


@pytest.mark.parametrize("lo,hi", RANGES)
def test_qwen3_tokens_match_the_processor(lo, hi):
    proc = qwen3_image_processor()
    for w, h in SIZES:
        out = proc(images=[Image.new("RGB", (w, h), (90, 120, 150))], min_pixels=lo, max_pixels=hi, return_tensors="np")
        _, gh, gw = [int(v) for v in out["image_grid_thw"][0]]
        assert gh * gw // 4 == qwen_image_tokens(w, h, lo, hi, family="qwen3-vl"), (w, h, lo, hi)


def test_qwen25_tokens_match_the_processor():
    proc = type(qwen3_image_processor())()  # Qwen2-VL class defaults: patch_size 14, merge_size 2
    for w, h in SIZES:
        out = proc(images=[Image.new("RGB", (w, h))], min_pixels=262_144, max_pixels=4_194_304, return_tensors="np")
        _, gh, gw = [int(v) for v in out["image_grid_thw"][0]]
        assert gh * gw // 4 == qwen_image_tokens(w, h), (w, h)


# ============================================================================================ verl's RLHFDataset
@pytest.fixture(scope="module")
def qwen3_tokenizer():
    return make_qwen3_tokenizer()


@pytest.fixture(scope="module")
def qwen3_processor(qwen3_tokenizer):
    return make_qwen3vl_processor(qwen3_tokenizer)


@pytest.fixture(scope="module")
def qwen_vl_utils():
    with real_qwen_vl_utils_images() as module:
        yield module


def test_offline_processor_is_a_qwen3_vl_one(qwen3_processor, qwen3_tokenizer):
    from transformers import Qwen3VLProcessor

    assert type(qwen3_processor) is Qwen3VLProcessor
    ip = qwen3_processor.image_processor
    assert (ip.patch_size, ip.merge_size, ip.temporal_patch_size) == (16, 2, 2)
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (QWEN3_PROCESSOR_MIN_PIXELS, QWEN3_PROCESSOR_MAX_PIXELS)
    assert list(ip.image_mean) == QWEN3_PREPROCESSOR["image_mean"]
    ids = {t: qwen3_tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")}
    assert (qwen3_processor.image_token_id, qwen3_processor.vision_start_token_id,
            qwen3_processor.vision_end_token_id) == (ids["<|image_pad|>"], ids["<|vision_start|>"], ids["<|vision_end|>"])
    text = qwen3_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}], add_generation_prompt=True,
        tokenize=False)
    # Qwen3-VL's template: no default system turn (Qwen2.5-VL's adds "You are a helpful assistant.")
    assert text == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>q<|im_end|>\n<|im_start|>assistant\n"


def _recording(module, log):
    """process_vision_info wrapped to log the image_patch_size of every call to a file: datasets runs verl's
    overlong filter in a forked worker, whose memory the test does not see."""
    real = module.process_vision_info

    def spy(*args, **kwargs):
        with open(log, "a") as fh:
            fh.write(f"{kwargs.get('image_patch_size')}\n")
        return real(*args, **kwargs)

    return lambda: log.read_text().split() if log.exists() else [], mock.patch.object(module, "process_vision_info", spy)


@pytest.mark.parametrize("pixels", ["processor", "qwen3-config"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_rlhf_dataset_reads_our_parquet_with_qwen3vl(built, qwen3_tokenizer, qwen3_processor, qwen_vl_utils, tmp_path,
                                                     split, pixels, record_property):
    """``<image>`` -> image entries in order; one vision span per image holding grid_h * grid_w / 4 pad tokens,
    the count ``ssrl stats`` gives for the size qwen_vl_utils delivered (32-px multiples: patch 16 from the
    processor); verl's overlong filter (same code path, same patch size) keeps every row."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    mm_kwargs = QWEN3_CONFIG_PIXELS if pixels == "qwen3-config" else {}
    lo = mm_kwargs.get("min_pixels", QWEN3_PROCESSOR_MIN_PIXELS)
    hi = mm_kwargs.get("max_pixels", QWEN3_PROCESSOR_MAX_PIXELS)
    files = shards(built, "verl", split)
    rows = parquet_rows(files)
    calls, spy = _recording(qwen_vl_utils, tmp_path / "calls.log")
    with spy:
        ds = RLHFDataset(files, qwen3_tokenizer, data_config(tmp_path, mm_processor_kwargs=mm_kwargs,
                                                             image_patch_size=None), processor=qwen3_processor)
        assert ds.image_patch_size == 16  # no data.image_patch_size: the processor's
        assert len(ds) == len(rows) > 0
        assert calls() == ["16"] * len(rows)  # the filter ran qwen_vl_utils once a row, with patch 16

        tok = qwen3_tokenizer
        vs, ve, pad = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>"))
        counts, lengths = Counter(), defaultdict(list)
        for i, row in enumerate(rows):
            item = ds[i]
            assert item["data_source"] == row["data_source"] == f"spatial_ssrl/{row['extra_info']['task']}"
            assert json.loads(item["reward_model"]["ground_truth"])["task"] == row["extra_info"]["task"]
            content = row["prompt"][0]["content"]
            entries = item["raw_prompt"][0]["content"]
            image_entries = [e for e in entries if e["type"] == "image"]
            assert content.count("<image>") == len(row["images"]) == len(image_entries) >= 1
            assert [e["bytes"] for e in image_entries] == [im["bytes"] for im in row["images"]]
            assert "".join(e.get("text", "<image>") for e in entries) == content

            images, text, inputs = prompt_inputs(ds, qwen3_processor, item["raw_prompt"], mm_kwargs)
            assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
            ids = inputs["input_ids"][0].tolist()
            grid = inputs["image_grid_thw"].tolist()
            assert len(images) == len(grid) == len(row["images"])
            starts = [k for k, t in enumerate(ids) if t == vs]
            ends = [k for k, t in enumerate(ids) if t == ve]
            spans = [ids[a + 1:b] for a, b in zip(starts, ends)]
            assert len(starts) == len(ends) == len(row["images"]) and all(set(sp) == {pad} for sp in spans)
            assert ids.count(pad) == sum(len(sp) for sp in spans)
            for e, im, (t, gh, gw), span in zip(image_entries, images, grid, spans):
                # qwen_vl_utils' resize with factor 32, re-derived from the stored picture's size
                w0, h0 = Image.open(io.BytesIO(e["bytes"])).size
                assert im.size[::-1] == smart_resize(h0, w0, QVU_MIN_CELLS * 32 ** 2, QVU_MAX_CELLS * 32 ** 2, factor=32)
                assert t == 1 and len(span) == gh * gw // 4 == qwen_image_tokens(*im.size, lo, hi, family="qwen3-vl")
                counts[(im.size, len(span))] += 1
            assert len(ids) <= MAX_PROMPT_LENGTH
            lengths[row["extra_info"]["task"]].append(len(ids))
        assert calls() == ["16"] * (2 * len(rows))  # and prompt_inputs once a row

    summary = {t: [min(v), max(v)] for t, v in sorted(lengths.items())}
    record_property("prompt_tokens", summary)
    print(f"\nQwen3-VL ({split}, {pixels} pixels {lo}..{hi}): image (size, tokens) {dict(counts)}; prompt tokens {summary}")
    assert set(lengths) == {"shuffle", "flip", "crop", "depth", "position"}


@pytest.mark.parametrize("size", [(600, 600), (1000, 300), (100, 2000)])
def test_dataset_patch_size_follows_the_config_before_the_processor(qwen3_tokenizer, qwen3_processor, qwen_vl_utils,
                                                                    tmp_path, size):
    """verl's data YAML declares image_patch_size 14; with it the dataset (and so its overlong filter) resizes to
    28-px multiples and counts other tokens than the rollout, which takes the processor's 16. Sizes where the two
    differ; unset or 16, the dataset agrees with the rollout and with ``ssrl stats`` on the delivered size."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import verl
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    assert OmegaConf.load(f"{verl.__path__[0]}/trainer/config/data/legacy_data.yaml").image_patch_size == 14
    picture = io.BytesIO()
    Image.new("RGB", size, (80, 140, 60)).save(picture, "PNG")
    path = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pylist([{
        "data_source": "spatial_ssrl/flip", "prompt": [{"role": "user", "content": "<image>q"}],
        "images": [{"bytes": picture.getvalue()}], "reward_model": {"style": "rule", "ground_truth": "{}"},
        "extra_info": {"index": 0}}]), path)
    rollout_patch = qwen3_processor.image_processor.patch_size  # what AgentLoopWorker passes, whatever the config
    tokens = {}
    for configured in (14, 16, None):
        cfg = data_config(tmp_path, image_patch_size=configured, mm_processor_kwargs=QWEN3_CONFIG_PIXELS)
        ds = RLHFDataset([str(path)], qwen3_tokenizer, cfg, processor=qwen3_processor)
        assert len(ds) == 1 and ds.image_patch_size == (configured or rollout_patch)
        images, _, inputs = prompt_inputs(ds, qwen3_processor, ds[0]["raw_prompt"], QWEN3_CONFIG_PIXELS)
        assert all(side % (2 * ds.image_patch_size) == 0 for side in images[0].size)
        tokens[configured] = int(inputs["image_grid_thw"][0].prod()) // 4
    assert tokens[16] == tokens[None] != tokens[14]
    w, h = size
    hh, ww = smart_resize(h, w, QVU_MIN_CELLS * 32 ** 2, QVU_MAX_CELLS * 32 ** 2, factor=32)
    assert tokens[16] == qwen_image_tokens(ww, hh, *QWEN3_CONFIG_PIXELS.values(), family="qwen3-vl")
    print(f"\n{w}x{h}: {tokens[16]} tokens with patch 16 (rollout), {tokens[14]} with verl's default 14")
