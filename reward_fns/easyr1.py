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

Returned keys, every sample: ``overall`` (the reward), ``accuracy``, ``format``, ``hedged``, ``length_penalty``,
``repetition_penalty``, plus ONE per-task key ``accuracy_<task>`` (e.g. ``accuracy_crop``) for the sample's own
task. Why only its own: EasyR1 appends each returned value to a per-key list and logs ``reward/<key>`` as
``np.mean`` of that list (``verl/trainer/metrics.py: reduce_metrics``), so a key returned only by crop samples
logs exactly the crop accuracy, and a task absent from a batch logs nothing instead of a false 0. Filling the key
with 0 for other tasks would log accuracy x task share; NaN would log NaN; None crashes the reduction. Online
filtering (``algorithm.filter_key``, default ``overall``) zips one key's list with the samples: filter on one of
the six common keys, which every sample returns. ``per_task_keys=False`` in ``reward_function_kwargs`` turns the
per-task keys off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

try:
    from ssrl_plugin import scoring
except ImportError:  # loaded by path from a source checkout that is not installed: use the checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from ssrl_plugin import scoring

REWARD_TYPE = "batch"
REWARD_NAME = "spatial_ssrl"


def _score(response, ground_truth, options: scoring.Options, per_task: bool) -> dict[str, float]:
    try:
        result = scoring.evaluate(response, ground_truth, None, options)
    except Exception:  # noqa: BLE001 - never take the reward actor down (scoring.score() logs the cause)
        return scoring.score(response, ground_truth, **options.__dict__)
    out = result.scores()
    if per_task and result.task != "unknown":
        out[f"accuracy_{result.task}"] = result.accuracy
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
    return [_score(r, g, options, per_task) for r, g in pairs]


def compute_score_sequential(reward_input, *args, **kwargs):
    """One sample: a dict (newer EasyR1) or (response, ground_truth) (older EasyR1). A list is scored as a batch."""
    if isinstance(reward_input, (list, tuple)) or type(reward_input).__name__ == "ndarray":
        return compute_score(reward_input, *args, **kwargs)
    ground_truth = args[0] if args else kwargs.pop("ground_truth", None)
    options, per_task = _options(kwargs)
    if isinstance(reward_input, Mapping):
        reward_input, ground_truth = _one_input(reward_input)
    return _score(reward_input, ground_truth, options, per_task)


main = compute_score


def validate_reward_function_kwargs(**kwargs) -> None:
    """Check option values before the first rollout (called by EasyR1 builds that look for this hook)."""
    _options(dict(kwargs))
