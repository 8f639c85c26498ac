"""The ``ssrl`` command line: ``tasks``, ``build``, ``verify``, ``score``, ``paths``, ``examples``.

Heavy modules (the builders, pyarrow) are imported inside the subcommands so ``ssrl tasks`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence

from ssrl_plugin import __version__
from ssrl_plugin.errors import SSRLError


SFT_DEFAULT_SAMPLES = 3600


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def cmd_tasks(args: argparse.Namespace) -> int:
    from ssrl_plugin.registry import create_task, list_tasks

    rows = []
    for name in list_tasks():
        task = create_task(name)
        levels = {str(level): dict(knobs) for level, knobs in sorted(task.levels.items())}
        rows.append({"task": name, "input": task.input_pool(), "variants": task.variants(),
                     "slots": task.num_slots, "description": task.description, "knobs": task.knob_names(),
                     "levels": levels})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["task"]) for r in rows)
    for r in rows:
        print(f"{r['task']:<{width}}  {r['input']:<5}  {r['description']}")
        print(f"{'':<{width}}        variants: {', '.join(r['variants'])}")
        for level, knobs in r["levels"].items():
            print(f"{'':<{width}}        level {level}: {', '.join(f'{k}={json.dumps(v)}' for k, v in knobs.items())}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .pipeline import build
    from .report import summary_table

    from ssrl_plugin.config import load_config

    flags = {
        "out": args.out, "rgb": args.rgb, "rgbd": args.rgbd, "sequences": args.sequences, "tasks": args.tasks,
        "num_samples": args.num_samples, "val_fraction": args.val_fraction, "seed": args.seed, "workers": args.workers, "backend": args.backend,
        "ray_address": args.ray_address, "level": args.level, "curriculum": args.curriculum,
    }
    overrides = list(args.overrides)
    if args.format:
        overrides.append(f"output.formats=[{','.join(args.format)}]")
    if args.format == ["sft"] and args.num_samples is None:
        flags["num_samples"] = SFT_DEFAULT_SAMPLES  # the paper's cold-start size
    config = load_config(args.config, overrides, **flags)
    say = None if args.quiet else (lambda message: print(f"ssrl: {message}", file=sys.stderr))
    try:
        result = build(config, overwrite=args.overwrite, progress=None if not args.quiet else False,
                       resume=args.resume, notify=say)
    except KeyboardInterrupt:
        print("ssrl: interrupted; run the same command with --resume to continue", file=sys.stderr)
        return 130
    manifest = result.manifest
    if result.total == 0:
        if not args.quiet:
            print(summary_table(manifest), file=sys.stderr)
        inputs = manifest["inputs"]
        first = next(iter(manifest["skipped_inputs"] + manifest["no_sample_inputs"]), None)
        example = f"; first: {first['path']}: {first['reason']}" if first else ""
        print(f"ssrl: error: no sample could be built from {inputs['total']} inputs ({inputs['skipped']} skipped, "
              f"{inputs['no_sample']} without a sample, all listed in {result.out / 'manifest.json'}){example}",
              file=sys.stderr)
        return 1
    if not args.quiet:
        print(summary_table(manifest))
        print(f"wrote {result.out}")
    if result.val_missing > 0:
        val = manifest["splits"]["val"]
        print(f"ssrl: error: the validation split has {val['rows']} of the {val['target']} rows --val-fraction asks for "
              f"({val['sources']} validation sources, {val['replacement_sources']} of them replacements; a source is "
              f"never in both splits); the rest is written; --val-fraction 0 builds without one", file=sys.stderr)
        return 1
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import summary, verify_dataset

    report = verify_dataset(args.dir, layout=args.layout, limit=args.limit, progress=sys.stderr.isatty(),
                            sources=args.sources or (), workers=args.workers)
    if report.missing_sources:
        print(f"ssrl verify: sources not found: {', '.join(report.missing_sources)} (moved? pass --sources NEWDIR)",
              file=sys.stderr)
    if report.not_loaded:
        sid, why = next(iter(report.not_loaded.items()))
        more = f" and {len(report.not_loaded) - 1} more" if len(report.not_loaded) > 1 else ""
        print(f"ssrl verify: {len(report.not_loaded)} sources could not be loaded ({sid}: {why}{more})", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for p in report.problems[:20]:
            print(f"MISMATCH {p['id']}: {'; '.join(p['problems'])}")
        print(summary(report))
    return 0 if report.ok else 1


def cmd_examples(args: argparse.Namespace) -> int:
    from ssrl_plugin.examples import write_examples

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise SSRLError(f"--out {args.out}: is a file, not a folder")

    for path in write_examples(args.out, seed=args.seed, tasks=args.tasks):
        print(path)
    return 0


def _option_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_score(args: argparse.Namespace) -> int:
    from .score import format_report, score_file

    options = {}
    for item in args.options:
        key, sep, value = item.partition("=")
        if not sep:
            raise SSRLError(f"option {item!r}: expected key=value (e.g. partial_credit=true)")
        options[key] = _option_value(value)
    for flag, path, want_dir in (("--data", args.data, True), ("--responses", args.responses, False)):
        if not os.path.exists(path):
            raise SSRLError(f"{flag} {path}: no such {'folder' if want_dir else 'file'}")
        if os.path.isdir(path) != want_dir:
            raise SSRLError(f"{flag} {path}: is {'not ' if want_dir else ''}a folder")
    try:
        report = score_file(args.data, args.responses, split=args.split, **options)
    except ValueError as exc:
        raise SSRLError(str(exc)) from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    from .paths import trainer_paths

    paths = trainer_paths()
    if args.name:
        key = args.name if args.name in paths else "SSRL_" + args.name.upper().replace("-", "_")
        if key not in paths:
            raise SSRLError(f"unknown path {args.name!r}; known: {', '.join(paths)}")
        print(paths[key])
    elif args.json:
        print(json.dumps(paths, indent=2))
    else:
        for key, value in paths.items():
            print(f"export {key}={shlex.quote(value)}" if args.shell else f"{key}={value}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="ssrl", description="Spatial-SSRL pretext tasks for EasyR1 and verl")
    p.add_argument("--version", action="version", version=f"ssrl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tasks", help="list registered tasks and their variants")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tasks)

    b = sub.add_parser("build", help="build a dataset (the built-in demo corpus when no --rgb/--rgbd is given)")
    b.add_argument("--out", help="output folder")
    b.add_argument("--rgb", action="append", help="RGB images: a folder, a glob or a .txt list (repeatable)")
    b.add_argument("--rgbd", action="append", help="RGB-D pairs: KIND:PATH[,key=value], KIND in diode, megadepth, pairs (repeatable)")
    b.add_argument("--sequences", action="append", help="videos and RGB-D sequences: KIND:PATH[,key=value], KIND in "
                   "video, frames, scannet, tum, posed (repeatable; README: Sequence inputs)")
    b.add_argument("--tasks", type=_csv, help="comma-separated task names (default: every task with inputs)")
    b.add_argument("--num-samples", type=int, help="samples in total, train + val (default 500)")
    b.add_argument("--val-fraction", type=float, help="share of sources (and samples) for validation (default 0.05)")
    b.add_argument("--seed", type=int, help="global seed (default 0)")
    b.add_argument("--workers", type=int, help="processes (default 1); the output is identical for any value")
    b.add_argument("--backend", choices=["local", "ray"], help="local processes (default) or Ray Data (needs ray[data])")
    b.add_argument("--ray-address", help="with --backend ray: cluster address (default: start a local Ray)")
    b.add_argument("--level", type=int, help="difficulty level of every task (ssrl tasks lists them; default: none)")
    b.add_argument("--curriculum", help='training rows in stages of rising level, e.g. "levels=1,2,3 [shares=...] [batch=256]"')
    b.add_argument("--format", type=_csv, help="comma-separated: easyr1, verl, sft (default easyr1,verl; sft alone defaults to 3,600 samples)")
    b.add_argument("--config", help="YAML config file (see example_configs/build.yaml)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    b.add_argument("--resume", action="store_true", help="continue an interrupted build in --out from its last complete shard")
    b.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    b.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. task.crop.size_frac=0.4")
    b.set_defaults(func=cmd_build)

    v = sub.add_parser(
        "verify", help="re-derive every answer of a built dataset from its images, metadata and sources",
        description="Re-derive every answer of a built dataset (easyr1/verl parquet, or sft/ JSON) from its images, "
                    "metadata and sources. Sources are looked for where the build recorded them; a moved corpus is "
                    "found with --sources. Samples whose source is missing are checked against their metadata only "
                    "and counted in the summary. Exit status: 0 no mismatch (missing sources are reported on "
                    "stderr, not a failure), 1 mismatches (or nothing to check), 2 usage error (no dataset, "
                    "unreadable manifest.json or parquet).")
    v.add_argument("dir", help="dataset folder made by ssrl build")
    v.add_argument("--layout", choices=["easyr1", "verl", "sft"], help="which rows to read (default: easyr1, else verl, else sft)")
    v.add_argument("--limit", type=int, help="check at most N samples (the first N in file order)")
    v.add_argument("--sources", action="append", metavar="DIR",
                   help="where a moved corpus lies now: each recorded source root is looked for as DIR (same name) "
                        "or DIR/<root name> (repeatable)")
    v.add_argument("--workers", type=int, default=None,
                   help="processes (default: one per core, at most 8; 1 for small datasets); the report is identical for any value")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)
    sc = sub.add_parser("score", help="score model responses (JSONL of {id, response}) against a built dataset")
    sc.add_argument("--data", required=True, help="dataset folder made by ssrl build")
    sc.add_argument("--responses", required=True, help="JSONL file, one {\"id\": ..., \"response\": ...} per line")
    sc.add_argument("--split", choices=["train", "val"], help="only this split's ground truths (default: all)")
    sc.add_argument("--json", action="store_true")
    sc.add_argument("options", nargs="*", metavar="key=value", help="reward options, e.g. partial_credit=true format_weight=0.1")
    sc.set_defaults(func=cmd_score)

    pa = sub.add_parser("paths", help="absolute paths of the reward files and format prompt, for trainer configs")
    pa.add_argument("name", nargs="?", help="print one path, e.g. reward-easyr1, reward-verl, format-prompt")
    pa.add_argument("--shell", action="store_true", help='export lines: eval "$(ssrl paths --shell)"')
    pa.add_argument("--json", action="store_true")
    pa.set_defaults(func=cmd_paths)

    e = sub.add_parser("examples", help="write one example picture per task, made from the demo corpus")
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--tasks", type=_csv)
    e.set_defaults(func=cmd_examples)

    from . import audit, evaluate, export, preview, stats  # they register their own subcommands

    for module in (preview, stats, audit, export, evaluate):
        module.register(sub)
    return p


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def os_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return one_line(f"{where}{exc.strerror or exc}")


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure is one line on stderr with the exit code of :mod:`ssrl_plugin.errors` (a bug: 4)."""
    p = parser()
    args, rest = p.parse_known_args(argv)
    # key=value overrides may stand between flags (`build a=1 --resume b=2`), which argparse alone refuses
    extra = next((name for name in ("overrides", "options") if hasattr(args, name)), None)
    if rest and extra and all("=" in r and not r.startswith("-") for r in rest):
        setattr(args, extra, [*getattr(args, extra), *rest])
    elif rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args)
    except SSRLError as exc:
        print(f"ssrl: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ssrl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ssrl tasks | head`: the reader left, which is no error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"ssrl: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ssrl: error: {os_error_line(exc)}", file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line; SSRL_TRACEBACK=1 shows where
        if os.environ.get("SSRL_TRACEBACK"):
            raise
        print(f"ssrl: internal error: {type(exc).__name__}: {one_line(exc)} (please report it; SSRL_TRACEBACK=1 "
              f"shows where)", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
