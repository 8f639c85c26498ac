#!/usr/bin/env python3
"""Reward per Spatial-SSRL task at each verl step, from the rollouts verl dumps (``trainer.rollout_data_dir``).

verl 0.9.1 writes ``<dir>/<step>.jsonl`` after each training step: one line per response with ``output`` (the
decoded response), ``gts`` (our ground truth JSON, which names the task) and ``score`` (the reward it trained on).
This prints, per step and task: responses, mean reward, and accuracy / format re-scored with our reward.

    python reward_per_task.py ROLLOUT_DIR              # every step written so far
    python reward_per_task.py ROLLOUT_DIR --follow     # and each new step as it appears (Ctrl-C or --pid ends it)

Used by gpu_smoke.sh; needs only spatial-ssrl (no torch, no verl).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path


def _score():
    try:
        from reward_fns import verl as reward
    except ImportError:  # a source checkout that is not installed
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from reward_fns import verl as reward
    return reward.compute_score


def read_step(path: Path) -> list[dict] | None:
    """The records of one step file, or None while verl is still writing it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.endswith("\n"):
        return None
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        return None


def task_of(gts) -> str:
    try:
        return str(json.loads(gts)["task"])
    except (TypeError, ValueError, KeyError):
        return "unknown"


def summarise(records: list[dict], score=None) -> dict[str, dict[str, float]]:
    """task -> {n, reward, acc, format} (reward: verl's; acc/format: our reward re-run on the response)."""
    score = score or _score()
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        task = task_of(r.get("gts"))
        s = score(f"spatial_ssrl/{task}", r.get("output"), r.get("gts"), {"task": task})
        for key, value in (("n", 1.0), ("reward", float(r.get("score", 0.0))), ("acc", s["acc"]), ("format", s["format"])):
            sums[task][key] += value
            sums["all"][key] += value
    return {t: {"n": v["n"], **{k: v[k] / v["n"] for k in ("reward", "acc", "format")}} for t, v in sums.items()}


def table(step: int, summary: dict[str, dict[str, float]]) -> str:
    lines = [f"step {step}: reward per task", f"  {'task':<10}{'n':>6}{'reward':>9}{'acc':>8}{'format':>8}"]
    for task in [*sorted(t for t in summary if t != "all"), "all"]:
        if task in summary:
            v = summary[task]
            lines.append(f"  {task:<10}{int(v['n']):>6}{v['reward']:>9.3f}{v['acc']:>8.3f}{v['format']:>8.3f}")
    return "\n".join(lines)


def steps_in(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.glob("*.jsonl") if p.stem.isdigit())


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rollout_dir", type=Path)
    ap.add_argument("--follow", action="store_true", help="keep printing new steps")
    ap.add_argument("--pid", type=int, help="with --follow: stop when this process (the trainer) has ended")
    ap.add_argument("--interval", type=float, default=5.0)
    args = ap.parse_args(argv)
    score = _score()
    done: set[int] = set()
    while True:
        alive = _alive(args.pid)  # checked before reading, so the steps written before the trainer ended are read
        for step in steps_in(args.rollout_dir) if args.rollout_dir.is_dir() else []:
            if step in done:
                continue
            records = read_step(args.rollout_dir / f"{step}.jsonl")
            if records is None:
                continue
            print(table(step, summarise(records, score)), flush=True)
            done.add(step)
        if not args.follow or not alive:
            break
        time.sleep(args.interval)
    if not done:
        print(f"no rollout steps in {args.rollout_dir} (verl writes them with trainer.rollout_data_dir=...)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
