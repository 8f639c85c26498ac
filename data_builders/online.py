"""Spatial-SSRL tasks generated on the fly for verl: fresh samples every epoch, no parquet.

verl (0.9.1) plugs a dataset class in with ``data.custom_cls`` and calls it like its own ``RLHFDataset``::

    data.custom_cls.path=pkg://data_builders.online
    data.custom_cls.name=OnlineSpatialDataset
    data.train_files=ssrl://train                      # which split this dataset serves
    data.val_files=ssrl://val
    ++data.ssrl.config=/abs/path/build.yaml            # optional: a `ssrl build` config file
    ++data.ssrl.build.rgb=[/data/coco/train2017]       # optional: any `ssrl build` key (same names, same checks)
    ++data.ssrl.build.num_samples=8000                 # train + val samples per epoch (val_fraction splits them)

With no ``rgb``/``rgbd`` source the built-in demo corpus is used, as ``ssrl build`` does.
example_configs/verl_grpo_online.sh runs the paper's recipe this way.

How samples are drawn (everything a pure function of the build config, the split, the epoch and the index):

* sources are discovered when the dataset is made (paths only) and decoded when a sample needs them, a few kept
  per process; train and validation draw from disjoint sources, split by :func:`pipeline.split_sources`, the
  rule ``ssrl build`` uses;
* the per-epoch sizes, the task mix and the quotas are those of ``ssrl build`` (``num_samples``,
  ``val_fraction``, ``tasks``, ``mix``); in each epoch the task of index *i* comes from a seeded permutation of
  the quotas, and its candidate (source, answer slot) from the task's :class:`~ssrl_plugin.dataset.TaskStream`,
  continued from epoch to epoch so sources rotate and answer slots stay balanced;
* rows are made by the offline writer's own functions (:func:`records.encode`, :func:`records.verl_row`, images
  embedded as ``{"bytes": ...}``): the same columns and types as ``DIR/verl/*.parquet``;
* a rejected candidate, an undecodable source or (with ``data.filter_overlong_prompts``) a prompt longer than
  ``data.max_prompt_length`` moves on to the next fallback candidate of the same task: still a pure function of
  (epoch, index); after 32 fallbacks the sample fails with the reasons (e.g. pictures too large for the limit).

Epochs. verl never tells a dataset which epoch it is in, so the dataset counts: the *k*-th time index *i* is
served (in this process or any dataloader worker: the counts live in shared memory) it is sample *i* of epoch *k*,
i.e. ``row(k, i)``. verl's sampler serves every index once per epoch, so *k* is the epoch; the sample does not
depend on which worker serves it or how many there are. Validation always serves epoch 0 (a fixed set). The
counts survive a checkpoint as the number of completed epochs (``state_dict``; torchdata's StatefulDataLoader
saves it with verl's dataloader state).

Adaptive curriculum (``data.ssrl.adaptive``, see :mod:`data_builders.adaptive`): each training sample is drawn at
its task's current level, which the task's rolling accuracy in training moves up and down; the row served for
(epoch, index) then also depends on the accuracies observed before it was drawn (deterministic given that
sequence), and the controller's state is saved and restored with the dataset's ``state_dict``. Validation takes
every level in turn. Without the section nothing changes.

``import data_builders`` stays light: torch and verl are imported only when :class:`OnlineSpatialDataset` is first
looked up. :class:`OnlineRows` (the row generator) needs neither.
"""

from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import multiprocessing.context
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ssrl_plugin.config import BuildConfig, load_config
from ssrl_plugin.dataset import Candidate, TaskStream, generate, slot_order
from ssrl_plugin.errors import ConfigError, SourceError
from ssrl_plugin.registry import Task, create_task
from ssrl_plugin.seeding import rng_for
from ssrl_plugin.sources import SourceRef, load_source

from .pipeline import Pools, active_tasks, collect_sources, largest_remainder, pools_with, split_sources
from .records import Record, encode, verl_row

SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "val"}
SCHEME = "ssrl://"
RETRIES = 32  # other candidates (other sources) tried when one is rejected or its source cannot be decoded
RETRY_STRIDE = 1 << 40  # retry r of stream index k uses index k + r * RETRY_STRIDE: never another sample's index
SOURCE_CACHE = 8  # decoded sources kept per process (a dataloader worker each)
DEMO_SOURCE_CACHE = 32  # demo sources are rendered, which costs more than a decode

__all__ = ["OnlineRows", "OnlineSpatialDataset", "parse_split", "build_config_from", "split_pools"]


# ----------------------------------------------------------------------------------------------- config
def parse_split(data_files: Any) -> str:
    """``ssrl://train`` / ``ssrl://val`` (or plain ``train`` / ``val``; a one-element list) -> split name."""
    files = [data_files] if isinstance(data_files, str) else list(data_files or [])
    names = set()
    for f in files:
        s = str(f).strip()
        s = s[len(SCHEME):] if s.startswith(SCHEME) else s
        s = s.strip("/").lower()
        if s not in SPLIT_NAMES:
            raise ConfigError(f"data files {data_files!r}: the online dataset takes ssrl://train or ssrl://val "
                              "(data.train_files / data.val_files), not parquet files")
        names.add(SPLIT_NAMES[s])
    if len(names) != 1:
        raise ConfigError(f"data files {data_files!r}: give exactly one split, ssrl://train or ssrl://val")
    return names.pop()


