"""Shared helpers of the integration suite (imported by its conftest and tests; pytest puts this folder on
sys.path). A module of its own, not conftest: the light suite's tests import names from tests/conftest.py as
``conftest``, so this suite's helpers must not live under that module name.

Offline processor: a byte-level BPE trained with ``tokenizers`` on generated text, with the Qwen chat special
tokens and a Qwen-style chat template, ``Qwen2VLImageProcessor()`` defaults, wrapped as ``Qwen2_5_VLProcessor``.
No download. ``qwen_vl_utils`` (which imports torchvision, unusable beside torch 2.13.0+cpu) is replaced by an
image-only stand-in (stubs/qwen_vl_utils.py) when the real one cannot be imported.
"""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path
from unittest import mock

from omegaconf import OmegaConf

import pyarrow.parquet as pq
import verl
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor
from transformers import processing_utils
from transformers.video_processing_utils import BaseVideoProcessor
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.tokenizer import build_multimodal_processor_inputs

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ------------------------------------------------------------------------------------------- qwen_vl_utils
STUBS = Path(__file__).resolve().parent / "stubs"


def _install_qwen_vl_utils_stub() -> bool:
    """The real qwen_vl_utils when it imports; else stubs/qwen_vl_utils.py, found through sys.path (so spawned
    dataloader workers, which inherit sys.path, find it too)."""
    try:
        import qwen_vl_utils  # noqa: F401

        return False
    except Exception:  # ImportError, or torchvision failing inside it
        sys.modules.pop("qwen_vl_utils", None)
    sys.path.insert(0, str(STUBS))
    import qwen_vl_utils

    assert getattr(qwen_vl_utils, "__ssrl_stub__", False), qwen_vl_utils
    return True


QWEN_VL_UTILS_STUB = _install_qwen_vl_utils_stub()


# ------------------------------------------------------------------------------------------- processor
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# Qwen2.5-VL's template, reduced to what single-turn image prompts use (system prompt as Qwen's default).
DEFAULT_SYSTEM_TURN = ("{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
                       "assistant.<|im_end|>\n{% endif %}")
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    + DEFAULT_SYSTEM_TURN +
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def training_text(n: int = 600, seed: int = 0) -> list[str]:
    """Generated text: our questions' words, reasoning-like answers, digits, letters, unicode."""
    from ssrl_plugin.config import DEFAULT_INSTRUCTION

    rng = random.Random(seed)
    words = ("the a of in to is which patch patches image picture region regions label labels answer think "
             "boxed crop depth flip flipped shuffle shuffled position left right front back nearest farthest "
             "camera facing candidate hole black outlined red white order reading original vertical horizontal "
             "options letter first step question final inside tags give then about").split()
    tokens = words + list("ABCD0123456789") + ["-", ".", ",", "?", "{", "}", "\\", "<think>", "</think>", "\\boxed{"]
    lines = [DEFAULT_INSTRUCTION]
    for _ in range(n):
        lines.append(" ".join(rng.choice(tokens) for _ in range(rng.randint(5, 40))))
    lines.append("ünïcödé 中文 测试 ✓ — “quotes” ½")
    return lines


def make_tokenizer(vocab_size: int = 1200) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE)


class QwenVideoGrid(BaseVideoProcessor):
    """Stand-in for ``Qwen2VLVideoProcessor`` (which needs torchvision, not installable beside torch 2.13.0+cpu) for
    frames that arrive already resized, as ``qwen_vl_utils.fetch_video`` delivers them (sides multiples of
    patch x merge). Qwen2-VL's rule: the frame count padded to a multiple of ``temporal_patch_size`` with the last
    frame, then one patch of ``temporal_patch_size x patch x patch`` per grid cell: ``video_grid_thw = (T / 2, H /
    14, W / 14)`` and ``pixel_values_videos`` of shape ``(T/2 * H/14 * W/14, 3 * 2 * 14 * 14)``. It refuses frames
    whose sides are not multiples of patch x merge, instead of resizing them."""

    return_metadata = True  # Qwen2.5-VL's processor reads the clips' sampled fps from it (second_per_grid_ts)

    def _preprocess(self, videos, **kwargs):
        import torch
        from transformers.feature_extraction_utils import BatchFeature

        p, tp, m = self.patch_size, self.temporal_patch_size, self.merge_size
        pixels, grids = [], []
        for video in videos:
            v = torch.as_tensor(video, dtype=torch.float32)
            if v.ndim != 4 or v.shape[1] != 3:
                raise ValueError(f"expected a (T, 3, H, W) clip, got {tuple(v.shape)}")
            t, c, h, w = v.shape
            if h % (p * m) or w % (p * m):
                raise ValueError(f"frame size {w}x{h} is not a multiple of {p * m}")
            if t % tp:
                v = torch.cat([v, v[-1:].expand(tp - t % tp, -1, -1, -1)])
            gt, gh, gw = v.shape[0] // tp, h // p, w // p
            patches = v.reshape(gt, tp, c, gh, p, gw, p).permute(0, 3, 5, 2, 1, 4, 6).reshape(gt * gh * gw, c * tp * p * p)
            pixels.append(patches / 255.0)
            grids.append([gt, gh, gw])
        return BatchFeature({"pixel_values_videos": torch.cat(pixels), "video_grid_thw": torch.tensor(grids)})


