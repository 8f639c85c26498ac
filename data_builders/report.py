"""What a build reports: the manifest (counts, per-input accounting, fingerprints) and its summary table."""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ssrl_plugin
from ssrl_plugin.config import BuildConfig
from ssrl_plugin.imaging import file_digest
from ssrl_plugin.sources import SourceRef

if TYPE_CHECKING:
    from .pipeline import Pools, SplitStats

STAGES = ("discover", "load", "generate")


def input_path(ref: SourceRef) -> str:
    return ref.rgb_path or f"{ref.scheme}:{ref.id}"


def without_path(reason: str, path: str) -> str:
    """``reason`` without a leading ``path: `` (the entry names its path already)."""
    for p in dict.fromkeys((path, os.path.abspath(path))):
        if reason.startswith(p + ": "):
            return reason[len(p) + 2:]
    return reason


def account_inputs(pools: Pools, bad_sources: dict[str, str], split_stats: dict[str, SplitStats]):
    """Every input in exactly one of four states: used (samples made), skipped (with its stage and reason: not
    taken at discovery, unreadable at load, or failed later: a source that failed after making samples is skipped,
    its reason says how many of its samples were kept), no sample (visited, every candidate rejected: the rejection
    reasons), or not needed (the build had its samples before visiting it). Returns (counts, skipped, no_sample)."""
    refs: dict[str, SourceRef] = {}
    for ref in (*pools.rgbd, *pools.rgb, *pools.sequences):  # a source in both pools (RGB tasks on RGB-D images) counts once
        refs.setdefault(ref.id, ref)
    made: Counter = Counter()
    fruitless: dict[str, Counter] = defaultdict(Counter)
    for st in split_stats.values():
        made.update(st.samples_by_source)
        for sid, reasons in st.fruitless.items():
            fruitless[sid].update(reasons)
    skipped = [{"path": os.path.abspath(path), "stage": "discover", "reason": without_path(reason, path)}
               for path, reason in pools.skipped]
    no_sample = []
    used = 0
    for sid, ref in refs.items():
        if sid in bad_sources:
            path = input_path(ref)
            reason = without_path(bad_sources[sid], path)
            if made[sid]:  # written before the failure, and kept: the rows are valid
                reason += f"; {made[sid]} sample{'s' if made[sid] != 1 else ''} made before it failed kept"
            skipped.append({"path": path, "stage": "load", "reason": reason})
        elif made[sid]:
            used += 1
        elif sid in made:
            reasons = ", ".join(f"{k} x{n}" for k, n in sorted(fruitless[sid].items(), key=lambda kv: (-kv[1], kv[0])))
            no_sample.append({"path": input_path(ref), "stage": "generate",
                              "reason": f"no sample: every candidate was rejected ({reasons or 'no reason recorded'})"})
    total = len(refs) + len(pools.skipped)
    counts = {"total": total, "used": used, "skipped": len(skipped), "no_sample": len(no_sample),
              "not_needed": total - used - len(skipped) - len(no_sample)}
    order = {s: i for i, s in enumerate(STAGES)}
    skipped.sort(key=lambda e: (order[e["stage"]], e["path"], e["reason"]))
    no_sample.sort(key=lambda e: e["path"])
    return counts, skipped, no_sample


def skipped_frames(pools: Pools, split_stats: dict[str, SplitStats]) -> list[dict[str, str]]:
    """Frames of sequences that could not be decoded (the draws that met them were made again), each once:
    ``{path, reason, sequence}`` (``sequence``: the input they belong to). Not inputs: counted apart from them."""
    paths = {ref.id: input_path(ref) for ref in pools.all_refs()}
    frames: dict[str, dict[str, str]] = {}
    for _, st in sorted(split_stats.items(), key=lambda kv: kv[0] != "val"):  # validation was built first
        for path, (message, sid) in sorted(st.bad_frames.items()):
            frames.setdefault(path, {"path": path, "reason": without_path(without_path(message, path),
                                                                          path.rsplit("#", 1)[0]),
                                     "sequence": paths.get(sid, sid)})
    return [frames[p] for p in sorted(frames)]


