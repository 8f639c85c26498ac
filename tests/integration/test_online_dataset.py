"""The on-the-fly dataset (data_builders.online) inside verl 0.9.1: loaded through data.custom_cls from the
overrides of example_configs/verl_grpo_online.sh, iterated by verl's own dataloader (StatefulDataLoader, its
sampler and collate_fn, as trainer_base builds them).

Sample i of epoch e is (seed, epoch, i)-determined: identical for 0 and 2 dataloader workers (forked or
spawned), fresh in the next epoch, restored after a checkpoint; rows have the offline parquet's schema; train/val
sources are disjoint and split as `ssrl build` splits them; sources are decoded only when a sample needs them;
over-long prompts are redrawn (data.filter_overlong_prompts).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torchdata.stateful_dataloader import StatefulDataLoader
from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from int_support import ROOT, build_settings, compose_ppo, read_overrides, shards
from data_builders import online
from data_builders.records import verl_schema

CONFIGS = ROOT / "example_configs"
BATCH = 5


def settings_overrides(prefix="++data.ssrl.build") -> list[str]:
    out = []

    def walk(node, path):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{path}.{k}")
            else:
                out.append(f"{path}.{k}={v}")

    walk(build_settings(), prefix)
    return out


def online_config(tmp_path, *extra):
    """verl's ppo_trainer composed with exactly what verl_grpo_online.sh passes, then a small demo set-up."""
    base = read_overrides(CONFIGS / "verl_grpo.overrides", MODEL="/nonexistent/model", TRAIN_FILES="'ssrl://train'",
                          VAL_FILES="'ssrl://val'", SSRL_REWARD_VERL=str(ROOT / "reward_fns" / "verl.py"))
    cfg = compose_ppo([*base, *read_overrides(CONFIGS / "verl_grpo_online.overrides"), *settings_overrides(),
                       f"data.train_batch_size={BATCH}", f"++data.cache_dir={tmp_path / 'cache'}",
                       "++data.mm_processor_kwargs.min_pixels=3136", "++data.mm_processor_kwargs.max_pixels=12845056",
                       *extra])
    return cfg


def make(cfg, tokenizer, processor, split="train"):
    files = cfg.data.train_files if split == "train" else cfg.data.val_files
    return create_rl_dataset(files, cfg.data, tokenizer, processor, is_train=split == "train")


def loader(ds, cfg, workers, context=None):
    """The train dataloader of verl's trainer_base._init_dataloader."""
    return StatefulDataLoader(dataset=ds, batch_size=cfg.data.train_batch_size, num_workers=workers, drop_last=True,
                              collate_fn=collate_fn, sampler=create_rl_sampler(cfg.data, ds),
                              multiprocessing_context=context)


def digest(item_or_row) -> str:
    """Identity of a sample: its id, ground truth and image bytes (from a dataset item or a raw row)."""
    if "raw_prompt" in item_or_row:
        images = [e["bytes"] for e in item_or_row["raw_prompt"][0]["content"] if e["type"] == "image"]
    else:
        images = [im["bytes"] for im in item_or_row["images"]]
    h = hashlib.sha256(item_or_row["extra_info"]["id"].encode() + item_or_row["reward_model"]["ground_truth"].encode())
    for b in images:
        h.update(hashlib.sha256(b).digest())
    return h.hexdigest()


def epochs(dl, n):
    out = []
    for _ in range(n):
        seen = {}
        for batch in dl:
            for idx, info, gt, raw in zip(batch["index"], batch["extra_info"], batch["reward_model"], batch["raw_prompt"]):
                seen[int(idx)] = digest({"raw_prompt": raw, "extra_info": info, "reward_model": gt})
        out.append(seen)
    return out


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return online_config(tmp_path_factory.mktemp("online"))


