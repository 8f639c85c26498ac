"""Hand-written reward cases for every task, the options, and the entry files loaded the way the trainers load them."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from functools import partial

import numpy as np
import pytest

from ssrl_plugin import scoring
from ssrl_plugin.scoring import KEYS, evaluate, format_ok, score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EASYR1_FILE = os.path.join(ROOT, "reward_fns", "easyr1.py")
VERL_FILE = os.path.join(ROOT, "reward_fns", "verl.py")


def R(answer: str, think: str = "I compare the patches one by one.") -> str:
    """A well-formatted response boxing `answer`."""
    return f"<think>{think}</think>\nSo the answer is \\boxed{{{answer}}}."


def gt(task: str, answer: str, options: dict | None = None) -> str:
    """The ground truth exactly as data_builders/records.py writes it."""
    value = {"task": task, "answer": answer, **({"options": options} if options else {})}
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


SHUFFLE = gt("shuffle", "0-2-3-1")
FLIP = gt("flip", "3-0")
CROP = gt("crop", "B")
DEPTH = gt("depth", "3-1-2")
POSITION = gt("position", "B", {"A": "Left", "B": "Front", "C": "Right", "D": "Back"})
DIAGONAL = gt("position", "C", {"A": "Left-Front", "B": "Right-Front", "C": "Right-Back", "D": "Left-Back"})
SHUFFLE16 = gt("shuffle", "15-0-14-1-13-2-12-3-11-4-10-5-9-6-8-7")
TEMPORAL = gt("temporal_order", "3-1-4-2")
MOTION = gt("camera_motion", "C", {"A": "move left", "B": "move forward", "C": "turn left", "D": "turn right"})
CROSS = gt("cross_view", "D")

CASES = [
    # shuffle: permutation of 0..K-1
    ("shuffle canonical", R("0-2-3-1"), SHUFFLE, 1.0),
    ("shuffle comma space", R("0, 2, 3, 1"), SHUFFLE, 1.0),
    ("shuffle list", R("[0,2,3,1]"), SHUFFLE, 1.0),
    ("shuffle spaces", R("0 2 3 1"), SHUFFLE, 1.0),
    ("shuffle tuple", R("(0, 2, 3, 1)"), SHUFFLE, 1.0),
    ("shuffle full-width", R("０－２－３－１"), SHUFFLE, 1.0),
    ("shuffle en dashes", R("0–2–3–1"), SHUFFLE, 1.0),
    ("shuffle text", R("\\text{0-2-3-1}"), SHUFFLE, 1.0),
    ("shuffle dollars", R("$0-2-3-1$"), SHUFFLE, 1.0),
    ("shuffle answer prefix", R("Answer: 0-2-3-1"), SHUFFLE, 1.0),
    ("shuffle 16 patches", R("15, 0, 14, 1, 13, 2, 12, 3, 11, 4, 10, 5, 9, 6, 8, 7"), SHUFFLE16, 1.0),
    ("shuffle legacy plain", R("0-2-3-1"), "0-2-3-1", 1.0),
    ("shuffle legacy strip", R("2-0-1"), "2-0-1", 1.0),
    ("shuffle wrong", R("0-3-2-1"), SHUFFLE, 0.0),
    ("shuffle too short", R("0-2-3"), SHUFFLE, 0.0),
    ("shuffle hedged or", R("0-2-3-1 or 0-3-2-1"), SHUFFLE, 0.0),
    ("shuffle digits run together", R("0231"), SHUFFLE, 0.0),
    ("shuffle mixed separators", R("0-2, 3-1"), SHUFFLE, 0.0),
    ("shuffle words", R("TopLeft-TopRight-BottomLeft-BottomRight"), SHUFFLE, 0.0),
    # flip: label-direction
    ("flip canonical", R("3-0"), FLIP, 1.0),
    ("flip comma", R("3, 0"), FLIP, 1.0),
    ("flip tuple", R("(3, 0)"), FLIP, 1.0),
    ("flip spaces", R("3 0"), FLIP, 1.0),
    ("flip legacy plain", R("1-1"), "1-1", 1.0),
    ("flip wrong direction", R("3-1"), FLIP, 0.0),
    ("flip swapped", R("0-3"), FLIP, 0.0),
    ("flip label only", R("3"), FLIP, 0.0),
    ("flip hedged", R("3-0 or 3-1"), FLIP, 0.0),
    # crop: letter, options are images
    ("crop letter", R("B"), CROP, 1.0),
    ("crop parenthesised", R("(B)"), CROP, 1.0),
    ("crop period", R("B."), CROP, 1.0),
    ("crop close paren", R("B)"), CROP, 1.0),
    ("crop brackets", R("[B]"), CROP, 1.0),
    ("crop option prefix", R("Option B"), CROP, 1.0),
    ("crop lower case alone", R("option b"), CROP, 1.0),
    ("crop textbf", R("\\textbf{B}"), CROP, 1.0),
    ("crop full-width", R("Ｂ"), CROP, 1.0),
    ("crop full-width parens", R("（Ｂ）"), CROP, 1.0),
    ("crop letter and phrase", R("B. The second candidate"), CROP, 1.0),
    ("crop legacy plain", R("B"), "B", 1.0),
    ("crop wrong", R("A"), CROP, 0.0),
    ("crop A or B", R("A or B"), CROP, 0.0),
    ("crop A/B", R("A/B"), CROP, 0.0),
    ("crop A, B", R("A, B"), CROP, 0.0),
    ("crop A and B", R("A and B"), CROP, 0.0),
    ("crop every option", R("A, B, C, D"), CROP, 0.0),
    ("crop letters run together", R("ABCD"), CROP, 0.0),
    ("crop phrase names another option", R("B. or C"), CROP, 0.0),
    ("crop lower case with text", R("b. second"), CROP, 0.0),
    ("crop out of range", R("E"), CROP, 0.0),
    ("crop word", R("Image B"), CROP, 0.0),
    # depth: permutation of 1..3, nearest first
    ("depth canonical", R("3-1-2"), DEPTH, 1.0),
    ("depth comma", R("3, 1, 2"), DEPTH, 1.0),
    ("depth list", R("[3, 1, 2]"), DEPTH, 1.0),
    ("depth legacy plain", R("2 3 1"), "2-3-1", 1.0),
    ("depth reversed", R("2-1-3"), DEPTH, 0.0),
    ("depth sorted", R("1-2-3"), DEPTH, 0.0),
    ("depth extra label", R("3-1-2-4"), DEPTH, 0.0),
    # position: letter with known option words
    ("position letter", R("B"), POSITION, 1.0),
    ("position letter and text", R("B. Front"), POSITION, 1.0),
    ("position paren and text", R("(B) Front"), POSITION, 1.0),
    ("position colon lower text", R("B: front"), POSITION, 1.0),
    ("position text alone", R("Front"), POSITION, 1.0),
    ("position text in text{}", R("\\text{Front}"), POSITION, 1.0),
    ("position letter contradicts text", R("B. Back"), POSITION, 0.0),
    ("position wrong text", R("Back"), POSITION, 0.0),
    ("position text hedge", R("Front or Back"), POSITION, 0.0),
    ("position every option", R("Left, Right, Front, Back"), POSITION, 0.0),
    ("position diagonal text", R("Right-Back"), DIAGONAL, 1.0),
    ("position diagonal swapped words", R("Back-Right"), DIAGONAL, 1.0),
    ("position diagonal letter text", R("C. Right-Back"), DIAGONAL, 1.0),
    ("position diagonal wrong text", R("C. Left-Back"), DIAGONAL, 0.0),
    ("position diagonal half", R("Right"), DIAGONAL, 0.0),
    ("position legacy letter text", R("A. Left"), "A", 1.0),
    ("position legacy text alone", R("Left"), "A", 0.0),
    # which boxed answer counts
    ("boxed repeated agree", "<think>B looks right</think>\\boxed{B} so \\boxed{B}", CROP, 1.0),
    ("boxed spellings agree", "<think>x</think>\\boxed{B} i.e. \\boxed{(B)}", CROP, 1.0),
    ("boxed disagree", "<think>x</think>\\boxed{A} no wait \\boxed{B}", CROP, 0.0),
    ("boxed disagree last wrong", "<think>x</think>\\boxed{B} or \\boxed{A}", CROP, 0.0),
    ("boxed empty ignored", "<think>I answer in \\boxed{}</think>\\boxed{B}", CROP, 1.0),
    ("boxed spam", "<think>x</think>" + "\\boxed{B}" * 17, CROP, 0.0),
    ("boxed nested", R("\\boxed{B}"), CROP, 1.0),
    ("boxed space before brace", "<think>x</think>\\boxed {B}", CROP, 1.0),
    ("boxed unclosed", "<think>x</think>\\boxed{B", CROP, 0.0),
    ("boxed without brace", "<think>x</think>\\boxed B", CROP, 0.0),
    ("no boxed", "<think>x</think>The answer is B.", CROP, 0.0),
    ("unknown latex", R("\\frac{1}{2}"), CROP, 0.0),
    # sequence tasks: an order of 1..K (as depth), option words (as position), a letter (as crop)
    ("temporal canonical", R("3-1-4-2"), TEMPORAL, 1.0),
    ("temporal commas", R("3, 1, 4, 2"), TEMPORAL, 1.0),
    ("temporal list", R("[3,1,4,2]"), TEMPORAL, 1.0),
    ("temporal reversed", R("2-4-1-3"), TEMPORAL, 0.0),
    ("temporal missing label", R("3-1-4"), TEMPORAL, 0.0),
    ("temporal zero-based", R("2-0-3-1"), TEMPORAL, 0.0),
    ("motion letter", R("C"), MOTION, 1.0),
    ("motion letter and words", R("C. turn left"), MOTION, 1.0),
    ("motion words alone", R("turn left"), MOTION, 1.0),
    ("motion words reordered", R("Left turn"), MOTION, 1.0),
    ("motion confusable words", R("move left"), MOTION, 0.0),
    ("motion letter with other words", R("C. move left"), MOTION, 0.0),
    ("cross letter", R("D"), CROSS, 1.0),
    ("cross parenthesised", R("(D)"), CROSS, 1.0),
    ("cross other letter", R("A"), CROSS, 0.0),
    ("cross hedged", R("C or D"), CROSS, 0.0),
    ("boxed too long", R("B" + " " * 300), CROP, 0.0),
    ("boxed invalid earlier", "<think>x</think>\\boxed{maybe A} then \\boxed{B}", CROP, 0.0),
]


@pytest.mark.parametrize("name,response,truth,expected", CASES, ids=[c[0] for c in CASES])
def test_case_table(name, response, truth, expected):
    result = score(response, truth)
    assert result["accuracy"] == expected, (name, evaluate(response, truth))
    assert set(result) == set(KEYS)


def test_case_table_is_large_and_covers_every_task():
    assert len(CASES) >= 60
    tasks = {evaluate(r, g).task for _, r, g, _ in CASES}
    assert set(scoring.TASKS) <= tasks


@pytest.mark.parametrize("response,hedged", [
    (R("A or B"), 1.0), (R("A/B"), 1.0), (R("A, B, C, D"), 1.0), ("<think>x</think>\\boxed{A}\\boxed{B}", 1.0),
    ("<think>x</think>" + "\\boxed{B}" * 17, 1.0), (R("B"), 0.0), (R("A"), 0.0),
])
def test_hedged_flag(response, hedged):
    assert score(response, CROP)["hedged"] == hedged


# ----------------------------------------------------------------------------------------------- format check
@pytest.mark.parametrize("response,ok", [
    ("<think>x</think>\\boxed{A}", True),
    ("<think>\nreasoning\n</think>\n\nFinal: \\boxed{A}.\n", True),
    ("< think >x</ think >\\boxed{A}", True),
    ("<  think>x< / think>\\boxed{A}", True),
    ("  \n<think>x</think> \\boxed{A}", True),
    ("<think></think>\\boxed{A}", True),
    ("<think>x</think>\\boxed{A later }", True),
    ("<think>x</think>\\boxed{A and a brace later }", True),
    ("Sure. <think>x</think>\\boxed{A}", False),
    ("<think>x\\boxed{A}", False),
    ("<think>x</think>answer A", False),
    ("<think>x</think>\\boxed {A}", False),
    ("\\boxed{A}<think>x</think>", False),
    ("<think>x</think>\\boxed{A", False),
    ("<think>x</thin k>\\boxed{A}", False),
    ("<th ink>x</think>\\boxed{A}", False),
    ("", False),
])
def test_format_check_matches_the_paper(response, ok):
    assert format_ok(response) is ok
    assert format_ok(response) == paper_format(response)


def paper_format(response: str) -> bool:
    """The paper's (EasyR1 math.py) format check, verbatim, for comparison on short strings."""
    import re
    response = re.sub(r"\s*(<|>|/)\s*", r"\1", response)
    return re.fullmatch(re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL), response) is not None


