"""Reading depth maps from the common RGB-D dataset formats into ``(values, valid)``.

Every reader returns ``values`` float32 (H, W) and ``valid`` bool (H, W), with ``values == 0`` wherever
``valid`` is False so no NaN or sentinel leaks into the task generators. A pixel is valid only if its value is
finite, strictly positive (0 = "no return" in every format we read, and both distances and inverse depths are
positive; a non-positive inverse depth would turn into a negative or infinite distance), not equal to the
format's invalid marker, and allowed by the dataset's mask when there is one.

Problems raise :class:`~ssrl_plugin.errors.SourceError` with a one-line message that names the file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .core import DepthMap
from .errors import ConfigError, SourceError

DEPTH_FORMATS = ("diode", "megadepth", "npy", "npz", "png16")
DEFAULT_MIN_VALID_FRACTION = 0.01
_EXT_FORMAT = {".npy": "npy", ".npz": "npz", ".png": "png16", ".h5": "megadepth"}


def _fail(path: str | os.PathLike, reason: str) -> SourceError:
    return SourceError(f"{path}: {reason}")


def _short(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines and lines[0].strip() else type(e).__name__


def _check_file(path: str | os.PathLike) -> None:
    """Fail with the plain reason when ``path`` is not a readable regular file (a missing file, a broken symbolic
    link, a folder, a pipe or device, which a reader would block on), before any reader sees it."""
    if not os.path.exists(path):
        raise _fail(path, "broken symbolic link" if os.path.islink(path) else "no such file")
    if os.path.isdir(path):
        raise _fail(path, "is a folder, not a depth file")
    if not os.path.isfile(path):
        raise _fail(path, "not a regular file (device, pipe or socket)")
    if os.path.getsize(path) == 0:
        raise _fail(path, "empty file (0 bytes)")


def format_from_extension(path: str | os.PathLike) -> str:
    """``auto`` depth format from the file extension (.npy, .npz, .png -> png16, .h5 -> megadepth)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in _EXT_FORMAT:
        raise _fail(path, f"cannot tell the depth format from extension {ext!r} (expected .npy, .npz, .png or .h5)")
    return _EXT_FORMAT[ext]


def _as_2d(arr: Any, path: str | os.PathLike, what: str = "depth") -> np.ndarray:
    """Accept (H, W), (H, W, 1) or (1, H, W) real-valued arrays; anything else is a one-line error."""
    arr = np.asarray(arr)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool):
        raise _fail(path, f"{what} array has dtype {arr.dtype}; expected integer or float")
    if arr.dtype == bool and what == "depth":
        raise _fail(path, "depth array has dtype bool; expected integer or float")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise _fail(path, f"{what} array has shape {tuple(arr.shape)}; expected (H, W) or (H, W, 1)")
    if arr.size == 0:
        raise _fail(path, f"{what} array is empty {tuple(arr.shape)}")
    return arr


