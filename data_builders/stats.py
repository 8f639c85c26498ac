"""``ssrl stats DIR``: what a built dataset holds, read from its parquet files and its manifest.

Counts per split, task and variant; answer-slot histograms (the letter of ``crop`` and ``position``, the flipped
patch and the direction of ``flip`` separately, the order of ``depth``, the label at each position of ``shuffle``);
the distribution of source image sizes (``metadata.source.size``); estimated prompt lengths for Qwen2.5-VL or
Qwen3-VL (``--model-family``); the rejected candidates and skipped inputs of the build, by reason. ``--json`` prints one JSON object; ``--plots DIR``
writes PNG bar charts (Pillow only).

Token estimate (an approximation, documented in :func:`qwen_image_tokens` and :func:`text_tokens`): every image is
resized by the Qwen-VL ``smart_resize`` (sides rounded to multiples of the family's factor, area brought inside
[min_pixels, max_pixels]) and costs (h/factor) * (w/factor) visual tokens plus 2 delimiters; text costs about one
token per 4 characters (the ``<image>`` placeholders excluded), plus the format instruction when the stored prompt
does not already carry it, plus a fixed chat-template overhead. Real tokenizers differ by some percent on English
text.

Model families (:data:`MODEL_FAMILIES`):

- ``qwen2.5-vl`` (the default): 14-pixel ViT patches merged 2x2, factor 28, one visual token per 28 x 28 = 784
  pixels; default pixel range the paper's 262,144..4,194,304 (``example_configs/easyr1_grpo.yaml``).
- ``qwen3-vl``: 16-pixel patches merged 2x2, factor 32, one visual token per 32 x 32 = 1,024 pixels. transformers
  has no Qwen3-VL image processor of its own: ``AutoImageProcessor`` maps ``qwen3_vl`` to ``Qwen2VLImageProcessor``
  (``models/auto/image_processing_auto.py``, transformers 5.10.4), whose ``smart_resize`` rounds to
  ``patch_size * merge_size``; the checkpoints' ``preprocessor_config.json`` sets ``patch_size`` 16, ``merge_size``
  2 and ``size`` {shortest_edge 65,536, longest_edge 16,777,216} (``QWEN3_PROCESSOR_MIN_PIXELS`` /
  ``..._MAX_PIXELS``: the range the processor applies when the trainer passes none). The default range here is the
  one of ``example_configs/easyr1_grpo_qwen3vl.yaml``: 262,144..655,360 (640 x 32 x 32, so a 5-image ``crop``
  prompt fits in 4,096 tokens; arithmetic in ``example_configs/README.md``).

This module also holds the row reader that ``ssrl preview`` and ``ssrl audit`` share.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssrl_plugin.errors import SSRLError

from .difficulty import SIGHTED_PER_LEVEL, DifficultyStats, format_difficulty

QWEN_FACTOR = 28  # 14 px ViT patches merged 2x2 -> one visual token per 28 x 28 pixels
DEFAULT_MIN_PIXELS = 262_144  # example_configs/easyr1_grpo.yaml data.min_pixels (512 x 512)
DEFAULT_MAX_PIXELS = 4_194_304  # data.max_pixels (2048 x 2048)
QWEN3_FACTOR = 32  # Qwen3-VL: 16 px patches merged 2x2 -> one visual token per 32 x 32 pixels
QWEN3_DEFAULT_MIN_PIXELS = 262_144  # example_configs/easyr1_grpo_qwen3vl.yaml data.min_pixels (the paper's)
QWEN3_DEFAULT_MAX_PIXELS = 655_360  # data.max_pixels there: 640 x 32 x 32 (5-image crop prompts fit in 4096)
QWEN3_PROCESSOR_MIN_PIXELS = 65_536  # Qwen3-VL preprocessor_config.json size.shortest_edge (256 x 256)
QWEN3_PROCESSOR_MAX_PIXELS = 16_777_216  # size.longest_edge (4096 x 4096)
DEFAULT_MAX_PROMPT = 4096  # data.max_prompt_length
CHARS_PER_TOKEN = 4.0
TEMPLATE_TOKENS = 20  # <|im_start|>system ... user ... assistant: the Qwen2 chat template around one user turn
VISION_DELIMITERS = 2  # <|vision_start|> ... <|vision_end|> around each image's pad tokens
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ModelFamily:
    """How one Qwen-VL generation turns pixels into visual tokens, and the pixel range ``ssrl stats`` assumes."""

    name: str  # the --model-family value
    label: str  # as printed
    patch_size: int
    merge_size: int
    min_pixels: int  # default of --min-pixels for this family
    max_pixels: int  # default of --max-pixels for this family

    @property
    def factor(self) -> int:
        """Side of the pixel square that becomes one visual token (patch_size * merge_size)."""
        return self.patch_size * self.merge_size


MODEL_FAMILIES = {
    "qwen2.5-vl": ModelFamily("qwen2.5-vl", "Qwen2.5-VL", 14, 2, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
    "qwen3-vl": ModelFamily("qwen3-vl", "Qwen3-VL", 16, 2, QWEN3_DEFAULT_MIN_PIXELS, QWEN3_DEFAULT_MAX_PIXELS),
}
DEFAULT_MODEL_FAMILY = "qwen2.5-vl"


def model_family(name: str | ModelFamily) -> ModelFamily:
    if isinstance(name, ModelFamily):
        return name
    try:
        return MODEL_FAMILIES[name]
    except KeyError:
        raise SSRLError(f"--model-family {name}: one of {', '.join(MODEL_FAMILIES)}") from None


_family = model_family  # compute_stats has a parameter of that name


# ============================================================================================ reading rows
@dataclass
class Row:
    """One stored sample, whatever the layout (easyr1 or verl)."""

    id: str
    split: str
    task: str
    variant: str
    question: str
    gt: dict[str, Any]
    metadata: dict[str, Any]
    images: list[bytes] | None = None  # None when read without images
    index: int = 0  # position in the dataset's reading order
    _arrays: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    def array(self, i: int):
        """Image ``i`` decoded to an RGB uint8 array, once: later calls (rule, learned and sighted solvers of
        ``ssrl audit``) share it. Treat it as read-only."""
        if i not in self._arrays:
            import numpy as np

            from ssrl_plugin.imaging import decode_image

            if self.images is None:
                raise ValueError(f"{self.id}: read without images")
            self._arrays[i] = np.asarray(decode_image(self.images[i]))
        return self._arrays[i]

    @property
    def answer(self) -> str:
        return str(self.gt.get("answer", ""))

    @property
    def options(self) -> dict[str, str] | None:
        opts = self.gt.get("options") or self.metadata.get("options")
        return dict(opts) if isinstance(opts, dict) else None


def read_manifest(out: str | Path) -> dict[str, Any]:
    path = Path(out) / "manifest.json"
    if not Path(out).is_dir():
        raise SSRLError(f"{out}: not a folder")
    if not path.exists():
        raise SSRLError(f"{out}: no manifest.json (not a dataset built by `ssrl build`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SSRLError(f"{path}: not valid JSON ({exc})") from None


def pick_layout(out: Path, layout: str | None = None) -> str:
    if layout:
        if not list((out / layout).glob("*.parquet")):
            raise SSRLError(f"{out}: no {layout}/*.parquet files")
        return layout
    for name in ("easyr1", "verl"):
        if list((out / name).glob("*.parquet")):
            return name
    raise SSRLError(f"{out}: no easyr1/ or verl/ parquet files (build with --format easyr1 or verl)")


_COLUMNS = {
    "easyr1": ["problem", "answer", "task", "variant", "id", "metadata"],
    "verl": ["prompt", "reward_model", "extra_info"],
}


def _split_of(path: Path) -> str:
    return path.name.split("-", 1)[0]


def read_batches(path: Path, columns: list[str], batch_size: int) -> Iterator[Any]:
    """Record batches of one parquet file; a damaged file or a foreign schema is one line naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
        while (batch := next(batches, None)) is not None:
            yield batch
    except (pa.ArrowException, OSError) as exc:
        raise SSRLError(f"{path}: cannot read this parquet file ({type(exc).__name__}: {' '.join(str(exc).split())})") from None


