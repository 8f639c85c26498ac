"""Qwen3-VL token counts of ``ssrl stats --model-family qwen3-vl`` against transformers' own image processor.

transformers has no Qwen3-VL image processor of its own: ``qwen3_vl`` maps to ``Qwen2VLImageProcessor``, built
here offline from the Qwen3-VL checkpoints' preprocessor_config.json (patch_size 16, merge_size 2, 65,536..16,777,216
pixels); no download. Tokens per image = grid_h * grid_w / merge_size**2.
"""

from __future__ import annotations

import pytest
from PIL import Image

from data_builders.stats import MODEL_FAMILIES, qwen_image_tokens

QWEN3_PREPROCESSOR = {  # Qwen/Qwen3-VL-4B-Instruct preprocessor_config.json (image fields)
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
SIZES = [(640, 480), (600, 600), (320, 240), (1600, 1200), (2048, 2048), (560, 1169), (1169, 560), (100, 2000)]
RANGES = [(262_144, 655_360), (262_144, 4_194_304), (65_536, 16_777_216)]


def _processor_class():
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        return Qwen2VLImageProcessorPil  # no torchvision needed
    except ImportError:
        from transformers import Qwen2VLImageProcessor
        return Qwen2VLImageProcessor


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
    proc = _processor_class()(**QWEN3_PREPROCESSOR)
    for w, h in SIZES:
        out = proc(images=[Image.new("RGB", (w, h), (90, 120, 150))], min_pixels=lo, max_pixels=hi, return_tensors="np")
        _, gh, gw = [int(v) for v in out["image_grid_thw"][0]]
        assert gh * gw // 4 == qwen_image_tokens(w, h, lo, hi, family="qwen3-vl"), (w, h, lo, hi)


def test_qwen25_tokens_match_the_processor():
    proc = _processor_class()()  # Qwen2-VL class defaults: patch_size 14, merge_size 2
    for w, h in SIZES:
        out = proc(images=[Image.new("RGB", (w, h))], min_pixels=262_144, max_pixels=4_194_304, return_tensors="np")
        _, gh, gw = [int(v) for v in out["image_grid_thw"][0]]
        assert gh * gw // 4 == qwen_image_tokens(w, h), (w, h)
