"""``ssrl score``: score saved model outputs against a built dataset, per task, with the training reward."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ssrl_plugin import scoring
from ssrl_plugin.errors import SSRLError


def ground_truths(out: Path, split: str | None = None) -> dict[str, str]:
    """Sample id → ground-truth JSON, from the EasyR1 layout if present, else the verl one."""
    for layout, id_col, gt_col in (("easyr1", "id", "answer"), ("verl", "extra_info", "reward_model")):
        files = sorted((out / layout).glob(f"{split or '*'}-*.parquet"))
        if not files:
            continue
        truths: dict[str, str] = {}
        for path in files:
            table = pq.read_table(path, columns=[id_col, gt_col]).to_pylist()
            for row in table:
                rid = row[id_col]["id"] if layout == "verl" else row[id_col]
                gt = row[gt_col]["ground_truth"] if layout == "verl" else row[gt_col]
                truths[rid] = gt
        return truths
    raise SSRLError(f"{out}: no easyr1/ or verl/ parquet files (build with --format easyr1 or verl)")


def read_responses(path: Path) -> list[tuple[str, str]]:
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                pairs.append((str(obj["id"]), obj["response"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise SSRLError(f"{path}:{n}: expected a JSON object with 'id' and 'response' ({type(exc).__name__})") from None
    return pairs


@dataclass
class ScoreReport:
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    unknown_ids: list[str] = field(default_factory=list)
    missing: int = 0
    duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"per_task": self.per_task, "overall": self.overall, "unknown_ids": self.unknown_ids[:100],
                "num_unknown_ids": len(self.unknown_ids), "missing": self.missing, "duplicates": self.duplicates}


def score_file(out: str | Path, responses: str | Path, split: str | None = None, **options: Any) -> ScoreReport:
    truths = ground_truths(Path(out), split)
    opts = scoring.make_options(**options)
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    report = ScoreReport()
    seen: set[str] = set()
    for rid, response in read_responses(Path(responses)):
        if rid not in truths:
            report.unknown_ids.append(rid)
            continue
        if rid in seen:
            report.duplicates += 1
            continue
        seen.add(rid)
        result = scoring.evaluate(response, truths[rid], None, opts)
        for key in (result.task, "all"):
            sums[key]["n"] += 1
            for k, v in result.scores().items():
                sums[key][k] += v
    report.missing = len(truths) - len(seen)
    for key, s in sums.items():
        n = s.pop("n")
        row = {"n": int(n), **{k: v / n for k, v in s.items()}}
        if key == "all":
            report.overall = row
        else:
            report.per_task[key] = row
    report.per_task = dict(sorted(report.per_task.items()))
    return report


def format_report(report: ScoreReport) -> str:
    lines = [f"{'task':<10}{'n':>7}{'accuracy':>10}{'format':>8}{'overall':>9}{'hedged':>8}"]
    for task, row in [*report.per_task.items(), ("all", report.overall)]:
        if row:
            lines.append(f"{task:<10}{row['n']:>7}{row['accuracy']:>10.3f}{row['format']:>8.3f}{row['overall']:>9.3f}{row['hedged']:>8.3f}")
    if report.missing:
        lines.append(f"{report.missing} samples have no response")
    if report.unknown_ids:
        lines.append(f"{len(report.unknown_ids)} responses name an id that is not in the dataset, e.g. {report.unknown_ids[0]!r}")
    if report.duplicates:
        lines.append(f"{report.duplicates} duplicate responses ignored (the first one counts)")
    return "\n".join(lines)
