"""Answers for tests of the rewards and of `ssrl eval` (no torch: both suites import it)."""

from __future__ import annotations


def wrong_answer(answer: str) -> str:
    """A well-formed answer that is not ``answer`` (another letter, another order, another patch)."""
    if len(answer) == 1 and answer.isalpha():
        return "ABCD"[("ABCD".index(answer) + 1) % 4]
    parts = answer.split("-")
    rotated = "-".join(parts[1:] + parts[:1])
    if rotated != answer:
        return rotated
    return "-".join([str((int(parts[0]) + 1) % 4), *parts[1:]])  # flip "1-1": another patch
