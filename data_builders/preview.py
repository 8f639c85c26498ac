"""``ssrl preview DIR``: look at a built dataset, with every answer drawn onto its pictures.

``--out gallery.html`` writes one self-contained page (images embedded as data URIs, no network, no external
script or style): per sampled item its images, the question, the answer, the metadata (collapsible) and an
**answer overlay** made from the answer and the metadata, so a person sees at a glance whether the answer is right:

- ``shuffle``: the shown image next to the image restored by the answer (patch ``answer[k]`` put at position k);
- ``flip``: the patch the answer names outlined, with its direction, next to the image with that patch flipped back;
- ``crop``: the hole outlined, the picture with the answer's candidate pasted into the hole, the candidates with
  the answer framed (and each candidate's construction method from the metadata);
- ``depth``: the source depth map as a colour heat map (warm = near), the regions boxed with their measured depths
  and the order they imply; when the source cannot be loaded the page says so;
- ``position``: a top-down sketch (x-z plane) of the two back-projected regions, the camera standing at one with
  its facing, and the answer.

The page filters by task (buttons) and variant (select), moves between items with j/k or the left/right arrow
keys, and starts with a summary (counts per split, task and variant; the audit result when ``ssrl audit
--write-manifest`` recorded one). ``--png sheet.png`` writes the same overlays as a contact sheet, a row per task.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssrl_plugin.errors import SSRLError

from . import task_hooks
from .stats import Row, iter_rows, pick_layout, read_manifest

TASK_ORDER = ("shuffle", "flip", "crop", "depth", "position", "temporal_order", "camera_motion", "cross_view")
VIEW = 480  # long side (px) of each picture in an overlay
GREEN = (20, 200, 60)
YELLOW = (255, 210, 0)
BLUE = (40, 110, 240)
GREY = (150, 150, 150)


# ============================================================================================ drawing helpers
def _font(size: int):
    from ssrl_plugin.render import font

    return font(size)


def _decode(data: bytes):
    from ssrl_plugin.imaging import decode_image

    return decode_image(data)


def _fit(img, long_side: int = VIEW):
    from PIL import Image

    s = long_side / max(img.size)
    return img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS), s


def _text(draw, xy, text: str, size: int = 14, fill=(255, 255, 255), anchor: str = "la", box: bool = True) -> None:
    """Legible text anywhere in the picture: white on a black box, moved inside the picture's edges."""
    f = _font(size)
    x0, y0, x1, y1 = draw.textbbox(xy, text, font=f, anchor=anchor)
    w, h = draw.im.size
    dx = max(0, 3 - x0) - max(0, x1 + 3 - w)  # keep the whole label inside the picture
    dy = max(0, 2 - y0) - max(0, y1 + 2 - h)
    xy = (xy[0] + dx, xy[1] + dy)
    if box:
        x0, y0, x1, y1 = draw.textbbox(xy, text, font=f, anchor=anchor)
        draw.rectangle((x0 - 3, y0 - 2, x1 + 3, y1 + 2), fill=(0, 0, 0))
    draw.text(xy, text, font=f, fill=fill, anchor=anchor)


def _caption(img, lines: list[str], size: int = 15, width: int | None = None):
    """``img`` with lines of dark text on white underneath."""
    from PIL import Image, ImageDraw

    f = _font(size)
    w = max(width or img.width, img.width)
    h = img.height + 6 + len(lines) * (size + 5)
    out = Image.new("RGB", (w, h), "white")
    out.paste(img, (0, 0))
    d = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        d.text((4, img.height + 4 + i * (size + 5)), line, font=f, fill=(0, 0, 0))
    return out


def _hstack(images: list, gap: int = 10, bg="white"):
    from PIL import Image

    w = sum(im.width for im in images) + gap * (len(images) - 1)
    h = max(im.height for im in images)
    out = Image.new("RGB", (w, h), bg)
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def _vstack(images: list, gap: int = 10, bg="white"):
    from PIL import Image

    w = max(im.width for im in images)
    h = sum(im.height for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (w, h), bg)
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out


def _arrow(draw, p0, p1, fill, width: int = 4, head: float = 12.0) -> None:
    (x0, y0), (x1, y1) = p0, p1
    draw.line((x0, y0, x1, y1), fill=fill, width=width)
    ang = math.atan2(y1 - y0, x1 - x0)
    for s in (1, -1):
        a = ang + math.pi - s * 0.45
        draw.line((x1, y1, x1 + head * math.cos(a), y1 + head * math.sin(a)), fill=fill, width=width)


def _double_arrow(draw, p0, p1, fill, width: int = 4) -> None:
    _arrow(draw, p0, p1, fill, width)
    _arrow(draw, p1, p0, fill, width)


def _scaled_box(box, s: float) -> tuple[float, float, float, float]:
    return (box[0] * s, box[1] * s, box[2] * s - 1, box[3] * s - 1)


def _parse_labels(answer: str, k: int) -> list[int] | None:
    try:
        labels = [int(t) for t in answer.split("-")]
    except ValueError:
        return None
    return labels if sorted(labels) == list(range(k)) else None


# ============================================================================================ overlays
@dataclass
class Overlay:
    image: Any  # PIL image
    notes: list[str] = field(default_factory=list)  # warnings for the reader (mismatches, missing sources)


