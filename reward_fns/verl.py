"""Spatial-SSRL reward for verl (volcengine/verl), loaded by file path or as ``pkg://reward_fns.verl``.

Overrides (verl >= 0.5 names; older releases use the top-level ``custom_reward_function.*``)::

    reward.custom_reward_function.path=/abs/path/to/reward_fns/verl.py     # or pkg://reward_fns.verl
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.partial_credit=true       # any option of ssrl_plugin.scoring

``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`` serves the naive, dapo and
reward-loop managers; called the way the legacy batch manager calls (``data_sources=``, ``solution_strs=``,
``ground_truths=``, ``extra_infos=``) it returns a list, as ``compute_score_batch`` does.

Returned keys, identical for every sample (verl takes the key set from the first sample and indexes every other
sample with it): ``score`` (the reward), ``acc`` (accuracy; verl's validation reports the ``acc`` key under
``val-core``), ``format``, ``hedged``, ``length_penalty``, ``repetition_penalty``. Per-task curves come from the
``data_source`` column (``spatial_ssrl/<task>``): verl groups validation metrics by it
(``val-core/spatial_ssrl/crop/acc/mean@N``), so no per-task keys are needed here.
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

_BATCH_KEYS = ("data_sources", "solution_strs", "ground_truths", "extra_infos")


def _hint(data_source, extra_info):
    if isinstance(extra_info, Mapping) and isinstance(extra_info.get("task"), str):
        return extra_info["task"]
    return data_source if isinstance(data_source, str) else None


def _score(data_source, solution_str, ground_truth, extra_info, options: scoring.Options) -> dict[str, float]:
    try:
        r = scoring.evaluate(solution_str, ground_truth, _hint(data_source, extra_info), options)
        s = r.scores()
    except Exception:  # noqa: BLE001 - never take the reward worker down (scoring.score() logs the cause)
        s = scoring.score(solution_str, ground_truth, **options.__dict__)
    return {"score": s["overall"], "acc": s["accuracy"], "format": s["format"], "hedged": s["hedged"],
            "length_penalty": s["length_penalty"], "repetition_penalty": s["repetition_penalty"]}


def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, **kwargs):
    """One sample -> dict with ``score``; with the batch manager's keyword names -> a list of dicts."""
    if any(k in kwargs for k in _BATCH_KEYS):
        return compute_score_batch(**kwargs)
    return _score(data_source, solution_str, ground_truth, extra_info, scoring.make_options(**kwargs))


def _as_list(values, n: int) -> list:
    values = [] if values is None else list(values)
    return values + [None] * (n - len(values))


def compute_score_batch(data_sources=None, solution_strs=None, ground_truths=None, extra_infos=None, **kwargs):
    """verl's legacy BatchRewardManager signature: one dict per response, in order."""
    options = scoring.make_options(**kwargs)
    responses = [] if solution_strs is None else list(solution_strs)
    n = len(responses)
    sources, truths, extras = _as_list(data_sources, n), _as_list(ground_truths, n), _as_list(extra_infos, n)
    return [_score(sources[i], responses[i], truths[i], extras[i], options) for i in range(n)]
