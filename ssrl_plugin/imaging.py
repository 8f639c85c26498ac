"""Decoding RGB inputs safely and encoding generated images deterministically.

Every input problem becomes a :class:`~ssrl_plugin.errors.SourceError` whose one-line message names the file, so
the builder can skip that source, count the reason and go on. Encoding takes fixed parameters and strips all
metadata so the same pixels always give the same bytes (dataset hashes stay reproducible).
"""

from __future__ import annotations

import io
import mmap
import os
import threading
import warnings
from typing import Any

import numpy as np
import xxhash
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SourceError

# Only the plugins for the extensions discovery accepts (ssrl_plugin.sources.IMAGE_EXTS). Pillow otherwise sniffs
# dozens of formats, some of which hand the file to external programs (EPS -> Ghostscript); a misnamed file must not
# reach those. Files with several frames (multi-picture phone JPEGs, which come back as MPO through the JPEG opener,
# animated GIF/WebP/PNG, multi-page TIFF) give their FIRST frame.
RGB_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

# Image.MAX_IMAGE_PIXELS is a module global; the per-call limit is swapped in under this lock (header parsing
# only, so the critical section is short).
_OPEN_LOCK = threading.Lock()

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _fail(path: str | os.PathLike, reason: str) -> SourceError:
    return SourceError(f"{path}: {reason}")


