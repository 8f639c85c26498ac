"""What the tools (verify, audit, gallery) know about a task beyond the task itself, one module per task.

The five image tasks keep theirs in :mod:`data_builders.audit`, :mod:`.audit_learned`, :mod:`.preview` and
:mod:`.verify`; tasks added since (the sequence tasks) put everything in ``data_builders/task_hooks/<task>.py``,
which may define any of:

- ``check_metadata(answer, meta) -> list[str]``: problems found comparing the answer with the metadata alone
  (``ssrl verify`` without sources);
- ``extract(row, base) -> dict``: the rule solvers' item of one stored row (``base`` holds id, group and answer);
- ``audit(items, variant) -> list[SolverResult]``: the rule (blind) solvers of one task/variant;
- ``learned_item(row, image, rule_item) -> dict | None`` and ``learned(items, variant) -> list``: the learned blind
  solvers (features without the picture's content, gradient-boosted trees; see :mod:`data_builders.audit_learned`);
- ``sighted_item(row) -> dict | None`` and ``sighted(variant, items) -> list``: a solver that looks at what defines
  the answer and must find it;
- ``overlay(row, images, loader) -> Overlay``: the gallery picture that shows why the answer is right.

The consumers import a hook module only when a row of its task shows up, so this package imports nothing heavy.
"""

from __future__ import annotations

import importlib
from types import ModuleType

HOOKED_TASKS = ("temporal_order", "camera_motion", "cross_view")


def hooks(task: str) -> ModuleType | None:
    """The hook module of ``task``, or None for a task without one."""
    if task not in HOOKED_TASKS:
        return None
    return importlib.import_module(f"{__name__}.{task}")


def hook(task: str, name: str):
    """One hook function of ``task`` (None when the task or the function does not exist)."""
    module = hooks(task)
    return getattr(module, name, None) if module is not None else None
