"""The adaptive curriculum (data_builders.adaptive) inside verl 0.9.1: levels that follow the training accuracy.

Each step replays what verl's V1 sync trainer does (trainer/ppo/v1/trainer_base.py), on CPU, with verl's code
for every part that runs without a GPU:

1. the prompts come from our dataset (``data.custom_cls``, composed from the overrides of
   example_configs/verl_grpo_adaptive.sh) through verl's ``create_rl_dataset`` / ``create_rl_sampler`` and the
   StatefulDataLoader the trainer builds (``_fetch_one_gen_batch``);
2. each prompt gets ``rollout.n`` responses, right or wrong on a schedule (the synthetic part: no model), scored
   by verl's reward-loop naive manager (``load_reward_manager`` + ``run_single``, what the reward workers run);
3. the trajectories are stored as verl's ``AgentLoopWorkerTQ`` stores them (the prompt's fields + ``extra_fields``
   with ``reward_extra_info``) in an in-memory stand-in for TransferQueue (verl's GPU extra, absent here), and
   verl's own ``ReplayBuffer.sample`` (replay_buffer.py, loaded without the v1 package's GPU-only ``__init__``)
   selects them, through our ``AdaptiveReplayBuffer`` subclass loaded by verl's ``load_extern_type`` from the
   composed ``trainer.v1.sampler.custom_sampler``; its metrics are what the trainer logs;
4. a checkpoint is ``torch.save(train_dataloader.state_dict())`` (verl's ``data.pt``) and a resume is a new
   dataset + dataloader that ``load_state_dict`` it, as ``_load_checkpoint`` does.

The accuracies rise, stay high, collapse and recover: the levels go up, fall back and go up again, and a resumed
run continues with the same levels and the same rows as the uninterrupted one.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import sys
import types
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from torchdata.stateful_dataloader import StatefulDataLoader
from verl import DataProto
from verl.trainer.ppo.reward import load_reward_manager
from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
from verl.utils.dataset.rl_dataset import collate_fn
from verl.utils.import_utils import load_extern_type

from int_support import ROOT, compose_ppo, read_overrides, wrong_answer
from ssrl_plugin.errors import ConfigError

CONFIGS = ROOT / "example_configs"
BATCH, N = 5, 4  # prompts per step, responses per prompt (rollout.n)
TASKS = ["shuffle", "flip", "crop"]  # tasks with committed levels (RGB: the demo corpus has them)
STEPS = 16
# fraction of each prompt's responses that are right, per step: rising, high, collapsed, recovering
SCHEDULE = [0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
SMALL = ["++data.ssrl.adaptive.window=8", "++data.ssrl.adaptive.min_samples=4"]


# ------------------------------------------------------------------------------------------- TransferQueue stand-in
class KVBatchMeta:
    def __init__(self, partition_id, keys, tags, extra_info=None):
        self.partition_id, self.keys, self.tags, self.extra_info = partition_id, list(keys), list(tags), extra_info or {}


class FakeTQ(types.ModuleType):
    """The key-value calls verl's ReplayBuffer and our sampler make: tags and fields per (partition, key)."""

    def __init__(self):
        super().__init__("transfer_queue")
        self.KVBatchMeta = KVBatchMeta
        self.tags: dict[str, dict[str, dict]] = {}
        self.fields: dict[str, dict[str, dict]] = {}

    def kv_list(self, partition_id=None):
        return {p: dict(t) for p, t in self.tags.items() if partition_id in (None, p)}

    def kv_batch_put(self, keys, partition_id, tags=None, fields=None):
        for i, key in enumerate(keys):
            self.tags.setdefault(partition_id, {}).setdefault(key, {}).update(tags[i] if tags else {})
            if fields is not None:
                self.fields.setdefault(partition_id, {})[key] = fields[i]

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        rows = [self.fields[partition_id][k] for k in keys]
        return {f: [r[f] for r in rows] for f in select_fields}

    def kv_clear(self, keys, partition_id):
        for k in keys:
            self.tags.get(partition_id, {}).pop(k, None)
            self.fields.get(partition_id, {}).pop(k, None)


