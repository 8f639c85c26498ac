"""Qwen3-VL support: ``ssrl stats --model-family``, the Qwen3-VL token arithmetic and example configs.

Qwen3-VL: 16-pixel patches merged 2x2, one visual token per 32 x 32 = 1,024 pixels, smart_resize to multiples of
32 (transformers maps qwen3_vl to Qwen2VLImageProcessor; the checkpoint sets patch_size 16, merge_size 2). The hand
computed counts below agree with transformers 5.10.4's Qwen2VLImageProcessorPil built offline from that config
(tests/integration/test_qwen3vl_dataset.py checks it where transformers is installed).
"""

from __future__ import annotations

import json
import re

import pytest

from data_builders.stats import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    MODEL_FAMILIES,
    QWEN3_DEFAULT_MAX_PIXELS,
    QWEN3_DEFAULT_MIN_PIXELS,
    compute_stats,
    format_stats,
    qwen_image_tokens,
    smart_resize,
)
from tests import test_example_configs as tec
from tests.test_example_configs import built  # noqa: F401  (the fixture: a DATA_DIR and an `ssrl` shim)

QWEN3_YAML = tec.CONFIGS / "easyr1_grpo_qwen3vl.yaml"
QWEN3_OVERRIDES = tec.CONFIGS / "verl_grpo_qwen3vl.overrides"
QWEN3_MODEL = "Qwen/Qwen3-VL-4B-Instruct"


# ---------------------------------------------------------------------------------------------------------------
# token counts per family


def test_families():
    q25, q3 = MODEL_FAMILIES["qwen2.5-vl"], MODEL_FAMILIES["qwen3-vl"]
    assert (q25.patch_size, q25.merge_size, q25.factor) == (14, 2, 28)
    assert (q3.patch_size, q3.merge_size, q3.factor) == (16, 2, 32)
    assert (q25.min_pixels, q25.max_pixels) == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS) == (262_144, 4_194_304)
    assert (q3.min_pixels, q3.max_pixels) == (QWEN3_DEFAULT_MIN_PIXELS, QWEN3_DEFAULT_MAX_PIXELS) == (262_144, 655_360)
    assert QWEN3_DEFAULT_MAX_PIXELS == 640 * 32 * 32


# (width, height) -> tokens, worked out by hand (comments: the resized height x width)
QWEN25 = {  # 262,144..4,194,304 (the defaults); unchanged from before the families
    (1600, 1200): 2451,  # 1204 x 1596 (sides rounded to 28): 43 x 57
    (600, 600): 441,  # 588 x 588: 21 x 21
    (320, 240): 352,  # 240 x 320 -> 8.57, 11.43 -> upscaled: ceil(240*1.8475/28)=16, ceil(320*1.8475/28)=22
    (640, 480): 391,  # 476 x 644: 17 x 23 = 391 >= 262,144 / 784
}
QWEN3 = {  # 262,144..655,360 (the qwen3-vl defaults)
    (640, 480): 300,  # 480 x 640: 15 x 20 (307,200 px: inside the range)
    (600, 600): 361,  # 608 x 608: 19 x 19
    (320, 240): 266,  # 256 x 320 < min -> beta 1.8475: ceil(443.4/32)=14, ceil(591.2/32)=19
    (1600, 1200): 609,  # 1216 x 1600 > max -> beta 1.7116: floor(701.1/32)=21, floor(934.8/32)=29
    (2048, 2048): 625,  # beta sqrt(6.4) = 2.5298: floor(809.6/32) = 25 per side
    (560, 1169): 612,  # 1184 x 544 > max -> floor 37 x 17 (the EasyR1 worst case of the YAML header is 666)
}
QWEN3_PAPER = {  # 262,144..4,194,304 (the paper's range) with Qwen3-VL's 32 x 32
    (1600, 1200): 1900,  # 1216 x 1600: 38 x 50
    (2048, 2048): 4096,  # exactly max_pixels: 64 x 64
    (1600, 1600): 2500,
    (640, 480): 300,
}


@pytest.mark.parametrize("size,tokens", QWEN25.items(), ids=str)
def test_qwen25_tokens(size, tokens):
    assert qwen_image_tokens(*size) == tokens
    assert qwen_image_tokens(*size, family="qwen2.5-vl") == tokens


