"""A report of result records: one self-contained ``index.html``, ``tables.tex``, ``results.csv`` and plots.

``build_report(runs_dirs, out)`` reads every ``result.json`` and ``failure.json``
under the given folders and writes, into ``out``:

- ``index.html``: tables, plots (embedded PNG), failed runs, protocol and environment;
  no external CSS, JS or fonts, viewable offline;
- ``tables.tex`` (booktabs fragment) and ``tables-document.tex`` (a wrapper that compiles it);
- ``results.csv``: one row per dataset / runs group / protocol / method / seed / split / metric;
- ``plots/*.png`` and ``plots/*.svg``.

Runs are grouped into one table per (dataset, runs group, protocol): protocols are
never mixed, and the runs group (the folders between a RUNS_DIR and
``DATASET/METHOD/seedK``, e.g. ``loo-full`` or ``timing-alone``) keeps repeated
runs of one setting apart. The same runs give byte-identical files.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from bench.core.errors import ConfigError
from bench.core.io import atomic_write_bytes
from bench.report.load import collect_runs
from bench.report.plots import Plotter
from bench.report.render import TEX_DOCUMENT, render_csv, render_html, render_tex
from bench.report.sections import (
    ALPHA,
    TEST_METRIC,
    choose_baseline,
    cost_section,
    diagnostics_section,
    environment_section,
    failure_rows,
    main_rows,
    make_tables,
    proxy_section,
    significance,
)
from bench.report.summary import METRICS, load_references


def build_report(runs_dirs: Sequence[Path], out: Path, baseline: str | None = None,
                 compare_to: Sequence[str] = ()) -> Path:
    """Write the report of every run under ``runs_dirs`` into ``out``; returns the path of ``index.html``.

    ``compare_to``: methods that each get a further significance table (HTML),
    next to the one against the table's baseline.
    """
    runs, duplicates = collect_runs(runs_dirs)
    tables = make_tables(runs)
    for option, method in [("--baseline", baseline)] + [("--compare-to", m) for m in compare_to]:
        if method and not any(table.ok_runs(method) for table in tables):
            found = sorted({r.method for r in runs if r.ok})
            raise ConfigError(f"{option} {method}: no successful run of {method!r} under "
                              f"{', '.join(map(str, runs_dirs))}; methods with results: {', '.join(found) or 'none'}. "
                              f"Pass one of them, or leave {option} out")
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for stale in sorted(plots.glob("*")):
        if stale.suffix in (".png", ".svg") and stale.is_file():
            stale.unlink()
    plotter = Plotter(plots, sorted({r.method for r in runs}))
    refs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for ref in load_references():
        refs[(ref["dataset"], ref["method"])].append(ref)
    sections = []
    for table in tables:
        chosen, baseline_note = choose_baseline(table, baseline)
        sig = significance(table, chosen)
        diagnostics = diagnostics_section(table)
        figures = [plotter.metric_bars(table), plotter.curves(table), plotter.levels(table, diagnostics),
                   plotter.quality_vs_time(table)]
        sections.append({
            "id": table.id, "title": table.title, "dataset": table.dataset, "group": table.group,
            "label": table.label, "protocol": sorted((table.protocol or {}).items()),
            "metrics": METRICS, "rows": main_rows(table, sig, refs), "baseline": chosen,
            "baseline_note": baseline_note, "significance": sig, "diagnostics": diagnostics,
            "also_significance": [{"baseline": m, "rows": significance(table, m)} for m in compare_to
                                  if m != chosen and table.ok_runs(m)],
            "proxy": proxy_section(table), "cost": cost_section(table), "environment": environment_section(table),
            "commands": sorted({c for r in table.runs if (c := r.record.get("command"))}),
            "plots": [f for f in figures if f], "n_ok": sum(r.ok for r in table.runs),
            "n_failed": sum(not r.ok for r in table.runs), "seeds": table.seeds,
        })
    context = {
        "roots": [str(p) for p in runs_dirs], "sections": sections, "failures": failure_rows(runs),
        "duplicates": [{"folder": str(r.folder), "method": r.method, "seed": r.seed, "group": r.group}
                       for r in sorted(duplicates, key=lambda r: str(r.folder))],
        "n_ok": sum(r.ok for r in runs), "n_failed": sum(not r.ok for r in runs), "alpha": ALPHA,
        "test_metric": TEST_METRIC, "metrics": METRICS,
    }
    atomic_write_bytes(out / "index.html", render_html(context).encode("utf-8"))
    atomic_write_bytes(out / "tables.tex", render_tex(sections).encode("utf-8"))
    atomic_write_bytes(out / "tables-document.tex", TEX_DOCUMENT.encode("utf-8"))
    atomic_write_bytes(out / "results.csv", render_csv(tables).encode("utf-8"))
    return out / "index.html"
