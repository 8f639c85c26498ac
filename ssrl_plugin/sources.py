"""Finding input files and decoding them into :class:`~ssrl_plugin.core.Source` objects.

Discovery (cheap, in the main process) yields picklable :class:`SourceRef` objects; decoding happens where the
sample is generated (a worker), and any problem with a file raises :class:`~ssrl_plugin.errors.SourceError`
with a one-line reason that names the file.
"""

from __future__ import annotations

import glob as _glob
import os
import stat
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
import xxhash

from .core import DEPTH_KINDS, DepthMap, Source
from .depth_io import load_depth
from .errors import ConfigError, SourceError
from .imaging import decode_rgb_file, digest_text, update_digest


@dataclass
class LoadOptions:
    """How sources are decoded: the ``source`` section of the build config."""

    min_side: int = 128  # shorter side below this: rejected as too small
    max_side: int = 1600  # longer side above this: downscaled (Lanczos for RGB, nearest for depth); 0 = never
    max_image_pixels: int = 100_000_000  # decompression-bomb guard (pixels of the encoded file)
    depth_resize: str = "error"  # RGB/depth size mismatch: "error" (skip the source) or "nearest" (resize depth)
    min_valid_fraction: float = 0.01  # depth maps with fewer valid pixels than this are rejected

    def validate(self) -> None:
        from .registry import check

        check(self.min_side >= 16, "source.min_side", f"must be >= 16, got {self.min_side}")
        check(self.max_side == 0 or self.max_side >= self.min_side, "source.max_side", f"must be 0 (off) or >= source.min_side, got {self.max_side}")
        check(self.max_image_pixels > 0, "source.max_image_pixels", f"must be > 0, got {self.max_image_pixels}")
        check(self.depth_resize in ("error", "nearest"), "source.depth_resize", f"must be 'error' or 'nearest', got {self.depth_resize!r}")
        check(0.0 <= self.min_valid_fraction <= 1.0, "source.min_valid_fraction", f"must be in [0, 1], got {self.min_valid_fraction}")


SEQUENCE_SCHEME = "sequence"  # refs of ssrl_plugin.sequence_io (videos, frame folders, posed RGB-D sequences)
POOLS = ("rgb", "rgbd", "video", "posed")
# Which refs each pool holds, by their own kind (``SourceRef.pool``): frame tasks run on posed sequences too.
POOL_MEMBERS = {"rgb": ("rgb",), "rgbd": ("rgbd",), "video": ("video", "posed"), "posed": ("posed",)}


@dataclass(frozen=True)
class SourceRef:
    """A pointer to one source; stable ``id`` (seeds every sample) and everything needed to decode it."""

    id: str
    scheme: str  # "file" (files on disk) or "demo" (procedurally rendered, see ssrl_plugin.demo)
    rgb_path: str = ""
    depth_path: str | None = None
    mask_path: str | None = None
    depth_format: str | None = None  # "diode" | "megadepth" | "npy" | "npz" | "png16" | None (RGB only)
    depth_kind: str = "metric"  # see core.DEPTH_KINDS
    depth_scale: float = 1.0  # stored value * scale = depth in the kind's units
    invalid_value: float | None = None  # stored value that marks "no depth" (e.g. 0 for KITTI/ScanNet PNG)
    extra: tuple = field(default=())  # scheme-specific (demo: (kind, index, size...))

    @property
    def has_depth(self) -> bool:
        return self.depth_format is not None

    @property
    def is_sequence(self) -> bool:
        """A sequence of frames (video, frame folder, posed RGB-D sequence, demo sequence), not one image."""
        return self.scheme == SEQUENCE_SCHEME or (self.scheme == "demo" and self.extra[:1] == ("seq",))

    @property
    def pool(self) -> str:
        """The input kind this source serves: ``rgb``, ``rgbd``, ``video`` (frames only) or ``posed`` (frames with
        depth, camera poses and intrinsics). A task draws from the pool of its ``input_kind``; the ``video`` pool
        also holds every posed sequence (see :data:`POOL_MEMBERS`)."""
        if self.is_sequence:
            return "posed" if self.has_depth else "video"
        return "rgbd" if self.has_depth else "rgb"