def test_configurable_tags():
    response = "<reasoning>x</reasoning>\\boxed{B}"
    assert score(response, CROP)["format"] == 0.0
    assert score(response, CROP, think_open="<reasoning>", think_close="</reasoning>")["format"] == 1.0
    assert score(response, CROP, think_open="< reasoning >", think_close="</ reasoning>")["format"] == 1.0


# ------------------------------------------------------------------------------------------------- the reward
def test_default_reward_is_the_papers():
    assert score(R("B"), CROP)["overall"] == pytest.approx(1.0)
    assert score(R("A"), CROP)["overall"] == pytest.approx(0.1)
    assert score("\\boxed{B}", CROP)["overall"] == pytest.approx(0.9)
    assert score("B", CROP)["overall"] == 0.0


def test_format_weight():
    assert score("\\boxed{B}", CROP, format_weight=0.5)["overall"] == pytest.approx(0.5)
    assert score(R("A"), CROP, format_weight=0.0)["overall"] == 0.0


def test_require_format():
    assert score("\\boxed{B}", CROP, require_format=True)["accuracy"] == 0.0
    assert score("\\boxed{B}", CROP, require_format=True)["overall"] == 0.0
    assert score(R("B"), CROP, require_format=True)["accuracy"] == 1.0


@pytest.mark.parametrize("response,truth,expected", [
    (R("0-3-2-1"), SHUFFLE, 0.5),  # positions 0 and 3 right
    (R("1-0-2-3"), SHUFFLE, 0.0),
    (R("0-2-3-1"), SHUFFLE, 1.0),
    (R("3-2-1"), DEPTH, 1 / 3),
    (R("0-2-3-3"), SHUFFLE, 0.0),  # not a permutation: no credit
    (R("0-2-3"), SHUFFLE, 0.0),  # wrong length: no credit
    (R("0-2-3-1-4"), SHUFFLE, 0.0),
    (R("3-1"), FLIP, 0.0),  # flip is not a permutation
    (R("0-3-2-1 or 0-2-3-1"), SHUFFLE, 0.0),
    (R("3-1-2-4"), TEMPORAL, 0.5),  # temporal order: the first two frames right
    (R("3-4-1-2"), TEMPORAL, 0.5),
    (R("1-3-4-2"), TEMPORAL, 0.5),
    (R("3-1-4-4"), TEMPORAL, 0.0),  # a label twice: no credit
])
def test_partial_credit(response, truth, expected):
    assert score(response, truth, partial_credit=True)["accuracy"] == pytest.approx(expected)
    assert score(response, truth)["accuracy"] == float(expected == 1.0)