def test_import_stays_light():
    code = ("import sys, data_builders, data_builders.online as o; "
            "bad = {'torch', 'verl', 'transformers', 'ray'} & set(sys.modules); assert not bad, bad; "
            "cls = o.OnlineSpatialDataset; assert 'verl' in sys.modules; print(cls.__module__, cls.__qualname__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["data_builders.online", "OnlineSpatialDataset"]


def test_custom_cls_from_the_example_overrides(cfg, tokenizer, processor):
    assert cfg.data.custom_cls.path == "pkg://data_builders.online" and cfg.data.train_files == "ssrl://train"
    train, val = make(cfg, tokenizer, processor, "train"), make(cfg, tokenizer, processor, "val")
    assert type(train).__name__ == "OnlineSpatialDataset" and isinstance(train, RLHFDataset)
    assert (len(train), len(val)) == (30, 10)
    assert train.filter_overlong_prompts and train.dataframe.accept is not None  # verl_grpo.overrides turns it on
    item = train[0]
    assert item["data_source"].startswith("spatial_ssrl/") and item["raw_prompt"][0]["role"] == "user"


def test_same_samples_for_any_worker_count_and_fresh_each_epoch(cfg, tokenizer, processor):
    runs = {}
    for workers, context in ((0, None), (2, None), (2, "spawn")):  # verl's default (fork) and spawned workers
        ds = make(cfg, tokenizer, processor)
        runs[workers, context] = epochs(loader(ds, cfg, workers, context), 2)
    assert runs[0, None] == runs[2, None] == runs[2, "spawn"]
    runs = {0: runs[0, None]}
    e0, e1 = runs[0]
    assert set(e0) == set(e1) == set(range(30))  # 30 = 6 batches of 5: every index once per epoch
    assert not set(e0.values()) & set(e1.values()), "epoch 1 repeats samples of epoch 0"
    ds = make(cfg, tokenizer, processor)
    for e, seen in enumerate(runs[0]):
        assert all(seen[i] == digest(ds.row(e, i)) for i in (0, 7, 29))  # sample i of epoch e = row(e, i)


def test_validation_is_a_fixed_set(cfg, tokenizer, processor):
    val = make(cfg, tokenizer, processor, "val")
    dl = StatefulDataLoader(val, batch_size=4, num_workers=0, collate_fn=collate_fn, shuffle=False)
    first, second = epochs(dl, 2)
    assert first == second and len(first) == 10


def _dataset_states(state):
    """Every dataset state in a StatefulDataLoader state dict (the loader's own, or one per worker)."""
    if isinstance(state, dict):
        if "completed_epochs" in state:
            return [state]
        return [s for v in state.values() for s in _dataset_states(v)]
    return []


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_with_fresh_samples(cfg, tokenizer, processor, workers):
    ds = make(cfg, tokenizer, processor)
    dl = loader(ds, cfg, workers)
    full = epochs(dl, 2)
    ds2 = make(cfg, tokenizer, processor)
    dl2 = loader(ds2, cfg, workers)
    epochs(dl2, 1)
    it = iter(dl2)
    before = {int(i) for _ in range(3) for i in next(it)["index"]}
    state = dl2.state_dict()
    del it
    assert _dataset_states(state) and all(s == {"completed_epochs": 1} for s in _dataset_states(state))
    ds3 = make(cfg, tokenizer, processor)  # a restarted run: verl restores data.pt into a new dataloader
    dl3 = loader(ds3, cfg, workers)
    dl3.load_state_dict(state)
    rest = {}
    for batch in dl3:
        for idx, info, gt, raw in zip(batch["index"], batch["extra_info"], batch["reward_model"], batch["raw_prompt"]):
            rest[int(idx)] = digest({"raw_prompt": raw, "extra_info": info, "reward_model": gt})
    assert set(rest) == set(range(30)) - before
    assert all(rest[i] == full[1][i] for i in rest)


def test_rows_have_the_offline_schema(built, cfg, tokenizer, processor):
    ds = make(cfg, tokenizer, processor)
    rows = [ds.row(0, i) for i in range(len(ds))]
    offline_files = shards(built, "verl", "train")
    offline = pq.read_table(offline_files[0])
    table = pa.Table.from_pylist(rows, schema=verl_schema(True))
    assert table.schema == offline.schema == pq.read_schema(offline_files[0])

    def shape(value):
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(value[0])] if value else []
        return type(value).__name__

    ref = shape(offline.to_pylist()[0])
    assert all(shape(r) == ref for r in rows)
    offline_row = offline.to_pylist()[0]
    assert all(set(r) == set(offline_row) and set(r["extra_info"]) == set(offline_row["extra_info"]) for r in rows)
    # what verl's __getitem__ makes of each: the same keys and kinds
    offline_ds = RLHFDataset(offline_files, tokenizer, cfg.data, processor=processor)
    a, b = ds[0], offline_ds[0]
    assert set(a) == set(b) and set(a["extra_info"]) == set(b["extra_info"])


def test_sources_disjoint_and_split_like_ssrl_build(built, cfg, tokenizer, processor):
    train, val = make(cfg, tokenizer, processor, "train"), make(cfg, tokenizer, processor, "val")
    pools = {s: {r.id for p in d.dataframe.rows.pools.values() for r in p} for s, d in (("train", train), ("val", val))}
    assert pools["train"] and pools["val"] and not pools["train"] & pools["val"]

    def used(rows):
        return {json.loads(r["extra_info"]["metadata"])["source"]["id"] for r in rows}

    for split, d in (("train", train), ("val", val)):
        drawn = used(d.row(e, i) for e in range(2) for i in range(len(d)))
        assert drawn <= pools[split]
        offline = used(r for f in shards(built, "verl", split) for r in pq.read_table(f).to_pylist())
        assert offline <= pools[split], f"ssrl build put {split} samples on sources the online {split} set lacks"


