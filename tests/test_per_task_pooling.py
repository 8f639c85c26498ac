"""Per-task accuracy stays exact when EasyR1 pools metric lists across batches (validation, online filtering).

EasyR1's ``_validate`` extends one list per reward key over every validation batch and logs ``np.mean`` of it
(``reduce_metrics``); these tests replay that arithmetic on our reward's output over many batch sizes and row
orders, with task mixes that differ from batch to batch, and compare every logged ``accuracy_<task>`` with the
task's true accuracy over the split.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from data_builders.records import Record, with_split_rows
from data_builders.writers import DatasetWriter
from ssrl_plugin.config import OutputConfig
from test_build import demo_build, read_rows
from test_rewards import EASYR1_FILE, load_like_easyr1


def pooled(module, rows: list[tuple[str, str]], batch_size: int) -> dict[str, float]:
    """EasyR1 ``_validate``: reward per batch, ``reward_metrics_lst[key].extend(value)``, then np.mean per key."""
    lists: dict[str, list[float]] = defaultdict(list)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        scores = module.compute_score([{"response": r, "response_length": 1, "ground_truth": g} for r, g in batch])
        metrics: dict[str, list[float]] = defaultdict(list)
        for s in scores:  # the reward manager: one list per key over the batch
            for k, v in s.items():
                metrics[k].append(v)
        for k, v in metrics.items():
            lists[k].extend(v)
    return {k: float(np.mean(v)) for k, v in lists.items()}


def responses(gts: list[str], seed: int) -> tuple[list[tuple[str, str]], dict[str, float]]:
    """A random right or wrong boxed answer per row (task-dependent hit rates), and the true per-task accuracy."""
    rng = np.random.default_rng(seed)
    rate = {"shuffle": 0.2, "flip": 0.5, "crop": 0.7, "depth": 0.4, "position": 0.9}
    rows, hits = [], defaultdict(list)
    for gt in gts:
        obj = json.loads(gt)
        right = bool(rng.random() < rate[obj["task"]])
        answer = obj["answer"] if right else "Z"  # "Z" is never an answer
        rows.append((f"<think>x</think> \\boxed{{{answer}}}", gt))
        hits[obj["task"]].append(float(right))
    return rows, {t: float(np.mean(v)) for t, v in hits.items()}


@pytest.fixture(scope="module")
def val_truths(tmp_path_factory):
    out = tmp_path_factory.mktemp("pool")
    demo_build(out, num_samples=150, val_fraction=0.4)
    return [r["answer"] for r in read_rows(out, "easyr1", "val")], out


def test_ground_truths_carry_their_split_counts(val_truths):
    gts, out = val_truths
    manifest = json.loads((out / "manifest.json").read_text())
    counts = {t: sum(per_variant.values()) for t, per_variant in manifest["counts"]["val"].items()}
    assert sum(counts.values()) == len(gts)
    for gt in gts:
        obj = json.loads(gt)
        assert obj["task_rows"] == counts[obj["task"]] and obj["split_rows"] == len(gts)
    verl = [r["reward_model"]["ground_truth"] for r in read_rows(out, "verl", "val")]
    assert sorted(verl) == sorted(gts)  # the verl layout carries the same ground truths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_pooling_is_exact_for_any_batch_size_and_order(val_truths, seed):
    gts, _ = val_truths
    module = load_like_easyr1(EASYR1_FILE)
    rows, truth = responses(gts, seed)
    rng = np.random.default_rng(100 + seed)
    for batch_size in (1, 3, 7, 16, 25, len(rows)):
        order = [rows[i] for i in rng.permutation(len(rows))]
        logged = pooled(module, order, batch_size)
        for task, acc in truth.items():
            assert logged[f"accuracy_{task}"] == pytest.approx(acc, abs=1e-9), (batch_size, task)
        mixes = {frozenset(Counter(json.loads(g)["task"] for _, g in order[i : i + batch_size]).items())
                 for i in range(0, len(order), batch_size)}
        assert batch_size == len(rows) or len(mixes) > 1  # the batches really have different task mixes
    # n rollouts per prompt (val_override_config n = 4): every prompt's row repeated, still exact
    repeated = [row for row in rows for _ in range(4)]
    logged = pooled(module, repeated, 10)
    assert all(logged[f"accuracy_{t}"] == pytest.approx(a, abs=1e-9) for t, a in truth.items())


def test_without_split_counts_only_single_batches_are_exact(val_truths):
    """The released data's ground truths say nothing about the split: exact per batch, not pooled (documented)."""
    gts, _ = val_truths
    module = load_like_easyr1(EASYR1_FILE)
    plain = [json.dumps({k: v for k, v in json.loads(g).items() if k not in ("task_rows", "split_rows")}) for g in gts]
    rows, truth = responses(plain, 5)
    whole = pooled(module, rows, len(rows))
    assert all(whole[f"accuracy_{t}"] == pytest.approx(a) for t, a in truth.items())
    small = pooled(module, rows, 7)
    assert any(abs(small[f"accuracy_{t}"] - a) > 1e-6 for t, a in truth.items())


def test_plain_letters_are_logged_as_crop_or_position():
    """Plain ground truths (the released Spatial-SSRL-81k rows): a letter answers crop and position alike, so it is
    logged as accuracy_crop_or_position, with no task-looking zero accuracy_crop / accuracy_position beside it; the
    key set is the same for every batch."""
    module = load_like_easyr1(EASYR1_FILE)
    rows = [("<think>x</think> \\boxed{B}", "B"), ("<think>x</think> \\boxed{A}", "C"),
            ("<think>x</think> \\boxed{0-2-3-1}", "0-2-3-1"), ("<think>x</think> \\boxed{3-0}", "3-0"),
            ("<think>x</think> \\boxed{3-1-2}", "1-2-3")]
    keys = set()
    for start in range(0, len(rows), 2):
        scores = module.compute_score([{"response": r, "ground_truth": g} for r, g in rows[start : start + 2]])
        keys.add(frozenset(k for k in scores[0] if k.startswith("accuracy_")))
    assert keys == {frozenset({"accuracy_shuffle", "accuracy_flip", "accuracy_depth", "accuracy_crop_or_position"})}
    logged = pooled(module, rows, len(rows))
    assert logged["accuracy_crop_or_position"] == pytest.approx(0.5) and logged["accuracy_depth"] == 0.0


def test_a_short_split_gets_its_real_counts(tmp_path):
    """When a task falls short of its planned rows, the written ground truths are corrected to the real counts."""
    out = OutputConfig()
    writer = DatasetWriter(tmp_path, "val", out, task_rows={"crop": 3, "flip": 2})
    for i, task in enumerate(["crop", "flip", "crop", "flip"]):
        gt = json.dumps({"task": task, "answer": "A" if task == "crop" else "0-1"}, separators=(",", ":"))
        writer.write(Record(id=f"{task}:{i}", split="val", task=task, variant=task, question="<image>", answer="A",
                            ground_truth=gt, metadata="{}", images=[b"x"], image_ext="jpg", source_id=str(i)))
    writer.close({"crop": 2, "flip": 2})
    for layout, get in (("easyr1", lambda r: r["answer"]), ("verl", lambda r: r["reward_model"]["ground_truth"])):
        from test_build import read_rows as rows_of

        got = [json.loads(get(r)) for r in rows_of(tmp_path, layout)]
        assert [(g["task_rows"], g["split_rows"]) for g in got] == [(2, 4)] * 4, layout
    assert json.loads(with_split_rows('{"answer":"A","task":"crop"}', 5, 9)) == {
        "answer": "A", "task": "crop", "task_rows": 5, "split_rows": 9}
