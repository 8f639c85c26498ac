"""``ssrl export --format vlmevalkit DIR OUT.tsv [--split val] [--tasks ...]``: a built split as a VLMEvalKit TSV.

VLMEvalKit (the evaluation tool of the Spatial-SSRL paper) loads a dataset it does not know from
``$LMUData/<NAME>.tsv`` (``LMUData`` defaults to ``~/LMUData``) when run with ``--data NAME``. What this module
relies on, read from VLMEvalKit's source (``vlmeval/dataset/__init__.py`` ``build_dataset``,
``image_base.py`` ``ImageBaseDataset``, ``image_mcq.py`` ``ImageMCQDataset``/``CustomMCQDataset``,
``image_vqa.py`` ``CustomVQADataset``, ``utils/multiple_choice.py`` ``report_acc``, ``smp`` ``toliststr``):

- the file is read with ``pandas.read_csv(sep='\\t')``; it needs a ``question`` column;
- the class is chosen from the columns of the whole file: with columns ``A`` and ``B`` (and ``image``) it is a
  *custom MCQ* dataset (``CustomMCQDataset``), otherwise a *custom VQA* dataset (``CustomVQADataset``);
- ``index``: a unique id per row (integers stay integers);
- ``image``: the base64 of an encoded image; several images are one string holding a Python/JSON list of base64
  strings (``'["/9j/...", "/9j/..."]'``, parsed by ``toliststr`` with ``eval``), and then an ``image_path``
  column must give one file name per image (``dump_image`` asserts it) under ``$LMUData/images/<NAME>/``;
  when ``image_path`` exists it is parsed for every row, so single-image rows get a name too;
- MCQ prompt (``ImageMCQDataset.build_prompt``): every image first, then
  ``Question: {question}\\nOptions:\\nA. {A}\\n...Please select the correct answer from the options above.``, an
  option being listed only when its cell is not empty (NaN); VQA prompt: every image, then ``question`` as is;
- scoring: MCQ by ``evaluate`` (exact matching of the letter, or an LLM judge), accuracy per value of ``category``
  and of ``l2-category`` (``report_acc``); ``CustomVQADataset.evaluate`` raises ``NotImplementedError``, so free-form
  rows are only inferred by VLMEvalKit (``--mode infer``) and scored elsewhere. Extra columns are kept in the
  prediction file.

The TSV written here (one row per sample of the split, in the dataset's file order):

| column | content |
|---|---|
| ``index`` | 0, 1, 2, ... |
| ``question`` | the stored question without its ``<image>`` placeholders (VLMEvalKit puts every image before the text, in stored order). Multiple-choice rows: only the stem, without the option lines and the answer instruction, which VLMEvalKit writes itself from the option columns; ``crop`` adds a sentence saying which image is which. Free-form rows: the whole question, answer format included (VLMEvalKit adds nothing to a VQA prompt) |
| ``A``..``D`` | option text: ``position``'s words (the ground truth's ``options``); ``crop``'s options are images, so ``image 2 (candidate A)`` .. ``image 5 (candidate D)``. Empty for free-form rows (``shuffle``, ``flip``, ``depth``); the columns are left out altogether when no exported row is multiple-choice, so a free-form export is a custom VQA dataset |
| ``answer`` | the stored ground truth, exactly (``B``, ``0-2-3-1``, ``3-0``, ``2-3-1``) |
| ``category`` | the task |
| ``l2-category`` | ``task/variant`` (``shuffle/2x2``): prefixed because ``report_acc`` puts both groupings in one table and ``crop``'s variant is ``crop`` |
| ``difficulty`` | the difficulty level (0 without levels), when the rows record one |
| ``id`` | our stable sample id, kept in VLMEvalKit's prediction file: it maps predictions back for ``ssrl score`` |
| ``image_path`` | ``{index}.jpg``, or for several images a JSON list ``["{index}_0.jpg", ...]`` |
| ``image`` | base64 of the stored JPEG bytes (no re-encoding); several images: a JSON list of base64 strings |

A mixed export (the default, every task) has the option columns, so VLMEvalKit loads it as custom MCQ: the free-form
rows are then prompted without options but scored as if they were multiple-choice, which is wrong for them. To
score with VLMEvalKit, export ``--tasks crop,position`` (MCQ) and ``--tasks shuffle,flip,depth`` (VQA) to two
files. Cells are written by :mod:`csv` (tab-separated, quoted only when a cell holds a tab, a newline or a quote),
which pandas reads back as written. Rows are streamed (one pass without images to size the file and choose the
columns, one with them); the output is written to a temporary file and renamed, and is byte-identical for the same
dataset.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ssrl_plugin.errors import SSRLError

from .stats import Row, iter_rows, pick_layout, read_manifest

FORMATS = ("vlmevalkit",)
LETTERS = ("A", "B", "C", "D")
IMAGE = "<image>"
_OPTION_LINE = re.compile(r"^([A-Z])\.\s*(.*)$")
_ORDINAL = {2: "2nd", 3: "3rd"}


def _ordinal(n: int) -> str:
    return _ORDINAL.get(n, f"{n}th") if n != 1 else "1st"


def _clean(text: str) -> str:
    """The text without ``<image>`` placeholders, each line stripped, empty lines at the ends dropped."""
    lines = [line.replace(IMAGE, "").strip() for line in text.split("\n")]
    return "\n".join(lines).strip()


def vlmevalkit_row(row: Row, index: int) -> dict[str, Any]:
    """One TSV row (without the images) of ``row``: question, options, answer, categories (module docstring)."""
    lines = row.question.split("\n")
    first = next((i for i, line in enumerate(lines) if re.match(r"^A\.\s", line.strip())), None)
    options: dict[str, str] = {}
    if first is not None:
        stem_lines = lines[:first]
        placeholders = sum(line.count(IMAGE) for line in stem_lines)
        image_options = []
        for line in lines[first:]:
            m = _OPTION_LINE.match(line.strip())
            if not m:
                break  # the answer instruction after the options: VLMEvalKit writes its own
            letter, text = m.group(1), m.group(2).strip()
            if text == IMAGE:
                placeholders += 1
                options[letter] = f"image {placeholders} (candidate {letter})"
                image_options.append((letter, placeholders))
            else:
                options[letter] = text
        for letter, text in (row.options or {}).items():  # the ground truth's words win over the prompt's
            options[letter] = str(text)
        question = _clean("\n".join(stem_lines))
        if image_options:
            first_option = image_options[0][1]
            lead = ("The first image is the picture" if first_option == 2
                    else f"Images 1 to {first_option - 1} are the picture")
            named = ", ".join(f"the {_ordinal(n)} image is candidate {letter}" for letter, n in image_options)
            question = f"{question}\n{lead}; {named}."
    else:
        question = _clean(row.question)
    unknown = sorted(set(options) - set(LETTERS))
    if unknown:
        raise SSRLError(f"{row.id}: option {unknown[0]} beyond D; the VLMEvalKit export writes options A to D")
    return {
        "index": index,
        "question": question,
        **{letter: options.get(letter, "") for letter in LETTERS},
        "answer": row.answer,
        "category": row.task,
        "l2-category": f"{row.task}/{row.variant}",
        "difficulty": int((row.metadata.get("difficulty") or {}).get("level") or 0),
        "id": row.id,
        "mcq": bool(options),
    }


def _image_cells(index: int, images: list[bytes]) -> tuple[str, str]:
    encoded = [base64.b64encode(data).decode("ascii") for data in images]
    if len(encoded) == 1:
        return f"{index}.jpg", encoded[0]
    return json.dumps([f"{index}_{k}.jpg" for k in range(len(encoded))]), json.dumps(encoded)


def _check_paths(dir_: str | Path, out: str | Path) -> tuple[Path, Path]:
    src, dst = Path(dir_), Path(out)
    if not src.exists():
        raise SSRLError(f"{src}: no such folder")
    if not src.is_dir():
        raise SSRLError(f"{src}: is a file, not a dataset folder")
    if dst.is_dir():
        raise SSRLError(f"{dst}: is a folder; give the path of the .tsv file to write")
    if not dst.parent.is_dir():
        raise SSRLError(f"{dst}: the folder {dst.parent} does not exist")
    return src, dst


def export_vlmevalkit(dir_: str | Path, out: str | Path, split: str = "val", tasks: list[str] | None = None,
                      layout: str | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Write ``split`` of the dataset in ``dir_`` to ``out`` as a VLMEvalKit TSV; returns a summary
    (``rows``, ``tasks`` {task: rows}, ``mcq`` rows, ``columns``, ``out``)."""
    from tqdm import tqdm

    src, dst = _check_paths(dir_, out)
    manifest = read_manifest(src)
    layout = pick_layout(src, layout)
    splits = {name: int((info or {}).get("rows") or 0) for name, info in (manifest.get("splits") or {}).items()}
    if split not in splits:
        raise SSRLError(f"--split {split}: {src} has no such split (splits: {', '.join(sorted(splits)) or 'none'})")

    # first pass, without images: how many rows, which tasks, which columns
    counts: Counter[str] = Counter()
    present: set[str] = set()
    mcq = levels = 0
    for row in iter_rows(src, layout, splits=[split], images=False):
        present.add(row.task)
        if tasks is not None and row.task not in tasks:
            continue
        fields = vlmevalkit_row(row, sum(counts.values()))
        counts[row.task] += 1
        mcq += fields["mcq"]
        levels += "difficulty" in row.metadata
    missing = [t for t in tasks or () if t not in present]
    if missing:
        raise SSRLError(f"--tasks {','.join(missing)}: not in the {split} split of {src} "
                        f"(it has {', '.join(sorted(present)) or 'no rows'})")
    total = sum(counts.values())
    if total == 0:
        raise SSRLError(f"--split {split}: {src} has no {split} rows (built with --val-fraction 0?)")

    columns = ["index", "question", *(LETTERS if mcq else ()), "answer", "category", "l2-category",
               *(["difficulty"] if levels else []), "id", "image_path", "image"]
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    show = sys.stderr.isatty() if progress is None else progress
    written = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(columns)
            rows = (r for r in iter_rows(src, layout, splits=[split]) if tasks is None or r.task in tasks)
            for i, row in enumerate(tqdm(rows, total=total, disable=not show, desc="ssrl export", unit="row")):
                fields = vlmevalkit_row(row, i)
                if not row.images:
                    raise SSRLError(f"{row.id}: a row without images; VLMEvalKit needs at least one")
                fields["image_path"], fields["image"] = _image_cells(i, row.images)
                writer.writerow([fields[c] for c in columns])
                written += 1
        if written != total:
            raise SSRLError(f"{src}: {written} rows read, {total} counted before; did the dataset change meanwhile?")
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"out": str(dst), "rows": total, "tasks": dict(sorted(counts.items())), "mcq": mcq, "columns": columns}


