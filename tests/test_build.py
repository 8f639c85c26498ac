"""End-to-end builds: determinism across runs and worker counts, schema, splits, balance, bad inputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import textured_rgb
from data_builders.pipeline import build
from data_builders.verify import verify_dataset
from data_builders.cli import main
from ssrl_plugin.config import load_config

SMALL_DEMO = ["demo.num_rgb=10", "demo.num_rgbd=10", "demo.width=320", "demo.height=240"]


def demo_build(out: Path, *overrides: str, **flags):
    flags.setdefault("num_samples", 60)
    config = load_config(None, [*SMALL_DEMO, *overrides], out=str(out), **flags)
    return build(config, progress=False)


def read_rows(out: Path, layout: str, split: str | None = None) -> list[dict]:
    pattern = f"{split}-*.parquet" if split else "*.parquet"
    return [r for p in sorted((out / layout).glob(pattern)) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = demo_build(out, val_fraction=0.2)
    return out, result.manifest


def test_demo_build_has_all_tasks_and_exact_count(demo_dataset):
    out, manifest = demo_dataset
    assert set(manifest["counts"]["total"]) == {"shuffle", "flip", "crop", "depth", "position"}
    assert sum(manifest["counts"]["total"].values()) == 60
    assert len(read_rows(out, "easyr1")) == 60 == len(read_rows(out, "verl"))
    assert manifest["shortfall"] == {}


def test_rows_are_consistent_and_load_with_datasets(demo_dataset):
    datasets = pytest.importorskip("datasets")
    out, _ = demo_dataset
    for layout in ("easyr1", "verl"):
        ds = datasets.load_dataset("parquet", data_dir=str(out / layout))
        assert set(ds) == {"train", "validation"}  # HF names "val-*" files "validation"
    for row in read_rows(out, "easyr1"):
        gt = json.loads(row["answer"])
        assert gt["task"] == row["task"]
        assert row["problem"].count("<image>") == len(row["images"]) >= 1
        for im in row["images"]:
            Image.open(__import__("io").BytesIO(im["bytes"])).verify()
    for row in read_rows(out, "verl"):
        assert row["data_source"] == f"spatial_ssrl/{row['extra_info']['task']}"
        assert row["reward_model"]["style"] == "rule"
        assert json.loads(row["reward_model"]["ground_truth"])["answer"] == row["extra_info"]["answer"]
        content = row["prompt"][0]["content"]
        assert content.count("<image>") == len(row["images"])
        assert "\\boxed{}" in content  # verl has no format prompt: the instruction is in the prompt


def test_image_bytes_are_stored_uncompressed_and_text_with_zstd(demo_dataset):
    out, manifest = demo_dataset
    for layout in ("easyr1", "verl"):
        for path in sorted((out / layout).glob("*.parquet")):
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                chunks = {meta.row_group(g).column(c).path_in_schema: meta.row_group(g).column(c).compression
                          for c in range(meta.num_columns)}
                assert chunks.pop("images.list.element.bytes") == "UNCOMPRESSED"
                assert set(chunks.values()) == {"ZSTD"}, chunks
    assert all(v.startswith("xxh3_128:") for v in manifest["files"].values())


def test_train_and_val_never_share_a_source(demo_dataset):
    out, manifest = demo_dataset
    ids = {s: {json.loads(r["metadata"])["source"]["id"] for r in read_rows(out, "easyr1", s)} for s in ("train", "val")}
    assert ids["train"] and ids["val"]
    assert not ids["train"] & ids["val"]
    assert manifest["counts"]["val"]


def test_every_answer_verifies_against_its_source(demo_dataset):
    out, _ = demo_dataset
    report = verify_dataset(out)
    assert report.checked == 60
    assert report.problems == []


def test_same_config_same_bytes_for_any_worker_count(tmp_path):
    a = demo_build(tmp_path / "a", workers=1).manifest
    b = demo_build(tmp_path / "b", workers=2).manifest
    c = demo_build(tmp_path / "c", workers=1).manifest
    assert a["content_hash"] == b["content_hash"] == c["content_hash"]
    assert a["files"] == b["files"]
    d = demo_build(tmp_path / "d", seed=1).manifest
    assert d["content_hash"] != a["content_hash"]


def test_answer_slots_are_balanced(tmp_path):
    manifest = demo_build(tmp_path / "crop", num_samples=200, val_fraction=0.0, tasks=["crop", "position"]).manifest
    for task in ("crop", "position"):
        letters = Counter()
        for answer, n in manifest["answers"][task].items():
            letters[answer] += n
        total = sum(letters.values())
        for letter in "ABCD":
            assert abs(letters[letter] / total - 0.25) <= 0.03, (task, letters)


def test_no_identity_shuffle(tmp_path):
    manifest = demo_build(tmp_path / "s", num_samples=80, tasks=["shuffle"]).manifest
    for answer in manifest["answers"]["shuffle"]:
        labels = [int(x) for x in answer.split("-")]
        assert labels != sorted(labels)


def write_good_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"good_{i}.png"
        Image.fromarray(textured_rgb(100 + i, 200, 260)).save(p)
        paths.append(p)
    return paths


def test_corrupt_inputs_are_reported_and_good_ones_kept(tmp_path):
    src = tmp_path / "imgs"
    good = write_good_images(src, 6)
    jpeg = src / "truncated.jpg"
    Image.fromarray(textured_rgb(7, 200, 260)).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:800])
    (src / "notanimage.png").write_bytes(b"hello, I am text")
    Image.fromarray(textured_rgb(8, 40, 50)).save(src / "tiny.png")
    config = load_config(None, [], out=str(tmp_path / "out"), rgb=[str(src)], num_samples=40, val_fraction=0.0,
                         tasks=["shuffle", "flip", "crop"])
    manifest = build(config, progress=False).manifest
    assert sum(manifest["counts"]["total"].values()) == 40
    reasons = {json.dumps(s) for s in manifest["skipped_inputs"]}
    for name in ("truncated.jpg", "notanimage.png", "tiny.png"):
        assert any(name in r for r in reasons), (name, reasons)
    used = {json.loads(r["metadata"])["source"]["id"] for r in read_rows(tmp_path / "out", "easyr1")}
    assert used == {f"imgs/{p.name}" for p in good}


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    assert main(["build", "--out", str(tmp_path / "x"), "num_samples=-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssrl: error:") and "num_samples" in err and "\n" not in err
    assert main(["build", "--out", str(tmp_path / "y"), "task.crop.size_frac=7"]) == 2
    assert "task.crop.size_frac" in capsys.readouterr().err
    assert main(["build", "--out", str(tmp_path / "z"), "nosuchkey=1"]) == 2
    assert "nosuchkey" in capsys.readouterr().err


def test_nothing_usable_is_an_error(tmp_path, capsys):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"not a jpeg")
    code = main(["build", "--out", str(tmp_path / "o"), "--rgb", str(src), "--tasks", "flip", "--num-samples", "5", "--quiet"])
    assert code == 1  # the README: 1 when nothing usable was found, whichever stage finds it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.jpg" in err
    (src / "a.jpg").unlink()
    (src / "notes.txt").write_text("no image here")
    assert main(["build", "--out", str(tmp_path / "o2"), "--rgb", str(src), "--num-samples", "5", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt" in err


def test_refuses_to_overwrite_without_flag(tmp_path):
    demo_build(tmp_path / "o", num_samples=10)
    with pytest.raises(Exception, match="--overwrite"):
        demo_build(tmp_path / "o", num_samples=10)


def test_window_size_changes_nothing_but_speed(tmp_path):
    a = demo_build(tmp_path / "a", "window=7").manifest
    b = demo_build(tmp_path / "b", "window=300", workers=2).manifest
    assert a["content_hash"] == b["content_hash"]
    assert a["rejected"] == b["rejected"] and a["candidates"] == b["candidates"]


def test_one_decode_feeds_several_tasks_when_sources_are_reused(tmp_path, monkeypatch):
    import data_builders.executor as executor

    src = tmp_path / "imgs"
    write_good_images(src, 6)
    decodes = Counter()
    real = executor.load_source

    def counting(ref, opts):
        decodes[ref.id] += 1
        return real(ref, opts)

    monkeypatch.setattr(executor, "load_source", counting)
    monkeypatch.setattr(executor, "FILE_CACHE", 0)  # count every decode, not cache hits
    config = load_config(None, [], out=str(tmp_path / "out"), rgb=[str(src)], num_samples=60, val_fraction=0.0,
                         tasks=["shuffle", "flip", "crop"])
    manifest = build(config, progress=False).manifest
    assert sum(manifest["counts"]["total"].values()) == 60
    assert sum(decodes.values()) <= 60 / 2  # visits of up to 3 tasks (10 samples per source are needed anyway)
    assert set(decodes) == {f"imgs/good_{i}.png" for i in range(6)}
    ids = [r["id"] for r in read_rows(tmp_path / "out", "easyr1")]
    assert len(ids) == len(set(ids))  # (task, source, round) stays unique
