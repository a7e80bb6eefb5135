"""The report's files as text: ``index.html`` (the jinja template), ``tables.tex`` (booktabs) and ``results.csv``."""

from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Any

from bench.report.sections import ALPHA, TEST_METRIC, Table, fmt, fmt_p, short_metric
from bench.report.summary import METRICS

SPLITS = ("test", "valid")


def render_html(context: dict[str, Any]) -> str:
    """``index.html`` from the page's context, through ``templates/report.html.j2`` (no external files)."""
    import jinja2

    source = resources.files("bench.report").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    env.filters["p"] = fmt_p
    env.filters["short"] = short_metric
    return env.from_string(source).render(**context)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"$\dagger$",
        "·": r"$\cdot$", "–": "--"}


def tex(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped (±, †, · and – written as LaTeX)."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _tex_tabular(columns: str, header: list[str], rows: list[list[str]], caption: str,
                 rules_after: frozenset[int] | set[int] = frozenset()) -> str:
    lines = [r"\begin{table}[htbp]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{caption}}}", rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    for i, row in enumerate(rows):
        lines.append(" & ".join(row) + r" \\")
        if i in rules_after and i < len(rows) - 1:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _tex_mark(text: str, mark: str) -> str:
    return rf"\textbf{{{text}}}" if mark == "best" else rf"\underline{{{text}}}" if mark == "second" else text


def render_tex(sections: list[dict[str, Any]]) -> str:
    """Booktabs tables of every section: main table, published numbers and deltas, SID diagnostics."""
    parts = ["% sidbench report tables; needs \\usepackage{booktabs}. Compile tables-document.tex to see them.", ""]
    for s in sections:
        title = tex(s["title"])
        header = ["Method", "Seeds"] + [tex(short_metric(m)) for m in METRICS]
        rows = []
        for row in s["rows"]:
            cells = [tex(row["method"]), f"{row['n_ok']}/{row['n_expected']}"]
            for cell in row["cells"]:
                if "mean" not in cell:
                    cells.append("--")
                    continue
                text = _tex_mark(f"{cell['mean']:.4f}", cell["mark"])
                if cell["std"] is not None:
                    text += rf" $\pm$ {cell['std']:.4f}"
                if cell["sig"]:
                    text += "$^{" + cell["sig"].replace("†", r"\dagger") + "}$"
                cells.append(text)
            rows.append(cells)
        caption = (f"{title}: test metrics, mean $\\pm$ sample std over seeds. Bold: best, underlined: second best "
                   f"(at 4 decimals; ties all marked). ")
        if s["baseline"]:
            caption += (f"$^{{*}}$/$^{{\\dagger}}$: {tex(short_metric(TEST_METRIC))} differs from {tex(s['baseline'])} "
                        f"(paired t-test / Wilcoxon signed-rank on per-user values, Holm-adjusted $p<{ALPHA}$).")
        parts.append(_tex_tabular("l" + "c" + "r" * len(METRICS), header, rows, caption))
        published = []
        breaks = set()
        for row in s["rows"]:
            for cell in row["cells"]:
                for ref in cell["refs"]:
                    published.append([tex(row["method"]), tex(short_metric(cell["metric"])),
                                      f"{cell['mean']:.4f}" if "mean" in cell else "--", f"{ref['value']:.4f}",
                                      f"{ref['delta']:+.1f}" if ref["delta"] is not None else "--",
                                      tex(ref["source"])])
            if published and row["published"]:
                breaks.add(len(published) - 1)
        if published:
            sources = "; ".join(f"{tex(p['source'])}: {tex(p['protocol'])}"
                                for p in _unique(p for row in s["rows"] for p in row["published"]))
            parts.append(_tex_tabular("llrrrl", ["Method", "Metric", "Ours", "Published", r"$\Delta$ (\%)", "Source"],
                                      published, f"{title}: our numbers ({tex(s['label'])}) against the published "
                                      f"ones. Published protocols: {sources}.", breaks))
        diag = s["diagnostics"]
        if diag and diag["scalar_columns"]:
            header = ["Method", "Seeds"] + [tex(c) for c in diag["scalar_columns"]]
            rows = [[tex(r["method"]), str(r["seeds"])] + [tex(c["text"]) for c in r["cells"]]
                    for r in diag["scalar_rows"]]
            parts.append(_tex_tabular("lc" + "r" * len(diag["scalar_columns"]), header, rows,
                                      f"{title}: SID diagnostics (mean over seeds)."))
        for level_table in (diag or {}).get("levels", []):
            header = ["Method", "Level"] + [tex(c) for c in level_table["columns"]]
            rows = [[tex(r["method"]), str(r["level"])] + [tex(c["text"]) for c in r["cells"]]
                    for r in level_table["rows"]]
            parts.append(_tex_tabular("lc" + "r" * len(level_table["columns"]), header, rows,
                                      f"{title}: SID diagnostics per level ({tex(level_table['name'])})."))
    return "\n".join(parts)


TEX_DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs}
\setlength{\textwidth}{17cm}
\setlength{\oddsidemargin}{-0.5cm}
\begin{document}
\input{tables}
\end{document}
"""


def _unique(items: Any) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def render_csv(tables: list[Table]) -> str:
    """Tidy results: a row per dataset, runs group, protocol, method, seed, split and metric (a failed run: one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "runs", "protocol", "method", "seed", "status", "split", "metric", "value"])
    for table in tables:
        for method in table.methods:
            for run in sorted((r for r in table.runs if r.method == method), key=lambda r: r.seed):
                head = [table.dataset, table.group, table.label, method, run.seed]
                if not run.ok:
                    writer.writerow(head + [run.record.get("status") or "failed", "", "", ""])
                    continue
                for split in SPLITS:
                    values = run.record["metrics"].get(split, {})
                    for metric in [m for m in METRICS if m in values] + sorted(set(values) - set(METRICS)):
                        writer.writerow(head + ["ok", split, metric, repr(float(values[metric]))])
    return buffer.getvalue()