@pytest.fixture
def tq(monkeypatch):
    """verl's replay_buffer.py imported against the stand-in: the ``verl.trainer.ppo.v1`` package's __init__
    imports the agent loop, vLLM router and TransferQueue (GPU extras), so the module is loaded on its own."""
    fake = FakeTQ()
    monkeypatch.setitem(sys.modules, "transfer_queue", fake)
    pkg = types.ModuleType("verl.trainer.ppo.v1")
    pkg.__path__ = [str(Path(verl.__path__[0]) / "trainer" / "ppo" / "v1")]
    monkeypatch.setitem(sys.modules, "verl.trainer.ppo.v1", pkg)
    monkeypatch.delitem(sys.modules, "verl.trainer.ppo.v1.replay_buffer", raising=False)
    from data_builders import adaptive

    monkeypatch.setattr(adaptive, "_LAZY", {})
    return fake


def test_verl_v1_trainer_calls_the_custom_sampler_as_assumed():
    """The V1 trainer's hooks we rely on, read in the installed source (its module needs verl's GPU extras)."""
    source = (Path(verl.__path__[0]) / "trainer" / "ppo" / "v1" / "trainer_base.py").read_text()
    for fragment in ("sampler_cls = load_extern_type(custom_sampler.path, custom_sampler.name)",
                     "refill_fn=self._add_prompts_to_generate",
                     "batch, off_policy_metrics = self.replay_buffer.sample(",
                     "metrics.update(off_policy_metrics)",
                     "torch.save(self.train_dataloader.state_dict(), dataloader_local_path)",
                     "self.train_dataloader.load_state_dict(dataloader_state_dict)",
                     "batch_dict = next(self.train_dataloader_it)"):
        assert fragment in source, f"verl's V1 trainer changed: {fragment} not found"
    # sync mode: a step's prompts are drawn (prepare_step) before its sample(), the checkpoint saved after it
    fit = source[source.index("    def fit("):source.index("    def step(")]
    assert fit.index("batch = self.step(") < fit.index("self._save_checkpoint()")
    step = source[source.index("    def step("):source.index("    def _step_once(")]
    assert step.index("self.prepare_step()") < step.index("self._step_once(")
    ppo_yaml = (Path(verl.__path__[0]) / "trainer" / "config" / "ppo_trainer.yaml").read_text()
    assert "use_v1: true" in ppo_yaml


# ------------------------------------------------------------------------------------------- config and data
def adaptive_overrides(tmp_path, *extra) -> list[str]:
    """verl's ppo_trainer with exactly what verl_grpo_adaptive.sh passes, then a small demo set-up."""
    base = read_overrides(CONFIGS / "verl_grpo.overrides", MODEL="/nonexistent/model", TRAIN_FILES="'ssrl://train'",
                          VAL_FILES="'ssrl://val'", SSRL_REWARD_VERL=str(ROOT / "reward_fns" / "verl.py"))
    return [*base, *read_overrides(CONFIGS / "verl_grpo_online.overrides"),
            *read_overrides(CONFIGS / "verl_grpo_adaptive.overrides"),
            "++data.ssrl.build.num_samples=40", "++data.ssrl.build.val_fraction=0.25", "++data.ssrl.build.seed=0",
            f"++data.ssrl.build.tasks=[{','.join(TASKS)}]", "++data.ssrl.build.demo.num_rgb=6",
            "++data.ssrl.build.demo.num_rgbd=0", "++data.ssrl.build.demo.width=320",
            "++data.ssrl.build.demo.height=240", f"data.train_batch_size={BATCH}",
            f"actor_rollout_ref.rollout.n={N}", f"++data.cache_dir={tmp_path / 'cache'}",
            "++data.mm_processor_kwargs.min_pixels=3136", "++data.mm_processor_kwargs.max_pixels=12845056",
            "reward.custom_reward_function.path=pkg://reward_fns.verl", *extra]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return compose_ppo(adaptive_overrides(tmp_path_factory.mktemp("adaptive"), *SMALL))


