"""The adaptive curriculum's controller (data_builders.adaptive) and the online rows it steers (no torch, no verl).

The controller moves a task up after sustained high accuracy and back down after low accuracy, only between
batches and only with enough evidence at the current level; it is deterministic given the batches of
observations (in any order within a batch) and round-trips its state. OnlineRows draws each sample at its task's
current level, so the rows change when the controller does, and are the same again at the same levels.
"""

from __future__ import annotations

import json
import random

import pytest

from data_builders import adaptive
from data_builders.adaptive import AdaptiveConfig, AdaptiveCurriculum, CycleLevels, Observation
from data_builders.online import OnlineRows, build_config_from
from ssrl_plugin.config import load_config
from ssrl_plugin.errors import ConfigError
from ssrl_plugin.registry import get_task_class

LEVELS = {"shuffle": [1, 2, 3], "flip": [1, 2, 3]}
CFG = AdaptiveConfig(up=0.8, down=0.3, window=8, min_samples=4)


def batch(task, accs, level=None):
    return [Observation(task, a, level) for a in accs]


def test_moves_up_after_sustained_high_accuracy_and_only_with_enough_samples():
    c = AdaptiveCurriculum(LEVELS, CFG)
    assert c.current() == {"flip": 1, "shuffle": 1}
    assert c.observe(batch("shuffle", [1, 1, 1])) == {}  # 3 < min_samples
    assert c.observe(batch("shuffle", [1])) == {"shuffle": (1, 2)}
    assert c.level("shuffle") == 2 and c.level("flip") == 1 and c.accuracy("shuffle") is None  # window cleared
    assert c.observe(batch("shuffle", [1, 1, 1, 0, 0])) == {}  # 0.6: stays
    assert c.observe(batch("shuffle", [1, 1, 1, 1, 1, 1])) == {"shuffle": (2, 3)}  # last 8: 6 + 2 x 0.6 = 0.9
    for _ in range(5):
        assert c.observe(batch("shuffle", [1] * 8)) == {}  # already at the hardest level
    assert c.level("shuffle") == 3
    assert c.history == [(2, "shuffle", 1, 2), (4, "shuffle", 2, 3)]


def test_falls_back_below_the_lower_threshold_and_not_below_the_easiest():
    c = AdaptiveCurriculum(LEVELS, CFG)
    c.observe(batch("flip", [1] * 4))
    assert c.level("flip") == 2
    assert c.observe(batch("flip", [0, 0, 1, 0])) == {"flip": (2, 1)}  # 0.25 < 0.3
    assert c.observe(batch("flip", [0] * 8)) == {}  # the easiest level
    assert c.level("flip") == 1
    no_down = AdaptiveCurriculum(LEVELS, AdaptiveConfig(up=0.8, down=None, window=8, min_samples=4))
    no_down.observe(batch("flip", [1] * 4))
    no_down.observe(batch("flip", [0] * 8))
    assert no_down.level("flip") == 2


def test_the_window_is_the_last_responses_whatever_their_order_in_a_batch():
    c = AdaptiveCurriculum(LEVELS, AdaptiveConfig(up=0.8, down=0.3, window=8, min_samples=8))
    c.observe(batch("shuffle", [1, 0] * 4))
    c.observe(batch("shuffle", [1, 1, 1, 1]))  # last 8: these 4 + 4 of the first batch at its mean 0.5
    assert c.accuracy("shuffle") == 0.75 and c.count("shuffle") == 8 and c.level("shuffle") == 1
    big = AdaptiveCurriculum(LEVELS, AdaptiveConfig(up=0.8, down=0.3, window=8, min_samples=4))
    big.observe(batch("shuffle", [0] * 8 + [1] * 8))  # a batch larger than the window counts with its mean
    assert big.accuracy("shuffle") == 0.5 and big.level("shuffle") == 1


def test_stale_and_foreign_observations_are_not_used():
    c = AdaptiveCurriculum(LEVELS, CFG)
    c.observe(batch("shuffle", [1] * 4, level=1))
    assert c.level("shuffle") == 2
    c.observe(batch("shuffle", [0] * 10, level=1) + batch("depth", [0] * 10) + batch("shuffle", [float("nan")]))
    assert c.level("shuffle") == 2 and c.stale["shuffle"] == 10 and c.accuracy("shuffle") is None
    assert c.level("depth") is None and c("depth", 0) is None and c("shuffle", 7) == 2