def cmd_export(args: argparse.Namespace) -> int:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if args.tasks is not None and not tasks:
        raise SSRLError("--tasks: give at least one task name")
    result = export_vlmevalkit(args.dir, args.out, split=args.split, tasks=tasks, layout=args.layout)
    per_task = ", ".join(f"{task} {n}" for task, n in result["tasks"].items())
    kind = "custom MCQ" if result["mcq"] else "custom VQA"
    print(f"wrote {result['out']}: {result['rows']} rows ({per_task}); VLMEvalKit will load it as a {kind} dataset")
    if result["mcq"] and result["mcq"] < result["rows"]:
        print("ssrl export: note: free-form rows are mixed with multiple-choice ones; VLMEvalKit scores the whole "
              "file as multiple-choice (export --tasks crop,position and --tasks shuffle,flip,depth separately to "
              "score each kind)", file=sys.stderr)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="write a built split as a VLMEvalKit custom MCQ/VQA TSV",
        description="Write one split of a built dataset (default val) as a VLMEvalKit TSV: index, question, A-D "
                    "(multiple-choice rows), answer, category (task), l2-category (task/variant), difficulty, id, "
                    "image_path, image (base64 JPEG; a JSON list for several images). Put it in $LMUData/NAME.tsv "
                    "and run VLMEvalKit with --data NAME.")
    p.add_argument("dir", help="dataset folder made by ssrl build")
    p.add_argument("out", help="the .tsv file to write (VLMEvalKit looks for $LMUData/NAME.tsv)")
    p.add_argument("--format", choices=FORMATS, default="vlmevalkit", help="output format (default vlmevalkit)")
    p.add_argument("--split", default="val", help="which split (default val)")
    p.add_argument("--tasks", help="comma-separated tasks to export (default: all); crop,position are multiple-choice, "
                                   "shuffle,flip,depth free-form")
    p.add_argument("--layout", choices=["easyr1", "verl"], help="which parquet layout to read (default easyr1 if present)")
    p.set_defaults(func=cmd_export)
    return p
