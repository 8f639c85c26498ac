"""A generated sample in its stored form, and the row layouts EasyR1 and verl read.

The ground truth is a compact JSON object ``{"answer": ..., "task": ...}`` (plus ``options`` for tasks whose
options are words): EasyR1 passes only this column to the reward, so the task has to travel inside it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from ssrl_plugin.core import Sample
from ssrl_plugin.dataset import Candidate
from ssrl_plugin.imaging import encode_image

EXTENSIONS = {"jpeg": "jpg", "png": "png"}


def compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def ground_truth(task: str, answer: str, options: dict[str, str] | None = None) -> str:
    gt: dict[str, Any] = {"task": task, "answer": answer}
    if options:
        gt["options"] = options
    return compact_json(gt)


def with_split_rows(gt: str, task_rows: int, split_rows: int) -> str:
    """The ground truth with the number of rows of its task and of its whole split: what the EasyR1 reward needs
    to log per-task accuracies that stay exact when EasyR1 pools metric lists across batches
    (``reward_fns/easyr1.py``)."""
    obj = json.loads(gt)
    obj["task_rows"], obj["split_rows"] = int(task_rows), int(split_rows)
    return compact_json(obj)


@dataclass
class Record:
    id: str
    split: str
    task: str
    variant: str
    question: str
    answer: str
    ground_truth: str
    metadata: str  # JSON
    images: list[bytes]
    image_ext: str
    source_id: str
    level: int = 0  # difficulty level (the ``difficulty`` column); 0 when built without levels (a null would break
    # torch's default_collate in trainers that pass extra columns through)
    videos: list[list[bytes]] | None = None  # the video form: encoded frames of each clip
    video_question: str | None = None


def sample_id(candidate: Candidate) -> str:
    """Unique within a build and stable across builds with the same sources and seed."""
    base = f"{candidate.task}:{candidate.source.id}:{candidate.round}"
    return f"{base}:s{candidate.stage}" if candidate.stage else base


def encode(sample: Sample, candidate: Candidate, image_format: str, jpeg_quality: int, word_options: bool) -> Record:
    return Record(
        id=sample_id(candidate),
        split=candidate.split,
        task=sample.task,
        variant=sample.variant,
        question=sample.question,
        answer=sample.answer,
        ground_truth=ground_truth(sample.task, sample.answer, sample.options if word_options else None),
        metadata=compact_json(sample.metadata),
        images=[encode_image(im, image_format, jpeg_quality) for im in sample.images],
        image_ext=EXTENSIONS[image_format],
        source_id=candidate.source.id,
        level=(sample.metadata.get("difficulty") or {}).get("level") or 0,
        videos=[[encode_image(im, image_format, jpeg_quality) for im in clip] for clip in sample.videos]
        if sample.videos is not None else None,
        video_question=sample.video_question,
    )


def with_instruction(question: str, instruction: str, enabled: bool) -> str:
    return f"{question}\n{instruction}" if enabled and instruction else question


def image_column(embedded: bool) -> pa.DataType:
    return pa.list_(pa.struct([("bytes", pa.binary())])) if embedded else pa.list_(pa.string())


def easyr1_schema(embedded: bool) -> pa.Schema:
    return pa.schema([
        ("problem", pa.string()),
        ("answer", pa.string()),
        ("images", image_column(embedded)),
        ("task", pa.string()),
        ("variant", pa.string()),
        ("id", pa.string()),
        ("metadata", pa.string()),
        ("difficulty", pa.int64()),
    ])


def verl_schema(embedded: bool) -> pa.Schema:
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", image_column(embedded)),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([
            ("split", pa.string()), ("index", pa.int64()), ("id", pa.string()), ("task", pa.string()),
            ("variant", pa.string()), ("answer", pa.string()), ("metadata", pa.string()), ("difficulty", pa.int64()),
        ])),
    ])


VIDEO_LAYOUTS = {"easyr1": "easyr1_video", "verl": "verl_video"}
MIME = {"jpg": "image/jpeg", "png": "image/png"}


def video_column() -> pa.DataType:
    """One entry per ``<video>``: the clip's frames as ``data:`` URIs. That is the one frame form both trainers
    read embedded: qwen_vl_utils' ``fetch_video`` takes a list of frames (no video decoder needed), and its
    ``fetch_image`` decodes ``data:image/...;base64`` strings; EasyR1 passes a list through unchanged."""
    return pa.list_(pa.list_(pa.string()))


def video_frames(rec: Record) -> list[list[str]]:
    mime = MIME[rec.image_ext]
    return [[f"data:{mime};base64,{base64.b64encode(b).decode('ascii')}" for b in clip] for clip in rec.videos or []]


def video_schema(fmt: str) -> pa.Schema:
    """The image layout's schema with ``videos`` in place of ``images``."""
    schema = easyr1_schema(True) if fmt == "easyr1" else verl_schema(True)
    i = schema.get_field_index("images")
    return schema.set(i, pa.field("videos", video_column()))


def video_row(fmt: str, rec: Record, index: int, instruction: str, enabled: bool) -> dict[str, Any]:
    """The video form of ``rec`` for ``fmt`` (``rec.videos`` must be set)."""
    as_video = replace(rec, question=rec.video_question or "")
    row = easyr1_row(as_video, [], instruction, enabled) if fmt == "easyr1" else verl_row(as_video, [], index, instruction, enabled)
    del row["images"]
    row["videos"] = video_frames(rec)
    return row


def easyr1_row(rec: Record, images: list, instruction: str, enabled: bool) -> dict[str, Any]:
    return {
        "problem": with_instruction(rec.question, instruction, enabled),
        "answer": rec.ground_truth,
        "images": images,
        "task": rec.task,
        "variant": rec.variant,
        "id": rec.id,
        "metadata": rec.metadata,
        "difficulty": rec.level,
    }


def verl_row(rec: Record, images: list, index: int, instruction: str, enabled: bool) -> dict[str, Any]:
    return {
        "data_source": f"spatial_ssrl/{rec.task}",
        "prompt": [{"role": "user", "content": with_instruction(rec.question, instruction, enabled)}],
        "images": images,
        "ability": "spatial",
        "reward_model": {"style": "rule", "ground_truth": rec.ground_truth},
        "extra_info": {
            "split": rec.split, "index": index, "id": rec.id, "task": rec.task,
            "variant": rec.variant, "answer": rec.answer, "metadata": rec.metadata, "difficulty": rec.level,
        },
    }
