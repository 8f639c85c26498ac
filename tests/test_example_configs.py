"""The example trainer configs and launch scripts, checked without EasyR1 or verl installed.

- the EasyR1 YAMLs use only keys of EasyR1's config dataclasses (transcribed below) and the paper's values;
- the launch scripts are valid bash, take every path from ``ssrl paths``, and pass exactly the overrides of
  ``verl_grpo.overrides`` (run with ``SSRL_DRY_RUN=1`` from another working directory);
- ``ssrl paths`` prints existing absolute files from any working directory;
- EasyR1's folder + split form loads our file names (``datasets``), and, when the trainers are importable,
  their own loaders accept the configs: EasyR1's ``OmegaConf.merge(PPOConfig, yaml)`` and verl's Hydra
  ``ppo_trainer`` composed with the overrides (``SSRL_VERL_CONFIG_DIR`` may point at verl/trainer/config).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "example_configs"
EASYR1_YAML = CONFIGS / "easyr1_grpo.yaml"
INPAINT_YAML = CONFIGS / "easyr1_grpo_inpainting.yaml"
EASYR1_SH = CONFIGS / "easyr1_grpo.sh"
VERL_SH = CONFIGS / "verl_grpo.sh"
VERL_OVERRIDES = CONFIGS / "verl_grpo.overrides"
CURRICULUM_SH = CONFIGS / "curriculum.sh"
SCRIPTS = [EASYR1_SH, VERL_SH]
PATH_KEYS = ("SSRL_REWARD_EASYR1", "SSRL_REWARD_VERL", "SSRL_FORMAT_PROMPT", "SSRL_EXAMPLE_CONFIGS")
PLACEHOLDERS = ("MODEL", "TRAIN_FILES", "VAL_FILES", "SSRL_REWARD_VERL")

# ---------------------------------------------------------------------------------------------------------------
# EasyR1's config schema (hiyouga/EasyR1, current main), transcribed from its dataclasses. EasyR1 builds
# OmegaConf.structured(PPOConfig()) and merges the YAML into it (verl/trainer/main.py), so any other key is an
# error. ANY marks a free dict. Auto keys (field(init=False), filled in by post_init) are left out on purpose:
# setting them has no effect. Keys removed from EasyR1 are listed in EASYR1_REMOVED.
ANY = "any keys"

_FSDP = {  # verl/workers/actor/config.py: FSDPConfig
    "enable_full_shard", "enable_cpu_offload", "enable_rank0_init", "use_orig_params", "torch_dtype", "fsdp_size",
    "mp_param_dtype", "mp_reduce_dtype", "mp_buffer_dtype",
}
_OFFLOAD = {"offload_params", "offload_optimizer"}  # verl/workers/actor/config.py: OffloadConfig
_MODEL = {  # verl/workers/actor/config.py: ModelConfig (+ LoraConfig)
    "model_path": None, "tokenizer_path": None, "override_config": ANY, "enable_gradient_checkpointing": None,
    "trust_remote_code": None, "freeze_vision_tower": None, "lora": {"rank", "alpha", "target_modules"},
}
_OPTIM = {  # verl/workers/actor/config.py: OptimConfig
    "lr", "betas", "weight_decay", "strategy", "lr_warmup_ratio", "lr_warmup_steps", "min_lr_ratio", "lr_scheduler_type",
}


def _keys(names) -> dict:
    return {name: None for name in names}


EASYR1_SCHEMA = {
    # verl/trainer/config.py: DataConfig
    "data": _keys([
        "train_files", "val_files", "prompt_key", "answer_key", "image_key", "video_key", "image_dir", "video_fps",
        "max_prompt_length", "max_response_length", "rollout_batch_size", "mini_rollout_batch_size", "val_batch_size",
        "format_prompt", "override_chat_template", "shuffle", "seed", "min_pixels", "max_pixels",
        "filter_overlong_prompts", "filter_overlong_prompts_workers",
    ]),
    # verl/trainer/config.py: AlgorithmConfig
    "algorithm": _keys([
        "gamma", "lam", "adv_estimator", "disable_kl", "use_kl_loss", "kl_penalty", "kl_coef", "kl_type", "kl_horizon",
        "kl_target", "online_filtering", "filter_key", "filter_low", "filter_high",
    ]),
    # verl/workers/config.py: WorkerConfig
    "worker": {
        "hybrid_engine": None,
        # verl/workers/actor/config.py: ActorConfig
        "actor": {
            **_keys([
                "strategy", "global_batch_size", "micro_batch_size_per_device_for_update",
                "micro_batch_size_per_device_for_experience", "max_grad_norm", "clip_ratio_low", "clip_ratio_high",
                "clip_ratio_dual", "loss_avg_mode", "loss_type", "ppo_epochs", "padding_free", "dynamic_batching",
                "ulysses_size", "use_torch_compile",
            ]),
            "model": _MODEL, "optim": _keys(_OPTIM), "fsdp": _keys(_FSDP), "offload": _keys(_OFFLOAD),
        },
        # verl/workers/critic/config.py: CriticConfig
        "critic": {
            **_keys([
                "strategy", "global_batch_size", "micro_batch_size_per_device_for_update",
                "micro_batch_size_per_device_for_experience", "max_grad_norm", "cliprange_value", "loss_avg_mode",
                "ppo_epochs", "padding_free", "dynamic_batching", "ulysses_size",
            ]),
            "model": _MODEL, "optim": _keys(_OPTIM), "fsdp": _keys(_FSDP), "offload": _keys(_OFFLOAD),
        },
        # verl/workers/actor/config.py: RefConfig
        "ref": {"strategy": None, "fsdp": _keys(_FSDP), "offload": _keys(_OFFLOAD)},
        # verl/workers/rollout/config.py: RolloutConfig
        "rollout": {
            **_keys([
                "name", "n", "temperature", "top_p", "top_k", "seed", "limit_images", "dtype", "gpu_memory_utilization",
                "ignore_eos", "enforce_eager", "enable_chunked_prefill", "tensor_parallel_size", "max_model_len",
                "max_num_batched_tokens", "disable_log_stats", "disable_tqdm",
            ]),
            "val_override_config": ANY,
        },
        # verl/workers/reward/config.py: RewardConfig
        "reward": {"reward_function": None, "reward_function_kwargs": ANY, "skip_special_tokens": None, "num_cpus": None},
    },
    # verl/trainer/config.py: TrainerConfig
    "trainer": _keys([
        "total_epochs", "max_steps", "project_name", "experiment_name", "logger", "nnodes", "n_gpus_per_node",
        "max_try_make_batch", "critic_warmup", "val_freq", "val_before_train", "val_only", "val_generations_to_log",
        "save_freq", "save_limit", "save_model_only", "save_checkpoint_path", "load_checkpoint_path", "ray_timeline",
        "find_last_checkpoint",
    ]),
}
# Present in the EasyR1 the paper used, gone from the current one (passed on the command line when needed).
EASYR1_REMOVED = {"worker.reward.reward_type", "worker.reward.score_function", "trainer.total_episodes"}


def _unknown_keys(node, schema, prefix="") -> list[str]:
    bad = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if key not in schema:
            bad.append(path)
        elif isinstance(schema[key], dict):
            if not isinstance(value, dict):
                bad.append(f"{path} (a section, got {value!r})")
            else:
                bad += _unknown_keys(value, schema[key], path + ".")
        elif schema[key] == ANY and not isinstance(value, dict):
            bad.append(f"{path} (a dict, got {value!r})")
    return bad


def _raw(path: Path) -> dict:
    """The YAML as EasyR1 reads it, interpolations unresolved."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _resolved(path: Path, monkeypatch, **env) -> dict:
    for key in PATH_KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


