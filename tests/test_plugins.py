"""Third-party tasks registered through the ``ssrl_plugin.tasks`` entry-point group, installed the way pip does
it: a package plus a ``*.dist-info`` folder with ``entry_points.txt`` on ``sys.path``."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_builders.pipeline import largest_remainder
from data_builders.verify import verify_dataset
from ssrl_plugin import registry
from data_builders.cli import main
from ssrl_plugin.config import load_config, paper_mix
from ssrl_plugin.errors import ConfigError
from ssrl_plugin.paper import BUILTIN_ORDER, SEQUENCE_ORDER

PLUGIN = "ssrl_toy_plugin"
TASK = "halves"
SMALL_DEMO = ["demo.num_rgb=6", "demo.num_rgbd=0", "demo.width=320", "demo.height=240"]

PLUGIN_CODE = '''
"""A toy pretext task: which half of the image is brighter? (slot 1 mirrors the image, balancing the answer)"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ssrl_plugin.core import Sample
from ssrl_plugin.errors import Reject
from ssrl_plugin.registry import Task, TaskConfig, check

QUESTION = "<image>\\nWhich half of this image is brighter on average?\\nA. Left\\nB. Right"


def halves(rgb):
    w = rgb.shape[1] // 2
    return float(rgb[:, :w].mean()), float(rgb[:, rgb.shape[1] - w:].mean())


@dataclass
class HalvesConfig(TaskConfig):
    min_gap: float = 0.1  # mean grey levels between the halves

    def validate(self):
        check(self.min_gap >= 0, "task.halves.min_gap", f"must be >= 0, got {self.min_gap}")


class HalvesTask(Task):
    name = "halves"
    config_cls = HalvesConfig
    description = "Which half of the image is brighter, left or right? (toy plugin)"

    @property
    def num_slots(self):
        return 2

    def generate(self, source, rng, slot=0):
        rgb = np.ascontiguousarray(source.rgb[:, ::-1]) if slot == 1 else source.rgb
        left, right = halves(rgb)
        if abs(left - right) < self.config.min_gap:
            raise Reject("halves/too_close", f"halves differ by {abs(left - right):.2f}")
        answer = "A" if left > right else "B"
        metadata = {"mirrored": slot == 1, "left_mean": left, "right_mean": right}
        return Sample(self.name, self.name, QUESTION, [Image.fromarray(rgb)], answer, metadata,
                      options={"A": "Left", "B": "Right"})

    def verify(self, images, answer, metadata, source):
        problems = []
        if source is None:
            return ["source unavailable"]
        rgb = source.rgb[:, ::-1] if metadata["mirrored"] else source.rgb
        left, right = halves(rgb)
        if ("A" if left > right else "B") != answer:
            problems.append(f"answer {answer} but the halves are {left:.2f} / {right:.2f}")
        shown = np.asarray(images[0].convert("RGB"), np.float32)
        if shown.shape != rgb.shape or float(np.abs(shown - rgb).mean()) > 8:
            problems.append("the image is not the (mirrored) source")
        return problems