def _plain(value: Any) -> Any:
    """DictConfig/ListConfig -> dict/list (without importing omegaconf types at module level)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return value


def build_config_from(data_config: Mapping | None) -> BuildConfig:
    """The ``ssrl build`` config of the ``data.ssrl`` section: ``config`` (a YAML file), then ``build`` (keys)."""
    section = _plain((data_config or {}).get("ssrl")) or {}
    if not isinstance(section, Mapping):
        raise ConfigError("data.ssrl: expected a section with `config` (YAML path) and/or `build` (ssrl build keys)")
    unknown = set(section) - {"config", "build", "adaptive"}
    if unknown:
        raise ConfigError(f"data.ssrl.{sorted(unknown)[0]}: unknown key; use data.ssrl.config (a ssrl build YAML), "
                          "data.ssrl.build.<key> (any ssrl build key) and data.ssrl.adaptive.<key> (the adaptive "
                          "curriculum)")
    build = _plain(section.get("build")) or {}
    if not isinstance(build, Mapping):
        raise ConfigError("data.ssrl.build: expected a mapping of ssrl build keys")
    return load_config(section.get("config"), None, **dict(build))


def split_pools(config: BuildConfig, pools: Pools) -> tuple[dict[str, dict[str, list[SourceRef]]], dict[str, int]]:
    """Sources and per-epoch sizes of each split, by the rules of ``ssrl build`` (``pipeline.build``)."""
    val_ids = split_sources(config.seed, pools, config.val_fraction)
    if round(config.num_samples * config.val_fraction) == 0:
        val_ids = set()
    by_split = {s: pools_with(pools, val_ids, s == "val") for s in ("train", "val")}
    n_val = round(config.num_samples * config.val_fraction) if any(by_split["val"].values()) else 0
    return by_split, {"train": config.num_samples - n_val, "val": n_val}


# ----------------------------------------------------------------------------------------------- rows
class OnlineRows:
    """Row *i* of epoch *e* of one split: ``rows.row(e, i)`` is a verl row dict, the same on every machine.

    No torch, no verl: the generator behind :class:`OnlineSpatialDataset`, usable on its own.

    Levels: ``row(e, i, level=L)`` draws the sample at difficulty level ``L`` of its task; ``level=None`` asks
    ``level_fn(task, k)`` (``k``: the sample's position in its task's stream), when set, e.g. an
    :class:`~data_builders.adaptive.AdaptiveCurriculum`; otherwise the task's configured level. ``task_levels``
    lists each task's levels (from its class).
    """

    def __init__(self, config: BuildConfig, split: str, size: int | None = None):
        if split not in ("train", "val"):
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        self.config, self.split = config, split
        pools = collect_sources(config)
        if not pools.all_refs():
            raise ConfigError("no usable source images found" + "".join(f"; {p}: {r}" for p, r in pools.skipped[:3]))
        tasks = active_tasks(config, pools)
        by_split, sizes = split_pools(config, pools)
        self.pools = by_split[split]
        self.size = sizes[split] if size is None else int(size)
        self.skipped = pools.skipped
        weights = {}
        self.task_config: dict[str, Any] = {}
        self.task_pool: dict[str, str] = {}
        self.num_slots: dict[str, int] = {}
        for name, (task, weight) in tasks.items():
            pool = task.input_pool()
            weights[name] = weight if self.pools[pool] else 0.0
            self.task_config[name] = config.task_config(name)
            self.task_pool[name] = pool
            self.num_slots[name] = task.num_slots
        self.task_levels = {name: sorted(int(k) for k in type(task).levels) for name, (task, _) in tasks.items()}
        self.level_fn: Callable[[str, int], int | None] | None = None
        self.quotas = {t: q for t, q in largest_remainder(self.size, weights).items() if q > 0}
        if self.size > 0 and not self.quotas:
            raise ConfigError(f"split {split!r}: no task has sources in this split")
        self.labels = [t for t in sorted(self.quotas) for _ in range(self.quotas[t])]
        self.offset = {}
        start = 0
        for t in sorted(self.quotas):
            self.offset[t] = start
            start += self.quotas[t]
        self._local: dict[str, Any] = {}

    # per-process state (tasks, streams, decoded sources): rebuilt after pickling, never shipped
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_local"] = {}
        return state

    def _task(self, name: str, level: int | None = None) -> Task:
        tasks = self._local.setdefault("tasks", {})
        if (name, level) not in tasks:
            config = self.task_config[name] if level is None else {**(self.task_config[name] or {}), "level": level}
            tasks[name, level] = create_task(name, config)
        return tasks[name, level]

    def _stream(self, name: str) -> TaskStream:
        streams = self._local.setdefault("streams", {})
        if name not in streams:
            streams[name] = TaskStream(self.config.seed, self.split, name, self.num_slots[name],
                                       self.pools[self.task_pool[name]])
        return streams[name]

    def _source(self, ref: SourceRef):
        """Decode a source (a few kept per process); one that failed once is not decoded again here."""
        cache: OrderedDict = self._local.setdefault("sources", OrderedDict())
        bad: dict[str, str] = self._local.setdefault("bad", {})
        if ref.id in cache:
            cache.move_to_end(ref.id)
            return cache[ref.id]
        if ref.id in bad:
            raise SourceError(bad[ref.id])
        try:
            source = load_source(ref, self.config.source)
        except Exception as exc:  # noqa: BLE001 - as `ssrl build`: a bad file costs its samples, not the run
            reason = str(exc) if isinstance(exc, SourceError) else f"{ref.rgb_path or ref.id}: {type(exc).__name__}: {exc}"
            bad[ref.id] = reason
            raise SourceError(reason) from None
        cache[ref.id] = source
        while len(cache) > (DEMO_SOURCE_CACHE if ref.scheme == "demo" else SOURCE_CACHE):
            cache.popitem(last=False)
        return source

    def __len__(self) -> int:
        return self.size

    def task_order(self, epoch: int) -> np.ndarray:
        """Position of each index in the sorted quota labels, for one epoch (a seeded permutation)."""
        return _permutation(self.config.seed, self.split, int(epoch), self.size)

    def position(self, epoch: int, index: int) -> tuple[str, int]:
        """(task, k): the task of sample ``index`` of ``epoch`` and its position in that task's stream."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.split} (size {self.size})")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        label = int(self.task_order(epoch)[index])
        task = self.labels[label]
        return task, epoch * self.quotas[task] + (label - self.offset[task])

    def candidate(self, epoch: int, index: int, retry: int = 0, level: int | None = None) -> Candidate:
        """The planned candidate of sample ``index`` of ``epoch`` (``retry`` > 0: the fallbacks); at ``level``,
        the answer slot is dealt among that level's slots."""
        task, k = self.position(epoch, index)
        cand = self._stream(task)[k + retry * RETRY_STRIDE]
        if level is None:
            return cand
        n = self._task(task, level).num_slots
        block, offset = divmod(cand.index, n)
        return dataclasses.replace(cand, slot=int(slot_order(self.config.seed, self.split, task, n, block)[offset]),
                                   level=int(level))

    def level_of(self, epoch: int, index: int) -> int | None:
        """The level sample ``index`` of ``epoch`` is drawn at now (``level_fn``; None: the configured one)."""
        if self.level_fn is None:
            return None
        task, k = self.position(epoch, index)
        return self.level_fn(task, k)

    def record(self, epoch: int, index: int, level: int | None = None) -> Record:
        """Sample ``index`` of ``epoch``, encoded as the offline builder encodes it."""
        return next(self._records(epoch, index, level))[1]

    def _records(self, epoch: int, index: int, level: int | None = None):
        """(retry, Record) for the candidate of (epoch, index) and its fallbacks, skipping rejected ones."""
        reasons: list[str] = []
        out = self.config.output
        if level is None:
            level = self.level_of(epoch, index)
        for retry in range(RETRIES):
            cand = self.candidate(epoch, index, retry, level)
            task = self._task(cand.task, cand.level)
            try:
                source = self._source(cand.source)
            except SourceError as exc:
                reasons.append(str(exc))
                continue
            result = generate(task, cand, source, self.config.seed, self.config.max_attempts)
            if result.sample is None:
                reasons.extend(result.rejects)
                continue
            yield retry, encode(result.sample, cand, out.image_format, out.jpeg_quality, task.word_options)
            reasons.append("refused by accept() (verl: prompt over data.max_prompt_length)")
        detail = "; ".join(sorted(set(reasons))[:5])
        raise RuntimeError(f"{self.split} sample {index} of epoch {epoch}: {RETRIES} candidates failed ({detail})")

    def row(self, epoch: int, index: int, accept: Callable[[dict[str, Any]], bool] | None = None,
            level: int | None = None) -> dict[str, Any]:
        """The verl row: exactly the columns of ``DIR/verl/<split>-*.parquet`` with embedded images.

        ``accept(row)`` False (e.g. a prompt over verl's ``max_prompt_length``) moves on to the next fallback
        candidate, as a rejected candidate does: still a pure function of (epoch, index) (and the level).
        ``level``: the task's difficulty level (None: ``level_fn``, else the configured one).
        """
        out = self.config.output
        for _, rec in self._records(epoch, index, level):
            row = verl_row(rec, [{"bytes": b} for b in rec.images], index, out.instruction, out.verl_instruction)
            if accept is None or accept(row):
                return row
        raise AssertionError("unreachable")  # _records raises when it runs out