def iter_rows(out: str | Path, layout: str | None = None, splits: Iterable[str] | None = None,
              images: bool = True, select: set[str] | None = None, batch_size: int = 128) -> Iterator[Row]:
    """Rows of a built dataset in file order. ``images=False`` skips the image column (fast); ``select`` keeps
    only rows whose id is in it (their images are read, the others' are not decoded into Python objects)."""
    out = Path(out)
    layout = pick_layout(out, layout)
    wanted = set(splits) if splits is not None else None
    index = 0
    for path in sorted((out / layout).glob("*.parquet")):
        split = _split_of(path)
        if wanted is not None and split not in wanted:
            continue
        columns = _COLUMNS[layout] + (["images"] if images else [])
        for batch in read_batches(path, columns, batch_size):
            data = batch.to_pydict()
            n = batch.num_rows
            for i in range(n):
                if layout == "easyr1":
                    rid, task, variant = data["id"][i], data["task"][i], data["variant"][i]
                    question, gt, meta = data["problem"][i], data["answer"][i], data["metadata"][i]
                else:
                    extra = data["extra_info"][i]
                    rid, task, variant = extra["id"], extra["task"], extra["variant"]
                    question, gt, meta = data["prompt"][i][0]["content"], data["reward_model"][i]["ground_truth"], extra["metadata"]
                    split = extra.get("split") or split
                index += 1
                if select is not None and rid not in select:
                    continue
                row = Row(rid, split, task, variant, question, json.loads(gt), json.loads(meta), index=index - 1)
                if images:
                    row.images = [im["bytes"] if isinstance(im, dict) else (out / im).read_bytes() for im in data["images"][i]]
                yield row


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the encoded header, without decoding the pixels."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size


