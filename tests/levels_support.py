"""Helpers shared by the difficulty-level tests (tests/test_levels_rgb.py, tests/test_levels_rgbd.py)."""

from __future__ import annotations


def same(a, b) -> bool:
    """Knob values equal up to JSON's int/float and list/tuple spelling."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b