def make_processor(tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLProcessor:
    video = QwenVideoGrid(patch_size=14, temporal_patch_size=2, merge_size=2)
    # transformers 5 checks video_processor against the top-level BaseVideoProcessor, which is a torchvision
    # placeholder here; the real class is accepted while the processor is built. The check looks the name up in
    # processing_utils.transformers_module (not always the object `import transformers` gave).
    with mock.patch.object(processing_utils.transformers_module, "BaseVideoProcessor", BaseVideoProcessor):
        return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                   video_processor=video, chat_template=CHAT_TEMPLATE)


# ------------------------------------------------------------------------------------------- data
DEMO = {"demo": {"num_rgb": 6, "num_rgbd": 6, "width": 320, "height": 240}}
MIX = {"shuffle": 1, "flip": 1, "crop": 1, "depth": 1, "position": 1}  # every task in both splits


def build_settings(num_samples: int = 40, seed: int = 0) -> dict:
    return {"num_samples": num_samples, "val_fraction": 0.25, "seed": seed, "mix": dict(MIX), **DEMO}


def shards(built: Path, fmt: str, split: str) -> list[str]:
    files = sorted(str(p) for p in (built / fmt).glob(f"{split}-*.parquet"))
    assert files, f"no {fmt} {split} shards in {built}"
    return files


# ------------------------------------------------------------------------------------------- verl config
def verl_config_dir() -> Path:
    return Path(verl.__path__[0]) / "trainer" / "config"


def compose_ppo(overrides=()):
    """verl's ppo_trainer config composed by Hydra with ``overrides`` (what `python -m verl.trainer.main_ppo` does)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
        return compose(config_name="ppo_trainer", overrides=list(overrides))


def read_overrides(path: Path, **values: str) -> list[str]:
    """An overrides file (one key=value a line, '#' comments) with its ``${NAME}`` placeholders filled in."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for name, value in values.items():
            line = line.replace("${" + name + "}", value)
        left = re.findall(r"\$\{(\w+)\}", line)
        assert not left, f"{path.name}: placeholder(s) {left} not filled in: {line}"
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------- verl data
# verl's own data section (trainer/config/data/legacy_data.yaml) with what our example script sets
MAX_PROMPT_LENGTH = 4096  # example_configs/verl_grpo.overrides: data.max_prompt_length
PAPER_PIXELS = {"min_pixels": 262144, "max_pixels": 4194304}  # ++data.mm_processor_kwargs in the overrides


def data_config(tmp_path, **overrides):
    base = OmegaConf.load(f"{verl.__path__[0]}/trainer/config/data/legacy_data.yaml")
    cfg = OmegaConf.merge(base, {
        "prompt_key": "prompt", "image_key": "images", "max_prompt_length": MAX_PROMPT_LENGTH,
        "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1, "truncation": "error",
        "cache_dir": str(tmp_path / "verl_cache"), "tool_config_path": None, "function_tool_path": None,
    }, overrides)
    return cfg


def parquet_rows(files):
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def prompt_inputs(dataset: RLHFDataset, processor, messages, mm_processor_kwargs):
    """What verl's rollout builds from a dataset item: chat template + qwen_vl_utils images + processor."""
    images, videos, _ = RLHFDataset._process_multi_modal_info(messages, dataset.image_patch_size, dataset.config)
    assert videos is None
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return images, text, build_multimodal_processor_inputs(processor, text=[text], images=images,
                                                           mm_processor_kwargs=mm_processor_kwargs)


