"""Absolute paths of the files a trainer config points at, wherever the package is installed.

EasyR1 silently drops a ``data.format_prompt`` whose relative path does not resolve from the working directory,
so configs and launch scripts take these absolute paths (``eval "$(ssrl paths --shell)"``).
"""

from __future__ import annotations

from pathlib import Path

import ssrl_plugin

PACKAGE = Path(ssrl_plugin.__file__).resolve().parent


def trainer_paths() -> dict[str, str]:
    import reward_fns

    rewards = Path(reward_fns.__file__).resolve().parent
    paths = {
        "SSRL_REWARD_EASYR1": rewards / "easyr1.py",
        "SSRL_REWARD_VERL": rewards / "verl.py",
        "SSRL_FORMAT_PROMPT": PACKAGE / "templates" / "format_prompt.jinja",
    }
    checkout_configs = PACKAGE.parent / "example_configs"
    if checkout_configs.is_dir():  # present in a source checkout / editable install
        paths["SSRL_EXAMPLE_CONFIGS"] = checkout_configs
    return {k: str(v) for k, v in paths.items()}
