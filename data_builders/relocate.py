"""Find a build's sources again: where the manifest recorded them, or under ``--sources DIR`` when they moved.

``ssrl build`` records every ``--rgb`` spec (folder, glob, ``.txt`` list or image) and every ``--rgbd`` spec
(``KIND:PATH[,key=value...]``) with an absolute path in ``manifest["config"]``. Source ids are
``<root name>/<path relative to the root>``, so a corpus that was moved or copied keeps its ids as long as its
root keeps its name. Relocation uses exactly that:

- the *root* of a spec is its folder, list file or image; for a glob, the folders before the first wildcard;
- for each ``--sources DIR`` (in the order given) the root is looked for as ``DIR`` itself when ``DIR`` has the
  root's name, else as ``DIR/<root name>``; the first one that exists (a folder for a folder or glob root, a file
  for a list or an image) replaces the recorded root, and the rest of the spec (glob pattern, ``key=value``
  options) is kept;
- a root that exists where it was recorded stays there unless a ``--sources`` folder matches it;
- a root found nowhere is reported as missing: its samples are verified (or previewed) without their source.
- a root that is itself the one source (an image, a video, one sequence folder) is named after its parent folder,
  which a move may change: its source gets back the id it was built with.

Relative entries of a ``.txt`` list resolve against the list's (relocated) folder, as in ``ssrl build``; absolute
entries are used as written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from ssrl_plugin.errors import SourceError, SSRLError
from ssrl_plugin.sources import (
    IMAGE_EXTS,
    SourceRef,
    _make_id,
    _root_name,
    discover_rgb,
    discover_rgbd,
    parse_rgbd_spec,
    with_spec_path,
)

_GLOB_MAGIC = ("*", "?", "[")


@dataclass
class Relocated:
    """The manifest's config with its roots relocated; ``missing``: recorded roots found nowhere (their specs are
    left out of ``config``); ``moved``: recorded root -> the root used instead."""

    config: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    moved: dict[str, str] = field(default_factory=dict)
    demo: bool = False


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


def _name(path: str) -> str:
    return os.path.basename(_norm(path)) or "root"


def _split_glob(spec: str) -> tuple[str, str]:
    """(root, pattern after the root): ``/data/imgs/**/*.jpg`` -> (``/data/imgs``, ``**/*.jpg``); no wildcard ->
    (spec, "")."""
    parts = PurePath(spec).parts
    for i, part in enumerate(parts):
        if any(c in part for c in _GLOB_MAGIC):
            root = os.path.join(*parts[:i]) if i else "."
            return root, os.path.join(*parts[i:])
    return spec, ""


VIDEO_EXTS = (".mp4", ".webm", ".mov", ".mkv", ".avi")  # a sequence spec may name one video file


def _wants_file(root: str) -> bool:
    """A list (``.txt``) or image root is a file; any other root is a folder."""
    return os.path.splitext(root)[1].lower() in (".txt", *IMAGE_EXTS)


def _exists(path: str, want_file: bool) -> bool:
    return os.path.isfile(path) if want_file else os.path.isdir(path)


def find_root(root: str, sources: Sequence[str], want_file: bool) -> str | None:
    """Where ``root`` lies now: ``DIR`` or ``DIR/<name>`` for the first matching ``--sources DIR``, else ``root``
    itself when it exists, else None."""
    name = _name(root)
    for folder in sources:
        base = _norm(folder)
        for candidate in ((base,) if os.path.basename(base) == name else ()) + (os.path.join(base, name),):
            if _exists(candidate, want_file):
                return candidate
    return _norm(root) if _exists(_norm(root), want_file) else None


def check_sources_dirs(sources: Sequence[str]) -> None:
    for folder in sources:
        if not os.path.isdir(os.path.expanduser(folder)):
            raise SSRLError(f"--sources {folder}: no such folder")


def relocate(config: dict[str, Any], sources: Sequence[str] = ()) -> Relocated:
    """``config`` (the manifest's) with every ``rgb``/``rgbd`` root relocated (see the module doc)."""
    check_sources_dirs(sources)
    config = dict(config)
    rgb, rgbd = list(config.get("rgb") or []), list(config.get("rgbd") or [])
    sequences = list(config.get("sequences") or [])
    result = Relocated(config, demo=not rgb and not rgbd and not sequences)
    new_rgb: list[str] = []
    for spec in rgb:
        root, pattern = _split_glob(spec)
        want_file = not pattern and _wants_file(root)
        found = find_root(root, sources, want_file)
        if found is None:
            result.missing.append(_norm(root))
            continue
        if found != _norm(root):
            result.moved[_norm(root)] = found
        new_rgb.append(os.path.join(found, pattern) if pattern else found)
    config["rgb"] = new_rgb
    config["rgbd"] = _relocate_specs(rgbd, lambda spec: parse_rgbd_spec(spec)["path"], sources, result)
    if sequences:
        from ssrl_plugin.sequence_io import parse_sequence_spec

        config["sequences"] = _relocate_specs(sequences, lambda spec: parse_sequence_spec(spec)["path"], sources, result)
    return result


def _relocate_specs(specs: list[str], path_of, sources: Sequence[str], result: Relocated) -> list[str]:
    """``KIND:PATH[,options]`` specs with PATH relocated; a root found nowhere is recorded as missing. A sequence
    spec's PATH may be one video file."""
    out: list[str] = []
    for spec in specs:
        path = path_of(spec)
        found = find_root(path, sources, want_file=os.path.splitext(path)[1].lower() in VIDEO_EXTS)
        if found is None:
            result.missing.append(_norm(path))
            continue
        if found != _norm(path):
            result.moved[_norm(path)] = found
            spec = with_spec_path(spec, path, found)
        out.append(spec)
    return out


def _self_id(root: str) -> str:
    return _make_id(_root_name(os.path.dirname(root)), os.path.basename(root))


def _with_recorded_id(ref: SourceRef, old_root: str, new_root: str) -> SourceRef:
    """A root that is itself the source (one image, one video, one sequence folder) is named after its PARENT
    folder, which a move may change: such a ref gets back the id it was built with."""
    if ref.id == _self_id(new_root) and _self_id(old_root) != ref.id:
        return dataclasses.replace(ref, id=_self_id(old_root))
    return ref


@dataclass
class FoundSources:
    """Every source the relocated config still reaches, by id, and what could not be reached."""

    refs: dict[str, SourceRef]
    missing: list[str]  # recorded roots found nowhere, or that failed to list (with the reason)
    moved: dict[str, str]
    demo: bool

    def missing_line(self, command: str) -> str | None:
        """The one line a command prints when sources are missing, or None."""
        if not self.missing:
            return None
        return f"ssrl {command}: sources not found: {', '.join(self.missing)} (moved? pass --sources NEWDIR)"


def find_sources(manifest_config: dict[str, Any], sources: Sequence[str] = ()) -> tuple[FoundSources, Any]:
    """Relocate and rediscover the build's sources. Returns (found sources, the loaded BuildConfig)."""
    from ssrl_plugin.config import load_config

    rel = relocate(manifest_config, sources)
    config = load_config(None, None, **rel.config)
    refs: dict[str, SourceRef] = {}
    missing = list(rel.missing)
    if rel.demo:
        from .pipeline import collect_sources

        pools = collect_sources(config)
        refs = {r.id: r for r in pools.all_refs()}
    else:
        specs = [(s, discover_rgb, s) for s in config.rgb] + [(s, discover_rgbd, None) for s in config.rgbd]
        if config.sequences:
            from ssrl_plugin.sequence_io import discover_sequences, parse_sequence_spec

            specs += [(s, discover_sequences, parse_sequence_spec(s)["path"]) for s in config.sequences]
        recorded = {new: old for old, new in rel.moved.items()}
        for spec, discover, root in specs:
            try:
                found, _skipped = discover(spec)
            except SourceError as exc:  # e.g. an unreadable list file: its sources are missing, said once
                missing.append(str(exc))
                continue
            old_root = recorded.get(_norm(root)) if root else None
            for ref in found:
                if old_root is not None:
                    ref = _with_recorded_id(ref, old_root, _norm(root))
                refs.setdefault(ref.id, ref)
    return FoundSources(refs, missing, rel.moved, rel.demo), config
