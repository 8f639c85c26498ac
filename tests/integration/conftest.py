"""Integration suite: our data and rewards inside verl 0.9.1's own code (and EasyR1's documented contract).

Runs in its own environment (torch 2.13.0 CPU, verl 0.9.1, our package; `.ci/run` makes it) with
``python -m pytest -q tests/integration``. ``tests/conftest.py`` keeps this folder out of the light default run;
run the two suites in separate pytest sessions.

Never silently skipped: torch, verl and transformers are imported here unconditionally (a missing one is a
collection error), and any skip inside this folder (a test, or a whole module) is turned into a failure.
Helpers live in int_support.py; the fixtures (offline tokenizer/processor, a small demo build) are here.
"""

from __future__ import annotations

import os

import pytest

# Hard requirements: an ImportError here fails the run instead of skipping it.
import torch  # noqa: F401
import transformers  # noqa: F401
import verl  # noqa: F401

from int_support import build_settings, make_processor, make_tokenizer


# ------------------------------------------------------------------------------------------- no silent skips
def pytest_configure(config):
    # transformers 5 + numpy 2 inside the processor: noise, not ours
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")


def _no_skip(report) -> None:
    if report.skipped and os.environ.get("SSRL_INTEGRATION_ALLOW_SKIP") != "1":
        report.outcome = "failed"
        report.longrepr = f"integration tests must not be skipped ({report.longrepr})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _no_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # a whole module skipped at import (importorskip at module level)
    outcome = yield
    _no_skip(outcome.get_result())


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def processor(tokenizer):
    return make_processor(tokenizer)


@pytest.fixture(scope="session")
def tokenizer_dir(tokenizer, tmp_path_factory):
    """The tokenizer saved as a model folder (what verl's hf_tokenizer(model.path) loads)."""
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """A small demo build (both formats): 30 train + 10 val samples, all five tasks in each split."""
    from data_builders import build
    from ssrl_plugin.config import load_config

    out = tmp_path_factory.mktemp("built")
    result = build(load_config(None, None, out=str(out), **build_settings()), progress=False)
    assert result.total == 40
    return out
