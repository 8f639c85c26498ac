"""camera_motion's tools: metadata check, blind audit (rules and boosted trees), sighted solver, gallery overlay.

Blind solvers (must stay at chance, 1/4), counted: the letter; the answer word's rate when offered; the answer word
given the option set (which two confusable pairs are offered); boosted trees on the question and options one-hot
(letter, word, the word at every letter, the option set). Reported as reference: the answer word given the sign of
a change of a frame statistic between the two images (brightness, contrast, sharpness, stored JPEG bytes), and
boosted trees on the option one-hots plus 29 statistics of the first image, their change in the second and the
stored bytes. Both frames are processed alike (same size, same encoding, shown in either time order), so what
their statistics say is the scene seen moving: moving forward magnifies the view (less detail, fewer bytes),
turning brings new content in from one side. That is the content defining the answer, like depth's monocular cues.

Sighted solver: block matching between the two stored images (grey, reduced to 192 px wide). Each of 8 x 6 blocks
is searched coarse (half size, a quarter width either way) then fine (least mean squared difference, sub-pixel);
the blocks' shifts are fitted by dx = a + s x + q x^2, dy = b + s y + q x y (shift, zoom, a turn's perspective)
without the worst fifth. A focus of expansion (-a / s) inside the picture reads as forward/backward (by the sign
of s), else the shift reads sideways (content moving right = the camera went left) and the spread of the blocks'
horizontal shifts the fit leaves (parallax: near things move more) against the shift says move vs turn. Counted:
the image-motion direction on level-1 rows; reference: the full answer and other rows.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np

LETTERS = "ABCD"
STAT_FEATURES = ("brightness", "contrast", "sharpness", "bytes")
BLOCKS = (8, 6)  # block grid (columns, rows) of the sighted solver
WORK_WIDTH = 192  # images are reduced to this width (area average) before matching
ZOOM_AT = 0.25  # the zoom's displacement is read at this fraction of the width from the centre
MIN_ZOOM = 1.0  # px (at WORK_WIDTH) of expansion a quarter width out, below which there is no zoom to read
FOE_MAX = 0.45  # image widths from the centre within which a focus of expansion means forward/backward
PARALLAX_MOVE = 0.2  # relative spread of the blocks' horizontal shifts above which a sideways motion is a move
# Why the frame-statistics solvers are reference only: both frames are processed alike (same size, same encoding,
# shown in either time order), so what their statistics say is the scene seen moving
CONTENT_NOTE = ("reference only: the change between the two frames is the content that defines the answer (moving "
                "forward magnifies the view: less detail, fewer JPEG bytes; turning brings new content in from one side)")
DIRECTION = {"move left": "left", "turn left": "left", "move right": "right", "turn right": "right",
             "move forward": "forward", "move backward": "backward", "move up": "up", "move down": "down"}


# ============================================================================================ verify
def check_metadata(answer: str, meta: dict) -> list[str]:
    """The option under the letter is the recorded answer word, and the recorded flows and components give it."""
    from ssrl_plugin.tasks.camera_motion_check import label_from_flows, option_problems

    options = meta.get("options") or {}
    problems = []
    if options.get(answer) != meta.get("answer_text"):
        problems.append(f"option {answer} is {options.get(answer)!r}, the metadata's answer_text is {meta.get('answer_text')!r}")
    word, found = label_from_flows(meta["flows"], meta["components"], meta["thresholds"], bool(meta.get("vertical")),
                                   float(meta["overlap"]))
    problems += found
    if word is not None and word != meta.get("answer_text"):
        problems.append(f"the recorded flows and components give {word!r}, the answer_text is {meta.get('answer_text')!r}")
    return problems + option_problems(options, meta.get("answer_text"), bool(meta.get("vertical")))


# ============================================================================================ rule solvers
def frame_stats(row) -> dict[str, list[float]]:
    """Per shown image: brightness, contrast, sharpness (audit.image_features) and stored bytes."""
    from data_builders.audit import image_features

    out: dict[str, list[float]] = defaultdict(list)
    for i in range(2):
        f = image_features(row.array(i))
        for k in ("brightness", "contrast", "sharpness"):
            out[k].append(f[k])
        out["bytes"].append(float(len(row.images[i])))
    return dict(out)


def extract(row, base: dict) -> dict[str, Any]:
    opts = row.options or {}
    stats = frame_stats(row)
    return {**base, "options": opts, "text": opts.get(row.answer, row.metadata.get("answer_text")),
            "set": tuple(sorted(opts.values())), "diff": {k: v[1] - v[0] for k, v in stats.items()}}


def _word_rates(items: list[dict], key=None) -> dict:
    """Answer rate of each word when offered (per value of ``key(item)`` when given)."""
    offered: dict = defaultdict(Counter)
    right: dict = defaultdict(Counter)
    for it in items:
        k = key(it) if key else None
        offered[k].update(it["options"].values())
        right[k][it["text"]] += 1
    return {k: {w: right[k][w] / n for w, n in c.items()} for k, c in offered.items()}


def _pick(rates: dict, it: dict, k=None) -> float:
    from data_builders.audit import _close, set_score

    rate = rates.get(k)
    if not rate:
        return 0.25
    vals = {letter: rate.get(text, 0.0) for letter, text in it["options"].items()}
    top = max(vals.values())
    return set_score([letter for letter, v in vals.items() if _close(v, top)], it["answer"])


def audit(items: list[dict], variant: str) -> list:
    from data_builders.audit import _group_results, cross_fit, solve_most_frequent

    rows = []
    s, d = solve_most_frequent(items, "answer")
    rows.append(("most frequent letter", "answer", s, 0.25, d, True))
    s, models = cross_fit(items, _word_rates, lambda m, it: _pick(m, it))
    best = [max(m[None], key=m[None].get) if m.get(None) else "-" for m in models]
    rows.append(("most frequent answer word", "answer", s, 0.25, "highest answer rate when offered, per half: " + " / ".join(best), True))
    s, _ = cross_fit(items, lambda tr: _word_rates(tr, lambda it: it["set"]), lambda m, it: _pick(m, it, it["set"]))
    rows.append(("answer word given the option set", "answer", s, 0.25, "option-set prior, fitted per half", True))
    for f in STAT_FEATURES:
        def key(it, f=f):
            return int(np.sign(it["diff"][f]))
        s, _ = cross_fit(items, lambda tr, key=key: _word_rates(tr, key), lambda m, it, key=key: _pick(m, it, key(it)))
        rows.append((f"answer word given the sign of the {f} change", "answer", s, 0.25,
                     f"second image minus first: {f}; word rates per sign, fitted per half; {CONTENT_NOTE}", False))
    return _group_results("camera_motion", variant, len(items), rows)


# ============================================================================================ learned solvers
def learned_item(row, image, rule_item: dict) -> dict[str, Any]:
    from data_builders.audit_learned import IMAGE_FEATURES, image_stats

    a, b = image(0), image(1)
    stats = image_stats(np.stack([a, b])) if a.shape == b.shape else {k: np.array([np.nan, np.nan]) for k in IMAGE_FEATURES}
    first = np.array([float(stats[k][0]) for k in IMAGE_FEATURES])
    second = np.array([float(stats[k][1]) for k in IMAGE_FEATURES])
    sizes = np.array([len(row.images[0]), len(row.images[1])], np.float64)
    return {"options": dict(row.options or {}), "first": first, "diff": second - first,
            "bytes": np.array([sizes[0], sizes[1] - sizes[0]])}


def learned(items: list[dict], variant: str) -> list:
    from data_builders.audit_learned import IMAGE_FEATURES, _columns, _folds_for, _group_text, _result, cv_choice

    items = [it for it in items if it["answer"] in it["learned"]["options"] and len(it["learned"]["options"]) == 4]
    got = _folds_for(items)
    if got is None:
        return []
    folds, k = got
    words = sorted({w for it in items for w in it["learned"]["options"].values()})
    names: dict[str, str] = {}
    names.update({f"letter={v}": "letter" for v in LETTERS})
    names.update({f"word={v}": "option word" for v in words})
    names.update({f"{a}={w}": "option layout" for a in LETTERS for w in words})
    names.update({f"offered={w}": "option set" for w in words})
    col = {name: i for i, name in enumerate(names)}
    text = np.zeros((len(items), 4, len(names)))
    truth = np.zeros(len(items), np.int64)
    for s, it in enumerate(items):
        opts = it["learned"]["options"]
        for j, letter in enumerate(LETTERS):
            for key in (f"letter={letter}", f"word={opts[letter]}", *(f"{a}={w}" for a, w in opts.items()),
                        *(f"offered={w}" for w in opts.values())):
                text[s, j, col[key]] = 1.0
        truth[s] = LETTERS.index(it["answer"])
    scores = cv_choice(text, truth, folds)
    groups = {g: float(cv_choice(text, truth, folds, c).mean()) for g, c in _columns(list(names), names, 1).items()}
    out = [_result("camera_motion", variant, "learned: boosted trees on the question and option text", "answer", scores,
                   0.25, f"{k}-fold source-grouped cross-fit, one-hot letter, option word, the word at every letter, "
                         f"the option set; " + _group_text(groups, k), groups)]
    # + the frames' statistics (the same for the four options of a sample: the trees cross them with the words; each
    # group is fitted alone WITH the option one-hots, so the report names the statistic that carries the answer)
    stat_names = [f"first:{f}" for f in IMAGE_FEATURES] + [f"change:{f}" for f in IMAGE_FEATURES] + ["first:bytes", "change:bytes"]
    stat_groups = {n: "stored bytes" if n.endswith(":bytes") else "first image" if n.startswith("first") else "change"
                   for n in stat_names}
    per = np.stack([np.concatenate([it["learned"]["first"], it["learned"]["diff"], it["learned"]["bytes"]]) for it in items])
    x = np.concatenate([text, np.repeat(per[:, None, :], 4, axis=1)], axis=2)
    scores = cv_choice(x, truth, folds)
    base = np.arange(len(names))
    groups = {g: float(cv_choice(x, truth, folds, np.concatenate([base, len(names) + c])).mean())
              for g, c in _columns(stat_names, stat_groups, 1).items()}
    out.append(_result("camera_motion", variant, "learned: boosted trees on the options and the frames' statistics",
                       "answer", scores, 0.25,
                       f"{k}-fold source-grouped cross-fit, the option one-hots plus {len(IMAGE_FEATURES)} statistics of "
                       f"the first image and their change in the second, stored bytes; best statistic groups (each fitted "
                       f"with the option one-hots): " + ", ".join(f"{g} {v:.1%}" for g, v in sorted(groups.items(), key=lambda kv: -kv[1])[:3])
                       + f"; {CONTENT_NOTE}", groups,
                       counted=False))
    return out


# ============================================================================================ sighted solver
def _reduce(rgb: np.ndarray) -> np.ndarray:
    from ssrl_plugin.imaging import grey

    g = grey(rgb).astype(np.float64)
    f = max(1, g.shape[1] // WORK_WIDTH)
    h, w = g.shape[0] // f * f, g.shape[1] // f * f
    return g[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _half(g: np.ndarray) -> np.ndarray:
    h, w = g.shape[0] // 2 * 2, g.shape[1] // 2 * 2
    return g[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _search(a: np.ndarray, b: np.ndarray, cols: int, rows: int, base: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best offset of each block of ``a`` in ``b`` among ``base`` (rows, cols, 2) + [-r, r]^2 (mean squared
    difference; outside ``b`` its edge repeats): (dx, dy) with a parabola's sub-pixel step, and each block's
    weight (how much its minimum stands out; small when the best offset lies on the search border)."""
    h, w = a.shape
    bh, bw = h // rows, w // cols
    pad = r + int(np.abs(base).max()) + 1
    big = np.pad(b, pad, mode="edge")
    n = 2 * r + 1
    costs = np.empty((rows, cols, n, n))
    for i in range(rows):
        for j in range(cols):
            blk = a[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            y0, x0 = pad + i * bh + int(base[i, j, 1]) - r, pad + j * bw + int(base[i, j, 0]) - r
            win = big[y0:y0 + bh + 2 * r, x0:x0 + bw + 2 * r]
            view = np.lib.stride_tricks.sliding_window_view(win, (bh, bw))  # (n, n, bh, bw)
            costs[i, j] = ((view - blk) ** 2).mean(axis=(2, 3))
    flat = costs.reshape(rows, cols, n * n)
    best = flat.argmin(axis=2)
    iy, ix = best // n, best % n
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")

    def sub(c_m, c_0, c_p):
        d = c_m - 2 * c_0 + c_p
        return np.where(d > 1e-12, 0.5 * (c_m - c_p) / np.where(d > 1e-12, d, 1.0), 0.0)

    c0 = costs[rr, cc, iy, ix]
    fx = sub(costs[rr, cc, iy, np.clip(ix - 1, 0, n - 1)], c0, costs[rr, cc, iy, np.clip(ix + 1, 0, n - 1)])
    fy = sub(costs[rr, cc, np.clip(iy - 1, 0, n - 1), ix], c0, costs[rr, cc, np.clip(iy + 1, 0, n - 1), ix])
    move = np.stack([base[..., 0] + ix - r + np.clip(fx, -0.5, 0.5), base[..., 1] + iy - r + np.clip(fy, -0.5, 0.5)], -1)
    inner = (ix > 0) & (ix < n - 1) & (iy > 0) & (iy < n - 1)
    weight = np.sqrt(np.maximum(np.median(flat, axis=2) - c0, 0.0)) * np.where(inner, 1.0, 0.05)
    return move, weight, inner


def block_motion(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Shift, zoom and parallax of the content from grey image ``a`` to ``b`` (same size), in pixels of ``a``:
    each block's offset searched coarse (half size, a quarter width either way) then fine (2 px around it),
    fitted by dx = a + s x, dy = b + s y (weighted least squares)."""
    h, w = a.shape
    cols, rows = BLOCKS
    zero = np.zeros((rows, cols, 2))
    coarse, _, _ = _search(_half(a), _half(b), cols, rows, zero, max(4, w // 8))
    move, weight, inner = _search(a, b, cols, rows, 2 * np.round(coarse), 2)
    bh, bw = h // rows, w // cols
    px, py = np.meshgrid((np.arange(cols) + 0.5) * bw - w / 2, (np.arange(rows) + 0.5) * bh - h / 2)
    x, y = px.ravel() / w, py.ravel() / w  # image widths from the centre
    m = move.reshape(-1, 2)
    wt = weight.ravel() + 1e-6
    # dx = a + s x + q x^2, dy = b + s y + q x y: a shift, a zoom, and a turn's perspective (a yaw's flow grows as
    # x^2 and bends as x y); what no such field explains is parallax, the mark of a camera that moved
    # dx = a + s x + q x^2, dy = b + s y + q x y: a shift, a zoom, and a turn's perspective (a yaw's flow grows as
    # x^2 and bends as x y); what no such field explains is parallax, the mark of a camera that moved
    design = np.zeros((2 * len(x), 4))
    design[0::2, 0], design[1::2, 1] = 1.0, 1.0
    design[0::2, 2], design[1::2, 2] = x, y
    design[0::2, 3], design[1::2, 3] = x * x, x * y
    keep = np.ones(len(x), bool)
    for _ in range(2):  # refit without the worst fifth of the blocks (occlusions, flat areas)
        ww = np.sqrt(np.repeat(wt * keep, 2))
        sol, *_ = np.linalg.lstsq(design * ww[:, None], m.reshape(-1) * ww, rcond=None)
        resid = np.abs(m[:, 0] - (design[0::2] @ sol))
        keep = resid <= np.quantile(resid, 0.8)
    spread = float(np.sqrt(np.average(resid[keep] ** 2, weights=wt[keep])))
    return {"shift_x": float(sol[0]), "shift_y": float(sol[1]), "zoom": float(sol[2] * ZOOM_AT),
            "bend": float(sol[3]), "parallax": spread / (abs(float(sol[0])) + 1.0), "blocks": int(inner.sum())}


def predict(motion: dict[str, float], options: dict[str, str]) -> str:
    """The offered word the block motion reads as."""
    rate = motion["zoom"] / ZOOM_AT  # px of expansion per image width from the centre
    # a translation's flow spreads from its focus of expansion, -shift / rate widths from the centre: inside the
    # picture the camera went mostly forward or backward
    if abs(motion["zoom"]) >= MIN_ZOOM and abs(motion["shift_x"]) < FOE_MAX * abs(rate):
        word = "move forward" if motion["zoom"] > 0 else "move backward"
    else:
        side = "left" if motion["shift_x"] > 0 else "right"  # content went right: the camera went left
        word = f"{'move' if motion['parallax'] > PARALLAX_MOVE else 'turn'} {side}"
    offered = list(options.values())
    if word in offered:
        return word
    same = [w for w in offered if DIRECTION.get(w) == DIRECTION[word]]
    return same[0] if same else offered[0]


def sighted_item(row) -> dict[str, Any] | None:
    from data_builders.audit_sighted import _image

    a, b = _reduce(_image(row, 0)), _reduce(_image(row, 1))
    if a.shape != b.shape:
        return None
    motion = block_motion(a, b)
    opts = row.options or {}
    word = predict(motion, opts)
    truth = opts.get(row.answer, row.metadata.get("answer_text"))
    return {"correct": float(word == truth), "pred": word, "answer": truth,
            "direction": float(DIRECTION.get(word) == DIRECTION.get(truth)), **motion}


def sighted(variant: str, items: list[dict]) -> list:
    """Counted: the image-motion direction (which way the view shifts or zooms) on level-1 rows, the pure large
    motions it must read. Reference: the full answer (move vs turn from parallax: the block matcher reads it on
    level 1 about 90 % of the time, not reliably), rows without a level (their band reaches ratio 0.5, e.g. forward motion with
    half as much yaw, which a shift + zoom fit reads as sideways) and the harder levels."""
    from statistics import NormalDist

    from data_builders.audit import SolverResult, wilson

    z = NormalDist().inv_cdf(0.975)
    out = []
    groups = {1: ("", True), None: (" [no level: up to the ambiguity band]", False), 2: (" [difficulty level >= 2: harder on purpose]", False)}
    for level, (tag, counted) in groups.items():
        group = [it for it in items if (it.get("level") if level != 2 else min(2, it.get("level") or 0)) == level]
        if not group:
            continue
        n = len(group)
        for key, what, count, chance in (("direction", "image-motion direction (left/right/forward/backward)", counted, 1 / 3),
                                         ("correct", "full answer (move vs turn from parallax)", False, 0.25)):
            score = float(sum(float(it[key]) for it in group))
            wrong = [str(it.get("id", "?")) for it in group if float(it[key]) < 1.0]
            detail = (f"block matching ({BLOCKS[0]}x{BLOCKS[1]} blocks, coarse-to-fine), shift + zoom + turn fit, "
                      f"focus of expansion within {FOE_MAX} widths = forward/backward, parallax > {PARALLAX_MOVE} = move"
                      + (f"; {len(wrong)} not solved, e.g. {', '.join(wrong[:3])}" if wrong else ""))
            r = SolverResult("camera_motion", variant, f"block matching: {what}{tag}", "answer" if key == "correct" else "direction",
                             n, score, chance, count, detail, kind="sighted")
            r.accuracy, r.margin, r.ci95 = score / n, score / n - chance, wilson(score, n, z)
            out.append(r)
    return out


# ============================================================================================ gallery
def overlay(row, images: list, loader):
    """The two frames; a top view of both cameras' frusta (camera 1 at the origin looking up the page, camera 2 at
    its recorded offset and heading) with the motion; the components and flows."""
    from PIL import Image, ImageDraw

    from data_builders.preview import BLUE, GREEN, GREY, Overlay, _arrow, _caption, _font, _fit, _hstack, _vstack

    meta = row.metadata
    notes = []
    opts = row.options or {}
    answer_text = opts.get(row.answer, "?")
    if meta.get("answer_text") != answer_text:
        notes.append(f"metadata answer_text {meta.get('answer_text')!r}, option {row.answer} is {answer_text!r}")
    comp, flows = meta["components"], meta["flows"]
    k = meta["intrinsics"]
    half_fov = math.atan2(k["width"] / 2, k["fx"])
    size = 360
    sk = Image.new("RGB", (size, size), (250, 250, 245))
    d = ImageDraw.Draw(sk)
    right, forward = float(comp["right"]), float(comp["forward"])
    span = max(abs(right), abs(forward), 0.25) * 2.6  # metres across the sketch
    scale = size / span
    origin = (size / 2 - right * scale / 2, size / 2 + forward * scale / 2)  # both cameras in view

    def to_px(x: float, z: float) -> tuple[float, float]:
        return origin[0] + x * scale, origin[1] - z * scale

    def frustum(x: float, z: float, yaw_deg: float, colour) -> None:
        heading = math.radians(yaw_deg)  # yaw > 0: turned right, clockwise on the page
        length = span * 0.28
        tips = [(x + length * math.sin(heading + s * half_fov), z + length * math.cos(heading + s * half_fov)) for s in (-1, 1)]
        d.polygon([to_px(x, z), to_px(*tips[0]), to_px(*tips[1])], outline=colour, width=3)
        _arrow(d, to_px(x, z), to_px(x + 0.6 * length * math.sin(heading), z + 0.6 * length * math.cos(heading)), colour, 2, head=7)

    for i in range(-10, 11):  # a metre grid for scale
        g = i * (1.0 if span > 4 else 0.5 if span > 1.5 else 0.1)
        d.line((*to_px(g, -span), *to_px(g, span)), fill=(232, 232, 232))
        d.line((*to_px(-span, g), *to_px(span, g)), fill=(232, 232, 232))
    frustum(0.0, 0.0, 0.0, BLUE)
    frustum(right, forward, float(comp["yaw"]), GREEN)
    if math.hypot(right, forward) * scale > 6:
        _arrow(d, to_px(0.0, 0.0), to_px(right, forward), (230, 25, 25), 3, head=9)
    d.text((6, 6), "top view: camera 1 (blue) -> camera 2 (green)", font=_font(12), fill=(60, 60, 60))
    ranked = sorted(flows, key=lambda c: -float(flows[c]))
    lines = [f"answer {row.answer} = {answer_text}" + ("  (pair shown in reverse time order)" if meta.get("reversed") else ""),
             f"right {right:+.2f} m, forward {forward:+.2f} m, up {float(comp['up']):+.2f} m",
             f"yaw {float(comp['yaw']):+.1f} (+ = right), pitch {float(comp['pitch']):+.1f}, roll {float(comp['roll']):+.1f} deg",
             "flow (% width): " + ", ".join(f"{c} {100 * float(flows[c]):.1f}" for c in ranked[:3]),
             f"second / largest {float(meta.get('ratio', 0)):.2f}, overlap {float(meta.get('overlap', 0)):.0%}, "
             f"frames {meta['frames'][0]} -> {meta['frames'][1]}"]
    shown = [_caption(_fit(im, 300)[0], [f"image {i + 1}: frame {meta['frames'][i]}"]) for i, im in enumerate(images[:2])]
    return Overlay(_vstack([_hstack(shown), _caption(sk, lines, size=14, width=620)]), notes)
