"""Resumable builds: the checkpoint file and the log of the rows written since the last complete shard.

A parquet file cannot be reopened for appending, so a shard that is still open when the build is killed is lost.
What is not lost is the log: every row the writer emits is also appended to ``.ssrl_build_rows-<split>.pkl``
until its shard closes. A checkpoint records the closed shards, how many logged rows count and where the log
ends; a resumed build deletes what lies past the checkpoint, replays the logged rows into a fresh shard (the same
row groups, so the same bytes) and goes on. The first checkpoint is written before the first sample, so a build
killed at any moment resumes to the files an uninterrupted build writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

from ssrl_plugin.config import BuildConfig
from ssrl_plugin.errors import ConfigError

STATE_FILE = ".ssrl_build_state.json"
STATE_VERSION = 2
ROWS_LOG = ".ssrl_build_rows-{split}.pkl"
# keys that may change between an interrupted build and its resumption: they change speed, never the output
FREE_KEYS = ("workers", "window", "out", "backend", "ray_address")


def resume_keys(config: BuildConfig) -> dict[str, Any]:
    d = config.to_dict()
    for key in FREE_KEYS:
        d.pop(key)
    return d


def fingerprint(config: BuildConfig) -> str:
    """What must not change between an interrupted build and its resumption."""
    return hashlib.sha256(json.dumps(resume_keys(config), sort_keys=True).encode()).hexdigest()


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted config keys whose values differ (``task.crop.size_frac``, ``num_samples``...)."""
    if isinstance(old, dict) or isinstance(new, dict):
        old, new = (old if isinstance(old, dict) else {}), (new if isinstance(new, dict) else {})
        keys = sorted(set(old) | set(new))
        return [k for key in keys for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".") or "(config)"]


def save_state(out: Path, state: dict[str, Any]) -> None:
    """Atomic: a kill or a full disk leaves the old checkpoint or the new one, never half of one."""
    tmp = out / (STATE_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, out / STATE_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def new_state(config: BuildConfig) -> dict[str, Any]:
    return {"version": STATE_VERSION, "fingerprint": fingerprint(config), "config": resume_keys(config),
            "splits": {}, "done": [], "files": [], "bad_sources": {}, "elapsed": 0.0}


def load_state(out: Path, config: BuildConfig) -> dict[str, Any] | None:
    """The checkpoint of an interrupted build in ``out``; None when there is none. Refuses, naming the keys, a
    checkpoint made with another config."""
    path = out / STATE_FILE
    if not path.exists():
        if (out / "manifest.json").exists():
            raise ConfigError(f"--resume: {out} holds a finished build (manifest.json); nothing to resume "
                              f"(--overwrite builds it again)")
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--resume: {path} is damaged ({type(exc).__name__}); pass --overwrite to start again") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ConfigError(f"--resume: {path} was written by another version of ssrl; pass --overwrite to start again")
    if state.get("fingerprint") != fingerprint(config):
        keys = changed_keys(state.get("config", {}), resume_keys(config))
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise ConfigError(f"--resume: the config differs from the interrupted build's in {out} in {shown or 'its keys'}"
                          f" (only {', '.join(FREE_KEYS[:2])} may change; --overwrite starts again)")
    return state


class RowsLog:
    """Append-only log of the records written since the last closed shard (pickled :class:`Record` objects)."""

    def __init__(self, path: Path, keep_bytes: int = 0):
        self.path = path
        mode = "r+b" if keep_bytes and path.exists() else "w+b"
        self._file = open(path, mode)
        self._file.truncate(keep_bytes if mode == "r+b" else 0)
        self._file.seek(0, os.SEEK_END)

    def append(self, record: Any) -> None:
        try:
            pickle.dump(record, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError as exc:  # name the file: a full disk usually shows up here first
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None

    def offset(self) -> int:
        """Bytes that hold complete records (flushed, so a kill after a checkpoint keeps them)."""
        self._file.flush()
        return self._file.tell()

    def read(self, count: int) -> list[Any]:
        """The first ``count`` records."""
        self._file.flush()
        self._file.seek(0)
        try:
            records = [pickle.load(self._file) for _ in range(count)]
        except (EOFError, pickle.UnpicklingError) as exc:
            raise ConfigError(f"--resume: {self.path} is damaged ({type(exc).__name__}); pass --overwrite to start again") from None
        finally:
            self._file.seek(0, os.SEEK_END)
        return records

    def reset(self) -> None:
        self._file.seek(0)
        self._file.truncate(0)

    def close(self, remove: bool = False) -> None:
        self._file.close()
        if remove:
            self.path.unlink(missing_ok=True)
