"""The built-in demo corpus: deterministic, well-formed, textured, and with depth that matches its geometry."""

from __future__ import annotations

import json
import time

import numpy as np
import xxhash
import pytest

from ssrl_plugin.demo import demo_refs, fit_size, load_demo
from ssrl_plugin.errors import SourceError
from ssrl_plugin.sources import LoadOptions, SourceRef

OPTS = LoadOptions()
SMALL = dict(width=320, height=240)  # half size keeps the geometry checks fast


def _load(kind: str, index: int, width: int = 640, height: int = 480, opts: LoadOptions = OPTS):
    refs = demo_refs(num_rgb=index + 1, num_rgbd=index + 1, width=width, height=height)
    ref = next(r for r in refs if r.id == f"demo/{kind}/{index:04d}")
    return load_demo(ref, opts)


# ------------------------------------------------------------------------------------------- references


def test_refs_ids_and_fields():
    refs = demo_refs(num_rgb=3, num_rgbd=2, width=320, height=240)
    assert [r.id for r in refs] == ["demo/rgb/0000", "demo/rgb/0001", "demo/rgb/0002", "demo/rgbd/0000", "demo/rgbd/0001"]
    assert all(r.scheme == "demo" for r in refs)
    rgb, rgbd = refs[:3], refs[3:]
    assert all(r.depth_format is None and not r.has_depth for r in rgb)
    assert all(r.depth_format == "demo" and r.depth_kind == "metric" and r.has_depth for r in rgbd)
    assert rgb[1].extra == ("rgb", 1, 320, 240)
    assert rgbd[1].extra == ("rgbd", 1, 320, 240)
    assert len(demo_refs()) == 96


def test_refs_are_picklable_and_hashable():
    import pickle

    refs = demo_refs(2, 2)
    assert pickle.loads(pickle.dumps(refs)) == refs
    assert len(set(refs)) == 4


# ----------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", ["rgb", "rgbd"])
def test_deterministic_byte_for_byte(kind):
    a, b = _load(kind, 3), _load(kind, 3)
    assert a.rgb.tobytes() == b.rgb.tobytes()
    assert a.digest == b.digest
    if kind == "rgbd":
        assert a.depth.values.tobytes() == b.depth.values.tobytes()
        assert np.array_equal(a.depth.valid, b.depth.valid)
    assert a.info == b.info


@pytest.mark.parametrize("kind", ["rgb", "rgbd"])
def test_indices_differ(kind):
    assert _load(kind, 0, **SMALL).digest != _load(kind, 1, **SMALL).digest
    assert np.abs(_load(kind, 0, **SMALL).rgb.astype(int) - _load(kind, 1, **SMALL).rgb).mean() > 10


def test_rgb_and_rgbd_with_same_index_differ():
    assert _load("rgb", 0, **SMALL).digest != _load("rgbd", 0, **SMALL).digest


def test_digest_covers_rgb_then_depth():
    src = _load("rgbd", 2, **SMALL)
    expected = xxhash.xxh3_128(src.rgb.tobytes() + src.depth.values.astype(np.float32).tobytes()).hexdigest()
    assert src.digest == f"xxh3_128:{expected}"
    rgb_only = _load("rgb", 2, **SMALL)
    assert rgb_only.digest == f"xxh3_128:{xxhash.xxh3_128(rgb_only.rgb.tobytes()).hexdigest()}"


def test_strip_size_does_not_change_the_output(monkeypatch):
    """RGB-D scenes render in row strips for speed; the result must not depend on the strip height."""
    import ssrl_plugin.demo as demo

    reference = _load("rgbd", 4, **SMALL)
    monkeypatch.setattr(demo, "STRIP_ROWS", 7)
    odd = _load("rgbd", 4, **SMALL)
    assert odd.rgb.tobytes() == reference.rgb.tobytes()
    assert odd.depth.values.tobytes() == reference.depth.values.tobytes()


# ------------------------------------------------------------------------------------ shapes and types


@pytest.mark.parametrize("kind", ["rgb", "rgbd"])
@pytest.mark.parametrize("size", [(333, 257), (200, 300)])
def test_odd_and_portrait_sizes(kind, size):
    width, height = size
    src = _load(kind, 7, width=width, height=height)
    assert src.rgb.shape == (height, width, 3)
    if kind == "rgbd":
        assert src.depth.shape == (height, width)
        z, valid = _reference_depth(src.info)
        agree = (valid == src.depth.valid) & valid
        assert np.allclose(src.depth.values[agree], z[agree], rtol=1e-5)



def test_rgb_source_shape_and_info():
    src = _load("rgb", 5)
    assert src.id == "demo/rgb/0005"
    assert src.rgb.shape == (480, 640, 3) and src.rgb.dtype == np.uint8 and src.rgb.flags.c_contiguous
    assert src.depth is None
    assert src.info["demo"] is True and src.info["kind"] == "rgb" and src.info["index"] == 5
    assert src.image().size == (640, 480)


