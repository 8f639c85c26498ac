"""One picture per task, made by the tool itself from the demo corpus (used for the README)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from .core import Sample
from .dataset import ProceduralDataset
from .errors import Reject
from .registry import create_task, list_tasks
from .render import font


def composite(sample: Sample, height: int = 240, caption_px: int = 18) -> Image.Image:
    """The sample's images side by side at one height, with the task and the answer underneath."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS) for im in sample.images]
    gap = 6
    width = sum(im.width for im in scaled) + gap * (len(scaled) - 1)
    sheet = Image.new("RGB", (width, height + caption_px * 2), "white")
    x = 0
    for im in scaled:
        sheet.paste(im, (x, 0))
        x += im.width + gap
    caption = f"{sample.task} ({sample.variant}): answer {sample.answer}"
    if sample.options and sample.task == "camera_motion":
        caption += f" = {sample.options.get(sample.answer, '?')}"
    if sample.options and sample.task == "position":
        caption += "  [" + ", ".join(f"{k}. {v}" for k, v in sorted(sample.options.items())) + "]"
    ImageDraw.Draw(sheet).text((4, height + caption_px // 2), caption, font=font(caption_px), fill="black")
    return sheet


def first_sample(task_name: str, seed: int) -> Sample:
    from .demo import demo_refs

    task = create_task(task_name)
    pool = task.input_pool()
    if pool in ("video", "posed"):
        from .demo_sequence import demo_sequence_refs

        refs = demo_sequence_refs(8)
    else:
        refs = [r for r in demo_refs(8, 8) if r.pool == pool]
    dataset = ProceduralDataset(task, refs, seed=seed, size=len(refs))
    for i in range(len(dataset)):
        try:
            return dataset[i]
        except Reject:
            continue
    raise Reject(f"{task_name}/no_example", "no demo source gave a sample")


def write_examples(out: str | Path, seed: int = 0, tasks: list[str] | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in tasks or list_tasks():
        path = out / f"{name}.jpg"
        composite(first_sample(name, seed)).save(path, quality=85)
        paths.append(path)
    return paths
