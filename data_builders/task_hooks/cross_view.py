"""cross_view's tools: metadata check, blind audit (rules and boosted trees), sighted solver, gallery overlay.

Blind solvers (must stay at chance, 1/4; depth is not shown, so they see only positions and the marked regions'
pixels): the most frequent letter; the candidate nearest the query's position (as shown in image 1, and scaled
from the crop to frame 2's size), the one on the query's row, the one nearest the image centre (each also as a
fitted rank rule); the candidate with the largest / smallest / most typical brightness, contrast, sharpness of its
marked region; boosted trees on every candidate's position (absolute, relative to the query's shown and scaled
positions, to the centre), its region statistics and its letter. The construction decides the answer after the four
candidates are drawn and draws the query's shown position independently of which one it is, so all of these score
chance by design (see :mod:`ssrl_plugin.tasks.cross_view`).

Sighted solver: patch matching. The query's window (shrunk by the round-trip tolerance) is compared with every
position of each candidate's window within that tolerance by normalised cross-correlation on colour; the candidate
with the best score is the prediction. Counted on level-1 rows (and rows without a level), reference above.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LETTERS = "ABCD"
REGION = ("brightness", "contrast", "sharpness")
POSITION = ("dist_query", "dist_query_scaled", "row_offset", "dist_centre")


# ============================================================================================ verify
def check_metadata(answer: str, meta: dict) -> list[str]:
    """The recorded projection lies in the answer's box and no other, the answer is the recorded one, and the query's
    shown box is its frame-1 box moved by the crop."""
    problems = []
    if meta.get("answer") != answer:
        problems.append(f"metadata answer {meta.get('answer')!r}, the row's answer {answer!r}")
    u, v = meta["projection"][:2]
    holding = [c["label"] for c in meta["candidates"] if c["box"][0] <= u < c["box"][2] and c["box"][1] <= v < c["box"][3]]
    if holding != [answer]:
        problems.append(f"the recorded projection ({u:.1f}, {v:.1f}) lies in {holding or 'no box'}, the answer is {answer}")
    if [c["label"] for c in meta["candidates"]] != list(LETTERS):
        problems.append(f"candidates {[c['label'] for c in meta['candidates']]} are not A-D")
    ox, oy = meta["crop_box"][:2]
    shown = [a + b for a, b in zip(meta["query"]["shown_box"], (ox, oy, ox, oy))]
    if shown != list(meta["query"]["box"]):
        problems.append(f"query box {meta['query']['box']} != shown box {meta['query']['shown_box']} + crop offset")
    return problems


# ============================================================================================ rule solvers
def _positions(meta: dict) -> dict[str, list[float]]:
    """Per candidate (A-D): distance to the query's shown position, to it scaled from the crop to frame 2, the row
    offset to it, distance to frame 2's centre; all in fractions of frame 2's diagonal."""
    (cw, ch), (w, h) = meta["image_sizes"]
    diag = math.hypot(w, h)
    qx, qy = meta["query"]["shown_center"]
    sx, sy = (qx + 0.5) * w / cw, (qy + 0.5) * h / ch
    out: dict[str, list[float]] = {k: [] for k in POSITION}
    for c in meta["candidates"]:
        x, y = c["center"][0] + 0.5, c["center"][1] + 0.5
        out["dist_query"].append(math.hypot(x - qx - 0.5, y - qy - 0.5) / diag)
        out["dist_query_scaled"].append(math.hypot(x - sx, y - sy) / diag)
        out["row_offset"].append(abs(y - qy - 0.5) / diag)
        out["dist_centre"].append(math.hypot(x - w / 2, y - h / 2) / diag)
    return out


def extract(row, base: dict) -> dict[str, Any]:
    from data_builders.audit import image_features

    meta = row.metadata
    img = row.array(1)
    feats: dict[str, list[float]] = {k: [] for k in REGION}
    for c in meta["candidates"]:
        x0, y0, x1, y1 = c["box"]
        f = image_features(img[y0:y1, x0:x1])
        for k in REGION:
            feats[k].append(f[k])
    feats.update(_positions(meta))
    return {**base, "answer_index": LETTERS.index(row.answer) if row.answer in LETTERS else -1, "feats": feats}


def audit(items: list[dict], variant: str) -> list:
    from data_builders.audit import _group_results, choose, set_score, solve_choice, solve_most_frequent

    items = [it for it in items if it["answer_index"] >= 0]
    if not items:
        return []
    rows = []
    s, d = solve_most_frequent(items, "answer")
    rows.append(("most frequent letter", "answer", s, 0.25, d, True))
    fixed = {"dist_query": "nearest the query's position in image 1 (same pixel coordinates)",
             "dist_query_scaled": "nearest the query's position scaled from the crop to frame 2",
             "row_offset": "on the query's row (smallest vertical offset)",
             "dist_centre": "nearest the image centre"}
    for f, text in fixed.items():
        s = sum(set_score(choose(it["feats"][f], "rank0"), it["answer_index"]) for it in items)
        rows.append((f"candidate {text}", "answer", s, 0.25, "fixed rule, no fitting", True))
    for f in POSITION + REGION:
        s, d = solve_choice(items, "feats", f, "answer_index")
        rows.append((f"candidate {f} (fitted rank rule)", "answer", s, 0.25, d, True))
    return _group_results("cross_view", variant, len(items), rows)


# ============================================================================================ learned solvers
CANDIDATE_FEATURES = {"x": "position", "y": "position", "dx_query": "position vs query", "dy_query": "position vs query",
                      "dist_query": "position vs query", "dx_scaled": "position vs scaled query",
                      "dy_scaled": "position vs scaled query", "dist_scaled": "position vs scaled query",
                      "dist_centre": "position", "badge_dx": "badge placement", "badge_dy": "badge placement"}
LETTER_FEATURES = {f"letter={v}": "letter" for v in LETTERS}


def _region_names() -> dict[str, str]:
    from data_builders.audit_learned import REGION_FEATURES

    return {f"region:{k}": f"region {g}" for k, g in REGION_FEATURES.items() if k not in ("y", "x", "area")}


def learned_item(row, image, rule_item: dict) -> dict[str, Any] | None:
    """(4, F): each candidate's position (absolute; relative to the query as shown and scaled to frame 2; to the
    centre; where its badge went), its marked region's statistics in image 2, its letter. Nothing of image 1's
    content (matching it is the task)."""
    from data_builders.audit_learned import image_stats

    meta = row.metadata
    cands = meta["candidates"]
    if len(cands) != 4:
        return None
    img = image(1)
    boxes = np.stack([img[c["box"][1]:c["box"][3], c["box"][0]:c["box"][2]] for c in cands])
    stats = image_stats(boxes)
    regions = _region_names()
    (cw, ch), (w, h) = meta["image_sizes"]
    diag = math.hypot(w, h)
    qx, qy = (v + 0.5 for v in meta["query"]["shown_center"])
    sx, sy = qx * w / cw, qy * h / ch
    rows = []
    for j, c in enumerate(cands):
        x, y = c["center"][0] + 0.5, c["center"][1] + 0.5
        bx, by = c.get("badge_center", [x, y])
        pos = {"x": x / w, "y": y / h, "dx_query": (x - qx) / diag, "dy_query": (y - qy) / diag,
               "dist_query": math.hypot(x - qx, y - qy) / diag, "dx_scaled": (x - sx) / diag, "dy_scaled": (y - sy) / diag,
               "dist_scaled": math.hypot(x - sx, y - sy) / diag, "dist_centre": math.hypot(x - w / 2, y - h / 2) / diag,
               "badge_dx": float(np.sign(bx - x)), "badge_dy": float(np.sign(by - y))}
        reg = [float(stats[name.split(":", 1)[1]][j]) for name in regions]
        rows.append([pos[k] for k in CANDIDATE_FEATURES] + reg + [float(j == i) for i in range(4)])
    return {"x": np.array(rows, np.float64)}


def learned(items: list[dict], variant: str) -> list:
    from data_builders.audit_learned import _choice_solver

    items = [it for it in items if it["answer_index"] >= 0 and it["learned"]["x"].shape[0] == 4]
    truth = np.array([it["answer_index"] for it in items], np.int64)
    names = {**CANDIDATE_FEATURES, **_region_names(), **LETTER_FEATURES}
    return _choice_solver("cross_view", variant, items, truth, names,
                          "candidate features (positions vs the query and the frame, region statistics, letter)",
                          "answer", 0.25)


# ============================================================================================ sighted solver
CONTEXT = 2.5  # the compared patch reaches this many window sides from the centre (marker pixels masked out)


def _marker_mask(h: int, w: int, marks: list[tuple[list[float], float, float]]) -> np.ndarray:
    """True where no marker is drawn: outside each ring's annulus (centre, inner, outer radius; badges are discs)."""
    yy, xx = np.mgrid[0:h, 0:w]
    free = np.ones((h, w), bool)
    for (cx, cy), r0, r1 in marks:
        d = np.hypot(xx - cx, yy - cy)
        free &= (d < r0) | (d > r1)
    return free


