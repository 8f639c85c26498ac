"""Reward entry files for the trainers; each is also loadable by file path, which is how the trainers load them.

* ``easyr1.py`` -- EasyR1: ``worker.reward.reward_function=<EASYR1_FILE>:compute_score``
* ``verl.py``   -- verl: ``reward.custom_reward_function.path=<VERL_FILE>`` (or ``pkg://reward_fns.verl``)

Both wrap ``ssrl_plugin.scoring``; its module docstring says exactly what passes. Importing this package
imports neither file (nor anything heavy).
"""

from pathlib import Path

EASYR1_FILE = str(Path(__file__).resolve().with_name("easyr1.py"))
VERL_FILE = str(Path(__file__).resolve().with_name("verl.py"))

__all__ = ["EASYR1_FILE", "VERL_FILE"]