def make(cfg, tokenizer, processor, split="train"):
    files = cfg.data.train_files if split == "train" else cfg.data.val_files
    return create_rl_dataset(files, cfg.data, tokenizer, processor, is_train=split == "train")


def loader(ds, cfg):
    """The train dataloader of verl's V1 trainer_base._init_dataloader (gen_batch_size = train_batch_size)."""
    return StatefulDataLoader(dataset=ds, batch_size=cfg.data.train_batch_size,
                              num_workers=cfg.data["dataloader_num_workers"], drop_last=True, collate_fn=collate_fn,
                              sampler=create_rl_sampler(cfg.data, ds))




def digest(prompt: dict) -> str:
    images = [e["bytes"] for e in prompt["raw_prompt"][0]["content"] if e["type"] == "image"]
    h = hashlib.sha256(prompt["extra_info"]["id"].encode() + prompt["reward_model"]["ground_truth"].encode())
    for b in images:
        h.update(hashlib.sha256(b).digest())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- one trainer step
class Run:
    """The parts of verl's V1 sync trainer a step goes through (module docstring), for one dataset/dataloader."""

    def __init__(self, cfg, tokenizer, processor, tq, state=None):
        self.cfg, self.tokenizer, self.tq = cfg, tokenizer, tq
        self.train_dataset = make(cfg, tokenizer, processor)
        self.train_dataloader = loader(self.train_dataset, cfg)
        if state is not None:
            self.train_dataloader.load_state_dict(state)
        self.train_dataloader_it = None
        sampler = cfg.trainer.v1.sampler
        sampler_cls = load_extern_type(sampler.custom_sampler.path, sampler.custom_sampler.name)
        # PPOTrainer._build_replay_buffer's arguments for a custom sampler
        self.replay_buffer = sampler_cls(
            trainer_mode=cfg.trainer.v1.trainer_mode, trainer_config=cfg.trainer.v1.get(cfg.trainer.v1.trainer_mode, {}),
            max_off_policy_threshold=sampler.max_off_policy_threshold,
            max_off_policy_strategy=sampler.max_off_policy_strategy, sampler_kwargs=sampler.sampler_kwargs,
            refill_fn=self._add_prompts_to_generate)
        self.reward = load_reward_manager(cfg, tokenizer)
        self.steps: list[dict] = []

    def _add_prompts_to_generate(self, num_prompts):  # the trainer's refill hook: unused in sync mode
        raise AssertionError("sync sampling asked for a refill")

    def _fetch_one_gen_batch(self) -> dict:
        try:
            if self.train_dataloader_it is None:
                self.train_dataloader_it = iter(self.train_dataloader)
            batch_dict = next(self.train_dataloader_it)
        except StopIteration:
            self.train_dataloader_it = iter(self.train_dataloader)
            batch_dict = next(self.train_dataloader_it)
        batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch_dict["raw_prompt"]))], dtype=object)
        return batch_dict

    def score(self, prompts: list[dict], texts: list[str]) -> list[dict]:
        """verl's reward-loop naive manager on one-response DataProtos (what a reward worker's compute_score runs)."""
        pad, plen, rlen = self.tokenizer.pad_token_id, 16, 64
        p_ids = self.tokenizer.encode("<|im_start|>assistant\n")[-plen:]
        items = []
        for prompt, text in zip(prompts, texts):
            ids = self.tokenizer.encode(text, add_special_tokens=False)[:rlen]
            prompt_t = torch.tensor([[pad] * (plen - len(p_ids)) + p_ids])
            resp = torch.tensor([ids + [pad] * (rlen - len(ids))])
            mask = torch.tensor([[0] * (plen - len(p_ids)) + [1] * (len(p_ids) + len(ids)) + [0] * (rlen - len(ids))])
            items.append(DataProto.from_dict(
                tensors={"prompts": prompt_t, "responses": resp, "attention_mask": mask,
                         "input_ids": torch.cat([prompt_t, resp], 1)},
                non_tensors={k: np.array([copy.deepcopy(prompt[k])], dtype=object)
                             for k in ("data_source", "reward_model", "extra_info")}))

        async def run_all():
            return await asyncio.gather(*(self.reward.run_single(d) for d in items))

        return self.reward.loop.run_until_complete(run_all())

    def step(self, global_steps: int) -> dict:
        batch_dict = self._fetch_one_gen_batch()  # prepare_step: the step's prompts
        n = len(batch_dict["uid"])
        prompts = [{k: batch_dict[k][i] for k in batch_dict if isinstance(batch_dict[k], np.ndarray)} for i in range(n)]
        right = round(N * SCHEDULE[(global_steps - 1) % len(SCHEDULE)])
        texts, owners = [], []
        for i, p in enumerate(prompts):
            answer = json.loads(p["reward_model"]["ground_truth"])["answer"]
            for s in range(N):
                texts.append(f"<think>look</think> \\boxed{{{answer if s < right else wrong_answer(answer)}}}")
                owners.append((i, s))
        results = self.score([prompts[i] for i, _ in owners], texts)
        # AgentLoopWorkerTQ: the prompt's fields + extra_fields.reward_extra_info per trajectory, then the status
        tq = self.tq
        tq.kv_batch_put(keys=[p["uid"] for p in prompts], partition_id="train",
                        tags=[{"is_prompt": True, "status": "running", "global_steps": global_steps}] * n)
        keys = [f"{prompts[i]['uid']}_{s}_0" for i, s in owners]
        fields = [{**prompts[i], "session_id": s, "extra_fields": {"reward_extra_info": r["reward_extra_info"]},
                   "reward_score": r["reward_score"]} for (i, s), r in zip(owners, results)]
        tq.kv_batch_put(keys=keys, partition_id="train", fields=fields,
                        tags=[{"status": "success", "global_steps": global_steps}] * len(keys))
        tq.kv_batch_put(keys=[p["uid"] for p in prompts], partition_id="train",
                        tags=[{"status": "finished"}] * n)
        batch, metrics = self.replay_buffer.sample(global_steps=global_steps, partition_id="train", batch_size=n)
        assert sorted(batch.keys) == sorted(keys)
        tq.kv_clear(keys=batch.keys, partition_id="train")  # fit() step 7
        record = {
            "step": global_steps,
            "drawn": [(p["extra_info"]["task"], p["extra_info"]["difficulty"]) for p in prompts],
            "digests": [digest(p) for p in prompts],
            "acc": float(np.mean([r["reward_extra_info"]["acc"] for r in results])),
            "levels": {k.split("level_")[1]: int(v) for k, v in metrics.items() if k.startswith("curriculum/level_")},
            "metrics": metrics,
        }
        self.steps.append(record)
        return record

    def checkpoint(self, path: Path) -> dict:
        torch.save(self.train_dataloader.state_dict(), path)  # PPOTrainer._save_checkpoint: data.pt
        return torch.load(path, weights_only=False)