# ---------------------------------------------------------------------------------------------------------------
# (a) EasyR1 YAMLs


@pytest.mark.parametrize("path", [EASYR1_YAML, INPAINT_YAML], ids=lambda p: p.name)
def test_easyr1_yaml_uses_only_easyr1_keys(path):
    raw = _raw(path)
    assert set(raw) == {"data", "algorithm", "worker", "trainer"}
    assert _unknown_keys(raw, EASYR1_SCHEMA) == []
    flat = {k for k, _ in _flatten(raw)}
    assert not flat & EASYR1_REMOVED, "keys the current EasyR1 rejects"
    assert "worker.reward.reward_type=batch" in path.read_text(), "the older-EasyR1 note must stay in the header"


def test_schema_check_catches_unknown_and_removed_keys():
    raw = _raw(EASYR1_YAML)
    raw["worker"]["reward"]["reward_type"] = "batch"
    raw["worker"]["rollout"]["limit_image"] = 5
    raw["data"]["format_prompt_path"] = "x.jinja"
    assert sorted(_unknown_keys(raw, EASYR1_SCHEMA)) == [
        "data.format_prompt_path", "worker.reward.reward_type", "worker.rollout.limit_image",
    ]


def _flatten(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and key not in ("val_override_config", "reward_function_kwargs"):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


PAPER_EASYR1 = {  # ../shared/reference/paper.md, "GRPO (EasyR1)"
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_loss": True,
    "algorithm.disable_kl": False,
    "algorithm.kl_penalty": "low_var_kl",
    "algorithm.kl_coef": 1e-2,
    "worker.rollout.n": 5,
    "worker.rollout.temperature": 1.0,
    "worker.rollout.limit_images": 5,
    "worker.rollout.val_override_config": {"temperature": 0.6, "top_p": 0.95, "n": 1},
    "worker.actor.optim.lr": 1e-6,
    "worker.actor.optim.weight_decay": 1e-2,
    "worker.actor.optim.strategy": "adamw",
    "worker.actor.max_grad_norm": 1.0,
    "worker.actor.global_batch_size": 128,
    "worker.actor.model.model_path": "Qwen/Qwen2.5-VL-7B-Instruct",
    "worker.reward.reward_function_kwargs": {"format_weight": 0.1},
    "data.rollout_batch_size": 256,
    "data.max_prompt_length": 4096,
    "data.max_response_length": 2048,
    "data.min_pixels": 262144,
    "data.prompt_key": "problem",
    "data.answer_key": "answer",
    "data.image_key": "images",
    "trainer.max_steps": 360,
    "trainer.n_gpus_per_node": 8,
    "trainer.nnodes": 1,
}


@pytest.mark.parametrize("path", [EASYR1_YAML, INPAINT_YAML], ids=lambda p: p.name)
def test_easyr1_yaml_has_the_paper_values(path):
    flat = dict(_flatten(_raw(path)))
    for key, expected in PAPER_EASYR1.items():
        assert flat[key] == expected, key
    assert flat["data.max_pixels"] == (4194304 if path == EASYR1_YAML else 501760)
    assert flat["data.filter_overlong_prompts"] is True


def test_inpainting_variant_differs_only_in_pixels_and_name():
    main, inpaint = dict(_flatten(_raw(EASYR1_YAML))), dict(_flatten(_raw(INPAINT_YAML)))
    assert main.keys() == inpaint.keys()
    assert {k for k in main if main[k] != inpaint[k]} == {"data.max_pixels", "trainer.experiment_name"}


def easyr1_resize(width: int, height: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """EasyR1's own resize into [min_pixels, max_pixels] before the processor sees the image (PIL, int sizes)."""
    if width * height > max_pixels:
        f = math.sqrt(max_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    if width * height < min_pixels:
        f = math.sqrt(min_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    return width, height


def _qwen_tokens(width: int, height: int, min_pixels: int, max_pixels: int) -> int:
    """Visual tokens of one image in EasyR1 + Qwen2.5-VL: EasyR1 resizes into [min_pixels, max_pixels], then the
    processor rounds each side to a multiple of 28 within its own bounds (3136..12845056); one token per 28 x 28
    pixels."""
    width, height = easyr1_resize(width, height, min_pixels, max_pixels)
    h, w = max(28, round(height / 28) * 28), max(28, round(width / 28) * 28)
    if h * w > 12845056:
        beta = math.sqrt(height * width / 12845056)
        h, w = math.floor(height / beta / 28) * 28, math.floor(width / beta / 28) * 28
    elif h * w < 3136:
        beta = math.sqrt(3136 / (height * width))
        h, w = math.ceil(height * beta / 28) * 28, math.ceil(width * beta / 28) * 28
    return h * w // 784


def test_inpainting_max_pixels_fits_five_images_in_the_prompt():
    data = _raw(INPAINT_YAML)["data"]
    lo, hi, budget = data["min_pixels"], data["max_pixels"], data["max_prompt_length"]
    assert lo <= hi and hi % 784 == 0
    # a sweep of sizes up to source.max_side (1600), plus the worst case a dense sweep found (322 x 1555)
    sizes = [(w, h) for w in range(64, 1601, 7) for h in range(64, 1601, 61)] + [(322, 1555), (1555, 322)]
    worst = max(_qwen_tokens(w, h, lo, hi) for w, h in sizes)
    assert worst == 672  # the number quoted in the YAML header
    text = 200  # question (~70 tokens) + format prompt + chat template + 2 vision delimiters per image
    assert 5 * worst + text <= budget - 500
    # and why the variant exists: the paper's max_pixels overflows on a 1600 x 1200 picture + four 600 px candidates
    paper = _raw(EASYR1_YAML)["data"]
    crop = _qwen_tokens(1600, 1200, paper["min_pixels"], paper["max_pixels"]) + 4 * _qwen_tokens(
        600, 600, paper["min_pixels"], paper["max_pixels"])
    assert crop == 4215 and crop > paper["max_prompt_length"]
    # COCO-sized pictures fit with the paper's values
    coco = _qwen_tokens(640, 480, paper["min_pixels"], paper["max_pixels"]) + 4 * _qwen_tokens(
        240, 240, paper["min_pixels"], paper["max_pixels"])
    assert coco + text < paper["max_prompt_length"]


@pytest.mark.parametrize("path", [EASYR1_YAML, INPAINT_YAML], ids=lambda p: p.name)
def test_easyr1_yaml_paths_come_from_ssrl_paths(path, monkeypatch):
    from data_builders.paths import trainer_paths

    paths = trainer_paths()
    unset = _resolved(path, monkeypatch)
    assert unset["data"]["format_prompt"] is None and unset["worker"]["reward"]["reward_function"] is None
    env = _resolved(path, monkeypatch, **paths)
    assert env["data"]["format_prompt"] == paths["SSRL_FORMAT_PROMPT"]
    assert env["worker"]["reward"]["reward_function"] == paths["SSRL_REWARD_EASYR1"]  # EasyR1 calls `main`
    reward = _load_module(paths["SSRL_REWARD_EASYR1"])
    assert reward.main is reward.compute_score and reward.REWARD_TYPE == "batch"


def _load_module(path: str):
    spec = importlib.util.spec_from_file_location("ssrl_easyr1_reward_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _easyr1_ppo_config():
    """EasyR1's PPOConfig when EasyR1 (which installs a package named verl) is importable, else None."""
    if importlib.util.find_spec("verl") is None:
        return None
    try:
        from verl.trainer.config import PPOConfig  # EasyR1 only; volcengine/verl has no PPOConfig there
    except Exception:  # noqa: BLE001 - volcengine/verl, or EasyR1 without its heavy dependencies
        return None
    return PPOConfig


def _code_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.parametrize("script", [*SCRIPTS, CURRICULUM_SH], ids=lambda p: p.name)
def test_script_is_valid_bash_and_uses_ssrl_paths(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    code = "\n".join(_code_lines(script))
    assert code.splitlines()[0] == "set -euo pipefail"
    assert 'eval "$(ssrl paths --shell)"' in code
    # every file of ours is reached through an absolute path: ssrl paths, or this script's own folder
    for relative in ("reward_fns/", "ssrl_plugin/", "templates/", "example_configs/", "./", "../"):
        assert relative not in code, f"{script.name} refers to {relative!r}"
    assert re.search(r"\$\(cd \"\$\(dirname \"\$\{BASH_SOURCE\[0\]\}\"\)\" && pwd\)", code)


def _overrides() -> list[str]:
    lines = []
    for line in VERL_OVERRIDES.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(line)
    return lines


def _override_dict(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        key, sep, value = line.partition("=")
        assert sep, line
        out[key.lstrip("+")] = value
    return out


def test_overrides_file_format():
    lines = _overrides()
    keys = [ln.partition("=")[0].lstrip("+") for ln in lines]
    assert len(keys) == len(set(keys)), "a key set twice"
    for line in lines:
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"\+{0,2}[A-Za-z_][A-Za-z0-9_.]*", key), line
        assert line == line.strip() and value, line
        for name in re.findall(r"\$\{([^}]*)\}", line):
            assert name in PLACEHOLDERS, f"undocumented placeholder {name} in {line}"
    header = VERL_OVERRIDES.read_text().split("\n\n", 1)[0]
    for name in PLACEHOLDERS:
        assert "${" + name + "}" in header, f"placeholder {name} not documented"
        assert f"'${{{name}}}'" in VERL_SH.read_text(), f"verl_grpo.sh does not fill in {name}"


PAPER_VERL = {  # the same recipe in verl's names
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_in_reward": "False",
    "actor_rollout_ref.actor.use_kl_loss": "True",
    "actor_rollout_ref.actor.kl_loss_coef": "0.01",
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.actor.optim.lr": "1e-6",
    "actor_rollout_ref.actor.optim.weight_decay": "0.01",
    "actor_rollout_ref.actor.optim.clip_grad": "1.0",
    "actor_rollout_ref.actor.ppo_mini_batch_size": "128",
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.n": "5",
    "actor_rollout_ref.rollout.temperature": "1.0",
    "actor_rollout_ref.rollout.limit_images": "5",
    "actor_rollout_ref.rollout.val_kwargs.temperature": "0.6",
    "actor_rollout_ref.rollout.val_kwargs.top_p": "0.95",
    "actor_rollout_ref.rollout.val_kwargs.do_sample": "True",
    "actor_rollout_ref.model.path": "'${MODEL}'",
    "data.train_files": "${TRAIN_FILES}",
    "data.val_files": "${VAL_FILES}",
    "data.prompt_key": "prompt",
    "data.image_key": "images",
    "data.train_batch_size": "256",
    "data.max_prompt_length": "4096",
    "data.max_response_length": "2048",
    "data.mm_processor_kwargs.min_pixels": "262144",
    "data.mm_processor_kwargs.max_pixels": "4194304",
    "reward.custom_reward_function.path": "'${SSRL_REWARD_VERL}'",
    "reward.custom_reward_function.name": "compute_score",
    "reward.custom_reward_function.reward_kwargs.format_weight": "0.1",
    "trainer.n_gpus_per_node": "8",
    "trainer.nnodes": "1",
    "trainer.total_training_steps": "360",
}


def test_overrides_have_the_paper_values():
    got = _override_dict(_overrides())
    for key, expected in PAPER_VERL.items():
        assert got.get(key) == expected, key
    # keys that verl 0.9.1's YAML does not declare must be added with ++ (Hydra refuses plain overrides of them)
    for line in _overrides():
        key = line.partition("=")[0]
        if key.lstrip("+") in ("actor_rollout_ref.rollout.limit_images",
                               "reward.custom_reward_function.reward_kwargs.format_weight") \
                or key.lstrip("+").startswith("data.mm_processor_kwargs."):
            assert key.startswith("++"), line
    assert "custom_reward_function.path" not in {k for k in got if not k.startswith("reward.")}


def test_easyr1_and_verl_agree():
    easy = dict(_flatten(_raw(EASYR1_YAML)))
    verl = _override_dict(_overrides())
    pairs = [
        ("worker.rollout.n", "actor_rollout_ref.rollout.n"),
        ("worker.rollout.temperature", "actor_rollout_ref.rollout.temperature"),
        ("worker.rollout.limit_images", "actor_rollout_ref.rollout.limit_images"),
        ("worker.actor.optim.lr", "actor_rollout_ref.actor.optim.lr"),
        ("worker.actor.optim.weight_decay", "actor_rollout_ref.actor.optim.weight_decay"),
        ("worker.actor.max_grad_norm", "actor_rollout_ref.actor.optim.clip_grad"),
        ("worker.actor.global_batch_size", "actor_rollout_ref.actor.ppo_mini_batch_size"),
        ("algorithm.kl_coef", "actor_rollout_ref.actor.kl_loss_coef"),
        ("algorithm.kl_penalty", "actor_rollout_ref.actor.kl_loss_type"),
        ("data.rollout_batch_size", "data.train_batch_size"),
        ("data.max_prompt_length", "data.max_prompt_length"),
        ("data.max_response_length", "data.max_response_length"),
        ("data.min_pixels", "data.mm_processor_kwargs.min_pixels"),
        ("data.max_pixels", "data.mm_processor_kwargs.max_pixels"),
        ("trainer.max_steps", "trainer.total_training_steps"),
        ("trainer.n_gpus_per_node", "trainer.n_gpus_per_node"),
    ]
    for e, v in pairs:
        value = easy[e]
        parsed = type(value)(verl[v]) if not isinstance(value, str) else verl[v]
        assert parsed == value, (e, v)
    val = easy["worker.rollout.val_override_config"]
    assert float(verl["actor_rollout_ref.rollout.val_kwargs.temperature"]) == val["temperature"]
    assert float(verl["actor_rollout_ref.rollout.val_kwargs.top_p"]) == val["top_p"]
    weight = easy["worker.reward.reward_function_kwargs"]["format_weight"]
    assert float(verl["reward.custom_reward_function.reward_kwargs.format_weight"]) == weight


def _write_parquet(path: Path, rows: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)


@pytest.fixture
def built(tmp_path):
    """A DATA_DIR with the file names `ssrl build` writes (two train shards, one val shard), and a working
    directory elsewhere, and an environment whose only `ssrl` is this interpreter's."""
    data = tmp_path / "my data"
    for fmt, cols in (("easyr1", {"problem": ["<image>q"], "answer": ['{"answer":"A","task":"crop"}']}),
                      ("verl", {"data_source": ["spatial_ssrl/crop"], "ability": ["spatial"]})):
        _write_parquet(data / fmt / "train-00000-of-00002.parquet", cols)
        _write_parquet(data / fmt / "train-00001-of-00002.parquet", cols)
        _write_parquet(data / fmt / "val-00000-of-00001.parquet", cols)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "ssrl"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m data_builders.cli \"$@\"\n")
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSRL_") and k not in ("DATA", "MODEL", "CONFIG")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return data, cwd, env


def _dry_run(script: Path, args, cwd, env, **extra) -> list[str]:
    out = subprocess.run(["bash", str(script), *args], cwd=cwd, env={**env, "SSRL_DRY_RUN": "1", **extra},
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_verl_script_passes_exactly_the_overrides(built):
    from data_builders.paths import trainer_paths

    data, cwd, env = built
    argv = _dry_run(VERL_SH, [str(data), "trainer.n_gpus_per_node=4"], cwd, env, MODEL="org/my model&1")
    assert argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    train = f"['{data}/verl/train-00000-of-00002.parquet','{data}/verl/train-00001-of-00002.parquet']"
    values = {"MODEL": "org/my model&1", "TRAIN_FILES": train, "VAL_FILES": f"['{data}/verl/val-00000-of-00001.parquet']",
              "SSRL_REWARD_VERL": trainer_paths()["SSRL_REWARD_VERL"]}
    expected = []
    for line in _overrides():
        for name, value in values.items():
            line = line.replace("${" + name + "}", value)
        expected.append(line)
    assert argv[3:] == expected + ["trainer.n_gpus_per_node=4"]
    assert Path(values["SSRL_REWARD_VERL"]).is_absolute() and Path(values["SSRL_REWARD_VERL"]).is_file()


def test_easyr1_script_passes_absolute_paths(built):
    from data_builders.paths import trainer_paths

    data, cwd, env = built
    paths = trainer_paths()
    argv = _dry_run(EASYR1_SH, [str(data), "worker.reward.reward_type=batch"], cwd, env, PYTHON="python3.11")
    assert argv[:3] == ["python3.11", "-m", "verl.trainer.main"]
    args = dict(a.split("=", 1) for a in argv[3:])
    assert args["config"] == str(CONFIGS / "easyr1_grpo.yaml")
    assert args["data.train_files"] == f"{data}/easyr1@train"
    assert args["data.val_files"] == f"{data}/easyr1@validation"
    assert args["data.format_prompt"] == paths["SSRL_FORMAT_PROMPT"]
    assert args["worker.reward.reward_function"] == paths["SSRL_REWARD_EASYR1"] + ":compute_score"
    assert "worker.actor.model.model_path" not in args  # the config's model unless MODEL is set
    assert argv[-1] == "worker.reward.reward_type=batch"
    with_model = _dry_run(EASYR1_SH, [str(data), "trainer.n_gpus_per_node=4"], cwd, env, MODEL="org/m")
    assert with_model[-2:] == ["worker.actor.model.model_path=org/m", "trainer.n_gpus_per_node=4"]
    for key in ("config", "data.format_prompt"):
        assert Path(args[key]).is_absolute() and Path(args[key]).is_file()
    reward_file = args["worker.reward.reward_function"].rsplit(":", 1)[0]
    assert Path(reward_file).is_absolute() and Path(reward_file).is_file()
    # the inpainting variant and the data folder from the environment
    inpaint = _dry_run(EASYR1_SH, [], cwd, env, CONFIG=str(INPAINT_YAML), DATA=str(data))
    assert f"config={INPAINT_YAML}" in inpaint and f"data.train_files={data}/easyr1@train" in inpaint


def test_easyr1_folder_and_split_load_our_file_names(built, tmp_path):
    datasets = pytest.importorskip("datasets")
    data, cwd, env = built
    argv = _dry_run(EASYR1_SH, [str(data)], cwd, env)
    args = dict(a.split("=", 1) for a in argv[3:])
    for key, rows in (("data.train_files", 2), ("data.val_files", 1)):
        folder, split = args[key].split("@")  # what EasyR1's RLHFDataset does with "DIR@split"
        file_type = os.path.splitext(sorted(os.listdir(folder))[0])[-1][1:]
        ds = datasets.load_dataset(file_type, data_dir=folder, split=split, cache_dir=str(tmp_path / "hf"))
        assert len(ds) == rows and ds.column_names == ["problem", "answer"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_fail_clearly_without_data(script, built, tmp_path):
    _, cwd, env = built
    out = subprocess.run(["bash", str(script), str(tmp_path / "missing")], cwd=cwd, env={**env, "SSRL_DRY_RUN": "1"},
                         capture_output=True, text=True)
    assert out.returncode == 1 and "ssrl build" in out.stderr and not out.stdout


def _verl_config_dir() -> Path | None:
    if os.environ.get("SSRL_VERL_CONFIG_DIR"):
        return Path(os.environ["SSRL_VERL_CONFIG_DIR"])
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "trainer" / "config"
        if (candidate / "ppo_trainer.yaml").is_file():
            return candidate
    return None


def _ssrl_command() -> list[str]:
    exe = Path(sys.executable).parent / "ssrl"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "data_builders.cli"]


def test_ssrl_paths_are_absolute_from_any_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSRL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    out = subprocess.run([*_ssrl_command(), "paths", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True)
    paths = json.loads(out.stdout)
    assert set(PATH_KEYS) <= set(paths)
    for key, value in paths.items():
        assert Path(value).is_absolute(), key
        assert Path(value).is_dir() if key == "SSRL_EXAMPLE_CONFIGS" else Path(value).is_file(), key
    assert Path(paths["SSRL_EXAMPLE_CONFIGS"]) == CONFIGS
    shell = subprocess.run([*_ssrl_command(), "paths", "--shell"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout
    printed = subprocess.run(["bash", "-c", f'{shell}\nfor k in {" ".join(PATH_KEYS)}; do printf "%s=%s\\n" "$k" "${{!k}}"; done'],
                             capture_output=True, text=True, check=True).stdout
    assert dict(line.split("=", 1) for line in printed.splitlines()) == {k: paths[k] for k in PATH_KEYS}
    one = subprocess.run([*_ssrl_command(), "paths", "format-prompt"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert one == paths["SSRL_FORMAT_PROMPT"]


def test_format_prompt_template():
    from data_builders.paths import trainer_paths

    text = Path(trainer_paths()["SSRL_FORMAT_PROMPT"]).read_text(encoding="utf-8")
    assert "{{ content" in text and "\\boxed{}" in text and "<think>" in text and "</think>" in text
    # EasyR1 renders Template(text.strip()) with content=the question: the question must come first, once
    assert text.count("{{") == 1 and text.strip().startswith("{{ content")


@pytest.mark.parametrize("version, launched", [("2.4.0", False), ("2.5.1", False), ("2.3.0", True)])
def test_easyr1_script_stops_with_a_hint_under_omegaconf_2_4(built, tmp_path, version, launched):
    """EasyR1's default config fails under omegaconf 2.4: the launch script says so in one line instead of
    starting the trainer (a fake omegaconf and a fake trainer stand in for the real ones)."""
    data, cwd, env = built
    fake = tmp_path / "fake_site"
    (fake / "omegaconf").mkdir(parents=True)
    (fake / "omegaconf" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (fake / "verl" / "trainer").mkdir(parents=True)
    (fake / "verl" / "__init__.py").write_text("")
    (fake / "verl" / "trainer" / "__init__.py").write_text("")
    (fake / "verl" / "trainer" / "main.py").write_text("print('trainer launched')\n")
    trainer_python = tmp_path / "trainer_python"  # the trainer's interpreter: sees the fakes, ssrl does not
    trainer_python.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(fake))} exec {shlex.quote(sys.executable)} \"$@\"\n")
    trainer_python.chmod(0o755)
    out = subprocess.run(["bash", str(EASYR1_SH), str(data)], cwd=cwd, env={**env, "PYTHON": str(trainer_python)},
                         capture_output=True, text=True)
    if launched:
        assert out.returncode == 0 and "trainer launched" in out.stdout, out.stderr
    else:
        assert out.returncode == 1 and "trainer launched" not in out.stdout
        assert out.stderr.strip().splitlines() == [
            f"easyr1_grpo.sh: EasyR1 does not load its config with omegaconf {version}: pip install 'omegaconf<2.4' in this environment"]


@pytest.mark.parametrize("trainer, flag", [("easyr1", "data.shuffle=false"), ("verl", "data.shuffle=False")])
def test_curriculum_script_reads_the_rows_in_order(built, trainer, flag):
    """curriculum.sh: the stages from the manifest on stderr, then the trainer's script with shuffling off and the
    user's overrides after it (last wins)."""
    data, cwd, env = built
    stages = [{"stage": 1, "level": 1, "rows": [0, 300], "steps": [0, 2]},
              {"stage": 2, "level": 2, "rows": [300, 600], "steps": [1, 3]}]
    (data / "manifest.json").write_text(json.dumps({"curriculum": {"levels": [1, 2], "shares": [1, 1], "batch": 256,
                                                                    "stages": stages}}))
    out = subprocess.run(["bash", str(CURRICULUM_SH), trainer, str(data), "trainer.n_gpus_per_node=4"], cwd=cwd,
                         env={**env, "SSRL_DRY_RUN": "1"}, capture_output=True, text=True, check=True)
    argv = out.stdout.splitlines()
    assert argv.index(flag) < argv.index("trainer.n_gpus_per_node=4")
    assert "stage 2 (level 2): rows 300-600, steps 1-3 at 256 prompts per step" in out.stderr


def test_curriculum_script_refuses_data_without_a_curriculum(built):
    data, cwd, env = built
    (data / "manifest.json").write_text(json.dumps({"counts": {}}))
    out = subprocess.run(["bash", str(CURRICULUM_SH), "verl", str(data)], cwd=cwd, env={**env, "SSRL_DRY_RUN": "1"},
                         capture_output=True, text=True)
    assert out.returncode == 1 and not out.stdout
    assert out.stderr.strip().splitlines() == [
        f'curriculum.sh: {data}/manifest.json has no curriculum: build with ssrl build --curriculum "levels=1,2,3"']


# ---------------------------------------------------------------------------------------------------------------
# gpu_smoke.sh without a GPU: every outside program it calls is a stand-in that logs its arguments. The trainer's
# interpreter (PYTHON) fakes the prerequisite imports, verl (it writes the HF export the script asks for) and the
# model behind `ssrl eval` (the base model answers wrong, the trained one right); `ssrl eval` itself, its JSONL
# and --compare are the real ones.
GPU_SMOKE = CONFIGS / "gpu_smoke.sh"
FAKE_PYTHON = '''
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if args[0] == "-c":  # the script's import checks
    sys.exit(1 if args[1].strip() == "import vllm" and os.environ["FAKE_VLLM"] != "1" else 0)
if args[:2] == ["-m", "verl.trainer.main_ppo"]:  # the HF folder verl's checkpoint manager writes at the last step
    kv = {a.split("=", 1)[0].lstrip("+"): a.split("=", 1)[1] for a in args[2:]}
    steps = int(kv["trainer.total_training_steps"])
    # verl saves at the last step whenever save_freq > 0; the HF folder only with hf_model in save_contents
    if int(kv["trainer.save_freq"]) > 0 and "hf_model" in kv["actor_rollout_ref.actor.checkpoint.save_contents"]:
        hf = Path(kv["trainer.default_local_dir"]) / f"global_step_{steps}" / "actor" / "huggingface"
        hf.mkdir(parents=True)
        (hf / "config.json").write_text(json.dumps({"trained_steps": steps}))
    sys.exit(0)
if args[0].endswith("reward_per_task.py"):
    sys.exit(0)
if args[:3] == ["-m", "data_builders.cli", "eval"]:
    from data_builders import evaluate
    from data_builders.cli import main
    from tests.answer_support import wrong_answer

    def make_backend(name, model, max_new_tokens):
        trained = "trained_steps" in json.loads((Path(model) / "config.json").read_text())
        def generate(batch):
            answers = [json.loads(p.ground_truth)["answer"] for p in batch]
            return [f"<think>x</think> \\\\boxed{{{a if trained else wrong_answer(a)}}}" for a in answers]
        return generate

    evaluate.make_backend = make_backend
    sys.exit(main(args[2:]))
sys.exit(f"fake python: unexpected call {args}")
'''


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory):
    """OUT_DIR with a real (tiny) build in OUT_DIR/data, which gpu_smoke.sh reuses."""
    from data_builders import build
    from ssrl_plugin.config import load_config

    out = tmp_path_factory.mktemp("smoke")
    build(load_config(None, ["demo.num_rgb=4", "demo.num_rgbd=4", "demo.width=160", "demo.height=128"],
                      out=str(out / "data"), num_samples=20, val_fraction=0.3, seed=0,
                      mix={"shuffle": 1, "flip": 1, "crop": 1, "depth": 1, "position": 1}), progress=False)
    return out


def _gpu_stand_ins(env: dict, tmp_path: Path) -> Path:
    """A `nvidia-smi` on the environment's PATH; returns the stand-in PYTHON (FAKE_PYTHON under this interpreter)."""
    fake = tmp_path / "fake_python.py"
    fake.write_text(FAKE_PYTHON)
    python = tmp_path / "gpu_python"
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(fake))} \"$@\"\n")
    python.chmod(0o755)
    smi = Path(env["PATH"].split(os.pathsep)[0]) / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    return python


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("vllm", [True, False], ids=["vllm", "no-vllm"])
def test_gpu_smoke_evaluates_before_and_after_training(built, smoke_out, tmp_path, vllm):
    """`ssrl eval` of the base model, the GRPO steps, `ssrl eval` of verl's HF export of the last step on the same
    validation samples (the vllm backend where PYTHON imports vllm), then `ssrl eval --compare` of the two runs."""
    subprocess.run(["bash", "-n", str(GPU_SMOKE)], check=True)
    _, cwd, env = built
    python = _gpu_stand_ins(env, tmp_path)
    model = tmp_path / "base model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "preprocessor_config.json").write_text('{"patch_size": 14}')
    (smoke_out / "checkpoints").mkdir(exist_ok=True)
    (smoke_out / "checkpoints" / "stale").write_text("from an earlier run")
    log = tmp_path / "calls.log"
    run_env = {**env, "MODEL": str(model), "PYTHON": str(python), "FAKE_LOG": str(log), "FAKE_VLLM": "1" if vllm else "0",
               "EVAL_LIMIT": "4", "STEPS": "3"}
    out = subprocess.run(["bash", str(GPU_SMOKE), str(smoke_out)], cwd=cwd, env=run_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

    calls = _calls(log)
    evals = [(i, c) for i, c in enumerate(calls) if c[:3] == ["-m", "data_builders.cli", "eval"]]
    train = [i for i, c in enumerate(calls) if c[:2] == ["-m", "verl.trainer.main_ppo"]]
    assert len(evals) == 3 and len(train) == 1
    (i_before, before), (i_after, after), (i_cmp, cmp) = evals
    assert i_before < train[0] < i_after < i_cmp
    trained = smoke_out / "checkpoints" / "global_step_3" / "actor" / "huggingface"
    for argv, model_dir in ((before, model), (after, trained)):
        assert _value(argv, "--model") == str(model_dir) and _value(argv, "--data") == str(smoke_out / "data")
        assert _value(argv, "--split") == "val" and _value(argv, "--limit") == "4"
        assert _value(argv, "--backend") == ("vllm" if vllm else "transformers")
    runs = [_value(before, "--out"), _value(after, "--out")]
    assert cmp[cmp.index("--compare") + 1:cmp.index("--compare") + 3] == runs
    assert not (smoke_out / "checkpoints" / "stale").exists()  # checkpoints of an earlier run do not leak in
    assert json.loads((trained / "preprocessor_config.json").read_text()) == {"patch_size": 14}  # from the base

    # the real ssrl eval wrote both runs on the same 4 samples; --compare printed the per-task difference
    recs = [[json.loads(line) for line in Path(r).read_text().splitlines()] for r in runs]
    assert [r["id"] for r in recs[0]] == [r["id"] for r in recs[1]] and len(recs[0]) == 4
    assert [r["score"]["accuracy"] for r in recs[0]] == [0.0] * 4 and [r["score"]["accuracy"] for r in recs[1]] == [1.0] * 4
    table = out.stdout[out.stdout.index("a = "):]
    row = next(line.split() for line in table.splitlines() if line.startswith("all "))
    assert row[1:5] == ["4", "0.000", "1.000", "+1.000"]
    assert (smoke_out / "eval" / "compare.html").is_file()


def test_gpu_smoke_stops_when_verl_saves_no_model(built, smoke_out, tmp_path):
    """No HF export at the last step (here: verl told to save none): a one-line error, no after-eval."""
    _, cwd, env = built
    python = _gpu_stand_ins(env, tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    log = tmp_path / "calls.log"
    out = subprocess.run(["bash", str(GPU_SMOKE), str(smoke_out), "trainer.save_freq=-1"], cwd=cwd,
                         env={**env, "MODEL": str(model), "PYTHON": str(python), "FAKE_LOG": str(log), "FAKE_VLLM": "0",
                              "EVAL_LIMIT": "2"}, capture_output=True, text=True)
    assert out.returncode == 1 and "verl saved no model folder" in out.stderr.strip().splitlines()[-1]
    assert len([c for c in _calls(log) if c[:3] == ["-m", "data_builders.cli", "eval"]]) == 1  # the before-eval only
