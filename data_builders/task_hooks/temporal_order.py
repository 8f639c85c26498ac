"""What verify, audit and the gallery know about ``temporal_order`` (see :mod:`ssrl_plugin.tasks.temporal_order`).

- ``check_metadata``: the answer is the labels sorted by the recorded timestamps, the anchor is the earliest, the
  gaps and the margin respect the recorded thresholds.
- Rule solvers (``extract`` + ``audit``), all blind to what the frames show and cross-fitted on source-split
  halves: the most frequent answer; the most frequent label at each rank; the label's offset from the anchor at each
  rank (the anchor prior: "the frames after the anchor come in prompt order" and every cyclic rule like it); without
  an anchor, the most frequent earliest label; and every per-image statistic a real camera could let drift in time
  (brightness, contrast, sharpness: motion blur, exposure drift; stored JPEG bytes) sorted ascending or descending
  after the anchor, the direction fitted per half. Chance: 1/(K-1)! for the exact answer with an anchor (1/K!
  without), 1/(K-1) (1/K) per free rank.
- Learned solvers (``learned_item`` + ``learned``): gradient-boosted trees on the statistics of each image on its own
  (:func:`data_builders.audit_learned.image_stats`, stored bytes) plus the anchor flag give each image's rank
  probabilities, linear assignment makes the order (as ``learned_shuffle`` does): reference only, like shuffle's,
  since statistics drift smoothly with the content and "least like the anchor comes last" is continuity seen through
  a keyhole. The time-arrow test (:func:`time_arrow`: forward vs reversed from the statistics in time order) is
  counted without an anchor; with one it is reference (the question gives the direction). It found 55-60 % on the
  demo paths of version 1, which moved forward in 31 % of the frame steps and back in 9 %, and still 58.6 % on
  version 2 (1,000 rows, seed 41), which travels both ways about as often (18 % / 20 %) but starts every path at
  the room's edge looking in. With version 2 the counted "sorted in time" rules fell from +6.4 points (sharpness)
  to at most +2.8 on the same build.
- Sighted solver (``sighted_item`` + ``sighted``): the visual-continuity path on the STORED images (thumbnails as the
  task measures them, from each item's last shown frame to the next item's first), the anchor fixed from the
  question, every order scored; it must solve level-1 rows (and rows without a level); harder levels are reference.
- ``overlay``: the items in true order with their timestamps, the distance along the path and the runner-up order.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

TASK = "temporal_order"
STATS = ("brightness", "contrast", "sharpness", "bytes")


def _labels(answer: str) -> list[str]:
    return [t.strip() for t in answer.split("-")]


def _chances(k: int, anchored: bool) -> tuple[float, float]:
    """(exact answer, share of the free ranks right) of a blind guess that knows the anchor when there is one."""
    return (1.0 / math.factorial(k - 1), 1.0 / (k - 1)) if anchored else (1.0 / math.factorial(k), 1.0 / k)


# ============================================================================================ verify (no source)
def check_metadata(answer: str, meta: dict) -> list[str]:
    k = int(meta["num_frames"])
    items = meta["items"]
    labels = _labels(answer)
    if sorted(labels, key=int) != [str(i) for i in range(1, k + 1)]:
        return [f"answer {answer!r} is not a permutation of 1..{k}"]
    by_time = [str(it["label"]) for it in sorted(items, key=lambda it: float(it["timestamps"][0]))]
    problems = []
    if by_time != labels or [str(v) for v in meta["order"]] != labels:
        problems.append(f"recorded timestamps order the items {'-'.join(by_time)} (order {meta['order']}), the answer "
                        f"says {answer}")
    if any(int(it["rank"]) != by_time.index(str(it["label"])) for it in items):
        problems.append("recorded ranks disagree with the recorded timestamps")
    if meta.get("anchor_first") and str(meta.get("anchor_label")) != labels[0]:
        problems.append(f"anchor label {meta.get('anchor_label')} is not the answer's first label {labels[0]}")
    th = meta["thresholds"]
    starts = sorted(float(it["timestamps"][0]) for it in items)
    for a, b in zip(starts, starts[1:]):
        if not th["min_gap_s"] - 1e-6 <= b - a <= th["max_gap_s"] + 1e-6:
            problems.append(f"items at {a:.4g} s and {b:.4g} s are outside the {th['min_gap_s']}-{th['max_gap_s']} s gaps")
    if not float(meta["margin"]) >= float(th["min_margin"]) - 1e-9:
        problems.append(f"margin {meta['margin']} is below min_margin {th['min_margin']}")
    if th.get("max_margin") is not None and float(meta["margin"]) > float(th["max_margin"]) + 1e-9:
        problems.append(f"margin {meta['margin']} is above max_margin {th['max_margin']}")
    return problems


# ============================================================================================ rule solvers
def extract(row, base: dict) -> dict[str, Any]:
    """Labels in time order, the anchor, and per image (prompt order) its brightness, contrast, sharpness and
    stored bytes."""
    from ..audit import image_features

    meta = row.metadata
    k = int(meta["num_frames"])
    feats: dict[str, list[float]] = {f: [] for f in STATS}
    for i in range(k):
        f = image_features(row.array(i))
        for name in ("brightness", "contrast", "sharpness"):
            feats[name].append(f[name])
        feats["bytes"].append(float(len(row.images[i])))
    anchor = meta.get("anchor_label") if meta.get("anchor_first") else None
    return {**base, "k": k, "order": _labels(base["answer"]), "anchor": None if anchor is None else str(anchor),
            "feats": feats}


def _free(it: dict) -> list[int]:
    """Ranks a blind solver must place (all but the anchor's)."""
    return list(range(1 if it["anchor"] is not None else 0, it["k"]))


def _score(pred: list[str], it: dict) -> tuple[float, float]:
    """(exact, share of the free ranks right)."""
    free = _free(it)
    right = sum(pred[r] == it["order"][r] for r in free if r < len(pred))
    return float(pred == it["order"]), right / len(free)


def _by_feature(it: dict, feature: str, descending: bool) -> list[str]:
    """The anchor first (when given), then the other labels sorted by one statistic of their image."""
    vals = it["feats"][feature]
    rest = [str(i + 1) for i in range(it["k"]) if str(i + 1) != it["anchor"]]
    rest.sort(key=lambda lab: (vals[int(lab) - 1], int(lab)), reverse=descending)
    return ([it["anchor"]] if it["anchor"] is not None else []) + rest


def _by_anchor(it: dict, feature: str) -> list[str]:
    """The anchor, then the other labels by how close one statistic of their image is to the anchor's."""
    vals = it["feats"][feature]
    ref = vals[int(it["anchor"]) - 1]
    rest = [str(i + 1) for i in range(it["k"]) if str(i + 1) != it["anchor"]]
    rest.sort(key=lambda lab: (abs(vals[int(lab) - 1] - ref), int(lab)))
    return [it["anchor"], *rest]


def audit(items: list, variant: str) -> list:
    from ..audit import _group_results, _most_frequent, cross_fit, solve_most_frequent

    items = [it for it in items if len(it["order"]) == it["k"]]
    if not items:
        return []
    k, anchored = items[0]["k"], items[0]["anchor"] is not None
    exact_chance, pos_chance = _chances(k, anchored)
    rows = []
    s, d = solve_most_frequent(items, "answer")
    rows.append(("most frequent answer", "answer", s, 1.0 / math.factorial(k), d + " (blind to the anchor: chance 1/K!)", True))

    def both(name: str, fit, predict, detail) -> None:
        exact, models = cross_fit(items, fit, lambda m, it: _score(predict(m, it), it)[0])
        pos, _ = cross_fit(items, fit, lambda m, it: _score(predict(m, it), it)[1])
        text = detail(models)
        rows.append((name, "answer", exact, exact_chance, text, True))
        rows.append((name, "per rank", pos, pos_chance, text, True))

    def fit_rank_label(train: list) -> list[str]:
        return [(_most_frequent([{"v": it["order"][r]} for it in train], "v") or ["1"])[0] for r in range(k)]

    def predict_rank_label(model: list[str], it: dict) -> list[str]:
        return ([it["anchor"]] + model[1:]) if it["anchor"] is not None else model

    both("most frequent label per rank", fit_rank_label, predict_rank_label,
         lambda ms: "per half: " + " / ".join("-".join(m) for m in ms))
    if anchored:
        def fit_offset(train: list) -> list[int]:
            return [(_most_frequent([{"v": (int(it["order"][r]) - int(it["anchor"])) % k} for it in train], "v") or [0])[0]
                    for r in range(k)]

        def predict_offset(model: list[int], it: dict) -> list[str]:
            return [it["anchor"]] + [str((int(it["anchor"]) - 1 + model[r]) % k + 1) for r in range(1, k)]

        both("label offset from the anchor per rank (anchor prior)", fit_offset, predict_offset,
             lambda ms: "offsets per half: " + " / ".join("-".join(map(str, m)) for m in ms))
    else:
        s, d = solve_most_frequent([{**it, "first": it["order"][0]} for it in items], "first")
        rows.append(("most frequent earliest label", "earliest label", s, 1.0 / k, d, True))
    for f in STATS:
        def fit_dir(train: list, f=f) -> bool:
            asc = sum(_score(_by_feature(it, f, False), it)[1] for it in train)
            desc = sum(_score(_by_feature(it, f, True), it)[1] for it in train)
            return desc > asc

        # Within a second or two a frame statistic drifts smoothly with the content, so the items sorted by it come
        # out in time order or reversed; a fixed direction then gets half of those right with no time arrow at all.
        # The question is whether the FITTED direction beats a coin flip (a drift that runs the same way in every
        # video: exposure, motion blur, encoder quality), so that is the chance it is compared with.
        coin = [tuple((a + b) / 2 for a, b in zip(_score(_by_feature(it, f, False), it), _score(_by_feature(it, f, True), it)))
                for it in items]
        exact, models = cross_fit(items, fit_dir, lambda desc, it, f=f: _score(_by_feature(it, f, desc), it)[0])
        pos, _ = cross_fit(items, fit_dir, lambda desc, it, f=f: _score(_by_feature(it, f, desc), it)[1])
        text = ("earliest first = " + " / ".join("largest" if m else "smallest" for m in models)
                + "; chance = either direction at random on the same rows (a drift without a time arrow)")
        name = f"image {f} sorted in time, fitted direction"
        rows.append((name, "answer", exact, sum(c[0] for c in coin) / len(items), text, True))
        rows.append((name, "per rank", pos, sum(c[1] for c in coin) / len(items), text, True))
        if anchored:
            near = [_score(_by_anchor(it, f), it) for it in items]
            rows.append((f"image {f} closest to the anchor's first", "answer", sum(v[0] for v in near), exact_chance,
                         "reference only: continuity of one number per frame, a 1-pixel thumbnail of what the "
                         "sighted solver compares", False))
    return _group_results(TASK, variant, len(items), rows)


# ============================================================================================ learned solver
def learned_item(row, image, rule_item: dict) -> dict[str, Any] | None:
    """(K, F): the statistics of each image on its own, its stored bytes and whether the question names it."""
    import numpy as np

    from ..audit_learned import IMAGE_FEATURES, _matrix, image_stats

    meta = row.metadata
    k = int(meta["num_frames"])
    arrays = [image(i) for i in range(k)]
    if len({a.shape for a in arrays}) != 1:
        return None
    stats = image_stats(np.stack(arrays))
    stats["bytes"] = np.array([len(row.images[i]) for i in range(k)], np.float64)
    anchor = meta.get("anchor_label") if meta.get("anchor_first") else None
    stats["anchor"] = np.array([float(str(i + 1) == str(anchor)) for i in range(k)])
    return {"x": _matrix(stats, [*IMAGE_FEATURES, "bytes", "anchor"])}


def learned(items: list[dict], variant: str) -> list:
    import numpy as np

    from ..audit_learned import IMAGE_FEATURES, _assign_solver

    items = [it for it in items if len(it["order"]) == it["k"] == it["learned"]["x"].shape[0]]
    if not items:
        return []
    k, anchored = items[0]["k"], items[0]["anchor"] is not None
    names = {**IMAGE_FEATURES, "bytes": "bytes", "anchor": "anchor flag"}
    target = np.array([[it["order"].index(str(lab)) for lab in range(1, k + 1)] for it in items], np.int64)
    exact, pos = _chances(k, anchored)
    pos_all = (1.0 + (k - 1) * pos) / k if anchored else pos  # scored over all K ranks, the anchor's included
    # Reference, as learned_shuffle: statistics drift smoothly with the content over a second or two, so the trees learn
    # "the item whose statistics are most unlike the anchor's comes last", continuity seen through a keyhole.
    out = _assign_solver(TASK, variant, items, target, names, "image statistics and the anchor flag", False,
                         (exact, pos_all), False, "; reference only: per-frame statistics drift smoothly with the content "
                         "(continuity through a keyhole); the time-arrow test below is the counted one")
    return out + time_arrow(items, variant, names, counted=not anchored)


def time_arrow(items: list[dict], variant: str, names: dict[str, str], counted: bool) -> list:
    """Can boosted trees tell a sample's items in time order from the same items reversed, given only each image's
    statistics (and their consecutive differences)? A drift common to the videos (exposure, motion blur, encoder
    quality, a camera that mostly moves forward) shows here; continuity alone cannot (a path and its reverse are
    equally continuous). Held-out score per sample: 1 when the forward arrangement gets the higher probability, 0.5
    on a tie. Counted without an anchor, where the direction is part of the answer; with one the question states the
    direction, and the channel through which a drift could order the other items is counted by the rule solvers
    (a statistic sorted in the fitted direction against a coin-flip direction), so it is reported as reference."""
    import numpy as np

    from ..audit_learned import _folds_for, _model, _result, _stack

    got, x = _folds_for(items), _stack(items)
    if got is None or x is None:
        return []
    folds, nfolds = got
    n, k, _ = x.shape
    order = np.array([[int(lab) - 1 for lab in it["order"]] for it in items])
    feats = [name for name in names if name != "anchor"]
    cols = [list(names).index(name) for name in feats]
    xt = x[np.arange(n)[:, None], order][:, :, cols]  # (n, K, F) in time order, the anchor flag left out

    def arrange(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a.reshape(n, -1), np.diff(a, axis=1).reshape(n, -1)], axis=1)

    fwd, rev = arrange(xt), arrange(xt[:, ::-1])
    layout = [*(f for _ in range(k) for f in feats), *(f for _ in range(k - 1) for f in feats)]

    def scores(use: np.ndarray | None) -> np.ndarray:
        out = np.zeros(n)
        for fold in np.unique(folds):
            tr, te = folds != fold, folds == fold
            a, b = (fwd, rev) if use is None else (fwd[:, use], rev[:, use])
            model = _model(use is not None).fit(np.concatenate([a[tr], b[tr]]), np.r_[np.ones(tr.sum()), np.zeros(tr.sum())])
            pf, pr = model.predict_proba(a[te])[:, 1], model.predict_proba(b[te])[:, 1]
            out[te] = np.where(np.isclose(pf, pr, rtol=0, atol=1e-12), 0.5, (pf > pr).astype(float))
        return out

    groups = {}
    for g in dict.fromkeys(names[f] for f in feats):
        use = np.array([i for i, f in enumerate(layout) if names[f] == g])
        groups[g] = float(scores(use).mean())
    top = sorted(groups.items(), key=lambda kv: -kv[1])[:3]
    detail = (f"{nfolds}-fold source-grouped cross-fit, gradient-boosted trees on {len(feats)} statistics of each image "
              f"in time order and their differences, forward vs reversed; most useful group (fitted alone): "
              + ", ".join(f"{g} {v:.1%}" for g, v in top))
    if not counted:
        detail += "; reference only: the question names the earliest item, so the direction is given"
    return [_result(TASK, variant, "learned: time arrow of image statistics (forward vs reversed)", "time direction",
                    scores(None), 0.5, detail, groups, counted)]


