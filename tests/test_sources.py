"""Input discovery and decoding: RGB modes, EXIF, broken files, RGB-D layouts, size checks, stable ids."""

from __future__ import annotations

import io
import os
import shutil
import sys

import numpy as np
import xxhash
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from fixtures_gen import ramp_depth, textured, write_diode, write_megadepth, write_png16, write_rgb  # noqa: E402

from ssrl_plugin.depth_io import load_depth, read_generic_depth  # noqa: E402
from ssrl_plugin.errors import ConfigError, SourceError  # noqa: E402
from ssrl_plugin.imaging import decode_image, encode_image, file_digest, load_rgb  # noqa: E402
from ssrl_plugin.sources import (  # noqa: E402
    IMAGE_EXTS,
    REASON_BROKEN_LINK,
    REASON_DEPTH_NAMED,
    LoadOptions,
    SourceRef,
    discover_rgb,
    discover_rgbd,
    load_source,
    parse_rgbd_spec,
    reason_not_image,
)

SMALL = LoadOptions(min_side=8, max_side=0)


# ------------------------------------------------------------------------------------------------- RGB decoding

def test_rgb_plain_jpeg(tmp_path):
    p = write_rgb(tmp_path / "a.jpg", 160, 128, quality=95)
    arr, info = load_rgb(p, LoadOptions())
    assert arr.shape == (128, 160, 3) and arr.dtype == np.uint8 and arr.flags["C_CONTIGUOUS"]
    assert info == {"orig_size": [160, 128], "size": [160, 128], "scale": 1.0, "exif_rotated": False, "mode": "RGB"}


