"""Benchmark: our reward vs the paper's exact-match reward on the same 10,000 responses, in one run.

    python bench/bench_reward.py [--n 10000] [--adversarial 500] [--max-kb 4]

The paper's reward is re-implemented from its description (and EasyR1's math.py, which it used): whitespace around
<, > and / removed with re.sub(r"\\s*(<|>|/)\\s*"), format = re.fullmatch of "<think>.*</think>.*\\boxed{.*}.*",
accuracy = the last \\boxed{} (mathruler's brace-counting extract_boxed_content) equals the ground truth string,
reward = 0.9 * accuracy + 0.1 * format. The responses are generated deterministically: normal ones (reasoning plus a
boxed answer, right, wrong, spelled differently, hedged, malformed) and adversarial ones full of braces, tags,
backslashes and whitespace. The adversarial ones stay at a few KB because the paper's regexes are quadratic: at
100 KB a single response takes the paper's reward ~1 minute (ours stays under 2 ms; see tests/test_rewards_property.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ssrl_plugin.scoring import score  # noqa: E402

# ------------------------------------------------------------------------------------ the paper's reward
_PAPER_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)


def _paper_extract_boxed(text: str) -> str:
    """mathruler.grader.extract_boxed_content: the last \\boxed{...}, braces counted, else "None"."""
    depth, end_pos = 0, -1
    start_pos = text.rfind(r"\boxed{")
    if start_pos != -1:
        content = text[start_pos + len(r"\boxed{"):]
        for i, char in enumerate(content):
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            if depth == -1:
                end_pos = i
                break
    if end_pos != -1:
        return content[:end_pos].strip()
    return "None"


def paper_reward(response: str, ground_truth: str) -> dict[str, float]:
    response = re.sub(r"\s*(<|>|/)\s*", r"\1", response)
    fmt = 1.0 if re.fullmatch(_PAPER_FORMAT, response) else 0.0
    acc = 1.0 if _paper_extract_boxed(response) == ground_truth else 0.0
    return {"overall": 0.9 * acc + 0.1 * fmt, "format": fmt, "accuracy": acc}


# --------------------------------------------------------------------------------------- the responses
WORDS = ("the patch on the left shows a road while the top right has sky so the order must place the bright region "
         "above and the darker texture below which means label two comes first then three and the last one is the "
         "region closest to the camera because it looks larger than the others").split()
POSITION_WORDS = ("Left", "Front", "Right", "Back")


def _truth(rng: random.Random) -> tuple[str, str, str, dict | None]:
    """(task, plain answer, JSON ground truth, options)."""
    task = rng.choice(("shuffle", "flip", "crop", "depth", "position"))
    options = None
    if task == "shuffle":
        k = rng.choice((3, 4, 4, 4, 16))
        perm = list(range(k))
        rng.shuffle(perm)
        answer = "-".join(map(str, perm))
    elif task == "flip":
        answer = f"{rng.randrange(4)}-{rng.randrange(2)}"
    elif task == "depth":
        perm = [1, 2, 3]
        rng.shuffle(perm)
        answer = "-".join(map(str, perm))
    else:
        answer = rng.choice("ABCD")
        if task == "position":
            words = list(POSITION_WORDS)
            rng.shuffle(words)
            options = dict(zip("ABCD", words))
    gt = {"task": task, "answer": answer, **({"options": options} if options else {})}
    return task, answer, json.dumps(gt, sort_keys=True, separators=(",", ":")), options


def _alternate_spelling(rng: random.Random, answer: str, options: dict | None) -> str:
    if "-" in answer:
        parts = answer.split("-")
        return rng.choice([", ".join(parts), "[" + ",".join(parts) + "]", " ".join(parts), "(" + ", ".join(parts) + ")"])
    spellings = [f"({answer})", f"{answer}.", f"Option {answer}", f"\\text{{{answer}}}", chr(ord(answer) + 0xFEE0)]
    if options:
        spellings += [f"{answer}. {options[answer]}", options[answer]]
    return rng.choice(spellings)


def _wrong(rng: random.Random, answer: str) -> str:
    if "-" in answer:
        parts = answer.split("-")
        rng.shuffle(parts)
        parts[0], parts[-1] = parts[-1], parts[0]
        return "-".join(parts)
    return rng.choice([c for c in "ABCD" if c != answer])


def normal_response(rng: random.Random) -> tuple[str, str, str]:
    """(response, JSON ground truth, plain ground truth)."""
    _, answer, gt, options = _truth(rng)
    reasoning = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 400)))
    kind = rng.random()
    if kind < 0.50:
        boxed = answer
    elif kind < 0.65:
        boxed = _alternate_spelling(rng, answer, options)
    elif kind < 0.85:
        boxed = _wrong(rng, answer)
    else:
        boxed = f"{answer} or {_wrong(rng, answer)}"
    response = f"<think>\n{reasoning}\n</think>\nTherefore the answer is \\boxed{{{boxed}}}."
    if rng.random() < 0.1:  # malformed: no think tags
        response = response.replace("<think>", "").replace("</think>", "")
    return response, gt, answer


def adversarial_response(rng: random.Random, size: int) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return "<think>" + "</think>" * (size // 16) + "\\boxed{" * (size // 14)
    if kind == 1:
        return "<think>" + "</think>\\boxed{" * (size // 15)
    if kind == 2:
        return "a" + " " * size + "b"  # a whitespace run that no < > / touches
    if kind == 3:
        return "\\boxed{" + "{" * size
    if kind == 4:
        return "<think></think>" + "\\boxed{" * (size // 7)
    if kind == 5:
        return "\\" * size
    if kind == 6:
        return "".join(rng.choice(["{", "}", "\\", "<", ">", "/", " ", "\\boxed{", "<think>", "</think>", "A"])
                       for _ in range(size // 3))[:size]
    return "<think>" + "< / " * (size // 4)


def make_responses(n: int, n_adversarial: int, max_kb: int, seed: int = 0):
    rng = random.Random(seed)
    items = [(*normal_response(rng), False) for _ in range(n - n_adversarial)]
    sizes = [1024 * kb for kb in range(1, max_kb + 1)]
    for i in range(n_adversarial):
        _, answer, gt, _ = _truth(rng)
        items.append((adversarial_response(rng, sizes[i % len(sizes)]), gt, answer, True))
    rng.shuffle(items)
    return items


# ------------------------------------------------------------------------------------------------- run
def run(fn, items) -> tuple[float, float, float, float]:
    """(total seconds, normal seconds, worst adversarial seconds, mean accuracy on normal responses)."""
    total = normal = worst = acc = 0.0
    for response, gt, plain, adversarial in items:
        t = time.perf_counter()
        s = fn(response, gt, plain)
        dt = time.perf_counter() - t
        total += dt
        if adversarial:
            worst = max(worst, dt)
        else:
            normal += dt
            acc += s["accuracy"]
    return total, normal, worst, acc / max(1, sum(not a for *_, a in items))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="responses in all")
    ap.add_argument("--adversarial", type=int, default=500, help="how many of them are adversarial")
    ap.add_argument("--max-kb", type=int, default=4, help="adversarial sizes cycle through 1..max-kb KB")
    args = ap.parse_args()

    items = make_responses(args.n, args.adversarial, args.max_kb)
    n_normal = args.n - args.adversarial
    ours = run(lambda r, gt, plain: score(r, gt), items)
    paper = run(lambda r, gt, plain: paper_reward(r, plain), items)  # the released data's plain answers

    print(f"{args.n} responses ({n_normal} normal, {args.adversarial} adversarial of 1-{args.max_kb} KB), "
          f"Python {sys.version.split()[0]}")
    print(f"{'reward':<22}{'all resp/s':>12}{'normal resp/s':>15}{'worst adversarial':>19}{'accuracy (normal)':>19}")
    for name, (total, normal, worst, acc) in (("ours (ssrl_plugin)", ours), ("paper exact-match", paper)):
        print(f"{name:<22}{args.n / total:>12,.0f}{n_normal / normal:>15,.0f}{worst * 1e3:>16.2f} ms{acc:>19.3f}")
    print(f"ratio ours/paper, responses per second: all {paper[0] / ours[0]:.1f}x, normal {paper[1] / ours[1]:.2f}x; "
          f"worst adversarial time: paper/ours {paper[2] / ours[2]:.0f}x")


if __name__ == "__main__":
    main()
