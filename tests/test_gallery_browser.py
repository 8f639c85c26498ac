"""The gallery in a real browser: headless Chromium (Debian's ``chromium``, installed by ``.ci/run``) loads the page,
its script runs without error, every task is there, the filters and the keyboard work, and a screenshot is saved.

Without chromium the test is skipped locally and FAILS under CI (``CI`` or ``SSRL_CI`` set; ``.ci/run`` sets
``SSRL_CI=1``). ``SSRL_SCREENSHOT_DIR`` keeps the screenshot and the page somewhere to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_builders.pipeline import build
from data_builders.cli import main
from ssrl_plugin.config import load_config

TASKS = {"shuffle", "flip", "crop", "depth", "position"}
SMALL_DEMO = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--enable-logging=stderr", "--v=0"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    message = "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI") or os.environ.get("SSRL_CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_browser(browser: str, tmp: Path, url: str, *action: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *action, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp)})


def console_messages(stderr: str) -> list[str]:
    """Messages the page wrote to the console (Chromium logs them as ``...:CONSOLE(...)] "text", source: ...``)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and "file://" in line]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    out = tmp / "data"
    build(load_config(None, SMALL_DEMO, out=str(out), num_samples=60, val_fraction=0.2), progress=False)
    html = tmp / "gallery.html"
    assert main(["preview", str(out), "--out", str(html), "--per-task", "3"]) == 0
    return html


def test_gallery_renders_in_chromium(gallery, tmp_path):
    browser = chromium()
    url = gallery.resolve().as_uri()
    dom = run_browser(browser, tmp_path, url + "#selftest", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    status = re.search(r'<div id="status">([^<]*)</div>', html)
    assert status, "no #status element in the rendered DOM"
    n_items = len(re.findall(r'<section class="item( current)?"', html))
    assert status.group(1).startswith(f"ok {n_items} items"), status.group(1)
    assert status.group(1).endswith("selftest ok"), status.group(1)  # task buttons, variant select, j/k keys
    assert re.search(r'<div id="errors">\s*</div>', html), "the page caught a script error"
    assert set(re.findall(r'<section class="item[^"]*"[^>]*data-task="(\w+)"', html)) == TASKS
    assert console_messages(dom.stderr) == []

    shot_path = tmp_path / "shot.png"
    shot = run_browser(browser, tmp_path, url, f"--screenshot={shot_path}", "--window-size=1280,2000", "--hide-scrollbars")
    assert shot.returncode == 0 and shot_path.exists(), shot.stderr[-2000:]
    assert console_messages(shot.stderr) == []
    with Image.open(shot_path) as im:
        assert im.size == (1280, 2000)
        arr = np.asarray(im.convert("RGB"), np.float32)
    assert arr.std() > 20  # a page with pictures, not a blank or error page
    keep = os.environ.get("SSRL_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot_path, Path(keep) / "gallery_screenshot.png")
        shutil.copy(gallery, Path(keep) / "gallery.html")


def test_browser_check_catches_script_errors(gallery, tmp_path):
    """The checks above can fail: an injected script error shows in the DOM and in the console log."""
    browser = chromium()
    broken = tmp_path / "broken.html"
    text = gallery.read_text()
    broken.write_text(text.replace('<div id="errors"></div>', '<div id="errors"></div><script>notDefinedAnywhere();</script>', 1))
    dom = run_browser(browser, tmp_path, broken.resolve().as_uri(), "--dump-dom")
    status = re.search(r'<div id="status">([^<]*)</div>', dom.stdout)
    assert status and status.group(1).startswith("error:") and "notDefinedAnywhere" in status.group(1)
    assert any("notDefinedAnywhere" in m for m in console_messages(dom.stderr))
