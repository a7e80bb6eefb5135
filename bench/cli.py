"""Command line: ``python -m bench run|list|data``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import registry
from bench.core.errors import ConfigError, SidbenchError
from bench.core.options import parse_options, parse_pairs, parse_value
from bench.core.plugin import plugin_defaults

log = logging.getLogger("bench")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="sidbench: semantic-ID tokenizer benchmark")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate methods on a dataset")
    run.add_argument("--methods", type=_csv, required=True, help="comma-separated method names (see `list`)")
    run.add_argument("--dataset", default="synthetic", help="dataset name (default: synthetic)")
    run.add_argument("--seeds", default="0", help="comma-separated distinct seeds >= 0 (default: 0)")
    run.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs/)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--precision", default="fp32", choices=["fp32", "tf32"],
                     help="float32 matmuls on CUDA outside the trainers' bf16 autocast (RQ-VAE fit, scoring): "
                          "fp32 (default) or tf32 tensor cores; recorded in the result and its run key")
    run.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND|MODE",
                     help="run the trainers' loss steps through torch.compile: a backend (inductor unless named) "
                          "or an inductor mode such as reduce-overhead (CUDA graphs); recorded in the result and "
                          "its run key")
    run.add_argument("--budget", default="default", help="named config budget: default or smoke")
    run.add_argument("--set", action="append", default=[], metavar="[METHOD.]KEY=VALUE",
                     help="override a method option (repeatable)")
    run.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE",
                     help="override a protocol option, e.g. history_len=50 or exclude_history=true")
    run.add_argument("--force", action="store_true", help="re-run even if an identical finished run exists")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--jobs", type=int, default=1,
                     help="run (method, seed) pairs in this many processes at once (small models share a GPU well)")

    sub.add_parser("list", help="list methods, tokenizers, encoders and datasets")

    diag = sub.add_parser("diagnose", help="fit a tokenizer on a dataset's item vectors and print SID diagnostics")
    diag.add_argument("--tokenizer", required=True, help="tokenizer name (see `list`)")
    diag.add_argument("--dataset", default="synthetic")
    diag.add_argument("--encoder", default="text", help="item encoder (default: the dataset's text encoder)")
    diag.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="tokenizer parameter (repeatable)")
    diag.add_argument("--encoder-set", action="append", default=[], metavar="KEY=VALUE", help="encoder parameter")
    diag.add_argument("--collisions", default="extra-level", choices=["extra-level", "hungarian"])
    diag.add_argument("--seed", type=int, default=0)
    diag.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    diag.add_argument("--json", type=Path, help="also write the diagnostics as JSON here")
    diag.add_argument("--quiet", action="store_true", help="no progress bars (encoder and tokenizer training)")

    summary = sub.add_parser("summarize", help="markdown table of the results under a runs folder")
    summary.add_argument("runs", type=Path)
    summary.add_argument("--out", type=Path, help="write the markdown here instead of printing it")

    report = sub.add_parser("report", help="HTML, LaTeX and CSV report (tables, tests, plots) of runs folders")
    report.add_argument("runs", type=Path, nargs="+", help="folders of runs (as given to `run --out`)")
    report.add_argument("--out", type=Path, required=True, help="report folder, e.g. reports/NAME/")
    report.add_argument("--baseline", help="method to test the others against (default: each table's best ID method)")
    report.add_argument("--compare-to", default="", metavar="M[,M...]",
                        help="methods that each get a further significance table, e.g. tiger")

    data = sub.add_parser("data", help="prepare or describe datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser("prepare", help="fetch, verify and process a dataset; print its statistics")
    prep.add_argument("name")
    prep.add_argument("--rebuild", action="store_true", help="process again even if cached")
    info = data_sub.add_parser("info", help="describe a dataset's recipe and (if prepared) statistics")
    info.add_argument("name")
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    for kind in ("method", "tokenizer", "encoder", "dataset"):
        entries = registry.entries(kind)
        print(f"{kind}s:")
        if not entries:
            print("  (none yet)")
        width = max((len(e.name) for e in entries), default=0)
        for entry in entries:
            print(f"  {entry.name.ljust(width)}  {entry.description}")
        print()
    return 0


def format_diagnostics(diagnostics: dict[str, Any], collisions: dict[str, Any] | None = None) -> str:
    """SID diagnostics as a small text table: one row per level, then the collision facts."""
    header = ["level", "size", "used", "usage", "entropy", "norm.entropy", "perplexity", "H(c_l|c_<l)"]
    rows = [header] + [
        [str(lv["level"]), str(lv["codebook_size"]), str(lv["codes_used"]), f"{lv['usage']:.3f}",
         f"{lv['entropy_bits']:.3f}", f"{lv['normalized_entropy']:.3f}", f"{lv['perplexity']:.1f}",
         f"{lv['conditional_entropy_bits']:.3f}"]
        for lv in diagnostics["levels"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    scalars = {k: v for k, v in diagnostics.items() if k != "levels"}
    lines += [f"{k:22s} {v}" for k, v in scalars.items()]
    if collisions:
        lines += [f"collisions: {collisions['method']}, {collisions['colliding_items_before']} colliding items, "
                  f"{collisions['items_moved']} moved, {collisions['levels_added']} level(s) added -> "
                  f"{collisions['n_levels']} levels {collisions['codebook_sizes']}"]
    return "\n".join(lines)


def cmd_diagnose(args: argparse.Namespace) -> int:
    import json

    from bench.core.device import resolve_device
    from bench.core.io import _jsonable
    from bench.core.method import FitContext
    from bench.data.dataset import load_dataset
    from bench.data.protocol import Protocol, Split
    from bench.sid.pipeline import encode_with, encoder_proxies
    from bench.sid.stages import tokenize_items

    tok_cls = registry.get("tokenizer", args.tokenizer)
    tok_params = parse_options(parse_pairs(args.set, "--set"), plugin_defaults(tok_cls, "tokenizer"), "--set ",
                               where=f"--set (tokenizer {args.tokenizer})")
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset)
    split = Split(dataset, Protocol.from_options(dataset.protocol_defaults, {}))
    ctx = FitContext(device=device, seed=args.seed, valid=None, quiet=args.quiet)  # type: ignore[arg-type]
    vectors, encoded = encode_with(args.encoder, ";".join(args.encoder_set), split, ctx)
    encoder = encoded["name"]
    if "seed" in tok_cls.param_names():
        tok_params.setdefault("seed", args.seed)
    sids = tokenize_items(args.tokenizer, tok_params, vectors, encoded["cache_key"], split, str(device), args.collisions,
                          quiet=args.quiet)
    print(f"{args.tokenizer} on {dataset.name} ({encoder} vectors, {vectors.shape[1]}-d); fit "
          f"{sids.info['fit_seconds']} s on {sids.info['device']}{' (cached)' if sids.info.get('cache_hit') else ''}")
    print(format_diagnostics(sids.diagnostics, sids.collisions))
    proxies = encoder_proxies(encoded)
    print(f"encoder proxies ({encoder}): " + ", ".join(f"{name} {value:.4f}" for name, value in proxies.items()))
    if args.json:
        payload = {"dataset": dataset.name, "encoder": encoder, "tokenizer": args.tokenizer, "params": tok_params,
                   "diagnostics": sids.diagnostics, "collisions": sids.collisions, "info": sids.info,
                   "encoder_proxies": proxies}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return 0


def _print_stats(name: str, stats: dict[str, Any]) -> None:
    print(f"dataset {name}")
    for key, value in stats.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, int):
            value = f"{value:,}"
        print(f"  {key:24s} {value}")


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data.dataset import get_recipe, load_dataset

    if args.data_command == "prepare":
        ds = load_dataset(args.name, rebuild=args.rebuild)
        _print_stats(ds.name, ds.stats)
        return 0
    recipe = get_recipe(args.name)
    print(f"{recipe.name}: {recipe.description}")
    print(f"  recipe  {recipe.path}")
    print(f"  reader  {recipe.reader}")
    for role, src in recipe.files.items():
        print(f"  file    {role}: {src.url}\n          sha256 {src.sha256}")
    print(f"  fields  {recipe.items.get('fields', [])}")
    print(f"  protocol defaults {recipe.protocol}")
    return 0


def format_table(outcomes: list, metrics: tuple[str, ...] = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")) -> str:
    rows: dict[str, list[dict[str, float]]] = {}
    for o in outcomes:
        if o.record is not None:
            rows.setdefault(o.method, []).append(o.record["metrics"]["test"])
    header = ["method", "seeds"] + [m.replace("recall", "R").replace("ndcg", "N") for m in metrics] + ["fit s"]
    lines = [header]
    for method, runs in rows.items():
        fit = [o.record["timings"].get("fit", 0.0) for o in outcomes if o.method == method and o.record]
        cells = [method, str(len(runs))]
        for m in metrics:
            values = np.array([r[m] for r in runs])
            cells.append(f"{values.mean():.4f}" + (f"±{values.std(ddof=1):.4f}" if len(values) > 1 else ""))
        cells.append(f"{np.mean(fit):.1f}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines)


def cmd_summarize(args: argparse.Namespace) -> int:
    from bench.report.summary import summarize

    if not args.runs.is_dir():
        raise ConfigError(f"expected a folder of runs, found no folder at {args.runs}")
    text = summarize(args.runs)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report.build import build_report

    compare_to = [m.strip() for m in args.compare_to.split(",") if m.strip()]
    print(f"report written to {build_report(args.runs, args.out, args.baseline, compare_to)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.run.runner import BenchmarkRun

    run = BenchmarkRun(
        methods=args.methods, dataset=args.dataset, seeds=list(parse_value(args.seeds, (0,), "--seeds")), out=args.out,
        device=args.device, precision=args.precision, compile=args.compile, budget=args.budget,
        overrides=parse_pairs(args.set, "--set"), protocol_overrides=parse_pairs(args.protocol, "--protocol"),
        force=args.force, quiet=args.quiet, jobs=args.jobs,
        command=args.shell_command,
    )
    outcomes = run.execute()
    print(f"\n{args.dataset}: test metrics (mean±std over seeds), full ranking; results in {args.out}/")
    print(format_table(outcomes))
    failed = [o for o in outcomes if o.error]
    for o in failed:
        print(f"FAILED {o.method} seed {o.seed}: {o.error} (details in {o.folder}/failure.json)", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    args.shell_command = "python -m bench " + " ".join(shlex.quote(a) for a in given)  # the record's ``command``
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"run": cmd_run, "list": cmd_list, "data": cmd_data, "summarize": cmd_summarize, "report": cmd_report,
                "diagnose": cmd_diagnose}
    try:
        return handlers[args.command](args)
    except SidbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept, the unfinished one left no result", file=sys.stderr)
        return 130
