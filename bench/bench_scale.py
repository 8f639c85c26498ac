"""Benchmark: a paper-scale build (81,053 samples in the paper's mix) on a generated corpus, its wall time and the
peak memory of the whole process tree; and peak memory over a 2,000-source and a 20,000-source corpus with the same
number of samples (memory must not grow with the corpus).

    python bench/bench_scale.py [--root /tmp/ssrl_bench_scale] [--samples 81053] [--workers 2]
                                [--sources 20000] [--mem-sources 2000,20000] [--mem-samples 20000]
                                [--unique-rgb 1000] [--unique-rgbd 200] [--skip-paper] [--skip-memory]

Corpus of S sources (bench/corpus.py): S/2 COCO-like 640x480 JPEGs (--rgb), S/4 DIODE-like 1024x768 PNG + depth +
mask and S/4 MegaDepth-like 1600x1064 JPEG + .h5 with 70 % invalid depth (--rgbd). Sources beyond --unique-rgb /
--unique-rgbd are hard links of the first ones (distinct source ids and paths, same bytes: 20,000 sources without
40 GB of depth files); the smaller corpus is hard-linked from the larger one. Every source is decoded for real; the
only thing a hard link saves is disk (and it keeps the files in the page cache: disk reads are not measured).

Each build runs as ``ssrl build ... --workers W --quiet`` in a child process. Every 0.5 s the script reads /proc for
the child and all its descendants and sums VmRSS (resident set, counts shared pages once per process: an upper
bound) and Pss (proportional set size from smaps_rollup: shared pages split between processes, the honest total).
Peaks of both sums are reported, with the 1-minute load average during the build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus as corpus_mod  # noqa: E402


# ----------------------------------------------------------------------------------------------- memory sampling
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def process_tree(root: int) -> list[int]:
    kids, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the summed RSS and PSS of a process tree every ``interval`` seconds until stopped."""

    def __init__(self, root: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.samples: list[tuple[float, int, int, int, float]] = []  # (t, rss kB, pss kB, processes, load1)
        self._stop_event = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop_event.is_set():
            pids = process_tree(self.root)
            rss = sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            with open("/proc/loadavg") as f:
                load = float(f.read().split()[0])
            self.samples.append((time.perf_counter() - t0, rss, pss, len(pids), load))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        rss = [s[1] for s in self.samples]
        pss = [s[2] for s in self.samples]
        n = len(self.samples)
        bounds = [round(n * k / 4) for k in range(5)]
        quarters = [round(max(pss[bounds[k]:max(bounds[k + 1], bounds[k] + 1)]) / 1024) for k in range(4)]
        return {"peak_rss_mb": round(max(rss) / 1024, 1), "peak_pss_mb": round(max(pss) / 1024, 1),
                "peak_pss_by_quarter_mb": quarters, "max_processes": max(s[3] for s in self.samples),
                "mean_load1": round(sum(s[4] for s in self.samples) / n, 2), "samples": n}


# ----------------------------------------------------------------------------------------------------- building
def ssrl_command() -> list[str]:
    exe = Path(sys.executable).with_name("ssrl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "data_builders.cli"]


def make_corpus(root: Path, sources: int, unique_rgb: int, unique_rgbd: int, donor: Path | None) -> dict[str, str]:
    counts = {"coco": sources // 2, "diode": sources // 4, "megadepth": sources - sources // 2 - sources // 4}
    return corpus_mod.generate(root, counts, unique={"coco": unique_rgb, "diode": unique_rgbd, "megadepth": unique_rgbd},
                               link_from=donor)


def run_build(specs: dict[str, str], out: Path, samples: int, workers: int, log: Path, extra: list[str]) -> dict:
    cmd = ssrl_command() + ["build", "--out", str(out), "--rgb", specs["coco_rgb"], "--rgbd", specs["diode_rgbd"],
                            "--rgbd", specs["megadepth_rgbd"], "--num-samples", str(samples), "--workers", str(workers),
                            "--seed", "0", "--quiet", "--overwrite", *extra]
    with open("/proc/loadavg") as f:
        load_before = float(f.read().split()[0])
    t0 = time.perf_counter()
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        mon = TreeMemory(proc.pid)
        mon.start()
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of the build and of the workers it waited for
        rc = proc.returncode = os.waitstatus_to_exitcode(status)
        mon.stop()
    wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    result = {"cmd": " ".join(cmd), "rc": rc, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
              "load1_before": load_before, **mon.summary()}
    manifest = out / "manifest.json"
    if rc == 0 and manifest.exists():
        m = json.loads(manifest.read_text())
        result.update(samples=sum(m["counts"]["total"].values()), manifest_wall_s=m["wall_time_s"],
                      samples_per_s=m["samples_per_s"], content_hash=m["content_hash"],
                      counts=m["counts"]["total"], sources=m["sources"])
    return result


def show(label: str, r: dict) -> None:
    if r.get("rc") != 0:
        print(f"{label}: FAILED rc={r.get('rc')} (see log)")
        return
    print(f"{label}: {r['samples']} samples in {r['wall_s'] / 60:.1f} min ({r['samples_per_s']} samples/s; CPU of the "
          f"whole tree {r['cpu_s'] / 60:.1f} min = {1e3 * r['cpu_s'] / r['samples']:.1f} ms/sample), "
          f"peak RSS {r['peak_rss_mb']:.0f} MB / peak PSS {r['peak_pss_mb']:.0f} MB over {r['max_processes']} processes, "
          f"PSS peak per quarter of the run {r['peak_pss_by_quarter_mb']} MB, mean load1 {r['mean_load1']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/tmp/ssrl_bench_scale", help="corpora and outputs go here")
    p.add_argument("--samples", type=int, default=81053)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sources", type=int, default=20000, help="corpus of the paper-scale build")
    p.add_argument("--mem-sources", default="2000,20000", help="corpus sizes of the memory check")
    p.add_argument("--mem-samples", type=int, default=20000, help="samples of each memory-check build")
    p.add_argument("--unique-rgb", type=int, default=1000)
    p.add_argument("--unique-rgbd", type=int, default=200)
    p.add_argument("--skip-paper", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the built datasets")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("extra", nargs="*", help="extra key=value overrides for ssrl build")
    a = p.parse_args(argv)

    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(s) for s in a.mem_sources.split(",") if s} | ({a.sources} if not a.skip_paper else set()),
                   reverse=True)
    corpora: dict[int, dict[str, str]] = {}
    donor = None
    for size in sizes:  # the largest first; the smaller ones are hard-linked prefixes of it
        corpora[size] = make_corpus(root / f"corpus_{size}", size, a.unique_rgb, a.unique_rgbd, donor)
        donor = donor or root / f"corpus_{size}"
    results: dict = {"cpus": os.cpu_count()}
    if not a.skip_paper:
        print(f"== paper-scale build: {a.samples} samples, {a.sources} sources, --workers {a.workers} ==", flush=True)
        out = root / "out_paper"
        r = run_build(corpora[a.sources], out, a.samples, a.workers, root / "build_paper.log", a.extra)
        results["paper"] = r
        show("paper scale", r)
        if r.get("rc") == 0:
            print(f"  counts {r['counts']}; targets: < 20 min ({r['wall_s'] / 60:.1f}; the tree's CPU time / "
                  f"{os.cpu_count()} cores = {r['cpu_s'] / os.cpu_count() / 60:.1f} min, the wall time on an otherwise idle "
                  f"machine with perfect packing), peak < 2 GB "
                  f"(RSS sum {r['peak_rss_mb'] / 1024:.2f} GB, PSS sum {r['peak_pss_mb'] / 1024:.2f} GB)")
        if not a.keep:
            shutil.rmtree(out, ignore_errors=True)
    if not a.skip_memory:
        print(f"== memory vs corpus size: {a.mem_samples} samples, --workers {a.workers} ==", flush=True)
        for size in sorted(int(s) for s in a.mem_sources.split(",") if s):
            out = root / f"out_mem_{size}"
            r = run_build(corpora[size], out, a.mem_samples, a.workers, root / f"build_mem_{size}.log", a.extra)
            results[f"memory_{size}"] = r
            show(f"{size:>6} sources", r)
            if not a.keep:
                shutil.rmtree(out, ignore_errors=True)
        mem = [results[k] for k in results if k.startswith("memory_") and results[k].get("rc") == 0]
        if len(mem) >= 2:
            pss = " -> ".join(f"{m['peak_pss_mb']:.0f}" for m in mem)
            rss = " -> ".join(f"{m['peak_rss_mb']:.0f}" for m in mem)
            srcs = " -> ".join(str(m["sources"]["rgb"] + m["sources"]["rgbd"]) for m in mem)
            print(f"peak PSS {pss} MB, peak RSS {rss} MB for {srcs} sources "
                  f"(PSS ratio {mem[-1]['peak_pss_mb'] / mem[0]['peak_pss_mb']:.2f})")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
