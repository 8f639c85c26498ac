"""Spatial-SSRL reward for EasyR1 (hiyouga/EasyR1), loaded by file path.

Config (current EasyR1; the module's REWARD_TYPE says "batch")::

    worker:
      reward:
        reward_function: /abs/path/to/reward_fns/easyr1.py:compute_score
        reward_function_kwargs: {format_weight: 0.1}      # any option of ssrl_plugin.scoring

Older EasyR1 (the version the paper used) picks the manager from ``worker.reward.reward_type`` instead:
``batch`` calls ``compute_score(list_of_responses, list_of_ground_truths)``, ``sequential`` calls
``fn(response, ground_truth)``; newer ones pass ``{"response", "response_length", "ground_truth"}`` dicts.
``compute_score`` and ``compute_score_sequential`` accept every one of these shapes, so either name works with
either reward type. ``main`` is ``compute_score`` (EasyR1's default when the path has no ``:function``).

Returned keys, the same for every sample of a batch (EasyR1's online filter zips metric lists with samples):
``overall`` (the reward), ``accuracy``, ``format``, ``hedged``, ``length_penalty``, ``repetition_penalty`` and,
in batch mode, ``accuracy_<task>`` for each of the five built-in tasks (and any other task in the batch).

How ``accuracy_<task>`` becomes the exact per-task accuracy in the logs: EasyR1 appends each returned value to a
per-key list and logs the ``np.mean`` of that list (``reduce_metrics``), over one training batch, over the
batches pooled by online filtering, or, in ``_validate``, over every validation batch extended into one list. A
sample of task t therefore carries ``accuracy * w`` under ``accuracy_<t>`` and 0 under the other tasks' keys:

- ``w = split_rows / task_rows`` when its ground truth says how many rows its task and its split have (every
  ``ssrl build`` dataset does). The mean over the whole split is then sum(accuracy of t) / task_rows: the exact
  task accuracy over the validation split, for any ``val_batch_size``, any row order and any number of rollouts
  per prompt. On training batches, where the pooled list is some subset of the training split, the logged value
  is exact in expectation over a shuffled sampler, and exact whenever the subset holds the tasks in the split's
  proportions (e.g. a whole epoch).
- ``w = N / N_t`` (N samples in the batch, N_t of task t) for ground truths that do not say (the released
  Spatial-SSRL-81k data): exact for one batch, not once batches are pooled.

A single value can exceed 1; only the mean is meaningful. Never use these keys as ``algorithm.filter_key``. The
key set is the same for every batch of a dataset: the five built-in tasks (and any other task named in the batch)
when the ground truths name their task; for plain ground truths (no task named) ``shuffle``, ``flip``, ``depth``
and ``crop_or_position``, because crop and position both answer with a letter and cannot be told apart from
the answer alone (``ssrl build`` data, or a ``task`` added to the released rows, gives both curves). The
sequential entry sees one sample at a time and returns the six common keys only. ``per_task_keys=False`` in
``reward_function_kwargs`` turns the per-task keys off.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Mapping

try:
    from ssrl_plugin import scoring
except ImportError:  # loaded by path from a source checkout that is not installed: use the checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from ssrl_plugin import scoring
from ssrl_plugin.paper import BUILTIN_ORDER

REWARD_TYPE = "batch"
REWARD_NAME = "spatial_ssrl"


PLAIN_TASKS = ("shuffle", "flip", "depth", scoring.CHOICE_TASK)  # what plain ground truths can be told apart into


def _evaluate(response, ground_truth, options: scoring.Options) -> scoring.Result:
    try:
        return scoring.evaluate(response, ground_truth, None, options)
    except Exception:  # noqa: BLE001 - never take the reward actor down (scoring.score() logs the cause)
        result = scoring.Result()
        for key, value in scoring.score(response, ground_truth, **options.__dict__).items():
            setattr(result, key, value)
        return result


def _score_batch(pairs, options: scoring.Options, per_task: bool) -> list[dict[str, float]]:
    results = [_evaluate(r, g, options) for r, g in pairs]
    if not per_task:
        return [r.scores() for r in results]
    counts = Counter(r.task for r in results if r.task != "unknown")
    named = {r.task for r in results if r.named}
    tasks = sorted(set(BUILTIN_ORDER) | named) if named else list(PLAIN_TASKS)
    tasks += sorted(set(counts) - set(tasks))  # a task of neither kind (e.g. a plain letter among named tasks)
    n = len(results)
    out = []
    for r in results:
        scores = r.scores()
        weight = r.split_weight or (n / counts[r.task] if r.task in counts else 0.0)
        for t in tasks:  # mean of accuracy_<t> over the split (or the batch) == accuracy over the samples of t
            scores[f"accuracy_{t}"] = scores["accuracy"] * weight if r.task == t else 0.0
        out.append(scores)
    return out


def _options(kwargs: dict) -> tuple[scoring.Options, bool]:
    per_task = kwargs.pop("per_task_keys", True)
    per_task = scoring._to_bool("per_task_keys", per_task)
    return scoring.make_options(**kwargs), per_task


def _one_input(item):
    """(response, ground_truth) of one reward input of any EasyR1 version."""
    if isinstance(item, Mapping):
        return item.get("response"), item.get("ground_truth")
    return None, None


def compute_score(reward_inputs, *args, **kwargs):
    """Batch reward: a list of dicts (current EasyR1) or (responses, ground_truths) lists (older EasyR1).

    Called with one response string and its ground truth (the older sequential manager), it returns one dict.
    """
    if isinstance(reward_inputs, (str, bytes, Mapping)) or reward_inputs is None:
        return compute_score_sequential(reward_inputs, *args, **kwargs)
    options, per_task = _options(kwargs)
    inputs = list(reward_inputs)
    if args:  # compute_score(responses, ground_truths)
        truths = list(args[0]) if args[0] is not None else []
        pairs = [(r, truths[i] if i < len(truths) else None) for i, r in enumerate(inputs)]
    else:
        pairs = [_one_input(item) for item in inputs]
    return _score_batch(pairs, options, per_task)


def compute_score_sequential(reward_input, *args, **kwargs):
    """One sample: a dict (newer EasyR1) or (response, ground_truth) (older EasyR1). A list is scored as a batch."""
    if isinstance(reward_input, (list, tuple)) or type(reward_input).__name__ == "ndarray":
        return compute_score(reward_input, *args, **kwargs)
    ground_truth = args[0] if args else kwargs.pop("ground_truth", None)
    options, _ = _options(kwargs)
    if isinstance(reward_input, Mapping):
        reward_input, ground_truth = _one_input(reward_input)
    return _evaluate(reward_input, ground_truth, options).scores()


main = compute_score


def validate_reward_function_kwargs(**kwargs) -> None:
    """Check option values before the first rollout (called by EasyR1 builds that look for this hook)."""
    _options(dict(kwargs))
