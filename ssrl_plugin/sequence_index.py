"""Index readers of the folder layouts (frames, ScanNet, TUM RGB-D, ``posed``): file listings and the small text
files only (lists, poses, intrinsics), never a frame. One reader per layout (``index_<kind>``), shared by discovery
(to check a folder and report what it does not use) and by :func:`ssrl_plugin.sequence_layouts.open_layout`.

Conventions converted here: ScanNet and TUM intrinsics put pixel centres at integer coordinates, ours at +0.5 (see
:mod:`ssrl_plugin.sequence`), so their cx, cy gain 0.5. ScanNet colour (1296x968) and depth (640x480) differ in size:
frames are delivered at the DEPTH resolution (colour resized with Lanczos, intrinsics from ``intrinsic_depth.txt``),
because the depth is the geometry the pose tasks check. Poses are camera-to-world, OpenCV axes, metres in all three.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import SourceError
from .sequence_io import DEFAULT_RATE, TUM_MAX_DT, is_image_name, natural_key
from .sources import _file_problem

Skipped = list[tuple[str, str]]

EXPECTS = {
    "frames": "a folder holding >= 2 images (frames in natural name order)",
    "scannet": "a ScanNet scene: color/<i>.jpg + depth/<i>.png + pose/<i>.txt + intrinsic/intrinsic_depth.txt",
    "tum": "a TUM RGB-D sequence: rgb.txt + depth.txt [+ groundtruth.txt] and the images they list",
    "posed": "a posed sequence: rgb/<name>.<image> [+ depth/<name>.png|.npy] + poses.txt + intrinsics.txt",
}
TUM_SIZE = (640, 480)  # the Kinect frames the built-in TUM intrinsics are for
TUM_FREIBURG = {"1": (517.3, 516.5, 318.6, 255.3), "2": (520.9, 521.0, 325.1, 249.7), "3": (535.4, 539.2, 320.1, 247.6)}
TUM_DEFAULT = (525.0, 525.0, 319.5, 239.5)  # ROS default, TUM's documented fallback
TUM_DEPTH_SCALE = 1.0 / 5000.0
MM = 0.001
RIGID_TOL = 1e-3  # |R^T R - I| and last-row deviation allowed in a pose read from text


@dataclass
class LayoutIndex:
    """What a layout's files say, per native frame (before sampling)."""

    folder: str
    rgb: list[str]
    timestamps: np.ndarray
    depth: list[str] | None = None
    depth_format: str | None = None  # "png16" | "npy"
    depth_scale: float = 1.0
    invalid_value: float | None = None
    raw_intrinsics: tuple[float, float, float, float] | None = None  # our convention (centres at +0.5)
    intrinsics_size: tuple[int, int] | None = None  # (w, h) they are for; None = the delivered base size
    poses: list | None = None  # per frame: 4x4 or None; None = no pose information at all
    pose_files: list[str | None] | None = None  # ScanNet: read per sampled frame at open
    text: bytes = b""  # index files' text, for the digest
    info: dict = field(default_factory=dict)
    used: set = field(default_factory=set)
    skipped: Skipped = field(default_factory=list)


def _fail(path: str, reason: str) -> SourceError:
    return SourceError(f"{path}: {reason}")


def _read_text(path: str, what: str) -> str:
    problem = _file_problem(path)
    if problem:
        raise _fail(path, f"{problem} ({what})")
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(path, f"cannot read {what} ({getattr(e, 'strerror', None) or type(e).__name__})") from None


def _floats(tokens: list[str], path: str, where: str) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise _fail(path, f"{where}: {bad[:40]!r} is not a number") from None


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def _rigid(m: np.ndarray, path: str, where: str) -> np.ndarray | None:
    """A 4x4 camera-to-world read from text: None when not finite (ScanNet writes -inf for lost tracking); an
    error when finite but not a rigid transform (a transposed or garbage matrix would give wrong geometry)."""
    if not np.all(np.isfinite(m)):
        return None
    r = m[:3, :3]
    if (np.abs(r.T @ r - np.eye(3)).max() > RIGID_TOL or abs(np.linalg.det(r) - 1) > RIGID_TOL
            or np.abs(m[3] - (0, 0, 0, 1)).max() > RIGID_TOL):
        raise _fail(path, f"{where}: not a rigid camera-to-world transform (rotation not orthonormal or last row "
                          f"not 0 0 0 1)")
    return m