def ncc_scores(img1: np.ndarray, img2: np.ndarray, meta: dict) -> np.ndarray:
    """Per candidate: the best masked normalised cross-correlation (colour, mean-removed per channel) of the patch of
    ``CONTEXT`` window sides around the query with the patch around the candidate, at every offset within the
    round-trip tolerance; pixels under any drawn marker (rings, badges) in either image are left out."""
    from numpy.lib.stride_tricks import sliding_window_view

    side = int(meta["window_size"])
    tol = max(1, int(meta["thresholds"]["centre_tol_frac"] * side))
    ring, badge = float(meta["ring_radius"]), float(meta["badge_radius"])
    width = max(2, int(ring / 6)) + 2
    r = int(round(CONTEXT * side))
    q = meta["query"]
    m1 = _marker_mask(*img1.shape[:2], [(q["shown_center"], ring - width - 1, ring + 1), (q["badge_center"], -1, badge + 1)])
    m2 = _marker_mask(*img2.shape[:2], [m for c in meta["candidates"] for m in
                                        ((c["center"], ring - width - 1, ring + 1), (c["badge_center"], -1, badge + 1))])

    def patch(img, mask, cx, cy, half):
        """The (2 half + 1)^2 patch around (cx, cy) and where it is usable (inside the image, off the markers)."""
        h, w = mask.shape
        p = np.zeros((2 * half + 1, 2 * half + 1, 3), np.float32)
        ok = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
        y0, x0 = cy - half, cx - half
        ya, xa, yb, xb = max(0, y0), max(0, x0), min(h, cy + half + 1), min(w, cx + half + 1)
        p[ya - y0:yb - y0, xa - x0:xb - x0] = img[ya:yb, xa:xb]
        ok[ya - y0:yb - y0, xa - x0:xb - x0] = mask[ya:yb, xa:xb]
        return p, ok

    t, tok = patch(img1, m1, *q["shown_center"], r)
    t = t * tok[..., None]
    out = []
    for c in meta["candidates"]:
        p, pok = patch(img2, m2, *c["center"], r + tol)
        pv = sliding_window_view(p, t.shape, axis=(0, 1, 2))[:, :, 0]  # (n, n, 2r+1, 2r+1, 3): one per offset
        ov = sliding_window_view(pok, tok.shape) * tok  # pixels usable in both
        n = ov.sum(axis=(2, 3))[..., None]  # (n, n, 1)
        b = pv * ov[..., None]
        sa = np.einsum("ijyx,yxc->ijc", ov, t)
        sb, sbb = b.sum(axis=(2, 3)), (b * pv).sum(axis=(2, 3))
        saa = np.einsum("ijyx,yxc->ijc", ov, t * t)
        sab = np.einsum("ijyxc,yxc->ijc", b, t)
        nn = np.maximum(n, 1)
        cov = (sab - sa * sb / nn).sum(axis=2)
        var = np.sqrt(np.maximum((saa - sa * sa / nn).sum(axis=2), 0) * np.maximum((sbb - sb * sb / nn).sum(axis=2), 0))
        score = np.where(n[..., 0] >= side * side, cov / (var + 1e-6), -np.inf)
        out.append(float(score.max()))
    return np.array(out)


