"""The report: built from small real runs (two seeds, a failed seed, a second protocol), checked as files,
as LaTeX and in a real headless Chromium."""

import ast
import csv
import json
import re
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.cli import main
from bench.report import load, sections

H20, H5 = "history 20, budget smoke", "history 5, budget smoke"  # the tables' labels: the runs use the smoke budget
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """pop and sasrec (smoke budget) x seeds 0,1; a failed seed 2 of sasrec; pop at history 5 in a second folder."""
    root = tmp_path_factory.mktemp("runs")
    main_runs, other = root / "main", root / "history5"
    assert main(["run", "--methods", "pop,sasrec", "--dataset", "synthetic", "--budget", "smoke", "--seeds", "0,1",
                 "--out", str(main_runs), "--quiet"]) == 0
    assert main(["run", "--methods", "pop", "--dataset", "synthetic", "--budget", "smoke",
                 "--protocol", "history_len=5", "--out", str(other), "--quiet"]) == 0
    record = json.loads((main_runs / "synthetic" / "sasrec" / "seed0" / "result.json").read_text())
    failure = {k: record[k] for k in ("method", "method_class", "budget", "variant", "config", "dataset", "protocol",
                                      "environment", "command", "rerun")}
    failure.update(seed=2, status="failed", error="RuntimeError: CUDA out of memory (a fake failure)",
                   traceback="Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory",
                   timings={"prepare_data": 0.01})
    failed = main_runs / "synthetic" / "sasrec" / "seed2"
    failed.mkdir(parents=True)
    (failed / "failure.json").write_text(json.dumps(failure))
    return main_runs, other


@pytest.fixture(scope="module")
def built(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_files_exist_and_rebuild_is_byte_identical(runs, built):
    before = _files(built)
    assert {"index.html", "tables.tex", "tables-document.tex", "results.csv"} <= set(before)
    plots = {name for name in before if name.startswith("plots/")}
    for kind in ("metrics", "curves"):
        assert any(n.endswith(f"-{kind}.png") for n in plots) and any(n.endswith(f"-{kind}.svg") for n in plots)
    html = before["index.html"].decode()
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["']?(https?:|//|plots/)""", html), "the page must not load anything"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(built)]) == 0
    assert _files(built) == before


def test_results_csv_has_one_row_per_run_metric_and_the_failure(built):
    rows = list(csv.DictReader((built / "results.csv").open()))
    ok = [r for r in rows if r["status"] == "ok"]
    # history 20: pop, sasrec x 2 seeds; history 5: pop x 1 seed; 7 metrics x 2 splits each
    assert len(ok) == (4 + 1) * 7 * 2
    assert {(r["protocol"], r["method"], r["seed"]) for r in ok} == {
        (H20, "pop", "0"), (H20, "pop", "1"), (H20, "sasrec", "0"), (H20, "sasrec", "1"), (H5, "pop", "0")}
    assert [(r["method"], r["seed"], r["status"]) for r in rows if r["status"] != "ok"] == [("sasrec", "2", "failed")]
    assert all(float(r["value"]) >= 0 for r in ok)


