"""Cold-start SFT export for LLaMA-Factory: short templated reasoning + the boxed answer.

The paper warms the model up on ~3,600 such samples before GRPO (RL from the base model collapsed on the hard
tasks). The reasoning is written from the sample's metadata, so it is always consistent with the answer; it
is deliberately short, to teach the format and the kind of evidence, not a style.

Layout (``DIR/sft``)::

    train.json  val.json            # JSON arrays of {"messages": [...], "images": ["images/train/..."], "id", "task",
                                    #   "metadata": the sample's metadata as a JSON string (what `ssrl verify` checks)}
    images/train/00000000_0.jpg ... # paths in the JSON are relative to DIR/sft (LLaMA-Factory's dataset_dir)
    dataset_info.json               # entries spatial_ssrl_sft and spatial_ssrl_sft_val (sharegpt format)

LLaMA-Factory reads only the columns ``dataset_info.json`` maps (``messages``, ``images``) and removes the others
when it aligns the dataset, so ``id``, ``task`` and ``metadata`` travel along for ``ssrl verify`` at no cost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .records import Record

DATASET_NAME = "spatial_ssrl_sft"
DIRECTIONS = {0: "upside down (a vertical flip)", 1: "mirrored left to right (a horizontal flip)"}
FACING_WORDS = {"away": "away from the viewer, into the scene", "towards": "towards the viewer",
                "left": "towards the left of the image", "right": "towards the right of the image"}
METHOD_WORDS = {
    "zoom_in": "shows only the centre of the region, enlarged",
    "context": "shows the region with extra surroundings, at a smaller scale",
    "context_0.25": "shows the region with extra surroundings, at a smaller scale",
    "context_0.5": "shows the region with a lot of extra surroundings, at a much smaller scale",
    "rotate_cw": "is the right content turned 90 degrees clockwise",
    "rotate_ccw": "is the right content turned 90 degrees counter-clockwise",
}


def reasoning(task: str, answer: str, meta: dict[str, Any]) -> str:
    """A few sentences that justify ``answer`` from what the image shows, built from the metadata."""
    if task == "shuffle":
        names, labels = meta["position_names"], meta["answer_labels"]
        placed = ", ".join(f"piece {lab} belongs at {name}" for name, lab in zip(names, labels))
        masked = ""
        if meta.get("masked_position") is not None:
            masked = f" The white piece has no content to match, so it takes the one place left, {names[meta['masked_position']]}."
        return (f"I match the edges and the content of the labelled pieces so that lines and shapes continue across "
                f"the borders: {placed}.{masked} Reading the labels in the original order gives {answer}.")
    if task == "flip":
        label, direction = meta["flipped_index"], meta["direction"]
        return (f"I check every patch for continuity with its neighbours. Patch {label} breaks the lines and shapes "
                f"at its borders, and its content fits once it is undone: it is {DIRECTIONS[direction]}. "
                f"So the answer is {label}-{direction}.")
    if task == "crop":
        parts = []
        for opt in meta["options"]:
            if opt["method"] == "true_crop":
                continue
            words = METHOD_WORDS.get(opt["method"], "does not match the surroundings")
            parts.append(f"{opt['letter']} {words}")
        return (f"The missing square must continue the content around the hole at the same scale and orientation. "
                f"{'; '.join(parts)}. Candidate {answer} continues every edge of the hole, so the answer is {answer}.")
    if task == "depth":
        order = meta["order_near_to_far"]
        return (f"I compare how far the three circled regions are from the camera, using perspective, occlusion "
                f"and their position relative to the ground. Region {order[0]} is the nearest, region {order[1]} "
                f"is in between and region {order[2]} is the farthest, so the order is {answer}.")
    if task == "position":
        cam, tgt, facing = meta["camera_label"], meta["target_label"], meta["facing"]["name"]
        return (f"The camera stands at region {cam} facing {FACING_WORDS.get(facing, facing)}. In the ground plane, "
                f"region {tgt} lies {describe_offset(meta['components'])} of it, so from the camera's point of view "
                f"it is {meta['answer_text']}, which is option {answer}.")
    return f"Reasoning about the image gives {answer}."


def describe_offset(components: dict[str, float]) -> str:
    forward, right = components["forward"], components["right"]
    along = "in front" if forward > 0 else "behind"
    side = "to the right" if right > 0 else "to the left"
    return f"{abs(forward):.1f} units {along} and {abs(right):.1f} units {side}"


class SftWriter:
    """Streams one split as a JSON array (bounded memory) with its images as files."""

    def __init__(self, out: Path, split: str, instruction: str, state: dict[str, int] | None = None):
        self.root = out / "sft"
        self.split, self.instruction = split, instruction
        (self.root / "images" / split).mkdir(parents=True, exist_ok=True)
        self.path = self.root / f"{split}.json"
        if state is None:
            self._file = open(self.path, "w", encoding="utf-8")
            self._file.write("[")
            self.count = 0
        else:
            self._restore(state)

    def state(self) -> dict[str, int]:
        self._file.flush()
        return {"count": self.count, "offset": self._file.tell()}

    def _restore(self, state: dict[str, int]) -> None:
        """Continue after a checkpoint: cut the JSON and the images back to it."""
        self._file = open(self.path, "r+", encoding="utf-8")
        self._file.truncate(state["offset"])
        self._file.seek(state["offset"])
        self.count = state["count"]
        for path in (self.root / "images" / self.split).glob("*"):
            if int(path.name.split("_")[0]) >= self.count:
                path.unlink()

    def write(self, rec: Record) -> None:
        images = []
        for k, data in enumerate(rec.images):
            rel = f"images/{self.split}/{self.count:08d}_{k}.{rec.image_ext}"
            (self.root / rel).write_bytes(data)
            images.append(rel)
        meta = json.loads(rec.metadata)
        prompt = f"{rec.question}\n{self.instruction}" if self.instruction else rec.question
        reply = f"<think>\n{reasoning(rec.task, rec.answer, meta)}\n</think>\n\\boxed{{{rec.answer}}}"
        item = {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}],
                "images": images, "id": rec.id, "task": rec.task,
                "metadata": rec.metadata}  # keys dataset_info.json does not map are dropped by LLaMA-Factory's converter
        self._file.write(("," if self.count else "") + "\n" + json.dumps(item, ensure_ascii=False))
        self.count += 1

    def close(self) -> list[Path]:
        self._file.write("\n]\n")
        self._file.close()
        info_path = self.root / "dataset_info.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        name = DATASET_NAME if self.split == "train" else f"{DATASET_NAME}_{self.split}"
        info[name] = {
            "file_name": self.path.name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        }
        info_path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        images = sorted((self.root / "images" / self.split).iterdir())
        return [self.path, *images]