def _open_guarded(path_or_file: Any, label: str | os.PathLike, max_pixels: int) -> Image.Image:
    """``Image.open`` with the decompression-bomb limit set to ``max_pixels`` (<= 0: no limit).

    Pillow warns above the limit and raises above twice the limit; both become a SourceError here, so the
    limit is exactly ``max_pixels``. The size is checked again after opening because the global may be
    changed by other code between calls.
    """
    with _OPEN_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels if max_pixels > 0 else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. TIFF "Corrupt EXIF data": the image itself may be fine
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path_or_file, formats=RGB_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _fail(label, f"image exceeds source.max_image_pixels={max_pixels} (possible decompression bomb)") from None
        except FileNotFoundError:
            raise _fail(label, "no such file") from None
        except IsADirectoryError:
            raise _fail(label, "is a folder, not an image file") from None
        except UnidentifiedImageError:
            raise _fail(label, f"cannot identify image file (supported: {', '.join(RGB_FORMATS)})") from None
        except Exception as e:  # noqa: BLE001 - OSError, SyntaxError, struct.error...: a malformed header, never a crash
            raise _fail(label, f"cannot open image ({_short(e)})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    w, h = img.size
    if max_pixels > 0 and w * h > max_pixels:
        img.close()
        raise _fail(label, f"image is {w}x{h} = {w * h} pixels, over source.max_image_pixels={max_pixels}")
    return img


def _short(e: BaseException) -> str:
    """First line of an exception message, so every SourceError stays one line."""
    text = str(e).strip().splitlines()
    return text[0] if text and text[0].strip() else type(e).__name__


def _wide_gray_to_u8(img: Image.Image) -> np.ndarray:
    """16/32-bit integer grayscale -> uint8 (H, W).

    Rule (deterministic per file, documented because it changes brightness):
    - max <= 255: the data is 8-bit stored wide; kept as is;
    - 4095 < max <= 65535: full-range 16-bit; divided by 65535/255 (the standard 16 -> 8 bit mapping);
    - otherwise (<= 12-bit sensor data in a 16-bit container, or 32-bit values): stretched by the image's own max,
      so that a 12-bit image is not rendered almost black.
    Negative values (mode ``I``) clip to 0.
    """
    a = np.asarray(img).astype(np.float64)
    hi = float(a.max()) if a.size else 0.0
    if hi <= 255:
        peak = 255.0
    elif 4095 < hi <= 65535:
        peak = 65535.0
    else:
        peak = hi
    return np.clip(np.rint(a * (255.0 / peak)), 0, 255).astype(np.uint8)


def _float_to_u8(img: Image.Image) -> np.ndarray:
    """Mode ``F`` (32-bit float, e.g. a float TIFF) -> uint8 (H, W).

    Rule: NaN and +-inf become 0, negative values clip to 0; when the largest value is <= 1 the data is read as
    intensities in [0, 1] (x 255), otherwise it is stretched by the image's own max (max -> 255). Rounded to nearest.
    """
    a = np.nan_to_num(np.asarray(img, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    hi = float(a.max()) if a.size else 0.0
    peak = 1.0 if hi <= 1.0 else hi
    return np.clip(np.rint(a * (255.0 / peak)), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, deterministically.

    - Transparency (RGBA, LA, PA, premultiplied RGBa/La, palette or colour-key ``transparency``, e.g. a GIF's
      transparent index) is composited over WHITE instead of being dropped: dropping alpha exposes whatever colour
      the encoder left under transparent pixels (often black or garbage), which would become visible content.
    - 16/32-bit integer grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, ``I``): see :func:`_wide_gray_to_u8`.
    - 32-bit float grey (``F``): see :func:`_float_to_u8`.
    - Everything else through Pillow's own conversion: ``1`` (0 -> black, 1 -> white), ``L``, ``P``, ``CMYK``,
      ``YCbCr``, ``LAB`` (CIE L*a*b* -> sRGB), ``HSV``, ``RGBX``.
    """
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA") if img.mode != "La" else img.convert("LA").convert("RGBA")  # no direct La->RGBA
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode in _WIDE_GRAY_MODES:
        return Image.fromarray(np.repeat(_wide_gray_to_u8(img)[..., None], 3, axis=2), "RGB")
    if img.mode == "F":
        return Image.fromarray(np.repeat(_float_to_u8(img)[..., None], 3, axis=2), "RGB")
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, ...


def _exif_transpose(img: Image.Image) -> tuple[Image.Image, bool]:
    """Apply the EXIF orientation; a corrupt EXIF block is ignored rather than losing an otherwise fine image."""
    try:
        orientation = int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF is common in the wild and not worth rejecting the image
        return img, False
    if orientation not in range(2, 9):
        return img, False
    try:
        return ImageOps.exif_transpose(img), True
    except Exception:  # noqa: BLE001
        return img, False


def _target_size(w: int, h: int, max_side: int) -> tuple[tuple[int, int], float]:
    """Size after capping the longer side at ``max_side`` (aspect kept); scale = new / original."""
    longer = max(w, h)
    if max_side <= 0 or longer <= max_side:
        return (w, h), 1.0
    scale = max_side / longer
    return (max(1, round(w * scale)), max(1, round(h * scale))), scale


DIGEST = "xxh3_128"  # source fingerprints: ~12 GB/s here against sha256's 1.4 (a 7 MB RGB-D pair: 0.6 vs 5 ms)


def load_rgb(path: str | os.PathLike, opts) -> tuple[np.ndarray, dict]:
    """Decode one RGB input file into a C-contiguous uint8 (H, W, 3) array, upright and size-capped.

    ``opts`` is a :class:`~ssrl_plugin.sources.LoadOptions`. Returns ``(array, info)`` with ``orig_size`` [w, h]
    (after EXIF rotation, before downscaling), ``size`` [w, h], ``scale`` (size / orig_size), ``exif_rotated`` and
    ``mode`` (the file's Pillow mode). The whole file is decoded before anything is returned so truncated files
    fail here, not halfway through a sample. Any problem -> SourceError naming ``path``.
    """
    arr, info, _ = decode_rgb_file(path, opts)
    return arr, info


def decode_rgb_file(path: str | os.PathLike, opts, digest: Any = None) -> tuple[np.ndarray, dict, Image.Image]:
    """:func:`load_rgb` that also returns the RGB Pillow image the array was made from. The file is read once;
    ``digest`` (an ``xxhash`` state), when given, is updated with its bytes, so fingerprinting costs no second read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a folder, not an image file") from None
    except OSError as e:
        raise _fail(path, f"cannot read file ({e.strerror or e})") from None
    except MemoryError:
        raise _fail(path, "file too large to read into memory") from None
    if not data:
        raise _fail(path, "empty file (0 bytes)")
    if digest is not None:
        digest.update(data)
    img = _open_guarded(io.BytesIO(data), path, int(opts.max_image_pixels))
    try:
        mode = img.mode
        w0, h0 = img.size  # header size; orientation does not change the shorter side
        if min(w0, h0) < opts.min_side:
            raise _fail(path, f"image is {w0}x{h0}, smaller than source.min_side={opts.min_side}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # per-frame/EXIF warnings of damaged but decodable files
                img.load()
        except MemoryError:
            raise _fail(path, "cannot decode image (out of memory)") from None
        except Exception as e:  # noqa: BLE001 - OSError, SyntaxError, IndexError, struct.error...: damaged data
            reason = "truncated" if "truncated" in str(e).lower() else _short(e)
            raise _fail(path, f"cannot decode image ({reason})") from None
        upright, rotated = _exif_transpose(img)
        rgb = to_rgb(upright)
        orig = rgb.size
        size, scale = _target_size(*orig, int(opts.max_side))
        if size != orig:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        arr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    except SourceError:
        img.close()
        raise
    except Exception as e:  # noqa: BLE001 - a mode Pillow cannot convert, out of memory, ...: still one line
        img.close()
        raise _fail(path, f"cannot decode image ({_short(e)})") from None
    except BaseException:
        img.close()
        raise
    if rgb is not img:
        img.close()
    info = {"orig_size": [int(orig[0]), int(orig[1])], "size": [int(size[0]), int(size[1])], "scale": float(scale),
            "exif_rotated": rotated, "mode": mode}
    return arr, info, rgb


def update_digest(digest: Any, *paths: str | os.PathLike) -> None:
    """Feed the bytes of ``paths`` to ``digest`` in order. The file is hashed through a read-only memory map: no
    copy into a Python buffer (a 7 MB depth file: 0.9 ms against 4-7 ms for read() here); empty files and
    files that cannot be mapped are read instead."""
    for p in paths:
        with open(p, "rb") as f:
            try:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    digest.update(mapped)
                continue
            except (ValueError, OSError):  # zero length, or a file system without mmap
                f.seek(0)
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)


def digest_text(digest: Any) -> str:
    """``"xxh3_128:<hex>"``: how a fingerprint is recorded (sources, output files)."""
    return f"{DIGEST}:{digest.hexdigest()}"


def file_digest(*paths: str | os.PathLike) -> str:
    """The recorded fingerprint (:func:`digest_text`) of the concatenated bytes of ``paths``."""
    digest = xxhash.xxh3_128()
    update_digest(digest, *paths)
    return digest_text(digest)


GREY_WEIGHTS = (0.299, 0.587, 0.114)  # JPEG's full-range luma


def grey(rgb: np.ndarray) -> np.ndarray:
    """Grey (``GREY_WEIGHTS``) of an (..., 3) array as float32, by elementwise sums: a matrix product goes through
    BLAS, whose rounding can change with its thread count (worker processes must give the same bytes)."""
    x = np.asarray(rgb, np.float32)
    w = [np.float32(v) for v in GREY_WEIGHTS]
    return x[..., 0] * w[0] + x[..., 1] * w[1] + x[..., 2] * w[2]


def encode_image(img: Image.Image, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """Encode with fixed parameters and no metadata, so equal pixels give equal bytes (with the same Pillow).

    - ``jpeg``: RGB, baseline (not progressive), ``optimize=False``, chroma subsampling 4:4:4 when quality >= 90
      (keeps thin coloured markers and text crisp) and 4:2:0 below; no EXIF/ICC.
    - ``png``: RGB/RGBA/L kept (others -> RGB), ``compress_level=6``.
    - ``webp``: lossless (``quality`` is the compression effort), ``method=4``.
    """
    fmt = fmt.lower()
    if fmt in ("jpeg", "jpg"):
        clean = _stripped(to_rgb(img))
        params: dict[str, Any] = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2,
                                  "optimize": False, "progressive": False}
        pil_fmt = "JPEG"
    elif fmt == "png":
        clean = _stripped(img if img.mode in ("RGB", "RGBA", "L") else to_rgb(img))
        params, pil_fmt = {"compress_level": 6, "optimize": False}, "PNG"
    elif fmt == "webp":
        clean = _stripped(img if img.mode in ("RGB", "RGBA") else to_rgb(img))
        params, pil_fmt = {"lossless": True, "quality": int(quality), "method": 4, "exact": False}, "WEBP"
    else:
        raise ValueError(f"unknown image format {fmt!r} (expected jpeg, png or webp)")
    buf = io.BytesIO()
    clean.save(buf, pil_fmt, **params)
    return buf.getvalue()


def _stripped(img: Image.Image) -> Image.Image:
    """``img`` without ``info`` (EXIF, ICC, text chunks, DPI): some encoders copy those from ``img.info``.

    A second Image object over the SAME pixel memory (encoding only reads it), so no full-size copy is made;
    ``img`` itself is left untouched.
    """
    img.load()
    try:
        out = img._new(img.im)  # shares the pixel core; _new copies info and palette, info is then dropped
    except AttributeError:  # a Pillow without Image._new: fall back to a copy
        out = img.copy()
    out.info = {}
    return out


def decode_image(data: bytes, max_pixels: int = 100_000_000) -> Image.Image:
    """Bytes (JPEG/PNG/WebP/BMP) -> a fully loaded RGB image; raises SourceError on bad data."""
    img = _open_guarded(io.BytesIO(data), "<bytes>", max_pixels)
    try:
        img.load()
        return to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise _fail("<bytes>", f"cannot decode image ({_short(e)})") from None
