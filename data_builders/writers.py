"""Streaming parquet shards: rows go to disk as they are made, so memory stays flat whatever the size."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ssrl_plugin.config import OutputConfig

from .checkpoint import ROWS_LOG, RowsLog
from .records import (VIDEO_LAYOUTS, Record, easyr1_row, easyr1_schema, verl_row, verl_schema, video_row, video_schema,
                      with_split_rows)
from .sft import SftWriter

ROW_GROUP = 256
SHARD_NAME = re.compile(r"^(.+-\d{5})-of-\d{5}\.parquet$")  # a closed shard's final name -> its working name


def leaf_columns(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """Parquet column paths of ``schema``'s leaves (``images.list.element.bytes``...) with their types."""
    def walk(prefix: str, t: pa.DataType) -> list[tuple[str, pa.DataType]]:
        if pa.types.is_struct(t):
            return [c for f in t for c in walk(f"{prefix}.{f.name}", f.type)]
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return walk(f"{prefix}.list.element", t.value_type)
        return [(prefix, t)]

    return [c for f in schema for c in walk(f.name, f.type)]


def column_compression(schema: pa.Schema) -> dict[str, str]:
    """zstd for text, none for binary (encoded images): JPEG/PNG bytes do not shrink, and trying costs ~0.4 ms a row."""
    return {path: "none" if pa.types.is_binary(t) else "zstd" for path, t in leaf_columns(schema)}


class ShardWriter:
    """Writes ``<dir>/<split>-00000.parquet`` ... and renames them ``-of-NNNNN`` on close (HF convention)."""

    def __init__(self, directory: Path, split: str, schema: pa.Schema, shard_size: int):
        self.directory, self.split, self.schema, self.shard_size = directory, split, schema, shard_size
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_shard = 0
        self._buffer: list[dict[str, Any]] = []
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self.rows += 1
        if len(self._buffer) >= ROW_GROUP or self._rows_in_shard + len(self._buffer) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        while self._buffer:
            if self._writer is None:
                path = self.directory / f"{self.split}-{len(self.paths):05d}.parquet"
                self.paths.append(path)
                self._writer = pq.ParquetWriter(path, self.schema, compression=column_compression(self.schema))
                self._rows_in_shard = 0
            take = min(len(self._buffer), self.shard_size - self._rows_in_shard)
            chunk, self._buffer = self._buffer[:take], self._buffer[take:]
            self._writer.write_table(pa.Table.from_pylist(chunk, schema=self.schema))
            self._rows_in_shard += take
            if self._rows_in_shard >= self.shard_size:
                self._writer.close()
                self._writer, self._rows_in_shard = None, 0

    def cut(self) -> None:
        """Close the open shard now (however few rows it has): the video layouts cut theirs where the image layouts
        close one, so a checkpoint never leaves rows of theirs outside both the closed shards and the row log."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer, self._rows_in_shard = None, 0

    def closed(self) -> list[str]:
        """Names of the shards already closed: what survives an interruption."""
        return [p.name for p in (self.paths[:-1] if self._writer is not None else self.paths)]

    def restore(self, names: list[str]) -> None:
        """Continue after a checkpoint whose closed shards are ``names``: a shard renamed by an interrupted
        :meth:`close` gets its working name back, anything else of this split (cut short) is deleted."""
        self.paths = [self.directory / name for name in names]
        self.rows = len(names) * self.shard_size
        keep = set(names)
        for tmp in self.directory.glob(f"{self.split}-*.parquet.tmp"):  # an interrupted ground-truth rewrite
            tmp.unlink()
        for path in sorted(self.directory.glob(f"{self.split}-*.parquet")):
            working = SHARD_NAME.sub(r"\1.parquet", path.name)
            if working in keep and working != path.name and not (self.directory / working).exists():
                os.replace(path, self.directory / working)
            elif path.name not in keep:
                path.unlink()

    def rewrite_ground_truths(self, fix) -> None:
        """Apply ``fix`` to every written row's ground truth (after the last row, before :meth:`close`)."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer, self._rows_in_shard = None, 0
        for path in self.paths:
            table = pq.read_table(path, schema=self.schema)
            if "answer" in self.schema.names:  # easyr1
                col = pa.array([fix(v) for v in table.column("answer").to_pylist()], pa.string())
                table = table.set_column(self.schema.get_field_index("answer"), "answer", col)
            else:  # verl: reward_model.ground_truth
                rms = [{**rm, "ground_truth": fix(rm["ground_truth"])} for rm in table.column("reward_model").to_pylist()]
                i = self.schema.get_field_index("reward_model")
                table = table.set_column(i, "reward_model", pa.array(rms, self.schema.field(i).type))
            tmp = path.with_name(path.name + ".tmp")  # atomic: a kill leaves the old file or the new one
            pq.write_table(table, tmp, compression=column_compression(self.schema), row_group_size=ROW_GROUP)
            os.replace(tmp, path)

    def close(self) -> list[Path]:
        self._flush()
        if self._writer is not None:
            self._writer.close()
        if not self.paths:  # an empty split still gets a file with the schema, so loaders find the split
            path = self.directory / f"{self.split}-00000.parquet"
            pq.write_table(self.schema.empty_table(), path, compression="zstd")
            self.paths.append(path)
        final = []
        for i, path in enumerate(self.paths):
            target = path.with_name(f"{self.split}-{i:05d}-of-{len(self.paths):05d}.parquet")
            os.replace(path, target)
            final.append(target)
        return final