def _trajectory(seed, steps=40):
    """Accuracies that rise, stay high, then collapse: a realistic noisy run."""
    rng = random.Random(seed)
    out = []
    for s in range(steps):
        p = min(0.95, 0.2 + 0.05 * s) if s < 30 else 0.1
        out.append([Observation(t, float(rng.random() < p), None) for t in ("shuffle", "flip") for _ in range(3)])
    return out


def test_deterministic_and_order_free_within_a_batch():
    runs = []
    for shuffle_batches in (False, True, True):
        c = AdaptiveCurriculum(LEVELS, CFG)
        levels = []
        for b in _trajectory(0):
            b = list(b)
            if shuffle_batches:
                random.Random(len(runs)).shuffle(b)
            c.observe(b)
            levels.append(c.current())
        runs.append((levels, c.state_dict()))
    assert runs[0] == runs[1] == runs[2]
    levels = [lv["shuffle"] for lv in runs[0][0]]
    assert levels[0] == 1 and max(levels) == 3 and levels[-1] < 3  # rose to the top, fell back at the end


def test_state_round_trip_continues_identically():
    full = AdaptiveCurriculum(LEVELS, CFG)
    half = AdaptiveCurriculum(LEVELS, CFG)
    traj = _trajectory(1)
    for b in traj[:17]:
        full.observe(b)
        half.observe(b)
    state = json.loads(json.dumps(half.state_dict()))  # plain JSON
    resumed = AdaptiveCurriculum(LEVELS, CFG)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == half.state_dict()
    for b in traj[17:]:
        assert full.observe(b) == resumed.observe(b)
        assert full.current() == resumed.current()
    assert full.state_dict() == resumed.state_dict()
    with pytest.raises(ConfigError, match="flip at level 7"):
        AdaptiveCurriculum(LEVELS, CFG).load_state_dict({**state, "levels": {"flip": 7}})


def test_metrics_and_config_errors():
    c = AdaptiveCurriculum(LEVELS, CFG)
    c.observe(batch("flip", [1, 0]))
    assert c.metrics() == {"curriculum/level_flip": 1.0, "curriculum/acc_flip": 0.5, "curriculum/window_flip": 2.0,
                           "curriculum/level_shuffle": 1.0, "curriculum/window_shuffle": 0.0}
    for bad, key in (({"up": 0.3, "down": 0.5}, "down"), ({"window": 4, "min_samples": 8}, "min_samples"),
                     ({"start": "max"}, "start"), ({"upp": 1}, "upp")):
        with pytest.raises(ConfigError, match=f"data.ssrl.adaptive.{key}"):
            AdaptiveConfig.from_mapping(bad)
    with pytest.raises(ConfigError, match="start"):
        AdaptiveCurriculum(LEVELS, AdaptiveConfig(start=4))
    with pytest.raises(ConfigError, match="no.*levels|none of the tasks"):
        AdaptiveCurriculum({"depth": []}, CFG)
    assert AdaptiveCurriculum(LEVELS, AdaptiveConfig(start=2)).current() == {"flip": 2, "shuffle": 2}


def test_config_section_from_verl_data_config():
    assert adaptive.adaptive_config_from({}) is None
    assert adaptive.adaptive_config_from({"ssrl": {"build": {"num_samples": 5}}}) is None
    assert adaptive.adaptive_config_from({"ssrl": {"adaptive": {"enable": False, "up": 0.9}}}) is None
    got = adaptive.adaptive_config_from({"ssrl": {"adaptive": {"up": 0.9, "window": 10, "min_samples": 5}}})
    assert got == AdaptiveConfig(up=0.9, window=10, min_samples=5)
    build_config_from({"ssrl": {"adaptive": {"up": 0.9}, "build": {"num_samples": 5}}})  # the key is accepted


def test_observations_from_rows():
    infos = [{"task": "crop", "difficulty": 2}, {"task": "flip", "difficulty": None}, {"task": "x"}]
    obs = adaptive.observations_from_rows(["spatial_ssrl/crop", "spatial_ssrl/flip", "other"], infos, [1.0, 0, 1])
    assert obs == [Observation("crop", 1.0, 2), Observation("flip", 0.0, None), Observation("x", 1.0, None)]
    assert adaptive.observations_from_rows(["spatial_ssrl/depth", "gsm8k"], [{}, {}], [1, 0]) == [
        Observation("depth", 1.0, None)]
    with pytest.raises(KeyError, match="metric"):
        adaptive.observations_from_rows(["spatial_ssrl/crop"], [{}], [None])