def test_length_penalty():
    long = R("B", think="x" * 5000)
    assert score(long, CROP)["length_penalty"] == 0.0
    s = score(long, CROP, max_response_chars=1000)
    assert s["length_penalty"] == 0.5 and s["overall"] == pytest.approx(0.5)
    assert score(long, CROP, max_response_chars=1000, length_penalty=1.0)["overall"] == pytest.approx(0.0)
    ramp = score(long, CROP, max_response_chars=len(long) + 500, length_buffer_chars=1000)
    assert ramp["length_penalty"] == pytest.approx(0.25)
    assert score(R("B"), CROP, max_response_chars=1000)["length_penalty"] == 0.0



def test_length_penalty_never_exceeds_its_weight_at_the_ramp_end():
    # weight * n / n is not always the weight in floating point (found by hypothesis: 0.37917583825062112 > weight)
    weight = 0.3791758382506211
    for buffer in range(1, 120):
        s = score("x" * 120, CROP, max_response_chars=120, length_buffer_chars=buffer, length_penalty=weight)
        assert s["length_penalty"] <= weight

def test_repetition_penalty():
    loop = R("B", think="the patch on the left " * 300)
    prose = R("B", think=" ".join(f"word{i}" for i in range(400)))
    assert score(loop, CROP)["repetition_penalty"] == 0.0  # off by default
    pen = score(loop, CROP, repetition_penalty=0.5)
    assert 0.4 < pen["repetition_penalty"] <= 0.5 and pen["overall"] == pytest.approx(1.0 - pen["repetition_penalty"])
    assert score(prose, CROP, repetition_penalty=0.5)["repetition_penalty"] == 0.0
    assert score(R("B"), CROP, repetition_penalty=0.5)["repetition_penalty"] == 0.0  # too short to judge
    assert scoring.repetition_ratio("a b c d " * 100) > 0.9


