"""Sighted solvers for ``ssrl audit``: can the answers be found FROM THE PICTURE, by a plain algorithm?

The shortcut solvers of :mod:`data_builders.audit` check that an answer cannot be guessed without looking at the
content. The opposite check belongs next to them: a construction that hides the answer by destroying the content
(a hole filled with the wrong pixels, candidates that are noise, patches whose edges do not meet) passes every blind
audit, so each task also gets a solver that reads the pixels the model sees and must reach ``SIGHTED_MIN``.

- ``crop``: *edge continuity*. Every candidate is laid into the hole at the option scale (the picture's ring just
  outside the hole is area-averaged down to the option's pixels, which is what a candidate is: the hole's content
  area-averaged) and its outermost two pixel rows are compared with the picture's two rows just outside, on each
  side of the hole that has a ring (a hole touching the image border has none on that side). The seam cost is the
  first difference across the seam against the mean of the first differences on either side (a smooth continuation
  has none left over) plus half of the plain jump across it, on grey (after fitting the candidate's grey gain and
  offset to the ring: a construction may equalise brightness and contrast) and on the chroma residual
  (rgb - grey, at 0.15 of the weight: JPEG keeps chroma coarser), in mean absolute units divided by the ring's own
  mean absolute deviation, so every sample counts alike. The candidate with the smallest cost is the prediction.
  Only the pixels and ``metadata["crop_box"]`` (where the hole is, which the model sees too) are used, never what
  the options are.
- ``shuffle``: *patch-edge compatibility*. For every ordered pair of displayed patches, the cost of putting j right
  of i (i's last column next to j's first) and j below i (i's last row over j's first row). The lines compared
  are the first ones inside the drawn border (``border_px``) plus one pixel of JPEG ringing, smoothed along the
  edge over 3 px, in colour, on the pixels away from every label (the :func:`ssrl_plugin.tasks.grid.comparison_mask`
  of the labels); the two lines are 2 * (border_px + 1) + 1 pixels apart in the original picture. The cost is the
  mean sqrt|difference| of the two lines (robust to a few mismatched pixels) over the same root of the variation
  each patch shows over that distance inside itself (plus a noise floor): a seam through texture may jump as much
  as the texture does, a seam through a flat area may not (without it, arrangements that put flat edges together
  win on real photographs). Then the arrangement of the patches into the R x C grid with the least total cost:
  every permutation (numpy over all of them) up to 8 patches, a beam search in reading order beyond; the identity
  order is left out (the task never uses it). In the ``_mask`` variants the white patch (the question says one is
  there; found as the whitest, flattest patch) has no edges: every pair with it costs the median of the others.

``sighted_item(row)`` returns ``{"correct": ..., "pred": ..., ...}`` for one stored row (None for a task without a
sighted solver); ``audit_sighted(task, variant, items)`` turns the items of one group into ``SolverResult`` rows
(``kind="sighted"``), which the audit reports as "solvable" at ``SIGHTED_MIN`` or more and "FAIL" below.
Ties count as the expected score of a uniform pick among the tied answers (1/k), as in the blind audit.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np

from ssrl_plugin.imaging import grey

SIGHTED_MIN = 0.90
LETTERS = "ABCD"

CROP_ROWS = 2  # option pixels of the ring outside the hole and of each candidate's band
CROP_CHROMA_WEIGHT = 0.15  # JPEG stores chroma coarser than grey: it counts less
CROP_GAIN_RANGE = (2 / 3, 3 / 2)  # the fitted grey gain of a candidate is kept inside this range
SHUFFLE_SMOOTH = 3  # px: box smoothing along a patch edge before comparing
SHUFFLE_POWER = 0.5  # mean |difference| ** this
SHUFFLE_RINGING = 1  # px left out next to the drawn border (JPEG ringing)
SHUFFLE_NOISE = 4.0  # grey levels added to the in-patch variation (sensor and JPEG noise)
EXHAUSTIVE_MAX = 8  # patches: every permutation up to here (8! = 40,320), a beam search beyond
BEAM_WIDTH = 2000
TIE = 1e-9


def _image(row, i: int) -> np.ndarray:
    """Image ``i`` of a row as an RGB uint8 array: the row's own decoded copy when it keeps one (``Row.array``, shared
    with the other solvers of the audit), else decoded here by :func:`ssrl_plugin.imaging.decode_image`."""
    get = getattr(row, "array", None)
    if callable(get):
        return get(i)
    from ssrl_plugin.imaging import decode_image

    return np.asarray(decode_image(row.images[i]))


def _tied_score(costs: np.ndarray, truth: int | None) -> tuple[int, float, int]:
    """(prediction, expected score of a uniform pick among the tied minima, number tied)."""
    best = float(costs.min())
    tied = np.flatnonzero(costs <= best + TIE * (1.0 + abs(best)))
    pred = int(tied[0])
    return pred, (1.0 / len(tied) if truth is not None and truth in tied else 0.0), int(len(tied))


# ============================================================================================ crop
def _ring(picture, box: list[int], side: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture's ``rows`` option-pixel rows just outside each side of the hole, area-averaged to the option
    scale: (4, rows, side, 3) float32, row 0 touching the hole, sides top, bottom, left, right (left/right
    transposed so the side runs along axis 2); and which sides have room for them inside the picture."""
    from PIL import Image

    x0, y0, x1, y1 = (int(v) for v in box)
    width, height = picture.size
    depth = rows * (x1 - x0) / side  # the ring's depth in picture pixels
    boxes = [(x0, y0 - depth, x1, y0), (x0, y1, x1, y1 + depth), (x0 - depth, y0, x0, y1), (x1, y0, x1 + depth, y1)]
    out = np.zeros((4, rows, side, 3), np.float32)
    valid = np.zeros(4, bool)
    for i, (bx0, by0, bx1, by1) in enumerate(boxes):
        if bx0 < -1e-6 or by0 < -1e-6 or bx1 > width + 1e-6 or by1 > height + 1e-6:
            continue  # the hole touches (or nearly touches) the border on this side: no ring
        b = (max(bx0, 0.0), max(by0, 0.0), min(bx1, float(width)), min(by1, float(height)))
        a = np.asarray(picture.resize((side, rows) if i < 2 else (rows, side), Image.BOX, box=b), np.float32)
        if i >= 2:
            a = a.transpose(1, 0, 2)
        out[i] = a[::-1] if i in (0, 2) else a  # row 0 nearest the hole
        valid[i] = True
    return out, valid