'''


def install_plugin(site: Path) -> None:
    """What ``pip install`` leaves behind: the package and its dist-info with the entry point."""
    pkg = site / PLUGIN
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Toy Spatial-SSRL plugin."""\n')
    (pkg / "tasks.py").write_text(PLUGIN_CODE)
    info = site / f"{PLUGIN}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN.replace('_', '-')}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[ssrl_plugin.tasks]\n{TASK} = {PLUGIN}.tasks:HalvesTask\n")
    (info / "top_level.txt").write_text(f"{PLUGIN}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """The toy plugin installed on sys.path; the registry re-reads entry points and is restored afterwards."""
    site = tmp_path / "site"
    install_plugin(site)
    registry.list_tasks()  # built-ins register on first import only: have them in the state we restore
    saved_registry, saved_loaded = dict(registry._REGISTRY), registry._plugins_loaded
    monkeypatch.syspath_prepend(str(site))  # also invalidates importlib's caches
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    registry._plugins_loaded = False
    try:
        yield site
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved_registry)
        registry._plugins_loaded = saved_loaded
        for name in [m for m in sys.modules if m == PLUGIN or m.startswith(PLUGIN + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()


def read_rows(out: Path) -> list[dict]:
    return [r for p in sorted((out / "easyr1").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def build_argv(out: Path, tasks: str, n: int, *extra: str) -> list[str]:
    return ["build", "--out", str(out), "--tasks", tasks, "--num-samples", str(n), "--quiet", *extra, *SMALL_DEMO]


# --------------------------------------------------------------------------------------------------- tests

def test_plugin_is_listed_after_the_builtins(plugin_site):
    names = registry.list_tasks()
    assert names == [*BUILTIN_ORDER, *SEQUENCE_ORDER, TASK]
    cls = registry.get_task_class(TASK)
    assert cls.__module__ == f"{PLUGIN}.tasks" and issubclass(cls, registry.Task)
    task = registry.create_task(TASK, min_gap=2.0)
    assert task.config.min_gap == 2.0 and task.num_slots == 2 and not task.needs_depth
    with pytest.raises(ConfigError, match=r"task\.halves\.min_gap"):
        registry.create_task(TASK, min_gap=-1.0)


def test_plugin_is_gone_after_reset():
    """The fixture's teardown restores the registry: no plugin leaks into other tests."""
    assert TASK not in registry.list_tasks()
    with pytest.raises(ConfigError, match="unknown task"):
        registry.get_task_class(TASK)


def test_ssrl_tasks_prints_plugin(plugin_site, capsys):
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith(TASK))
    assert "rgb" in line and "toy plugin" in line
    assert main(["tasks", "--json"]) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == [*BUILTIN_ORDER, *SEQUENCE_ORDER, TASK]
    assert rows[TASK] == {"task": TASK, "input": "rgb", "variants": [TASK], "slots": 2,
                          "description": "Which half of the image is brighter, left or right? (toy plugin)",
                          "knobs": [], "levels": {}}  # a plugin without difficulty levels


def test_fresh_process_discovers_plugin(plugin_site):
    """No monkeypatching at all: a new interpreter finds the entry point from the dist-info on PYTHONPATH."""
    proc = subprocess.run([sys.executable, "-m", "data_builders.cli", "tasks", "--json"], check=False, capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert [r["task"] for r in json.loads(proc.stdout)] == [*BUILTIN_ORDER, *SEQUENCE_ORDER, TASK]


def test_build_with_plugin_task(plugin_site, tmp_path):
    out = tmp_path / "out"
    assert main(build_argv(out, TASK, 16, "--val-fraction", "0.25")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["total"] == {TASK: 16}
    assert manifest["counts"]["train"] == {TASK: {TASK: 12}}
    assert sum(manifest["counts"]["val"][TASK].values()) == 4
    assert manifest["shortfall"] == {}
    assert set(manifest["answers"][TASK]) == {"A", "B"}  # the mirrored slot balances the answer
    rows = read_rows(out)
    assert len(rows) == 16
    for row in rows:
        gt = json.loads(row["answer"])
        assert row["task"] == gt["task"] == TASK and set(gt) == {"task", "answer", "task_rows", "split_rows"}
        assert gt["answer"] in ("A", "B") and gt["task_rows"] == gt["split_rows"] in (12, 4)  # one task: its split
    assert sorted(json.loads(r["answer"])["split_rows"] for r in rows) == [4] * 4 + [12] * 12
    report = verify_dataset(out)
    assert report.checked == 16 and report.problems == []

    # the rewards score plugin rows like any multiple-choice task, with a per-task accuracy key
    from reward_fns.easyr1 import compute_score

    inputs = [{"response": f"<think>look</think> \\boxed{{{json.loads(r['answer'])['answer']}}}", "ground_truth": r["answer"]}
              for r in rows]
    scores = compute_score(inputs)
    assert all(s["accuracy"] == 1.0 for s in scores)
    assert sum(s[f"accuracy_{TASK}"] for s in scores) / len(scores) == pytest.approx(1.0)


def test_plugin_weight_defaults_to_the_mean_of_the_mix(plugin_site, tmp_path):
    """A plugin task is not in the paper's mix: selected with --tasks it gets the mix's mean weight."""
    out = tmp_path / "out"
    assert main(build_argv(out, f"{TASK},flip", 30, "--val-fraction", "0")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    weights = load_config(None, None, **manifest["config"]).weights()
    mix = paper_mix()
    assert weights == {TASK: pytest.approx(sum(mix.values()) / len(mix)), "flip": mix["flip"]}
    want = largest_remainder(30, weights)
    assert manifest["counts"]["total"] == want
    assert want[TASK] > want["flip"] > 0
    assert verify_dataset(out).problems == []

    # an explicit mix weight wins
    out2 = tmp_path / "out2"
    assert main(build_argv(out2, f"{TASK},flip", 30, "--val-fraction", "0", f"mix.{TASK}=1", "mix.flip=2")) == 0
    manifest2 = json.loads((out2 / "manifest.json").read_text())
    assert manifest2["counts"]["total"] == {TASK: 10, "flip": 20}


def test_plugin_build_is_identical_with_worker_processes(plugin_site, tmp_path):
    """Spawned workers re-discover the plugin from sys.path: same bytes as the in-process build."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(build_argv(one, TASK, 12, "--workers", "1")) == 0
    assert main(build_argv(two, TASK, 12, "--workers", "2")) == 0
    h1 = json.loads((one / "manifest.json").read_text())["content_hash"]
    h2 = json.loads((two / "manifest.json").read_text())["content_hash"]
    assert h1 == h2


@pytest.mark.parametrize("override", [[], ["mix.nosuch=1"], ["task.nosuch.x=1"]])
def test_unknown_task_is_a_one_line_error_listing_registered_tasks(plugin_site, tmp_path, capsys, override):
    argv = build_argv(tmp_path / "o", "nosuch" if not override else TASK, 5, *override)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("ssrl: error:")
    assert "unknown task 'nosuch'" in err
    registered = err.split("registered:", 1)[1]
    assert [t.strip() for t in registered.split(",")] == [*BUILTIN_ORDER, *SEQUENCE_ORDER, TASK]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unknown_task_from_python(plugin_site):
    with pytest.raises(ConfigError) as exc:
        registry.create_task("halve")
    message = str(exc.value)
    assert "\n" not in message and "'halve'" in message and message.endswith(f"{', '.join([*BUILTIN_ORDER, *SEQUENCE_ORDER, TASK])}")


def test_a_broken_plugin_is_skipped_with_a_warning(monkeypatch):
    class BrokenEntryPoint:
        name, value, group = "broken", "nowhere.module:Task", registry.ENTRY_POINT_GROUP

        def load(self):
            raise ImportError("No module named 'nowhere'")

    snapshot = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry.importlib_metadata, "entry_points", lambda group=None: [BrokenEntryPoint()])
    try:
        with pytest.warns(UserWarning, match="task plugin 'broken'.*skipped: ImportError"):
            names = registry.list_tasks()
        assert {"shuffle", "flip", "crop", "depth", "position"} <= set(names) and "broken" not in names
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(snapshot)
