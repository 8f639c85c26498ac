"""Property tests of the reward: never raises, finite values in range, the paper's format rule, bounded time."""

from __future__ import annotations

import json
import math
import random
import re
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssrl_plugin import scoring
from ssrl_plugin.scoring import KEYS, evaluate, format_ok, score

TOKENS = ["{", "}", "\\", "\\boxed", "\\boxed{", "\\boxed {", "<think>", "</think>", "<", ">", "/", " ", "\n", "\t",
          "think", "A", "B", "b", "0", "1", "2", "-", ",", ".", "(", ")", "[", "]", "$", "\\text{", "or", "Front",
          "０", "Ｂ", "–", "\u3000", "é", "\x00"]
adversarial_text = st.lists(st.sampled_from(TOKENS), max_size=200).map("".join)
any_text = st.one_of(st.text(max_size=300), adversarial_text)

TRUTHS = ['{"answer":"B","task":"crop"}', '{"answer":"0-2-3-1","task":"shuffle"}', '{"answer":"3-0","task":"flip"}',
          '{"answer":"3-1-2","task":"depth"}', "0-2-3-1", "3-0", "3-1-2", "A", "",
          json.dumps({"answer": "B", "task": "position", "options": {"A": "Left", "B": "Front", "C": "Right", "D": "Back"}})]
any_truth = st.one_of(st.sampled_from(TRUTHS), st.text(max_size=50), adversarial_text, st.none(), st.integers(),
                      st.floats(), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))

option_sets = st.fixed_dictionaries({}, optional={
    "format_weight": st.floats(0, 1), "partial_credit": st.booleans(), "require_format": st.booleans(),
    "max_response_chars": st.integers(0, 400), "length_buffer_chars": st.integers(0, 400),
    "length_penalty": st.floats(0, 1), "repetition_penalty": st.floats(0, 1), "repetition_ngram": st.integers(1, 6),
    "repetition_threshold": st.floats(0, 0.99),
})


def check_scores(s: dict, opts: dict) -> None:
    assert list(s) == list(KEYS)
    assert all(type(v) is float and math.isfinite(v) for v in s.values())
    for key in ("accuracy", "format", "hedged"):
        assert 0.0 <= s[key] <= 1.0
    assert 0.0 <= s["length_penalty"] <= opts.get("length_penalty", 0.5)
    assert 0.0 <= s["repetition_penalty"] <= opts.get("repetition_penalty", 0.0)
    floor = -(s["length_penalty"] + s["repetition_penalty"])
    assert floor - 1e-12 <= s["overall"] <= 1.0  # in [0, 1] when the penalties are off (the default)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text, any_truth, option_sets)
def test_score_never_raises_and_stays_in_range(response, truth, opts):
    check_scores(score(response, truth, **opts), opts)


@settings(max_examples=600, deadline=None)
@given(any_text, st.sampled_from(TRUTHS))
def test_evaluate_itself_never_raises(response, truth):
    # evaluate() has no safety net: a bug would surface here instead of being scored 0 by score().
    r = evaluate(response, truth)
    assert r.task in scoring.TASKS + (scoring.CHOICE_TASK, "unknown")


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["<think>", "</think>", "<", ">", "/", " ", "\n", "think", "\\boxed{", "\\boxed",
                                 "{", "}", "x", "th", "ink"]), max_size=25).map("".join))
def test_format_check_equals_the_papers_regex(response):
    normalised = re.sub(r"\s*(<|>|/)\s*", r"\1", response)
    paper = re.fullmatch(r"<think>.*</think>.*\\boxed\{.*\}.*", normalised, re.DOTALL) is not None
    assert format_ok(response) == paper


@settings(max_examples=300, deadline=None)
@given(st.integers(3, 16).flatmap(lambda k: st.permutations(list(range(k)))), st.sampled_from(["-", ", ", " ", ","]),
       st.sampled_from(["{}", "[{}]", "({})", "\\text{{{}}}", "${}$"]))