# ============================================================================================ token estimate
def _round_by(x: float, f: int) -> int:
    return round(x / f) * f


def smart_resize(height: int, width: int, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS,
                 factor: int = QWEN_FACTOR) -> tuple[int, int]:
    """Qwen2.5-VL's ``smart_resize`` (transformers' ``image_processing_qwen2_vl``): both sides rounded to a multiple
    of ``factor``, then scaled (keeping the aspect) so the area lies within [min_pixels, max_pixels]. Qwen3-VL uses
    the same function with ``factor`` 32 (:data:`QWEN3_FACTOR`)."""
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen_image_tokens(width: int, height: int, min_pixels: int | None = None, max_pixels: int | None = None,
                      family: str | ModelFamily = DEFAULT_MODEL_FAMILY) -> int:
    """Visual tokens of one image: (h/f) * (w/f) after smart_resize, f = 28 for Qwen2.5-VL and 32 for Qwen3-VL (the
    2 delimiters are counted separately). ``min_pixels`` / ``max_pixels`` default to the family's."""
    fam = model_family(family)
    lo = fam.min_pixels if min_pixels is None else min_pixels
    hi = fam.max_pixels if max_pixels is None else max_pixels
    h, w = smart_resize(height, width, lo, hi, factor=fam.factor)
    return (h // fam.factor) * (w // fam.factor)


def text_tokens(text: str) -> int:
    """About one token per 4 characters of English prose (``<image>`` placeholders removed): an estimate only."""
    return math.ceil(len(text.replace("<image>", "")) / CHARS_PER_TOKEN)


# ============================================================================================ statistics
def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    s = sorted(values)

    def pct(p: float) -> float:
        return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]

    return {"n": len(s), "min": s[0], "mean": round(statistics.fmean(s), 2), "p50": pct(50), "p95": pct(95), "max": s[-1]}


_PATHISH = re.compile(r"^\S+?(\.\w{2,5})?: ")


def reason_key(reason: str) -> str:
    """A skipped input's reason without the file name it starts with, so equal causes are counted together."""
    return _PATHISH.sub("", reason.strip(), count=1) if ": " in reason else reason.strip()


@dataclass
class Stats:
    rows: int = 0
    counts: dict[str, dict[str, Counter]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))
    answers: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    flip_patch: Counter = field(default_factory=Counter)
    flip_direction: Counter = field(default_factory=Counter)
    depth_nearest: Counter = field(default_factory=Counter)
    position_text: Counter = field(default_factory=Counter)
    position_facing: Counter = field(default_factory=Counter)
    shuffle_positions: dict[str, list[Counter]] = field(default_factory=dict)
    source_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    sample_sizes: Counter = field(default_factory=Counter)
    tokens: dict[str, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))