# --------------------------------------------------------------------------------------------------- discovery

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")  # TIFF, GIF: first page/frame
DEPTH_STEM_SUFFIXES = ("_depth", "_depth_mask")  # DIODE / pairs naming: never RGB inputs
RGBD_LAYOUTS = ("diode", "megadepth", "pairs")
PAIR_FORMATS = ("auto", "npy", "npz", "png16")
_FORMAT_EXTS = {"npy": (".npy",), "npz": (".npz",), "png16": (".png",), "auto": (".npy", ".npz", ".png")}
_EXT_TO_FORMAT = {".npy": "npy", ".npz": "npz", ".png": "png16"}
_MEGADEPTH_IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_GLOB_MAGIC = ("*", "?", "[")

Skipped = list[tuple[str, str]]

# Why a file that discovery looked at is not taken: the SAME text for the same situation in every mode (folder,
# glob, list, single image, RGB-D layouts), so that `ssrl stats` counts equal causes together. The path goes in the
# first element of each skipped pair (always absolute), never in the reason.
REASON_BROKEN_LINK = "broken symbolic link"
REASON_NOT_REGULAR = "not a regular file (device, pipe or socket)"
REASON_UNREADABLE = "cannot read file (permission denied)"
REASON_EMPTY = "empty file (0 bytes)"  # also what decoding says of an empty file
REASON_DEPTH_NAMED = "looks like a depth map (name ends in _depth or _depth_mask), not RGB"
REASON_FOLDER_SEEN = "folder already walked through another path (symbolic link)"


def reason_not_image(path: str) -> str:
    """The skip reason of a file whose extension is not one of :data:`IMAGE_EXTS`."""
    ext = os.path.splitext(path)[1]
    what = f"extension {ext}" if ext else "no extension"
    return f"not a supported image ({what}; supported: {', '.join(IMAGE_EXTS)})"


def _reason_unlistable(e: OSError) -> str:
    return f"cannot list folder ({e.strerror or type(e).__name__})"


