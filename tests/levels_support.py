"""Helpers shared by the difficulty-level tests (tests/test_levels_rgb.py, tests/test_levels_rgbd.py)."""

from __future__ import annotations

import dataclasses

import pytest

from ssrl_plugin.errors import ConfigError
from ssrl_plugin.imaging import decode_image
from ssrl_plugin.registry import create_task, get_task_class


def same(a, b) -> bool:
    """Knob values equal up to JSON's int/float and list/tuple spelling."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def check_declared_levels(task: str) -> None:
    """Levels 1..N (N >= 3), each setting every knob (config fields), each making a task with those values; an
    unknown level is a config error naming the key; no level leaves the defaults untouched."""
    cls = get_task_class(task)
    levels = sorted(cls.levels)
    assert len(levels) >= 3 and levels == list(range(1, len(levels) + 1)), f"{task}: levels {levels}, want 1..N with N >= 3"
    knobs = cls.knob_names()
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    assert set(knobs) <= fields - {"level"}, f"{task}: knobs {knobs} are not all config fields"
    for level in levels:
        assert set(cls.levels[level]) == set(knobs), f"{task} level {level} sets {sorted(cls.levels[level])}, not every knob {knobs}"
        made = create_task(task, {"level": level})
        assert made.config.level == level
        for k, v in cls.levels[level].items():
            assert same(getattr(made.config, k), v), f"{task} level {level}: {k} = {getattr(made.config, k)!r}, level says {v!r}"
    with pytest.raises(ConfigError, match=f"task.{task}.level"):
        create_task(task, {"level": len(levels) + 1})
    plain = create_task(task)  # no level: the configured (default) values, untouched
    assert plain.config.level is None and plain.config == cls.config_cls()


def check_verifies(task: str, level: int, rows: list, source_of) -> None:
    """``task.verify`` at ``level`` re-derives every row's answer from its source (``source_of(id)``)."""
    made = create_task(task, {"level": level})
    for r in rows:
        source = source_of(r.metadata["source"]["id"])
        assert source.digest == r.metadata["source"]["digest"], f"{r.id}: demo source changed"
        images = [decode_image(b) for b in r.images]
        problems = made.verify(images, r.answer, r.metadata, source)
        assert problems == [], f"{r.id} (level {level}) does not verify: {problems}"