def overlay_shuffle(row: Row, images: list) -> Overlay:
    """The shown image and the image restored by the answer: original position k gets displayed patch answer[k]."""
    meta = row.metadata
    rows_, cols = meta["grid"]
    k = rows_ * cols
    shown = images[0]
    boxes = meta["display_boxes"]
    notes = []
    labels = _parse_labels(row.answer, k)
    restored = shown.copy()
    if labels is None:
        notes.append(f"answer {row.answer!r} is not a permutation of 0..{k - 1}: nothing to restore")
    else:
        if meta.get("answer_labels") not in (None, labels):
            notes.append(f"metadata answer_labels {meta.get('answer_labels')} differ from the answer {row.answer}")
        for pos, lab in enumerate(labels):
            restored.paste(shown.crop(tuple(boxes[lab])), tuple(boxes[pos][:2]))
    a, _ = _fit(shown)
    b, _ = _fit(restored)
    mask = f"; white patch belongs at position {meta.get('masked_position')}" if meta.get("masked") else ""
    return Overlay(_hstack([_caption(a, ["shown"]), _caption(b, [f"restored by the answer {row.answer}{mask}"])]), notes)


def overlay_flip(row: Row, images: list) -> Overlay:
    """The patch the answer names outlined with its direction, and the image with that patch flipped back."""
    from PIL import Image, ImageDraw

    meta = row.metadata
    boxes = meta["display_boxes"]
    notes = []
    patch, _, direction = row.answer.partition("-")
    shown = images[0]
    if not (patch.isdigit() and int(patch) < len(boxes) and direction in ("0", "1")):
        return Overlay(_caption(_fit(shown)[0], [f"answer {row.answer!r} is not 'patch-direction'"]), [f"bad answer {row.answer!r}"])
    idx, dirn = int(patch), int(direction)
    if (meta.get("flipped_index"), meta.get("direction")) != (idx, dirn):
        notes.append(f"metadata says patch {meta.get('flipped_index')} direction {meta.get('direction')}, answer {row.answer}")
    box = tuple(boxes[idx])
    restored = shown.copy()
    tile = shown.crop(box).transpose(Image.Transpose.FLIP_TOP_BOTTOM if dirn == 0 else Image.Transpose.FLIP_LEFT_RIGHT)
    restored.paste(tile, box[:2])
    a, s = _fit(shown)
    d = ImageDraw.Draw(a)
    x0, y0, x1, y1 = _scaled_box(box, s)
    for w, colour in ((7, (0, 0, 0)), (4, YELLOW)):
        d.rectangle((x0, y0, x1, y1), outline=colour, width=w)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    span = 0.3 * ((y1 - y0) if dirn == 0 else (x1 - x0))
    p0, p1 = ((cx, cy - span), (cx, cy + span)) if dirn == 0 else ((cx - span, cy), (cx + span, cy))
    _double_arrow(d, p0, p1, (0, 0, 0), 8)
    _double_arrow(d, p0, p1, YELLOW, 4)
    words = "vertically (upside down)" if dirn == 0 else "horizontally (mirrored)"
    b, _ = _fit(restored)
    return Overlay(_hstack([_caption(a, [f"answer {row.answer}: patch {idx} flipped {words}"]),
                            _caption(b, [f"patch {idx} flipped back: the image should look whole"])]), notes)


def overlay_crop(row: Row, images: list) -> Overlay:
    """Hole outlined | the answer's candidate pasted into the hole; the candidates with the answer framed."""
    from PIL import Image, ImageDraw

    meta = row.metadata
    letters = "ABCD"
    notes = []
    hole_img = images[0]
    box = tuple(int(v) for v in meta["crop_box"])
    side = box[2] - box[0]
    answer = row.answer
    opts = meta.get("options", [])
    true_letters = [o.get("letter") for o in opts if o.get("method") == "true_crop"]
    if true_letters != [answer]:
        notes.append(f"metadata marks {true_letters} as the true crop, the answer is {answer}")
    a, s = _fit(hole_img)
    d = ImageDraw.Draw(a)
    d.rectangle(_scaled_box(box, s), outline=GREEN, width=3)
    filled = hole_img.copy()
    if answer in letters and len(images) >= 5:
        filled.paste(images[1 + letters.index(answer)].resize((side, side), Image.LANCZOS), box[:2])
    else:
        notes.append(f"answer {answer!r} is not a candidate letter")
    b, s2 = _fit(filled)
    ImageDraw.Draw(b).rectangle(_scaled_box(box, s2), outline=GREEN, width=2)
    top = _hstack([_caption(a, ["the hole (green box)"]), _caption(b, [f"candidate {answer} pasted into the hole"])])
    cands = []
    for i, im in enumerate(images[1:5]):
        letter = letters[i]
        method = opts[i].get("method", "?") if i < len(opts) else "?"
        t = im.resize((150, 150), Image.LANCZOS)
        frame = Image.new("RGB", (162, 162), GREEN if letter == answer else (235, 235, 235))
        frame.paste(t, (6, 6))
        cands.append(_caption(frame, [f"{letter}{' = answer' if letter == answer else ''}", method], size=14))
    return Overlay(_vstack([top, _hstack(cands, gap=8)]), notes)


def _turbo(x):
    """Google's Turbo colour map (polynomial fit), x in [0, 1] -> uint8 RGB."""
    import numpy as np

    x = np.clip(x, 0.0, 1.0)
    r = 0.13572138 + x * (4.61539260 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))))
    g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))))
    b = 0.10667330 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))))
    return (np.clip(np.stack([r, g, b], -1), 0, 1) * 255).astype(np.uint8)


def heat_map(source, meta: dict):
    """The source's farness as Turbo colours, normalised as the sample was (warm = near, cool = far), invalid grey."""
    import numpy as np
    from PIL import Image

    far = source.depth.farness()
    ok = source.depth.valid & np.isfinite(far)
    norm = meta.get("normalisation") or {}
    lo, hi = norm.get("low"), norm.get("high")
    if lo is None or hi is None or not hi > lo:
        lo, hi = (float(v) for v in np.percentile(far[ok], (0.5, 99.5))) if ok.any() else (0.0, 1.0)
    x = (np.where(ok, far, lo) - lo) / max(hi - lo, 1e-12)
    rgb = _turbo(1.0 - x)
    rgb[~ok] = 128
    return Image.fromarray(rgb, "RGB")