def sighted_item(row) -> dict[str, Any] | None:
    from data_builders.audit_sighted import _image, _tied_score

    meta = row.metadata
    scores = ncc_scores(_image(row, 0), _image(row, 1), meta)
    truth = LETTERS.index(row.answer) if row.answer in LETTERS else None
    pred, correct, tied = _tied_score(-scores, truth)
    order = np.sort(scores)[::-1]
    return {"correct": correct, "pred": LETTERS[pred], "answer": row.answer, "ncc": [round(float(s), 4) for s in scores],
            "margin": float(order[0] - order[1]), "tied": tied}


def sighted(variant: str, items: list[dict]) -> list:
    """Counted on level-1 rows and rows without a level (they must be solvable); harder levels, whose distractors look
    alike and whose views differ more, are reported as reference."""
    from statistics import NormalDist

    from data_builders.audit import SolverResult, wilson

    z = NormalDist().inv_cdf(0.975)
    out = []
    easy = [it for it in items if (it.get("level") or 1) < 2]
    hard = [it for it in items if (it.get("level") or 1) >= 2]
    for group, counted, tag in ((easy, True, ""), (hard, False, " [difficulty level >= 2: harder on purpose]")):
        if not group:
            continue
        n = len(group)
        score = float(sum(float(it["correct"]) for it in group))
        wrong = [str(it.get("id", "?")) for it in group if float(it["correct"]) < 1.0]
        margins = sorted(float(it.get("margin", 0.0)) for it in group)
        detail = (f"normalised cross-correlation of the query's window with each candidate's (colour, offsets within the "
                  f"round-trip tolerance); median best-minus-second score {margins[n // 2]:.3f}"
                  + (f"; {len(wrong)} not solved, e.g. {', '.join(wrong[:3])}" if wrong else ""))
        r = SolverResult("cross_view", variant, f"patch matching: best NCC of the query's window{tag}", "answer", n, score,
                         0.25, counted, detail, kind="sighted")
        r.accuracy, r.margin, r.ci95 = score / n, score / n - 0.25, wilson(score, n, z)
        out.append(r)
    return out


