"""The report's figures: metric bars, training curves, codebook levels, quality against tokenizer time."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.core.io import atomic_write_bytes
from bench.report import stats
from bench.report.sections import TEST_METRIC, Table, short_metric, tokenizer_seconds
from bench.report.summary import METRICS

SVG_SALT = "sidbench"
LEGEND_INSIDE = 6  # legend entries that still fit over a line plot; more go beside it (the figure widens)
LEGEND_COLUMN = (18, 2.4)  # entries per column beside a plot, and the inches each column adds


class Plotter:
    """Matplotlib (Agg) figures saved as PNG and SVG with fixed metadata, so reruns are byte-identical."""

    def __init__(self, folder: Path, methods: list[str]):
        import seaborn as sns

        self.folder = folder
        palette = sns.color_palette("tab10" if len(methods) <= 10 else "husl", max(len(methods), 1))
        self.colors = {m: palette[i] for i, m in enumerate(methods)}

    def _rc(self) -> Any:
        import matplotlib

        return matplotlib.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "path", "font.family": "DejaVu Sans",
                                      "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                                      "path.simplify": True})

    def _figure(self, width: float, height: float) -> Any:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        return figure

    def _line_legend(self, figure: Any, ax: Any) -> None:
        """A line plot's legend (``ax``'s lines): over the axes while it has few entries, beside them once it has
        more, in as many columns as :meth:`legend_width` made room for."""
        handles, labels = ax.get_legend_handles_labels()
        if len(labels) <= LEGEND_INSIDE:
            ax.legend(fontsize=8, frameon=False)
        else:
            figure.legend(handles, labels, fontsize=8, frameon=False, loc="outside right upper",
                          ncols=-(-len(labels) // LEGEND_COLUMN[0]))

    @staticmethod
    def legend_width(entries: int) -> float:
        """Inches a line plot's figure grows by for a legend of ``entries`` beside it."""
        return 0.0 if entries <= LEGEND_INSIDE else -(-entries // LEGEND_COLUMN[0]) * LEGEND_COLUMN[1]

    def _save(self, figure: Any, name: str, title: str, caption: str) -> dict[str, str]:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=150, metadata={"Software": None})
        png = buffer.getvalue()
        svg = io.BytesIO()
        figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
        atomic_write_bytes(self.folder / f"{name}.png", png)
        atomic_write_bytes(self.folder / f"{name}.svg", svg.getvalue())
        return {"title": title, "caption": caption, "png": f"plots/{name}.png", "svg": f"plots/{name}.svg",
                "data": base64.b64encode(png).decode("ascii")}

    def metric_bars(self, table: Table) -> dict[str, str] | None:
        import pandas as pd
        import seaborn as sns

        rows = [{"method": r.method, "metric": short_metric(m), "value": r.test(m), "seed": r.seed}
                for method in table.methods for r in table.ok_runs(method) for m in METRICS
                if r.test(m) is not None]
        if not rows:
            return None
        frame = pd.DataFrame(rows)
        methods = [m for m in table.methods if m in set(frame["method"])]
        order = [short_metric(m) for m in METRICS]
        with self._rc():
            figure = self._figure(max(6.0, 1.0 + 0.35 * len(methods) * len(order) / 2), 3.4)
            ax = figure.subplots()
            sns.barplot(data=frame, x="metric", y="value", hue="method", order=order, hue_order=methods,
                        errorbar="sd", capsize=0.15, err_kws={"linewidth": 1}, palette=self.colors, ax=ax)
            if table.seeds and len(table.seeds) > 1:
                sns.stripplot(data=frame, x="metric", y="value", hue="method", order=order, hue_order=methods,
                              dodge=True, jitter=False, size=2.5, palette={m: "black" for m in methods},
                              legend=False, ax=ax)
            ax.set_xlabel("")
            ax.set_ylabel("test metric (mean, ±1 sd over seeds)")
            ax.legend(title=None, fontsize=8, ncols=min(len(methods), 4), loc="upper left", frameon=False)
            ax.set_ylim(0, frame["value"].max() * 1.25)
            return self._save(figure, f"{table.id}-metrics", "Test metrics",
                              "Mean over seeds; error bars ±1 sample sd, dots the single seeds.")

    def curves(self, table: Table) -> dict[str, str] | None:
        from matplotlib.ticker import MaxNLocator

        lines = []
        for method in table.methods:
            for run in table.ok_runs(method):
                by_stage: dict[str, list[tuple[int, float]]] = defaultdict(list)
                for entry in run.record.get("curve") or []:
                    if TEST_METRIC in entry and entry[TEST_METRIC] is not None:
                        by_stage[str(entry.get("stage", ""))].append((int(entry.get("epoch", 0)),
                                                                      float(entry[TEST_METRIC])))
                lines += [(method, run.seed, stage, sorted(points)) for stage, points in sorted(by_stage.items())]
        if not lines:
            return None
        multi_stage = {m for m, _, s, _ in lines if len({s2 for m2, _, s2, _ in lines if m2 == m}) > 1}
        styles = ["-", "--", ":", "-."]

        def label_of(method: str, stage: str) -> str:
            return f"{method} ({stage})" if method in multi_stage else method

        with self._rc():
            figure = self._figure(6.4 + self.legend_width(len({label_of(m, s) for m, _, s, _ in lines})), 3.4)
            ax = figure.subplots()
            labelled = set()
            for method, _seed, stage, points in lines:
                stages = sorted({s for m, _, s, _ in lines if m == method})
                label = label_of(method, stage)
                ax.plot([p[0] for p in points], [p[1] for p in points], color=self.colors[method],
                        linestyle=styles[stages.index(stage) % len(styles)], linewidth=1.1, alpha=0.85,
                        label=None if label in labelled else label)
                labelled.add(label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"validation {short_metric(TEST_METRIC)}")
            self._line_legend(figure, ax)
            return self._save(figure, f"{table.id}-curves", "Training curves",
                              f"Validation {short_metric(TEST_METRIC)} per epoch, one line per seed.")

    def levels(self, table: Table, diagnostics: dict[str, Any] | None) -> dict[str, str] | None:
        if not diagnostics or not diagnostics["levels"]:
            return None
        level_table = next((t for t in diagnostics["levels"] if t["name"].split(".")[-1] == "levels"),
                           diagnostics["levels"][0])
        columns = level_table["columns"]
        wanted = [next(c for c in columns if c.startswith(k)) for k in ("usage", "conditional_entropy")
                  if any(c.startswith(k) for c in columns)] or columns[:2]
        panels = []
        for key in wanted:
            j = level_table["columns"].index(key)
            points = defaultdict(list)
            for row in level_table["rows"]:
                value = row["cells"][j]["value"]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    points[row["method"]].append((row["level"], float(value)))
            if points:
                panels.append((key, points))
        if not panels:
            return None
        with self._rc():
            methods = {m for _, points in panels for m in points}
            figure = self._figure(3.3 * len(panels) + 0.6 + self.legend_width(len(methods)), 3.0)
            axes = figure.subplots(1, len(panels), squeeze=False)[0]
            for ax, (key, points) in zip(axes, panels, strict=True):
                for method, values in points.items():
                    ax.plot([v[0] for v in values], [v[1] for v in values], marker="o", color=self.colors[method],
                            label=method, linewidth=1.2)
                ax.set_xlabel("level")
                ax.set_ylabel(key.replace("_", " "))
                ax.set_xticks(sorted({v[0] for vs in points.values() for v in vs}))
            self._line_legend(figure, axes[0])
            return self._save(figure, f"{table.id}-levels", "Codebook levels",
                              f"Per-level {' and '.join(k.replace('_', ' ') for k, _ in panels)} per tokenizer "
                              f"({level_table['name']}, mean over seeds).")

    def quality_vs_time(self, table: Table) -> dict[str, str] | None:
        points = []
        for method in table.methods:
            runs = table.ok_runs(method)
            seconds = [v for r in runs if (v := tokenizer_seconds(r)) is not None]
            quality = [v for r in runs if (v := r.test(TEST_METRIC)) is not None]
            if seconds and quality:
                points.append((method, stats.mean_std(seconds), stats.mean_std(quality)))
        if not points:
            return None
        with self._rc():
            figure = self._figure(5.0, 3.4)
            ax = figure.subplots()
            for method, (sec, sec_sd), (q, q_sd) in points:
                ax.errorbar(sec, q, xerr=sec_sd or None, yerr=q_sd or None, fmt="o", color=self.colors[method],
                            capsize=2)
                ax.annotate(method, (sec, q), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel("tokenizer fit time (s)")
            ax.set_ylabel(f"test {short_metric(TEST_METRIC)}")
            return self._save(figure, f"{table.id}-quality-vs-time", "Quality vs tokenization time",
                              "Mean over seeds, bars ±1 sd.")