def test_html_shows_the_failed_run_missing_seeds_and_the_tests(runs, built):
    html = (built / "index.html").read_text()
    assert "CUDA out of memory (a fake failure)" in html and 'id="failed"' in html
    assert "seed 2 failed" in html and "seed 2 missing" in html  # sasrec: 2/3 seeds; pop: seed 2 never ran
    assert "baseline sasrec" in html
    # the significance row of pop equals scipy on the per-user NDCG@10 averaged over seeds 0 and 1
    per_user = {m: np.mean([np.load(runs[0] / "synthetic" / m / f"seed{s}" / "per_user.npz")["ndcg@10"]
                            for s in (0, 1)], axis=0) for m in ("pop", "sasrec")}
    expected = scipy_stats.ttest_rel(per_user["pop"], per_user["sasrec"]).pvalue
    table = next(t for t in sections.make_tables(load.collect_runs([runs[0]])[0]))
    row = sections.significance(table, "sasrec")[0]
    assert row["method"] == "pop" and row["seeds"] == [0, 1]
    assert row["p_t"] == pytest.approx(expected) and row["p_t_holm"] == pytest.approx(expected)  # one comparison
    assert '<td class="method">pop</td>\n<td>2</td>' in html  # "Seeds paired" counts the seeds
    # over seeds: Welch's t-test on the per-seed test values, the runs as the sample
    by_seed = {m: [json.loads((runs[0] / "synthetic" / m / f"seed{s}" / "result.json").read_text())
                   ["metrics"]["test"]["ndcg@10"] for s in (0, 1)] for m in ("pop", "sasrec")}
    with warnings.catch_warnings():  # pop's two seeds score alike, which scipy warns of; the suite's own code does not
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = scipy_stats.ttest_ind(by_seed["pop"], by_seed["sasrec"], equal_var=False).pvalue
    assert row["p_seeds"] == pytest.approx(welch)
    assert "p over seeds (Welch)" in html
    # the version sidbench reports, not again as an installed package: one row per table
    assert html.count("<dt>sidbench</dt>") == html.count("<h3>Environment</h3>") == 2


def test_protocols_and_groups_get_their_own_tables(runs):
    found, _ = load.collect_runs([runs[0], runs[1]])
    labels = sorted(t.label for t in sections.make_tables(found))
    assert labels == [H20, H5]