def _depth_unit(meta: dict) -> str:
    kind = meta.get("depth_kind")
    return " m" if kind == "metric" else " (1/x)" if kind == "inverse" else ""


def overlay_depth(row: Row, images: list, loader: SourceLoader | None) -> Overlay:
    """Heat map of the source depth with the regions boxed, their median depths and the implied order."""
    from PIL import ImageDraw

    meta = row.metadata
    notes = []
    source, why = loader.get(meta) if loader else (None, "sources not loaded (--no-sources)")
    if source is not None and source.depth is not None and source.depth.shape == (images[0].height, images[0].width):
        base, title = heat_map(source, meta), "source depth (warm = near, cool = far)"
    else:
        from PIL import ImageEnhance

        base = ImageEnhance.Brightness(images[0]).enhance(0.55)
        why = why or "the source has no depth map of this size"
        title = f"depth source unavailable: {why}"
        notes.append(title)
    a, s = _fit(base)
    d = ImageDraw.Draw(a)
    regions = sorted(meta.get("regions", []), key=lambda r: str(r["label"]))
    unit = _depth_unit(meta)
    for r in regions:
        x0, y0, x1, y1 = _scaled_box(r["box"], s)
        pad = 4
        d.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), outline=(0, 0, 0), width=5)
        d.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), outline=(255, 255, 255), width=2)
        value = f"{r['label']}: {r['median_farness']:.3g}{unit}"
        ty = y0 - pad - 2 if y0 > 24 else y1 + pad + 18
        _text(d, ((x0 + x1) / 2, ty), value, 15, anchor="md")
    measured = [str(r["label"]) for r in sorted(regions, key=lambda r: r["median_farness"])]
    implied = "-".join(measured)
    ok = implied == row.answer
    if not ok:
        notes.append(f"the recorded depths order the regions {implied}, the answer says {row.answer}")
    if source is not None and source.depth is not None and not notes:
        from ssrl_plugin.tasks.depth_common import read_box_depth

        for r in regions:
            z, _ = read_box_depth(source, r["box"])
            if not math.isclose(z, r["median_farness"], rel_tol=0.02, abs_tol=1e-6):
                notes.append(f"region {r['label']}: the source reads {z:.4g} in its box, the metadata {r['median_farness']:.4g}")
    legend = _legend(a.width)
    lines = [title, f"answer {row.answer} (near to far); recorded depths give {implied} {'OK' if ok else 'MISMATCH'}"]
    b, _ = _fit(images[0])
    return Overlay(_hstack([_caption(_vstack([a, legend], gap=2), lines), _caption(b, ["shown"])]), notes)


def _legend(width: int):
    import numpy as np
    from PIL import Image, ImageDraw

    bar = _turbo(np.linspace(1.0, 0.0, width)[None, :].repeat(12, 0))
    img = Image.new("RGB", (width, 30), "white")
    img.paste(Image.fromarray(bar, "RGB"), (0, 0))
    d = ImageDraw.Draw(img)
    d.text((2, 13), "near", font=_font(13), fill=(0, 0, 0))
    d.text((width - 2, 13), "far", font=_font(13), fill=(0, 0, 0), anchor="ra")
    return img