# ============================================================================================ gallery
def _epipolar(meta: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame 2's epipolar line of the query's centre (a, b, c with a u + b v + c = 0) and the epipole (None at
    infinity), from the recorded poses and intrinsics."""
    k = meta["intrinsics"]
    kmat = np.array([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1.0]])
    p1, p2 = (np.asarray(p, np.float64) for p in meta["poses"])
    rel = np.linalg.inv(p2) @ p1  # camera-1 coordinates into camera 2
    r, t = rel[:3, :3], rel[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    fmat = np.linalg.inv(kmat).T @ tx @ r @ np.linalg.inv(kmat)
    u, v = meta["query"]["pixel"]
    line = fmat @ np.array([u, v, 1.0])
    e = kmat @ t
    return line, (e[:2] / e[2] if abs(e[2]) > 1e-9 else None)


def overlay(row, images: list, loader) -> Any:
    from PIL import ImageDraw

    from data_builders.preview import GREEN, GREY, YELLOW, Overlay, _caption, _fit, _hstack, _scaled_box, _text

    meta = row.metadata
    notes = check_metadata(row.answer, meta)
    a, s1 = _fit(images[0], 360)
    d1 = ImageDraw.Draw(a)
    d1.rectangle(_scaled_box(meta["query"]["shown_box"], s1), outline=YELLOW, width=3)
    b, s2 = _fit(images[1], 480)
    d2 = ImageDraw.Draw(b)
    line = _epipolar(meta)
    if line is not None:
        (la, lb, lc), _ = line
        w, h = images[1].size
        pts = []
        for x in (0.0, float(w)):  # where the line crosses the left and right borders (or top/bottom when steep)
            if abs(lb) > 1e-9:
                pts.append((x, -(la * x + lc) / lb))
        if abs(lb) <= 1e-9 or any(not -h <= y <= 2 * h for _, y in pts):
            pts = [(-(lb * y + lc) / la, y) for y in (0.0, float(h))] if abs(la) > 1e-9 else pts
        if len(pts) == 2:
            d2.line([(x * s2, y * s2) for x, y in pts], fill=(80, 160, 255), width=2)
    for c in meta["candidates"]:
        colour = GREEN if c["label"] == row.answer else GREY
        d2.rectangle(_scaled_box(c["box"], s2), outline=colour, width=3)
        _text(d2, ((c["box"][0] + c["box"][2]) / 2 * s2, c["box"][3] * s2 + 14),
              f"{c['label']} {c['median_farness']:.2f} m", 13, anchor="md")
    u, v, z = meta["projection"]
    d2.line((u * s2 - 8, v * s2, u * s2 + 8, v * s2), fill=YELLOW, width=2)
    d2.line((u * s2, v * s2 - 8, u * s2, v * s2 + 8), fill=YELLOW, width=2)
    view = meta["view"]
    lines1 = [f"image 1: crop of frame {meta['frames'][0]} at {meta['crop_box'][:2]}",
              f"query Q (yellow), depth {meta['query']['median_farness']:.3f} m"]
    lines2 = [f"frame {meta['frames'][1]}: answer {row.answer} green, Q's projection yellow +",
              f"at ({u:.1f}, {v:.1f}), z {z:.3f} m; Q's epipolar line blue",
              f"rotation {view['rotation_deg']:.1f} deg, baseline {view['baseline']:.2f} m",
              f"parallax {view['parallax_deg']:.1f} deg, view change {view['view_deg']:.1f} deg"]
    return Overlay(_hstack([_caption(a, lines1, size=13), _caption(b, lines2, size=13)]), notes)
