"""Integration suite: our data and rewards inside verl 0.9.1's own code (and EasyR1's documented contract).

Runs in its own environment (torch 2.13.0 CPU, verl 0.9.1, our package; `.ci/run` makes it) with
``python -m pytest -q tests/integration``. ``tests/conftest.py`` keeps this folder out of the light default run.

Never silently skipped: verl, torch and transformers are imported here unconditionally (a missing one is a
collection error), and any skip inside this folder is turned into a failure.

Offline processor: a byte-level BPE trained with ``tokenizers`` on generated text, with the Qwen chat special
tokens and a Qwen-style chat template, ``Qwen2VLImageProcessor()`` defaults, wrapped as ``Qwen2_5_VLProcessor``.
No download. ``qwen_vl_utils`` (which imports torchvision, unusable beside torch 2.13.0+cpu) is replaced by an
image-only stand-in with its resizing rule when the real one cannot be imported.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from unittest import mock

import pytest

# Hard requirements: an ImportError here fails the run instead of skipping it.
import torch  # noqa: F401
import verl  # noqa: F401
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor
from transformers import processing_utils
from transformers.video_processing_utils import BaseVideoProcessor

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ------------------------------------------------------------------------------------------- no silent skips
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("SSRL_INTEGRATION_ALLOW_SKIP") != "1":
        report.outcome = "failed"
        report.longrepr = f"integration tests must not be skipped ({report.longrepr})"


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
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
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


def make_processor(tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLProcessor:
    video = BaseVideoProcessor(patch_size=14, temporal_patch_size=2, merge_size=2)
    # transformers 5 checks video_processor against the top-level BaseVideoProcessor, which is a torchvision
    # placeholder here; the real class is accepted while the processor is built. The check looks the name up in
    # processing_utils.transformers_module (not always the object `import transformers` gave).
    with mock.patch.object(processing_utils.transformers_module, "BaseVideoProcessor", BaseVideoProcessor):
        return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                   video_processor=video, chat_template=CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def processor(tokenizer):
    return make_processor(tokenizer)


@pytest.fixture(scope="session")
def tokenizer_dir(tokenizer, tmp_path_factory):
    """The tokenizer saved as a model folder (what verl's hf_tokenizer(model.path) loads)."""
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------- data
DEMO = {"demo": {"num_rgb": 6, "num_rgbd": 6, "width": 320, "height": 240}}
MIX = {"shuffle": 1, "flip": 1, "crop": 1, "depth": 1, "position": 1}  # every task in both splits


def build_settings(num_samples: int = 40, seed: int = 0) -> dict:
    return {"num_samples": num_samples, "val_fraction": 0.25, "seed": seed, "mix": dict(MIX), **DEMO}


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """A small demo build (both formats): 30 train + 10 val samples, all five tasks in each split."""
    from data_builders import build
    from ssrl_plugin.config import load_config

    out = tmp_path_factory.mktemp("built")
    result = build(load_config(None, None, out=str(out), **build_settings()), progress=False)
    assert result.total == 40
    return out


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


def hydra_list(values) -> str:
    return "[" + ",".join(f"'{v}'" for v in values) + "]"


def read_overrides(path: Path, **values: str) -> list[str]:
    """An overrides file (one key=value a line, '#' comments) with its ``${NAME}`` placeholders filled in."""
    import re

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