def _load_npy(path: str | os.PathLike, what: str = "depth") -> np.ndarray:
    """A read-only memory map of the .npy: the first pass over it (the validity test) pages the file in, which costs
    a third of reading it into a fresh array first (3 MB: ~0.6 against ~2 ms here)."""
    _check_file(path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except Exception as e:  # noqa: BLE001 - OSError, ValueError (bad header, object dtype), EOFError, ...
        raise _fail(path, f"cannot read .npy ({_short(e)})") from None
    if not isinstance(arr, np.ndarray):  # np.load on an .npz-in-disguise returns an NpzFile
        raise _fail(path, "not a single-array .npy file")
    return _as_2d(arr, path, what)


def _load_npz(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Array ``key`` (default: ``depth`` if present, else the first array) from an .npz archive."""
    _check_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise _fail(path, "not an .npz archive")
            names = list(z.files)
            if key is None:
                key = "depth" if "depth" in names else (names[0] if names else None)
            if key is None:
                raise _fail(path, ".npz archive holds no arrays")
            if key not in names:
                raise _fail(path, f"no array {key!r} in .npz (has: {', '.join(names)})")
            arr = z[key]
    except SourceError:
        raise
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except MemoryError:
        raise _fail(path, "cannot read .npz (array too large for memory)") from None
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, zipfile.BadZipFile, zlib.error, ...
        raise _fail(path, f"cannot read .npz ({_short(e)})") from None
    return _as_2d(arr, path)


def _load_h5(path: str | os.PathLike, key: str = "depth") -> np.ndarray:
    """Dataset ``key`` of an HDF5 file; h5py is imported here so RGB-only builds never need it."""
    try:
        import h5py
    except ImportError:
        raise _fail(path, "reading .h5 depth needs h5py (pip install h5py)") from None
    _check_file(path)
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise _fail(path, f"no dataset {key!r} in HDF5 file (has: {', '.join(sorted(f.keys())) or 'nothing'})")
            ds = f[key]
            if not isinstance(ds, h5py.Dataset):
                raise _fail(path, f"HDF5 entry {key!r} is a group, not a dataset")
            arr = ds[()]
    except SourceError:
        raise
    except MemoryError:
        raise _fail(path, "cannot read HDF5 file (dataset too large for memory)") from None
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, KeyError, TypeError, RuntimeError from the library
        raise _fail(path, f"cannot read HDF5 file ({_short(e)})") from None
    return _as_2d(arr, path)


def _load_png16(path: str | os.PathLike) -> np.ndarray:
    """16-bit single-channel PNG -> uint16 (H, W) (Pillow mode I;16*; mode I is accepted as int32)."""
    from PIL import Image, UnidentifiedImageError

    _check_file(path)
    try:
        with Image.open(path, formats=["PNG"]) as img:
            img.load()
            mode = img.mode
            if not (mode.startswith("I;16") or mode == "I"):
                raise _fail(path, f"expected a 16-bit single-channel PNG depth map, got Pillow mode {mode}")
            arr = np.asarray(img)
    except SourceError:
        raise
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except UnidentifiedImageError:
        raise _fail(path, "not a PNG file") from None
    except Image.DecompressionBombError as e:
        raise _fail(path, f"PNG depth is too large ({_short(e)})") from None
    except MemoryError:
        raise _fail(path, "cannot decode PNG depth (too large for memory)") from None
    except Exception as e:  # noqa: BLE001 - OSError, SyntaxError, ValueError, EOFError, zlib errors, ...
        reason = "truncated" if "truncated" in str(e).lower() else _short(e)
        raise _fail(path, f"cannot decode PNG depth ({reason})") from None
    if mode.startswith("I;16"):
        arr = arr.astype(np.uint16)
    return _as_2d(arr, path)


def finish_depth(raw: np.ndarray, path: str | os.PathLike, *, scale: float = 1.0, invalid_value: float | None = None,
                 mask: np.ndarray | None = None, min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION,
                 overwrite_input: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Stored values -> (float32 values * scale, valid), with the validity rules of this module.

    ``invalid_value`` is compared with the STORED value (before scaling), e.g. 0 in a millimetre PNG. Raises if
    no pixel is valid or if the valid fraction is below ``min_valid_fraction`` (such maps yield no usable
    depth questions and usually mean a wrong format or scale). With ``overwrite_input`` (the readers below, whose
    arrays are freshly loaded) a writable C-contiguous float32 ``raw`` becomes the result itself instead of a copy.
    """
    keep = (raw != invalid_value) if invalid_value is not None else None  # on the stored values, before any scaling
    if overwrite_input and raw.dtype == np.float32 and raw.flags.c_contiguous and raw.flags.writeable:
        values = raw
    else:
        values = raw.astype(np.float32)  # a copy: we write into it below
    if scale != 1.0:
        values *= np.float32(scale)
    with np.errstate(invalid="ignore"):
        valid = (values > 0) & (values < np.inf)  # finite and positive (NaN compares False)
    if keep is not None:
        valid &= keep
    if mask is not None:
        if mask.shape != raw.shape:
            raise _fail(path, f"depth mask shape {tuple(mask.shape)} differs from depth shape {tuple(raw.shape)}")
        with np.errstate(invalid="ignore"):
            valid &= mask > 0
    n_valid = int(np.count_nonzero(valid))
    # every zero is invalid (valid needs > 0), so when the zeros are exactly as many as the invalid pixels they ARE
    # the invalid pixels and there is nothing to overwrite (MegaDepth, DIODE without a mask: saves ~1.4 ms a map)
    if n_valid < valid.size and int(np.count_nonzero(values == 0)) != valid.size - n_valid:
        np.copyto(values, np.float32(0.0), where=~valid)
    if n_valid == 0:
        raise _fail(path, "depth map has no valid pixels")
    fraction = n_valid / valid.size
    if fraction < min_valid_fraction:
        raise _fail(path, f"only {fraction:.2%} of depth pixels are valid (< min_valid_fraction={min_valid_fraction:g})")
    return values, valid


def read_diode_depth(depth_path: str | os.PathLike, mask_path: str | os.PathLike | None = None, *,
                     scale: float = 1.0, invalid_value: float | None = None,
                     min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """DIODE: ``X_depth.npy`` float32 (H, W, 1) metres, optional ``X_depth_mask.npy`` (1 = valid)."""
    raw = _load_npy(depth_path)
    mask = None
    if mask_path is not None:
        mask = _load_npy(mask_path, what="mask")
        if mask.shape != raw.shape:
            raise _fail(mask_path, f"mask shape {tuple(mask.shape)} differs from depth {depth_path} shape {tuple(raw.shape)}")
    return finish_depth(raw, depth_path, scale=scale, invalid_value=invalid_value, mask=mask,
                        min_valid_fraction=min_valid_fraction)  # raw is a read-only map: finish_depth copies it


def read_megadepth_depth(path: str | os.PathLike, *, scale: float = 1.0,
                         min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """MegaDepth: ``.h5`` dataset ``depth``, float32 with an arbitrary per-reconstruction scale; 0 = no depth."""
    return finish_depth(_load_h5(path, "depth"), path, scale=scale, min_valid_fraction=min_valid_fraction,
                        overwrite_input=True)


def read_generic_depth(path: str | os.PathLike, fmt: str = "auto", *, scale: float = 1.0,
                       invalid_value: float | None = None,
                       min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """``.npy`` / ``.npz`` (array ``depth`` or the first one) / 16-bit ``.png``; ``stored * scale`` = depth."""
    if fmt == "auto":
        fmt = format_from_extension(path)
    if fmt == "npy":
        raw = _load_npy(path)
    elif fmt == "npz":
        raw = _load_npz(path)
    elif fmt == "png16":
        raw = _load_png16(path)
    elif fmt == "megadepth":
        raw = _load_h5(path, "depth")
    else:
        raise ConfigError(f"unknown depth format {fmt!r} (expected one of {', '.join(DEPTH_FORMATS)} or auto)")
    return finish_depth(raw, path, scale=scale, invalid_value=invalid_value, min_valid_fraction=min_valid_fraction,
                        overwrite_input=True)


def load_depth(ref, min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION) -> DepthMap:
    """Read the depth of a :class:`~ssrl_plugin.sources.SourceRef` into a :class:`~ssrl_plugin.core.DepthMap`.

    Dispatches on ``ref.depth_format``; ``ref.depth_scale`` and ``ref.invalid_value`` apply to every format.
    """
    fmt = ref.depth_format
    if fmt is None or ref.depth_path is None:
        raise ValueError(f"{ref.id}: source has no depth")
    try:
        if fmt == "diode":
            values, valid = read_diode_depth(ref.depth_path, ref.mask_path, scale=ref.depth_scale,
                                             invalid_value=ref.invalid_value, min_valid_fraction=min_valid_fraction)
        else:
            values, valid = read_generic_depth(ref.depth_path, fmt, scale=ref.depth_scale,
                                               invalid_value=ref.invalid_value, min_valid_fraction=min_valid_fraction)
    except MemoryError:
        raise _fail(ref.depth_path, "depth map too large for memory") from None
    return DepthMap(values, valid, kind=ref.depth_kind)
