"""The Ray Data backend on a local 2-CPU Ray writes exactly the files of a local build."""

from __future__ import annotations

import shutil
import tempfile


from data_builders.pipeline import build
from ssrl_plugin.config import load_config

OVERRIDES = ["demo.num_rgb=8", "demo.num_rgbd=8", "demo.width=320", "demo.height=240", "output.shard_size=16"]


def test_ray_build_equals_local_build(tmp_path):
    import ray  # the integration env must have Ray: a missing one fails, never skips
    local = build(load_config(None, OVERRIDES, out=str(tmp_path / "local"), num_samples=50, val_fraction=0.1),
                  progress=False).manifest
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        remote = build(load_config(None, [*OVERRIDES, "backend=ray", "window=40"], out=str(tmp_path / "ray_out"),
                                   num_samples=50, val_fraction=0.1, workers=2), progress=False).manifest
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert remote["content_hash"] == local["content_hash"]
    assert remote["files"] == local["files"]
    assert remote["counts"] == local["counts"]