@pytest.mark.parametrize("size,tokens", QWEN3.items(), ids=str)
def test_qwen3_tokens(size, tokens):
    assert qwen_image_tokens(*size, family="qwen3-vl") == tokens


@pytest.mark.parametrize("size,tokens", QWEN3_PAPER.items(), ids=str)
def test_qwen3_tokens_with_the_paper_range(size, tokens):
    assert qwen_image_tokens(*size, 262_144, 4_194_304, family="qwen3-vl") == tokens


def test_qwen3_smart_resize_rounds_to_32():
    assert smart_resize(480, 640, 262_144, 655_360, factor=32) == (480, 640)
    assert smart_resize(1200, 1600, 262_144, 655_360, factor=32) == (672, 928)
    assert smart_resize(240, 320, 262_144, 655_360, factor=32) == (448, 608)
    for w in range(100, 2000, 37):
        for h in range(100, 2000, 53):
            rh, rw = smart_resize(h, w, 262_144, 655_360, factor=32)
            assert rh % 32 == 0 and rw % 32 == 0 and 262_144 <= rh * rw <= 655_360


def test_unknown_family_is_one_line():
    from ssrl_plugin.errors import SSRLError

    with pytest.raises(SSRLError, match="qwen2.5-vl, qwen3-vl"):
        qwen_image_tokens(10, 10, family="llava")


# ---------------------------------------------------------------------------------------------------------------
# ssrl stats --model-family


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from data_builders.pipeline import build
    from ssrl_plugin.config import load_config

    out = tmp_path_factory.mktemp("q3_stats")
    demo = ["demo.num_rgb=6", "demo.num_rgbd=6", "demo.width=320", "demo.height=240"]
    build(load_config(None, demo, out=str(out), num_samples=40, val_fraction=0.1), progress=False)
    return out


def test_stats_family_defaults(dataset):
    q25 = compute_stats(dataset, sighted_per_level=0)
    q25b = compute_stats(dataset, sighted_per_level=0, model_family="qwen2.5-vl", min_pixels=262_144, max_pixels=4_194_304)
    assert q25["tokens"] == q25b["tokens"]
    assert q25["tokens"]["model"] == "Qwen2.5-VL" and (q25["tokens"]["min_pixels"], q25["tokens"]["max_pixels"]) == (262_144, 4_194_304)
    assert "multiples of 28" in q25["tokens"]["method"]
    q3 = compute_stats(dataset, sighted_per_level=0, model_family="qwen3-vl")
    tok = q3["tokens"]
    assert tok["model"] == "Qwen3-VL" and (tok["min_pixels"], tok["max_pixels"]) == (262_144, 655_360)
    assert "multiples of 32" in tok["method"] and "(h/32)*(w/32)" in tok["method"]
    assert set(tok) == set(q25["tokens"])
    # the same rows, fewer tokens per pixel
    for key, d in tok["per_task_variant"].items():
        assert d["text"] == q25["tokens"]["per_task_variant"][key]["text"]
    assert "estimated Qwen3-VL prompt tokens (min_pixels 262144, max_pixels 655360" in format_stats(q3)
    # an explicit range overrides the family's
    q3b = compute_stats(dataset, sighted_per_level=0, model_family="qwen3-vl", max_pixels=4_194_304)
    assert q3b["tokens"]["max_pixels"] == 4_194_304


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "data_builders.cli", *args], capture_output=True, text=True,
                          cwd=tec.ROOT)


def test_stats_cli_model_family(dataset):
    plain = _cli("stats", str(dataset), "--json", "--sighted-per-level", "0")
    q25 = _cli("stats", str(dataset), "--json", "--sighted-per-level", "0", "--model-family", "qwen2.5-vl")
    q3 = _cli("stats", str(dataset), "--json", "--sighted-per-level", "0", "--model-family", "qwen3-vl")
    assert plain.returncode == q25.returncode == q3.returncode == 0, plain.stderr + q3.stderr
    assert plain.stdout == q25.stdout  # qwen2.5-vl is the default, output unchanged
    assert json.loads(q3.stdout)["tokens"]["model"] == "Qwen3-VL"
    assert json.loads(plain.stdout)["tokens"]["model"] == "Qwen2.5-VL"
    bad = _cli("stats", str(dataset), "--model-family", "llava")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
    text = _cli("stats", str(dataset), "--sighted-per-level", "0", "--model-family", "qwen3-vl", "--max-pixels", "501760")
    assert "estimated Qwen3-VL prompt tokens (min_pixels 262144, max_pixels 501760" in text.stdout
    helptext = _cli("stats", "--help").stdout
    assert "qwen3-vl" in helptext and "655360" in helptext


