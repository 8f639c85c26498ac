"""``ssrl verify``: re-derive every stored answer from its images, metadata and source.

Each task's ``verify`` takes a route independent of its generator (matching patches against the source,
un-flipping, reading depth at the marked windows...), so a bug in generation shows up here as a mismatch.

Reads the easyr1 or verl parquet files, or the ``sft/`` JSON of a ``--format sft`` build. Sources are found where
the manifest recorded them or, when the corpus moved, under ``--sources DIR`` (see :mod:`.relocate`). A sample
whose source cannot be found or loaded is still checked against its own metadata (the answer agrees with what the
metadata records, images decode, one image per ``<image>``) and counted as checked *without its source*; that is
reported, not a mismatch.

Speed and memory: rows are read in windows of :data:`WINDOW` rows (file order); inside a window they are grouped
by source, so each source is decoded once per window, and a decoded source that a later window needs again is kept
(up to :data:`CACHE_BYTES` per process). ``workers > 1`` spreads a window's source groups over processes; the
report is the same for any number of workers.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ssrl_plugin.config import BuildConfig
from ssrl_plugin.errors import SourceError, SSRLError
from ssrl_plugin.imaging import decode_image
from ssrl_plugin.registry import Task, create_task, list_tasks
from ssrl_plugin.sources import LoadOptions, SourceRef, load_source

from . import task_hooks
from .relocate import FoundSources, find_sources

LAYOUTS = ("easyr1", "verl", "sft")
WINDOW = 512  # rows read (with their images) at a time
CACHE_BYTES = 512 * 2**20  # decoded sources kept per process for later windows


@dataclass
class VerifyReport:
    checked: int = 0
    per_task: Counter = field(default_factory=Counter)
    problems: list[dict[str, Any]] = field(default_factory=list)
    without_source: int = 0  # samples checked against their metadata only (source missing or unloadable)
    missing_sources: list[str] = field(default_factory=list)  # recorded roots found nowhere
    not_loaded: dict[str, str] = field(default_factory=dict)  # source id -> why (root found, this source not)
    moved: dict[str, str] = field(default_factory=dict)  # recorded root -> where it was found
    layout: str = ""

    @property
    def ok(self) -> bool:
        return self.checked > 0 and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "per_task": dict(self.per_task), "problems": self.problems,
                "without_source": self.without_source, "missing_sources": self.missing_sources,
                "sources_not_loaded": self.not_loaded, "relocated": self.moved, "layout": self.layout}


# ============================================================================================ reading
def read_manifest(out: Path) -> dict[str, Any]:
    from .stats import read_manifest as read

    manifest = read(out)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise SSRLError(f"{Path(out) / 'manifest.json'}: no build config in it (not a manifest written by `ssrl build`)")
    return manifest


@dataclass
class VRow:
    """One stored sample as verify needs it (picklable: it travels to worker processes)."""

    index: int
    id: str
    task: str
    question: str
    answer: str
    gt: dict[str, Any]
    meta: dict[str, Any] | None  # None: the metadata is not valid JSON
    images: list[bytes] | None = None
    image_error: str | None = None  # an image file that could not be read

    @property
    def source_id(self) -> str | None:
        src = (self.meta or {}).get("source") or {}
        return src.get("id") if isinstance(src, dict) else None


def pick_layout(out: Path, layout: str | None) -> str:
    def present(name: str) -> bool:
        if name == "sft":
            return any((out / "sft" / f"{s}.json").exists() for s in ("train", "val"))
        return any((out / name).glob("*.parquet"))

    if layout:
        if not present(layout):
            raise SSRLError(f"{out}: no {layout}/ files to verify" + ("" if layout == "sft" else " (no *.parquet)"))
        return layout
    for name in LAYOUTS:
        if present(name):
            return name
    raise SSRLError(f"{out}: nothing to verify (no easyr1/ or verl/ parquet files, no sft/train.json or sft/val.json)")


def _loads(text: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read_images(out: Path, base: Path, values: list) -> tuple[list[bytes], str | None]:
    images, error = [], None
    for im in values or []:
        if isinstance(im, dict):
            images.append(im.get("bytes") or b"")
            continue
        try:
            images.append((base / im).read_bytes())
        except OSError as exc:
            error = f"image {im}: cannot read ({exc.strerror or exc})"
    return images, error


_COLUMNS = {"easyr1": ["problem", "answer", "task", "id", "metadata"], "verl": ["prompt", "reward_model", "extra_info"]}


def _parquet_rows(out: Path, layout: str, images: bool) -> Iterator[VRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    index = 0
    for path in sorted((out / layout).glob("*.parquet")):
        try:
            pf = pq.ParquetFile(path)
            batches = pf.iter_batches(batch_size=64, columns=_COLUMNS[layout] + (["images"] if images else []))
            for batch in batches:
                data = batch.to_pydict()
                for i in range(batch.num_rows):
                    if layout == "easyr1":
                        rid, task, question, gt, meta = (data[k][i] for k in ("id", "task", "problem", "answer", "metadata"))
                    else:
                        extra = data["extra_info"][i]
                        rid, task, meta = extra["id"], extra["task"], extra["metadata"]
                        question, gt = data["prompt"][i][0]["content"], data["reward_model"][i]["ground_truth"]
                    gt = _loads(gt) or {}
                    row = VRow(index, rid, task, question, str(gt.get("answer", "")), gt, _loads(meta))
                    if images:
                        row.images, row.image_error = _read_images(out, out, data["images"][i])
                    index += 1
                    yield row
        except (pa.ArrowException, OSError, KeyError, IndexError, TypeError) as exc:
            raise SSRLError(f"{path}: cannot read this parquet file ({type(exc).__name__}: {exc})") from None


_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def _sft_rows(out: Path, images: bool) -> Iterator[VRow]:
    root = out / "sft"
    index = 0
    for split in ("train", "val"):
        path = root / f"{split}.json"
        if not path.exists():
            continue
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SSRLError(f"{path}: cannot read it as JSON ({exc})") from None
        if not isinstance(entries, list):
            raise SSRLError(f"{path}: expected a JSON array of SFT rows")
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict) or "metadata" not in entry or "messages" not in entry:
                raise SSRLError(f"{path}: row {n} has no metadata (written by an older `ssrl build --format sft`): "
                                f"rebuild to verify it")
            messages = entry["messages"]
            question = messages[0]["content"] if messages else ""
            found = _BOXED.findall(messages[-1]["content"]) if messages else []
            answer = found[-1].strip() if found else ""
            task = entry.get("task", "")
            row = VRow(index, str(entry.get("id", f"{split}:{n}")), task, question, answer,
                       {"task": task, "answer": answer}, _loads(entry["metadata"]))
            if images:
                row.images, row.image_error = _read_images(out, root, entry.get("images") or [])
            index += 1
            yield row


def read_rows(out: Path, layout: str, images: bool = True) -> Iterator[VRow]:
    """Every stored sample of ``layout`` in file order (train files before val for sft)."""
    return _sft_rows(out, images) if layout == "sft" else _parquet_rows(out, layout, images)


# ============================================================================================ checking
def _check_shuffle(answer: str, meta: dict) -> list[str]:
    labels = meta["answer_labels"]
    if "-".join(str(v) for v in labels) != answer:
        return [f"metadata answer_labels {labels} disagree with the answer {answer}"]
    if sorted(labels) != list(range(len(labels))) or labels == sorted(labels):
        return [f"answer_labels {labels} is not a shuffled permutation"]
    return []


def _check_flip(answer: str, meta: dict) -> list[str]:
    want = f"{meta['flipped_index']}-{meta['direction']}"
    return [] if want == answer else [f"metadata flips patch {want}, the answer says {answer}"]


def _check_crop(answer: str, meta: dict) -> list[str]:
    letters = [o["letter"] for o in meta["options"]]
    true = [o["letter"] for o in meta["options"] if o.get("method") == "true_crop"]
    problems = [] if true == [answer] else [f"metadata marks {true} as the true crop, the answer is {answer}"]
    if answer in letters and meta.get("answer_index") != letters.index(answer):
        problems.append(f"answer_index {meta.get('answer_index')} disagrees with answer {answer}")
    return problems


def _check_depth(answer: str, meta: dict) -> list[str]:
    by_depth = "-".join(str(r["label"]) for r in sorted(meta["regions"], key=lambda r: r["median_farness"]))
    recorded = "-".join(str(v) for v in meta["order_near_to_far"])
    if by_depth != answer or recorded != answer:
        return [f"recorded depths order the regions {by_depth} (order_near_to_far {recorded}), the answer says {answer}"]
    return []


def _check_position(answer: str, meta: dict) -> list[str]:
    text = (meta.get("options") or {}).get(answer)
    return [] if text == meta["answer_text"] else [f"option {answer} is {text!r}, the metadata's answer_text is {meta['answer_text']!r}"]


METADATA_CHECKS = {"shuffle": _check_shuffle, "flip": _check_flip, "crop": _check_crop, "depth": _check_depth,
                   "position": _check_position}


def metadata_problems(task: str, answer: str, meta: dict) -> list[str]:
    """What can be checked without the source: the answer agrees with what the metadata records."""
    check = METADATA_CHECKS.get(task) or task_hooks.hook(task, "check_metadata")
    if check is None:
        return []
    try:
        return check(answer, meta)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [f"metadata incomplete: {type(exc).__name__}: {exc}"]


_WORKER: dict[str, Any] = {}


def _init_worker(task_configs: dict[str, Any], load: dict[str, Any]) -> None:
    _WORKER.update(task_configs=task_configs, load=LoadOptions(**load), tasks={}, cache=OrderedDict(), bytes=0)


def _size(source: Any) -> int:
    if not hasattr(source, "rgb"):  # an opened sequence: its index (decoded frames are bounded by its frame cache)
        return 1 << 20
    n = source.rgb.nbytes * 2  # the array and the kept PIL decode
    if source.depth is not None:
        n += source.depth.values.nbytes + source.depth.valid.nbytes
    return n


def _source(ref: SourceRef, keep: bool) -> tuple[Any, str | None]:
    """Decode ``ref`` once; kept for a later window when ``keep`` (oldest dropped beyond CACHE_BYTES)."""
    cache: OrderedDict = _WORKER["cache"]
    if ref.id in cache:
        result = cache.pop(ref.id) if not keep else cache[ref.id]
        if not keep:
            _WORKER["bytes"] -= result[2]
        return result[0], result[1]
    try:
        source, why = load_source(ref, _WORKER["load"]), None
    except SourceError as exc:
        source, why = None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder bug: this source is reported, the run goes on
        source, why = None, f"{ref.rgb_path or ref.id}: {type(exc).__name__}: {exc}"
    if keep:
        size = _size(source) if source is not None else 0
        cache[ref.id] = (source, why, size)
        _WORKER["bytes"] += size
        while _WORKER["bytes"] > CACHE_BYTES and len(cache) > 1:
            _WORKER["bytes"] -= cache.popitem(last=False)[1][2]
    return source, why


def _task(name: str, meta: dict) -> Task:
    """The task as it made this row: its configured settings at the level the row records."""
    level = (meta.get("difficulty") or {}).get("level")
    tasks = _WORKER["tasks"]
    if (name, level) not in tasks:
        config = dict(_WORKER["task_configs"].get(name) or {})
        tasks[(name, level)] = create_task(name, {**config, "level": level})
    return tasks[(name, level)]


@dataclass
class RowResult:
    index: int
    id: str
    task: str
    problems: list[str]
    without_source: bool  # the source was missing or did not load: checked against the metadata only


def check_group(job: tuple[SourceRef | None, str | None, bool, list[VRow]]) -> tuple[list[RowResult], str | None]:
    """Verify the rows of one source: decode it once, then each row against it (or its metadata alone).
    Returns the rows' results and, when the source could not be used, why."""
    ref, why, keep, rows = job
    source = None
    if ref is not None:
        source, why = _source(ref, keep)
    results = []
    for row in rows:
        problems: list[str] = []
        images = []
        if row.meta is None:
            problems.append("metadata is not valid JSON")
        if row.image_error:
            problems.append(row.image_error)
        try:
            images = [decode_image(b) for b in row.images or []]
        except SourceError as exc:
            problems.append(f"an image does not decode ({exc})")
        n = row.question.count("<image>")
        if n != len(row.images or []):
            problems.append(f"{n} <image> placeholders for {len(row.images or [])} images")
        if not problems:
            meta = row.meta
            if source is None:
                problems += metadata_problems(row.task, row.answer, meta)
            elif source.digest != meta["source"].get("digest"):
                problems.append(f"source {source.id} changed since the build (digest differs)")
            else:
                try:
                    problems += _task(row.task, meta).verify(images, row.answer, meta, source)
                except SSRLError:
                    raise
                except Exception as exc:  # noqa: BLE001 - odd metadata: a mismatch on this row, not a crash
                    problems.append(f"verify failed: {type(exc).__name__}: {exc}")
        results.append(RowResult(row.index, row.id, row.task, problems, source is None))
    return results, (why if source is None else None)


