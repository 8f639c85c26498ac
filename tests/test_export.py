"""`ssrl export --format vlmevalkit`: the TSV VLMEvalKit's custom MCQ/VQA datasets read."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from data_builders.cli import main
from data_builders.export import export_vlmevalkit
from data_builders.pipeline import build
from data_builders.stats import iter_rows
from ssrl_plugin.config import load_config

pd = pytest.importorskip("pandas")

DEMO = ["demo.num_rgb=12", "demo.num_rgbd=12", "demo.width=320", "demo.height=240", "output.shard_size=25"]
MCQ_TASKS = {"crop", "position"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "data"
    build(load_config(None, DEMO, out=str(out), num_samples=40, val_fraction=0.25), progress=False)
    return out


@pytest.fixture(scope="module")
def exported(dataset, tmp_path_factory):
    tsv = tmp_path_factory.mktemp("tsv") / "SSRL_VAL.tsv"
    assert main(["export", "--format", "vlmevalkit", str(dataset), str(tsv)]) == 0
    return tsv


def read(tsv: Path):
    return pd.read_csv(tsv, sep="\t")  # what VLMEvalKit's load() does for .tsv


def test_rows_answers_images_and_columns_match_the_val_split(dataset, exported):
    df = read(exported)
    for column in ("index", "image", "question", "answer", "category", "A", "B", "C", "D", "l2-category",
                   "image_path", "id", "difficulty"):
        assert column in df.columns
    rows = list(iter_rows(dataset, splits=["val"]))
    assert len(df) == len(rows) > 0
    assert df["index"].tolist() == list(range(len(rows)))
    assert {r.task for r in rows} == set(df["category"])
    for (_, line), row in zip(df.iterrows(), rows):
        assert line["id"] == row.id and line["category"] == row.task
        assert line["l2-category"] == f"{row.task}/{row.variant}"
        assert str(line["answer"]) == row.gt["answer"]
        assert "<image>" not in line["question"]
        if len(row.images) == 1:
            assert base64.b64decode(line["image"]) == row.images[0]
            assert line["image_path"] == f"{line['index']}.jpg"
        else:  # VLMEvalKit's toliststr: a list literal of base64 strings, with one file name per image
            assert [base64.b64decode(x) for x in json.loads(line["image"])] == row.images
            assert len(json.loads(line["image_path"])) == len(row.images)
        options = [line[k] for k in "ABCD"]
        if row.task in MCQ_TASKS:
            assert all(isinstance(o, str) and o for o in options)
            assert row.gt["answer"] in "ABCD"
            assert "\nA. " not in line["question"]  # VLMEvalKit lists the options itself
        else:
            assert all(pd.isna(o) for o in options)
        if row.task == "position":
            assert dict(zip("ABCD", options)) == row.gt["options"]
        if row.task == "crop":
            assert options == [f"image {k} (candidate {c})" for k, c in zip(range(2, 6), "ABCD")]
            assert len(row.images) == 5


def test_the_export_is_deterministic(dataset, exported, tmp_path):
    again = tmp_path / "again.tsv"
    export_vlmevalkit(dataset, again, progress=False)
    assert again.read_bytes() == exported.read_bytes()


def test_a_free_form_export_has_no_option_columns_so_vlmevalkit_reads_it_as_vqa(dataset, tmp_path):
    tsv = tmp_path / "vqa.tsv"
    result = export_vlmevalkit(dataset, tsv, tasks=["shuffle", "flip", "depth"], progress=False)
    df = read(tsv)
    assert not {"A", "B"} & set(df.columns) and result["mcq"] == 0
    assert set(df["category"]) <= {"shuffle", "flip", "depth"} and len(df) == result["rows"] > 0
    mcq = export_vlmevalkit(dataset, tmp_path / "mcq.tsv", tasks=["crop", "position"], progress=False)
    assert mcq["mcq"] == mcq["rows"] > 0


def test_train_split(dataset, tmp_path):
    tsv = tmp_path / "train.tsv"
    assert main(["export", str(dataset), str(tsv), "--split", "train"]) == 0
    assert len(read(tsv)) == sum(1 for _ in iter_rows(dataset, splits=["train"], images=False))


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such folder"),
    ("no_manifest", "no manifest.json"),
    ("split", "--split test"),
    ("out_folder", "is a folder"),
    ("task", "--tasks nosuch"),
])
def test_errors_are_one_line_with_exit_2(dataset, tmp_path, capsys, case, needle):
    out = tmp_path / "o.tsv"
    argv = {
        "missing": ["export", str(tmp_path / "nope"), str(out)],
        "no_manifest": ["export", str(tmp_path), str(out)],
        "split": ["export", str(dataset), str(out), "--split", "test"],
        "out_folder": ["export", str(dataset), str(tmp_path)],
        "task": ["export", str(dataset), str(out), "--tasks", "nosuch"],
    }[case]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssrl: error: ") and err.count("\n") == 1 and needle in err
    assert not out.exists() and not list(tmp_path.glob(".o.tsv.tmp*"))