# ---------------------------------------------------------------------------------------------------------------
# the Qwen3-VL budget arithmetic (EasyR1 path: EasyR1 resizes, then the processor rounds within its own bounds)


def _qwen3_easyr1_tokens(width: int, height: int, min_pixels: int, max_pixels: int) -> int:
    """Visual tokens of one image in EasyR1 + Qwen3-VL: EasyR1 resizes into [min_pixels, max_pixels] (PIL, int
    sizes), then the processor rounds each side to a multiple of 32 within the checkpoint's bounds
    (65,536..16,777,216); one token per 32 x 32 pixels."""
    width, height = tec.easyr1_resize(width, height, min_pixels, max_pixels)
    return qwen_image_tokens(width, height, 65_536, 16_777_216, family="qwen3-vl")


def test_qwen3_max_pixels_fits_five_images_in_the_prompt():
    data = tec._raw(QWEN3_YAML)["data"]
    lo, hi, budget = data["min_pixels"], data["max_pixels"], data["max_prompt_length"]
    assert lo <= hi and hi % 1024 == 0 and hi == 640 * 32 * 32
    sizes = [(w, h) for w in range(64, 1601, 7) for h in range(64, 1601, 61)] + [(560, 1169), (1169, 560)]
    worst = max(_qwen3_easyr1_tokens(w, h, lo, hi) for w, h in sizes)
    assert worst == 666  # the number quoted in the YAML header and README (a dense 1-px sweep finds no more)
    text = 200
    assert 5 * worst + text <= budget - 500
    # the next round step no longer fits
    assert _qwen3_easyr1_tokens(496, 1584, lo, 768 * 1024) == 800 and 5 * 800 + text > budget
    # verl passes the range to the processor itself: at most max_pixels / 1024 per image
    assert max(qwen_image_tokens(w, h, lo, hi, family="qwen3-vl") for w, h in sizes) <= 640
    # the paper's range with Qwen3-VL: 1600 x 1200 + four 600 px candidates fits, 1600 x 1600 does not
    paper = (262_144, 4_194_304)
    crop = _qwen3_easyr1_tokens(1600, 1200, *paper) + 4 * _qwen3_easyr1_tokens(600, 600, *paper)
    assert crop == 1900 + 4 * 361 and crop + text <= budget
    big = _qwen3_easyr1_tokens(1600, 1600, *paper) + 4 * _qwen3_easyr1_tokens(600, 600, *paper)
    assert big == 2500 + 4 * 361 and big + text > budget


def test_readme_quotes_the_numbers():
    readme = (tec.CONFIGS / "README.md").read_text()
    for s in ("32 x 32", "1,024", "655,360", "666", "3,530", "501,760", "672", "easyr1_grpo_qwen3vl.yaml",
              "verl_grpo_qwen3vl.overrides", "--model-family qwen3-vl", "65,536", "16,777,216"):
        assert s in readme, s


# ---------------------------------------------------------------------------------------------------------------
# example configs: the same checks as tests/test_example_configs.py, on the Qwen3-VL files


@pytest.mark.parametrize("path", [QWEN3_YAML], ids=lambda p: p.name)
def test_qwen3_yaml_uses_only_easyr1_keys(path):
    tec.test_easyr1_yaml_uses_only_easyr1_keys(path)


def test_qwen3_yaml_has_the_paper_values():
    flat = dict(tec._flatten(tec._raw(QWEN3_YAML)))
    for key, expected in tec.PAPER_EASYR1.items():
        if key == "worker.actor.model.model_path":
            expected = QWEN3_MODEL
        assert flat[key] == expected, key
    assert flat["data.max_pixels"] == QWEN3_DEFAULT_MAX_PIXELS
    assert flat["data.min_pixels"] == QWEN3_DEFAULT_MIN_PIXELS
    assert flat["data.filter_overlong_prompts"] is True