# ============================================================================================ sighted solver
def _shown_thumbs(row) -> tuple[Any, Any]:
    """(first, last) thumbnails (K, h, w) of each stored image's first and last shown frame, prompt order."""
    import numpy as np

    from ssrl_plugin.tasks.temporal_order import thumbnail

    meta = row.metadata
    k, c = int(meta["num_frames"]), int(meta["clip_frames"])
    w, h = (int(v) for v in meta["frame_size"])
    gap = int(meta.get("tile_gap", 0))
    tw, th = (int(v) for v in meta["thresholds"]["thumb_size"])
    first, last = [], []
    for i in range(k):
        img = row.array(i)
        first.append(thumbnail(img[:h, :w], tw, th))
        x0 = (c - 1) * (w + gap)
        last.append(thumbnail(img[:h, x0:x0 + w], tw, th))
    return np.stack(first), np.stack(last)


def sighted_item(row) -> dict[str, Any]:
    """Cheapest path by visual continuity through the shown images, the anchor (named in the question) first."""
    import numpy as np

    from ssrl_plugin.tasks.temporal_order import candidate_orders, distance_matrix

    meta = row.metadata
    k = int(meta["num_frames"])
    first, last = _shown_thumbs(row)
    dist = distance_matrix(first, last, int(meta["thresholds"].get("max_shift", 0)))  # prompt order: dist[a, b] = cost of label b + 1 right after label a + 1
    anchor = int(meta["anchor_label"]) - 1 if meta.get("anchor_first") else None
    if anchor is None:
        orders = candidate_orders(k, False)
    else:  # the anchored orders of candidate_orders start with 0: relabel so item 0 is the anchor
        swap = np.arange(k)
        swap[0], swap[anchor] = anchor, 0
        orders = swap[candidate_orders(k, True)]
    cost = dist[orders[:, :-1], orders[:, 1:]].sum(axis=1)
    best = float(cost.min())
    tied = np.flatnonzero(cost <= best + 1e-9 * (1.0 + abs(best)))
    truth = np.array([int(v) - 1 for v in _labels(row.answer)])
    correct = float((orders[tied] == truth).all(axis=1).sum()) / len(tied)
    pred = [int(v) for v in orders[tied[0]]]
    per_rank = float(np.mean(np.asarray(pred) == truth))
    return {"correct": correct, "pred": "-".join(str(v + 1) for v in pred), "answer": row.answer,
            "per_rank": per_rank, "tied": int(len(tied)), "anchored": anchor is not None, "k": k}