# ------------------------------------------------------------------------------------------- tests
def test_levels_follow_the_accuracy_through_verls_data_and_reward_path(cfg, tokenizer, processor, tq):
    run = Run(cfg, tokenizer, processor, tq)
    ds = run.train_dataset
    assert type(run.replay_buffer).__name__ == "AdaptiveReplayBuffer"
    assert type(run.replay_buffer).__mro__[1].__module__ == "verl.trainer.ppo.v1.replay_buffer"
    assert ds.curriculum is not None and ds.curriculum.current() == {t: 1 for t in TASKS}
    trajectory = [run.step(s) for s in range(1, STEPS + 1)]
    for rec in trajectory:
        print(rec["step"], f"acc {rec['acc']:.2f}", "levels", rec["levels"], "drawn", rec["drawn"])
    # what was logged is the controller after the step, and each prompt was drawn at its task's level then
    assert trajectory[-1]["levels"] == ds.curriculum.current()
    for before, rec in zip([{t: 1 for t in TASKS}] + [r["levels"] for r in trajectory], trajectory):
        assert all(level == before[task] for task, level in rec["drawn"]), rec
        assert all(f"curriculum/window_{t}" in rec["metrics"] for t in TASKS)
    levels = {t: [r["levels"][t] for r in trajectory] for t in TASKS}
    top = {t: max(ds.curriculum.levels[t]) for t in TASKS}
    in_low_phase = {task for rec in trajectory[8:12] for task, _ in rec["drawn"]}
    assert len(in_low_phase) >= 2
    for t in TASKS:
        assert levels[t][0] == 1 and max(levels[t][:8]) >= 2, (t, levels[t])  # accuracy rising to 1: up
        assert all(b - a in (-1, 0, 1) for a, b in zip(levels[t], levels[t][1:]))  # one level at a time
        if t in in_low_phase:  # accuracy 0 for 4 steps: back down (to the easiest, for the tasks drawn most)
            assert levels[t][11] < max(levels[t][:8]), (t, levels[t])
    assert sum(max(levels[t][:8]) == top[t] for t in TASKS) >= 2  # the hardest level reached
    assert any(levels[t][11] == 1 for t in in_low_phase) and any(levels[t][-1] > levels[t][11] for t in TASKS)
    assert ds.curriculum.history and all(abs(to - frm) == 1 for _, _, frm, to in ds.curriculum.history)


