"""Measured difficulty per task and level, from the data (``ssrl stats``).

Two measures, as the levels promise:
- the sighted solver's accuracy (``audit_sighted``: shuffle's edge-compatibility arrangement, crop's seam
  continuity) where one exists: a solver that looks at the picture finds harder levels harder;
- otherwise, and besides, the means of what each sample's ``metadata["difficulty"]["measured"]`` records (the
  depth gap between regions, the margin over position's thresholds, the flip's visibility...), geometry that the
  task measured on the sample.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

SIGHTED_PER_LEVEL = 200  # rows per (task, level) the sighted solver looks at (the first ones in file order)


@dataclass
class DifficultyStats:
    sighted_per_level: int = SIGHTED_PER_LEVEL
    rows: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    sums: dict[tuple[str, str], dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    sighted: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, row) -> None:
        """One stored row (``stats.Row``, with its images for the sighted solver)."""
        info = row.metadata.get("difficulty") or {}
        key = (row.task, _key(info.get("level")))
        self.rows[key] += 1
        for name, value in (info.get("measured") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.sums[key][name] += float(value)
                self.counts[key][name] += 1
        if row.images is not None and len(self.sighted[key]) < self.sighted_per_level:
            from .audit_sighted import sighted_item

            try:
                item = sighted_item(row)
            except (KeyError, IndexError, TypeError, ValueError):  # an odd row: not measured, not fatal
                item = None
            if item is not None:
                self.sighted[key].append(float(item["correct"]))

    def report(self) -> dict[str, dict[str, Any]]:
        """``{task: {level: {"rows", "measured": {name: mean}, "sighted_accuracy", "sighted_n"}}}``, levels in
        order ("none" for rows built without one)."""
        out: dict[str, dict[str, Any]] = defaultdict(dict)
        for task, level in sorted(self.rows, key=lambda k: (k[0], _order(k[1]))):
            key = (task, level)
            entry: dict[str, Any] = {"rows": self.rows[key], "measured": {
                name: round(total / self.counts[key][name], 4) for name, total in sorted(self.sums[key].items())}}
            if self.sighted[key]:
                entry["sighted_accuracy"] = round(sum(self.sighted[key]) / len(self.sighted[key]), 4)
                entry["sighted_n"] = len(self.sighted[key])
            out[task][level] = entry
        return dict(out)


def _key(level: Any) -> str:
    return "none" if level is None else str(level)


def _order(level: str) -> tuple[int, int]:
    return (0, 0) if level == "none" else (1, int(level))


def format_difficulty(report: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for task, levels in report.items():
        for level, entry in levels.items():
            sighted = (f", sighted solver {100 * entry['sighted_accuracy']:.0f}% of {entry['sighted_n']}"
                       if "sighted_accuracy" in entry else "")
            measured = ", ".join(f"{k} {v:g}" for k, v in entry["measured"].items())
            lines.append(f"  {task:<9} level {level:<5} {entry['rows']:>6} rows{sighted}{'; ' + measured if measured else ''}")
    return ["difficulty per task and level:", *lines] if lines else []
