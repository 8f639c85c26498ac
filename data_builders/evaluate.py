"""``ssrl eval``: run a model on a built split, score every response with our reward, report per task.

    ssrl eval --data DIR --model PATH [--backend transformers|vllm] [--split val] [--limit N] [--out run.jsonl]
              [--batch-size B] [--max-new-tokens T] [--html report.html]
    ssrl eval --compare a.jsonl b.jsonl [--data DIR --html report.html]

The prompt of a sample is the model processor's chat template over one user turn: the stored question, split at
its ``<image>`` placeholders with the sample's images (decoded from the stored JPEG bytes) in their place, and the
format instruction the build recorded (``manifest config output.instruction``) appended where the stored rows do
not hold it (EasyR1 rows; verl rows already do). Decoding is greedy. Each response is scored with
:func:`ssrl_plugin.scoring.score` against the row's ground-truth JSON, exactly what the EasyR1 and verl rewards do.

The JSONL run file has one line per sample, in dataset order: ``id``, ``task``, ``variant``, ``level`` (the
difficulty level, 0 without levels), ``response`` and ``score`` (the reward's dict). A sample counts as *correct*
when its ``accuracy`` is 1.

Backends (imported lazily, so this module and its tests need no torch): ``transformers`` (AutoProcessor +
AutoModelForImageTextToText, else the class config.json's ``architectures`` names, from a local folder, CPU or GPU;
tested on tiny random Qwen2.5-VL and Qwen3-VL models) and ``vllm`` (``LLM.generate`` with multi-modal data; a thin
path, not exercised by the tests). A backend is any callable ``list[Prompt] -> list[str]``.

``--compare`` pairs two run files on the ids both hold and, per task, tests the accuracy difference with the exact
McNemar test (a two-sided binomial sign test on the discordant pairs).
"""

from __future__ import annotations

import argparse
import base64
import html
import inspect
import io
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssrl_plugin.errors import SSRLError

IMAGE = "<image>"
Z95 = 1.959963984540054
BACKENDS = ("transformers", "vllm")
WORST_PER_TASK = 3


# ============================================================================================ prompts
@dataclass
class Prompt:
    id: str
    task: str
    variant: str
    level: int
    text: str  # the question with the format instruction, <image> placeholders kept
    images: list[bytes]
    ground_truth: str

    def content(self) -> list[dict[str, Any]]:
        """Chat content: text pieces and ``{"type": "image"}`` in placeholder order (images without a placeholder
        go first, as EasyR1 does when a question has none)."""
        parts = self.text.split(IMAGE)
        out: list[dict[str, Any]] = []
        if len(parts) - 1 < len(self.images):
            out += [{"type": "image"}] * (len(self.images) - (len(parts) - 1))
        for i, piece in enumerate(parts):
            if i:
                out.append({"type": "image"})
            if piece:
                out.append({"type": "text", "text": piece})
        return out

    def pil_images(self) -> list:
        from PIL import Image

        return [Image.open(io.BytesIO(data)).convert("RGB") for data in self.images]


def _level(row) -> int:
    diff = row.metadata.get("difficulty")
    if isinstance(diff, dict):
        return int(diff.get("level") or 0)
    return int(diff or 0) if isinstance(diff, (int, float)) else 0


def load_prompts(data: str | Path, split: str = "val", limit: int | None = None, images: bool = True) -> list[Prompt]:
    from .stats import iter_rows, pick_layout, read_manifest

    out = Path(data)
    if not out.exists():
        raise SSRLError(f"--data {out}: no such folder")
    manifest = read_manifest(out)
    layout = pick_layout(out)
    output = (manifest.get("config") or {}).get("output") or {}
    instruction = output.get("instruction") or ""
    present = output.get("easyr1_instruction", False) if layout == "easyr1" else output.get("verl_instruction", True)
    prompts = []
    for row in iter_rows(out, layout, splits=[split], images=images):
        if limit is not None and len(prompts) >= limit:
            break
        text = row.question if present or not instruction else f"{row.question}\n{instruction}"
        prompts.append(Prompt(row.id, row.task, row.variant, _level(row), text, row.images or [],
                              json.dumps(row.gt)))
    if not prompts:
        raise SSRLError(f"--split {split}: {out} has no {split} rows")
    return prompts


# ============================================================================================ running
Backend = Callable[[Sequence[Prompt]], list[str]]