def compute_stats(out: str | Path, layout: str | None = None, min_pixels: int | None = None,
                  max_pixels: int | None = None, max_prompt_length: int = DEFAULT_MAX_PROMPT,
                  sighted_per_level: int = SIGHTED_PER_LEVEL,
                  model_family: str | ModelFamily = DEFAULT_MODEL_FAMILY) -> dict[str, Any]:
    """``min_pixels`` / ``max_pixels`` left None take the model family's defaults (:data:`MODEL_FAMILIES`)."""
    fam = _family(model_family)
    min_pixels = fam.min_pixels if min_pixels is None else min_pixels
    max_pixels = fam.max_pixels if max_pixels is None else max_pixels
    out = Path(out)
    manifest = read_manifest(out)
    layout = pick_layout(out, layout)
    if min_pixels <= 0 or max_pixels < min_pixels:
        raise SSRLError(f"--min-pixels {min_pixels} / --max-pixels {max_pixels}: need 0 < min <= max")
    instruction = str(manifest.get("config", {}).get("output", {}).get("instruction", "") or "")
    st = Stats()
    difficulty = DifficultyStats(sighted_per_level)
    for row in iter_rows(out, layout):
        difficulty.add(row)
        st.rows += 1
        st.counts[row.split][row.task][row.variant] += 1
        answer, meta = row.answer, row.metadata
        if row.task == "shuffle":
            st.answers[f"shuffle/{row.variant}"][answer] += 1
            try:
                labels = [int(t) for t in answer.split("-")]
            except ValueError:
                labels = []
            pos = st.shuffle_positions.setdefault(row.variant, [Counter() for _ in labels])
            for k, lab in enumerate(labels[: len(pos)]):
                pos[k][str(lab)] += 1
        else:
            st.answers[row.task][answer] += 1
        if row.task == "flip" and "-" in answer:
            patch, direction = answer.split("-", 1)
            st.flip_patch[patch] += 1
            st.flip_direction[direction] += 1
        elif row.task == "depth":
            st.depth_nearest[answer.split("-")[0]] += 1
        elif row.task == "position":
            opts = row.options or {}
            st.position_text[opts.get(answer, meta.get("answer_text", "?"))] += 1
            st.position_facing[str((meta.get("facing") or {}).get("name", "?"))] += 1
        src = meta.get("source") or {}
        size = src.get("size")
        if isinstance(size, list) and len(size) == 2:
            st.source_sizes[str(src.get("id", row.id))] = (int(size[0]), int(size[1]))
            st.sample_sizes[f"{size[0]}x{size[1]}"] += 1
        sizes = [image_size(b) for b in row.images or []]
        vis = sum(qwen_image_tokens(w, h, min_pixels, max_pixels, fam) + VISION_DELIMITERS for w, h in sizes)
        txt = text_tokens(row.question)
        if instruction and instruction not in row.question:
            txt += text_tokens(instruction)  # EasyR1's format_prompt adds it at training time
        total = vis + txt + TEMPLATE_TOKENS
        key = f"{row.task}/{row.variant}"
        st.tokens[key]["image"].append(vis)
        st.tokens[key]["text"].append(txt)
        st.tokens[key]["total"].append(total)
        st.tokens[key]["images_per_prompt"].append(len(sizes))
    report = _report(out, layout, manifest, st, min_pixels, max_pixels, max_prompt_length, fam)
    report["difficulty"] = difficulty.report()
    return report