def test_no_runs_and_a_missing_baseline_are_clear_errors(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "expected result.json or failure.json files under" in err and "Traceback" not in err
    assert main(["report", str(runs[0]), "--out", str(tmp_path / "r"), "--baseline", "sasrecc"]) == 2
    err = capsys.readouterr().err
    assert "--baseline sasrecc" in err and "pop, sasrec" in err
    assert main(["report", str(runs[0]), "--out", str(tmp_path / "r"), "--compare-to", "tigerr"]) == 2
    err = capsys.readouterr().err
    assert "--compare-to tigerr" in err and "Traceback" not in err


def test_one_method_and_seed_in_two_precisions_is_a_clear_error(runs, tmp_path, capsys):
    other = tmp_path / "tf32" / "synthetic" / "pop" / "seed0"
    shutil.copytree(runs[0] / "synthetic" / "pop" / "seed0", other)
    record = json.loads((other / "result.json").read_text())
    record["precision"] = "tf32"
    (other / "result.json").write_text(json.dumps(record))
    assert main(["report", str(runs[0]), str(tmp_path / "tf32"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "pop seed 0 in fp32" in err and "tf32" in err and "Traceback" not in err


def test_compare_to_adds_a_significance_table_against_that_method(runs, tmp_path):
    out = tmp_path / "r"
    assert main(["report", str(runs[0]), "--out", str(out), "--baseline", "sasrec", "--compare-to", "pop"]) == 0
    html = (out / "index.html").read_text()
    assert "Significance against sasrec (per-user" in html and "Significance against pop (per-user" in html
    assert "Against pop (--compare-to)" in html
    table = sections.make_tables(load.collect_runs([runs[0]])[0])[0]
    (row,) = sections.significance(table, "pop")  # sasrec against pop, the one other method with results
    assert row["method"] == "sasrec" and f"{row['t']:.2f}" in html.split("Significance against pop")[1]


def test_sid_diagnostics_proxy_and_tokenizer_time_are_rendered_generically(runs, tmp_path):
    """Records with ``extra.sid.diagnostics`` and ``extra.proxy`` (made from pop's files) get their tables and plots."""
    source = runs[0] / "synthetic" / "pop"
    for i, name in enumerate(("sid-a", "sid-b", "sid-c")):
        for seed in (0, 1):
            folder = tmp_path / "runs" / "synthetic" / name / f"seed{seed}"
            folder.mkdir(parents=True)
            shutil.copy(source / f"seed{seed}" / "per_user.npz", folder / "per_user.npz")
            record = json.loads((source / f"seed{seed}" / "result.json").read_text())
            record["method"] = name
            record["metrics"]["test"]["ndcg@10"] += 0.01 * i
            levels = [{"level": lv, "codebook_size": 16, "codes_used": 10 + lv + i, "usage": (10 + lv + i) / 16,
                       "conditional_entropy_bits": 3.0 - lv * 0.5 + 0.1 * seed} for lv in range(3)]
            record["environment"]["gpu_other_processes"] = 2 if name == "sid-c" and seed == 1 else 0
            if name == "sid-b":
                record["environment"]["precision"] = "tf32"
                record["environment"]["compile"] = "reduce-overhead"
            elif name == "sid-c":
                del record["environment"]["precision"]  # a record from before run --precision
            record["extra"] = {"sid": {"diagnostics": {"levels": levels, "collision_rate": 0.01 * i,
                                                       "max_collision_group": 2 + i, "fit_seconds": 1.5 + i}},
                               "proxy": {"famae": 0.1 * i + 0.01 * seed, "recon_mse": 1.0 - 0.1 * i},
                               "generator": {"epochs_run": 70 + seed, "best_epoch": 54, "seconds_per_epoch": 4.5}}
            (folder / "result.json").write_text(json.dumps(record))
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--baseline", "sid-a"]) == 0
    html = (out / "index.html").read_text()
    for text in ("SID diagnostics", "collision_rate", "conditional_entropy_bits", "Proxy metrics", "famae",
                 "Spearman", "Quality vs tokenization time", "Codebook levels"):
        assert text in html, text
    cost = html.split("<h3>Cost</h3>")[1].split("</table>")[0]  # a SID method's generator epochs are its epochs
    assert "<td>70, 71</td><td>54, 54</td>" in cost
    assert html.count('title="1 of 2 runs shared the GPU"') == 1 and "their times are upper bounds" in html
    assert cost.count("‡") == 1
    assert 'sid-b <span title="2 of 2 runs through torch.compile (reduce-overhead)">‡</span>' in cost
    assert "their times include compiling" in html
    assert "fp32: sid-a; fp32 (default, not recorded): sid-c; tf32: sid-b" in html
    assert "off: sid-a, sid-c; reduce-overhead: sid-b" in html
    assert (out / "plots" / "synthetic-history-20-budget-smoke-levels.svg").is_file()
    assert (out / "plots" / "synthetic-history-20-budget-smoke-quality-vs-time.png").is_file()
    tex = (out / "tables.tex").read_text()
    assert r"conditional\_entropy\_bits" in tex and r"collision\_rate" in tex
    _check_tex_structure(tex)


def test_report_modules_import_only_downward():
    """stats <- load <- summary <- sections <- plots, render <- build: no module imports a later one."""
    rank = {"stats": 0, "load": 1, "summary": 2, "sections": 3, "plots": 4, "render": 4, "build": 5}
    folder = Path(sections.__file__).parent
    assert {p.stem for p in folder.glob("*.py")} - {"__init__"} == set(rank)
    upward = []
    for name in rank:
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench.report"):
                used = [node.module.split(".")[2]] if node.module != "bench.report" else [a.name for a in node.names]
                upward += [(name, u) for u in used if rank.get(u, rank[name]) >= rank[name]]
    assert upward == []


# ---------------------------------------------------------------------------------------------- LaTeX


def _check_tex_structure(tex: str) -> None:
    """Balanced environments, booktabs rules, and every row with the tabular's column count."""
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, f"unbalanced \\end{{{name}}}"
    assert not stack, f"unclosed environments {stack}"
    tabulars = re.findall(r"\\begin\{tabular\}\{([^}]*)\}\n(.*?)\\end\{tabular\}", tex, re.S)
    assert tabulars
    for spec, body in tabulars:
        columns = len(re.findall(r"[lcr]|p\{", spec))
        lines = body.strip().splitlines()
        assert lines[0] == r"\toprule" and lines[2] == r"\midrule" and lines[-1] == r"\bottomrule"
        for line in lines:
            if line.endswith(r"\\"):
                assert len(re.findall(r"(?<!\\)&", line)) == columns - 1, line
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert not re.search(r"(?<!\\)[_#%]", body), "unescaped _ # or %"


def test_tables_tex_compiles_or_is_well_formed(built, tmp_path):
    tex = (built / "tables.tex").read_text()
    assert r"\textbf{" in tex and r"\underline{" in tex and r"$\pm$" in tex
    assert r"$\Delta$" not in tex  # synthetic has no published numbers, so no table of them
    _check_tex_structure(tex)
    engine = shutil.which("pdflatex") or shutil.which("tectonic")
    if engine:
        shutil.copy(built / "tables.tex", tmp_path)
        shutil.copy(built / "tables-document.tex", tmp_path)
        args = [engine, "-interaction=nonstopmode", "tables-document.tex"] if engine.endswith("pdflatex") \
            else [engine, "tables-document.tex"]
        result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:]
        assert (tmp_path / "tables-document.pdf").is_file()


# ---------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def chromium():
    """A chromium (or chrome) binary on PATH, else the browser tests skip; tests never install one."""
    binary = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                   if (found := shutil.which(name))), None)
    if binary is None:
        pytest.skip("no chromium on PATH: the browser tests need one (e.g. `apt-get install -y chromium`)")
    return binary


class _Tables(HTMLParser):
    """Rows (data-method) of every main table, and the attributes of <html>."""

    def __init__(self):
        super().__init__()
        self.root: dict[str, str] = {}
        self.tables: dict[str, list[str]] = {}
        self._table = None
        self._body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.root = attrs
        elif tag == "table" and "main" in (attrs.get("class") or "").split():
            self._table = attrs["data-table"]
            self.tables[self._table] = []
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._table and self._body:
            self.tables[self._table].append(attrs.get("data-method"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._body = False


def _browse(chromium, page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    profile.mkdir()
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=90)


def test_page_loads_without_errors_in_headless_chromium(chromium, built, tmp_path):
    result = _browse(chromium, built / "index.html", tmp_path, "--dump-dom", "--virtual-time-budget=3000")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Tables()
    dom.feed(result.stdout)
    assert dom.root.get("data-loaded") == "1", "the page's load handler did not run"
    assert not dom.root.get("data-errors"), dom.root.get("data-errors")
    assert dom.tables == {"synthetic-history-20-budget-smoke": ["pop", "sasrec"],
                          "synthetic-history-5-budget-smoke": ["pop"]}

    shot = tmp_path / "shot.png"
    result = _browse(chromium, built / "index.html", tmp_path, f"--screenshot={shot}", "--window-size=1400,2000")
    assert shot.is_file(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_a_long_line_legend_goes_beside_the_plot(tmp_path):
    """Up to six lines the legend sits over the axes; more go beside them, in columns the figure widened for,
    so that no entry covers a line or falls off the figure."""
    from bench.report.plots import LEGEND_COLUMN, LEGEND_INSIDE, Plotter

    for n in (3, 8, 18, 30):
        methods = [f"m{i}" for i in range(n)]
        plotter = Plotter(tmp_path, methods)
        with plotter._rc():
            figure = plotter._figure(6.4 + plotter.legend_width(n), 3.4)
            ax = figure.subplots()
            for m in methods:
                ax.plot([0, 1], [0, 1], label=m)
            plotter._line_legend(figure, ax)
            if n <= LEGEND_INSIDE:
                assert ax.get_legend() is not None and not figure.legends
                assert plotter.legend_width(n) == 0
            else:
                assert ax.get_legend() is None and len(figure.legends) == 1
                assert plotter.legend_width(n) == -(-n // LEGEND_COLUMN[0]) * LEGEND_COLUMN[1]
                legend = figure.legends[0]
                assert len(legend.get_texts()) == n  # the entries of the one axes, once each
                figure.canvas.draw()
                box, page = legend.get_window_extent(), figure.bbox
                assert box.x0 >= ax.get_window_extent().x1  # beside the lines, not over them
                assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
