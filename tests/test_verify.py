"""``ssrl verify`` (and the sources of ``ssrl preview``) from any folder: relative builds, moved corpora found with
``--sources``, one line when sources are missing, ``--format sft`` builds, user errors without a traceback, and
tampered answers still caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from data_builders.cli import main
from data_builders.relocate import find_sources, relocate
from data_builders.verify import verify_dataset

SMALL_DEMO = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240"]


def write_jpegs(folder: Path, n: int = 10, seed: int = 0) -> Path:
    """Small textured JPEGs: noise plus a few shapes, so every patch task finds content."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((320, 240), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, 280)), int(rng.integers(0, 200))
            box = (x0, y0, x0 + int(rng.integers(20, 120)), y0 + int(rng.integers(20, 90)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
        img.save(folder / f"img_{i:02d}.jpg", quality=92)
    return folder


def write_pairs(folder: Path, n: int = 4) -> Path:
    """``pairs`` layout (``rgb/X.png`` + ``depth/X.npy``, metres) of demo RGB-D scenes at 320x240."""
    from ssrl_plugin.demo import render_rgbd

    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    for i in range(n):
        rgb, depth, _ = render_rgbd(i, 320, 240)
        Image.fromarray(rgb).save(folder / "rgb" / f"s{i}.png")
        np.save(folder / "depth" / f"s{i}.npy", np.where(depth.valid, depth.values, 0).astype(np.float32))
    return folder


@pytest.fixture(scope="module")
def rgb_build(tmp_path_factory) -> tuple[Path, Path]:
    """A build from a RELATIVE --rgb path (cwd = the corpus' parent), like a user in their data folder."""
    root = tmp_path_factory.mktemp("verify_rgb")
    write_jpegs(root / "corpus" / "photos")
    out = root / "ds"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root / "corpus")
        assert main(["build", "--out", str(out), "--rgb", "photos", "--num-samples", "30", "--quiet",
                     "--tasks", "shuffle,flip,crop"]) == 0
    return root, out


def test_verify_from_another_folder(rgb_build, tmp_path, monkeypatch, capsys):
    _, out = rgb_build
    monkeypatch.chdir(tmp_path)
    assert main(["verify", str(out)]) == 0
    captured = capsys.readouterr()
    assert "verified 30 samples" in captured.out and ": 0 mismatches" in captured.out
    assert "without their source" not in captured.out and captured.err == ""


def test_moved_corpus_one_line_then_found_with_sources(rgb_build, tmp_path, monkeypatch, capsys):
    root, out = rgb_build
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copytree(root / "corpus" / "photos", moved / "photos")
    ds = tmp_path / "ds"
    shutil.copytree(out, ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    gone = str(tmp_path / "gone" / "photos")  # the recorded root no longer exists
    manifest["config"]["rgb"] = [gone]
    (ds / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)

    # missing: one line naming the recorded root, samples checked against their metadata, exit 0 (no mismatch)
    assert main(["verify", str(ds)]) == 0
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line]
    assert err == [f"ssrl verify: sources not found: {gone} (moved? pass --sources NEWDIR)"]
    assert "Traceback" not in captured.err
    assert "30 of them checked without their source" in captured.out and ": 0 mismatches" in captured.out

    # --sources: the parent folder or the root folder itself both work; every sample has its source again
    for where in (moved, moved / "photos"):
        assert main(["verify", str(ds), "--sources", str(where), "--json"]) == 0
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["checked"] == 30 and report["without_source"] == 0 and report["problems"] == []
        assert report["relocated"] == {gone: str(moved / "photos")}
        assert captured.err == ""

    # a --sources folder that does not exist is a one-line user error
    assert main(["verify", str(ds), "--sources", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"ssrl: error: --sources {tmp_path / 'nope'}: no such folder"


def test_relocate_keeps_globs_lists_and_rgbd_options(tmp_path):
    (tmp_path / "new" / "imgs").mkdir(parents=True)
    (tmp_path / "new" / "pairs_root").mkdir()
    (tmp_path / "new" / "list.txt").write_text("imgs/a.jpg\n")
    cfg = {"rgb": ["/old/imgs/**/*.jpg", "/old/list.txt", str(tmp_path / "new" / "imgs")],
           "rgbd": ["pairs:/old/pairs_root,scale=0.001,format=png16", "diode:/old/missing"]}
    rel = relocate(cfg, [str(tmp_path / "new")])
    new = str(tmp_path / "new")
    assert rel.config["rgb"] == [f"{new}/imgs/**/*.jpg", f"{new}/list.txt", f"{new}/imgs"]
    assert rel.config["rgbd"] == [f"pairs:{new}/pairs_root,scale=0.001,format=png16"]
    assert rel.missing == ["/old/missing"]
    assert cfg["rgb"][0] == "/old/imgs/**/*.jpg"  # the manifest's config is not changed in place



def test_a_root_that_is_its_own_source_keeps_its_id_when_moved(tmp_path):
    """One image given to --rgb and one sequence folder given to --sequences are named after their parent folder
    (``a/...``); moved under another parent they are found with --sources and keep the ids the build recorded."""
    from ssrl_plugin.sequence_export import write_frames

    write_jpegs(tmp_path / "a" / "imgs", n=1)
    image = next((tmp_path / "a" / "imgs").iterdir())
    shutil.move(str(image), tmp_path / "a" / "one.jpg")
    rng = np.random.default_rng(0)
    write_frames([rng.integers(0, 255, (64, 80, 3), np.uint8) for _ in range(4)], tmp_path / "a" / "walk")
    config = {"rgb": [str(tmp_path / "a" / "one.jpg")], "sequences": [f"frames:{tmp_path / 'a' / 'walk'}"]}
    before, _ = find_sources(config)
    assert {"a/one.jpg", "a/walk"} <= set(before.refs)
    (tmp_path / "a").rename(tmp_path / "b")
    after, _ = find_sources(config, [str(tmp_path / "b")])
    assert after.missing == [] and set(after.refs) == set(before.refs)
    assert after.refs["a/walk"].rgb_path == str(tmp_path / "b" / "walk")

def test_verify_tampered_answer_is_a_mismatch(rgb_build, tmp_path, capsys):
    _, out = rgb_build
    ds = tmp_path / "ds"
    shutil.copytree(out, ds, ignore=shutil.ignore_patterns("verl"))
    path = sorted((ds / "easyr1").glob("train-*.parquet"))[0]
    table = pq.read_table(path)
    rows = table.to_pylist()
    target = next(i for i, r in enumerate(rows) if r["task"] == "flip")
    gt = json.loads(rows[target]["answer"])
    label, direction = gt["answer"].split("-")
    gt["answer"] = f"{label}-{1 - int(direction)}"
    rows[target]["answer"] = json.dumps(gt)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    assert main(["verify", str(ds)]) == 1
    captured = capsys.readouterr().out
    assert f"MISMATCH {rows[target]['id']}" in captured and ": 1 mismatches" in captured


def test_verify_sft_build(tmp_path, capsys):
    out = tmp_path / "sft_ds"
    assert main(["build", "--out", str(out), "--format", "sft", "--num-samples", "30", "--quiet", *SMALL_DEMO]) == 0
    entry = json.loads((out / "sft" / "train.json").read_text())[0]
    assert json.loads(entry["metadata"])["source"]["id"] and entry["id"]
    assert main(["verify", str(out)]) == 0
    assert "verified 30 samples" in capsys.readouterr().out
    report = verify_dataset(out, workers=2)  # the same report from worker processes
    assert report.checked == 30 and report.problems == [] and report.without_source == 0 and report.layout == "sft"


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"ssrl: error: {tmp_path / 'missing'}: not a folder"
    assert main(["verify", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text('{"config": {"rgb": [')
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ssrl: error: {tmp_path / 'manifest.json'}: not valid JSON")
    (tmp_path / "manifest.json").write_text('{"config": {}}')
    (tmp_path / "easyr1").mkdir()
    (tmp_path / "easyr1" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 not really parquet")
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train-00000-of-00001.parquet: cannot read this parquet file" in err[0]


def test_preview_from_another_folder_keeps_depth_overlays(tmp_path, monkeypatch, capsys):
    """A build made with a relative --rgbd path: from elsewhere the depth heat maps still come from the source;
    once moved, one line on stderr and a note in the page, and --sources brings the heat maps back."""
    root = tmp_path / "data"
    write_pairs(root / "scenes")
    monkeypatch.chdir(root)
    out = tmp_path / "ds"
    assert main(["build", "--out", str(out), "--rgbd", "pairs:scenes", "--tasks", "depth", "--num-samples", "6",
                 "--val-fraction", "0", "--quiet"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    html = elsewhere / "g.html"
    assert main(["preview", str(out), "--out", str(html), "--per-task", "2"]) == 0
    assert "depth source unavailable" not in html.read_text()  # the overlays read the source's depth
    assert capsys.readouterr().err == ""

    shutil.move(str(root / "scenes"), str(elsewhere / "scenes"))
    assert main(["preview", str(out), "--out", str(html), "--per-task", "2"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ssrl preview: sources not found: {root / 'scenes'} (moved? pass --sources NEWDIR)"]
    page = html.read_text()
    assert "sources not found" in page and "depth source unavailable" in page
    assert main(["preview", str(out), "--out", str(html), "--per-task", "2", "--sources", str(elsewhere)]) == 0
    assert capsys.readouterr().err == ""
    assert "depth source unavailable" not in html.read_text()