def _bands(cand: np.ndarray, rows: int) -> np.ndarray:
    """A candidate's ``rows`` outermost rows on each side, (4, rows, side, 3), row 0 the outermost, same side order
    and orientation as :func:`_ring`."""
    c = cand.astype(np.float32)
    return np.stack([c[:rows], c[::-1][:rows], c[:, :rows].transpose(1, 0, 2), c[:, ::-1][:, :rows].transpose(1, 0, 2)])


def _seam(o: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Seam cost of each candidate from ring ``o`` (S, 2, L[, ch]) and bands ``c`` (4, S, 2, L[, ch]): the jump across
    the seam against the mean slope on either side, plus half the plain jump, in mean absolute units over the
    ring's mean absolute deviation."""
    slope = 0.5 * ((o[:, 0] - o[:, 1])[None] + (c[:, :, 1] - c[:, :, 0]))
    jump = c[:, :, 0] - o[None, :, 0]
    axes = tuple(range(1, jump.ndim))
    cost = np.abs(jump - slope).mean(axis=axes) + 0.5 * np.abs(jump).mean(axis=axes)
    ref = o[:, 0] - o[:, 0].reshape(-1, *o.shape[3:]).mean(axis=0)
    return cost / (float(np.abs(ref).mean()) + 1.0)


def crop_seam_costs(picture, box: list[int], candidates: list[np.ndarray], rows: int = CROP_ROWS) -> tuple[np.ndarray, int]:
    """(seam cost per candidate, number of sides used). ``picture``: PIL RGB image with the hole at ``box``;
    ``candidates``: (side, side, 3) uint8 arrays (resized to a common side beforehand)."""
    side = candidates[0].shape[0]
    ring, valid = _ring(picture, box, side, rows)
    if not valid.any():
        return np.zeros(len(candidates)), 0
    o = ring[valid]  # (S, rows, L, 3)
    c = np.stack([_bands(x, rows) for x in candidates])[:, valid]  # (4, S, rows, L, 3)
    yo, yc = grey(o), grey(c)
    co, cc = o - yo[..., None], c - yc[..., None]
    # the candidate's grey gain and offset fitted to the ring (least squares on the seam rows, gain kept in range)
    t, x = yo[:, 0], yc[:, :, 0]
    tm, xm = float(t.mean()), x.mean(axis=(1, 2), keepdims=True)
    dx = x - xm
    gain = (dx * (t - tm)[None]).sum(axis=(1, 2), keepdims=True) / np.maximum((dx * dx).sum(axis=(1, 2), keepdims=True), 1e-6)
    gain = np.clip(gain, *CROP_GAIN_RANGE)
    yc = (yc - xm[..., None]) * gain[..., None] + tm
    return _seam(yo, yc) + CROP_CHROMA_WEIGHT * _seam(co, cc), int(valid.sum())


def solve_crop(row) -> dict[str, Any]:
    from PIL import Image

    picture = Image.fromarray(_image(row, 0))
    cands = [_image(row, i) for i in range(1, min(5, len(row.images)))]
    side = min(min(c.shape[:2]) for c in cands)
    arrays = [c if c.shape[:2] == (side, side) else np.asarray(Image.fromarray(c).resize((side, side), Image.BOX))
              for c in cands]
    costs, sides = crop_seam_costs(picture, row.metadata["crop_box"], arrays)
    truth = LETTERS.index(row.answer) if row.answer in LETTERS[: len(arrays)] else None
    pred, correct, tied = _tied_score(costs, truth)
    order = np.sort(costs)
    return {"correct": correct, "pred": LETTERS[pred], "answer": row.answer, "costs": [round(float(v), 5) for v in costs],
            "sides": sides, "tied": tied, "ratio": float(order[0] / order[1]) if len(order) > 1 and order[1] > 0 else 1.0}


# ============================================================================================ shuffle
def _smooth_along(x: np.ndarray, w: int) -> np.ndarray:
    """Box mean over ``w`` samples along axis 1 of (K, n, 3) (edge samples repeated)."""
    if w <= 1:
        return x
    p = np.pad(x, ((0, 0), (w // 2, w - 1 - w // 2), (0, 0)), mode="edge")
    c = np.concatenate([np.zeros_like(p[:, :1]), np.cumsum(p, axis=1, dtype=np.float64)], axis=1)
    return ((c[:, w:] - c[:, :-w]) / w).astype(np.float32)


def _edge_cost(a: np.ndarray, b: np.ndarray, valid: np.ndarray, steps: int) -> np.ndarray:
    """(K, K) cost of edge ``a[i]`` meeting edge ``b[j]``: a and b are (K, steps + 1, n, 3) stacks of edge lines,
    line 0 the one nearest the seam, line t t pixels further in; lines 0 of the two sides are ``steps`` pixels apart
    in the original picture. The jump across the seam, mean |a_0 - b_0| ** SHUFFLE_POWER, is divided by the
    variation each side shows over the same distance inside its own patch (|a_0 - a_steps| and |b_0 - b_steps|,
    their mean, plus a noise floor): a seam through texture may jump as much as the texture does, a seam through
    a flat area may not."""
    a, b = a[:, :, valid], b[:, :, valid]
    k = len(a)
    if a.shape[2] == 0:
        return np.zeros((k, k))
    a0, b0 = a[:, 0], b[:, 0]
    act_a = np.abs(a0 - a[:, steps]).mean(axis=(1, 2))
    act_b = np.abs(b0 - b[:, steps]).mean(axis=(1, 2))
    out = np.empty((k, k))
    for i in range(k):  # one row of pairs at a time: K x n x 3 floats, no K x K x n x 3 temporary
        out[i] = (np.abs(b0 - a0[i][None]) ** SHUFFLE_POWER).mean(axis=(1, 2))
    return out / (0.5 * (act_a[:, None] + act_b[None, :]) + SHUFFLE_NOISE) ** SHUFFLE_POWER


def shuffle_pair_costs(img: np.ndarray, meta: dict) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(H, V, white): H[i, j] the cost of displayed patch j right of patch i, V[i, j] of j below i; ``white`` the
    display index of the white patch of a ``_mask`` variant (None otherwise)."""
    from ssrl_plugin.tasks.grid import comparison_mask

    rows, cols = (int(v) for v in meta["grid"])
    boxes = meta["display_boxes"]
    pw, ph = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
    # the drawn border covers the first and last border_px pixels of a patch; one more is left for JPEG ringing
    m = max(0, int(meta.get("border_px", 1))) + SHUFFLE_RINGING
    steps = 2 * m + 1  # from the last line used of a patch to the first line used of its neighbour
    depth = max(1, min(steps, (min(pw, ph) - 2 * m) // 2 - 1))  # lines 0..depth on each side
    # comparison_mask drops border_px + 2 on each side and every label box (padded by 2): keep just m off
    mask = comparison_mask(ph, pw, boxes, meta.get("label_boxes", []), m - 2)
    patches = np.stack([img[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes])  # (K, ph, pw, 3) uint8
    k = len(patches)
    white = None
    if meta.get("masked") or str(meta.get("variant", "")).endswith("_mask"):
        vis = patches[:, ::4, ::4][:, mask[::4, ::4]].astype(np.float32)  # every 4th pixel: (K, n, 3)
        white = int(np.argmax(vis.mean(axis=(1, 2)) - vis.std(axis=(1, 2))))

    def lines(get) -> np.ndarray:  # (K, depth + 1, n, 3) float32, each line smoothed along the edge
        return np.stack([_smooth_along(get(t).astype(np.float32), SHUFFLE_SMOOTH) for t in range(depth + 1)], axis=1)

    if cols > 1:
        right, left = lines(lambda t: patches[:, :, pw - 1 - m - t]), lines(lambda t: patches[:, :, m + t])
        ok = mask[:, pw - 1 - m - depth : pw - m].all(axis=1) & mask[:, m : m + depth + 1].all(axis=1)
        H = _edge_cost(right, left, ok, depth)
    else:
        H = np.zeros((k, k))
    if rows > 1:
        bottom, top = lines(lambda t: patches[:, ph - 1 - m - t]), lines(lambda t: patches[:, m + t])
        ok = mask[ph - 1 - m - depth : ph - m].all(axis=0) & mask[m : m + depth + 1].all(axis=0)
        V = _edge_cost(bottom, top, ok, depth)
    else:
        V = np.zeros((k, k))
    off = ~np.eye(k, dtype=bool)
    if white is not None:
        off[white, :] = off[:, white] = False
        for M in (H, V):
            neutral = float(np.median(M[off])) if off.any() else 0.0
            M[white, :] = neutral
            M[:, white] = neutral
    return H, V, white


@lru_cache(maxsize=8)
def _permutations(k: int) -> np.ndarray:
    """(k! - 1, k) every permutation of range(k) but the identity, int8."""
    perms = np.array(list(itertools.permutations(range(k))), np.int8)
    return perms[1:]  # itertools starts with the identity


def _adjacent(rows: int, cols: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    horiz = [(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)]
    vert = [(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)]
    return horiz, vert


def _beam(H: np.ndarray, V: np.ndarray, rows: int, cols: int, width: int = BEAM_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Arrangements (position -> patch) placed in reading order, the ``width`` cheapest partial ones kept; returns
    the final beam (B, K) and its costs, cheapest first."""
    k = rows * cols
    states = np.zeros((1, 0), np.int64)
    cost = np.zeros(1)
    for pos in range(k):
        r, c = divmod(pos, cols)
        used = np.zeros((len(states), k), bool)
        if pos:
            np.put_along_axis(used, states, True, axis=1)
        add = np.zeros((len(states), k))
        if c > 0:
            add += H[states[:, pos - 1]]
        if r > 0:
            add += V[states[:, pos - cols]]
        total = np.where(used, np.inf, cost[:, None] + add).ravel()
        n = min(width, int(np.isfinite(total).sum()))
        keep = np.argpartition(total, n - 1)[:n] if n < total.size else np.arange(total.size)
        keep = keep[np.isfinite(total[keep])]
        keep = keep[np.argsort(total[keep], kind="stable")]
        parent, patch = np.divmod(keep, k)
        states = np.concatenate([states[parent], patch[:, None]], axis=1)
        cost = total[keep]
    return states, cost


def best_arrangement(H: np.ndarray, V: np.ndarray, rows: int, cols: int, truth: list[int] | None = None) -> tuple[list[int], float, int]:
    """(arrangement: the patch at each original position, expected exact score against ``truth``, tied count) of
    the least total seam cost, the identity order excluded."""
    k = rows * cols
    horiz, vert = _adjacent(rows, cols)
    if k <= EXHAUSTIVE_MAX:
        perms = _permutations(k).astype(np.intp)
        cost = np.zeros(len(perms))
        for a, b in horiz:
            cost += H[perms[:, a], perms[:, b]]
        for a, b in vert:
            cost += V[perms[:, a], perms[:, b]]
    else:
        perms, cost = _beam(H, V, rows, cols)
        keep = (perms != np.arange(k)).any(axis=1)
        perms, cost = perms[keep], cost[keep]
    best = float(cost.min())
    tied = np.flatnonzero(cost <= best + TIE * (1.0 + abs(best)))
    pred = [int(v) for v in perms[tied[0]]]
    score = 0.0
    if truth is not None and len(truth) == k:
        score = float((perms[tied] == np.asarray(truth)).all(axis=1).sum()) / len(tied)
    return pred, score, int(len(tied))


def solve_shuffle(row) -> dict[str, Any]:
    meta = row.metadata
    rows, cols = (int(v) for v in meta["grid"])
    img = _image(row, 0)
    H, V, white = shuffle_pair_costs(img, meta)
    truth = [int(t) for t in row.answer.split("-")]
    pred, correct, tied = best_arrangement(H, V, rows, cols, truth)
    per_position = sum(p == t for p, t in zip(pred, truth)) / len(truth)
    return {"correct": correct, "pred": "-".join(map(str, pred)), "answer": row.answer, "per_position": per_position,
            "white": white, "tied": tied}


# ============================================================================================ the audit rows
SOLVERS = {"crop": solve_crop, "shuffle": solve_shuffle}
SOLVER_NAMES = {
    "crop": "edge continuity: candidate with the smoothest seam against the hole's surroundings",
    "shuffle": "patch-edge compatibility: least-cost arrangement of the patches",
}


def sighted_item(row) -> dict[str, Any] | None:
    """The sighted solver's verdict on one stored row (``data_builders.stats.Row``): ``{"correct": float in [0, 1],
    "pred": ..., ...}``; None for a task without a sighted solver."""
    from . import task_hooks

    solver = SOLVERS.get(row.task) or task_hooks.hook(row.task, "sighted_item")
    return solver(row) if solver is not None else None


def _chance(task: str, variant: str, items: list[dict]) -> float:
    if task == "shuffle":
        k = len(str(items[0]["answer"]).split("-")) if items else 2
        return 1.0 / (math.factorial(k) - 1) if k > 1 else 1.0
    return 0.25


HARD_LEVEL = 2  # rows at this difficulty level or above are built to defeat the sighted solvers


def audit_sighted(task: str, variant: str, items: list[dict]) -> list:
    """``SolverResult`` rows (kind "sighted") for the items of one task/variant (the dicts of :func:`sighted_item`
    with "id", "group" and "level" added): score = the sum of "correct". Rows built without a level or at level 1
    are counted (they must be solvable); rows of harder levels, which are meant to defeat this solver, are reported
    as reference (``verify`` still re-derives every one of their answers)."""
    from . import task_hooks

    own = task_hooks.hook(task, "sighted")
    if own is not None:
        return own(variant, items)
    easy = [it for it in items if (it.get("level") or 1) < HARD_LEVEL]
    hard = [it for it in items if (it.get("level") or 1) >= HARD_LEVEL]
    results = [_sighted_result(task, variant, easy, counted=True)] if easy else []
    if hard:
        result = _sighted_result(task, variant, hard, counted=False)
        result.solver += f" [difficulty level >= {HARD_LEVEL}: harder on purpose]"
        results.append(result)
    return results


def _sighted_result(task: str, variant: str, items: list[dict], counted: bool):
    from .audit import SolverResult, wilson

    n = len(items)
    score = float(sum(float(it["correct"]) for it in items))
    chance = _chance(task, variant, items)
    if task == "shuffle":
        pos = sum(float(it.get("per_position", 0.0)) for it in items) / n if n else 0.0
        detail = (f"exhaustive over the {math.factorial(len(str(items[0]['answer']).split('-'))) - 1 if n else 0} "
                  f"non-identity orders up to {EXHAUSTIVE_MAX} patches, beam {BEAM_WIDTH} beyond; "
                  f"per-position accuracy {pos:.1%}")
    elif task == "crop":
        sides = sum(it.get("sides", 0) for it in items) / n if n else 0.0
        ratios = sorted(float(it.get("ratio", 1.0)) for it in items)
        median = ratios[len(ratios) // 2] if ratios else 1.0
        detail = (f"seam cost over {CROP_ROWS} option px each side of the hole's edge ({sides:.2f} sides of 4 on "
                  f"average); median best / second-best cost {median:.2f}")
    else:
        detail = ""
    if n:
        wrong = [str(it.get("id", "?")) for it in items if float(it["correct"]) < 1.0]
        if wrong:
            detail += f"; {len(wrong)} not solved, e.g. {', '.join(wrong[:3])}"
    result = SolverResult(task, variant, solver=SOLVER_NAMES.get(task, "sighted"), target="answer", n=n, score=score,
                          chance=chance, counted=counted, detail=detail, kind="sighted")
    result.accuracy = score / n if n else 0.0
    result.margin = result.accuracy - chance
    result.ci95 = wilson(score, n, NormalDist().inv_cdf(0.975))
    return result
