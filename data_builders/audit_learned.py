"""Learned blind solvers for ``ssrl audit``: gradient-boosted trees on many statistics at once.

A rule solver of :mod:`data_builders.audit` looks at one statistic at a time. A shortcut can hide in a combination
of them (the true crop is a little sharper AND a little larger in bytes AND a little less saturated...), so each
task also gets a learned solver that sees everything a model could latch onto WITHOUT the information that defines
the answer, and tries to find the answer anyway:

- ``crop``: the four option images alone (not the picture with the hole): per-option statistics (colour moments,
  saturation, sharpness, gradient energies, edge density, spectrum bands, histogram entropy, JPEG blockiness,
  stored bytes, border brightness) and relational ones (how typical an option is of the other three, how close it
  is to a 90-degree rotation of another). One row per option, label "is the true option"; the sample's answer is
  the option with the highest predicted probability.
- ``flip``: each displayed patch on its own (never how patches continue into each other), with statistics that a
  flip does not change (moments, energies of |gx| and |gy|, spectrum, blockiness, bytes, the patch's own mirror
  asymmetries...): which patch is the flipped one?
- ``shuffle``: each displayed patch on its own: which original position does it come from? The per-patch position
  probabilities become a permutation by linear assignment (the identity, never an answer, is excluded); scored as
  the exact answer and per position. Reported as reference only: a patch's own content tells where it sits in a
  picture (sky at the top, ground below, a gradient of light or colour across it), the scene's layout, which no
  construction can hide without destroying the content (on the demo corpus, whose backgrounds are linear
  two-colour gradients, it finds 1x3 strips 30 % of the time, chance 20 %); the rule solvers still count each
  statistic of a patch on its own.
- ``position``: the question and options only (facing, camera label, option set, the word at each letter).
- ``depth``: brightness, contrast, sharpness, colour and height in the image of each marked region -> order. A real
  monocular cue, so reported as reference only.

Within a sample, every statistic is also given as a z-score across the sample's candidates and as a rank, so the
trees can compare candidates. Samples are cross-fitted in ``FOLDS`` folds that split the SOURCE images (every sample
of one picture is in the same fold); the accuracy is the held-out one. Each solver's most useful feature group is
found by fitting the same model on that group alone (same folds), so a failure says what to fix.

scikit-learn is an optional dependency (``pip install 'spatial-ssrl[audit]'``); it is imported only when used.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ssrl_plugin.imaging import grey

from . import task_hooks
from .audit import SolverResult, _hash, patch_mask

FOLDS = 5
MISSING = "learned solvers skipped: pip install 'spatial-ssrl[audit]'"
MIN_SAMPLES = 10  # fewer samples (or fewer than 2 sources) in a task/variant: no learned solver
SPECTRUM_SIDE = 128  # spectra on a block-mean reduction to at most this side
THUMB = 16  # thumbnails for the relational crop features
EDGE_THRESHOLD = 20.0  # grey gradient magnitude counted as an edge
MAX_SAMPLES = 40_000  # pixels per image for the per-pixel statistics: a centred window of larger images
# Modest trees, strongly L2-regularised leaves (a few hundred samples of 100+ columns overfit otherwise), no early
# stopping (deterministic, no validation split). The per-group fits take fewer, larger steps on smaller trees.
HGB_PARAMS = dict(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20, l2_regularization=10.0,
                  max_bins=64, early_stopping=False, random_state=0)
GROUP_PARAMS = dict(HGB_PARAMS, max_iter=30, learning_rate=0.25, max_leaf_nodes=7)


def available() -> bool:
    """True when scikit-learn and scipy can be imported."""
    try:
        import scipy.optimize  # noqa: F401
        import sklearn.ensemble  # noqa: F401
    except ImportError:
        return False
    return True


# ============================================================================================ image statistics
# name -> group; the order is the column order. Groups are what the report names as "most useful".
IMAGE_FEATURES: dict[str, str] = {
    "grey_mean": "brightness",
    "mean_r": "colour", "mean_g": "colour", "mean_b": "colour", "sat_mean": "saturation", "sat_std": "saturation",
    "grey_std": "contrast", "std_r": "contrast", "std_g": "contrast", "std_b": "contrast",
    "skew_r": "skewness", "skew_g": "skewness", "skew_b": "skewness", "grey_skew": "skewness",
    "lap_var": "sharpness",
    "gx_energy": "gradients", "gy_energy": "gradients", "abs_gx": "gradients", "abs_gy": "gradients",
    "gxy_log_ratio": "gradients",
    "edge_density": "edges", "edge_density_rel": "edges",
    "spec_low": "spectrum", "spec_mid": "spectrum", "spec_high": "spectrum", "spec_log_power": "spectrum",
    "entropy": "histogram",
    "block_h": "blockiness", "block_v": "blockiness",
}
BORDER_FEATURES = {"border_top": "border", "border_bottom": "border", "border_left": "border", "border_right": "border"}
# invariant under flipping the patch (|a - b| of the two sides, mirror differences)
ASYMMETRY_FEATURES = {"asym_tb": "asymmetry", "asym_lr": "asymmetry", "asym_v": "asymmetry", "asym_h": "asymmetry",
                      "asym_rot": "asymmetry", "asym_min": "asymmetry", "asym_min_ratio": "asymmetry"}
CROP_FEATURES = {**IMAGE_FEATURES, **BORDER_FEATURES, "bytes": "bytes", "bytes_per_px": "bytes",
                 "hist_to_others": "typicality", "hist_mean_pair": "typicality", "hist_min_pair": "typicality",
                 "thumb_mean_pair": "typicality", "thumb_min_pair": "typicality",
                 "rot_twin": "rotation twins", "rot_twin_ratio": "rotation twins"}
FLIP_FEATURES = {**IMAGE_FEATURES, **ASYMMETRY_FEATURES, "bytes": "bytes"}
SHUFFLE_FEATURES = {**IMAGE_FEATURES, **BORDER_FEATURES, **ASYMMETRY_FEATURES, "bytes": "bytes",
                    "tb_diff": "border", "lr_diff": "border"}
REGION_FEATURES = {"grey_mean": "brightness", "mean_r": "colour", "mean_g": "colour", "mean_b": "colour",
                   "sat_mean": "saturation", "grey_std": "contrast", "lap_var": "sharpness", "abs_gx": "gradients",
                   "abs_gy": "gradients", "edge_density": "edges", "y": "height in the image", "x": "image x",
                   "area": "size"}


def _mean(a: np.ndarray, m: np.ndarray | None) -> np.ndarray:
    """(N,) means of ``a`` (N, ...) over its trailing axes, over the pixels of ``m`` (the trailing shape) when given."""
    n = a.shape[0]
    flat = a.reshape(n, -1)
    if flat.dtype == bool:
        flat = flat.astype(np.float32)
    if m is None:
        return flat.mean(axis=1, dtype=np.float64)
    w = m.reshape(-1).astype(flat.dtype)
    cnt = float(w.sum())
    return np.einsum("nk,k->n", flat, w) / cnt if cnt > 0 else np.full(n, np.nan)


def _block_reduce(g: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W) -> block means by the smallest integer factor that brings the shorter side to <= ``side``, over a
    centred crop (so a flipped patch reduces to the flipped reduction, up to one pixel)."""
    n, h, w = g.shape[:3]
    f = max(1, -(-min(h, w) // side))
    th, tw = h // f, w // f
    y0, x0 = (h - th * f) // 2, (w - tw * f) // 2
    g = g[:, y0:y0 + th * f, x0:x0 + tw * f]
    return g.reshape(n, th, f, tw, f, *g.shape[3:]).mean(axis=(2, 4))


def _spectrum(g: np.ndarray) -> dict[str, np.ndarray]:
    """Band shares (low/mid/high radial frequency, DC excluded) and log power of the grey spectrum of a centred
    square, Hann-windowed; |FFT| is unchanged by flips, so these are flip-invariant."""
    n, h, w = g.shape
    s = min(h, w)
    sq = g[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    sq = _block_reduce(sq, SPECTRUM_SIDE)
    m = sq.shape[1]
    win = np.hanning(m).astype(np.float32)
    sq = (sq - sq.mean(axis=(1, 2), keepdims=True)) * (win[:, None] * win[None, :])
    p = np.abs(np.fft.rfft2(sq)) ** 2
    fy = np.fft.fftfreq(m)[:, None]
    fx = np.fft.rfftfreq(m)[None, :]
    r = np.sqrt(fx * fx + fy * fy)
    p = (p * np.where(fx == 0, 1.0, 2.0)).reshape(n, -1)  # rfft keeps half the plane: count the mirror half too
    r = r.ravel()
    total = p[:, r > 0].sum(axis=1) + 1e-9
    return {"spec_low": p[:, (r > 0) & (r < 0.08)].sum(axis=1) / total,
            "spec_mid": p[:, (r >= 0.08) & (r < 0.25)].sum(axis=1) / total,
            "spec_high": p[:, r >= 0.25].sum(axis=1) / total,
            "spec_log_power": np.log1p(total / (m * m))}


def _blockiness(ad: np.ndarray, valid: np.ndarray | None, phase: np.ndarray) -> np.ndarray:
    """Mean |difference| across 8x8 JPEG block boundaries over the mean inside blocks, plus 1. ``ad`` (N, R, L):
    absolute differences along the last axis (L = W - 1, every column); ``valid`` (R, L); ``phase`` (N,): the image
    offset of column 0, so the step between local columns c and c + 1 crosses a boundary when (phase + c + 1) % 8 == 0."""
    if valid is None:
        col_sum, cnt = ad.sum(axis=1, dtype=np.float64), np.full(ad.shape[2], float(ad.shape[1]))
    else:
        col_sum = np.einsum("nrl,rl->nl", ad, valid.astype(ad.dtype))
        cnt = valid.sum(axis=0).astype(np.float64)
    c = np.arange(ad.shape[2])
    boundary = ((phase[:, None] + c[None, :] + 1) % 8) == 0  # (N, L)
    b_cnt, i_cnt = (boundary * cnt).sum(axis=1), (~boundary * cnt).sum(axis=1)
    b = (col_sum * boundary).sum(axis=1) / np.maximum(b_cnt, 1)
    i = (col_sum * ~boundary).sum(axis=1) / np.maximum(i_cnt, 1)
    return np.where(b_cnt > 0, b / (i + 1.0), np.nan)


def _asymmetry(g: np.ndarray, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """Mirror asymmetries of each patch on its own, invariant under flipping it: mean |P - flip(P)| on block-mean
    thumbnails (vertical, horizontal, 180 degrees; the flip test of the flip task), |top half - bottom half| and
    |left half - right half|, over the part of ``mask`` that is symmetric under both flips."""
    n, h, w = g.shape
    m = np.ones((h, w), bool) if mask is None else mask
    m = m & m[::-1] & m[:, ::-1]
    t = _block_reduce(np.where(m, g, 0.0), 48)
    tm = _block_reduce(m[None].astype(np.float32), 48)[0] > 0.999

    def mad(b):
        return _mean(np.abs(t - b), tm)

    av, ah, ar = mad(t[:, ::-1]), mad(t[:, :, ::-1]), mad(t[:, ::-1, ::-1])
    std = np.sqrt(np.maximum(_mean(t * t, tm) - _mean(t, tm) ** 2, 0))
    th, tw = t.shape[1], t.shape[2]
    top, bot = _mean(t[:, : th // 2], tm[: th // 2]), _mean(t[:, th - th // 2:], tm[th - th // 2:])
    left, right = _mean(t[:, :, : tw // 2], tm[:, : tw // 2]), _mean(t[:, :, tw - tw // 2:], tm[:, tw - tw // 2:])
    amin = np.minimum(np.minimum(av, ah), ar)
    return {"asym_tb": np.abs(top - bot), "asym_lr": np.abs(left - right), "asym_v": av, "asym_h": ah, "asym_rot": ar,
            "asym_min": amin, "asym_min_ratio": amin / (std + 1.0)}


def _borders(g: np.ndarray, mask: np.ndarray | None, width: int = 3) -> dict[str, np.ndarray]:
    """Mean grey of the outer ``width`` rows/columns of the (masked) patch: top, bottom, left, right."""
    n, h, w = g.shape
    m = np.ones((h, w), bool) if mask is None else mask
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        z = np.full(n, np.nan)
        return {"border_top": z, "border_bottom": z, "border_left": z, "border_right": z}
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    bands = {"border_top": (slice(r0, r0 + width), slice(None)), "border_bottom": (slice(r1 - width, r1), slice(None)),
             "border_left": (slice(None), slice(c0, c0 + width)), "border_right": (slice(None), slice(c1 - width, c1))}
    return {name: _mean(g[(slice(None), *sl)], m[sl]) for name, sl in bands.items()}


def _centre_window(h: int, w: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the centred window of about ``MAX_SAMPLES`` pixels (the whole image when smaller), with
    equal margins on opposite sides, so flipping the image maps the window onto itself."""
    a = min(1.0, math.sqrt(MAX_SAMPLES / max(1, h * w)))
    my, mx = (h - max(3, round(h * a))) // 2, (w - max(3, round(w * a))) // 2
    return my, h - my, mx, w - mx


def image_stats(batch: np.ndarray, mask: np.ndarray | None = None, phase: np.ndarray | None = None,
                borders: bool = False, asymmetry: bool = False) -> dict[str, np.ndarray]:
    """Statistics of a stack of equal-sized RGB uint8 images (N, H, W, 3), vectorised over N; over ``mask`` (H, W)
    when given (pixels outside it are ignored, or filled with the image's mean grey for the spectrum). ``phase``
    (N, 2): the (x, y) offset of each image in the JPEG it was cut from (block grid), default 0.

    Pixel statistics (moments, saturation, histogram, differences, Laplacian, edges, blockiness) use every pixel of
    a centred window of about ``MAX_SAMPLES`` pixels at the native resolution (the whole image when smaller; not a
    strided grid, whose row and column parity a flip would change); spectrum, borders and asymmetry use the whole
    image."""
    n, h, w = batch.shape[:3]
    g_all = grey(batch)
    y0, y1, x0, x1 = _centre_window(h, w)
    g = g_all[:, y0:y1, x0:x1]
    m = np.ones((y1 - y0, x1 - x0), bool) if mask is None else mask[y0:y1, x0:x1]
    full = bool(m.all())
    sub = batch[:, y0:y1, x0:x1].reshape(n, -1, 3).astype(np.float32)
    pc = np.ascontiguousarray((sub if full else sub[:, m.reshape(-1)]).transpose(0, 2, 1))  # (N, 3, P)
    pg = grey(pc.transpose(0, 2, 1))
    out: dict[str, np.ndarray] = {}
    mean = pc.mean(axis=2)
    d = pc - mean[..., None]
    d2 = d * d
    std = np.sqrt(d2.mean(axis=2))
    skew = (d2 * d).mean(axis=2) / np.maximum(std, 1e-3) ** 3
    for i, c in enumerate("rgb"):
        out[f"mean_{c}"], out[f"std_{c}"], out[f"skew_{c}"] = mean[:, i], std[:, i], skew[:, i]
    gmean = pg.mean(axis=1)
    gd = pg - gmean[:, None]
    gd2 = gd * gd
    gstd = np.sqrt(gd2.mean(axis=1))
    out["grey_mean"], out["grey_std"] = gmean, gstd
    out["grey_skew"] = (gd2 * gd).mean(axis=1) / np.maximum(gstd, 1e-3) ** 3
    mx = np.maximum(np.maximum(pc[:, 0], pc[:, 1]), pc[:, 2])
    mn = np.minimum(np.minimum(pc[:, 0], pc[:, 1]), pc[:, 2])
    sat = (mx - mn) / (mx + 1.0)
    out["sat_mean"], out["sat_std"] = sat.mean(axis=1), sat.std(axis=1)
    bins = np.minimum(pg * 0.125, 31.0).astype(np.int64) + 32 * np.arange(n)[:, None]
    hist = np.bincount(bins.ravel(), minlength=32 * n).reshape(n, 32).astype(np.float64)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    out["entropy"] = -(hist * np.log(np.where(hist > 0, hist, 1))).sum(axis=1)
    # differences at the native resolution (pairs of pixels both inside the mask)
    gx, gy = g[:, :, 1:] - g[:, :, :-1], g[:, 1:, :] - g[:, :-1, :]
    mx_ = None if full else m[:, 1:] & m[:, :-1]
    my_ = None if full else m[1:] & m[:-1]
    agx, agy = np.abs(gx), np.abs(gy)
    out["abs_gx"], out["abs_gy"] = _mean(agx, mx_), _mean(agy, my_)
    gx2, gy2 = gx * gx, gy * gy
    out["gx_energy"], out["gy_energy"] = _mean(gx2, mx_), _mean(gy2, my_)
    out["gxy_log_ratio"] = np.log((out["gx_energy"] + 1.0) / (out["gy_energy"] + 1.0))
    lap = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4.0 * g[:, 1:-1, 1:-1]
    inner = None if full else m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    lm = _mean(lap, inner)
    out["lap_var"] = np.maximum(_mean(lap * lap, inner) - lm * lm, 0.0)
    mag2 = gx2[:, :-1, :] + gy2[:, :, :-1]
    em = None if full else mx_[:-1, :] & my_[:, :-1]
    out["edge_density"] = _mean(mag2 > EDGE_THRESHOLD ** 2, em)
    rms2 = _mean(mag2, em)
    out["edge_density_rel"] = _mean(mag2 > 9.0 * rms2[:, None, None] + 1.0, em)
    phase = np.zeros((n, 2), np.int64) if phase is None else np.asarray(phase, np.int64).reshape(n, 2)
    out["block_h"] = _blockiness(agx, mx_, phase[:, 0] + x0)
    out["block_v"] = _blockiness(agy.transpose(0, 2, 1), None if my_ is None else my_.T, phase[:, 1] + y0)
    whole = np.ones((h, w), bool) if mask is None else mask
    out.update(_spectrum(g_all if mask is None or whole.all() else np.where(whole, g_all, gmean[:, None, None].astype(np.float32))))
    if borders:
        out.update(_borders(g_all, mask))
    if asymmetry:
        out.update(_asymmetry(g_all, mask))
    return out


def _thumbs(batch: np.ndarray) -> np.ndarray:
    """(N, THUMB, THUMB, 3) float32 block means of the centred square of each image."""
    n, h, w = batch.shape[:3]
    s = min(h, w)
    sq = batch[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].astype(np.float32)
    f = max(1, s // THUMB)
    k = s // f
    off = (s - k * f) // 2
    sq = sq[:, off:off + k * f, off:off + k * f]
    return sq.reshape(n, k, f, k, f, 3).mean(axis=(2, 4))


def crop_relations(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per option, against the other options (all four must be stacked, equal-sized squares or not):
    colour-histogram (4x4x4 bins) L1 distance to the mean histogram of the other three, mean and smallest distance
    to each other option; mean and smallest thumbnail difference; and the smallest difference to a 90-degree
    rotation of another option, absolute and over the smallest plain difference."""
    n = batch.shape[0]
    q = (batch.reshape(n, -1, 3) // 64).astype(np.int64)
    idx = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2] + 64 * np.arange(n)[:, None]
    hist = np.bincount(idx.ravel(), minlength=64 * n).reshape(n, 64).astype(np.float64)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    pair = np.abs(hist[:, None] - hist[None]).sum(axis=2)
    others = (hist.sum(axis=0)[None] - hist) / max(1, n - 1)
    off = ~np.eye(n, dtype=bool)
    th = _thumbs(batch)
    tpair = np.abs(th[:, None] - th[None]).mean(axis=(2, 3, 4))
    out = {"hist_to_others": np.abs(hist - others).sum(axis=1),
           "hist_mean_pair": (pair * off).sum(axis=1) / max(1, n - 1),
           "hist_min_pair": np.where(off, pair, np.inf).min(axis=1),
           "thumb_mean_pair": (tpair * off).sum(axis=1) / max(1, n - 1),
           "thumb_min_pair": np.where(off, tpair, np.inf).min(axis=1)}
    if th.shape[1] == th.shape[2]:
        rot = np.minimum(*(np.abs(th[:, None] - np.rot90(th, k, axes=(1, 2))[None]).mean(axis=(2, 3, 4)) for k in (1, 3)))
        out["rot_twin"] = np.where(off, rot, np.inf).min(axis=1)
        out["rot_twin_ratio"] = out["rot_twin"] / (out["thumb_min_pair"] + 1.0)
    else:
        out["rot_twin"] = out["rot_twin_ratio"] = np.full(n, np.nan)
    return out


def _matrix(stats: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    n = len(next(iter(stats.values())))
    return np.stack([np.asarray(stats.get(k, np.full(n, np.nan)), np.float64) for k in names], axis=1)


# ============================================================================================ per-row features
def crop_item(row, arrays: Sequence[np.ndarray]) -> dict[str, Any]:
    """(4, F) option statistics of a crop row (its four candidates only; the picture is never looked at)."""
    names = list(CROP_FEATURES)
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        batch = np.stack(arrays)
        stats = image_stats(batch, borders=True)
        stats.update(crop_relations(batch))
    else:  # options of different sizes: statistics one by one, relations on a common thumbnail size
        per = [image_stats(a[None], borders=True) for a in arrays]
        stats = {k: np.concatenate([p[k] for p in per]) for k in per[0]}
        side = min(min(a.shape[:2]) for a in arrays)
        stats.update(crop_relations(np.stack([a[:side, :side] for a in arrays])))
    data = row.images[1:1 + len(arrays)]
    stats["bytes"] = np.array([len(d) for d in data], np.float64)
    stats["bytes_per_px"] = stats["bytes"] / np.array([a.shape[0] * a.shape[1] for a in arrays], np.float64)
    return {"x": _matrix(stats, names)}


def _patches(row, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = row.metadata["display_boxes"]
    pw, ph = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
    mask = patch_mask(row.metadata, ph, pw)
    batch = np.stack([img[y0:y0 + ph, x0:x0 + pw] for x0, y0, _, _ in boxes])
    phase = np.array([[x0, y0] for x0, y0, _, _ in boxes])
    return batch, mask, phase


def patch_item(row, img: np.ndarray, rule_feats: dict[str, list[float]] | None, task: str) -> dict[str, Any]:
    """(K, F) statistics of each displayed patch on its own (flip: only flip-invariant ones)."""
    batch, mask, phase = _patches(row, img)
    if task == "flip":  # a mask symmetric under both flips, so no statistic sees which way a patch is turned
        mask = mask & mask[::-1] & mask[:, ::-1]
    stats = image_stats(batch, mask, phase, borders=task == "shuffle", asymmetry=True)
    if rule_feats and "bytes" in rule_feats:
        stats["bytes"] = np.asarray(rule_feats["bytes"], np.float64)
    if task == "shuffle":
        stats["tb_diff"] = stats["border_top"] - stats["border_bottom"]
        stats["lr_diff"] = stats["border_left"] - stats["border_right"]
    return {"x": _matrix(stats, list(FLIP_FEATURES if task == "flip" else SHUFFLE_FEATURES))}


def region_item(row, img: np.ndarray) -> dict[str, Any]:
    """(3, F) statistics inside each marked region's box (metadata order), and the labels in that order."""
    rows, labels = [], []
    h, w = img.shape[:2]
    for r in row.metadata["regions"]:
        x0, y0, x1, y1 = r["box"]
        s = image_stats(img[y0:y1, x0:x1][None])
        s["y"], s["x"] = np.array([r["center"][1] / h]), np.array([r["center"][0] / w])
        s["area"] = np.array([(x1 - x0) * (y1 - y0) / (h * w)])
        rows.append(_matrix(s, list(REGION_FEATURES))[0])
        labels.append(str(r["label"]))
    return {"x": np.stack(rows), "labels": labels}


def position_item(row) -> dict[str, Any]:
    meta = row.metadata
    return {"facing": (meta.get("facing") or {}).get("name"), "camera": str(meta.get("camera_label")),
            "option_set": meta.get("option_set"), "options": dict(row.options or {})}


def learned_item(row, image, rule_item: dict[str, Any]) -> dict[str, Any] | None:
    """The learned solvers' features of one row; ``image(i)`` returns the row's i-th image decoded (cached)."""
    if row.task == "crop":
        return crop_item(row, [image(i) for i in range(1, min(5, len(row.images)))])
    if row.task in ("flip", "shuffle"):
        return patch_item(row, image(0), rule_item.get("feats"), row.task)
    if row.task == "depth":
        return region_item(row, image(0))
    if row.task == "position":
        return position_item(row)
    hooked = task_hooks.hook(row.task, "learned_item")
    return hooked(row, image, rule_item) if hooked is not None else None


# ============================================================================================ fitting
def fold_ids(groups: Sequence[str], k: int = FOLDS) -> np.ndarray:
    """GroupKFold-style folds: the sources, largest first (ties by hash), each go to the fold with the fewest
    samples so far. Deterministic and content-blind."""
    sizes = Counter(groups)
    load = [0] * k
    fold_of = {}
    for g in sorted(sizes, key=lambda g: (-sizes[g], _hash(g))):
        f = min(range(k), key=lambda i: (load[i], i))
        fold_of[g] = f
        load[f] += sizes[g]
    return np.array([fold_of[g] for g in groups], np.int64)


def _model(small: bool = False):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**(GROUP_PARAMS if small else HGB_PARAMS))


def within_sample(x: np.ndarray) -> np.ndarray:
    """(n, K, F) -> (n, K, 3F): the statistics, their z-scores across the K candidates of each sample (0 where all
    are equal) and their ranks (0 smallest .. 1 largest, ties averaged)."""
    from scipy.stats import rankdata

    k = x.shape[1]
    mean = np.nanmean(x, axis=1, keepdims=True) if np.isnan(x).any() else x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.nanmean((x - mean) ** 2, axis=1, keepdims=True))
    flat = std <= 1e-9 * (1.0 + np.abs(mean))
    z = np.where(flat, 0.0, (x - mean) / np.where(flat, 1.0, std))
    rank = (rankdata(x, axis=1, nan_policy="omit") - 1.0) / max(1, k - 1)
    return np.concatenate([x, z, rank], axis=2)


def _columns(names: Sequence[str], groups: dict[str, str], copies: int) -> dict[str, np.ndarray]:
    """Column indices of each feature group (over ``copies`` blocks of len(names) columns)."""
    f = len(names)
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        out.setdefault(groups[name], []).extend(i + c * f for c in range(copies))
    return {g: np.array(c) for g, c in out.items()}


def _set_scores(p: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(n, K) scores -> expected accuracy of picking the top one (ties uniformly at random)."""
    top = p.max(axis=1, keepdims=True)
    chosen = np.abs(p - top) <= 1e-12 * (1.0 + np.abs(top))
    hit = chosen[np.arange(len(truth)), truth]
    return np.where(hit, 1.0 / chosen.sum(axis=1), 0.0)


def cv_choice(x: np.ndarray, truth: np.ndarray, folds: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """One positive among K candidates per sample: held-out expected accuracy per sample. ``x`` (n, K, F)."""
    n, k, f = x.shape
    xs = x if cols is None else x[:, :, cols]
    y = np.zeros((n, k), np.int64)
    y[np.arange(n), truth] = 1
    scores = np.zeros(n)
    for fold in np.unique(folds):
        tr, te = folds != fold, folds == fold
        if not tr.any():
            continue
        model = _model(cols is not None).fit(xs[tr].reshape(-1, xs.shape[2]), y[tr].ravel())
        p = model.predict_proba(xs[te].reshape(-1, xs.shape[2]))[:, list(model.classes_).index(1)].reshape(-1, k)
        scores[te] = _set_scores(p, truth[te])
    return scores


def best_permutation(cost: np.ndarray, exclude_identity: bool) -> np.ndarray:
    """Assignment of candidates (rows) to positions (columns) with the least total cost; with
    ``exclude_identity`` the best non-identity one (the best over the K problems that forbid one diagonal entry)."""
    from scipy.optimize import linear_sum_assignment

    k = cost.shape[0]
    _, perm = linear_sum_assignment(cost)
    if not exclude_identity or k < 2 or not np.array_equal(perm, np.arange(k)):
        return perm
    best, best_cost = perm, np.inf
    for i in range(k):
        c = cost.copy()
        c[i, i] = 1e12
        _, p = linear_sum_assignment(c)
        total = cost[np.arange(k), p].sum()
        if not np.array_equal(p, np.arange(k)) and total < best_cost - 1e-12:
            best, best_cost = p, total
    return best


def cv_assign(x: np.ndarray, target: np.ndarray, folds: np.ndarray, cols: np.ndarray | None = None,
              exclude_identity: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Candidates -> positions: each candidate's position probabilities from a multi-class model, then the most
    probable permutation. Returns per-sample exact (0/1) and per-position (share right) held-out scores."""
    n, k, f = x.shape
    xs = x if cols is None else x[:, :, cols]
    exact, per_pos = np.zeros(n), np.zeros(n)
    for fold in np.unique(folds):
        tr, te = folds != fold, folds == fold
        if not tr.any():
            continue
        model = _model(cols is not None).fit(xs[tr].reshape(-1, xs.shape[2]), target[tr].ravel())
        prob = np.full((int(te.sum()) * k, k), 1e-6)
        prob[:, model.classes_.astype(np.int64)] = model.predict_proba(xs[te].reshape(-1, xs.shape[2]))
        cost = -np.log(prob + 1e-9).reshape(-1, k, k)
        for j, i in enumerate(np.flatnonzero(te)):
            perm = best_permutation(cost[j], exclude_identity)
            right = perm == target[i]
            exact[i], per_pos[i] = float(right.all()), right.mean()
    return exact, per_pos


# ============================================================================================ solvers
def _result(task: str, variant: str, solver: str, target: str, scores: np.ndarray, chance: float, detail: str,
            groups: dict[str, float], counted: bool = True):
    r = SolverResult(task, variant, solver, target, int(len(scores)), float(scores.sum()), chance, counted, detail,
                     kind="learned")
    r.groups = {g: round(v, 4) for g, v in sorted(groups.items(), key=lambda kv: -kv[1])}
    return r


def _group_text(groups: dict[str, float], k: int) -> str:
    top = sorted(groups.items(), key=lambda kv: -kv[1])[:3]
    if not top:
        return ""
    first = f"most useful group (fitted alone, same folds): {top[0][0]} ({top[0][1]:.1%})"
    rest = ", ".join(f"{g} {v:.1%}" for g, v in top[1:])
    return first + (f"; then {rest}" if rest else "")


def _folds_for(items: list[dict]) -> tuple[np.ndarray, int] | None:
    groups = [str(it.get("group", it["id"])) for it in items]
    n_groups = len(set(groups))
    if len(items) < MIN_SAMPLES or n_groups < 2:
        return None
    k = min(FOLDS, n_groups)
    return fold_ids(groups, k), k


def _stack(items: list[dict]) -> np.ndarray | None:
    shapes = {it["learned"]["x"].shape for it in items}
    if len(shapes) != 1:
        return None
    return np.stack([it["learned"]["x"] for it in items]).astype(np.float64)


def _prepared(items: list[dict]) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(features normalised within each sample, fold of each sample, number of folds), or None when unusable."""
    got = _folds_for(items)
    x = _stack(items)
    if got is None or x is None:
        return None
    folds, k = got
    return within_sample(x), folds, k


def _choice_solver(task: str, variant: str, items: list[dict], truth: np.ndarray, names: dict[str, str],
                   what: str, target: str, chance: float) -> list:
    prepared = _prepared(items)
    if prepared is None:
        return []
    xw, folds, k = prepared
    scores = cv_choice(xw, truth, folds)
    groups = {g: float(cv_choice(xw, truth, folds, cols).mean()) for g, cols in _columns(list(names), names, 3).items()}
    detail = (f"{k}-fold source-grouped cross-fit, gradient-boosted trees on {len(names)} {what} (raw, z-score and "
              f"rank within the sample), pick the most probable; " + _group_text(groups, k))
    return [_result(task, variant, f"learned: boosted trees on {len(names)} {what}", target, scores, chance, detail, groups)]


def learned_crop(items: list[dict], variant: str) -> list:
    items = [it for it in items if 0 <= it["answer_index"] < 4 and it["learned"]["x"].shape[0] == 4]
    truth = np.array([it["answer_index"] for it in items], np.int64)
    return _choice_solver("crop", variant, items, truth, CROP_FEATURES, "option statistics (no picture)", "answer", 0.25)


def learned_flip(items: list[dict], variant: str) -> list:
    if not items:
        return []
    k = items[0]["learned"]["x"].shape[0]
    items = [it for it in items if 0 <= it["patch"] < it["learned"]["x"].shape[0]]
    truth = np.array([it["patch"] for it in items], np.int64)
    return _choice_solver("flip", variant, items, truth, FLIP_FEATURES, "flip-invariant patch statistics", "patch", 1 / k)


def _assign_solver(task: str, variant: str, items: list[dict], target: np.ndarray, names: dict[str, str], what: str,
                   exclude_identity: bool, chances: tuple[float, float], counted: bool, extra: str = "") -> list:
    prepared = _prepared(items)
    if prepared is None:
        return []
    xw, folds, k = prepared
    exact, per_pos = cv_assign(xw, target, folds, exclude_identity=exclude_identity)
    g_exact, g_pos = {}, {}
    for g, cols in _columns(list(names), names, 3).items():
        e, p = cv_assign(xw, target, folds, cols, exclude_identity)
        g_exact[g], g_pos[g] = float(e.mean()), float(p.mean())
    base = (f"{k}-fold source-grouped cross-fit, gradient-boosted trees give each candidate's position probabilities "
            f"from {len(names)} {what} (raw, z-score and rank within the sample), linear assignment makes the "
            f"permutation{' (identity excluded)' if exclude_identity else ''}{extra}; ")
    solver = f"learned: boosted trees on {len(names)} {what} + assignment"
    return [_result(task, variant, solver, "answer", exact, chances[0], base + _group_text(g_exact, k), g_exact, counted),
            _result(task, variant, solver, "per position", per_pos, chances[1], base + _group_text(g_pos, k), g_pos, counted)]


def learned_shuffle(items: list[dict], variant: str) -> list:
    if not items:
        return []
    k = len(items[0]["labels"])
    items = [it for it in items if sorted(it["labels"]) == list(range(k))]
    # answer[pos] = displayed patch that belongs at pos  ->  target[d] = the position of displayed patch d
    target = np.array([[it["labels"].index(d) for d in range(k)] for it in items], np.int64).reshape(-1, k)
    chances = (1.0 / (math.factorial(k) - 1), math.factorial(k - 1) / (math.factorial(k) - 1)) if k > 1 else (1.0, 1.0)
    # Reference only, like depth's cues: a patch's own content says where it sits in a picture (sky at the top,
    # ground below, light or a colour gradient across it). That is the scene's layout, which no construction can hide
    # without destroying the content; the rules still count each processing statistic of a patch on its own.
    return _assign_solver("shuffle", variant, items, target, SHUFFLE_FEATURES, "statistics of each patch alone", True,
                          chances, False, "; reference only: a patch's content tells where it belongs in the picture "
                          "(sky at the top, a gradient across it), a real layout cue")


def learned_depth(items: list[dict], variant: str) -> list:
    items = [it for it in items if sorted(it["answer"].split("-")) == sorted(it["learned"]["labels"])]
    if not items:
        return []
    target = np.array([[it["answer"].split("-").index(lab) for lab in it["learned"]["labels"]] for it in items], np.int64)
    k = target.shape[1]
    return _assign_solver("depth", variant, items, target, REGION_FEATURES, "region statistics", False,
                          (1.0 / math.factorial(k), 1.0 / k), False,
                          "; reference only: brightness, texture, haze and height in the picture are real depth cues")


POSITION_GROUPS = ("letter", "option word", "facing", "camera label", "option set", "option layout")


def learned_position(items: list[dict], variant: str) -> list:
    items = [it for it in items if it["answer"] in it["learned"]["options"] and len(it["learned"]["options"]) == 4]
    got = _folds_for(items)
    if got is None:
        return []
    folds, k = got
    letters = sorted({letter for it in items for letter in it["learned"]["options"]})
    words = sorted({w for it in items for w in it["learned"]["options"].values()})
    facings = sorted({str(it["learned"]["facing"]) for it in items})
    cams = sorted({it["learned"]["camera"] for it in items})
    sets = sorted({str(it["learned"]["option_set"]) for it in items})
    names: dict[str, str] = {}
    names.update({f"letter={v}": "letter" for v in letters})
    names.update({f"word={v}": "option word" for v in words})
    names.update({f"facing={v}": "facing" for v in facings})
    names.update({f"camera={v}": "camera label" for v in cams})
    names.update({f"set={v}": "option set" for v in sets})
    names.update({f"{a}={w}": "option layout" for a in letters for w in words})
    col = {name: i for i, name in enumerate(names)}
    x = np.zeros((len(items), len(letters), len(names)))
    truth = np.zeros(len(items), np.int64)
    for s, it in enumerate(items):
        le = it["learned"]
        opts = le["options"]
        for j, letter in enumerate(letters):
            row = x[s, j]
            for key in (f"letter={letter}", f"word={opts.get(letter)}", f"facing={le['facing']}",
                        f"camera={le['camera']}", f"set={le['option_set']}"):
                if key in col:
                    row[col[key]] = 1.0
            for a, w in opts.items():
                row[col[f"{a}={w}"]] = 1.0
        truth[s] = letters.index(it["answer"])
    scores = cv_choice(x, truth, folds)
    groups = {g: float(cv_choice(x, truth, folds, cols).mean()) for g, cols in _columns(list(names), names, 1).items()}
    detail = (f"{k}-fold source-grouped cross-fit, gradient-boosted trees on the question and options only "
              f"(one-hot: letter, option word, facing, camera label, option set, the word at every letter), "
              f"pick the most probable option; " + _group_text(groups, k))
    return [_result("position", variant, "learned: boosted trees on the question and option text", "answer", scores,
                    0.25, detail, groups)]


LEARNED = {"crop": learned_crop, "flip": learned_flip, "shuffle": learned_shuffle, "depth": learned_depth,
           "position": learned_position}


def audit_learned(task: str, variant: str, items: list[dict]) -> list:
    """Learned solvers of one task/variant; ``items`` are audit.extract's dicts with the ``learned`` features."""
    items = [it for it in items if it.get("learned") is not None]
    solver = LEARNED.get(task) or task_hooks.hook(task, "learned")
    if solver is None or not items:
        return []
    from threadpoolctl import threadpool_limits

    # One OpenMP thread: the fits are small, and libgomp's thread barriers slow them down 10-100x on a busy machine
    # (a 180-row fit took 11 s with 2 threads and 0.2 s with one while other processes held the cores).
    with threadpool_limits(limits=1, user_api="openmp"):
        return solver(items, variant)


# ============================================================================================ the audit's hook
class ExtraSolvers:
    """The learned and sighted solvers of one ``ssrl audit`` run, fed by the rule solvers' pass over the rows.

    ``learned``: this module's solvers, when scikit-learn can be imported (else one line in ``notes``, and the rules
    still run). ``sighted``: ``data_builders.audit_sighted`` (``sighted_item(row) -> dict | None``, a float "correct" in
    [0, 1], and ``audit_sighted(task, variant, items) -> list[SolverResult]``); its ``SIGHTED_MIN`` is the
    accuracy it must reach. A sighted solver that raises on a row is noted,
    never fatal."""

    def __init__(self, learned: bool, sighted: bool, notes: list[str]):
        self.notes = notes
        self.learned = learned and available()
        if learned and not self.learned:
            notes.append(MISSING)
        from . import audit_sighted  # imported here: it imports data_builders.audit, which imports this module

        self.sighted = audit_sighted if sighted else None
        self.sighted_min = audit_sighted.SIGHTED_MIN if sighted else None
        self.seen: dict[tuple[str, str], list[dict]] = {}
        self.errors: list[str] = []

    def add(self, row, item: dict[str, Any]) -> None:
        """Per row, after audit.extract: the learned features into ``item['learned']`` (errors propagate: the row is
        unreadable), the sighted solver's item kept aside (its errors are counted)."""
        if self.learned:
            item["learned"] = learned_item(row, row.array, item)
        if self.sighted is not None:
            try:
                got = self.sighted.sighted_item(row)
            except Exception as exc:  # noqa: BLE001 - an optional module's bug must not stop the audit
                self.errors.append(f"{row.id}: {type(exc).__name__}: {exc}")
                got = None
            if got is not None:
                level = (row.metadata.get("difficulty") or {}).get("level")
                self.seen.setdefault((row.task, row.variant), []).append(
                    {**got, "id": item["id"], "group": item["group"], "level": level})

    def finish_rows(self) -> None:
        if self.errors:
            self.notes.append(f"sighted_item failed on {len(self.errors)} rows, e.g. {self.errors[0]}")

    def results(self, task: str, variant: str, items: list[dict]) -> list:
        out = audit_learned(task, variant, items) if self.learned else []
        seen = self.seen.get((task, variant))
        if seen:
            try:
                found = list(self.sighted.audit_sighted(task, variant, seen))
            except Exception as exc:  # noqa: BLE001
                self.notes.append(f"sighted solvers of {task}/{variant} failed: {type(exc).__name__}: {exc}")
                found = []
            for r in found:
                r.kind = "sighted"
            out += found
        return out
