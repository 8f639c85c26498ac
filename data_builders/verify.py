"""``ssrl verify``: re-derive every stored answer from its images, metadata and source.

Each task's ``verify`` takes a route independent of its generator (matching patches against the source,
un-flipping, reading depth at the marked windows...), so a bug in generation shows up here as a mismatch.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from ssrl_plugin.config import BuildConfig, load_config
from ssrl_plugin.errors import SourceError, SSRLError
from ssrl_plugin.imaging import decode_image
from ssrl_plugin.registry import Task, create_task
from ssrl_plugin.sources import load_source

from .pipeline import collect_sources


@dataclass
class VerifyReport:
    checked: int = 0
    per_task: Counter = field(default_factory=Counter)
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checked > 0 and not self.problems


def read_manifest(out: Path) -> tuple[dict[str, Any], BuildConfig]:
    path = out / "manifest.json"
    if not path.exists():
        raise SSRLError(f"{out}: no manifest.json (not a dataset built by `ssrl build`)")
    manifest = json.loads(path.read_text())
    cfg = manifest["config"]
    config = load_config(None, None, **cfg)
    return manifest, config


def rows(out: Path, layout: str):
    """(row id, task, question, answer, ground truth json, metadata json, image bytes list) per stored row."""
    for path in sorted((out / layout).glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            if layout == "easyr1":
                question, gt, meta, rid = row["problem"], row["answer"], row["metadata"], row["id"]
            else:
                question, gt = row["prompt"][0]["content"], row["reward_model"]["ground_truth"]
                meta, rid = row["extra_info"]["metadata"], row["extra_info"]["id"]
            images = [im["bytes"] if isinstance(im, dict) else (out / im).read_bytes() for im in row["images"]]
            yield rid, question, gt, meta, images


def verify_dataset(out: str | Path, layout: str | None = None, limit: int | None = None, progress: bool = False) -> VerifyReport:
    out = Path(out)
    manifest, config = read_manifest(out)
    layout = layout or ("easyr1" if (out / "easyr1").exists() else "verl")
    if not (out / layout).exists():
        raise SSRLError(f"{out}: no {layout}/ parquet files to verify (build with --format easyr1 or verl)")
    pools = collect_sources(config)
    refs = {r.id: r for r in pools.rgb + pools.rgbd}
    opts = config.source
    tasks: dict[str, Task] = {}
    cache: dict[str, Any] = {}
    report = VerifyReport()
    total = sum(manifest["counts"]["total"].values())
    for rid, question, gt_json, meta_json, image_bytes in tqdm(rows(out, layout), total=total, disable=not progress, desc="ssrl verify"):
        if limit is not None and report.checked >= limit:
            break
        gt, meta = json.loads(gt_json), json.loads(meta_json)
        name, answer = gt["task"], gt["answer"]
        problems: list[str] = []
        if question.count("<image>") != len(image_bytes):
            problems.append(f"{question.count('<image>')} <image> placeholders for {len(image_bytes)} images")
        if name not in tasks:
            tasks[name] = create_task(name, config.task.get(name))
        sid = meta["source"]["id"]
        if sid not in cache:
            ref = refs.get(sid)
            try:
                cache.clear()  # keep one decoded source: rows of a source are not contiguous, memory stays flat
                cache[sid] = load_source(ref, opts) if ref else None
            except SourceError:
                cache[sid] = None
        source = cache[sid]
        if source is not None and source.digest != meta["source"]["digest"]:
            problems.append(f"source {sid} changed since the build (digest differs)")
        else:
            images = [decode_image(b) for b in image_bytes]
            problems += tasks[name].verify(images, answer, meta, source)
        report.checked += 1
        report.per_task[name] += 1
        if problems:
            report.problems.append({"id": rid, "task": name, "problems": problems})
    return report