def _report(out: Path, layout: str, manifest: dict[str, Any], st: Stats, min_pixels: int, max_pixels: int,
            max_prompt_length: int, fam: ModelFamily = MODEL_FAMILIES[DEFAULT_MODEL_FAMILY]) -> dict[str, Any]:
    f = fam.factor
    counts: dict[str, Any] = {}
    totals: Counter = Counter()
    for split in sorted(st.counts):
        counts[split] = {t: dict(sorted(v.items())) for t, v in sorted(st.counts[split].items())}
        for t, v in st.counts[split].items():
            totals[t] += sum(v.values())
    counts["total"] = dict(sorted(totals.items()))
    hist: dict[str, Any] = {k: dict(sorted(v.items())) for k, v in sorted(st.answers.items())}
    slots: dict[str, Any] = {}
    if st.flip_patch:
        slots["flip"] = {"patch": dict(sorted(st.flip_patch.items())), "direction": dict(sorted(st.flip_direction.items()))}
    if st.depth_nearest:
        slots["depth"] = {"order": hist.get("depth", {}), "nearest_label": dict(sorted(st.depth_nearest.items()))}
    if st.position_text:
        slots["position"] = {"letter": hist.get("position", {}), "answer_text": dict(sorted(st.position_text.items())),
                             "facing": dict(sorted(st.position_facing.items()))}
    if "crop" in hist:
        slots["crop"] = {"letter": hist["crop"]}
    if st.shuffle_positions:
        slots["shuffle"] = {v: {"label_per_position": [dict(sorted(c.items())) for c in pos]}
                            for v, pos in sorted(st.shuffle_positions.items())}
    widths = [w for w, _ in st.source_sizes.values()]
    heights = [h for _, h in st.source_sizes.values()]
    mpix = [round(w * h / 1e6, 3) for w, h in st.source_sizes.values()]
    unique_sizes = Counter(f"{w}x{h}" for w, h in st.source_sizes.values())
    tokens: dict[str, Any] = {}
    over = Counter()
    all_total: list[int] = []
    for key, parts in sorted(st.tokens.items()):
        tokens[key] = {name: _summary(vals) for name, vals in parts.items() if name != "images_per_prompt"}
        tokens[key]["images_per_prompt"] = max(parts["images_per_prompt"]) if parts["images_per_prompt"] else 0
        over[key] = sum(1 for v in parts["total"] if v > max_prompt_length)
        tokens[key]["over_max_prompt_length"] = over[key]
        all_total += parts["total"]
    rejected = {t: dict(sorted(c.items(), key=lambda kv: -kv[1])) for t, c in sorted(manifest.get("rejected", {}).items())}
    skipped = Counter(reason_key(str(s.get("reason", ""))) for s in manifest.get("skipped_inputs", []))
    return {
        "dir": str(out),
        "layout": layout,
        "rows": st.rows,
        "counts": counts,
        "answer_histograms": hist,
        "answer_slots": slots,
        "source_images": {
            "unique_sources": len(st.source_sizes),
            "width": _summary(widths),
            "height": _summary(heights),
            "megapixels": _summary(mpix),
            "sizes": dict(unique_sizes.most_common(20)),
            "other_sizes": max(0, len(unique_sizes) - 20),
        },
        "tokens": {
            "model": fam.label,
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "max_prompt_length": max_prompt_length,
            "method": (f"images: smart_resize to multiples of {f} within [min_pixels, max_pixels], "
                       f"(h/{f})*(w/{f}) tokens + {VISION_DELIMITERS} delimiters each; text: "
                       f"characters/{CHARS_PER_TOKEN:g} (+ the format instruction when not in the stored prompt) "
                       f"+ {TEMPLATE_TOKENS} chat-template tokens; an estimate, not a tokenizer count"),
            "overall": _summary(all_total),
            "histogram": histogram(all_total),
            "over_max_prompt_length": sum(over.values()),
            "per_task_variant": tokens,
        },
        "rejected": rejected,
        "rejected_total": {t: sum(v for k, v in c.items() if k != "gave_up_after_attempts") for t, c in rejected.items()},
        "skipped_inputs": {"total": len(manifest.get("skipped_inputs", [])), "by_reason": dict(skipped.most_common())},
        "inputs": manifest.get("inputs"),
        "no_sample_inputs": len(manifest.get("no_sample_inputs", [])),
        "splits": manifest.get("splits"),
        "shortfall": manifest.get("shortfall", {}),
        "audit": (manifest.get("audit") or {}).get("result"),
    }