def sighted(variant: str, items: list[dict]) -> list:
    from statistics import NormalDist

    from ..audit import SolverResult, wilson

    easy = [it for it in items if (it.get("level") or 1) < 2]
    hard = [it for it in items if (it.get("level") or 1) >= 2]
    out = []
    for group, counted in ((easy, True), (hard, False)):
        if not group:
            continue
        n = len(group)
        k = int(group[0]["k"])
        chance = _chances(k, bool(group[0]["anchored"]))[0]
        score = float(sum(float(it["correct"]) for it in group))
        wrong = [str(it.get("id", "?")) for it in group if float(it["correct"]) < 1.0]
        detail = (f"cheapest path by thumbnail continuity over every {'anchored ' if group[0]['anchored'] else ''}order; "
                  f"per-rank accuracy {sum(it['per_rank'] for it in group) / n:.1%}")
        if wrong:
            detail += f"; {len(wrong)} not solved, e.g. {', '.join(wrong[:3])}"
        name = "visual continuity: cheapest path through the shown frames"
        if not counted:
            name += " [difficulty level >= 2: harder on purpose]"
        r = SolverResult(TASK, variant, solver=name, target="answer", n=n, score=score, chance=chance, counted=counted,
                         detail=detail, kind="sighted")
        r.accuracy = score / n
        r.margin = r.accuracy - chance
        r.ci95 = wilson(score, n, NormalDist().inv_cdf(0.975))
        out.append(r)
    return out