@lru_cache(maxsize=8)
def _permutation(seed: int, split: str, epoch: int, size: int) -> np.ndarray:
    return rng_for(seed, "online-tasks", split, epoch).permutation(size)


# ----------------------------------------------------------------------------------------------- epochs
class VisitCounts:
    """How many times each index was served, shared by the process that makes it and its dataloader workers.

    A ``multiprocessing`` shared array: forked workers share it; spawned ones get it through inheritance (the
    DataLoader passes the dataset when it starts them). Pickled any other way (e.g. shipped to another machine),
    it becomes a private copy. One index is never served twice at the same time (a sampler visits it once per
    epoch), so no lock is needed.
    """

    def __init__(self, size: int, counts: Sequence[int] | None = None):
        self.size = size
        self._array = multiprocessing.RawArray("q", max(size, 1))
        if counts is not None:
            self.view()[:] = np.asarray(counts, np.int64)[: max(size, 1)]

    def view(self) -> np.ndarray:
        return np.frombuffer(self._array, dtype=np.int64)

    def take(self, index: int) -> int:
        a = self._array
        k = a[index]
        a[index] = k + 1
        return int(k)

    def completed(self) -> int:
        """Epochs every index has been served in (the epoch a resumed run continues)."""
        return int(self.view()[: self.size].min()) if self.size else 0

    def served_beyond(self, completed: int) -> list[int]:
        """Indices served more than ``completed`` times (those of the epoch in progress)."""
        return np.flatnonzero(self.view()[: self.size] > int(completed)).tolist()

    def restore(self, completed: int, served: Sequence[int] | None = None) -> None:
        """Every index served ``completed`` times, and ``served`` (the epoch in progress) once more."""
        v = self.view()
        np.maximum(v, int(completed), out=v)
        if served:
            idx = np.asarray(served, np.int64)
            v[idx] = np.maximum(v[idx], int(completed) + 1)

    def __getstate__(self) -> dict[str, Any]:
        if multiprocessing.context.get_spawning_popen() is not None:
            return {"size": self.size, "array": self._array}
        return {"size": self.size, "counts": self.view().tolist()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.size = state["size"]
        if "array" in state:
            self._array = state["array"]
        else:
            self._array = multiprocessing.RawArray("q", max(self.size, 1))
            self.view()[:] = np.asarray(state["counts"], np.int64)


class OnlineFrame:
    """Stands in for ``RLHFDataset.dataframe``: ``frame[i]`` generates the row (train: epoch = visits of i)."""

    def __init__(self, rows: OnlineRows, length: int, fixed_epoch: int | None,
                 accept: Callable[[dict[str, Any]], bool] | None = None):
        self.rows, self.length, self.fixed_epoch, self.accept = rows, length, fixed_epoch, accept
        self.visits = VisitCounts(length) if fixed_epoch is None else None

    def __len__(self) -> int:
        return self.length

    def epoch_for(self, index: int) -> int:
        return self.fixed_epoch if self.visits is None else self.visits.take(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.rows.row(self.epoch_for(index), index, self.accept)


# ----------------------------------------------------------------------------------------------- verl
def _make_verl_class():
    """Subclass verl's RLHFDataset: its config handling, __getitem__ and multimodal helpers, our rows."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    class OnlineSpatialDataset(RLHFDataset):
        """verl dataset drawing fresh Spatial-SSRL tasks every epoch (see the module docstring).

        Constructor signature of verl 0.9.1's ``RLHFDataset`` (what ``create_rl_dataset`` passes):
        ``data_files`` names the split (``ssrl://train`` or ``ssrl://val``), ``config`` is verl's ``data``
        section (ours under ``data.ssrl``), ``max_samples`` > 0 caps the samples per epoch.
        """

        def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
            from .adaptive import adaptive_config_from

            self.ssrl_split = parse_split(data_files)
            self.ssrl_config = build_config_from(config)
            self.ssrl_adaptive = adaptive_config_from(config)
            self.curriculum = None  # the adaptive curriculum's controller (training split, data.ssrl.adaptive)
            if self.ssrl_adaptive is not None and self.ssrl_split == "train":
                workers = (config or {}).get("dataloader_num_workers", 0) or 0
                if int(workers) != 0:
                    raise ConfigError(
                        f"data.dataloader_num_workers={workers}: the adaptive curriculum (data.ssrl.adaptive) needs "
                        "data.dataloader_num_workers=0; dataloader workers would draw prefetched batches at stale "
                        "levels and checkpoint stale copies of the curriculum (see data_builders/adaptive.py)")
            super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)

        # RLHFDataset.__init__ calls these two: no files to fetch, rows instead of a parquet dataframe
        def _download(self, use_origin_parquet: bool = False) -> None:
            pass

        def _read_files_and_tokenize(self) -> None:
            rows = OnlineRows(self.ssrl_config, self.ssrl_split)
            length = len(rows) if self.max_samples is None or self.max_samples <= 0 else min(len(rows), self.max_samples)
            if length == 0:
                raise ConfigError(f"the {self.ssrl_split} split has no samples (num_samples "
                                  f"{self.ssrl_config.num_samples}, val_fraction {self.ssrl_config.val_fraction})")
            accept = self.fits_prompt_length if self.filter_overlong_prompts and self.processor is not None else None
            self.dataframe = OnlineFrame(rows, length, None if self.ssrl_split == "train" else 0, accept)
            if self.ssrl_adaptive is not None:
                from . import adaptive

                levels = {t: rows.task_levels[t] for t in rows.quotas}
                if self.ssrl_split == "train":
                    self.curriculum = adaptive.AdaptiveCurriculum(levels, self.ssrl_adaptive)
                    rows.level_fn = self.curriculum
                    adaptive.register(self.curriculum)
                    print(f"adaptive curriculum: levels {self.curriculum.current()} ({self.ssrl_adaptive})")
                else:
                    rows.level_fn = adaptive.CycleLevels(levels)
            print(f"dataset len: {length} ({self.ssrl_split}, generated on the fly, tasks {rows.quotas})")

        def maybe_filter_out_long_prompts(self, dataframe=None):
            return dataframe  # rows exist only when drawn: filtered one by one (fits_prompt_length)

        def prompt_length(self, row: dict[str, Any]) -> int:
            """Tokens of the row's prompt as verl's overlong filter and rollout count them (chat template, the
            images resized by qwen_vl_utils, the processor with data.mm_processor_kwargs)."""
            from verl.utils.tokenizer import build_multimodal_processor_inputs

            messages = self._build_messages(copy.deepcopy(row), key=self.prompt_key)
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                      **dict(self.apply_chat_template_kwargs))
            images, videos, audios = self._process_multi_modal_info(messages, self.image_patch_size, self.config)
            inputs = build_multimodal_processor_inputs(self.processor, text=[text], images=images, videos=videos,
                                                       audio=audios, mm_processor_kwargs=self.mm_processor_kwargs)
            return len(inputs["input_ids"][0])

        def fits_prompt_length(self, row: dict[str, Any]) -> bool:
            """data.filter_overlong_prompts: a drawn row over data.max_prompt_length is replaced by the next
            candidate (verl's rollout refuses multimodal prompts over rollout.prompt_length)."""
            return self.prompt_length(row) <= self.max_prompt_length

        def __getstate__(self):
            return self.__dict__.copy()  # keep the (small) row generator; RLHFDataset drops its dataframe

        def row(self, epoch: int, index: int, level: int | None = None) -> dict[str, Any]:
            """The verl row of sample ``index`` of ``epoch``, as served (filter included; no visit counted; with
            the adaptive curriculum, at the task's current level unless ``level`` is given)."""
            return self.dataframe.rows.row(epoch, index, self.dataframe.accept, level)

        # torchdata's StatefulDataLoader saves this with verl's checkpoint (data.pt) and restores it
        def state_dict(self) -> dict[str, Any]:
            visits = self.dataframe.visits
            state = {"completed_epochs": visits.completed() if visits is not None else 0}
            if self.curriculum is not None:  # no dataloader worker: what this process served is what was consumed
                state["served_this_epoch"] = visits.served_beyond(state["completed_epochs"])
                state["curriculum"] = self.curriculum.state_dict()
            return state

        def load_state_dict(self, state: dict[str, Any]) -> None:
            visits = self.dataframe.visits
            if visits is not None and state:
                visits.restore(int(state.get("completed_epochs", 0)), state.get("served_this_epoch"))
            if self.curriculum is not None and state and state.get("curriculum"):
                self.curriculum.load_state_dict(state["curriculum"])

        def on_batch_end(self, batch) -> None:
            """verl's legacy trainer (``trainer.use_v1=false``) calls this after each step with the scored batch:
            the adaptive curriculum observes its accuracies (no-op without one). verl 0.9.1's default V1 trainer
            has no such call; there :class:`data_builders.adaptive.AdaptiveReplayBuffer` feeds the controller."""
            if self.curriculum is None:
                return
            from .adaptive import observations_from_rows

            nt = batch.non_tensor_batch
            metric = self.curriculum.config.metric
            if metric not in nt:
                raise KeyError(f"data.ssrl.adaptive.metric: the batch has no reward key {metric!r} "
                               f"(reward keys: {sorted(k for k in nt if k not in ('data_source', 'extra_info'))})")
            self.curriculum.observe(observations_from_rows(nt["data_source"], nt["extra_info"], nt[metric], metric))

    # pickled by reference as data_builders.online.OnlineSpatialDataset (spawned dataloader workers)
    OnlineSpatialDataset.__module__ = __name__
    OnlineSpatialDataset.__qualname__ = "OnlineSpatialDataset"
    return OnlineSpatialDataset


_LAZY: dict[str, Any] = {}


def __getattr__(name: str):
    if name == "OnlineSpatialDataset":
        if name not in _LAZY:
            _LAZY[name] = _make_verl_class()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