def read_matrix_file(path: str, what: str) -> np.ndarray:
    """A 4x4 text matrix (ScanNet pose and intrinsic files)."""
    tokens = _read_text(path, what).split()
    if len(tokens) != 16:
        raise _fail(path, f"expected a 4x4 matrix (16 numbers), found {len(tokens)} values")
    return np.asarray(_floats(tokens, path, what), np.float64).reshape(4, 4)


def _listing(folder: str, index: LayoutIndex, want, reason: str) -> dict[str, str]:
    """``stem -> absolute path`` of the files of ``folder`` that ``want(name)`` accepts; others reported."""
    out: dict[str, str] = {}
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError as e:
        raise _fail(folder, f"cannot list folder ({e.strerror or type(e).__name__})") from None
    for n in names:
        p = os.path.join(folder, n)
        if os.path.isdir(p):
            index.skipped.append((p, f"folder inside {os.path.basename(folder)}/ ({reason})"))
            continue
        stem = os.path.splitext(n)[0]
        if want(n) and stem not in out:
            out[stem] = p
        elif want(n):
            index.skipped.append((p, f"same frame name as {os.path.basename(out[stem])} (one file per name)"))
        else:
            index.skipped.append((p, _file_problem(p) or reason))
    return out


# ------------------------------------------------------------------------------------------------------ frames

def index_frames(folder: str, names: list[str], options: dict) -> LayoutIndex:
    names = sorted(names, key=natural_key)
    rate = options.get("rate", DEFAULT_RATE)
    paths = [os.path.join(folder, n) for n in names]
    return LayoutIndex(folder, paths, np.arange(len(paths), dtype=np.float64) / rate,
                       text="\n".join(names).encode(), info={"rate": rate}, used=set(paths))


# ----------------------------------------------------------------------------------------------------- ScanNet

def _scannet_intrinsics(path: str) -> tuple[float, float, float, float]:
    m = read_matrix_file(path, "ScanNet intrinsics")
    fx, fy, cx, cy = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    if not (fx > 0 and fy > 0 and np.isfinite([cx, cy]).all()):
        raise _fail(path, f"implausible intrinsics fx={fx:g} fy={fy:g} cx={cx:g} cy={cy:g}")
    return float(fx), float(fy), float(cx) + 0.5, float(cy) + 0.5


def index_scannet(folder: str, options: dict) -> LayoutIndex:
    dirs = {d: os.path.join(folder, d) for d in ("color", "depth", "pose", "intrinsic")}
    for d, p in dirs.items():
        if not os.path.isdir(p):
            raise _fail(folder, f"no {d}/ folder ({EXPECTS['scannet']})")
    intr_path = os.path.join(dirs["intrinsic"], "intrinsic_depth.txt")
    index = LayoutIndex(folder, [], np.zeros(0))
    index.raw_intrinsics = _scannet_intrinsics(intr_path)
    index.text = _read_text(intr_path, "ScanNet intrinsics").encode()
    numbered = lambda exts: lambda n: os.path.splitext(n)[0].isdigit() and n.lower().endswith(exts)  # noqa: E731
    color = _listing(dirs["color"], index, numbered((".jpg", ".jpeg", ".png")), "not a ScanNet colour frame color/<i>.jpg")
    depth = _listing(dirs["depth"], index, numbered((".png",)), "not a ScanNet depth frame depth/<i>.png")
    poses = _listing(dirs["pose"], index, numbered((".txt",)), "not a ScanNet pose pose/<i>.txt")
    intr = _listing(dirs["intrinsic"], index, lambda n: n.endswith(".txt"), "not a ScanNet intrinsics file")
    index.used.update(intr.values())
    stems = sorted((s for s in color if s in depth), key=int)
    kept = set(stems)
    for s, p in color.items():
        if s not in kept:
            index.skipped.append((p, f"no matching depth/{s}.png"))
    for s, p in depth.items():
        if s not in kept:
            index.skipped.append((p, f"no matching color/{s}.jpg"))
    for s, p in poses.items():
        if s not in kept:
            index.skipped.append((p, f"no matching color/{s}.jpg + depth/{s}.png"))
    index.rgb = [color[s] for s in stems]
    index.depth = [depth[s] for s in stems]
    index.pose_files = [poses.get(s) for s in stems]
    index.used.update(index.rgb, index.depth, (p for p in index.pose_files if p))
    rate = options.get("rate", DEFAULT_RATE)
    index.timestamps = np.asarray([int(s) for s in stems], np.float64) / rate  # gaps in numbering keep their time
    index.depth_format, index.invalid_value = "png16", 0.0
    index.depth_scale = options.get("depth_scale", MM)
    index.info = {"rate": rate}
    return index