def test_sources_are_decoded_lazily(cfg, tokenizer, processor, monkeypatch):
    calls = []
    real = online.load_source
    monkeypatch.setattr(online, "load_source", lambda ref, opts: calls.append(ref.id) or real(ref, opts))
    ds = make(cfg, tokenizer, processor)
    assert calls == []
    ds.row(0, 3)
    assert len(calls) >= 1
    ds.row(0, 3)
    assert len(calls) == len(set(calls))  # a small per-process cache


def test_overlong_prompts_are_redrawn_or_refused(tokenizer, processor, tmp_path):
    """data.filter_overlong_prompts, row by row: with the paper's pixels the 5-image crop prompts (~2,000 tokens on
    the demo pictures) exceed a 1,200-token limit: every fallback is too long, so the sample fails loudly (verl's
    rollout would refuse it); the other tasks fit and are served unchanged."""
    paper = online_config(tmp_path, "++data.mm_processor_kwargs.min_pixels=262144",
                          "++data.mm_processor_kwargs.max_pixels=4194304", "data.max_prompt_length=1200")
    ds = make(paper, tokenizer, processor)
    raw = ds.dataframe.rows  # the generator without the filter
    tasks = [json.loads(raw.row(0, i)["reward_model"]["ground_truth"])["task"] for i in range(len(ds))]
    other = next(i for i, t in enumerate(tasks) if t != "crop")
    assert ds.prompt_length(raw.row(0, other)) <= 1200 and digest(ds[other]) == digest(raw.row(0, other))
    crop = tasks.index("crop")
    assert ds.prompt_length(raw.row(0, crop)) > 1200  # 5 images at >= 262,144 pixels each
    with pytest.raises(RuntimeError, match="max_prompt_length"):
        ds[crop]


def test_overlong_prompt_is_replaced_by_a_fitting_fallback(tokenizer, processor, tmp_path):
    """Sources of two sizes: a crop prompt from a large picture exceeds the limit and is replaced by the next
    candidate that fits (a small picture); the served row is that fallback, on every call and in ds.row."""
    from PIL import Image

    from ssrl_plugin.demo import demo_refs
    from ssrl_plugin.sources import LoadOptions, load_source

    folder = tmp_path / "pictures"
    folder.mkdir()
    for k, ref in enumerate(demo_refs(8, 0, 320, 240)):
        picture = Image.fromarray(load_source(ref, LoadOptions()).rgb)
        (picture.resize((960, 720)) if k % 2 else picture).save(folder / f"{k:02d}.png")
    cfg = online_config(tmp_path, "++data.mm_processor_kwargs.min_pixels=262144",
                        "++data.mm_processor_kwargs.max_pixels=4194304", f"++data.ssrl.build.rgb=['{folder}']",
                        "++data.ssrl.build.tasks=[crop]", "++data.ssrl.build.val_fraction=0")
    ds = make(cfg, tokenizer, processor)
    raw = ds.dataframe.rows
    lengths = {i: ds.prompt_length(raw.row(0, i)) for i in range(6)}
    assert len(set(lengths.values())) == 2, lengths  # one length per picture size
    limit = min(lengths.values())
    ds.max_prompt_length = limit
    long = next(i for i, n in lengths.items() if n > limit)
    served = ds.row(0, long)
    assert ds.prompt_length(served) == limit and digest(served) != digest(raw.row(0, long))
    assert digest(ds[long]) == digest(served) == digest(ds.row(0, long))
    short = next(i for i, n in lengths.items() if n == limit)
    assert digest(ds.row(0, short)) == digest(raw.row(0, short))  # prompts that fit are served unchanged


def test_config_errors_name_the_key():
    from ssrl_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="num_sampels"):
        online.build_config_from({"ssrl": {"build": {"num_sampels": 5}}})
    with pytest.raises(ConfigError, match="data.ssrl.extra"):
        online.build_config_from({"ssrl": {"extra": 1}})
    with pytest.raises(ConfigError, match="ssrl://train"):
        online.parse_split(["/data/verl/train-00000-of-00001.parquet"])
    assert online.parse_split(["ssrl://val"]) == online.parse_split("validation") == "val"
    assert online.build_config_from({}).num_samples == 500  # no section: `ssrl build` defaults, demo corpus