def test_rgbd_source_shape_types_and_info():
    src = _load("rgbd", 5)
    assert src.id == "demo/rgbd/0005"
    assert src.rgb.shape == (480, 640, 3) and src.rgb.dtype == np.uint8 and src.rgb.flags.c_contiguous
    d = src.depth
    assert d is not None and d.kind == "metric"
    assert d.values.shape == (480, 640) and d.values.dtype == np.float32
    assert d.valid.shape == (480, 640) and d.valid.dtype == np.bool_
    assert src.info["demo"] is True and src.info["kind"] == "rgbd" and src.info["index"] == 5
    assert src.info["valid_fraction"] == pytest.approx(d.valid.mean())
    json.dumps(src.info)  # camera + scene description stays serialisable
    cam = src.info["camera"]
    assert cam["fx"] == pytest.approx(0.8 * 640) and (cam["cx"], cam["cy"]) == (320.0, 240.0)


def test_depth_finite_positive_and_mostly_valid():
    saw_invalid = False
    for i in range(16):
        d = _load("rgbd", i, **SMALL).depth
        assert np.isfinite(d.values).all()
        assert (d.values[d.valid] > 0.1).all() and (d.values[d.valid] < 40).all()
        assert (d.values[~d.valid] == 0).all()
        assert d.valid.mean() > 0.5
        saw_invalid |= not d.valid.all()
        far = d.farness()
        assert np.isnan(far[~d.valid]).all() and np.isfinite(far[d.valid]).all()
    assert saw_invalid, "some scenes should have an open sky (invalid depth)"


def test_objects_at_clearly_different_distances():
    for i in range(24):
        info = _load("rgbd", i, **SMALL).info
        cam = info["camera"]
        pos, fwd = np.array(cam["position"]), np.array(cam["forward"])
        objs = info["scene"]["objects"]
        assert 3 <= len(objs) <= 6
        centres = [
            (np.array(o["min"]) + np.array(o["max"])) / 2 if o["type"] == "box" else np.array(o["center"]) for o in objs
        ]
        z = np.sort([(c - pos) @ fwd for c in centres])
        assert z[0] > 1.0 and z[-1] < 13.0
        assert np.diff(z).min() > 0.4


# ------------------------------------------------------------------------------ depth matches geometry