# --------------------------------------------------------------------------------------------------------- TUM

def _tum_list(path: str, what: str) -> list[tuple[float, str, int]]:
    """(timestamp, relative path, line number) of ``rgb.txt`` / ``depth.txt``, sorted by timestamp."""
    out = []
    for n, raw in enumerate(_read_text(path, what).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) < 2 or not _is_float(tok[0]) or not math.isfinite(float(tok[0])):
            raise _fail(path, f"line {n}: expected 'timestamp filename', got {line[:60]!r}")
        out.append((float(tok[0]), tok[1], n))
    out.sort(key=lambda e: e[0])
    for a, b in zip(out, out[1:]):
        if b[0] == a[0]:
            raise _fail(path, f"line {b[2]}: timestamp {b[0]!r} repeats line {a[2]}")
    return out


def _tum_groundtruth(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps, translations (N, 3), unit quaternions (N, 4) x y z w), sorted by timestamp."""
    rows = []
    for n, raw in enumerate(_read_text(path, "TUM groundtruth").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) != 8:
            raise _fail(path, f"line {n}: expected 'timestamp tx ty tz qx qy qz qw' (8 numbers), got {len(tok)} values")
        v = _floats(tok, path, f"line {n}")
        q = np.asarray(v[4:], np.float64)
        norm = float(np.linalg.norm(q))
        if not (np.all(np.isfinite(v)) and abs(norm - 1.0) < 0.1):
            raise _fail(path, f"line {n}: not a finite pose with a unit quaternion (|q| = {norm:.3g})")
        rows.append(v[:4] + list(q / norm))
    arr = np.asarray(rows, np.float64).reshape(-1, 8)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    return arr[:, 0], arr[:, 1:4], arr[:, 4:]


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0:  # the shorter arc: q and -q are the same rotation
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: normalised lerp avoids dividing by sin(~0)
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(1.0, dot))
    return (math.sin((1 - a) * theta) * q0 + math.sin(a * theta) * q1) / math.sin(theta)


def tum_pose_at(t: float, gt_t: np.ndarray, gt_p: np.ndarray, gt_q: np.ndarray, max_dt: float) -> np.ndarray | None:
    """Camera-to-world at ``t``: the groundtruth line at exactly ``t``, else interpolated (translation linearly,
    rotation by slerp) between the two lines bracketing ``t`` when both lie within ``max_dt``; else None."""
    j = int(np.searchsorted(gt_t, t, side="right")) - 1
    if j < 0:
        return None
    if gt_t[j] == t:
        p, q = gt_p[j], gt_q[j]
    elif j + 1 < len(gt_t) and t - gt_t[j] <= max_dt and gt_t[j + 1] - t <= max_dt:
        a = (t - gt_t[j]) / (gt_t[j + 1] - gt_t[j])
        p, q = gt_p[j] + a * (gt_p[j + 1] - gt_p[j]), slerp(gt_q[j], gt_q[j + 1], a)
    else:
        return None
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = quat_to_matrix(q), p
    return m


def _associate(rgb_t: np.ndarray, depth_t: np.ndarray, max_dt: float) -> dict[int, int]:
    """rgb index -> depth index, one-to-one, closest pairs first (TUM's associate.py), within ``max_dt``."""
    if len(depth_t) == 0:
        return {}
    right = np.clip(np.searchsorted(depth_t, rgb_t), 0, len(depth_t) - 1)
    cands = []
    for i, t in enumerate(rgb_t):
        for j in {int(right[i]), max(int(right[i]) - 1, 0)}:
            dt = abs(float(depth_t[j]) - float(t))
            if dt <= max_dt:
                cands.append((dt, i, j))
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in sorted(cands):
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return pairs


def _tum_intrinsics(folder: str, options: dict, index: LayoutIndex) -> None:
    path = os.path.join(folder, "intrinsics.txt")
    if "intrinsics" in options:
        k, src = options["intrinsics"], "option"
    elif os.path.exists(path):
        tok = _read_text(path, "TUM intrinsics").split()
        if len(tok) != 4:
            raise _fail(path, f"expected 'fx fy cx cy' (4 numbers), found {len(tok)} values")
        k, src = tuple(_floats(tok, path, "intrinsics")), "intrinsics.txt"
        if k[0] <= 0 or k[1] <= 0:
            raise _fail(path, "fx and fy must be > 0")
        index.used.add(path)
        index.text += open(path, "rb").read()
    else:
        m = re.search(r"freiburg([123])", os.path.basename(os.path.normpath(folder)).lower())
        k, src = (TUM_FREIBURG[m.group(1)], f"freiburg{m.group(1)}") if m else (TUM_DEFAULT, "ROS default")
        index.intrinsics_size = TUM_SIZE  # built-in values hold only for the sensor's own frames
    index.raw_intrinsics = (k[0], k[1], k[2] + 0.5, k[3] + 0.5)
    index.info["intrinsics_source"] = src


def _existing(folder: str, rel: str, cache: dict[str, set[str]]) -> str | None:
    """Absolute path of ``rel`` (below ``folder``) when it is a listed regular entry (one listing per folder)."""
    p = os.path.normpath(os.path.join(folder, rel))
    d = os.path.dirname(p)
    if d not in cache:
        try:
            cache[d] = {n for n in os.listdir(d) if not n.startswith(".")}
        except OSError:
            cache[d] = set()
    return p if os.path.basename(p) in cache[d] and os.path.isfile(p) else None


def index_tum(folder: str, options: dict) -> LayoutIndex:
    rgb_txt, depth_txt, gt_txt = (os.path.join(folder, n) for n in ("rgb.txt", "depth.txt", "groundtruth.txt"))
    if not os.path.exists(depth_txt):
        raise _fail(folder, f"no depth.txt ({EXPECTS['tum']})")
    index = LayoutIndex(folder, [], np.zeros(0))
    max_dt = options.get("max_dt", TUM_MAX_DT)
    rgb_l, depth_l = _tum_list(rgb_txt, "TUM rgb list"), _tum_list(depth_txt, "TUM depth list")
    cache: dict[str, set[str]] = {}
    rgb_l = _present(folder, rgb_l, "rgb.txt", cache, index)
    depth_l = _present(folder, depth_l, "depth.txt", cache, index)
    rgb_t, depth_t = np.asarray([e[0] for e in rgb_l]), np.asarray([e[0] for e in depth_l])
    pairs = _associate(rgb_t, depth_t, max_dt)
    for i, e in enumerate(rgb_l):
        if i not in pairs:
            index.skipped.append((e[1], f"no depth frame within max_dt={max_dt:g} s"))
    matched_depth = set(pairs.values())
    for j, e in enumerate(depth_l):
        if j not in matched_depth:
            index.skipped.append((e[1], f"no rgb frame within max_dt={max_dt:g} s"))
    keep = sorted(pairs)
    index.rgb = [rgb_l[i][1] for i in keep]
    index.depth = [depth_l[pairs[i]][1] for i in keep]
    index.timestamps = rgb_t[keep] if keep else np.zeros(0)
    index.text = b"".join(open(p, "rb").read() for p in (rgb_txt, depth_txt))
    index.used.update((rgb_txt, depth_txt), index.rgb, index.depth)
    index.info = {"max_dt": max_dt, "unmatched_rgb": len(rgb_l) - len(keep), "t0": float(index.timestamps[0]) if keep else None}
    if os.path.exists(gt_txt):
        gt = _tum_groundtruth(gt_txt)
        index.poses = [tum_pose_at(float(t), *gt, max_dt) for t in index.timestamps]
        index.text += open(gt_txt, "rb").read()
        index.used.add(gt_txt)
        index.info["unposed"] = sum(p is None for p in index.poses)
    index.depth_format, index.invalid_value = "png16", 0.0
    index.depth_scale = options.get("depth_scale", TUM_DEPTH_SCALE)
    _tum_intrinsics(folder, options, index)
    return index


def _present(folder, entries, list_name, cache, index) -> list[tuple[float, str, int]]:
    """Entries of a TUM list whose file exists (absolute paths); the others reported with their line."""
    out = []
    for t, rel, n in entries:
        p = _existing(folder, rel, cache)
        if p is None:
            index.skipped.append((os.path.normpath(os.path.join(folder, rel)), f"listed in {list_name} line {n}, no such file"))
        else:
            out.append((t, p, n))
    return out


# ------------------------------------------------------------------------------------------------------- posed

def index_posed(folder: str, options: dict) -> LayoutIndex:
    rgb_dir, depth_dir = os.path.join(folder, "rgb"), os.path.join(folder, "depth")
    poses_txt, intr_txt = os.path.join(folder, "poses.txt"), os.path.join(folder, "intrinsics.txt")
    if not os.path.isdir(rgb_dir):
        raise _fail(folder, f"no rgb/ folder ({EXPECTS['posed']})")
    index = LayoutIndex(folder, [], np.zeros(0))
    tok = _read_text(intr_txt, "posed intrinsics: fx fy cx cy width height").split()
    if len(tok) != 6:
        raise _fail(intr_txt, f"expected 'fx fy cx cy width height' (6 numbers), found {len(tok)} values")
    k = _floats(tok, intr_txt, "intrinsics")
    intr_text = " ".join(tok)
    if not (k[0] > 0 and k[1] > 0 and k[4] >= 1 and k[5] >= 1 and float(k[4]).is_integer() and float(k[5]).is_integer()):
        raise _fail(intr_txt, "fx, fy must be > 0 and width, height positive integers")
    index.raw_intrinsics, index.intrinsics_size = tuple(k[:4]), (int(k[4]), int(k[5]))
    rgb = _listing(rgb_dir, index, is_image_name, "not an image (posed frames are rgb/<name>.<image>)")
    depth = {}
    if os.path.isdir(depth_dir):
        depth = _listing(depth_dir, index, lambda n: n.lower().endswith((".png", ".npy")),
                         "not a depth map (posed depth is depth/<name>.png or .npy)")
    exts = {os.path.splitext(p)[1].lower() for p in depth.values()}
    if len(exts) > 1:
        raise _fail(depth_dir, "mixed depth formats (.png and .npy); a sequence uses one")
    text = _read_text(poses_txt, "posed poses")
    frames: list[tuple[float, str, np.ndarray | None, int]] = []
    listed: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        where = f"line {n}"
        if len(tok) not in (3, 14, 18) or not _is_float(tok[1]) or (len(tok) == 3 and tok[2].lower() != "none"):
            raise _fail(poses_txt, f"{where}: expected 'name timestamp' + 12 or 16 numbers or 'none', got {line[:60]!r}")
        name, t = tok[0], float(tok[1])
        if name not in rgb and os.path.basename(rgb.get(os.path.splitext(name)[0], "")) == name:
            name = os.path.splitext(name)[0]  # written with its file's extension: the same frame
        if not math.isfinite(t) or name in listed:
            raise _fail(poses_txt, f"{where}: {'timestamp not finite' if name not in listed else f'{name} listed twice'}")
        listed.add(name)
        pose = None
        if len(tok) > 3:
            m = np.eye(4)
            m[: (len(tok) - 2) // 4] = np.asarray(_floats(tok[2:], poses_txt, where)).reshape(-1, 4)
            pose = _rigid(m, poses_txt, where)
        if name not in rgb:
            index.skipped.append((os.path.join(rgb_dir, name), f"listed in poses.txt line {n}, no rgb/{name}.<image>"))
        elif depth and name not in depth:
            index.skipped.append((rgb[name], f"no matching depth/{name}.png|.npy"))
        else:
            frames.append((t, name, pose, n))
    if listed and not frames:  # the count error alone would not say why
        first = next(f"{os.path.basename(p)}: {r}" for p, r in index.skipped if "poses.txt" in r or "depth/" in r)
        raise _fail(poses_txt, f"none of its {len(listed)} frames has its files (first: {first})")
    frames.sort(key=lambda f: f[0])
    for a, b in zip(frames, frames[1:]):
        if a[0] == b[0]:
            raise _fail(poses_txt, f"line {b[3]}: timestamp {b[0]!r} repeats line {a[3]}")
    names = {f[1] for f in frames}
    for s, p in rgb.items():
        if s not in listed:
            index.skipped.append((p, "not listed in poses.txt"))
    for s, p in depth.items():
        if s not in names:
            index.skipped.append((p, f"no matching rgb/{s}.<image> listed in poses.txt"))
    index.rgb = [rgb[f[1]] for f in frames]
    index.depth = [depth[f[1]] for f in frames] if depth else None
    index.timestamps = np.asarray([f[0] for f in frames], np.float64)
    index.poses = [f[2] for f in frames]
    index.text = text.encode() + b"\0" + intr_text.encode()
    index.used.update((poses_txt, intr_txt), index.rgb, index.depth or ())
    if depth:
        npy = exts == {".npy"}
        index.depth_format, index.invalid_value = ("npy", None) if npy else ("png16", 0.0)
        index.depth_scale = options.get("depth_scale", 1.0 if npy else MM)
    index.info = {"unposed": sum(f[2] is None for f in frames)}
    return index