def _is_image(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTS


def _looks_like_depth(path: str) -> bool:
    """``X_depth.png`` / ``X_depth_mask.png`` are depth maps stored next to the RGB, not RGB images."""
    return os.path.splitext(os.path.basename(path))[0].lower().endswith(DEPTH_STEM_SUFFIXES)


def _file_problem(path: str) -> str | None:
    """Why ``path`` (an entry of a listing, or a listed path) cannot be read as a file; None when it can.

    Broken symbolic links (also link loops), folders, pipes/devices/sockets (a reader would block on a pipe), empty
    files and files this process may not read. One ``stat`` and one ``access`` call. As root every file is
    readable, so the last case only shows for other users.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            return REASON_BROKEN_LINK
        return "no such file" if isinstance(e, FileNotFoundError) else f"cannot read file ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(st.st_mode):
        return REASON_NOT_REGULAR
    if st.st_size == 0:
        return REASON_EMPTY
    if not os.access(path, os.R_OK):
        return REASON_UNREADABLE
    return None


def _name_problem(path: str) -> str | None:
    """Why a readable file is not an RGB input by its name: a depth-map name, then an unsupported extension."""
    if _looks_like_depth(path):
        return REASON_DEPTH_NAMED
    return None if _is_image(path) else reason_not_image(path)


def _rgb_problem(path: str) -> str | None:
    """Why ``path`` is not taken as an RGB source, or None: the one rule every RGB discovery mode applies.

    Order: file problems (broken link, folder, not a regular file, empty, unreadable), then the name.
    """
    return _file_problem(path) or _name_problem(path)


def _root_name(folder: str) -> str:
    """Basename of a folder, robust to ``.``, trailing slashes and ``/`` (ids must never contain absolute paths)."""
    return os.path.basename(os.path.normpath(os.path.abspath(folder))) or "root"


def _make_id(root_name: str, rel: str) -> str:
    """``<root name>/<posix relative path>``: identical on every machine and OS for the same tree."""
    return f"{root_name}/{PurePath(os.path.normpath(rel)).as_posix()}"


def walk_folders(root: str, skipped: Skipped):
    """Every non-hidden folder below ``root`` (``root`` first), absolute, with its sorted non-hidden sub folders and
    files: yields ``(folder, sub folder names, file names)``; the caller may prune the sub folder names in place.
    Symbolic links to folders are followed, each real folder once (a second path to it goes to ``skipped``, as do
    folders that cannot be listed)."""
    seen: set[str] = set()

    def unlistable(e: OSError) -> None:
        skipped.append((os.path.abspath(e.filename), _reason_unlistable(e)))

    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root), onerror=unlistable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            skipped.append((dirpath, REASON_FOLDER_SEEN))
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, dirnames, sorted(f for f in filenames if not f.startswith("."))


def _walk(root: str) -> tuple[list[str], Skipped]:
    """Every readable regular file under ``root`` (absolute, sorted, recursive) and what could not be used.

    Hidden entries (names starting with ``.``: ``.git``, macOS ``._x.jpg`` resource forks) are ignored silently,
    files and folders alike, as a shell or glob ``*`` ignores them. Symlinked folders are followed (datasets are
    often linked in) but each real folder is walked once, so link loops cannot hang discovery; a second path to a
    walked folder is reported. Broken links, pipes/devices, unreadable files and folders that cannot be listed
    come back in the skipped list (absolute paths). Paths are made absolute without resolving symbolic links.
    """
    files: list[str] = []
    skipped: Skipped = []
    for dirpath, _, filenames in walk_folders(root, skipped):
        for f in filenames:
            path = os.path.join(dirpath, f)
            problem = _file_problem(path)
            if problem is None:
                files.append(path)
            else:
                skipped.append((path, problem))
    return sorted(files), sorted(skipped)


def _rgb_ref(ref_id: str, path: str) -> SourceRef:
    return SourceRef(id=ref_id, scheme="file", rgb_path=os.path.abspath(path))


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in _GLOB_MAGIC)


def _glob_root(spec: str) -> str:
    """The folder part of a glob before its first magic component (``data/imgs/**/*.jpg`` -> ``data/imgs``)."""
    parts: list[str] = []
    for part in PurePath(spec).parts:
        if _is_glob(part):
            break
        parts.append(part)
    return os.path.join(*parts) if parts else "."


def _discover_folder(folder: str) -> tuple[list[SourceRef], Skipped]:
    name, root_abs = _root_name(folder), os.path.abspath(folder)
    files, skipped = _walk(folder)
    refs: list[SourceRef] = []
    for p in files:
        problem = _name_problem(p)  # the walk reported file problems already
        if problem is None:
            refs.append(_rgb_ref(_make_id(name, os.path.relpath(p, root_abs)), p))
        else:
            skipped.append((p, problem))
    return refs, sorted(skipped)


def _discover_glob(spec: str) -> tuple[list[SourceRef], Skipped]:
    root = _glob_root(spec)
    name, root_abs = _root_name(root), os.path.abspath(root)
    refs: list[SourceRef] = []
    skipped: Skipped = []
    seen: set[str] = set()
    for p in sorted(_glob.glob(spec, recursive=True)):
        path = os.path.abspath(p)
        if path in seen or os.path.isdir(path):  # folders matched by a wildcard are not inputs (use ** to recurse)
            continue
        seen.add(path)
        problem = _rgb_problem(path)
        if problem is None:
            refs.append(_rgb_ref(_make_id(name, os.path.relpath(path, root_abs)), path))
        else:
            skipped.append((path, problem))
    return refs, sorted(skipped)


def _list_entry_rel(line: str, base: str) -> str:
    """Id path of a list entry: the line itself when relative (so ids depend on the list's text, not on where it
    lies); an absolute line relative to the list's folder when inside it, else the path without its anchor."""
    if not os.path.isabs(line):
        return line
    rel = os.path.relpath(line, base)
    if not rel.startswith(".."):
        return rel
    p = PurePath(line)
    return str(PurePath(*p.parts[1:])) if len(p.parts) > 1 else p.name


def _discover_list(list_file: str) -> tuple[list[SourceRef], Skipped]:
    base = os.path.dirname(os.path.abspath(list_file))
    name = _root_name(os.path.splitext(list_file)[0])  # the list's stem
    try:
        with open(list_file, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"--rgb {list_file}: cannot read list file ({e})") from None
    refs: dict[str, SourceRef] = {}
    skipped: Skipped = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path = os.path.abspath(line if os.path.isabs(line) else os.path.join(base, line))
        where = f"listed in {os.path.basename(list_file)} line {lineno}"
        problem = _rgb_problem(path)
        if problem in ("no such file", "is a folder, not an image file"):  # only a list can name these
            skipped.append((path, f"{problem} ({where})"))
        elif problem is not None:
            skipped.append((path, problem))
        else:
            ref_id = _make_id(name, _list_entry_rel(line, base))
            if ref_id in refs:
                skipped.append((path, f"duplicate entry ({where})"))
            else:
                refs[ref_id] = _rgb_ref(ref_id, path)
    return list(refs.values()), skipped


def discover_rgb(spec: str) -> tuple[list[SourceRef], Skipped]:
    """RGB-only sources from a folder (recursive), a glob pattern, a ``.txt`` list (one path a line) or one image.

    Returns ``(refs sorted by id, skipped (absolute path, reason))``. Ids are ``<root name>/<relative posix path>``
    where the root is the folder, the glob's leading non-magic folder, or the list file's stem.

    Every file discovery looks at is either a ref or in ``skipped``, with the same reason for the same situation in
    every mode: an extension not in :data:`IMAGE_EXTS` (:func:`reason_not_image`; companion files such as
    ``README.txt`` or ``.json`` annotations too), a broken symbolic link, a pipe or device, a file this process may
    not read, a folder that cannot be listed, and files named ``*_depth.*`` or ``*_depth_mask.*``, which are depth
    maps of RGB-D layouts and never taken as RGB (:data:`REASON_DEPTH_NAMED`; so a DIODE folder given as ``--rgb``
    reports its depth and mask files). What is looked at: in folder mode every non-hidden file below the folder;
    in glob mode every file the pattern matches (folders it matches are passed over, as in the shell); in list
    mode every line that is not blank or a ``#`` comment (a missing file, a folder or a duplicate line are reported
    with the list's line number). Hidden files and folders (names starting with ``.``) are ignored silently when
    walking a folder, and a glob wildcard does not match them either; a list line or a glob that names one
    explicitly takes it like any other file.
    """
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        refs, skipped = _discover_folder(spec)
    elif os.path.isfile(spec) and spec.lower().endswith(".txt"):
        refs, skipped = _discover_list(spec)
    elif (os.path.isfile(spec) or os.path.islink(spec)) and (_is_image(spec) or not os.path.exists(spec)):
        path = os.path.abspath(spec)  # one image (or a link to one): reported like any other file when unusable
        problem = _rgb_problem(path)
        refs = [] if problem else [_rgb_ref(_make_id(_root_name(os.path.dirname(path)), os.path.basename(path)), path)]
        skipped = [(path, problem)] if problem else []
    elif os.path.exists(spec):
        raise SourceError(f"--rgb {spec}: not a folder, a glob, a .txt list or an image ({', '.join(IMAGE_EXTS)})")
    elif _is_glob(spec):
        refs, skipped = _discover_glob(spec)
    else:
        raise SourceError(f"--rgb {spec}: no such file or folder")
    return sorted(refs, key=lambda r: r.id), skipped


# ------------------------------------------------------------------------------------------------- RGB-D specs

_SPEC_KEYS = {"diode": ("kind", "scale", "invalid"), "megadepth": ("kind", "scale", "invalid"),
              "pairs": ("kind", "scale", "invalid", "format")}
_DEFAULT_KIND = {"diode": "metric", "megadepth": "relative", "pairs": "metric"}


def _spec_float(spec: str, key: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(f"--rgbd {spec}: {key}={value!r} is not a number") from None
    if not np.isfinite(x):
        raise ConfigError(f"--rgbd {spec}: {key}={value!r} must be finite")
    return x


def split_spec(spec: str, flag: str, kinds: tuple[str, ...]) -> tuple[str, str, list[tuple[str, str]]]:
    """``KIND:PATH[,key=value...]`` -> (kind, path, [(key, value)...]), the form of ``--rgbd`` and ``--sequences``.
    Trailing comma parts that are not ``key=value`` belong to the path, so paths with commas still work."""
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or not rest.strip():
        raise ConfigError(f"{flag} {spec}: expected KIND:PATH[,key=value...] with KIND one of {', '.join(kinds)}")
    if kind not in kinds:
        raise ConfigError(f"{flag} {spec}: unknown kind {kind!r} (expected one of {', '.join(kinds)})")
    parts = rest.split(",")
    n_path = len(parts)
    while n_path > 1 and "=" in parts[n_path - 1]:
        n_path -= 1
    items = [tuple(s.strip() for s in item.partition("=")[::2]) for item in parts[n_path:]]
    return kind, ",".join(parts[:n_path]).strip(), items  # type: ignore[return-value]


def with_spec_path(spec: str, path: str, new_path: str) -> str:
    """``spec`` (``KIND:PATH[,options]`` whose PATH is ``path``) with PATH replaced by ``new_path``, options kept."""
    kind, rest = spec.split(":", 1)
    options = rest.strip()[len(path):] if rest.strip().startswith(path) else ""
    return f"{kind.strip()}:{new_path}{options}"


def parse_rgbd_spec(spec: str) -> dict:
    """Parse ``KIND:PATH[,key=value...]`` (KIND: diode | megadepth | pairs).

    Returns ``{"layout", "path", "depth_kind", "scale", "invalid", "format"}``. Keys: ``kind`` (metric | relative |
    inverse; default metric, relative for megadepth), ``scale`` (stored value * scale = depth; e.g. 0.001 for a
    millimetre PNG), ``invalid`` (stored value meaning "no depth"; ``none`` or absent = the format's default: 0 for
    16-bit PNG, nothing otherwise), ``format`` (pairs only: npy | npz | png16 | auto). Trailing comma parts that are
    not ``key=value`` belong to the path, so paths with commas still work.
    """
    layout, path, items = split_spec(spec, "--rgbd", RGBD_LAYOUTS)
    out = {"layout": layout, "path": path, "depth_kind": _DEFAULT_KIND[layout], "scale": 1.0, "invalid": None,
           "format": "diode" if layout == "diode" else "megadepth" if layout == "megadepth" else "auto"}
    for key, value in items:
        if key not in _SPEC_KEYS[layout]:
            raise ConfigError(f"--rgbd {spec}: unknown key {key!r} for {layout} (expected {', '.join(_SPEC_KEYS[layout])})")
        if key == "kind":
            if value not in DEPTH_KINDS:
                raise ConfigError(f"--rgbd {spec}: kind={value!r} (expected one of {', '.join(DEPTH_KINDS)})")
            out["depth_kind"] = value
        elif key == "scale":
            out["scale"] = _spec_float(spec, key, value)
            if out["scale"] <= 0:
                raise ConfigError(f"--rgbd {spec}: scale={value!r} must be > 0")
        elif key == "invalid":
            out["invalid"] = None if value.lower() in ("none", "") else _spec_float(spec, key, value)
        elif key == "format":
            if value not in PAIR_FORMATS:
                raise ConfigError(f"--rgbd {spec}: format={value!r} (expected one of {', '.join(PAIR_FORMATS)})")
            out["format"] = value
    return out


def absolute_rgb_spec(spec: str) -> str:
    """``spec`` (folder, glob, list or image) with its path made absolute, so a manifest resolves from any folder."""
    return os.path.abspath(os.path.expanduser(os.fspath(spec)))


def absolute_rgbd_spec(spec: str) -> str:
    """``KIND:PATH[,key=value...]`` with PATH made absolute (options kept as given)."""
    path = parse_rgbd_spec(spec)["path"]
    return with_spec_path(spec, path, os.path.abspath(os.path.expanduser(path)))


# ---------------------------------------------------------------------------------------------- RGB-D layouts

# A found pair: (rgb path, depth path, mask path or None, depth format)
_Pair = tuple[str, str, "str | None", str]


def _unused(files: list[str], used: set[str], reason: str) -> Skipped:
    """The walked files no pair took, each with ``reason`` (what the layout expects)."""
    return [(p, reason) for p in files if p not in used]


_DIODE_UNUSED = "not part of a DIODE pair (X.<image> + X_depth.npy [+ X_depth_mask.npy] in one folder)"
_MEGADEPTH_UNUSED = "not part of a MegaDepth pair (X.h5 + X.jpg|jpeg|png in the same folder or ../imgs of depths/)"


def _pairs_diode(root: str) -> tuple[list[_Pair], Skipped]:
    """``X.png`` + ``X_depth.npy`` (+ optional ``X_depth_mask.npy``) in the same folder, recursively."""
    files, skipped = _walk(root)
    present = set(files)
    pairs: list[_Pair] = []
    used: set[str] = set()
    for p in files:
        if not _is_image(p) or _looks_like_depth(p):
            continue
        stem = os.path.splitext(p)[0]
        depth, mask = stem + "_depth.npy", stem + "_depth_mask.npy"
        if depth not in present:
            skipped.append((p, f"no matching {os.path.basename(depth)}"))
            used.add(p)
            continue
        pairs.append((p, depth, mask if mask in present else None, "diode"))
        used.update((p, depth, mask))
    return pairs, sorted(skipped + _unused(files, used, _DIODE_UNUSED))


class _DirIndex:
    """Cached ``stem -> {lower-case ext: filename}`` per folder, so matching is one listing per folder. Only
    readable regular files are indexed: a broken link or an unreadable depth file is reported by the walk, never
    paired."""

    def __init__(self):
        self._cache: dict[str, dict[str, dict[str, str]]] = {}

    def find(self, folder: str, stem: str, exts: tuple[str, ...]) -> str | None:
        if folder not in self._cache:
            index: dict[str, dict[str, str]] = {}
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                names = []
            for n in names:
                s, e = os.path.splitext(n)
                if not n.startswith(".") and _file_problem(os.path.join(folder, n)) is None:
                    index.setdefault(s, {}).setdefault(e.lower(), n)
            self._cache[folder] = index
        found = self._cache[folder].get(stem, {})
        for e in exts:
            if e in found:
                return os.path.join(folder, found[e])
        return None


def _pairs_megadepth(root: str) -> tuple[list[_Pair], Skipped]:
    """Each ``X.h5`` with ``X.jpg|jpeg|png`` in the same folder, or in ``../imgs`` when it lives in ``depths``
    (MegaDepth_v1: ``<scene>/dense0/depths/X.h5`` + ``<scene>/dense0/imgs/X.jpg``)."""
    index = _DirIndex()
    files, skipped = _walk(root)
    pairs: list[_Pair] = []
    used: set[str] = set()
    for h5 in files:
        if os.path.splitext(h5)[1].lower() != ".h5":
            continue
        folder, stem = os.path.dirname(h5), os.path.splitext(os.path.basename(h5))[0]
        rgb = index.find(folder, stem, _MEGADEPTH_IMAGE_EXTS)
        if rgb is None and os.path.basename(folder) == "depths":
            rgb = index.find(os.path.join(os.path.dirname(folder), "imgs"), stem, _MEGADEPTH_IMAGE_EXTS)
        used.add(h5)
        if rgb is None:
            skipped.append((h5, f"no matching image {stem}.jpg/.jpeg/.png (same folder or ../imgs)"))
        else:
            pairs.append((rgb, h5, None, "megadepth"))
            used.add(rgb)
    return pairs, sorted(skipped + _unused(files, used, _MEGADEPTH_UNUSED))


def _pairs_generic(root: str, fmt: str) -> tuple[list[_Pair], Skipped]:
    """``ROOT/rgb/**/X.ext`` + ``ROOT/depth/**/X.{npy,npz,png}``, else ``X.ext`` + ``X_depth.{npy,npz,png}`` side by
    side. With several candidates the first of npy, npz, png wins (deterministic). In the split layout only
    ``rgb/`` and ``depth/`` are looked at (other folders of ROOT, e.g. calibration, are not inputs)."""
    exts = _FORMAT_EXTS[fmt]
    rgb_dir, depth_dir = os.path.join(root, "rgb"), os.path.join(root, "depth")
    split = os.path.isdir(rgb_dir) and os.path.isdir(depth_dir)
    want_ext = "{" + ",".join(e[1:] for e in exts) + "}"
    unused_reason = (f"not part of an RGB-D pair (rgb/**/X.<image> + depth/**/X.{want_ext})" if split else
                     f"not part of an RGB-D pair (X.<image> + X_depth.{want_ext} in one folder)")
    index = _DirIndex()
    files, skipped = _walk(rgb_dir if split else root)
    if split:
        depth_files, depth_skipped = _walk(depth_dir)
        skipped += depth_skipped
    pairs: list[_Pair] = []
    used: set[str] = set()
    for p in files:
        if not _is_image(p) or _looks_like_depth(p):
            continue
        if split:
            rel_stem = os.path.splitext(os.path.relpath(p, os.path.abspath(rgb_dir)))[0]
            folder = os.path.join(os.path.abspath(depth_dir), os.path.dirname(rel_stem))
            stem = os.path.basename(rel_stem)
        else:
            folder, stem = os.path.dirname(p), os.path.splitext(os.path.basename(p))[0] + "_depth"
        depth = index.find(folder, stem, exts)
        used.add(p)
        if depth is None:
            want = os.path.join(os.path.relpath(folder, os.path.abspath(root)), stem)
            skipped.append((p, f"no matching depth file {PurePath(want).as_posix()}.{want_ext}"))
        else:
            pairs.append((p, depth, None, _EXT_TO_FORMAT[os.path.splitext(depth)[1].lower()]))
            used.add(os.path.normpath(depth))
    if split:
        files = files + depth_files
    return pairs, sorted(skipped + _unused(files, used, unused_reason))


def discover_rgbd(spec: str) -> tuple[list[SourceRef], Skipped]:
    """RGB-D sources from ``KIND:PATH[,key=value...]`` (see :func:`parse_rgbd_spec`).

    Returns ``(refs sorted by id, skipped (absolute path, reason))``; ids are ``<root name>/<RGB path relative to
    PATH>``. Every non-hidden file below PATH (``rgb/`` and ``depth/`` only in the split ``pairs`` layout) is either
    part of a ref or in ``skipped``: an image without its depth, a depth file without its image ("no matching ..."),
    any other file ("not part of a ... pair (what the layout expects)"), and the walk's own reasons shared with
    :func:`discover_rgb` (broken symbolic link, unreadable file, folder that cannot be listed).
    """
    cfg = parse_rgbd_spec(spec)
    root = cfg["path"]
    if not os.path.exists(root):
        raise SourceError(f"--rgbd {spec}: no such folder {root}")
    if not os.path.isdir(root):
        raise SourceError(f"--rgbd {spec}: {root} is not a folder")
    if cfg["layout"] == "diode":
        pairs, skipped = _pairs_diode(root)
    elif cfg["layout"] == "megadepth":
        pairs, skipped = _pairs_megadepth(root)
    else:
        pairs, skipped = _pairs_generic(root, cfg["format"])
    name, root_abs = _root_name(root), os.path.abspath(root)
    refs = []
    for rgb, depth, mask, fmt in pairs:
        invalid = cfg["invalid"] if cfg["invalid"] is not None else (0.0 if fmt == "png16" else None)
        refs.append(SourceRef(id=_make_id(name, os.path.relpath(rgb, root_abs)), scheme="file",
                              rgb_path=os.path.abspath(rgb), depth_path=os.path.abspath(depth),
                              mask_path=os.path.abspath(mask) if mask else None, depth_format=fmt,
                              depth_kind=cfg["depth_kind"], depth_scale=float(cfg["scale"]), invalid_value=invalid))
    return sorted(refs, key=lambda r: r.id), skipped


# ---------------------------------------------------------------------------------------------------- decoding

def _nearest_index(n_src: int, n_dst: int) -> np.ndarray:
    """Source index of each destination pixel centre (exact integer arithmetic, no float drift)."""
    return np.minimum((2 * np.arange(n_dst) + 1) * n_src // (2 * n_dst), n_src - 1)


def resize_depth_nearest(values: np.ndarray, valid: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour resize of a depth map and its mask to ``shape`` (H, W): never blends valid with invalid
    pixels or depths across an object boundary, which interpolation would."""
    if values.shape == tuple(shape):
        return values, valid
    rows, cols = _nearest_index(values.shape[0], shape[0]), _nearest_index(values.shape[1], shape[1])
    return np.ascontiguousarray(values[np.ix_(rows, cols)]), np.ascontiguousarray(valid[np.ix_(rows, cols)])


def load_source(ref: SourceRef, opts: LoadOptions) -> Source:
    """Decode one :class:`SourceRef` into a :class:`~ssrl_plugin.core.Source` (RGB, aligned depth, provenance).

    RGB and depth sizes are compared at their original sizes: a mismatch is an error (``source.depth_resize=error``)
    or the depth is resized with nearest neighbour (``nearest``). After the RGB is capped at ``max_side`` the depth
    follows with nearest neighbour to exactly the RGB array's shape. Problems -> SourceError naming the file.
    """
    if ref.scheme == "demo" and ref.is_sequence:
        from .demo_sequence import load_demo_sequence  # lazy: rendered camera paths, only for sequence tasks

        return load_demo_sequence(ref, opts)
    if ref.scheme == "demo":
        from .demo import load_demo  # lazy: the demo renderer is only needed for demo sources

        return load_demo(ref, opts)
    if ref.scheme == SEQUENCE_SCHEME:
        from .sequence_io import open_sequence  # lazy: PyAV is only needed for sequences

        return open_sequence(ref, opts)
    if ref.scheme != "file":
        raise ConfigError(f"{ref.id}: unknown source scheme {ref.scheme!r} (expected file or demo)")
    if opts.depth_resize not in ("error", "nearest"):
        raise ConfigError(f"source.depth_resize={opts.depth_resize!r} (expected error or nearest)")
    digest = xxhash.xxh3_128()
    rgb, rinfo, image = decode_rgb_file(ref.rgb_path, opts, digest)
    info: dict = {"rgb_path": ref.rgb_path, **rinfo}
    depth = None
    if ref.has_depth:
        depth = _aligned_depth(ref, opts, rgb.shape[:2], rinfo["orig_size"], info)
        try:
            update_digest(digest, *(p for p in (ref.depth_path, ref.mask_path) if p))
        except OSError as e:
            raise SourceError(f"{ref.depth_path}: cannot read depth files ({e.strerror or e})") from None
    return Source(id=ref.id, rgb=rgb, digest=digest_text(digest), depth=depth, info=info, pil=image)


def _aligned_depth(ref: SourceRef, opts: LoadOptions, rgb_shape: tuple[int, int], orig_size: list[int],
                   info: dict) -> DepthMap:
    """Load ``ref``'s depth, check/resize it to the RGB's original size, then follow the RGB's downscale."""
    dm = load_depth(ref, opts.min_valid_fraction)
    values, valid = dm.values, dm.valid
    w0, h0 = orig_size
    dh, dw = values.shape
    info.update(depth_path=ref.depth_path, mask_path=ref.mask_path, depth_format=ref.depth_format,
                depth_kind=ref.depth_kind, depth_orig_size=[dw, dh], depth_resized=None)
    if (dh, dw) != (h0, w0):
        if opts.depth_resize != "nearest":
            raise SourceError(f"{ref.rgb_path}: RGB is {w0}x{h0} but depth {ref.depth_path} is {dw}x{dh}; "
                              f"set source.depth_resize=nearest to resize")
        values, valid = resize_depth_nearest(values, valid, (h0, w0))
        info["depth_resized"] = "nearest"
    values, valid = resize_depth_nearest(values, valid, rgb_shape)
    if not valid.any():
        raise SourceError(f"{ref.depth_path}: depth map has no valid pixels after resizing to {rgb_shape[1]}x{rgb_shape[0]}")
    info["valid_fraction"] = float(np.count_nonzero(valid) / valid.size)
    return DepthMap(values, valid, kind=ref.depth_kind)