def _rays(cam: dict) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (H, W, 3) and the cosine of each ray with the optical axis, from the info dict."""
    cols = np.arange(cam["width"]) + 0.5
    rows = np.arange(cam["height"]) + 0.5
    x = (cols[None, :] - cam["cx"]) / cam["fx"]
    y = (cam["cy"] - rows[:, None]) / cam["fy"]
    r, u, f = (np.array(cam[k]) for k in ("right", "up", "forward"))
    d = x[..., None] * r + y[..., None] * u + f
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return d, d @ f


def _reference_depth(info: dict) -> tuple[np.ndarray, np.ndarray]:
    """Independent, brute-force ray cast of the described scene: z-depth and validity (H, W)."""
    cam, scene = info["camera"], info["scene"]
    d, cos = _rays(cam)
    o = np.array(cam["position"])
    room = scene["room"]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Room: exit distance through each pair of parallel planes (the camera is inside the box).
        bounds = [(room["left_x"], room["right_x"]), (room["ground_y"], room["top_y"]), (room["front_z"], room["back_z"])]
        exits = np.stack([np.maximum((lo - o[k]) / d[..., k], (hi - o[k]) / d[..., k]) for k, (lo, hi) in enumerate(bounds)])
        axis = exits.argmin(axis=0)
        t = exits.min(axis=0)
        through_top = (axis == 1) & (d[..., 1] > 0)
        valid = ~through_top if room["open_sky"] else np.ones_like(t, bool)
        for obj in scene["objects"]:
            if obj["type"] == "box":
                lo, hi = np.array(obj["min"]), np.array(obj["max"])
                a, b = (lo - o) / d, (hi - o) / d
                near, far = np.minimum(a, b).max(axis=-1), np.maximum(a, b).min(axis=-1)
                hit = (near <= far) & (near > 0)
                th = near
            else:
                c, rad = np.array(obj["center"]), obj["radius"]
                oc = o - c
                b = d @ oc
                disc = b * b - (oc @ oc - rad * rad)
                th = -b - np.sqrt(np.maximum(disc, 0))
                hit = (disc >= 0) & (th > 0)
            closer = hit & (th < t)
            t = np.where(closer, th, t)
            valid |= closer
    return t * cos, valid


@pytest.mark.parametrize("index", range(6))
def test_depth_matches_independent_ray_cast(index):
    src = _load("rgbd", index, **SMALL)
    z, valid = _reference_depth(src.info)
    same_valid = valid == src.depth.valid
    assert same_valid.mean() > 0.999
    both = same_valid & valid
    rel = np.abs(src.depth.values[both] - z[both]) / z[both]
    assert (rel < 1e-5).mean() > 0.998  # only rays grazing an edge may pick the other surface
    assert np.median(rel) < 1e-6


@pytest.mark.parametrize("index", range(8))
def test_ground_plane_depth_is_analytic(index):
    """Every pixel whose ray meets the ground (y = 0) sees the ground or something nearer, and a large
    share sees exactly the ground at z = h / (-d_y) * (d . forward)."""
    src = _load("rgbd", index, **SMALL)
    cam = src.info["camera"]
    d, cos = _rays(cam)
    down = d[..., 1] < -1e-6
    with np.errstate(divide="ignore"):
        z_ground = np.where(down, cam["position"][1] / -d[..., 1] * cos, np.inf)
    depth, valid = src.depth.values, src.depth.valid
    assert (depth[down & valid] <= z_ground[down & valid] * (1 + 1e-5)).all()
    on_ground = down & valid & (np.abs(depth - z_ground) <= 1e-5 * z_ground)
    assert on_ground.mean() > 0.1
    # The bottom row looks at the floor right in front of the camera unless an object stands there.
    assert on_ground[-1].mean() > 0.3 or (depth[-1] < z_ground[-1]).all()


# ------------------------------------------------------------------------------------ image content


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(axis=-1)


@pytest.mark.parametrize("kind", ["rgb", "rgbd"])
def test_not_mirror_symmetric(kind):
    for i in range(6):
        img = _load(kind, i, **SMALL).rgb.astype(np.float32)
        assert np.abs(img - img[:, ::-1]).mean() > 12, f"{kind} {i} is nearly left-right symmetric"
        assert np.abs(img - img[::-1]).mean() > 12, f"{kind} {i} is nearly up-down symmetric"


@pytest.mark.parametrize("kind", ["rgb", "rgbd"])
def test_every_quadrant_has_content(kind):
    for i in range(8):
        g = _grey(_load(kind, i, **SMALL).rgb)
        h, w = g.shape
        for quad in (g[: h // 2, : w // 2], g[: h // 2, w // 2 :], g[h // 2 :, : w // 2], g[h // 2 :, w // 2 :]):
            assert quad.std() > 8, f"{kind} {i}: a quadrant is nearly flat"


@pytest.mark.parametrize("kind", ["rgb", "rgbd"])
def test_small_patches_are_rarely_flat(kind):
    """The shuffle/flip tasks reject near-uniform patches: almost every 64x64 patch must carry texture."""
    for i in range(4):
        g = _grey(_load(kind, i).rgb)
        patches = g[:448, :640].reshape(7, 64, 10, 64).transpose(0, 2, 1, 3).reshape(70, -1)
        assert (patches.std(axis=1) > 4).mean() > 0.95


# ------------------------------------------------------------------------------------ options and errors


def test_max_side_renders_smaller_with_scaled_intrinsics():
    src = _load("rgbd", 1, opts=LoadOptions(max_side=320))
    assert src.rgb.shape == (240, 320, 3) and src.depth.shape == (240, 320)
    assert src.info["camera"]["fx"] == pytest.approx(0.8 * 320)
    assert (src.info["orig_size"], src.info["size"], src.info["scale"]) == ([640, 480], [320, 240], 0.5)
    full = _load("rgbd", 1, **SMALL)  # same scene, same size
    assert src.digest == full.digest
    assert _load("rgb", 1, opts=LoadOptions(max_side=320)).rgb.shape == (240, 320, 3)


def test_fit_size():
    assert fit_size(640, 480, 1600) == (640, 480)
    assert fit_size(640, 480, 0) == (640, 480)
    assert fit_size(640, 480, 320) == (320, 240)
    assert fit_size(480, 640, 320) == (240, 320)


def test_too_small_and_foreign_refs_raise_source_error():
    with pytest.raises(SourceError, match="min_side"):
        _load("rgb", 0, width=100, height=80)
    with pytest.raises(SourceError, match="not a demo"):
        load_demo(SourceRef(id="x/y.png", scheme="file", rgb_path="y.png"), OPTS)
    with pytest.raises(SourceError, match="unknown demo kind"):
        load_demo(SourceRef(id="demo/x/0000", scheme="demo", extra=("x", 0, 64, 64)), OPTS)


def test_render_time_report():
    """Not a benchmark (no assertion): prints the per-image render time, visible with ``pytest -s``."""
    refs = demo_refs(num_rgb=4, num_rgbd=4)
    for kind in ("rgb", "rgbd"):
        chosen = [r for r in refs if r.extra[0] == kind]
        load_demo(chosen[0], OPTS)  # warm-up
        start = time.perf_counter()
        for ref in chosen:
            load_demo(ref, OPTS)
        print(f"\ndemo {kind}: {(time.perf_counter() - start) / len(chosen) * 1e3:.1f} ms per 640x480 source")