def overlay_position(row: Row, images: list) -> Overlay:
    """Top-down sketch (x right, z away from the viewer) of both regions, the camera at one with its facing."""
    from PIL import Image, ImageDraw

    meta = row.metadata
    notes = []
    regions = {str(r["label"]): r for r in meta.get("regions", [])}
    cam_label, tgt_label = str(meta.get("camera_label")), str(meta.get("target_label"))
    facing = meta.get("facing") or {}
    deg = float(facing.get("degrees", 0))
    opts = row.options or {}
    answer_text = opts.get(row.answer, "?")
    if meta.get("answer_text") not in (None, answer_text):
        notes.append(f"metadata answer_text {meta.get('answer_text')!r}, option {row.answer} is {answer_text!r}")
    size = 360
    sk = Image.new("RGB", (size, size), (250, 250, 245))
    d = ImageDraw.Draw(sk)
    if cam_label not in regions or tgt_label not in regions:
        notes.append("regions/camera labels missing from the metadata")
        return Overlay(_caption(sk, ["no sketch: regions missing"]), notes)
    pts = {lab: (float(r["X"]), float(r["Z"])) for lab, r in regions.items()}
    xs = [p[0] for p in pts.values()]
    zs = [p[1] for p in pts.values()]
    span = max(max(xs) - min(xs), max(zs) - min(zs), 1e-6)
    cx, cz = (max(xs) + min(xs)) / 2, (max(zs) + min(zs)) / 2
    margin = 92  # room for the facing arrows around the two regions
    scale = (size - 2 * margin) / span

    def to_px(x: float, z: float) -> tuple[float, float]:
        return (size / 2 + (x - cx) * scale, size / 2 - (z - cz) * scale)

    c, t = to_px(*pts[cam_label]), to_px(*pts[tgt_label])
    rad = math.radians(deg)
    fwd = (-math.sin(rad), math.cos(rad))  # (x, z) of the camera's heading
    right = (math.cos(rad), math.sin(rad))
    # the camera's own axes across the sketch: the target's quadrant is the answer
    for ax in (fwd, right):
        d.line((c[0] - ax[0] * 2 * size, c[1] + ax[1] * 2 * size, c[0] + ax[0] * 2 * size, c[1] - ax[1] * 2 * size),
               fill=(215, 215, 215), width=1)
    # the viewer (the photo's camera) at z = 0, looking up the page; off the sketch: an arrow at the bottom edge
    vx, vy = to_px(0.0, 0.0)
    if 10 <= vx <= size - 10 and 10 <= vy <= size - 10:
        d.polygon([(vx, vy - 9), (vx - 7, vy + 6), (vx + 7, vy + 6)], fill=GREY)
        d.text((vx + 9, vy), "viewer", font=_font(12), fill=(90, 90, 90), anchor="lm")
    else:
        ax_ = min(max(vx, 40), size - 40)
        _arrow(d, (ax_, size - 30), (ax_, size - 8), GREY, 2, head=7)
        d.text((ax_ + 6, size - 18), "to the viewer", font=_font(12), fill=(90, 90, 90), anchor="lm")
    for i in range(0, 20):  # dashed camera -> target line
        if i % 2 == 0:
            a0 = (c[0] + (t[0] - c[0]) * i / 20, c[1] + (t[1] - c[1]) * i / 20)
            a1 = (c[0] + (t[0] - c[0]) * (i + 1) / 20, c[1] + (t[1] - c[1]) * (i + 1) / 20)
            d.line((*a0, *a1), fill=(120, 120, 120), width=2)

    def label_at(ax: tuple[float, float], length: float, text: str, colour, fsize: int) -> None:
        """Text beside the arrow tip, on the side away from the target."""
        tip = (c[0] + ax[0] * length, c[1] - ax[1] * length)
        perp = (-ax[1], -ax[0])  # screen-space perpendicular of (ax_x, -ax_z)
        side = 1 if (perp[0] * (t[0] - tip[0]) + perp[1] * (t[1] - tip[1])) < 0 else -1
        d.text((tip[0] + side * perp[0] * 16, tip[1] + side * perp[1] * 16), text, font=_font(fsize), fill=colour, anchor="mm")

    L = 62.0
    _arrow(d, c, (c[0] + fwd[0] * L, c[1] - fwd[1] * L), BLUE, 4)
    label_at(fwd, L, "front", BLUE, 13)
    _arrow(d, c, (c[0] + right[0] * L * 0.6, c[1] - right[1] * L * 0.6), GREY, 2, head=8)
    label_at(right, L * 0.6, "right", (110, 110, 110), 12)
    for lab, p in pts.items():
        x, y = to_px(*p)
        colour = BLUE if lab == cam_label else (230, 25, 25)
        d.ellipse((x - 11, y - 11, x + 11, y + 11), fill=(255, 255, 255), outline=colour, width=3)
        d.text((x, y), lab, font=_font(14), fill=(0, 0, 0), anchor="mm")
    comp = meta.get("components") or {}
    lines = ["top view: x to the right, z away from the viewer",
             f"camera at {cam_label} facing {facing.get('name', '?')}; where is {tgt_label}?",
             f"answer {row.answer} = {answer_text}  (forward {comp.get('forward', float('nan')):+.3g}, right {comp.get('right', float('nan')):+.3g})"]
    shown, _ = _fit(images[0], 360)
    return Overlay(_hstack([_caption(sk, lines, size=14, width=size), _caption(shown, ["shown"])]), notes)


def make_overlay(row: Row, images: list, loader: SourceLoader | None) -> Overlay:
    try:
        if row.task == "shuffle":
            return overlay_shuffle(row, images)
        if row.task == "flip":
            return overlay_flip(row, images)
        if row.task == "crop":
            return overlay_crop(row, images)
        if row.task == "depth":
            return overlay_depth(row, images, loader)
        if row.task == "position":
            return overlay_position(row, images)
        hooked = task_hooks.hook(row.task, "overlay")
        if hooked is not None:
            return hooked(row, images, loader)
    except (KeyError, IndexError, TypeError, ValueError, SSRLError) as exc:  # an odd row must not stop the gallery
        return Overlay(_caption(_fit(images[0])[0], [f"no overlay: {type(exc).__name__}: {exc}"]), [f"overlay failed: {exc!r}"])
    return Overlay(_caption(_fit(images[0])[0], [f"no overlay for task {row.task!r}"]), [])


# ============================================================================================ sources
class SourceLoader:
    """Re-discovers the build's sources from the manifest's config (as ``ssrl verify`` does: where they were
    recorded, or relocated under ``--sources DIR``) and loads them."""

    def __init__(self, manifest: dict[str, Any], sources: Sequence[str] = ()):
        self.manifest = manifest
        self.sources = list(sources)
        self.refs: dict[str, Any] | None = None
        self.error: str | None = None
        self.missing: list[str] = []
        self.cache: dict[str, tuple[Any, str | None]] = {}

    def _discover(self) -> None:
        from .relocate import find_sources

        try:
            found, config = find_sources(self.manifest["config"], self.sources)
            self.refs, self.missing = found.refs, found.missing
            self.opts = config.source
        except Exception as exc:  # noqa: BLE001 - moved or missing inputs: the page says so, it does not stop
            self.refs, self.error = {}, f"cannot rediscover the sources ({type(exc).__name__}: {exc})"

    def missing_line(self) -> str | None:
        """One line naming the recorded source roots that were found nowhere, or None (cheap: no discovery)."""
        from .relocate import relocate

        try:
            missing = relocate(self.manifest["config"], self.sources).missing
        except Exception:  # noqa: BLE001 - an unreadable config: the overlays say why when they need a source
            return None
        if not missing:
            return None
        return f"ssrl preview: sources not found: {', '.join(missing)} (moved? pass --sources NEWDIR)"

    def get(self, meta: dict) -> tuple[Any, str | None]:
        src = meta.get("source") or {}
        sid = src.get("id")
        if sid in self.cache:
            return self.cache[sid]
        if self.refs is None:
            self._discover()
        result: tuple[Any, str | None]
        if self.error:
            result = (None, self.error)
        elif sid not in self.refs:
            if self.missing:
                result = (None, f"source {sid} not found: sources not found at {', '.join(self.missing)} (pass --sources)")
            else:
                result = (None, f"source {sid} not found under the configured inputs")
        else:
            from ssrl_plugin.sources import load_source

            try:
                source = load_source(self.refs[sid], self.opts)
                if src.get("digest") and source.digest != src["digest"]:
                    result = (None, f"source {sid} changed since the build (digest differs)")
                else:
                    result = (source, None)
            except Exception as exc:  # noqa: BLE001
                result = (None, f"{sid}: {type(exc).__name__}: {exc}")
        if len(self.cache) > 16:
            self.cache.clear()
        self.cache[sid] = result
        return result


