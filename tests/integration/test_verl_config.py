"""verl 0.9.1's Hydra config (ppo_trainer) composed with exactly what our example scripts pass.

The scripts run with SSRL_DRY_RUN=1 (they print their command), and the overrides after ``-m
verl.trainer.main_ppo`` go through Hydra's compose, as ``python -m verl.trainer.main_ppo`` would do:

* no unknown key: Hydra rejects a plain override of a key verl does not declare; each ``++`` key we add must be a
  field of the dataclass its section is turned into (``_target_``) or sit in a free dict verl passes on;
* no missing key (``???``) left but the reward model's engine (the reward model is off); interpolations resolve;
* the same for gpu_smoke.sh (item 6: a few GRPO steps on a GPU, not run here) on top of verl_grpo.sh;
* verl's own checks pass: ``validate_config`` as ``main_ppo.main`` runs it, the actor and rollout sections
  converted to their dataclasses, the reward function and the dataset class loaded from the config.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys

import pytest
from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config
from verl.utils.dataset.rl_dataset import get_dataset_class

from int_support import ROOT, compose_ppo, read_overrides, shards

CONFIGS = ROOT / "example_configs"
# sections verl hands on as free dicts (no dataclass): processor kwargs, reward kwargs, our dataset's settings
FREE_DICTS = ("data.mm_processor_kwargs", "reward.custom_reward_function.reward_kwargs", "data.ssrl")


def dry_run(script: str, args, cwd, **env_extra) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSRL_")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # `ssrl` of this environment
    env["SSRL_DRY_RUN"] = "1"
    env.update(env_extra)
    out = subprocess.run(["bash", str(CONFIGS / script), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    argv = out.stdout.splitlines()
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
    return argv[3:]


@pytest.fixture(scope="module")
def scripts(built, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("elsewhere")  # the scripts must not depend on the working directory
    model = tmp_path_factory.mktemp("model")
    (model / "config.json").write_text("{}")
    smoke = tmp_path_factory.mktemp("smoke")
    (smoke / "data").symlink_to(built, target_is_directory=True)  # gpu_smoke.sh reuses a built OUT_DIR/data
    return {
        "verl_grpo.sh": dry_run("verl_grpo.sh", [str(built)], cwd),
        "verl_grpo_online.sh": dry_run("verl_grpo_online.sh", [], cwd),
        "gpu_smoke.sh": dry_run("gpu_smoke.sh", [str(smoke)], cwd, MODEL=str(model), NGPUS="2"),
    }


def _added_keys(overrides) -> list[str]:
    return [o.split("=", 1)[0].lstrip("+") for o in overrides if o.startswith("+")]


def _target_field_ok(base: DictConfig, key: str) -> bool:
    """Is ``key`` (absent from verl's YAML) a field of the dataclass of its nearest ``_target_`` section?"""
    parts = key.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        node = OmegaConf.select(base, ".".join(parts[:depth]))
        if isinstance(node, DictConfig) and "_target_" in node:
            module, _, name = node._target_.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            return parts[depth] in {f.name for f in dataclasses.fields(cls)}
    return False


@pytest.mark.parametrize("script", ["verl_grpo.sh", "verl_grpo_online.sh", "gpu_smoke.sh"])
def test_example_overrides_compose_without_unknown_or_missing_keys(script, scripts):
    overrides = scripts[script]
    base = compose_ppo([])
    cfg = compose_ppo(overrides)  # Hydra raises on a plain override of an undeclared key
    for key in _added_keys(overrides):
        if OmegaConf.select(base, key, default="__absent__") != "__absent__":
            continue  # ++ on a declared key: a plain override
        assert key.startswith(FREE_DICTS) or _target_field_ok(base, key), f"{key}: verl does not read this key"
    # verl leaves `???` in its YAML for what must be chosen: we fill the rollout engine; only the reward model's
    # engine stays open, and the reward model is off (the reward is our function)
    assert "actor_rollout_ref.rollout.name" in OmegaConf.missing_keys(base)
    assert OmegaConf.missing_keys(cfg) == {"reward.reward_model.rollout.name"} and not cfg.reward.reward_model.enable
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert resolved["actor_rollout_ref"]["rollout"]["prompt_length"] == resolved["data"]["max_prompt_length"]

    # what verl.trainer.main_ppo.main does before starting Ray
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    assert need_reference_policy(cfg) and not need_critic(cfg)  # GRPO with a KL loss: a reference, no critic
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert rollout.limit_images == 5 and rollout.n == (4 if script == "gpu_smoke.sh" else 5) and rollout.name == "vllm"
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert actor.use_kl_loss and actor.kl_loss_type == "low_var_kl" and actor.optim.lr == pytest.approx(1e-6)

    fn = get_custom_reward_fn(cfg)
    out = fn(data_source="spatial_ssrl/crop", solution_str="\\boxed{A}", ground_truth='{"answer":"A","task":"crop"}')
    assert out["score"] == pytest.approx(0.9)  # format_weight 0.1 (the paper's) reached the reward
    assert cfg.algorithm.adv_estimator == "grpo" and cfg.reward.reward_manager.name == "naive"


def test_gpu_smoke_is_the_example_recipe_made_small(scripts, tmp_path_factory):
    cfg = compose_ppo(scripts["gpu_smoke.sh"])
    assert cfg.trainer.n_gpus_per_node == 2 and cfg.data.train_batch_size == 16 and cfg.trainer.total_training_steps == 4
    assert cfg.actor_rollout_ref.rollout.n == 4 and cfg.trainer.logger == ["console"]
    assert cfg.trainer.rollout_data_dir.endswith("/rollouts") and os.path.isabs(cfg.trainer.rollout_data_dir)
    assert cfg.reward.custom_reward_function.path.endswith("reward_fns/verl.py")
    assert os.path.isabs(cfg.actor_rollout_ref.model.path)
    # everything else is verl_grpo.sh's recipe
    assert cfg.actor_rollout_ref.rollout.limit_images == 5 and cfg.data.max_prompt_length == 4096


def test_parquet_script_points_at_our_files(scripts, built):
    cfg = compose_ppo(scripts["verl_grpo.sh"])
    assert list(cfg.data.train_files) == shards(built, "verl", "train")
    assert list(cfg.data.val_files) == shards(built, "verl", "val")
    assert get_dataset_class(cfg.data).__name__ == "RLHFDataset"


def test_online_script_selects_our_dataset(scripts):
    cfg = compose_ppo(scripts["verl_grpo_online.sh"])
    cls = get_dataset_class(cfg.data)
    assert cls.__module__ == "data_builders.online" and cls.__name__ == "OnlineSpatialDataset"
    assert (cfg.data.train_files, cfg.data.val_files) == ("ssrl://train", "ssrl://val")
    from data_builders.online import build_config_from

    build = build_config_from(cfg.data)
    assert (build.num_samples, build.val_fraction, build.seed) == (78000, 0.0125, 0)
    # the documented way to point it at your images and resize it: ++ keys after the script's own
    argv = dry_run("verl_grpo_online.sh", ["++data.ssrl.build.rgb=[/data/coco/train2017]",
                                           "++data.ssrl.build.rgbd=['diode:/data/diode/train']",
                                           "++data.ssrl.build.num_samples=2000", "++data.ssrl.build.task.crop.size_frac=0.4"],
                   ROOT)
    build = build_config_from(compose_ppo(argv).data)
    assert build.rgb == ["/data/coco/train2017"] and build.rgbd == ["diode:/data/diode/train"]
    assert build.num_samples == 2000 and build.task["crop"]["size_frac"] == 0.4 and build.val_fraction == 0.0125


def test_overrides_files_have_only_known_placeholders():
    for name in ("verl_grpo.overrides", "verl_grpo_online.overrides"):
        lines = read_overrides(CONFIGS / name, MODEL="m", TRAIN_FILES="['t']", VAL_FILES="['v']", SSRL_REWARD_VERL="r")
        assert lines and all("=" in ln for ln in lines)


def test_scripts_are_valid_bash_and_gpu_smoke_needs_a_local_model(tmp_path):
    for script in ("verl_grpo_online.sh", "gpu_smoke.sh"):
        subprocess.run(["bash", "-n", str(CONFIGS / script)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSRL_") and k != "MODEL"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for model in (None, "Qwen/Qwen2.5-VL-3B-Instruct"):  # a hub name is not a local checkpoint
        out = subprocess.run(["bash", str(CONFIGS / "gpu_smoke.sh"), str(tmp_path / "out")], cwd=tmp_path,
                             env={**env, **({"MODEL": model} if model else {})}, capture_output=True, text=True)
        assert out.returncode == 1 and "local Qwen2.5-VL checkpoint" in out.stderr and not out.stdout
    assert not (tmp_path / "out" / "data").exists()  # nothing built before the checks
