"""``ssrl build --backend ray``: the same plan, generated on a Ray cluster with Ray Data.

Each window of source visits becomes a Ray dataset; ``map_batches`` decodes each source once and generates its
samples on whatever nodes the cluster has; the driver consumes the results in plan order and writes the shards.
Samples are seeded per (task, source, round, attempt), never per worker, so a Ray build writes exactly the
files of a local build with the same config and seed. Ray is imported only here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Iterator
from typing import Any

from ssrl_plugin.dataset import Candidate
from ssrl_plugin.errors import SSRLError

from . import executor


def _config_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def generate_batch(batch: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Runs on a Ray worker: jobs (pickled lists of candidates) → pickled results, same code as a local build."""
    key = _config_key(config)
    if executor._WORKER.get("config_key") != key:  # tasks are built once per worker process
        executor._init_worker(config)
        executor._WORKER["config_key"] = key
    results = [pickle.dumps(executor._run(pickle.loads(job))) for job in batch["job"]]
    return {"i": batch["i"], "result": results}


class RayExecutor:
    """Ordered map of source-visit jobs over a Ray cluster (``address=None`` starts a local Ray)."""

    def __init__(self, config: dict[str, Any], workers: int, address: str | None = None, batch_size: int = 4,
                 init_kwargs: dict[str, Any] | None = None):
        try:
            import ray
        except ImportError:
            raise SSRLError("--backend ray needs Ray Data: pip install 'ray[data]'") from None
        self.ray = ray
        self.config, self.batch_size = config, batch_size
        self._started = not ray.is_initialized()
        if self._started:
            kwargs = {"address": address, "include_dashboard": False, "log_to_driver": False,
                      "logging_level": logging.WARNING, **(init_kwargs or {})}
            if address is None:
                kwargs["num_cpus"] = workers
            ray.init(**kwargs)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the build has its own progress bar
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def map(self, jobs: list[list[Candidate]]) -> Iterator[list[tuple]]:
        if not jobs:
            return iter(())
        items = [{"i": i, "job": pickle.dumps(job)} for i, job in enumerate(jobs)]
        ds = self.ray.data.from_items(items).map_batches(
            generate_batch, batch_size=self.batch_size, batch_format="numpy", fn_kwargs={"config": self.config}
        )
        results: dict[int, list[tuple]] = {}
        for row in ds.iter_rows():
            results[int(row["i"])] = pickle.loads(row["result"])
        return iter(results[i] for i in range(len(jobs)))

    def close(self, abort: bool = False) -> None:
        if self._started:
            self.ray.shutdown()