# ============================================================================================ sampling
@dataclass
class Selection:
    rows: list[Row]
    notes: list[str]
    split: str


def select_rows(out: Path, layout: str, split: str, per_task: int, seed: int) -> Selection:
    """Up to ``per_task`` rows of every task, spread over its variants (round robin over a seeded shuffle of each
    variant), from ``split`` first; a task with fewer rows there is topped up from the other split, and said so."""
    index: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in iter_rows(out, layout, images=False):
        index[row.split][row.task][row.variant].append(row.id)
    if not index:
        raise SSRLError(f"{out}: the dataset has no rows")
    notes = []
    other = "train" if split == "val" else "val"
    if not index.get(split):
        notes.append(f"split {split!r} is empty: showing {other}")
        split, other = other, split
    tasks = sorted({t for s in index.values() for t in s}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
    chosen: list[str] = []
    for task in tasks:
        rng = random.Random(f"{seed}:{task}")
        picked: list[str] = []
        for src in (split, other):
            pools = []
            for variant in sorted(index.get(src, {}).get(task, {})):
                ids = sorted(index[src][task][variant])
                rng.shuffle(ids)
                pools.append(ids)
            before = len(picked)
            while len(picked) < per_task and any(pools):
                for pool in pools:
                    if pool and len(picked) < per_task:
                        picked.append(pool.pop())
            if src == other and len(picked) > before:
                notes.append(f"{task}: {before} {split} samples, {len(picked) - before} more from {other}")
        chosen += picked
    keep = set(chosen)
    rows = {r.id: r for r in iter_rows(out, layout, select=keep)}
    return Selection([rows[i] for i in chosen if i in rows], notes, split)


# ============================================================================================ rendering
@dataclass
class Item:
    row: Row
    images: list  # PIL
    overlay: Overlay


def _data_uri(img, max_side: int, quality: int = 82) -> str:
    from PIL import Image

    if max(img.size) > max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_items(sel: Selection, loader: SourceLoader | None) -> list[Item]:
    items = []
    for row in sel.rows:
        try:
            images = [_decode(b) for b in row.images or []]
        except SSRLError as exc:  # an undecodable image: say so, show the rest
            sel.notes.append(f"{row.id}: cannot show it ({exc})")
            continue
        if not images:
            continue
        items.append(Item(row, images, make_overlay(row, images, loader)))
    return items


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f3f3f0;color:#1a1a1a}
header{background:#1d2733;color:#eee;padding:14px 22px}
header h1{margin:0 0 6px;font-size:20px}
header table{border-collapse:collapse;font-size:13px;margin:8px 0}
header td,header th{padding:2px 10px;border-bottom:1px solid #3a4654;text-align:right}
header td:first-child,header th:first-child,header td.l,header th.l{text-align:left}
.audit-PASS{color:#7ee787;font-weight:bold}.audit-INCONCLUSIVE{color:#e3b341;font-weight:bold}.audit-FAIL{color:#ff7b72;font-weight:bold}.audit-none{color:#d2a8ff}
.bar{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #ccc;padding:8px 22px;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.bar button{border:1px solid #999;background:#f6f6f6;border-radius:4px;padding:4px 10px;cursor:pointer}
.bar button.on{background:#1d2733;color:#fff;border-color:#1d2733}
.help{color:#666;font-size:12px;margin-left:auto}
main{padding:12px 22px}
.item{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 16px;padding:10px 14px}
.item.current{outline:3px solid #2f81f7}
.item h2{font-size:15px;margin:0 0 6px;font-weight:600}
.item h2 .tag{display:inline-block;background:#e8eef6;border-radius:3px;padding:0 6px;margin-right:6px;font-weight:500}
.answer{font-size:15px;margin:4px 0}.answer b{background:#fff3b0;padding:0 4px}
.note{color:#b42318;font-size:13px;margin:3px 0}
.imgs{display:flex;gap:6px;flex-wrap:wrap;align-items:flex-end;margin:6px 0}
.imgs figure{margin:0;font-size:11px;color:#555;text-align:center}
.imgs img{max-height:240px;border:1px solid #ccc;display:block}
.imgs img.small{height:110px;image-rendering:auto}
.overlay img{max-width:100%;border:1px solid #bbb}
pre{white-space:pre-wrap;font-size:12px;background:#f7f7f7;padding:6px;border-radius:4px;max-height:420px;overflow:auto}
details summary{cursor:pointer;font-size:13px;color:#333}
#status{font-size:12px;color:#666;padding:4px 22px}
#errors{color:#b42318;white-space:pre-wrap;padding:0 22px}
"""

# Installed first, in <head>: every later script error lands in the DOM (#errors), where --dump-dom shows it.
ERROR_HOOK = r"""
window.__errors = [];
window.onerror = function (msg, src, line, col) {
  var text = 'JS error: ' + msg + ' (line ' + line + ':' + col + ')';
  window.__errors.push(text);
  var e = document.getElementById('errors');
  if (e) { e.textContent += text + '\n'; }
  var s = document.getElementById('status');
  if (s) { s.textContent = 'error: ' + msg; }
  return false;
};
document.addEventListener('DOMContentLoaded', function () {
  var e = document.getElementById('errors');
  if (e && window.__errors.length && !e.textContent) { e.textContent = window.__errors.join('\n') + '\n'; }
});
"""

JS = r"""
(function () {
  var items = Array.prototype.slice.call(document.querySelectorAll('.item'));
  var variants = JSON.parse(document.getElementById('variants').textContent);
  var vsel = document.getElementById('f-variant');
  var buttons = Array.prototype.slice.call(document.querySelectorAll('.bar button[data-task]'));
  var shownCount = document.getElementById('shown');
  var task = 'all', current = -1;
  function fillVariants() {
    var list = task === 'all' ? [] : (variants[task] || []);
    vsel.innerHTML = '';
    var o = document.createElement('option'); o.value = 'all'; o.textContent = 'all variants'; vsel.appendChild(o);
    list.forEach(function (v) { var e = document.createElement('option'); e.value = v; e.textContent = v; vsel.appendChild(e); });
    vsel.disabled = list.length < 2;
  }
  function visible() { return items.filter(function (it) { return it.style.display !== 'none'; }); }
  function apply() {
    var v = vsel.value || 'all', n = 0;
    items.forEach(function (it) {
      var ok = (task === 'all' || it.dataset.task === task) && (v === 'all' || it.dataset.variant === v);
      it.style.display = ok ? '' : 'none'; if (ok) { n++; }
    });
    buttons.forEach(function (b) { b.classList.toggle('on', b.dataset.task === task); });
    shownCount.textContent = n + ' of ' + items.length + ' shown';
    current = -1;
  }
  function go(step) {
    var vis = visible(); if (!vis.length) { return; }
    var at = vis.indexOf(items[current]);
    var next = at < 0 ? (step > 0 ? 0 : vis.length - 1) : Math.max(0, Math.min(vis.length - 1, at + step));
    if (items[current]) { items[current].classList.remove('current'); }
    current = items.indexOf(vis[next]);
    vis[next].classList.add('current');
    vis[next].scrollIntoView({block: 'start'});
    window.scrollBy(0, -50);
  }
  buttons.forEach(function (b) { b.addEventListener('click', function () { task = b.dataset.task; fillVariants(); apply(); }); });
  vsel.addEventListener('change', apply);
  document.addEventListener('keydown', function (e) {
    var tag = (e.target && e.target.tagName) || '';
    if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA' || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === 'j' || e.key === 'ArrowRight') { go(1); e.preventDefault(); }
    else if (e.key === 'k' || e.key === 'ArrowLeft') { go(-1); e.preventDefault(); }
  });
  var expand = document.getElementById('expand');
  expand.addEventListener('click', function () {
    var open = expand.dataset.open !== '1';
    Array.prototype.forEach.call(document.querySelectorAll('.item details'), function (d) { d.open = open; });
    expand.dataset.open = open ? '1' : '0';
    expand.textContent = open ? 'collapse all' : 'expand all';
  });
  fillVariants(); apply();
  var tasks = {};
  items.forEach(function (it) { tasks[it.dataset.task] = (tasks[it.dataset.task] || 0) + 1; });
  var status = 'ok ' + items.length + ' items; ' + Object.keys(tasks).map(function (t) { return t + ' ' + tasks[t]; }).join(', ');
  if (location.hash === '#selftest') {  // exercised by the headless browser test: filters and keys really work
    var problems = [];
    Object.keys(tasks).forEach(function (t) {
      buttons.filter(function (b) { return b.dataset.task === t; })[0].click();
      var vis = visible();
      if (vis.length !== tasks[t] || vis.some(function (it) { return it.dataset.task !== t; })) { problems.push('filter ' + t); }
      if (vsel.options.length !== (variants[t] || []).length + 1) { problems.push('variants ' + t); }
    });
    buttons[0].click();
    document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j'}));
    document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j'}));
    document.dispatchEvent(new KeyboardEvent('keydown', {key: 'k'}));
    if (items.length > 1 && !items[0].classList.contains('current')) { problems.push('keys'); }
    status += problems.length ? '; selftest FAILED: ' + problems.join(', ') : '; selftest ok';
  }
  if (window.__errors.length) { status = 'error: ' + window.__errors[0]; }
  document.getElementById('status').textContent = status;
})();
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _counts_table(manifest: dict[str, Any]) -> str:
    counts = manifest.get("counts", {})
    splits = [s for s in ("train", "val") if s in counts]
    rows = sorted({(t, v) for s in splits for t in counts[s] for v in counts[s][t]},
                  key=lambda tv: (TASK_ORDER.index(tv[0]) if tv[0] in TASK_ORDER else 99, tv))
    head = "<tr><th>task / variant</th>" + "".join(f"<th>{_esc(s)}</th>" for s in splits) + "<th>total</th><th>rejected</th></tr>"
    body = []
    for t, v in rows:
        per = [counts[s].get(t, {}).get(v, 0) for s in splits]
        rej = sum(n for k, n in manifest.get("rejected", {}).get(t, {}).items() if k != "gave_up_after_attempts")
        body.append(f"<tr><td>{_esc(t)} / {_esc(v)}</td>" + "".join(f"<td>{n}</td>" for n in per) + f"<td>{sum(per)}</td><td>{rej}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _audit_html(manifest: dict[str, Any]) -> str:
    audit = manifest.get("audit")
    if not audit:
        return ('<p>Shortcut audit: <span class="audit-none">not recorded</span> '
                '(run <code>ssrl audit DIR --write-manifest</code>)</p>')
    result = str(audit.get("result", "?"))
    parts = [f'<p>Shortcut audit: <span class="audit-{_esc(result)}" id="audit-result">{_esc(result)}</span> '
             f'(no solver may beat chance by more than {float(audit.get("threshold", 0.05)) * 100:g} points)</p>']
    rows = []
    for key, b in sorted((audit.get("best") or {}).items()):
        rows.append(f"<tr><td>{_esc(key)}</td><td>{_esc(b.get('n'))}</td><td class='l'>{_esc(b.get('solver'))}</td>"
                    f"<td>{b.get('accuracy', 0):.1%}</td><td>{b.get('chance', 0):.1%}</td><td>{b.get('margin', 0) * 100:+.1f}</td>"
                    f"<td>{_esc(b.get('status'))}</td></tr>")
    if rows:
        parts.append("<table><tr><th>task / variant</th><th>n</th><th class='l'>best shortcut solver</th><th>accuracy</th>"
                     "<th>chance</th><th>pts</th><th>status</th></tr>" + "".join(rows) + "</table>")
    for f in audit.get("failures", []):
        parts.append(f'<p class="audit-FAIL">FAIL {_esc(f.get("task"))}/{_esc(f.get("variant"))}: {_esc(f.get("solver"))} '
                     f'{f.get("accuracy", 0):.1%} vs chance {f.get("chance", 0):.1%}</p>')
    return "".join(parts)


def _answer_html(row: Row) -> str:
    text = f"<b>{_esc(row.answer)}</b>"
    opts = row.options
    if row.task == "position" and opts:
        text += f" = {_esc(opts.get(row.answer, '?'))}  <span style='color:#666'>(" + ", ".join(
            f"{_esc(k)}. {_esc(v)}" for k, v in sorted(opts.items())) + ")</span>"
    return text


def render_html(out: Path, manifest: dict[str, Any], sel: Selection, items: list[Item], seed: int, per_task: int) -> str:
    variants: dict[str, list[str]] = defaultdict(list)
    for it in items:
        if it.row.variant not in variants[it.row.task]:
            variants[it.row.task].append(it.row.variant)
    tasks = sorted(variants, key=lambda t: TASK_ORDER.index(t) if t in TASK_ORDER else 99)
    bar = ['<button data-task="all">all</button>'] + [f'<button data-task="{_esc(t)}">{_esc(t)}</button>' for t in tasks]
    cards = []
    for i, it in enumerate(items):
        r = it.row
        figs = []
        for j, im in enumerate(it.images):
            small = r.task == "crop" and j > 0
            label = ("candidate " + "ABCD"[j - 1]) if small else f"image {j + 1} ({im.width}x{im.height})"
            figs.append(f'<figure><img class="{"small" if small else ""}" alt="{_esc(label)}" '
                        f'src="{_data_uri(im, 160 if small else 480, 78)}"><figcaption>{_esc(label)}</figcaption></figure>')
        notes = "".join(f'<p class="note">&#9888; {_esc(n)}</p>' for n in it.overlay.notes)
        cards.append(
            f'<section class="item" id="item-{i}" data-task="{_esc(r.task)}" data-variant="{_esc(r.variant)}">'
            f'<h2><span class="tag">{_esc(r.task)}</span><span class="tag">{_esc(r.variant)}</span>{_esc(r.id)} '
            f'<span style="color:#888;font-weight:400">({_esc(r.split)})</span></h2>'
            f'<p class="answer">answer: {_answer_html(r)}</p>{notes}'
            f'<div class="overlay"><img alt="answer overlay" src="{_data_uri(it.overlay.image, 1100, 80)}"></div>'
            f'<details><summary>images as the model sees them</summary><div class="imgs">{"".join(figs)}</div></details>'
            f'<details><summary>question</summary><pre>{_esc(r.question)}</pre></details>'
            f'<details><summary>metadata</summary><pre>{_esc(json.dumps(r.metadata, indent=1, sort_keys=True))}</pre></details>'
            f'</section>'
        )
    notes = "".join(f"<p>{_esc(n)}</p>" for n in sel.notes)
    variants_json = json.dumps(variants).replace("</", "<\\/")  # raw text inside <script>: only "</" must not appear
    total = sum(manifest.get("counts", {}).get("total", {}).values())
    head = (
        f"<h1>ssrl preview: {_esc(out.resolve().name)}</h1>"
        f"<div>{total} samples; ssrl {_esc(manifest.get('ssrl_version', '?'))}, build seed {_esc(manifest.get('seed'))}, "
        f"content hash {_esc(str(manifest.get('content_hash', ''))[:16])}&hellip;; showing up to {per_task} per task "
        f"from split <b>{_esc(sel.split)}</b> (preview seed {seed})</div>{notes}"
        f"{_counts_table(manifest)}{_audit_html(manifest)}"
    )
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>ssrl preview: {_esc(out.resolve().name)}</title><script>{ERROR_HOOK}</script><style>{CSS}</style></head><body>"
        f"<header>{head}</header>"
        f"<div class=\"bar\">{''.join(bar)}<select id=\"f-variant\" aria-label=\"variant\"></select>"
        f"<button id=\"expand\">expand all</button><span id=\"shown\"></span><span class=\"help\">j / &rarr;: next item &nbsp; k / &larr;: previous</span></div>"
        f"<div id=\"status\">rendering&hellip;</div><div id=\"errors\"></div>"
        f"<main>{''.join(cards)}</main>"
        f"<script type=\"application/json\" id=\"variants\">{variants_json}</script>"
        f"<script>{JS}</script></body></html>"
    )


def contact_sheet(items: list[Item], cell: tuple[int, int] = (420, 300)):
    """One row per task: every item's overlay fitted into ``cell`` with its variant, answer and id underneath
    (in red when the overlay found a problem)."""
    from PIL import Image, ImageDraw

    by_task: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_task[it.row.task].append(it)
    tasks = sorted(by_task, key=lambda t: TASK_ORDER.index(t) if t in TASK_ORDER else 99)
    cw, ch = cell
    head, gap, cap = 110, 10, 36
    rows = []
    for task in tasks:
        scaled = []
        for it in by_task[task]:
            ov = it.overlay.image
            s = min(cw / ov.width, ch / ov.height)
            scaled.append(ov.resize((max(1, int(ov.width * s)), max(1, int(ov.height * s))), Image.LANCZOS))
        rows.append((task, scaled))
    ncols = max((len(v) for v in by_task.values()), default=1)
    height = gap + sum(max(im.height for im in sc) + cap + gap for _, sc in rows) if rows else 1
    sheet = Image.new("RGB", (head + ncols * (cw + gap), height), "white")
    d = ImageDraw.Draw(sheet)
    y = gap
    for task, scaled in rows:
        row_h = max(im.height for im in scaled)
        d.text((8, y + row_h // 2), task, font=_font(20), fill=(0, 0, 0), anchor="lm")
        for c, (it, im) in enumerate(zip(by_task[task], scaled)):
            x = head + c * (cw + gap)
            sheet.paste(im, (x, y))
            ans = it.row.answer
            if it.row.task == "position" and it.row.options:
                ans += f" = {it.row.options.get(it.row.answer, '?')}"
            colour = (180, 20, 20) if it.overlay.notes else (0, 0, 0)
            d.text((x, y + im.height + 3), f"{it.row.variant}: {ans}" + ("  (see notes)" if it.overlay.notes else ""),
                   font=_font(14), fill=colour)
            d.text((x, y + im.height + 19), it.row.id[:60], font=_font(11), fill=(100, 100, 100))
        y += row_h + cap + gap
    return sheet


# ============================================================================================ entry points
def preview(out: str | Path, html_path: str | Path | None = None, png_path: str | Path | None = None,
            per_task: int = 8, split: str = "val", seed: int = 0, layout: str | None = None,
            load_sources: bool = True, sources: Sequence[str] = ()) -> dict[str, Any]:
    out = Path(out)
    if html_path is None and png_path is None:
        raise SSRLError("nothing to write: give --out FILE.html and/or --png FILE.png")
    if per_task < 1:
        raise SSRLError(f"--per-task {per_task}: must be >= 1")
    manifest = read_manifest(out)
    layout = pick_layout(out, layout)
    sel = select_rows(out, layout, split, per_task, seed)
    missing_line = None
    if load_sources:
        from .relocate import check_sources_dirs

        check_sources_dirs(sources)
        loader = SourceLoader(manifest, sources)
        missing_line = loader.missing_line()
        if missing_line:
            sel.notes.append(missing_line.split(": ", 1)[1] + "; depth heat maps are drawn without their source")
    else:
        loader = None
    items = build_items(sel, loader)
    written = {}
    if html_path is not None:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(html_path).write_text(render_html(out, manifest, sel, items, seed, per_task), encoding="utf-8")
        written["html"] = str(html_path)
    if png_path is not None:
        Path(png_path).parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(items).save(png_path)
        written["png"] = str(png_path)
    per = defaultdict(int)
    for it in items:
        per[it.row.task] += 1
    return {"items": len(items), "per_task": dict(per), "notes": sel.notes + [f"{it.row.id}: {n}" for it in items for n in it.overlay.notes],
            "missing_sources": missing_line, **written}


def cmd_preview(args: argparse.Namespace) -> int:
    res = preview(args.dir, args.out, args.png, per_task=args.per_task, split=args.split, seed=args.seed,
                  layout=args.layout, load_sources=not args.no_sources, sources=args.sources or ())
    if res["missing_sources"]:
        print(res["missing_sources"], file=sys.stderr)
    for key in ("html", "png"):
        if key in res:
            print(f"wrote {res[key]}")
    print(f"{res['items']} items (" + ", ".join(f"{t} {n}" for t, n in res["per_task"].items()) + ")")
    for note in res["notes"][:20]:
        print(f"note: {note}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("preview", help="HTML gallery and/or PNG contact sheet of a built dataset, answers drawn on the pictures")
    p.add_argument("dir", help="dataset folder made by ssrl build")
    p.add_argument("--out", metavar="FILE.html", help="write the self-contained HTML gallery here")
    p.add_argument("--png", metavar="FILE.png", help="write a contact sheet (a row per task) here")
    p.add_argument("--per-task", type=int, default=8, help="items per task (default 8), spread over the variants")
    p.add_argument("--split", choices=["val", "train"], default="val", help="split to sample from (default val; a task "
                   "missing from it is taken from the other split)")
    p.add_argument("--seed", type=int, default=0, help="which items are sampled (default 0)")
    p.add_argument("--layout", choices=["easyr1", "verl"], help="which parquet layout to read (default easyr1 if present)")
    p.add_argument("--no-sources", action="store_true", help="do not load the sources (depth heat maps then say unavailable)")
    p.add_argument("--sources", action="append", metavar="DIR",
                   help="where a moved corpus lies now: each recorded source root is looked for as DIR (same name) or "
                        "DIR/<root name> (repeatable); roots found nowhere are named on stderr and in the page")
    p.set_defaults(func=cmd_preview)
    return p
