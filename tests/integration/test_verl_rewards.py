"""Our reward inside verl 0.9.1's reward managers, loaded the way verl loads it (file path and pkg://).

A DataProto batch like the rollout's (left-padded prompts, right-padded responses of different lengths, the
attention mask over both, ``data_source``/``reward_model``/``extra_info`` from our parquet) holds correct, wrong
and malformed responses. The legacy naive and batch managers and the reward-loop naive manager (directly, and
through verl's Ray RewardLoopManager) must decode each response exactly, score it as our reward does, put the
score at the last valid response token and nowhere else, and report the same extra keys for every sample.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager
from verl.workers.reward_manager import get_reward_manager_cls

import reward_fns
from int_support import compose_ppo, shards, wrong_answer

REF_KINDS = {"file": reward_fns.VERL_FILE, "pkg": "pkg://reward_fns.verl"}
KEYS = {"score", "acc", "format", "hedged", "length_penalty", "repetition_penalty"}
REWARD_KWARGS = {"format_weight": 0.2}  # not the default, so the kwargs must reach the function




def responses_for(row: dict) -> list[tuple[str, str]]:
    answer = json.loads(row["reward_model"]["ground_truth"])["answer"]
    return [
        ("correct", f"<think>I compare the regions carefully.</think> The answer is \\boxed{{{answer}}}."),
        ("wrong", f"<think>Looks like this.</think>\\boxed{{{wrong_answer(answer)}}}"),
        ("no_format", f"The answer is \\boxed{{{answer}}}"),
        ("hedged", f"<think>unsure</think> \\boxed{{{answer}}} or maybe \\boxed{{{wrong_answer(answer)}}}"),
        ("unclosed", "<think>never closes \\boxed{" + answer),
        ("unicode", f"<think>ünïcödé 中文 ✓</think>\\boxed{{{answer}}}"),
    ]


@pytest.fixture(scope="module")
def rows(built):
    rows = [r for f in shards(built, "verl", "val") + shards(built, "verl", "train") for r in pq.read_table(f).to_pylist()]
    by_task = {}
    for r in rows:
        by_task.setdefault(r["extra_info"]["task"], r)
    assert set(by_task) == {"shuffle", "flip", "crop", "depth", "position"}
    return list(by_task.values())


@pytest.fixture(scope="module")
def batch(rows, tokenizer):
    """(DataProto, [(kind, row, response text, response length)]) with padding on both sides."""
    prompt_len, resp_len = 24, 96
    pad = tokenizer.pad_token_id
    prompts, responses, masks, meta = [], [], [], []
    for row in rows:
        for kind, text in responses_for(row):
            ids = tokenizer.encode(text, add_special_tokens=False)
            assert tokenizer.decode(ids, skip_special_tokens=True) == text, "the tokenizer must round-trip"
            assert len(ids) < resp_len
            p_ids = tokenizer.encode("<|im_start|>user\nquestion<|im_end|>\n<|im_start|>assistant\n")
            p_ids = p_ids[-prompt_len:]
            prompts.append([pad] * (prompt_len - len(p_ids)) + p_ids)
            responses.append(ids + [pad] * (resp_len - len(ids)))
            masks.append([0] * (prompt_len - len(p_ids)) + [1] * len(p_ids) + [1] * len(ids) + [0] * (resp_len - len(ids)))
            meta.append((kind, row, text, len(ids)))
    n = len(meta)
    tensors = {
        "prompts": torch.tensor(prompts), "responses": torch.tensor(responses),
        "attention_mask": torch.tensor(masks), "input_ids": torch.cat([torch.tensor(prompts), torch.tensor(responses)], 1),
    }
    non_tensors = {
        "data_source": np.array([m[1]["data_source"] for m in meta], dtype=object),
        "reward_model": np.array([dict(m[1]["reward_model"]) for m in meta], dtype=object),
        "extra_info": np.array([copy.deepcopy(m[1]["extra_info"]) for m in meta], dtype=object),
    }
    data = DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)
    assert len(data) == n and data.non_tensor_batch["extra_info"].shape == (n,)
    return data, meta


def expected(meta, **kwargs) -> list[dict]:
    from reward_fns import verl as ours

    return [ours.compute_score(m[1]["data_source"], m[2], m[1]["reward_model"]["ground_truth"], m[1]["extra_info"],
                               **kwargs) for m in meta]


def reward_config(ref: str, **extra):
    return OmegaConf.create({"reward": {"custom_reward_function": {
        "path": ref, "name": "compute_score", "reward_kwargs": dict(REWARD_KWARGS)}, **extra}})


def check_tensor(reward, meta, scores):
    assert reward.shape == (len(meta), 96) and reward.dtype == torch.float32
    for i, (_, _, _, length) in enumerate(meta):
        row = reward[i]
        assert row[length - 1].item() == pytest.approx(scores[i]["score"])
        rest = torch.cat([row[: length - 1], row[length:]])
        assert torch.count_nonzero(rest) == 0, f"sample {i}: reward outside the last valid response token"


def check_kinds(meta, scores):
    by_kind = {}
    for m, s in zip(meta, scores):
        by_kind.setdefault(m[0], []).append(s)
    assert all(s["acc"] == 1.0 and s["format"] == 1.0 and s["score"] == pytest.approx(1.0) for s in by_kind["correct"])
    assert all(s["acc"] == 1.0 for s in by_kind["unicode"])
    assert all(s["acc"] == 0.0 and s["format"] == 1.0 and s["score"] == pytest.approx(0.2) for s in by_kind["wrong"])
    assert all(s["format"] == 0.0 and s["acc"] == 1.0 and s["score"] == pytest.approx(0.8) for s in by_kind["no_format"])
    assert all(s["hedged"] == 1.0 and s["acc"] == 0.0 for s in by_kind["hedged"])
    assert all(s["acc"] == 0.0 and s["format"] == 0.0 and s["score"] == 0.0 for s in by_kind["unclosed"])


@pytest.mark.parametrize("kind", list(REF_KINDS))
def test_verl_loads_our_reward(kind):
    fn = get_custom_reward_fn(reward_config(REF_KINDS[kind]))
    out = fn(data_source="spatial_ssrl/crop", solution_str="<think>x</think>\\boxed{B}",
             ground_truth='{"answer":"B","task":"crop"}', extra_info={"task": "crop"})
    assert set(out) == KEYS and out["score"] == pytest.approx(1.0)
    out = fn(data_source="spatial_ssrl/crop", solution_str="\\boxed{B}", ground_truth='{"answer":"B","task":"crop"}')
    assert out["score"] == pytest.approx(0.8)  # format_weight 0.2 from reward_kwargs


@pytest.mark.parametrize("kind", list(REF_KINDS))
@pytest.mark.parametrize("manager", ["naive", "batch"])
def test_legacy_managers(manager, kind, batch, tokenizer):
    data, meta = batch
    fn = get_custom_reward_fn(reward_config(REF_KINDS[kind]))
    cls = get_reward_manager_cls(manager)
    mgr = cls(tokenizer=tokenizer, num_examine=1, compute_score=fn, reward_fn_key="data_source")
    out = mgr(copy.deepcopy(data), return_dict=True)
    scores = expected(meta, **REWARD_KWARGS)
    check_tensor(out["reward_tensor"], meta, scores)
    info = out["reward_extra_info"]
    assert set(info) == KEYS and all(len(v) == len(meta) for v in info.values())
    for key in KEYS:
        assert info[key] == pytest.approx([s[key] for s in scores])
    check_kinds(meta, scores)


def run_reward_loop(mgr, data: DataProto) -> list[dict]:
    async def run_all():
        import asyncio

        return await asyncio.gather(*(mgr.run_single(data[i : i + 1]) for i in range(len(data))))

    return mgr.loop.run_until_complete(run_all())


@pytest.mark.parametrize("kind", list(REF_KINDS))
def test_reward_loop_naive_manager(kind, batch, tokenizer):
    data, meta = batch
    cfg = compose_ppo([f"reward.custom_reward_function.path={REF_KINDS[kind]}",
                       "reward.custom_reward_function.name=compute_score",
                       *(f"++reward.custom_reward_function.reward_kwargs.{k}={v}" for k, v in REWARD_KWARGS.items())])
    assert cfg.reward.reward_manager.name == "naive" and cfg.reward.reward_manager.source == "register"
    mgr = load_reward_manager(cfg, tokenizer)
    assert type(mgr).__module__ == "verl.experimental.reward_loop.reward_manager.naive"
    outputs = run_reward_loop(mgr, copy.deepcopy(data))
    scores = expected(meta, **REWARD_KWARGS)
    assert [o["reward_score"] for o in outputs] == pytest.approx([s["score"] for s in scores])
    # what RewardLoopManager.compute_rm_score does with them: keys of the first sample, indexed in every other
    infos = [o["reward_extra_info"] for o in outputs]
    assert all(set(i) == KEYS for i in infos)
    extra = {k: np.array([i[k] for i in infos]) for k in infos[0]}
    assert all(v.shape == (len(meta),) and v.dtype.kind == "f" for v in extra.values())
    check_tensor(type(mgr).assemble_rm_scores(data, [o["reward_score"] for o in outputs]), meta, scores)
    check_kinds(meta, scores)


def test_reward_loop_through_ray(batch, tokenizer_dir):
    """verl's RewardLoopManager: Ray actors load the tokenizer folder and our reward (pkg://), score the batch."""
    import ray
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    data, meta = batch
    cfg = compose_ppo(["reward.custom_reward_function.path=pkg://reward_fns.verl",
                       "reward.custom_reward_function.name=compute_score",
                       "reward.num_workers=1", f"actor_rollout_ref.model.path={tokenizer_dir}",
                       *(f"++reward.custom_reward_function.reward_kwargs.{k}={v}" for k, v in REWARD_KWARGS.items())])
    temp = tempfile.mkdtemp(prefix="ssrl-ray-", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    try:
        out = RewardLoopManager(cfg).compute_rm_score(copy.deepcopy(data))
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    scores = expected(meta, **REWARD_KWARGS)
    check_tensor(out.batch["rm_scores"], meta, scores)
    assert set(out.meta_info["reward_extra_keys"]) == KEYS
    for key in KEYS:
        assert out.non_tensor_batch[key].tolist() == pytest.approx([s[key] for s in scores])


def test_reward_per_task_reads_verl_rollout_dumps(batch, tmp_path):
    """example_configs/reward_per_task.py (gpu_smoke.sh) on rollouts in the format of verl's dump writer.

    The writer (PPOTrainer._write_generations, trainer.rollout_data_dir) lives in verl's trainer module, which
    imports TransferQueue (verl's GPU extras): its format is checked in the installed source instead."""
    import subprocess
    import sys
    from pathlib import Path

    import verl

    from int_support import ROOT

    source = (Path(verl.__path__[0]) / "trainer" / "ppo" / "v1" / "trainer_base.py").read_text()
    writer = source[source.index("def _write_generations("):source.index("def _dump_generations(")]
    for fragment in ('f"{global_steps}.jsonl"', '"output": outputs', '"gts": gts', '"score": scores', "json.dumps(entry"):
        assert fragment in writer, f"verl's rollout dump changed: {fragment} not found"
    assert "gts = [item.get(\"ground_truth\", None) for item in reward_model.tolist()]" in source

    _, meta = batch
    scores = expected(meta, format_weight=0.1)
    for step in (1, 2):
        with open(tmp_path / f"{step}.jsonl", "w") as f:
            for m, s in zip(meta, scores):
                entry = {"input": "prompt", "output": m[2], "gts": m[1]["reward_model"]["ground_truth"],
                         "score": s["score"], "step": step}
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "example_configs" / "reward_per_task.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("reward per task") == 2
    n = len(responses_for(meta[0][1]))
    accuracy = sum(s["acc"] for s in scores) / len(meta)
    for task in ("shuffle", "flip", "crop", "depth", "position"):
        line = next(ln for ln in out.splitlines() if ln.split()[:1] == [task])
        fields = line.split()
        assert int(fields[1]) == n
        task_scores = [s["score"] for s, m in zip(scores, meta) if m[1]["extra_info"]["task"] == task]
        assert float(fields[2]) == pytest.approx(sum(task_scores) / n, abs=1e-3)
    total = next(ln for ln in out.splitlines() if ln.split()[:1] == ["all"]).split()
    assert int(total[1]) == len(meta) and float(total[3]) == pytest.approx(accuracy, abs=1e-3)


def test_val_core_per_task_curves_are_exact_over_validation_batches(built):
    """verl 0.9.1's ``_validate`` extends ``data_source`` and every reward key over all validation batches, then
    ``process_validation_metrics`` groups by data source: ``val-core/spatial_ssrl/<task>/acc/mean@1`` is the task's
    accuracy over the split whatever ``val_batch_size`` (replayed here with verl's own function; its trainer module
    needs verl's GPU extras to import, so its metric naming is checked in the installed source)."""
    from pathlib import Path

    import verl
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    source = (Path(verl.__path__[0]) / "trainer" / "ppo" / "ray_trainer.py").read_text()
    for fragment in ('core_var = "acc" if "acc" in var2metric2val else "reward"',
                     'pfx = f"{metric_sec}/{data_source}/{var_name}/{metric_name}"',
                     "data_sources = np.concatenate(data_source_lst, axis=0)"):
        assert fragment in source, f"verl's validation metrics changed: {fragment} not found"
    fn = get_custom_reward_fn(reward_config(REF_KINDS["pkg"]))
    rows = [r for f in shards(built, "verl", "val") + shards(built, "verl", "train") for r in pq.read_table(f).to_pylist()]
    rng = np.random.default_rng(0)
    right = rng.random(len(rows)) < 0.6
    texts = []
    for r, ok in zip(rows, right):
        answer = json.loads(r["reward_model"]["ground_truth"])["answer"]
        texts.append(f"<think>x</think> \\boxed{{{answer if ok else wrong_answer(answer)}}}")
    truth = {}
    for task in ("shuffle", "flip", "crop", "depth", "position"):
        hits = [ok for r, ok in zip(rows, right) if r["extra_info"]["task"] == task]
        truth[task] = float(np.mean(hits))
    for batch_size in (1, 4, 7, len(rows)):
        order = rng.permutation(len(rows))
        data_source_lst, infos = [], {}
        for start in range(0, len(rows), batch_size):
            idx = order[start : start + batch_size]
            scores = [fn(data_source=rows[i]["data_source"], solution_str=texts[i],
                         ground_truth=rows[i]["reward_model"]["ground_truth"], extra_info=rows[i]["extra_info"]) for i in idx]
            data_source_lst.append(np.array([rows[i]["data_source"] for i in idx], dtype=object))
            for key in scores[0]:
                infos.setdefault(key, []).extend(s[key] for s in scores)
        data_sources = np.concatenate(data_source_lst, axis=0)
        uids = [rows[i]["extra_info"]["id"] for i in order]
        metrics = process_validation_metrics(data_sources, uids, infos)
        for task, acc in truth.items():
            assert metrics[f"spatial_ssrl/{task}"]["acc"]["mean@1"] == pytest.approx(acc), (batch_size, task)