# ============================================================================================ gallery
def overlay(row, images: list, loader) -> Any:
    """The items in true order (left to right, wrapped at four), each with its label, rank, timestamp and frame
    indices, the continuity distance to the next one, and the runner-up order."""
    from ..preview import Overlay, _caption, _fit, _hstack, _vstack

    meta = row.metadata
    notes = []
    labels = _labels(row.answer)
    items = {str(it["label"]): it for it in meta["items"]}
    if [str(v) for v in meta.get("order", [])] != labels:
        notes.append(f"metadata order {meta.get('order')} differs from the answer {row.answer}")
    dist = meta.get("distance_matrix") or []
    cells = []
    for r, lab in enumerate(labels):
        it = items.get(lab)
        if it is None or not 0 < int(lab) <= len(images):
            notes.append(f"answer label {lab} has no image")
            continue
        img, _ = _fit(images[int(lab) - 1], 260)
        lines = [f"#{r + 1}: {'Clip' if int(meta.get('clip_frames', 1)) > 1 else 'Frame'} {lab}"
                 f"{' (anchor)' if meta.get('anchor_first') and str(meta.get('anchor_label')) == lab else ''}",
                 f"t = {float(it['timestamps'][0]):.3f} s, frame {it['frame_indices'][0]}"]
        if r + 1 < len(labels) and r + 1 < len(dist):
            lines.append(f"-> next: distance {float(dist[r][r + 1]):.2f}")
        cells.append(_caption(img, lines, size=13, width=img.width))
    rows_ = [_hstack(cells[i:i + 4]) for i in range(0, len(cells), 4)] or [_fit(images[0])[0]]
    runner = meta.get("runner_up_order")
    runner_text = "-".join(labels[i] for i in runner) if runner and len(runner) == len(labels) else "?"
    summary = [f"answer {row.answer} (earliest to latest); path cost {meta.get('path_cost')}, runner-up order "
               f"{runner_text} costs {meta.get('margin')} mean steps more",
               f"gaps {', '.join(f'{float(g):.2f}' for g in meta.get('gaps_s', []))} s"]
    return Overlay(_caption(_vstack(rows_), summary, size=14), notes)