def tiny_qwen25vl(tokenizer):
    """A tiny random Qwen2.5-VL (2 layers, 64 wide) over ``tokenizer``: real code paths, no download."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                           "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                           fullatt_block_indexes=[1], window_size=112, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config)


from answer_support import wrong_answer  # noqa: E402,F401 - one copy for both suites (tests/ is on sys.path)


# ------------------------------------------------------------------------------------------- Qwen3-VL (offline)
# Qwen/Qwen3-VL-4B-Instruct preprocessor_config.json (image fields): transformers maps qwen3_vl to the Qwen2-VL image
# processor, so these fields are all that makes it a Qwen3-VL one (16 px patches, 32 px per merged token).
QWEN3_PREPROCESSOR = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}

# Qwen3-VL-Instruct's template, reduced to single-turn image/video prompts. Unlike Qwen2.5-VL's it adds no default
# system prompt; the vision span is the same <|vision_start|><|image_pad|><|vision_end|>, which the processor
# expands to one <|image_pad|> per merged 32 x 32 cell.
QWEN3_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(DEFAULT_SYSTEM_TURN, "")


def qwen3_image_processor():
    """The Qwen2-VL image processor with Qwen3-VL's fields; its PIL variant where transformers has one (no
    torchvision)."""
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as cls
    except ImportError:
        cls = Qwen2VLImageProcessor
    return cls(**QWEN3_PREPROCESSOR)


def make_qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """The suite's offline BPE with Qwen3-VL's chat template (a new object: the session tokenizer keeps Qwen2.5-VL's)."""
    tok = make_tokenizer()
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    return tok


def make_qwen3vl_processor(tokenizer: PreTrainedTokenizerFast):
    """``Qwen3VLProcessor`` offline: Qwen3-VL image fields, the given tokenizer, and a patch-16 video stand-in
    (Qwen3VLVideoProcessor needs torchvision; the processor insists on a video processor)."""
    from transformers import Qwen3VLProcessor

    video = QwenVideoGrid(patch_size=16, temporal_patch_size=2, merge_size=2)
    with mock.patch.object(processing_utils.transformers_module, "BaseVideoProcessor", BaseVideoProcessor):
        return Qwen3VLProcessor(image_processor=qwen3_image_processor(), tokenizer=tokenizer, video_processor=video,
                                chat_template=tokenizer.chat_template)


def tiny_qwen3vl(tokenizer):
    """A tiny random Qwen3-VL (2 layers, 64 wide, vision depth 2, 16 px patches, one DeepStack layer) over
    ``tokenizer``: real code paths, no download."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                           "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=8192,
                         # interleaved M-RoPE as in the checkpoints; sections sum to head_dim / 2
                         rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                          "mrope_section": [2, 3, 3], "mrope_interleaved": True},
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=144,
                           deepstack_visual_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def _torchvision_placeholder():
    """Just enough of torchvision for ``import qwen_vl_utils``: its image path (fetch_image, smart_resize) is PIL
    only; anything that would really use torchvision (video resizing, decoding) raises."""
    import types

    def unavailable(*args, **kwargs):
        raise NotImplementedError("torchvision placeholder: qwen_vl_utils' image path only")

    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.0.0+placeholder"
    tv.io = types.ModuleType("torchvision.io")
    tv.io.read_video = unavailable
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic", BILINEAR="bilinear")
    tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
    tv.transforms.functional.resize = unavailable
    return {"torchvision": tv, "torchvision.io": tv.io, "torchvision.transforms": tv.transforms,
            "torchvision.transforms.functional": tv.transforms.functional}


def real_qwen_vl_utils_images():
    """Context manager: the installed qwen_vl_utils (not stubs/) under ``sys.modules['qwen_vl_utils']`` for image
    prompts, so verl's ``from qwen_vl_utils import process_vision_info`` reaches the real resizing code; the modules
    in place before are restored afterwards."""
    import contextlib
    import importlib

    @contextlib.contextmanager
    def swap():
        names = lambda: [k for k in sys.modules if k == "qwen_vl_utils" or k.startswith(("qwen_vl_utils.", "torchvision"))]
        saved = {k: sys.modules.pop(k) for k in names()}
        stub_paths = [p for p in sys.path if p == str(STUBS)]
        for p in stub_paths:
            sys.path.remove(p)
        sys.modules.update(_torchvision_placeholder())
        try:
            module = importlib.import_module("qwen_vl_utils")
            assert not getattr(module, "__ssrl_stub__", False), "the real qwen_vl_utils is not installed"
            yield module
        finally:
            for k in names():
                del sys.modules[k]
            sys.modules.update(saved)
            sys.path[:0] = stub_paths

    return swap()


def offline_auto_processor():
    """Context manager: ``AutoProcessor.from_pretrained`` of a folder saved from make_processor /
    make_qwen3vl_processor, without torchvision. transformers resolves the saved ``video_processor_type`` through
    its video-processor registry, where every class is dropped without torchvision: the stand-in is registered there
    for the duration (and the BaseVideoProcessor placeholder replaced, as in make_processor)."""
    import contextlib

    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING
    from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig
    from transformers.models.qwen3_vl import Qwen3VLConfig

    @contextlib.contextmanager
    def registered():
        extra = VIDEO_PROCESSOR_MAPPING._extra_content
        before = {c: extra[c] for c in (Qwen2_5_VLConfig, Qwen3VLConfig) if c in extra}
        extra.update({Qwen2_5_VLConfig: QwenVideoGrid, Qwen3VLConfig: QwenVideoGrid})
        try:
            with mock.patch.object(processing_utils.transformers_module, "BaseVideoProcessor", BaseVideoProcessor):
                yield
        finally:
            for c in (Qwen2_5_VLConfig, Qwen3VLConfig):
                extra.pop(c, None)
            extra.update(before)

    return registered()