def test_legacy_trainer_on_batch_end_feeds_the_same_controller(cfg, tokenizer, processor, tq):
    """verl's legacy loop (trainer.use_v1=false) merges the reward keys into the batch (``non_tensor_batch.update``)
    and calls ``train_dataset.on_batch_end(batch=batch)``: the same accuracies move the levels the same way."""
    source = (Path(verl.__path__[0]) / "trainer" / "ppo" / "ray_trainer.py").read_text()
    assert 'self.train_dataset.on_batch_end(batch=batch)' in source
    assert "batch.non_tensor_batch.update({k: np.array(v) for k, v in reward_extra_infos_dict.items()})" in source
    v1 = Run(cfg, tokenizer, processor, tq)
    legacy = make(cfg, tokenizer, processor)
    dl = loader(legacy, cfg)
    it = iter(dl)
    for s in range(1, 9):
        rec = v1.step(s)
        try:
            batch_dict = next(it)
        except StopIteration:  # the legacy fit loop: `for epoch ...: for batch_dict in self.train_dataloader`
            it = iter(dl)
            batch_dict = next(it)
        prompts = [{k: batch_dict[k][i] for k in ("data_source", "extra_info", "reward_model", "raw_prompt")}
                   for i in range(BATCH)]
        assert [digest(p) for p in prompts] == rec["digests"]
        right = round(N * SCHEDULE[s - 1])
        texts = [f"\\boxed{{{(a := json.loads(p['reward_model']['ground_truth'])['answer']) if k < right else wrong_answer(a)}}}"
                 for p in prompts for k in range(N)]
        results = v1.score([p for p in prompts for _ in range(N)], texts)
        batch = DataProto.from_single_dict({k: v for k, v in batch_dict.items()}).repeat(N, interleave=True)
        batch.non_tensor_batch.update({k: np.array([r["reward_extra_info"][k] for r in results])
                                       for k in results[0]["reward_extra_info"]})
        legacy.on_batch_end(batch=batch)
        assert legacy.curriculum.current() == rec["levels"], s