# ============================================================================================ driver
def _windows(rows: Iterator[VRow], size: int) -> Iterator[list[VRow]]:
    while True:
        window = list(islice(rows, size))
        if not window:
            return
        yield window


AUTO_WORKERS_MIN_ROWS = 200  # below this, starting worker processes costs more than it saves


def verify_dataset(out: str | Path, layout: str | None = None, limit: int | None = None, progress: bool = False,
                   sources: Sequence[str] = (), workers: int | None = 1, window: int = WINDOW) -> VerifyReport:
    """Check every stored sample (the first ``limit`` in file order when given); see the module doc."""
    out = Path(out)
    if workers is not None and workers < 1:
        raise SSRLError(f"--workers {workers}: must be >= 1")
    manifest = read_manifest(out)
    layout = pick_layout(out, layout)
    found, config = find_sources(manifest["config"], sources)
    report = VerifyReport(missing_sources=list(found.missing), moved=dict(found.moved), layout=layout)

    # pass 1 (no images): which windows need each source, so a decoded source is kept only when needed again
    sids = [row.source_id for row in islice(read_rows(out, layout, images=False), limit)]
    last_window: dict[str | None, int] = {sid: i // window for i, sid in enumerate(sids)}
    rows = islice(read_rows(out, layout, images=True), limit)

    task_configs = {name: config.task_config(name) for name in list_tasks()}
    load = dataclasses.asdict(config.source)
    if workers is None:  # automatic: processes pay off once there is more than a few seconds of work
        workers = 1 if len(sids) < AUTO_WORKERS_MIN_ROWS else max(1, min(8, os.cpu_count() or 1))
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(task_configs, load))
    else:
        _init_worker(task_configs, load)
    results: list[RowResult] = []
    try:
        with tqdm(total=len(sids), disable=not progress, desc="ssrl verify") as bar:
            for w, batch in enumerate(_windows(rows, window)):
                groups: dict[str | None, list[VRow]] = defaultdict(list)
                for row in batch:
                    groups[row.source_id].append(row)
                jobs = []
                for sid in sorted(groups, key=lambda s: (s is None, s or "")):
                    ref = found.refs.get(sid) if sid is not None else None
                    why = None if ref is not None else _why_missing(sid, found)
                    jobs.append((ref, why, last_window.get(sid, w) > w, groups[sid]))
                mapped = pool.imap(check_group, jobs) if pool else map(check_group, jobs)
                for (ref, _why, _keep, group_rows), (group, why) in zip(jobs, mapped):
                    results += group
                    if why and ref is not None:  # its root is there but this source is not loadable
                        report.not_loaded.setdefault(ref.id, why)
                    elif why and not found.missing:  # an id no recorded source has
                        report.not_loaded.setdefault(str(group_rows[0].source_id), why)
                    bar.update(len(group))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for r in sorted(results, key=lambda r: r.index):
        report.checked += 1
        report.per_task[r.task] += 1
        report.without_source += r.without_source
        if r.problems:
            report.problems.append({"id": r.id, "task": r.task, "problems": r.problems})
    return report


def _why_missing(sid: str | None, found: FoundSources) -> str:
    if sid is None:
        return "no source id in the metadata"
    if found.missing:
        return f"source {sid} not found (sources not found: {', '.join(found.missing)})"
    return f"source {sid} not found under the recorded sources"


def summary(report: VerifyReport) -> str:
    tasks = ", ".join(f"{t} {n}" for t, n in sorted(report.per_task.items()))
    line = f"verified {report.checked} samples ({tasks}): {len(report.problems)} mismatches"
    if report.without_source:
        line += (f"; {report.without_source} of them checked without their source "
                 f"(answer against the metadata only)")
    return line