# ============================================================================================ text + plots
def format_stats(rep: dict[str, Any]) -> str:
    lines = [f"{rep['dir']} ({rep['layout']}): {rep['rows']} rows"]
    counts = rep["counts"]
    splits = [s for s in counts if s != "total"]
    lines.append(f"{'task/variant':<22}" + "".join(f"{s:>8}" for s in splits) + f"{'total':>8}")
    keys = sorted({(t, v) for s in splits for t in counts[s] for v in counts[s][t]})
    for t, v in keys:
        per = [counts[s].get(t, {}).get(v, 0) for s in splits]
        lines.append(f"{t + '/' + v:<22}" + "".join(f"{n:>8}" for n in per) + f"{sum(per):>8}")
    lines.append("answer slots:")
    for task, slots in rep["answer_slots"].items():
        if task == "shuffle":
            for variant, d in slots.items():
                pos = "; ".join(f"pos{k}: " + " ".join(f"{lab}:{n}" for lab, n in c.items()) for k, c in enumerate(d["label_per_position"]))
                lines.append(f"  shuffle/{variant}: {pos}")
            continue
        for name, hist in slots.items():
            lines.append(f"  {task}.{name}: " + " ".join(f"{k}:{n}" for k, n in hist.items()))
    src = rep["source_images"]
    if src["unique_sources"]:
        lines.append(f"source images: {src['unique_sources']} used; width {src['width']['min']}-{src['width']['max']} "
                     f"(median {src['width']['p50']}), height {src['height']['min']}-{src['height']['max']} "
                     f"(median {src['height']['p50']}); most common: "
                     + ", ".join(f"{k} x{n}" for k, n in list(src["sizes"].items())[:5]))
    tok = rep["tokens"]
    lines.append(f"estimated {tok.get('model', 'Qwen2.5-VL')} prompt tokens (min_pixels {tok['min_pixels']}, max_pixels {tok['max_pixels']}; "
                 f"over {tok['max_prompt_length']}: {tok['over_max_prompt_length']}):")
    for key, d in tok["per_task_variant"].items():
        t = d["total"]
        lines.append(f"  {key:<20} mean {t['mean']:>7} p95 {t['p95']:>6} max {t['max']:>6}  (images {d['image']['mean']}, text {d['text']['mean']})")
    for task, c in rep["rejected"].items():
        if c:
            lines.append(f"rejected {task}: " + ", ".join(f"{k} {n}" for k, n in list(c.items())[:6]))
    sk = rep["skipped_inputs"]
    if rep.get("inputs"):
        i = rep["inputs"]
        lines.append(f"inputs: {i['total']} = {i['used']} used + {i['not_needed']} not needed + {i['skipped']} skipped + "
                     f"{i['no_sample']} without a sample")
    lines.append(f"skipped inputs: {sk['total']}" + ("" if not sk["by_reason"] else " (" + "; ".join(f"{k}: {n}" for k, n in list(sk["by_reason"].items())[:5]) + ")"))
    for split, short in rep["shortfall"].items():
        lines.append(f"shortfall in {split}: " + ", ".join(f"{t} {n}" for t, n in short.items()))
    if rep.get("audit"):
        lines.append(f"audit: {rep['audit']}")
    lines += format_difficulty(rep.get("difficulty") or {})
    return "\n".join(lines)


def bar_chart(title: str, data: dict[str, float], width: int = 640, bar_h: int = 20, colour=(70, 110, 190)):
    """A horizontal bar chart as a Pillow image (no matplotlib needed)."""
    from PIL import Image, ImageDraw

    from ssrl_plugin.render import font

    items = list(data.items())[:40]
    label_w = min(220, 12 + 8 * max((len(str(k)) for k, _ in items), default=4))
    h = 36 + bar_h * max(1, len(items)) + 10
    img = Image.new("RGB", (width, h), "white")
    d = ImageDraw.Draw(img)
    d.text((8, 8), title, fill="black", font=font(16))
    top = max((v for _, v in items), default=1) or 1
    span = width - label_w - 70
    for i, (k, v) in enumerate(items):
        y = 36 + i * bar_h
        d.text((8, y + 3), str(k)[:28], fill="black", font=font(12))
        d.rectangle((label_w, y + 3, label_w + max(1, int(span * v / top)), y + bar_h - 3), fill=colour)
        d.text((label_w + int(span * v / top) + 6, y + 3), f"{v:g}", fill="black", font=font(12))
    return img


def histogram(values: list[float], bins: int = 20) -> dict[str, int]:
    if not values:
        return {}
    lo, hi = min(values), max(values)
    if hi == lo:
        return {f"{lo:g}": len(values)}
    step = (hi - lo) / bins
    c = Counter(min(bins - 1, int((v - lo) / step)) for v in values)
    return {f"{lo + i * step:.0f}-{lo + (i + 1) * step:.0f}": c.get(i, 0) for i in range(bins)}