def test_any_spelling_of_a_permutation_is_right(perm, sep, wrapper):
    truth = json.dumps({"answer": "-".join(map(str, perm)), "task": "shuffle"})
    answer = wrapper.format(sep.join(map(str, perm)))
    assert score(f"<think>x</think>\\boxed{{{answer}}}", truth)["overall"] == 1.0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from("ABCD"), st.sampled_from("ABCD"), st.sampled_from([" or ", "/", ", ", " and ", " | ", ""]),
       st.sampled_from(['{"answer":"%s","task":"crop"}', "%s"]))
def test_hedging_between_two_letters_is_never_rewarded(first, second, joiner, truth_format):
    if first == second:
        return
    for letter in (first, second):
        truth = truth_format % letter
        assert score(f"<think>x</think>\\boxed{{{first}{joiner}{second}}}", truth)["accuracy"] == 0.0
        two_boxes = f"<think>x</think>\\boxed{{{first}}} \\boxed{{{second}}}"
        assert score(two_boxes, truth)["accuracy"] == 0.0


@settings(max_examples=200, deadline=None)
@given(st.permutations([0, 1, 2, 3]), st.permutations([0, 1, 2, 3]))
def test_partial_credit_is_the_fraction_of_positions(truth, answer):
    s = score(f"<think>x</think>\\boxed{{{'-'.join(map(str, answer))}}}", "-".join(map(str, truth)), partial_credit=True)
    assert s["accuracy"] == sum(a == b for a, b in zip(answer, truth)) / 4


# --------------------------------------------------------------------------------------- adversarial timing
def adversarial_strings(size: int = 100_000) -> dict[str, str]:
    rng = random.Random(1234)
    mix = "".join(rng.choice(["{", "}", "\\", "<", ">", "/", " ", "\\boxed{", "<think>", "</think>", "A"])
                  for _ in range(size // 3))
    return {
        "open braces": "{" * size,
        "close braces": "}" * size,
        "backslashes": "\\" * size,
        "boxed openers": "\\boxed{" * (size // 7),
        "boxed then braces": "\\boxed{" + "{" * size,
        "boxed then spaces": "\\boxed" + " " * size + "{A}",
        "16 nested boxes": "<think></think>" + ("\\boxed{" + "{" * 120 + "}" * 120 + "}") * 16 + "{" * size,
        "think then spaces": "<think>" + " " * size,
        "open tags": "<think>" * (size // 7),
        "close tags": "<think>" + "</think>" * (size // 8),
        "spaced slashes": "<think>" + "<  /  " * (size // 6),
        "lt spaces": "< " * (size // 2),
        "repetitive words": "<think>" + "the left patch " * (size // 15) + "</think>\\boxed{B}",
        "random mix": mix[:size],
    }


def test_adversarial_strings_score_fast():
    """Each 100 KB adversarial string in well under 10 ms; asserted at 50 ms to leave room for slow CI machines."""
    truth = '{"answer":"B","task":"crop"}'
    worst = {}
    for name, text in adversarial_strings().items():
        assert len(text) >= 90_000
        for opts in ({}, {"repetition_penalty": 0.5, "max_response_chars": 4096, "partial_credit": True}):
            best = math.inf
            for _ in range(3):  # best of 3: the time of the code, not of a busy machine
                t = time.perf_counter()
                s = score(text, truth, **opts)
                best = min(best, time.perf_counter() - t)
            check_scores(s, opts)
            worst[name] = max(worst.get(name, 0.0), best)
    print("\nadversarial 100 KB, worst of default/with-penalties (ms):",
          {k: round(v * 1e3, 3) for k, v in sorted(worst.items(), key=lambda kv: -kv[1])})
    assert max(worst.values()) < 0.050


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8).map("".join), st.integers(8_000, 30_000))
def test_repeated_random_chunks_score_fast(chunk, repeats):
    text = (chunk * repeats)[:100_000]
    t = time.perf_counter()
    check_scores(score(text, "B", repetition_penalty=0.5), {"repetition_penalty": 0.5})
    assert time.perf_counter() - t < 0.050