def test_exif_orientation_6_is_applied(tmp_path):
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:32, :48] = (255, 0, 0)  # stored top-left red
    rgb[32:, 48:] = (0, 0, 255)
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / "rot.jpg"
    img.save(p, quality=95, exif=exif)
    arr, info = load_rgb(p, SMALL)
    assert info["exif_rotated"] and arr.shape == (96, 64, 3)  # portrait after rotation
    assert info["orig_size"] == [64, 96]
    top_right, bottom_left = arr[10, -10].astype(int), arr[-10, 10].astype(int)
    assert top_right[0] > 200 and top_right[2] < 60  # stored top-left -> displayed top-right
    assert bottom_left[2] > 200 and bottom_left[0] < 60


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (64, 48), (0, 255, 255, 0))  # pure red ink
    p = tmp_path / "cmyk.jpg"
    img.save(p, quality=95)
    arr, info = load_rgb(p, SMALL)
    assert info["mode"] == "CMYK" and arr.shape == (48, 64, 3)
    r, g, b = arr[24, 32].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_palette_grayscale_and_bilevel(tmp_path):
    base = Image.fromarray(textured(48, 64))
    base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    base.convert("L").save(tmp_path / "l.png")
    base.convert("1").save(tmp_path / "b.bmp")
    for name, mode in (("p.png", "P"), ("l.png", "L"), ("b.bmp", "1")):
        arr, info = load_rgb(tmp_path / name, SMALL)
        assert info["mode"] == mode and arr.shape == (48, 64, 3) and arr.dtype == np.uint8
    gray, _ = load_rgb(tmp_path / "l.png", SMALL)
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere underneath
    rgba[:, :20, 3] = 0  # left half fully transparent -> white, not red
    rgba[:, 20:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr, info = load_rgb(tmp_path / "a.png", SMALL)
    assert info["mode"] == "RGBA"
    assert tuple(arr[5, 5]) == (255, 255, 255) and tuple(arr[5, 35]) == (255, 0, 0)
    la = np.zeros((40, 40, 2), np.uint8)
    la[..., 1] = 128  # half-transparent black over white -> mid grey
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    arr, _ = load_rgb(tmp_path / "la.png", SMALL)
    assert 120 <= arr[0, 0, 0] <= 135
    pal = Image.fromarray(np.zeros((40, 40), np.uint8), "P")
    pal.putpalette([0, 0, 0] * 256)
    pal.save(tmp_path / "pt.png", transparency=0)  # palette index 0 transparent
    arr, _ = load_rgb(tmp_path / "pt.png", SMALL)
    assert tuple(arr[0, 0]) == (255, 255, 255)


def test_16bit_grayscale_png_as_rgb(tmp_path):
    full = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    write_png16(tmp_path / "full.png", full)
    arr, info = load_rgb(tmp_path / "full.png", SMALL)
    assert info["mode"] in ("I;16", "I") and arr.shape == (48, 64, 3)  # older Pillow opens 16-bit PNG as "I"
    assert arr.min() == 0 and arr.max() == 255
    twelve_bit = (full // 16).astype(np.uint16)  # max 4095: stretched by its own max, not left near black
    write_png16(tmp_path / "12bit.png", twelve_bit)
    arr12, _ = load_rgb(tmp_path / "12bit.png", SMALL)
    assert arr12.max() == 255


def test_truncated_jpeg_names_the_file(tmp_path):
    p = write_rgb(tmp_path / "t.jpg", 256, 256, quality=95)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"t\.jpg: cannot decode image \(truncated\)"):
        load_rgb(p, LoadOptions())


def test_not_an_image_and_missing_file(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"hello, not a jpeg")
    with pytest.raises(SourceError, match=r"x\.jpg: cannot identify image file"):
        load_rgb(tmp_path / "x.jpg", LoadOptions())
    with pytest.raises(SourceError, match=r"nope\.jpg: no such file"):
        load_rgb(tmp_path / "nope.jpg", LoadOptions())


@pytest.mark.parametrize("limit", [30_000, 100])  # between 1x and 2x Pillow's limit (warning) and far over (error)
def test_decompression_bomb_guard(tmp_path, limit):
    p = write_rgb(tmp_path / "big.png", 200, 200)  # 40,000 pixels
    saved = Image.MAX_IMAGE_PIXELS
    with pytest.raises(SourceError, match=r"big\.png: .*max_image_pixels"):
        load_rgb(p, LoadOptions(max_image_pixels=limit))
    assert Image.MAX_IMAGE_PIXELS == saved  # the global is restored
    arr, _ = load_rgb(p, LoadOptions(max_image_pixels=40_000))
    assert arr.shape == (200, 200, 3)


def test_too_small(tmp_path):
    p = write_rgb(tmp_path / "s.png", 40, 30)
    with pytest.raises(SourceError, match=r"s\.png: image is 40x30, smaller than source.min_side=128"):
        load_rgb(p, LoadOptions())


def test_downscale_longer_side(tmp_path):
    p = write_rgb(tmp_path / "w.png", 400, 200)
    arr, info = load_rgb(p, LoadOptions(min_side=8, max_side=100))
    assert arr.shape == (50, 100, 3) and info["size"] == [100, 50] and info["scale"] == 0.25
    assert info["orig_size"] == [400, 200]


def test_encode_is_deterministic_and_clean():
    img = Image.fromarray(textured(64, 80))
    img.info["exif"] = b"Exif\x00\x00junk"
    for fmt in ("jpeg", "png", "webp"):
        a, b = encode_image(img, fmt), encode_image(img.copy(), fmt)
        assert a == b
        back = decode_image(a)
        assert back.mode == "RGB" and back.size == (80, 64)
    assert b"junk" not in encode_image(img, "jpeg")
    assert np.array_equal(np.asarray(decode_image(encode_image(img, "png"))), np.asarray(img))
    with pytest.raises(ValueError, match="unknown image format"):
        encode_image(img, "gif")


def test_file_digest(tmp_path):
    (tmp_path / "a").write_bytes(b"abc" * 2_000_000)  # larger than one read chunk
    (tmp_path / "b").write_bytes(b"xyz")
    expected = xxhash.xxh3_128(b"abc" * 2_000_000 + b"xyz").hexdigest()
    assert file_digest(tmp_path / "a", tmp_path / "b") == f"xxh3_128:{expected}"
    assert file_digest(tmp_path / "b", tmp_path / "a") != file_digest(tmp_path / "a", tmp_path / "b")


# ------------------------------------------------------------------------------------------------- RGB discovery

def _tree(root):
    write_rgb(root / "b.jpg")
    write_rgb(root / "sub" / "a.PNG")
    write_rgb(root / "sub" / "deep" / "c.webp")
    write_rgb(root / "sub" / "a_depth.png")  # depth stored as PNG next to the RGB: not an RGB source
    write_rgb(root / "sub" / "a_depth_mask.png")
    (root / "notes.txt").write_text("x")
    write_rgb(root / ".hidden" / "h.jpg")


def test_discover_folder_ids_relative_and_stable(tmp_path):
    root = tmp_path / "photos"
    _tree(root)
    refs, skipped = discover_rgb(str(root))
    ids = [r.id for r in refs]
    assert ids == ["photos/b.jpg", "photos/sub/a.PNG", "photos/sub/deep/c.webp"]
    assert skipped == [(str(root / "notes.txt"), reason_not_image("notes.txt")),
                       (str(root / "sub" / "a_depth.png"), REASON_DEPTH_NAMED),
                       (str(root / "sub" / "a_depth_mask.png"), REASON_DEPTH_NAMED)]  # .hidden/h.jpg: silent
    assert all(r.scheme == "file" and r.depth_format is None and not r.has_depth for r in refs)
    assert all(not r.id.startswith("/") and str(tmp_path) not in r.id for r in refs)
    moved = tmp_path / "elsewhere" / "photos"
    shutil.copytree(root, moved)
    assert [r.id for r in discover_rgb(str(moved) + "/")[0]] == ids  # same ids on another machine / path


def test_discover_glob(tmp_path):
    root = tmp_path / "photos"
    _tree(root)
    refs, _ = discover_rgb(str(root / "sub" / "**" / "*"))
    assert [r.id for r in refs] == ["sub/a.PNG", "sub/deep/c.webp"]
    refs, _ = discover_rgb(str(root / "*.jpg"))
    assert [r.id for r in refs] == ["photos/b.jpg"]
    assert discover_rgb(str(root / "*.nothing"))[0] == []


def test_discover_list_file(tmp_path):
    root = tmp_path / "photos"
    _tree(root)
    lst = tmp_path / "train_split.txt"
    lst.write_text(f"# my split\nphotos/b.jpg\n\n  photos/sub/a.PNG  \nphotos/missing.jpg\n{root / 'sub/deep/c.webp'}\n"
                   "photos/b.jpg\nphotos/notes.txt\n")
    refs, skipped = discover_rgb(str(lst))
    assert [r.id for r in refs] == ["train_split/photos/b.jpg", "train_split/photos/sub/a.PNG",
                                    "train_split/photos/sub/deep/c.webp"]
    assert os.path.isabs(refs[0].rgb_path) and os.path.isfile(refs[0].rgb_path)
    reasons = dict(skipped)
    assert "no such file" in reasons[str(tmp_path / "photos/missing.jpg")]
    assert any("duplicate" in r for _, r in skipped) and any("not a supported image (extension .txt;" in r for _, r in skipped)


def test_discover_missing_spec():
    with pytest.raises(SourceError, match=r"^--rgb /no/such/dir: no such file or folder$"):
        discover_rgb("/no/such/dir")


# ------------------------------------------------------------------------------------------------- depth readers

def test_diode_discover_and_load(tmp_path):
    root = tmp_path / "val"
    write_diode(root / "indoors" / "scene_1", "00001", mask=True)
    write_diode(root / "outdoor" / "scene_2", "00002", mask=False)
    write_rgb(root / "outdoor" / "scene_2" / "lonely.png")  # no depth next to it
    refs, skipped = discover_rgbd(f"diode:{root}")
    assert [r.id for r in refs] == ["val/indoors/scene_1/00001.png", "val/outdoor/scene_2/00002.png"]
    assert [os.path.basename(p) for p, _ in skipped] == ["lonely.png"] and "lonely_depth.npy" in skipped[0][1]
    assert refs[0].mask_path and refs[1].mask_path is None
    assert refs[0].depth_format == "diode" and refs[0].depth_kind == "metric"
    src = load_source(refs[0], LoadOptions())
    assert src.rgb.shape == (128, 160, 3) and src.depth.shape == (128, 160) and src.depth.kind == "metric"
    assert not src.depth.valid[:32].any() and src.depth.valid[32:].all()
    assert np.all(src.depth.values[:32] == 0) and np.isfinite(src.depth.values).all()
    assert src.info["valid_fraction"] == pytest.approx(0.75)
    assert src.info["depth_format"] == "diode" and src.info["rgb_path"] == refs[0].rgb_path
    files = [refs[0].rgb_path, refs[0].depth_path, refs[0].mask_path]
    assert src.digest == file_digest(*files)
    assert [r.id for r in discover_rgb(str(root))[0]] == ["val/indoors/scene_1/00001.png", "val/outdoor/scene_2/00002.png",
                                                         "val/outdoor/scene_2/lonely.png"]


def test_diode_mask_invalidates_and_hw_shape(tmp_path):
    d = ramp_depth(32, 40)
    np.save(tmp_path / "x_depth.npy", d)  # (H, W) also accepted
    np.save(tmp_path / "x_depth_mask.npy", np.zeros((32, 40)) + (np.arange(40) >= 20))
    ref = SourceRef("t/x", "file", depth_path=str(tmp_path / "x_depth.npy"), mask_path=str(tmp_path / "x_depth_mask.npy"),
                    depth_format="diode")
    dm = load_depth(ref)
    assert dm.valid[:, 20:].all() and not dm.valid[:, :20].any() and np.all(dm.values[:, :20] == 0)


def test_megadepth_layout(tmp_path):
    root = tmp_path / "MegaDepth_v1"
    write_megadepth(root / "0001" / "dense0", "img_a", zero_fraction=0.6)
    write_megadepth(root / "0001" / "dense0", "img_b", image=False)
    refs, skipped = discover_rgbd(f"megadepth:{root}")
    assert [r.id for r in refs] == ["MegaDepth_v1/0001/dense0/imgs/img_a.jpg"]
    assert refs[0].depth_kind == "relative" and refs[0].depth_format == "megadepth"
    assert len(skipped) == 1 and skipped[0][0].endswith("img_b.h5")
    src = load_source(refs[0], LoadOptions())
    assert src.depth.kind == "relative" and src.info["valid_fraction"] == pytest.approx(0.4, abs=0.01)
    assert not src.depth.valid[:80].any() and src.depth.values[~src.depth.valid].max() == 0
    # .h5 without the "depth" key
    bad = write_megadepth(tmp_path / "bad" / "dense0", "k", key="other")
    with pytest.raises(SourceError, match=r"k\.h5: no dataset 'depth'"):
        load_depth(SourceRef("b/k", "file", depth_path=str(bad["depth"]), depth_format="megadepth"))
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    with pytest.raises(SourceError, match=r"garbage\.h5: cannot read HDF5 file"):
        read_generic_depth(tmp_path / "garbage.h5", "megadepth")


def test_png16_pairs_with_scale_and_invalid(tmp_path):
    root = tmp_path / "kitchen"
    write_rgb(root / "rgb" / "seq" / "f1.jpg", 64, 48, quality=90)
    mm = np.full((48, 64), 2500, np.uint16)
    mm[:, :16] = 0  # no return
    mm[0, 16] = 65535
    write_png16(root / "depth" / "seq" / "f1.png", mm)
    write_rgb(root / "rgb" / "seq" / "f2.jpg", 64, 48)  # no depth
    refs, skipped = discover_rgbd(f"pairs:{root},scale=0.001")
    assert [r.id for r in refs] == ["kitchen/rgb/seq/f1.jpg"] and len(skipped) == 1
    assert refs[0].depth_format == "png16" and refs[0].invalid_value == 0.0 and refs[0].depth_scale == 0.001
    src = load_source(refs[0], SMALL)
    v = src.depth
    assert not v.valid[:, :16].any() and v.valid[:, 16:].all()
    assert v.values[10, 30] == pytest.approx(2.5) and v.values[0, 16] == pytest.approx(65.535)


def test_npz_and_npy_pairs_side_by_side(tmp_path):
    root = tmp_path / "pairs"
    write_rgb(root / "a.jpg", 64, 48)
    np.savez(root / "a_depth.npz", other=np.zeros(3), depth=ramp_depth(48, 64))
    write_rgb(root / "b.png", 64, 48)
    np.savez(root / "b_depth.npz", ramp_depth(48, 64, 0.5, 2.0))  # unnamed: first array
    write_rgb(root / "c.png", 64, 48)
    np.save(root / "c_depth.npy", 1.0 / ramp_depth(48, 64))
    write_png16(root / "d_depth.png", np.ones((48, 64)))  # a depth PNG with no RGB: never an RGB source
    refs, skipped = discover_rgbd(f"pairs:{root},kind=inverse")
    assert [(r.id, r.depth_format) for r in refs] == [("pairs/a.jpg", "npz"), ("pairs/b.png", "npz"), ("pairs/c.png", "npy")]
    assert skipped == [(str(root / "d_depth.png"), "not part of an RGB-D pair (X.<image> + X_depth.{npy,npz,png} in one folder)")]
    assert all(r.depth_kind == "inverse" for r in refs)
    assert all(s.depth.valid.all() for s in (load_source(r, SMALL) for r in refs))
    assert load_source(refs[1], SMALL).depth.values.max() == pytest.approx(2.0)
    assert [r.id for r in discover_rgb(str(root))[0]] == ["pairs/a.jpg", "pairs/b.png", "pairs/c.png"]


def test_nan_only_and_sparse_depth_rejected(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((20, 20), np.nan, np.float32))
    with pytest.raises(SourceError, match=r"nan\.npy: depth map has no valid pixels$"):
        read_generic_depth(tmp_path / "nan.npy")
    sparse = np.zeros((100, 100), np.float32)
    sparse[0, :5] = 3.0  # 0.05% valid
    np.save(tmp_path / "sparse.npy", sparse)
    with pytest.raises(SourceError, match=r"sparse\.npy: only 0\.05% of depth pixels are valid"):
        read_generic_depth(tmp_path / "sparse.npy")
    values, valid = read_generic_depth(tmp_path / "sparse.npy", min_valid_fraction=0.0001)
    assert valid.sum() == 5
    mixed = np.array([[np.inf, -1.0], [np.nan, 2.0]], np.float32)
    np.save(tmp_path / "mixed.npy", mixed)
    values, valid = read_generic_depth(tmp_path / "mixed.npy")
    assert valid.tolist() == [[False, False], [False, True]] and values.tolist() == [[0, 0], [0, 2.0]]


def test_bad_depth_arrays(tmp_path):
    np.save(tmp_path / "rgb.npy", np.ones((4, 4, 3), np.float32))
    with pytest.raises(SourceError, match=r"rgb\.npy: depth array has shape \(4, 4, 3\)"):
        read_generic_depth(tmp_path / "rgb.npy")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(SourceError, match=r"s\.npy: depth array has dtype"):
        read_generic_depth(tmp_path / "s.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(SourceError, match=r"junk\.npy: cannot read \.npy"):
        read_generic_depth(tmp_path / "junk.npy")
    np.savez(tmp_path / "e.npz")
    with pytest.raises(SourceError, match=r"e\.npz: \.npz archive holds no arrays"):
        read_generic_depth(tmp_path / "e.npz")
    write_rgb(tmp_path / "colour.png", 16, 16)
    with pytest.raises(SourceError, match=r"colour\.png: expected a 16-bit single-channel PNG"):
        read_generic_depth(tmp_path / "colour.png")


# ------------------------------------------------------------------------------------------------- alignment

def _mismatched_pair(tmp_path):
    root = tmp_path / "mm"
    write_rgb(root / "x.png", 160, 128)
    d = ramp_depth(64, 80)
    d[:, :40] = 0  # left half invalid
    np.save(root / "x_depth.npy", d)
    (ref,), _ = discover_rgbd(f"pairs:{root}")
    return ref


def test_size_mismatch_is_an_error_by_default(tmp_path):
    ref = _mismatched_pair(tmp_path)
    with pytest.raises(SourceError, match=r"x\.png: RGB is 160x128 but depth .*x_depth\.npy is 80x64; "
                                          r"set source\.depth_resize=nearest to resize$"):
        load_source(ref, SMALL)


def test_size_mismatch_nearest_policy(tmp_path):
    ref = _mismatched_pair(tmp_path)
    src = load_source(ref, LoadOptions(min_side=8, depth_resize="nearest"))
    assert src.depth.shape == (128, 160) and src.info["depth_resized"] == "nearest"
    assert src.info["depth_orig_size"] == [80, 64]
    assert not src.depth.valid[:, :80].any() and src.depth.valid[:, 80:].all()
    assert src.depth.values[0, 100] == pytest.approx(10.0)  # nearest: no blending between rows
    with pytest.raises(ConfigError, match="depth_resize"):
        load_source(ref, LoadOptions(min_side=8, depth_resize="bilinear"))


def test_depth_follows_rgb_downscale(tmp_path):
    write_diode(tmp_path / "d", "big", w=320, h=240)
    (ref,), _ = discover_rgbd(f"diode:{tmp_path / 'd'}")
    src = load_source(ref, LoadOptions(max_side=100))
    assert src.rgb.shape == (75, 100, 3) and src.depth.shape == (75, 100)
    assert src.info["scale"] == pytest.approx(100 / 320) and src.info["orig_size"] == [320, 240]
    assert src.info["depth_resized"] is None and 0.7 < src.info["valid_fraction"] < 0.8


# ------------------------------------------------------------------------------------------------- specs

def test_parse_rgbd_spec():
    assert parse_rgbd_spec("megadepth:/data/MD")["depth_kind"] == "relative"
    assert parse_rgbd_spec("diode:/data/val")["depth_kind"] == "metric"
    cfg = parse_rgbd_spec("pairs:/d,kind=inverse,scale=0.001,invalid=65535,format=png16")
    assert cfg == {"layout": "pairs", "path": "/d", "depth_kind": "inverse", "scale": 0.001, "invalid": 65535.0,
                   "format": "png16"}
    with pytest.raises(ConfigError, match="unknown kind 'nyu'"):
        parse_rgbd_spec("nyu:/d")
    with pytest.raises(ConfigError, match="unknown key 'scael'"):
        parse_rgbd_spec("pairs:/d,scael=2")
    with pytest.raises(ConfigError, match="unknown key 'format' for diode"):
        parse_rgbd_spec("diode:/d,format=npy")
    with pytest.raises(ConfigError, match="kind='far'"):
        parse_rgbd_spec("pairs:/d,kind=far")
    with pytest.raises(ConfigError, match="scale='x' is not a number"):
        parse_rgbd_spec("pairs:/d,scale=x")
    with pytest.raises(ConfigError, match="expected KIND:PATH"):
        parse_rgbd_spec("/just/a/path")


def test_rgbd_missing_folder():
    with pytest.raises(SourceError, match="no such folder"):
        discover_rgbd("diode:/no/such/folder")


def test_unknown_scheme():
    with pytest.raises(ConfigError, match="unknown source scheme"):
        load_source(SourceRef("x/y", "s3"), LoadOptions())


def test_decode_image_bad_bytes():
    with pytest.raises(SourceError, match="<bytes>"):
        decode_image(b"garbage")
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(buf, "PNG")
    assert decode_image(buf.getvalue()).getpixel((0, 0)) == (255, 255, 255)


# ------------------------------------------------------------------------------------------------- every input accounted for

def _mixed_dir(root):
    """Good images of every supported kind next to files discovery must report, and hidden files it must not."""
    root.mkdir(parents=True)
    good = {"a.jpg", "b.png", "pal.gif", "anim.gif", "g16.tif"}
    write_rgb(root / "a.jpg")
    write_rgb(root / "b.png")
    Image.fromarray(textured(40, 50)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "pal.gif")
    frames = [Image.fromarray(textured(40, 50, seed=s)).convert("P") for s in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(np.linspace(0, 65535, 2000).reshape(40, 50).astype(np.uint16)).save(root / "g16.tif")
    (root / "README.txt").write_text("about these images")
    (root / "noext").write_bytes(b"x")
    os.symlink(root / "gone.jpg", root / "broken.jpg")
    (root / "empty.jpg").write_bytes(b"")
    write_rgb(root / "a_depth.png")
    (root / ".hidden.jpg").write_bytes(b"x")  # hidden: ignored silently in every mode
    expected = {"README.txt": reason_not_image("README.txt"), "noext": reason_not_image("noext"),
                "broken.jpg": REASON_BROKEN_LINK, "empty.jpg": "empty file (0 bytes)", "a_depth.png": REASON_DEPTH_NAMED}
    return good, expected


def test_every_input_accounted_for_the_same_in_every_mode(tmp_path):
    root = tmp_path / "mixed"
    good, expected = _mixed_dir(root)
    listed = sorted(n for n in os.listdir(root) if not n.startswith("."))
    lst = tmp_path / "all.txt"
    lst.write_text("".join(f"mixed/{n}\n" for n in listed))
    results = {"folder": discover_rgb(str(root)), "glob": discover_rgb(str(root / "*")), "list": discover_rgb(str(lst))}
    for mode, (refs, skipped) in results.items():
        assert sorted(os.path.basename(r.rgb_path) for r in refs) == sorted(good), mode
        assert all(os.path.isabs(p) for p, _ in skipped), mode
        assert dict(skipped) == {str(root / n): reason for n, reason in expected.items()}, mode
        taken = {os.path.basename(r.rgb_path) for r in refs} | {os.path.basename(p) for p, _ in skipped}
        assert taken == set(listed), mode  # every non-hidden file, once
    assert [r.id for r in results["folder"][0]] == [r.id for r in results["glob"][0]]  # same root: same ids
    # one file given as the spec: the same reasons
    assert discover_rgb(str(root / "a_depth.png")) == ([], [(str(root / "a_depth.png"), REASON_DEPTH_NAMED)])
    assert discover_rgb(str(root / "broken.jpg")) == ([], [(str(root / "broken.jpg"), REASON_BROKEN_LINK)])
    (ref,), _ = discover_rgb(str(root / "g16.tif"))
    assert ref.id == "mixed/g16.tif"


def test_relative_specs_give_absolute_skipped_paths(tmp_path, monkeypatch):
    _mixed_dir(tmp_path / "mixed")
    monkeypatch.chdir(tmp_path)
    for spec in ("mixed", "mixed/*", "./mixed/../mixed/*"):
        refs, skipped = discover_rgb(spec)
        assert len(refs) == 5 and len(skipped) == 5, spec
        assert all(os.path.isabs(p) and os.path.normpath(p) == p for p, _ in skipped), spec
        assert all(os.path.isabs(r.rgb_path) for r in refs), spec


def test_folder_walk_reports_link_loops_and_special_files(tmp_path):
    root = tmp_path / "r"
    write_rgb(root / "sub" / "a.jpg")
    os.symlink(root / "sub", root / "sub" / "loop")  # a folder link back into the walked tree
    os.mkfifo(root / "pipe.jpg")  # a reader would block forever on it
    refs, skipped = discover_rgb(str(root))
    assert [r.id for r in refs] == ["r/sub/a.jpg"]
    assert dict(skipped) == {str(root / "pipe.jpg"): "not a regular file (device, pipe or socket)",
                             str(root / "sub" / "loop"): "folder already walked through another path (symbolic link)"}


def test_unreadable_file_and_folder_are_reported(tmp_path, monkeypatch):
    root = tmp_path / "r"
    write_rgb(root / "ok.jpg")
    write_rgb(root / "secret.jpg")
    write_rgb(root / "locked" / "x.jpg")
    real_access, real_scandir = os.access, os.scandir

    def access(path, mode, *a, **k):  # as if run by a user without read permission (root reads everything)
        return False if os.fspath(path).endswith("secret.jpg") else real_access(path, mode, *a, **k)

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "scandir", scandir)
    for spec in (str(root), str(root / "*")):
        refs, skipped = discover_rgb(spec)
        assert [r.id for r in refs] == ["r/ok.jpg"]
        assert skipped[-1] == (str(root / "secret.jpg"), "cannot read file (permission denied)")
    assert discover_rgb(str(root))[1][0] == (str(root / "locked"), "cannot list folder (Permission denied)")


def test_rgbd_layouts_account_for_every_file(tmp_path):
    root = tmp_path / "val"
    write_diode(root / "s", "00001", mask=True)
    np.save(root / "s" / "orphan_depth.npy", ramp_depth(8, 8))
    (root / "s" / "notes.txt").write_text("x")
    os.symlink(root / "nowhere.png", root / "s" / "dead.png")
    refs, skipped = discover_rgbd(f"diode:{root}")
    assert [r.id for r in refs] == ["val/s/00001.png"]
    diode = "not part of a DIODE pair (X.<image> + X_depth.npy [+ X_depth_mask.npy] in one folder)"
    assert dict(skipped) == {str(root / "s" / "dead.png"): REASON_BROKEN_LINK, str(root / "s" / "notes.txt"): diode,
                             str(root / "s" / "orphan_depth.npy"): diode}
    md = tmp_path / "MD"
    write_megadepth(md / "0001" / "dense0", "a")
    write_rgb(md / "0001" / "dense0" / "imgs" / "lonely.jpg")
    refs, skipped = discover_rgbd(f"megadepth:{md}")
    assert len(refs) == 1 and [os.path.basename(p) for p, _ in skipped] == ["lonely.jpg"]
    assert skipped[0][1].startswith("not part of a MegaDepth pair")
    pairs = tmp_path / "kitchen"
    write_rgb(pairs / "rgb" / "f1.jpg", 64, 48)
    write_png16(pairs / "depth" / "f1.png", np.full((48, 64), 900))
    write_png16(pairs / "depth" / "f9.png", np.full((48, 64), 900))  # no RGB
    (pairs / "depth" / "f2.png").write_bytes(b"")
    write_rgb(pairs / "rgb" / "f2.jpg", 64, 48)  # its depth is empty: reported, not paired
    refs, skipped = discover_rgbd(f"pairs:{pairs}")
    assert [r.id for r in refs] == ["kitchen/rgb/f1.jpg"]
    assert dict(skipped) == {
        str(pairs / "depth" / "f2.png"): "empty file (0 bytes)",
        str(pairs / "depth" / "f9.png"): "not part of an RGB-D pair (rgb/**/X.<image> + depth/**/X.{npy,npz,png})",
        str(pairs / "rgb" / "f2.jpg"): "no matching depth file depth/f2.{npy,npz,png}"}


# ------------------------------------------------------------------------------------------------- TIFF, GIF, odd modes

def _decode_twice(path):
    a, info = load_rgb(path, SMALL)
    b, _ = load_rgb(path, SMALL)
    assert a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8 and np.array_equal(a, b)
    return a, info


def test_tiff_and_gif_modes_decode_to_rgb(tmp_path):
    assert {".tif", ".tiff", ".gif"} <= set(IMAGE_EXTS)
    base = Image.fromarray(textured(40, 50))
    g16 = np.linspace(0, 65535, 2000).reshape(40, 50).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.tif")
    Image.frombytes("I;16B", (50, 40), g16.astype(">u2").tobytes()).save(tmp_path / "g16b.tiff")
    Image.fromarray(np.linspace(0, 1, 2000).reshape(40, 50).astype(np.float32)).save(tmp_path / "f.tif")
    Image.fromarray(np.linspace(-5, 300, 2000).reshape(40, 50).astype(np.float32)).save(tmp_path / "fbig.tif")
    rgba = np.dstack([textured(40, 50), np.full((40, 50), 255, np.uint8)])
    rgba[:, :10, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.tif")
    for mode in ("1", "LAB", "YCbCr", "CMYK", "I"):
        base.convert(mode).save(tmp_path / f"m_{mode}.tif")
    base.convert("HSV").convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.gif")
    for name, mode in (("g16.tif", "I;16"), ("g16b.tiff", "I;16B"), ("f.tif", "F"), ("fbig.tif", "F"),
                       ("rgba.tif", "RGBA"), ("m_1.tif", "1"), ("m_LAB.tif", "LAB"), ("m_YCbCr.tif", "YCbCr"),
                       ("m_CMYK.tif", "CMYK"), ("m_I.tif", "I"), ("pal.gif", "P")):
        arr, info = _decode_twice(tmp_path / name)
        assert arr.shape == (40, 50, 3) and info["mode"] == mode, name
    for name in ("g16.tif", "g16b.tiff", "f.tif", "fbig.tif"):  # full range -> 0..255, grey
        arr, _ = _decode_twice(tmp_path / name)
        assert arr.min() == 0 and arr.max() == 255 and np.array_equal(arr[..., 0], arr[..., 2]), name
    arr, _ = _decode_twice(tmp_path / "rgba.tif")
    assert (arr[:, :10] == 255).all()  # transparent over white
    lab, _ = _decode_twice(tmp_path / "m_LAB.tif")
    assert np.abs(lab.astype(int) - textured(40, 50).astype(int)).mean() < 4  # a colour conversion, not a copy


def test_animated_gif_and_multipage_tiff_give_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 30), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    for name in ("anim.gif", "pages.tif"):
        arr, _ = _decode_twice(tmp_path / name)
        assert arr.shape == (30, 40, 3)
        r, g, b = arr[15, 20].astype(int)
        assert r > 150 and g < 50 and b < 50, name


def test_transparent_gif_is_composited_over_white(tmp_path):
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    img.paste(1, (10, 0, 20, 20))
    img.save(tmp_path / "t.gif", transparency=0)
    arr, _ = _decode_twice(tmp_path / "t.gif")
    assert tuple(arr[5, 2]) == (255, 255, 255) and tuple(arr[5, 15]) == (255, 0, 0)


def test_bad_inputs_raise_one_line_source_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    good = write_rgb(tmp_path / "ok.gif", 64, 48)
    data = good.read_bytes()
    (tmp_path / "trunc.gif").write_bytes(data[: len(data) // 2])
    cases = {"empty.jpg": "empty file (0 bytes)", "folder.png": "is a folder, not an image file",
             "trunc.gif": "cannot decode image (truncated)"}
    for name, reason in cases.items():
        with pytest.raises(SourceError) as e:
            load_rgb(tmp_path / name, SMALL)
        assert str(e.value) == f"{tmp_path / name}: {reason}"
    # depth files: every malformed input is a SourceError naming the file
    import zipfile

    (tmp_path / "z.npy").write_bytes(b"")
    (tmp_path / "d.npz").mkdir()
    os.symlink(tmp_path / "nowhere.npy", tmp_path / "dead.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + b"\x01" * 64)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("depth.npy", b"\x00" * 4000)
    data = bytearray((tmp_path / "bad.npz").read_bytes())
    data[40:60] = b"\xff" * 20  # corrupt deflate stream
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    np.save(tmp_path / "obj.npy", np.array([1, None], dtype=object), allow_pickle=True)
    for name, reason in (("z.npy", "empty file"), ("d.npz", "is a folder"), ("dead.npy", "broken symbolic link"),
                         ("junk.npz", "cannot read .npz"), ("bad.npz", "cannot read .npz"), ("obj.npy", "cannot read .npy")):
        with pytest.raises(SourceError) as e:
            read_generic_depth(tmp_path / name)
        assert str(e.value).startswith(f"{tmp_path / name}: {reason}") and "\n" not in str(e.value), name
