"""Crop audit across corpora and seeds: learned blind solver, best rule, sighted solver, and build speed.

    python bench/bench_audit.py [--corpus /tmp/ssrl_bench_corpus] [--sources 40] [--samples 1000]
                                [--seeds 11,12] [--kinds demo,coco,diode,megadepth,photos] [--json FILE]

For every (input kind, seed) it builds a crop-only dataset (default config, one worker), runs ``ssrl audit`` on it
(the rule solvers, the learned blind solvers of ``spatial-ssrl[audit]`` and the sighted solver) and prints one row:

- ``learned``: the learned blind solver's accuracy (chance 25 %) and 95 % Wilson interval, and the verdict;
- ``best rule``: the rule solver with the largest margin over chance;
- ``sighted``: the edge-continuity solver's accuracy (it sees the picture; the construction must keep it >= 90 %);
- ``ms/sample``: the build's wall time per sample (decode, generate, encode, write).

Kinds: ``demo`` (the built-in procedural corpus), ``coco`` / ``diode`` / ``megadepth`` (bench/corpus.py, photo-like
renders at the paper's sources' sizes and formats), ``photos`` (the real photographs that scikit-image and
scikit-learn ship with their wheels, when installed: ~20 pictures, so each gives many samples; the folds of the
learned solver are grouped by source, so no picture is both trained and scored on).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.corpus import generate  # noqa: E402
from data_builders.audit import run_audit  # noqa: E402
from data_builders.pipeline import build  # noqa: E402
from ssrl_plugin.config import load_config  # noqa: E402

KINDS = ("demo", "coco", "diode", "megadepth", "photos")


def bundled_photos(out: Path) -> Path | None:
    """Copy the photographs bundled with scikit-image and scikit-learn into ``out`` (None when neither is there)."""
    from PIL import Image

    found: list[Path] = []
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        found += [p for p in sorted(data.glob("*")) if p.suffix in (".png", ".jpg")]
    except ImportError:
        pass
    try:
        import sklearn.datasets

        found += sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))
    except ImportError:
        pass
    out.mkdir(parents=True, exist_ok=True)
    kept = 0
    for p in found:
        with Image.open(p) as im:
            # photographs only: no synthetic test charts, logos, text pages, tiny icons or multi-page files
            if min(im.size) < 256 or p.stem in ("chessboard_GRAY", "chessboard_RGB", "logo", "text", "page", "color",
                                                  "phantom", "microaneurysms", "horse"):
                continue
        shutil.copy(p, out / p.name)
        kept += 1
    return out if kept else None


def sources(kind: str, corpus: Path, n: int) -> list[str] | None:
    if kind == "demo":
        return []
    if kind == "photos":
        got = bundled_photos(corpus / "photos")
        return [str(got)] if got else None
    paths = generate(str(corpus), {k: (n if k == kind else 0) for k in ("coco", "diode", "megadepth")},
                     {"coco": (640, 480), "diode": (1024, 768), "megadepth": (1600, 1064)}, 0,
                     {"coco": 0, "diode": 0, "megadepth": 0}, 0.7)
    return [str(paths[f"{kind}_rgb"])]


def pick(solvers: list[dict], kind: str) -> dict | None:
    rows = [s for s in solvers if s.get("kind") == kind and s.get("task") == "crop"]
    return max(rows, key=lambda s: s["accuracy"] - s["chance"]) if rows else None


def fmt(s: dict | None) -> str:
    if s is None:
        return "-"
    lo, hi = s["ci95"]
    return f"{s['accuracy'] * 100:.1f}% [{lo * 100:.1f}-{hi * 100:.1f}] {s['status']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "ssrl_bench_corpus"))
    p.add_argument("--sources", type=int, default=40, help="sources per photo-like kind")
    p.add_argument("--samples", type=int, default=1000, help="samples per crop build")
    p.add_argument("--seeds", default="11,12")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args(argv)
    corpus = Path(a.corpus)
    rows = []
    print(f"{'input':<10} {'seed':>4} {'n':>5}  {'learned blind (chance 25%)':<32} {'best rule':<30} "
          f"{'sighted':<30} {'ms/sample':>9}")
    for kind in a.kinds.split(","):
        rgb = sources(kind, corpus, a.sources)
        if rgb is None:
            print(f"{kind:<10} skipped: no bundled photographs (pip install scikit-image scikit-learn)")
            continue
        for seed in (int(s) for s in a.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "crop"
                config = load_config(None, [], out=str(out), rgb=rgb, rgbd=[], tasks=["crop"],
                                     num_samples=a.samples, workers=1, seed=seed)
                t0 = time.perf_counter()
                build(config, overwrite=True, progress=False)
                ms = (time.perf_counter() - t0) * 1000 / a.samples
                report = run_audit(out).to_dict()
            solvers = report["solvers"]
            row = {"input": kind, "seed": seed, "n": report["samples"].get("crop/crop", 0), "result": report["result"],
                   "learned": pick(solvers, "learned"), "rule": pick(solvers, "rule"),
                   "sighted": pick(solvers, "sighted"), "ms_per_sample": round(ms, 2)}
            rows.append(row)
            print(f"{kind:<10} {seed:>4} {row['n']:>5}  {fmt(row['learned']):<32} {fmt(row['rule']):<30} "
                  f"{fmt(row['sighted']):<30} {ms:>9.1f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