def test_qwen3_yaml_differs_only_in_model_pixels_and_name():
    main, q3 = dict(tec._flatten(tec._raw(tec.EASYR1_YAML))), dict(tec._flatten(tec._raw(QWEN3_YAML)))
    assert main.keys() == q3.keys()
    assert {k for k in main if main[k] != q3[k]} == {
        "data.max_pixels", "trainer.experiment_name", "worker.actor.model.model_path"}


def test_qwen3_yaml_paths_come_from_ssrl_paths(monkeypatch):
    tec.test_easyr1_yaml_paths_come_from_ssrl_paths(QWEN3_YAML, monkeypatch)


def _lines(path):
    return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_qwen3_overrides_file_format(monkeypatch):
    monkeypatch.setattr(tec, "VERL_OVERRIDES", QWEN3_OVERRIDES)
    tec.test_overrides_file_format()
    got = tec._override_dict(_lines(QWEN3_OVERRIDES))
    for key, expected in tec.PAPER_VERL.items():
        if key == "data.mm_processor_kwargs.max_pixels":
            expected = str(QWEN3_DEFAULT_MAX_PIXELS)
        assert got.get(key) == expected, key
    # the same keys, in the same order, with the same `++` as verl_grpo.overrides; only pixels, patch and name differ
    base = _lines(tec.CONFIGS / "verl_grpo.overrides")
    q3 = _lines(QWEN3_OVERRIDES)
    assert [ln.partition("=")[0] for ln in base] == [ln.partition("=")[0] for ln in q3]
    diff = {a.partition("=")[0] for a, b in zip(base, q3) if a != b}
    assert diff == {"++data.mm_processor_kwargs.max_pixels", "trainer.experiment_name", "data.image_patch_size"}
    assert got["data.image_patch_size"] == "16" and tec._override_dict(base)["data.image_patch_size"] == "14"


def test_qwen3_easyr1_and_verl_agree(monkeypatch):
    monkeypatch.setattr(tec, "EASYR1_YAML", QWEN3_YAML)
    monkeypatch.setattr(tec, "VERL_OVERRIDES", QWEN3_OVERRIDES)
    tec.test_easyr1_and_verl_agree()


def test_qwen3_scripts_take_the_configs(built, tmp_path):
    data, cwd, env = built
    argv = tec._dry_run(tec.EASYR1_SH, [str(data)], cwd, env, CONFIG=str(QWEN3_YAML), MODEL=QWEN3_MODEL)
    args = dict(a.split("=", 1) for a in argv[3:])
    assert args["config"] == str(QWEN3_YAML) and args["worker.actor.model.model_path"] == QWEN3_MODEL
    argv = tec._dry_run(tec.VERL_SH, [str(data), "trainer.n_gpus_per_node=4"], cwd, env,
                        OVERRIDES=str(QWEN3_OVERRIDES), MODEL=QWEN3_MODEL)
    assert argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    assert f"actor_rollout_ref.model.path='{QWEN3_MODEL}'" in argv
    assert "++data.mm_processor_kwargs.max_pixels=655360" in argv
    assert "trainer.experiment_name=qwen3_vl_4b_ssrl_grpo_verl" in argv
    assert argv[-1] == "trainer.n_gpus_per_node=4"
    assert len(argv) == 3 + len(_lines(QWEN3_OVERRIDES)) + 1
    assert not [a for a in argv if re.search(r"\$\{", a)]
    # the default is still verl_grpo.overrides; a missing file is one line
    plain = tec._dry_run(tec.VERL_SH, [str(data)], cwd, env)
    assert "++data.mm_processor_kwargs.max_pixels=4194304" in plain
    import subprocess

    bad = subprocess.run(["bash", str(tec.VERL_SH), str(data)], cwd=cwd, capture_output=True, text=True,
                         env={**env, "SSRL_DRY_RUN": "1", "OVERRIDES": str(tmp_path / "nope.overrides")})
    assert bad.returncode == 1 and "no overrides file" in bad.stderr