class DatasetWriter:
    """Fans each record out to the EasyR1 and/or verl layout of one split; image files when not embedded.

    Every record is also logged until its shard closes (:mod:`.checkpoint`), so :meth:`state` can be taken after
    any row and a resumed build replays the rows of the open shard into the same bytes.
    """

    def __init__(self, out: Path, split: str, output: OutputConfig, state: dict[str, Any] | None = None,
                 task_rows: dict[str, int] | None = None):
        """``state`` (from :meth:`state`) continues an interrupted build; without it anything this split left in
        ``out`` is cleared. ``task_rows``: the rows each task will have in this split; every ground truth then
        records its task's and the split's row counts."""
        self.out, self.split, self.output = out, split, output
        self.task_rows = {t: n for t, n in (task_rows or {}).items() if n > 0}
        embedded = output.embed_images
        self.writers: dict[str, ShardWriter] = {}
        for fmt in (f for f in output.formats if f != "sft"):
            (out / fmt).mkdir(parents=True, exist_ok=True)
            schema = easyr1_schema(embedded) if fmt == "easyr1" else verl_schema(embedded)
            self.writers[fmt] = ShardWriter(out / fmt, split, schema, output.shard_size)
        self.video_writers: dict[str, ShardWriter] = {}
        for fmt in (f for f in output.formats if f in VIDEO_LAYOUTS and output.videos):
            (out / VIDEO_LAYOUTS[fmt]).mkdir(parents=True, exist_ok=True)
            self.video_writers[fmt] = ShardWriter(out / VIDEO_LAYOUTS[fmt], split, video_schema(fmt), output.shard_size)
        if state is None:
            self._clear()
        base = state["base"] if state else None
        self.sft = SftWriter(out, split, output.instruction, base["sft"] if base else None) \
            if "sft" in output.formats else None
        self.count = 0
        self.pending = 0  # rows written since the last closed shard (they are in the log)
        self.log = RowsLog(out / ROWS_LOG.format(split=split), state["log_bytes"] if state else 0)
        if state:
            self._restore(state)
        self.base = self._boundary_state() if not state else state["base"]

    def _clear(self) -> None:
        """A fresh split: whatever an earlier, interrupted attempt wrote for it goes."""
        for fmt in [*self.writers, *(VIDEO_LAYOUTS[f] for f in self.video_writers)]:
            for path in (self.out / fmt).glob(f"{self.split}-*.parquet*"):
                path.unlink()
        for folder in (self.out / "images" / self.split, self.out / "sft" / "images" / self.split):
            shutil.rmtree(folder, ignore_errors=True)

    def _images(self, rec: Record) -> list:
        if not self.writers:
            return []
        if self.output.embed_images:
            return [{"bytes": b} for b in rec.images]
        folder = self.out / "images" / self.split
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.count:08d}"
        paths = []
        for k, data in enumerate(rec.images):
            rel = f"images/{self.split}/{stem}_{k}.{rec.image_ext}"
            (self.out / rel).write_bytes(data)
            paths.append(rel)
        return paths

    def write(self, rec: Record) -> None:
        self._emit(rec)
        self.log.append(rec)
        self.pending += 1

    def _emit(self, rec: Record) -> None:
        images = self._images(rec)
        o = self.output
        if self.task_rows:
            rec = dataclasses.replace(rec, ground_truth=with_split_rows(rec.ground_truth, self.task_rows[rec.task],
                                                                        sum(self.task_rows.values())))
        if "easyr1" in self.writers:
            self.writers["easyr1"].write(easyr1_row(rec, images, o.instruction, o.easyr1_instruction))
        if "verl" in self.writers:
            self.writers["verl"].write(verl_row(rec, images, self.count, o.instruction, o.verl_instruction))
        if rec.videos is not None:
            for fmt, writer in self.video_writers.items():
                enabled = o.easyr1_instruction if fmt == "easyr1" else o.verl_instruction
                writer.write(video_row(fmt, rec, self.count, o.instruction, enabled))
        if self.sft is not None:
            self.sft.write(rec)
        self.count += 1
        if self.at_shard_boundary():
            for writer in self.video_writers.values():
                writer.cut()

    def at_shard_boundary(self) -> bool:
        """True right after the row that completed a shard: every parquet file is closed."""
        return self.count > 0 and self.count % self.output.shard_size == 0

    def _boundary_state(self) -> dict[str, Any]:
        return {"count": self.count, "shards": {f: w.closed() for f, w in self.writers.items()},
                "video_shards": {f: w.closed() for f, w in self.video_writers.items()},
                "sft": self.sft.state() if self.sft is not None else None}

    def state(self) -> dict[str, Any]:
        """What a resumed build restores; call :meth:`saved` once it is on disk."""
        if self.at_shard_boundary():
            return {"base": self._boundary_state(), "pending": 0, "log_bytes": 0}
        return {"base": self.base, "pending": self.pending, "log_bytes": self.log.offset()}

    def saved(self, state: dict[str, Any]) -> None:
        """``state`` is on disk: rows that now sit in closed shards leave the log."""
        if state["pending"] == 0 and self.pending:
            self.base, self.pending = state["base"], 0
            self.log.reset()

    def _restore(self, state: dict[str, Any]) -> None:
        """Drop what was written past the checkpoint, keep everything before it, replay the logged rows."""
        base = state["base"]
        self.count = base["count"]
        for fmt, w in self.writers.items():
            w.restore(base["shards"][fmt])
        for fmt, w in self.video_writers.items():
            w.restore(base.get("video_shards", {}).get(fmt, []))
        if not self.output.embed_images:
            for path in (self.out / "images" / self.split).glob("*"):
                if int(path.name.split("_")[0]) >= self.count:
                    path.unlink()
        for rec in self.log.read(state["pending"]):
            self._emit(rec)
        self.pending = state["pending"]

    def close(self, built: dict[str, int] | None = None) -> list[Path]:
        """``built``: the rows each task really got. Where that falls short of the planned ``task_rows``, the
        ground truths already written get the real counts (so per-task metrics stay exact)."""
        real = {t: n for t, n in (built or {}).items() if n > 0}
        if self.task_rows and built is not None and real != self.task_rows:
            total = sum(real.values())

            def fix(gt: str) -> str:
                task = json.loads(gt)["task"]
                return with_split_rows(gt, real[task], total)

            for w in [*self.writers.values(), *self.video_writers.values()]:
                w.rewrite_ground_truths(fix)
        files = [p for w in [*self.writers.values(), *self.video_writers.values()] for p in w.close()]
        files += self.sft.close() if self.sft is not None else []
        return files

    def discard_log(self) -> None:
        self.log.close(remove=True)