@pytest.mark.parametrize("save_at", [5, 6])  # mid-epoch, and the end of epoch 0 (6 steps of 5 prompts)
def test_resume_restores_the_levels_and_continues_identically(cfg, tokenizer, processor, tq, tmp_path, save_at):
    full = Run(cfg, tokenizer, processor, tq)
    expected = [full.step(s) for s in range(1, STEPS + 1)]
    first = Run(cfg, tokenizer, processor, tq)
    for s in range(1, save_at + 1):
        assert first.step(s)["digests"] == expected[s - 1]["digests"]
    state = first.checkpoint(tmp_path / "data.pt")
    saved = first.train_dataset.state_dict()
    assert saved["curriculum"]["levels"] == expected[save_at - 1]["levels"]
    assert saved["curriculum"]["batches"] == save_at and saved["curriculum"]["windows"]
    resumed = Run(cfg, tokenizer, processor, tq, state=state)  # a restarted run: new dataset, dataloader, sampler
    assert resumed.train_dataset.curriculum.current() == {t: 1 for t in TASKS}  # restored when iterated
    got = [resumed.step(s) for s in range(save_at + 1, STEPS + 1)]
    assert resumed.train_dataset.state_dict()["completed_epochs"] >= 1
    for rec, exp in zip(got, expected[save_at:]):
        assert rec["digests"] == exp["digests"], rec["step"]  # the same prompts at the same levels
        assert rec["drawn"] == exp["drawn"] and rec["levels"] == exp["levels"] and rec["metrics"] == exp["metrics"]
    assert resumed.train_dataset.curriculum.state_dict() == full.train_dataset.curriculum.state_dict()


def test_validation_is_fixed_and_takes_every_level(cfg, tokenizer, processor):
    val = make(cfg, tokenizer, processor, "val")
    assert val.curriculum is None
    rows = [val.row(0, i) for i in range(len(val))]
    assert [val.row(0, i) for i in range(len(val))] == rows
    by_task = {}
    for r in rows:
        by_task.setdefault(r["extra_info"]["task"], []).append(r["extra_info"]["difficulty"])
    levels = val.dataframe.rows.task_levels
    for task, got in by_task.items():  # the task's k-th validation sample is at its (k mod #levels)-th level
        assert sorted(got) == sorted(levels[task][k % len(levels[task])] for k in range(len(got))), (task, got)
    assert sum(len(set(got)) > 1 for got in by_task.values()) >= 2


def test_workers_are_refused_and_the_default_is_unchanged(tmp_path, tokenizer, processor):
    with pytest.raises(ConfigError, match="dataloader_num_workers=0"):
        make(compose_ppo(adaptive_overrides(tmp_path, "data.dataloader_num_workers=2")), tokenizer, processor)
    plain = compose_ppo([o for o in adaptive_overrides(tmp_path) if "adaptive" not in o])
    ds = make(plain, tokenizer, processor)
    assert ds.curriculum is None and ds.state_dict() == {"completed_epochs": 0}
    assert ds.row(0, 0)["extra_info"]["difficulty"] == 0  # no level
    ds.on_batch_end(batch=None)  # a no-op without the curriculum


def test_example_script_composes(tmp_path):
    """verl_grpo_adaptive.sh (SSRL_DRY_RUN=1, from another directory) gives verl's Hydra config with our dataset,
    our sampler and the curriculum section; the dataset class and sampler load through verl's loaders."""
    import os
    import subprocess

    from verl.utils.dataset.rl_dataset import get_dataset_class

    from data_builders.adaptive import AdaptiveConfig, adaptive_config_from

    env = {k: v for k, v in os.environ.items() if not k.startswith("SSRL_")}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), SSRL_DRY_RUN="1")
    out = subprocess.run(["bash", str(CONFIGS / "verl_grpo_adaptive.sh"), "++data.ssrl.adaptive.up=0.8"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    argv = out.stdout.splitlines()
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
    cfg = compose_ppo(argv[3:])
    assert cfg.trainer.use_v1 and cfg.trainer.v1.trainer_mode == "sync"
    assert (cfg.trainer.v1.sampler.custom_sampler.path, cfg.trainer.v1.sampler.custom_sampler.name) == (
        "pkg://data_builders.adaptive", "AdaptiveReplayBuffer")
    assert cfg.data.dataloader_num_workers == 0
    assert get_dataset_class(cfg.data).__name__ == "OnlineSpatialDataset"
    assert adaptive_config_from(cfg.data) == AdaptiveConfig(up=0.8, down=0.35, window=640, min_samples=320)
