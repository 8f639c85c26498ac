"""Faults a build must survive: kill -9 at random moments, a full disk, an unwritable output, a corrupt config,
a validation pool made of bad files. Each ends in one line and an exit code, and loses nothing."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import data_builders.writers as writers
from data_builders.checkpoint import STATE_FILE
from data_builders.cli import main
from data_builders.pipeline import build, collect_sources, split_sources, validation_order
from ssrl_plugin.config import load_config
from ssrl_plugin.errors import OutputError
from tests.conftest import textured_rgb

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240"]


def cli_build(out: Path, *extra: str) -> list[str]:
    return ["build", "--out", str(out), "--num-samples", "60", "--val-fraction", "0.2", "--quiet", *extra, *DEMO]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def run_cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "data_builders.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _has_split(state: Path) -> bool:
    try:
        return bool(json.loads(state.read_text()).get("splits"))
    except (OSError, ValueError):
        return False


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ssrl: error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ kill -9
@pytest.mark.parametrize("extra", [[], ["output.shard_size=7", "output.formats=[easyr1,verl,sft]",
                                        "output.embed_images=false"]],
                         ids=["one-shard", "many-shards-sft-files"])
def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_bytes(tmp_path, extra):
    ref = tmp_path / "ref"
    started = time.monotonic()
    proc = run_cli(cli_build(ref, *extra))
    assert proc.wait() == 0, proc.stderr.read().decode()
    duration = time.monotonic() - started
    want = manifest(ref)["content_hash"]
    rng = random.Random(12)
    mid_build = 0
    # the first kill lands in the first half second (start-up, the first checkpoint); the others at a random moment
    # after the first samples are on disk (the state file shows a split)
    for k in range(4):
        out = tmp_path / f"run{k}"
        proc = run_cli(cli_build(out, *extra))
        delay = rng.uniform(0.0, 0.5)
        if k:
            deadline = time.monotonic() + 2 * duration + 30
            while proc.poll() is None and time.monotonic() < deadline and not _has_split(out / STATE_FILE):
                time.sleep(0.01)
            delay = rng.uniform(0.0, 0.3 * duration)
        time.sleep(delay)
        if proc.poll() is not None:
            continue  # finished before the kill: nothing to test this time
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = out / STATE_FILE
        if (out / "manifest.json").exists() and not state.exists():
            continue  # the build had finished and was tearing down: nothing to resume
        mid_build += _has_split(state)
        resumed = subprocess.run([sys.executable, "-m", "data_builders.cli", *cli_build(out, *extra), "--resume"],
                                 cwd=ROOT, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert manifest(out)["content_hash"] == want, f"kill after {delay:.2f} s"
        assert not state.exists() and not list(out.glob(".ssrl_build_rows*"))
    assert mid_build >= 2, "too few kills landed while samples were being written; the build is too short for this test"


def test_resume_of_an_empty_or_missing_folder_starts_a_new_build(tmp_path, capsys):
    out = tmp_path / "never-started"
    assert main(cli_build(out)[:-1 - len(DEMO)] + ["--resume", *DEMO]) == 0  # --quiet left out: the note shows
    assert "nothing to resume" in capsys.readouterr().err
    assert manifest(out)["splits"]["val"]["rows"] == 12


def test_resume_names_the_changed_key_and_refuses_a_folder_without_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    calls = []
    real = writers.DatasetWriter.write

    def crash_after_ten(self, rec):
        calls.append(1)
        if len(calls) > 10:
            raise KeyboardInterrupt
        real(self, rec)

    monkeypatch.setattr(writers.DatasetWriter, "write", crash_after_ten)
    assert main(cli_build(out)) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(cli_build(out, "--seed", "5", "task.crop.size_frac=0.4", "--resume")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "seed" in line and "task.crop.size_frac" in line
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(cli_build(other, "--resume")) == 2
    assert "no checkpoint" in one_error_line(capsys.readouterr().err)
    assert (other / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------------ full disk
def test_a_writer_that_fails_mid_build_leaves_a_resumable_state(tmp_path, monkeypatch):
    ref = build(load_config(None, DEMO + ["output.shard_size=9"], out=str(tmp_path / "ref"), num_samples=60,
                            val_fraction=0.2), progress=False).manifest
    config = load_config(None, DEMO + ["output.shard_size=9"], out=str(tmp_path / "out"), num_samples=60, val_fraction=0.2)
    real = pq.ParquetWriter.write_table
    writes = []

    def fail_on_the_fifth(self, table, *args, **kwargs):
        writes.append(1)
        if len(writes) == 5:
            raise OSError(28, "No space left on device")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_on_the_fifth)
    with pytest.raises(OutputError, match="No space left on device.*--resume"):
        build(config, progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert build(config, progress=False, resume=True).manifest["content_hash"] == ref["content_hash"]


@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    """A real tmpfs of ``size`` at ``path`` (root can mount one); None where mounting is not allowed."""
    path.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_gives_one_line_exit_3_and_resumes_once_there_is_room(tmp_path):
    ref = tmp_path / "ref"
    assert main(cli_build(ref)) == 0
    with small_filesystem(tmp_path / "disk", "2m") as mounted:
        out = tmp_path / "disk" / "out"
        if mounted:  # a real full disk
            proc = subprocess.run([sys.executable, "-m", "data_builders.cli", *cli_build(out)], cwd=ROOT,
                                  capture_output=True, text=True)
        else:  # files may not grow past 2 MB: the same failure, raised by the kernel as EFBIG
            limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))  # noqa: E731
            proc = subprocess.run([sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGXFSZ, "
                                   "signal.SIG_IGN); from data_builders.cli import main; sys.exit(main(sys.argv[1:]))",
                                   *cli_build(out)], cwd=ROOT, capture_output=True, text=True, preexec_fn=limit)
        assert proc.returncode == 3, proc.stderr
        line = one_error_line(proc.stderr)
        assert ("No space left" in line or "too large" in line) and "--resume" in line
        assert not (out / "manifest.json").exists() and (out / STATE_FILE).exists()
        for shard in out.rglob("*.parquet"):  # only closed shards of finished splits may stay
            assert "-of-" in shard.name and pq.read_metadata(shard).num_rows > 0
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=200m", str(tmp_path / "disk")], check=True)
        assert main(cli_build(out, "--resume")) == 0
        assert manifest(out)["content_hash"] == manifest(ref)["content_hash"]


# ------------------------------------------------------------------------------------------------ unwritable
def test_unwritable_output_and_out_that_is_a_file_give_one_line(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, code in ((afile, 2), (afile / "sub", 2)):
        assert main(cli_build(out)) == code
        assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode == 0
    try:
        if not mounted:
            if os.geteuid() != 0:
                ro.chmod(0o555)
            else:  # root without mount rights: the kernel's answer, injected where the first file is written
                def refuse(self, *args, **kwargs):
                    raise PermissionError(13, "Permission denied", str(self))

                monkeypatch.setattr(Path, "write_text", refuse)
        for out in (ro, ro / "sub"):
            assert main(cli_build(out)) == 3
            line = one_error_line(capsys.readouterr().err)
            assert str(ro) in line and ("Read-only" in line or "Permission denied" in line)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(ro)], check=False)


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("text, words", [
    ("num_samples: [1\nseed: 2\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("num_samples: many\n", "num_samples"),
    ("tasks: [jigsaw]\n", "jigsaw"),
    ("output:\n  shard_size: -3\n", "output.shard_size"),
    ("\x00\x01\xff\xfe", "config"),
])
def test_a_corrupt_config_is_one_line_and_exit_2(tmp_path, capsys, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(text.encode("latin-1"))
    assert main(cli_build(tmp_path / "out", "--config", str(cfg))) == 2
    line = one_error_line(capsys.readouterr().err)
    assert words in line and ("c.yaml" in line or words != "not valid YAML")
    assert not (tmp_path / "out").exists()


def test_a_config_that_is_a_folder_or_missing(tmp_path, capsys):
    for cfg in (tmp_path, tmp_path / "missing.yaml"):
        assert main(cli_build(tmp_path / "out", "--config", str(cfg))) == 2
        assert str(cfg) in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------ validation
def write_corpus(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.jpg"
        Image.fromarray(textured_rgb(i)).save(path, quality=90)
        paths.append(path)
    return paths


def val_files(folder: Path, seed: int, fraction: float) -> list[Path]:
    config = load_config(None, None, out="unused", rgb=[str(folder)], seed=seed)
    pools = collect_sources(config)
    ids = split_sources(seed, pools, fraction)
    return [Path(r.rgb_path) for r in pools.rgb if r.id in ids]


def test_a_validation_pool_of_bad_files_is_replaced_deterministically(tmp_path, capsys):
    folder = tmp_path / "imgs"
    write_corpus(folder, 24)
    bad = val_files(folder, 3, 0.1)
    assert bad
    for path in bad:
        path.write_bytes(b"not a jpeg at all")
    args = ["build", "--rgb", str(folder), "--num-samples", "40", "--val-fraction", "0.1", "--seed", "3",
            "--tasks", "shuffle,flip", "--quiet"]
    hashes = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert main(args + ["--out", str(out), "--workers", workers]) == 0, capsys.readouterr().err
        m = manifest(out)
        hashes.append(m["content_hash"])
        assert m["splits"]["val"] == {"target": 4, "rows": 4, "sources": m["splits"]["val"]["sources"],
                                      "replacement_sources": len(bad)}
        loaded = {e["path"]: e for e in m["skipped_inputs"] if e["stage"] == "load"}
        assert set(loaded) == {str(p) for p in bad}
        val_sources = {json.loads(r)["source"]["id"] for r in pq.read_table(out / "easyr1" / "val-00000-of-00001.parquet").column("metadata").to_pylist()}
        train_sources = {json.loads(r)["source"]["id"] for r in pq.read_table(out / "easyr1" / "train-00000-of-00001.parquet").column("metadata").to_pylist()}
        assert val_sources and not val_sources & train_sources
    assert hashes[0] == hashes[1]


def test_validation_that_cannot_be_met_fails_loudly_and_keeps_the_data(tmp_path, capsys):
    folder = tmp_path / "imgs"
    write_corpus(folder, 8)
    pools = collect_sources(load_config(None, None, out="unused", rgb=[str(folder)]))
    for ref in validation_order(0, pools.rgb)[:4]:  # every source validation may take (half the pool) is bad
        Path(ref.rgb_path).write_bytes(b"garbage, not an image")
    out = tmp_path / "out"
    assert main(["build", "--rgb", str(folder), "--out", str(out), "--num-samples", "20", "--val-fraction", "0.3",
                 "--tasks", "shuffle", "--quiet"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "validation split has" in line and "--val-fraction 0" in line
    m = manifest(out)
    assert m["splits"]["val"]["rows"] < m["splits"]["val"]["target"] and m["splits"]["train"]["rows"] > 0
    assert m["inputs"]["skipped"] == 4 and m["inputs"]["total"] == 8 and m["splits"]["val"]["sources"] == 4


def test_every_input_is_accounted_for(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    write_corpus(folder, 5)
    Image.new("RGB", (320, 240), (90, 90, 90)).save(folder / "uniform.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    m = build(load_config(None, ["task.flip.grid=[2,2]"], out=str(out), rgb=[str(folder)], num_samples=30,
                          val_fraction=0, tasks=["flip"]), progress=False).manifest
    inputs = m["inputs"]
    assert inputs["total"] == 7
    assert inputs["used"] + inputs["not_needed"] + inputs["skipped"] + inputs["no_sample"] == inputs["total"]
    entries = m["skipped_inputs"] + m["no_sample_inputs"]
    assert all(set(e) == {"path", "stage", "reason"} and os.path.isabs(e["path"]) for e in entries)
    by_path = {Path(e["path"]).name: e for e in entries}
    assert by_path["broken.jpg"]["stage"] == "load"
    assert by_path["uniform.png"]["stage"] == "generate" and "flip/" in by_path["uniform.png"]["reason"]


def test_a_task_that_raises_on_one_input_reports_it_and_keeps_the_rest(tmp_path, monkeypatch):
    """A bug in a task on an odd input is that input's one-line reason, not the end of the build."""
    import ssrl_plugin.tasks.flip as flip

    folder = tmp_path / "imgs"
    write_corpus(folder, 6)
    real = flip.FlipTask.generate

    def fragile(self, source, rng, slot):
        if source.id.endswith("img03.jpg"):
            raise ZeroDivisionError("odd input")
        return real(self, source, rng, slot)

    monkeypatch.setattr(flip.FlipTask, "generate", fragile)
    m = build(load_config(None, None, out=str(tmp_path / "out"), rgb=[str(folder)], num_samples=12, val_fraction=0,
                          tasks=["flip"]), progress=False).manifest
    assert sum(m["counts"]["total"].values()) == 12
    broken = [e for e in m["skipped_inputs"] if e["path"].endswith("img03.jpg")]
    assert broken and "flip failed on this input (ZeroDivisionError: odd input)" in broken[0]["reason"]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A small build whose training parquet lost its second half (a copy cut short, a full disk elsewhere)."""
    out = tmp_path_factory.mktemp("damaged") / "out"
    build(load_config(None, DEMO, out=str(out), num_samples=30, val_fraction=0.2), progress=False)
    shard = out / "easyr1" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return out


@pytest.mark.parametrize("command", [["stats"], ["audit", "--no-learned"], ["preview", "--out", "{tmp}/g.html"],
                                     ["verify"], ["score", "--responses", "{tmp}/r.jsonl", "--data"]])
def test_a_damaged_parquet_is_one_line_naming_it(damaged, tmp_path, capsys, command):
    (tmp_path / "r.jsonl").write_text('{"id": "x", "response": "\\\\boxed{A}"}\n')
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    args = args[:1] + [str(damaged)] + args[1:] if command[0] != "score" else args + [str(damaged)]
    assert main(args) == 2
    assert "train-00000-of-00001.parquet" in one_error_line(capsys.readouterr().err)
