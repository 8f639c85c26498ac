"""Imports point one way: the core (ssrl_plugin) never imports the builders, the rewards, or a trainer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("data_builders", "reward_fns", "torch", "transformers", "verl", "ray")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_core_modules_import_nothing_above_the_core():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in sorted((ROOT / "ssrl_plugin").rglob("*.py"))
                 for line, name in imported_modules(path)
                 if name.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_importing_every_core_module_loads_no_builder_or_trainer():
    modules = sorted("ssrl_plugin." + ".".join(p.relative_to(ROOT / "ssrl_plugin").with_suffix("").parts)
                     for p in (ROOT / "ssrl_plugin").rglob("*.py") if p.name != "__init__.py")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"the core pulled in: {out.strip()}"


def test_the_console_script_lives_above_the_core():
    setup = (ROOT / "setup.py").read_text()
    assert "ssrl=data_builders.cli:main" in setup
    assert not (ROOT / "ssrl_plugin" / "cli.py").exists() and not (ROOT / "ssrl_plugin" / "paths.py").exists()