def run_eval(prompts: Sequence[Prompt], backend: Backend, batch_size: int = 8, progress: bool | None = None,
             **options: Any) -> list[dict[str, Any]]:
    """Generate (in batches) and score every prompt; one record per prompt, in order."""
    from tqdm import tqdm

    from ssrl_plugin import scoring

    show = sys.stderr.isatty() if progress is None else progress
    records: list[dict[str, Any]] = []
    batch_size = max(1, int(batch_size))
    with tqdm(total=len(prompts), disable=not show, desc="ssrl eval", unit="sample") as bar:
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start:start + batch_size])
            responses = backend(batch)
            if len(responses) != len(batch):
                raise SSRLError(f"the backend returned {len(responses)} responses for {len(batch)} prompts")
            for p, response in zip(batch, responses):
                records.append({"id": p.id, "task": p.task, "variant": p.variant, "level": p.level,
                                "response": response, "score": scoring.score(response, p.ground_truth, **options)})
            bar.update(len(batch))
    return records


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> None:
    path = Path(path)
    if path.is_dir():
        raise SSRLError(f"--out {path}: is a folder; give the path of the .jsonl file to write")
    if not path.parent.is_dir():
        raise SSRLError(f"--out {path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise SSRLError(f"{path}: no such file")
    if path.is_dir():
        raise SSRLError(f"{path}: is a folder, not a JSONL run file")
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or not isinstance(rec["score"], dict):
                    raise TypeError("not an object with a score dict")
                rec["id"], rec["task"] = str(rec["id"]), str(rec["task"])
                float(rec["score"]["accuracy"]), float(rec["score"]["format"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise SSRLError(f"{path}:{n}: not a line of an `ssrl eval` run (expected id, task, score with "
                                f"accuracy and format; {type(exc).__name__})") from None
            records.append(rec)
    return records


# ============================================================================================ statistics
def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    from .audit import wilson as _wilson

    return _wilson(successes, n, z)


def correct(rec: dict[str, Any]) -> bool:
    return float(rec["score"]["accuracy"]) >= 1.0


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task, per ``task/variant`` and ``all``: n, accuracy and format rate (means) with 95 % Wilson intervals."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[rec["task"]].append(rec)
        groups[f"{rec['task']}/{rec.get('variant', '')}"].append(rec)
    out = {}
    for key in [*sorted(groups), "all"]:
        recs = records if key == "all" else groups[key]
        n = len(recs)
        acc = sum(float(r["score"]["accuracy"]) for r in recs)
        fmt = sum(float(r["score"]["format"]) for r in recs)
        out[key] = {"n": n, "accuracy": acc / n if n else 0.0, "accuracy_ci": list(wilson(acc, n)),
                    "format": fmt / n if n else 0.0, "format_ci": list(wilson(fmt, n))}
    return out


def format_summary(summary: dict[str, dict[str, Any]]) -> str:
    width = max(10, *(len(k) + 2 for k in summary))
    lines = [f"{'group':<{width}}{'n':>6}  {'accuracy (95% CI)':<24}{'format (95% CI)':<24}"]
    for key, s in summary.items():
        acc = f"{s['accuracy']:.3f} [{s['accuracy_ci'][0]:.3f}, {s['accuracy_ci'][1]:.3f}]"
        fmt = f"{s['format']:.3f} [{s['format_ci'][0]:.3f}, {s['format_ci'][1]:.3f}]"
        name = key if "/" not in key else f"  {key}"
        lines.append(f"{name:<{width}}{s['n']:>6}  {acc:<24}{fmt:<24}")
    return "\n".join(lines)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(b + c, 1/2) probability of a split at least as uneven."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], name_a: str = "a", name_b: str = "b") -> dict[str, dict[str, Any]]:
    """Per task (and ``all``) on the shared ids: n, accuracy of each run, difference b - a, discordant counts
    (``a_only``: a right, b wrong; ``b_only``) and the exact McNemar p-value."""
    first = {r["id"]: r for r in a}
    second = {r["id"]: r for r in b}
    shared = [i for i in first if i in second]
    if not shared:
        raise SSRLError(f"--compare: {name_a} and {name_b} share no sample id")
    groups: dict[str, list[str]] = defaultdict(list)
    for i in shared:
        groups[first[i]["task"]].append(i)
    out = {}
    for key in [*sorted(groups), "all"]:
        ids = shared if key == "all" else groups[key]
        n = len(ids)
        acc_a = sum(float(first[i]["score"]["accuracy"]) for i in ids) / n
        acc_b = sum(float(second[i]["score"]["accuracy"]) for i in ids) / n
        a_only = sum(correct(first[i]) and not correct(second[i]) for i in ids)
        b_only = sum(correct(second[i]) and not correct(first[i]) for i in ids)
        out[key] = {"n": n, "accuracy_a": acc_a, "accuracy_b": acc_b, "difference": acc_b - acc_a,
                    "a_only": a_only, "b_only": b_only, "p_value": mcnemar_exact(a_only, b_only)}
    return out


def format_compare(result: dict[str, dict[str, Any]], name_a: str, name_b: str) -> str:
    lines = [f"a = {name_a}", f"b = {name_b}",
             f"{'task':<10}{'n':>6}{'acc a':>8}{'acc b':>8}{'b - a':>8}{'a only':>8}{'b only':>8}{'p (McNemar)':>13}"]
    for key, r in result.items():
        lines.append(f"{key:<10}{r['n']:>6}{r['accuracy_a']:>8.3f}{r['accuracy_b']:>8.3f}{r['difference']:>+8.3f}"
                     f"{r['a_only']:>8}{r['b_only']:>8}{r['p_value']:>13.4g}")
    return "\n".join(lines)


# ============================================================================================ HTML
def _bars_svg(summary: dict[str, dict[str, Any]], keys: list[str], series: list[tuple[str, str, str]]) -> str:
    """Horizontal bars per key: one bar per series (label, value key, colour), CI whiskers when present."""
    row_h, bar_h, left, width = 18 * len(series) + 10, 14, 120, 360
    height = row_h * len(keys) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
             f'font-family="sans-serif" font-size="12">']
    for x in range(0, 11, 2):
        px = left + width * x / 10
        parts.append(f'<line x1="{px:.1f}" y1="0" x2="{px:.1f}" y2="{height - 20}" stroke="#ddd"/>'
                     f'<text x="{px:.1f}" y="{height - 6}" text-anchor="middle">{x / 10:.1f}</text>')
    for k, key in enumerate(keys):
        y0 = k * row_h + 4
        parts.append(f'<text x="{left - 6}" y="{y0 + row_h / 2:.1f}" text-anchor="end">{html.escape(key)}</text>')
        for s, (label, field, colour) in enumerate(series):
            value = float(summary[key][field])
            y = y0 + s * 18
            parts.append(f'<rect x="{left}" y="{y}" width="{width * value:.1f}" height="{bar_h}" fill="{colour}">'
                         f'<title>{html.escape(label)}: {value:.3f}</title></rect>')
            ci = summary[key].get(f"{field}_ci")
            if ci:
                lo, hi = left + width * ci[0], left + width * ci[1]
                parts.append(f'<line x1="{lo:.1f}" y1="{y + bar_h / 2}" x2="{hi:.1f}" y2="{y + bar_h / 2}" stroke="#222"/>')
            parts.append(f'<text x="{left + width * value + 4:.1f}" y="{y + 11}">{value:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _thumb(data: bytes, side: int = 220) -> str:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def worst(records: Sequence[dict[str, Any]], per_task: int = WORST_PER_TASK) -> list[dict[str, Any]]:
    """A few failures per task: lowest overall score first (unformatted before formatted), then dataset order."""
    by_task: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, rec in enumerate(records):
        if not correct(rec):
            by_task[rec["task"]].append((i, rec))
    out = []
    for task in sorted(by_task):
        ranked = sorted(by_task[task], key=lambda t: (float(t[1]["score"].get("overall", 0.0)),
                                                       float(t[1]["score"]["format"]), t[0]))
        out += [rec for _, rec in ranked[:per_task]]
    return out


def render_html(records: Sequence[dict[str, Any]], title: str, images: dict[str, list[bytes]] | None = None,
                truths: dict[str, str] | None = None, comparison: dict[str, dict[str, Any]] | None = None) -> str:
    summary = summarise(records)
    tasks = sorted({r["task"] for r in records})
    body = [f"<h1>{html.escape(title)}</h1>",
            "<h2>Per task</h2>", _bars_svg(summary, [*tasks, "all"], [("accuracy", "accuracy", "#3b7dd8"),
                                                                      ("format", "format", "#9bc59d")]),
            "<p>Bars: mean accuracy (blue) and format rate (green); whiskers: 95 % Wilson intervals.</p>",
            f"<pre>{html.escape(format_summary(summary))}</pre>"]
    if comparison:
        keys = list(comparison)
        body += ["<h2>Comparison</h2>", _bars_svg(comparison, keys, [("a", "accuracy_a", "#999"),
                                                                     ("b", "accuracy_b", "#3b7dd8")]),
                 "<table><tr><th>task</th><th>n</th><th>acc a</th><th>acc b</th><th>b - a</th><th>a only</th>"
                 "<th>b only</th><th>p (exact McNemar)</th></tr>"]
        for key, r in comparison.items():
            body.append(f"<tr><td>{html.escape(key)}</td><td>{r['n']}</td><td>{r['accuracy_a']:.3f}</td>"
                        f"<td>{r['accuracy_b']:.3f}</td><td>{r['difference']:+.3f}</td><td>{r['a_only']}</td>"
                        f"<td>{r['b_only']}</td><td>{r['p_value']:.4g}</td></tr>")
        body.append("</table>")
    body.append("<h2>Worst failures</h2>")
    for rec in worst(records):
        imgs = (images or {}).get(rec["id"]) or []
        pic = f'<img src="{_thumb(imgs[0])}" alt="first image">' if imgs else ""
        truth = (truths or {}).get(rec["id"])
        s = rec["score"]
        body.append(
            f'<div class="fail">{pic}<div><b>{html.escape(rec["id"])}</b> ({html.escape(rec["task"])}/'
            f'{html.escape(str(rec.get("variant", "")))}, level {rec.get("level", 0)}): accuracy {s["accuracy"]:.2f}, '
            f'format {s["format"]:.0f}'
            + (f"<br>truth: <code>{html.escape(truth)}</code>" if truth else "")
            + f"<pre>{html.escape(str(rec.get('response', '')))}</pre></div></div>")
    style = ("body{font-family:sans-serif;margin:2em}pre{white-space:pre-wrap;max-width:60em}"
             ".fail{display:flex;gap:1em;border-top:1px solid #ccc;padding:.5em 0}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_html(path: str | Path, text: str) -> None:
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir():
        raise SSRLError(f"--html {path}: cannot write there (a folder, or its folder does not exist)")
    path.write_text(text, encoding="utf-8")


def failure_images(data: str | Path, records: Sequence[dict[str, Any]]) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    from .stats import iter_rows

    want = {r["id"] for r in worst(records)}
    images, truths = {}, {}
    for row in iter_rows(Path(data), select=want):
        images[row.id] = row.images or []
        truths[row.id] = row.answer
    return images, truths


# ============================================================================================ backends
def _load_processor(transformers, model_path: str):
    try:
        return transformers.AutoProcessor.from_pretrained(model_path)
    except (ImportError, ValueError) as exc:
        # transformers 5 registers no video processor without torchvision, and Qwen-VL processors insist on one
        if "torchvision" in str(exc).lower():
            raise SSRLError(f"--model {model_path}: transformers needs torchvision to load this model's processor "
                            f"(its video part): pip install torchvision (the build matching your torch)") from None
        raise


def _load_model(transformers, model_path: str):
    """AutoModelForImageTextToText (Qwen2.5-VL, Qwen3-VL, ...); else the class config.json names in
    ``architectures`` (a transformers without that auto class or without the mapping)."""
    loader = getattr(transformers, "AutoModelForImageTextToText", None)
    if loader is not None:
        try:
            return loader.from_pretrained(model_path, torch_dtype="auto")
        except ValueError:  # "Unrecognized configuration class": not in this transformers' mapping
            pass
    config = transformers.AutoConfig.from_pretrained(model_path)
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls.from_pretrained(model_path, torch_dtype="auto")
    raise SSRLError(f"--model {model_path}: transformers {transformers.__version__} has no image-text-to-text class "
                    f"for model_type {getattr(config, 'model_type', '?')!r} (config.json architectures: "
                    f"{getattr(config, 'architectures', None)}); upgrade transformers")


def transformers_backend(model_path: str, max_new_tokens: int = 256) -> Backend:
    try:
        import torch
        import transformers
    except ImportError:
        raise SSRLError("--backend transformers needs torch and transformers: pip install torch transformers") from None

    processor = _load_processor(transformers, model_path)
    model = _load_model(transformers, model_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    # transformers 5's Qwen2.5-VL / Qwen3-VL build the M-RoPE positions of image tokens from the processor's
    # mm_token_type_ids: without it generate silently gives them 1-D text positions (a plain Qwen3-VL forward
    # refuses). Models whose forward does not name it (transformers 4.x) get it dropped, not passed as unknown.
    drop = set() if "mm_token_type_ids" in inspect.signature(model.forward).parameters else {"mm_token_type_ids"}

    def generate(batch: Sequence[Prompt]) -> list[str]:
        texts = [processor.apply_chat_template([{"role": "user", "content": p.content()}], tokenize=False,
                                               add_generation_prompt=True) for p in batch]
        images = [im for p in batch for im in p.pil_images()]
        inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items() if k not in drop}
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t for t in tokenizer.batch_decode(new, skip_special_tokens=True)]

    return generate


def vllm_backend(model_path: str, max_new_tokens: int = 256) -> Backend:  # not exercised by the tests
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise SSRLError("--backend vllm needs vllm: pip install vllm") from None
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_path)
    llm = LLM(model=model_path, limit_mm_per_prompt={"image": 8})
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)

    def generate(batch: Sequence[Prompt]) -> list[str]:
        requests = [{"prompt": processor.apply_chat_template([{"role": "user", "content": p.content()}],
                                                             tokenize=False, add_generation_prompt=True),
                     "multi_modal_data": {"image": p.pil_images()}} for p in batch]
        return [o.outputs[0].text for o in llm.generate(requests, params, use_tqdm=False)]

    return generate


def make_backend(name: str, model_path: str, max_new_tokens: int) -> Backend:
    if not Path(model_path).exists():
        raise SSRLError(f"--model {model_path}: no such folder (give a local model folder)")
    if name == "vllm":
        return vllm_backend(model_path, max_new_tokens)
    return transformers_backend(model_path, max_new_tokens)


# ============================================================================================ command
def cmd_eval(args: argparse.Namespace, backend: Backend | None = None) -> int:
    if args.compare:
        a, b = args.compare
        ra, rb = read_jsonl(a), read_jsonl(b)
        result = compare(ra, rb, a, b)
        print(format_compare(result, a, b))
        if args.html:
            images, truths = failure_images(args.data, rb) if args.data else ({}, {})
            write_html(args.html, render_html(rb, f"ssrl eval: {b} against {a}", images, truths, result))
            print(f"wrote {args.html}")
        return 0
    if not args.data or not args.model:
        raise SSRLError("--data and --model are needed (or --compare A.jsonl B.jsonl)")
    if args.limit is not None and args.limit < 1:
        raise SSRLError("--limit: give a positive number")
    prompts = load_prompts(args.data, args.split, args.limit)
    if args.out:  # fail on a bad --out before loading a model
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            raise SSRLError(f"--out {out}: cannot write there (a folder, or its folder does not exist)")
    if backend is None:
        backend = make_backend(args.backend, args.model, args.max_new_tokens)
    records = run_eval(prompts, backend, batch_size=args.batch_size)
    if args.out:
        write_jsonl(records, args.out)
    print(format_summary(summarise(records)))
    if args.out:
        print(f"wrote {args.out}: {len(records)} samples")
    if args.html:
        images = {p.id: p.images for p in prompts}
        truths = {p.id: json.loads(p.ground_truth).get("answer", "") for p in prompts}
        write_html(args.html, render_html(records, f"ssrl eval: {args.model}", images, {k: str(v) for k, v in truths.items()}))
        print(f"wrote {args.html}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="generate with a model on a built split, score with the reward, report per task",
        description="Generate a response for each sample of a split (chat template of the model's processor, the "
                    "sample's images, the question with the build's format instruction; greedy), score it with the "
                    "training reward and print per-task and per-variant accuracy and format rate with 95%% Wilson "
                    "intervals. --compare A B: per-task accuracy difference with an exact McNemar test on the "
                    "shared samples.")
    p.add_argument("--data", help="dataset folder made by ssrl build")
    p.add_argument("--model", help="local model folder (transformers or vllm loadable)")
    p.add_argument("--backend", choices=BACKENDS, default="transformers", help="default transformers")
    p.add_argument("--split", default="val", help="which split (default val)")
    p.add_argument("--limit", type=int, help="the first N samples of the split")
    p.add_argument("--out", help="JSONL file: one line per sample (id, task, variant, level, response, score)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="default 256")
    p.add_argument("--compare", nargs=2, metavar=("A.jsonl", "B.jsonl"), help="compare two runs instead of running")
    p.add_argument("--html", help="also write a self-contained HTML report (bars, worst failures with images)")
    p.set_defaults(func=cmd_eval)
    return p