def write_plots(rep: dict[str, Any], out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(name: str, img) -> None:
        p = out_dir / name
        img.save(p)
        paths.append(p)

    counts = {f"{s}/{t}/{v}": n for s in rep["counts"] if s != "total" for t in rep["counts"][s] for v, n in rep["counts"][s][t].items()}
    save("counts.png", bar_chart("samples per split/task/variant", counts))
    for task, slots in rep["answer_slots"].items():
        if task == "shuffle":
            for variant, d in slots.items():
                merged = {f"pos{k} label {lab}": n for k, c in enumerate(d["label_per_position"]) for lab, n in c.items()}
                save(f"answers_shuffle_{variant}.png", bar_chart(f"shuffle {variant}: label per position", merged))
        else:
            for name, hist in slots.items():
                save(f"answers_{task}_{name}.png", bar_chart(f"{task}: {name}", hist))
    tok = {k: d["total"]["mean"] for k, d in rep["tokens"]["per_task_variant"].items()}
    label = rep["tokens"].get("model", "Qwen2.5-VL")
    save("tokens_mean.png", bar_chart(f"mean estimated prompt tokens ({label})", tok, colour=(190, 110, 60)))
    if rep["tokens"]["histogram"]:
        save("tokens_hist.png", bar_chart("estimated prompt tokens, all samples", rep["tokens"]["histogram"], colour=(190, 110, 60)))
    if rep["source_images"]["sizes"]:
        save("source_sizes.png", bar_chart("source image sizes (unique sources)", rep["source_images"]["sizes"], colour=(60, 150, 90)))
    rej = {f"{t}: {k}": n for t, c in rep["rejected"].items() for k, n in c.items()}
    if rej:
        save("rejected.png", bar_chart("rejected candidates by reason", rej, colour=(190, 60, 60)))
    return paths


# ============================================================================================ CLI
def cmd_stats(args: argparse.Namespace) -> int:
    if args.sighted_per_level < 0:
        raise SSRLError(f"--sighted-per-level {args.sighted_per_level}: must be >= 0")
    rep = compute_stats(args.dir, layout=args.layout, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                        max_prompt_length=args.max_prompt_length, sighted_per_level=args.sighted_per_level,
                        model_family=args.model_family)
    if args.plots:
        for p in write_plots(rep, args.plots):
            if not args.json:
                print(f"wrote {p}")
    print(json.dumps(rep, indent=2) if args.json else format_stats(rep))
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("stats", help="counts, answer histograms, source sizes and prompt-token estimates of a built dataset")
    p.add_argument("dir", help="dataset folder made by ssrl build")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", metavar="OUTDIR", help="write PNG bar charts into OUTDIR")
    p.add_argument("--layout", choices=["easyr1", "verl"], help="which parquet layout to read (default easyr1 if present)")
    p.add_argument("--model-family", choices=list(MODEL_FAMILIES), default=DEFAULT_MODEL_FAMILY,
                   help="whose image processor the token estimate follows: qwen2.5-vl (28 x 28 pixels per visual "
                        "token) or qwen3-vl (32 x 32); default qwen2.5-vl")
    fams = "; ".join(f"{f.name} {f.min_pixels}" for f in MODEL_FAMILIES.values())
    p.add_argument("--min-pixels", type=int, default=None, help=f"min_pixels (default per family: {fams})")
    fams = "; ".join(f"{f.name} {f.max_pixels}" for f in MODEL_FAMILIES.values())
    p.add_argument("--max-pixels", type=int, default=None, help=f"max_pixels (default per family: {fams})")
    p.add_argument("--max-prompt-length", type=int, default=DEFAULT_MAX_PROMPT,
                   help=f"count prompts estimated longer than this (default {DEFAULT_MAX_PROMPT}, EasyR1 data.max_prompt_length)")
    p.add_argument("--sighted-per-level", type=int, default=SIGHTED_PER_LEVEL,
                   help=f"rows per task and difficulty level the sighted solvers measure (default {SIGHTED_PER_LEVEL}; 0: none)")
    p.set_defaults(func=cmd_stats)
    return p