def test_options_from_config_strings():
    assert score(R("0-3-2-1"), SHUFFLE, partial_credit="true")["accuracy"] == 0.5
    assert score(R("0-3-2-1"), SHUFFLE, partial_credit="false")["accuracy"] == 0.0
    assert score("\\boxed{B}", CROP, format_weight="0.5")["overall"] == pytest.approx(0.5)
    assert score(R("B"), CROP, max_response_chars=None)["length_penalty"] == 0.0
    assert score(R("B"), CROP, format_weight=np.float64(0.2))["overall"] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [
    {"format_weight": 2}, {"format_weight": -0.1}, {"format_weight": float("nan")}, {"format_weight": "x"},
    {"partial_credit": "maybe"}, {"max_response_chars": -5}, {"max_response_chars": 1.5},
    {"max_response_chars": float("inf")}, {"repetition_penalty": 3}, {"think_open": ""}, {"format_weight": [1]},
])
def test_invalid_option_values_raise(bad):
    with pytest.raises(ValueError):
        score(R("B"), CROP, **bad)


def test_unknown_options_warn_once_and_are_ignored():
    scoring._warned.discard("no_such_option")
    with pytest.warns(UserWarning, match="no_such_option"):
        assert score(R("B"), CROP, no_such_option=1)["overall"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score(R("B"), CROP, no_such_option=1)
        score(R("B"), CROP, reward_router_address=None, reward_model_tokenizer=None)  # verl's own extras


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("response,truth", [
    (None, CROP), (123, CROP), (["B"], CROP), (b"<think>x</think>\\boxed{B}", CROP), (R("B"), None), (R("B"), 42),
    (R("B"), ""), (R("B"), "{not json"), (R("B"), '{"task":"crop"}'), (R("B"), '{"answer":null}'), (R("B"), "[1,2]"),
    (R("B"), {"answer": ["B"]}), (R("B"), float("nan")), ("", ""), (R("B"), "x" * 200_000), (R("B"), "{" * 5000),
])
def test_bad_input_scores_finite_and_never_raises(response, truth):
    s = score(response, truth)
    assert list(s) == list(KEYS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in s.values())


def test_bytes_and_mapping_inputs():
    assert score(b"<think>x</think>\\boxed{B}", CROP)["accuracy"] == 1.0
    assert score(R("B"), {"answer": "B", "task": "crop"})["accuracy"] == 1.0
    assert score(R("B"), {"style": "rule", "ground_truth": CROP})["accuracy"] == 1.0  # verl's reward_model dict
    assert score(R("B"), b"B")["accuracy"] == 1.0


def test_task_names():
    assert evaluate(R("B"), CROP).task == "crop"
    assert evaluate(R("B"), "B", task_hint="spatial_ssrl/position").task == "position"
    assert evaluate(R("B"), CROP, task_hint="spatial_ssrl/position").task == "crop"  # the ground truth wins
    assert evaluate(R("B"), "B", task_hint="Spatial-SSRL-81k").task == "crop_or_position"  # not a task name
    assert evaluate(R("0-2-3-1"), "0-2-3-1").task == "shuffle"
    assert evaluate(R("3-1-2"), "3-1-2").task == "depth"
    assert evaluate(R("3-0"), "3-0").task == "flip"
    assert evaluate(R("B"), "not an answer").task == "unknown"
    assert evaluate(R("B"), None).task == "unknown"
    assert evaluate(R("yes"), gt("rotation", "yes")).task == "rotation"
    assert evaluate(R("Yes."), gt("rotation", "yes")).accuracy == 1.0  # free-text answers of future tasks


# ---------------------------------------------------------------------------------------- EasyR1 entry file
def load_like_easyr1(path: str):
    """verl/workers/reward/function.py (hiyouga/EasyR1): spec_from_file_location + sys.modules["custom_reward_fn"]."""
    spec = importlib.util.spec_from_file_location("custom_reward_fn", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_reward_fn"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("custom_reward_fn", None)
    return module


def easyr1_reduce(scores: list[dict]) -> dict[str, float]:
    """What EasyR1 logs: per key, the values appended sample by sample, then np.mean (metrics.reduce_metrics)."""
    metrics = defaultdict(list)
    for s in scores:
        for key, value in s.items():
            metrics[key].append(value)
    return {f"reward/{k}": float(np.mean(v)) for k, v in metrics.items()}


EASYR1_BATCH = [
    (R("B"), CROP), (R("A"), CROP), (R("B"), CROP), (R("0-2-3-1"), SHUFFLE), (R("3-0"), FLIP),
    (R("3-1-2"), DEPTH), (R("1-2-3"), DEPTH), (R("B. Front"), POSITION), ("garbage", POSITION), (R("A"), "A"),
]


def test_easyr1_batch_current():
    module = load_like_easyr1(EASYR1_FILE)
    assert module.REWARD_TYPE == "batch" and module.REWARD_NAME == "spatial_ssrl"
    fn = partial(getattr(module, "compute_score"), **{"format_weight": 0.1})  # reward_function_kwargs
    inputs = [{"response": r, "response_length": len(r) // 4, "ground_truth": np.array([g], dtype=object)[0]}
              for r, g in EASYR1_BATCH]
    scores = fn(inputs)
    assert len(scores) == len(inputs)
    for s, (r, g) in zip(scores, EASYR1_BATCH):
        assert {k: v for k, v in s.items() if not k.startswith("accuracy_")} == score(r, g)
        assert all(isinstance(v, float) and math.isfinite(v) for v in s.values())
        assert all(k in s for k in KEYS)  # the filter keys are in every sample
    assert all(set(s) == set(scores[0]) for s in scores)  # one key set for the whole batch
    assert {"accuracy_crop", "accuracy_depth", "accuracy_position", "accuracy_shuffle", "accuracy_flip"} <= set(scores[0])
    logged = easyr1_reduce(scores)
    assert logged["reward/accuracy_crop"] == pytest.approx(2 / 3)
    assert logged["reward/accuracy_depth"] == pytest.approx(1 / 2)
    assert logged["reward/accuracy_position"] == pytest.approx(1 / 2)
    assert logged["reward/accuracy_shuffle"] == 1.0 and logged["reward/accuracy_flip"] == 1.0
    assert logged["reward/accuracy_crop_or_position"] == 1.0  # legacy letter without a task
    assert logged["reward/accuracy"] == pytest.approx(7 / 10)


def test_easyr1_online_filtering_zip_stays_aligned():
    """ray_trainer._make_batch_data zips reward_metrics[filter_key] with the uids of the samples."""
    module = load_like_easyr1(EASYR1_FILE)
    scores = module.compute_score([{"response": r, "response_length": 1, "ground_truth": g} for r, g in EASYR1_BATCH])
    for key in ("overall", "accuracy", "format"):
        assert len(easyr1_values(scores, key)) == len(EASYR1_BATCH)


def easyr1_values(scores, key):
    metrics = defaultdict(list)
    for s in scores:
        for k, v in s.items():
            metrics[k].append(v)
    return metrics[key]


def test_easyr1_older_call_shapes():
    module = load_like_easyr1(EASYR1_FILE)
    responses, truths = [r for r, _ in EASYR1_BATCH], [g for _, g in EASYR1_BATCH]
    old_batch = module.compute_score(responses, truths)  # BatchFunctionRewardManager of the older EasyR1
    assert [s["overall"] for s in old_batch] == [score(r, g)["overall"] for r, g in EASYR1_BATCH]
    seq = partial(module.compute_score_sequential, format_weight=0.1)
    assert seq(R("B"), CROP)["overall"] == 1.0  # SequentialFunctionRewardManager: fn(response_str, ground_truth)
    one = seq({"response": R("B"), "response_length": 5, "ground_truth": CROP})
    assert one["accuracy"] == 1.0 and set(one) == set(KEYS)  # one sample at a time: no per-task keys
    assert module.compute_score(R("B"), CROP)["overall"] == 1.0  # compute_score named with reward_type=sequential
    assert module.compute_score_sequential([{"response": R("B"), "ground_truth": CROP}])[0]["overall"] == 1.0
    assert module.main is module.compute_score  # EasyR1's default function name


def test_easyr1_kwargs_and_per_task_switch():
    module = load_like_easyr1(EASYR1_FILE)
    fn = partial(module.compute_score, partial_credit=True, per_task_keys=False)
    (s,) = fn([{"response": R("0-3-2-1"), "response_length": 3, "ground_truth": SHUFFLE}])
    assert s["accuracy"] == 0.5 and set(s) == set(KEYS)
    with pytest.raises(ValueError):
        module.validate_reward_function_kwargs(format_weight=5)
    module.validate_reward_function_kwargs(format_weight=0.2, per_task_keys=True)


def test_easyr1_bad_inputs():
    module = load_like_easyr1(EASYR1_FILE)
    scores = module.compute_score([{"response": None, "ground_truth": None}, {}, "not a dict", {"response": 5}])
    assert len(scores) == 4 and all(set(s) == set(scores[0]) and set(KEYS) <= set(s) for s in scores)
    assert all(v == 0.0 for s in scores for v in s.values())
    assert module.compute_score([]) == []


# ------------------------------------------------------------------------------------------ verl entry file
def load_like_verl_get_custom_reward_fn(path: str, name: str = "compute_score", reward_kwargs: dict | None = None):
    """verl.trainer.ppo.reward.get_custom_reward_fn: load_extern_object(path, name) wrapped with reward_kwargs."""
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_module"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("custom_module", None)
    raw_fn = getattr(module, name)
    extra = dict(reward_kwargs or {})

    def _call_with_kwargs(*args, **kwargs):  # reward_kwargs take precedence, as in verl
        return raw_fn(*args, **{**kwargs, **extra})

    return _call_with_kwargs


def load_like_verl_load_module(path: str):
    """verl.utils.import_utils.load_module for a file path: unique spec name, not added to sys.modules."""
    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(os.path.abspath(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VERL_ROWS = [
    ("spatial_ssrl/crop", R("B"), CROP), ("spatial_ssrl/shuffle", R("0-3-2-1"), SHUFFLE),
    ("spatial_ssrl/position", R("Front"), POSITION), ("spatial_ssrl/flip", "no think \\boxed{3-0}", FLIP),
    ("spatial_ssrl/depth", None, DEPTH), ("spatial_ssrl/crop", R("B"), "garbage{"),
]


def test_verl_naive_and_reward_loop_calls():
    fn = load_like_verl_get_custom_reward_fn(VERL_FILE, reward_kwargs={"partial_credit": True})
    results = []
    for data_source, response, truth in VERL_ROWS:
        extra_info = {"split": "train", "index": 0, "task": data_source.split("/")[1], "num_turns": None,
                      "rollout_reward_scores": {}, "response_len": 10}
        results.append(fn(data_source=data_source, solution_str=response, ground_truth=truth, extra_info=extra_info,
                          reward_router_address=None, reward_model_tokenizer=None))
    keys = list(results[0])  # verl takes the key set from the first sample and indexes every other one with it
    assert keys == ["score", "acc", "format", "hedged", "length_penalty", "repetition_penalty"]
    extra = {k: [r[k] for r in results] for k in keys}
    assert all(isinstance(v, float) and math.isfinite(v) for vs in extra.values() for v in vs)
    assert extra["acc"] == [1.0, 0.5, 1.0, 1.0, 0.0, 0.0]
    assert extra["score"][3] == pytest.approx(0.9)


def test_verl_positional_and_batch_calls():
    fn = load_like_verl_get_custom_reward_fn(VERL_FILE)
    assert fn("spatial_ssrl/crop", R("B"), CROP, None)["score"] == 1.0
    sources = np.array([d for d, _, _ in VERL_ROWS], dtype=object)
    kwargs = dict(data_sources=sources, solution_strs=[r for _, r, _ in VERL_ROWS],
                  ground_truths=[g for _, _, g in VERL_ROWS], extra_infos=[None] * len(VERL_ROWS))
    module = load_like_verl_load_module(VERL_FILE)
    batch = module.compute_score_batch(**kwargs)
    assert fn(**kwargs) == batch  # the batch manager calling the default name gets the batch too
    assert [b["acc"] for b in batch] == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert module.compute_score_batch(data_sources=None, solution_strs=[], ground_truths=[], extra_infos=[]) == []


def test_verl_legacy_ground_truth_uses_data_source_as_task():
    module = load_like_verl_load_module(VERL_FILE)
    assert module.compute_score("spatial_ssrl/position", R("A"), "A", None)["acc"] == 1.0


def test_entry_files_import_as_modules_and_pkg_path():
    sys.path.insert(0, ROOT)
    try:
        verl_entry = importlib.import_module("reward_fns.verl")  # what pkg://reward_fns.verl resolves to
        easyr1_entry = importlib.import_module("reward_fns.easyr1")
        import reward_fns
    finally:
        sys.path.remove(ROOT)
    assert verl_entry.compute_score("spatial_ssrl/crop", R("B"), CROP)["score"] == 1.0
    assert easyr1_entry.compute_score([{"response": R("B"), "ground_truth": CROP}])[0]["overall"] == 1.0
    assert os.path.samefile(reward_fns.EASYR1_FILE, EASYR1_FILE) and os.path.samefile(reward_fns.VERL_FILE, VERL_FILE)


def test_entry_files_load_by_path_from_anywhere(tmp_path):
    """A trainer started in another directory, with the package not on sys.path, still loads the files."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('custom_reward_fn', {EASYR1_FILE!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['custom_reward_fn'] = m; spec.loader.exec_module(m)\n"
        "print(m.REWARD_TYPE, m.compute_score([{'response': '<think>x</think>\\\\boxed{B}', 'ground_truth': 'B'}])[0]['overall'])\n"
        f"spec = importlib.util.spec_from_file_location('custom_module', {VERL_FILE!r})\n"
        "v = importlib.util.module_from_spec(spec); spec.loader.exec_module(v)\n"
        "print(v.compute_score('spatial_ssrl/crop', '<think>x</think>\\\\boxed{B}', 'B')['score'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["batch", "1.0", "1.0"]


def test_scoring_imports_without_heavy_dependencies():
    code = ("import sys, importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('s', {os.path.join(ROOT, 'ssrl_plugin', 'scoring.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['s'] = m; spec.loader.exec_module(m)\n"
            "assert not {'torch', 'transformers', 'verl', 'numpy'} & set(sys.modules), sorted(sys.modules)\n"
            "print(m.score('<think>x</think>\\\\boxed{B}', 'B')['overall'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.0"


def test_ground_truths_written_by_the_builder():
    from data_builders.records import ground_truth

    diagonal = {"A": "Left-Front", "B": "Right-Front", "C": "Right-Back", "D": "Left-Back"}
    assert score(R("C. Right-Back"), ground_truth("position", "C", diagonal))["accuracy"] == 1.0
    assert score(R("C. Left-Back"), ground_truth("position", "C", diagonal))["accuracy"] == 0.0
    assert score(R("0, 2, 3, 1"), ground_truth("shuffle", "0-2-3-1"))["accuracy"] == 1.0
    assert evaluate(R("3-0"), ground_truth("flip", "3-0")).task == "flip"
