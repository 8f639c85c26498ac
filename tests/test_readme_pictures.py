"""The README's pictures are what the README says made them: `ssrl examples --out example_configs/pictures --seed 3`."""

from __future__ import annotations

from pathlib import Path

from data_builders.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_readme_pictures_are_regenerated_identically(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "ssrl examples --out example_configs/pictures --seed 3" in readme
    assert main(["examples", "--out", str(tmp_path), "--seed", "3"]) == 0
    committed = sorted(p.name for p in (ROOT / "example_configs" / "pictures").glob("*.jpg"))
    made = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert made == committed
    stale = [name for name in made if (tmp_path / name).read_bytes() != (ROOT / "example_configs" / "pictures" / name).read_bytes()]
    assert not stale, f"README pictures out of date: {stale}; run ssrl examples --out example_configs/pictures --seed 3"