def make_manifest(config: BuildConfig, pools: Pools, val_ids: set[str], first_val: set[str], targets: dict[str, int],
                  split_stats: dict[str, SplitStats], bad_sources: dict[str, str], files: list[Path], out: Path,
                  elapsed: float) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    total: Counter = Counter()
    for split, st in sorted(split_stats.items()):
        per: dict[str, dict[str, int]] = defaultdict(dict)
        for (task, variant), n in sorted(st.counts.items()):
            per[task][variant] = n
            total[task] += n
        counts[split] = dict(per)
    counts["total"] = dict(sorted(total.items()))
    answers: dict[str, Counter] = defaultdict(Counter)
    rejected: dict[str, Counter] = defaultdict(Counter)
    for st in split_stats.values():
        for task, c in st.answers.items():
            answers[task].update(c)
        for task, c in st.rejected.items():
            rejected[task].update(c)
    file_hashes = {str(p.relative_to(out)): file_digest(p) for p in sorted(files)}
    if not config.output.embed_images:
        for p in sorted((out / "images").rglob("*")):
            if p.is_file():
                file_hashes[str(p.relative_to(out))] = file_digest(p)
    content = hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(file_hashes.items())).encode()).hexdigest()
    n = sum(total.values())
    inputs, skipped, no_sample = account_inputs(pools, bad_sources, split_stats)
    splits = {s: {"target": targets[s], "rows": sum(st.built.values()) if (st := split_stats.get(s)) else 0}
              for s in ("train", "val")}
    splits["val"].update(sources=len(val_ids), replacement_sources=len(val_ids - first_val))
    manifest = {
        "ssrl_version": ssrl_plugin.__version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "sources": {
            "demo": pools.demo,
            "rgb": len(pools.rgb),
            "rgbd": len(pools.rgbd),
            "rgb_tasks_use_rgbd_images": pools.rgb_from_rgbd,
            "sequences": len(pools.sequences),
            "posed_sequences": len(pools.get("posed")),
            "val_sources": len(val_ids),
            "roots": {"rgb": list(config.rgb), "rgbd": list(config.rgbd), "sequences": list(config.sequences)},
        },
        "splits": splits,
        "counts": counts,
        "answers": {t: dict(sorted(c.items())) for t, c in sorted(answers.items())},
        "rejected": {t: dict(sorted(c.items())) for t, c in sorted(rejected.items())},
        "candidates": {s: dict(sorted(st.candidates.items())) for s, st in sorted(split_stats.items())},
        "shortfall": {s: st.shortfall for s, st in sorted(split_stats.items()) if st.shortfall},
        "inputs": inputs,
        "skipped_inputs": skipped,
        "no_sample_inputs": no_sample,
        "skipped_frames": skipped_frames(pools, split_stats),
        "files": file_hashes,
        "content_hash": content,
        "wall_time_s": round(elapsed, 3),
        "samples_per_s": round(n / elapsed, 2) if elapsed > 0 else None,
    }
    plan = config.curriculum_plan()
    if plan is not None:
        train = split_stats.get("train")
        manifest["curriculum"] = curriculum_stages(plan, train.stage_rows if train else [])
    return manifest


def curriculum_stages(plan, stage_rows: list[int]) -> dict[str, Any]:
    """Where each stage's rows are, in rows and in trainer steps of ``plan.batch`` prompts (half-open ranges; a
    step that straddles two stages belongs to both)."""
    stages, start = [], 0
    for i, (level, end) in enumerate(zip(plan.levels, stage_rows)):
        stages.append({"stage": i + 1, "level": level, "rows": [start, end],
                       "steps": [start // plan.batch, -(-end // plan.batch)]})
        start = end
    return {"levels": list(plan.levels), "shares": list(plan.shares), "batch": plan.batch, "stages": stages}


def summary_table(manifest: dict[str, Any]) -> str:
    """Plain-text table of samples per task and split, then inputs, shortfalls and the content hash."""
    counts = manifest["counts"]
    tasks = [*counts["total"], *(t for t in manifest["rejected"] if t not in counts["total"])]  # 0-row tasks too
    w = max([10, *(len(t) + 2 for t in tasks)])
    lines = [f"{'task':<{w}}{'train':>8}{'val':>8}{'rejected':>10}"]
    totals = Counter()
    for t in tasks:
        row = {"train": sum(counts.get("train", {}).get(t, {}).values()),
               "val": sum(counts.get("val", {}).get(t, {}).values()),
               "rejected": sum(v for k, v in manifest["rejected"].get(t, {}).items() if k != "gave_up_after_attempts")}
        totals.update(row)
        lines.append(f"{t:<{w}}{row['train']:>8}{row['val']:>8}{row['rejected']:>10}")
    lines.append(f"{'total':<{w}}{totals['train']:>8}{totals['val']:>8}{totals['rejected']:>10}")
    inputs = manifest.get("inputs")
    if inputs:
        lines.append(f"inputs: {inputs['total']} = {inputs['used']} used + {inputs['not_needed']} not needed + "
                     f"{inputs['skipped']} skipped + {inputs['no_sample']} without a sample")
    for entry in [*manifest["skipped_inputs"], *manifest.get("no_sample_inputs", [])][:5]:
        lines.append(f"  {entry['stage']}: {entry['path']}: {entry['reason']}")
    if len(manifest["skipped_inputs"]) + len(manifest.get("no_sample_inputs", [])) > 5:
        lines.append("  ... (all of them in manifest.json: skipped_inputs, no_sample_inputs)")
    frames = manifest.get("skipped_frames", [])
    if frames:
        lines.append(f"frames skipped: {len(frames)} could not be decoded (draws that met them were made again)")
        for entry in frames[:5]:
            lines.append(f"  {entry['path']}: {entry['reason']}")
        if len(frames) > 5:
            lines.append("  ... (all of them in manifest.json: skipped_frames)")
    for split, short in manifest["shortfall"].items():
        target = manifest.get("splits", {}).get(split, {})
        have = f" ({target['rows']} of {target['target']} rows)" if target else ""
        lines.append(f"shortfall in {split}{have}: " + ", ".join(f"{t} {n}" for t, n in short.items()))
    val = manifest.get("splits", {}).get("val", {})
    if val.get("replacement_sources"):
        lines.append(f"validation: {val['replacement_sources']} of its {val['sources']} sources replace failed ones")
    lines.append(f"content hash: {manifest['content_hash']}  ({manifest['wall_time_s']} s, {manifest['samples_per_s']} samples/s)")
    return "\n".join(lines)