# ------------------------------------------------------------------------------------------- the rows
LEVELLED = [t for t in ("shuffle", "flip", "crop") if get_task_class(t).levels]


@pytest.fixture(scope="module")
def rows():
    config = load_config(None, None, num_samples=40, val_fraction=0.25, seed=0, mix={t: 1 for t in LEVELLED},
                         demo={"num_rgb": 6, "num_rgbd": 6, "width": 320, "height": 240})
    return OnlineRows(config, "train")


def _level(row):
    return row["extra_info"]["difficulty"], json.loads(row["extra_info"]["metadata"])["difficulty"]["level"]


def test_rows_follow_the_controller(rows):
    assert LEVELLED, "no task has levels"
    assert all(rows.task_levels[t] == sorted(get_task_class(t).levels) for t in LEVELLED)
    c = AdaptiveCurriculum({t: rows.task_levels[t] for t in rows.quotas}, CFG)
    rows.level_fn = c
    try:
        index = {}
        for i in range(len(rows)):
            index.setdefault(rows.position(0, i)[0], i)
        task, i = "shuffle", index["shuffle"]
        other = index[next(t for t in index if t != task)]
        first, first_other = rows.row(0, i), rows.row(0, other)
        assert _level(first) == (1, 1)
        c.observe(batch(task, [1] * 4))  # shuffle moves to level 2
        second = rows.row(0, i)
        assert _level(second) == (2, 2) and second["extra_info"]["id"] == first["extra_info"]["id"]
        assert second["images"] != first["images"]
        assert rows.row(0, other) == first_other  # the other task did not move
        assert rows.row(0, i, level=1) == first  # the same (epoch, index, level): the same row
        c.observe(batch(task, [0] * 4))  # back to level 1
        assert rows.row(0, i) == first
    finally:
        rows.level_fn = None
    assert _level(rows.row(0, i)) == (0, None)  # no controller: the configured level (none; the column says 0)


def test_levels_deal_their_own_answer_slots(rows):
    for i in range(len(rows)):
        task, _ = rows.position(0, i)
        for level in rows.task_levels[task]:
            cand = rows.candidate(0, i, 0, level)
            assert cand.level == level and 0 <= cand.slot < rows._task(task, level).num_slots


def test_validation_cycles_the_levels():
    cycle = CycleLevels({"shuffle": [1, 2, 3], "depth": []})
    assert [cycle("shuffle", k) for k in range(5)] == [1, 2, 3, 1, 2] and cycle("depth", 3) is None


# ------------------------------------------------------------------------------------------- the example script
def test_example_script_follows_the_conventions(tmp_path):
    """example_configs/verl_grpo_adaptive.sh: the checks tests/test_example_configs.py makes of the other scripts
    (valid bash, `set -euo pipefail` first, paths from `ssrl paths` or its own folder), and its dry run passes the
    online overrides plus the curriculum's (verl's Hydra composes it in tests/integration)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    configs = Path(__file__).resolve().parent.parent / "example_configs"
    script = configs / "verl_grpo_adaptive.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    code = [ln for ln in script.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert code[0] == "set -euo pipefail" and 'eval "$(ssrl paths --shell)"' in code
    for relative in ("reward_fns/", "ssrl_plugin/", "templates/", "example_configs/", "./", "../"):
        assert relative not in "\n".join(code), relative
    assert re.search(r"\$\(cd \"\$\(dirname \"\$\{BASH_SOURCE\[0\]\}\"\)\" && pwd\)", "\n".join(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSRL_")}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), SSRL_DRY_RUN="1")
    out = subprocess.run(["bash", str(script), "++data.ssrl.adaptive.up=0.9"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    argv = out.stdout.splitlines()
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"] and argv[-1] == "++data.ssrl.adaptive.up=0.9"
    for name in ("verl_grpo_online.overrides", "verl_grpo_adaptive.overrides"):
        lines = [ln for ln in (configs / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert all(ln in argv for ln in lines), name
    assert "trainer.v1.sampler.custom_sampler.name=AdaptiveReplayBuffer" in argv
    assert "data.dataloader_num_workers=0" in argv
