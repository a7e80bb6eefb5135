"""Issue 19's generator study on Beauty: the table and the validation curves, one row per line of runs.txt.

Each row: the probe, the seed and the change, test N@10 and R@10 with a paired t-test against the probe's default
of the same seed (its line without options), the best validation N@10 and its epoch, the epochs run, the
generator's seconds and the run's wall time (its .start/.end under logs/). A line whose run was cut before it
wrote a record gets its validation curve from its log and no test numbers; a line not run yet says so. For the
run-to-run spread, each probe's eager tf32 seed 0 of ../sid-tf32 (same settings, not compiled) is tested against
the default too. A change run on more seeds than one gets a second table: its mean over the seeds its default
also has, tested per user (each user's value averaged over those seeds) against the default's.

    python reports/beauty/generator-study/study.py > reports/beauty/generator-study/table.md

writes curves.png beside this file (seed 0's validation N@10 per epoch, one panel per probe). With --todo it
prints the lines of runs.txt without a record (not run yet, cut or failed; not retired with "#~ "), for the next
session's queue.
"""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.report import stats  # noqa: E402
from bench.report.load import Run, collect_runs, paired_per_user  # noqa: E402

HERE = Path(__file__).resolve().parent
QUEUE = HERE.parents[1] / "run_queue.sh"
EAGER = HERE.parent / "sid-tf32" / "loo-full"  # the eager tf32 runs of the same defaults
METRICS = ("ndcg@10", "recall@10")


def run_name(line: str) -> str:
    """The file name of a queue line's logs, as the queue gives it."""
    return subprocess.run(["bash", str(QUEUE), "name", line], capture_output=True, text=True, check=True).stdout.strip()


def parse(line: str) -> tuple[str, int, dict[str, str], dict[str, str]]:
    """A queue line's method, seed, --set overrides and --protocol overrides."""
    words = shlex.split(line)
    method, seed = words[0].rsplit(":", 1)
    sets, protocol = {}, {}
    for flag, value in zip(words[1::2], words[2::2], strict=True):
        key, _, val = value.partition("=")
        (sets if flag == "--set" else protocol)[key] = val
    return method, int(seed), sets, protocol


def log_curve(path: Path) -> list[dict]:
    """The validation points a run logged (bench.nn.train's lines), for a run cut before its record."""
    points = []
    for text in path.read_text().splitlines():
        if "bench.nn.train: {" in text:
            point = ast.literal_eval(text.split("bench.nn.train: ", 1)[1])
            if "ndcg@10" in point and point.get("stage") in (None, "generator"):
                points.append(point)
    return points


def utc(path: Path) -> datetime:
    return datetime.fromisoformat(path.read_text().strip().replace("Z", "+00:00"))


def wall_seconds(log: Path) -> str:
    """The run's wall time from the queue's .start/.end files, or why there is none."""
    start, end, rc = log.with_suffix(".start"), log.with_suffix(".end"), log.with_suffix(".rc")
    if not rc.is_file():
        return "cut"
    return str(int((utc(end) - utc(start)).total_seconds())) if start.is_file() and end.is_file() else "-"


def paired(ours: list[Run], base: list[Run], metric: str) -> str:
    """The change in ``metric`` (each side averaged over its runs) and the per-user paired t-test's p."""
    pair = paired_per_user(ours, base, metric)
    if pair is None:
        return "-"
    x, y = pair
    _, p = stats.paired_ttest(x, y)
    return f"{100 * (x.mean() / y.mean() - 1):+.1f}% (p {p:.2g})"


def record_row(run: Run, base: Run | None) -> dict[str, str]:
    """A finished run's columns, tested against its probe's default (none for the default itself)."""
    gen = run.extra.get("generator", {})
    row = {m: f"{run.test(m):.4f}" for m in METRICS}
    for m in METRICS:
        row[f"vs default {m}"] = paired([run], [base], m) if base is not None and base is not run else ""
    row["best valid N@10 (epoch)"] = f"{best_valid(run):.4f} ({gen.get('best_epoch')})"
    row["epochs run"] = str(gen.get("epochs_run", ""))
    row["generator s (per epoch)"] = (f"{run.record['timings'].get('generator', 0):.0f} "
                                      f"({gen.get('seconds_per_epoch', 0):.2f})")
    return row


def best_valid(run: Run) -> float:
    return run.extra.get("generator", {}).get("best_valid_ndcg@10", 0.0)


def over_seeds(by_change: dict[tuple[str, str], dict[int, Run]]) -> list[dict[str, str]]:
    """One row per probe and change with records on more than one seed: means over the seeds its default also
    has (the default's own row first), each change tested per user against the default on those seeds; the mean
    best validation N@10, against the default's; and the change seed by seed, with a paired t-test over
    the seeds (the training runs as the sample, which the per-user test leaves out)."""
    rows = []
    for (method, change), runs in by_change.items():
        default = by_change.get((method, "default"), {})
        seeds = sorted(set(runs) & set(default))
        if len(seeds) < 2:
            continue
        ours, base = [runs[k] for k in seeds], [default[k] for k in seeds]
        row = {"probe": method, "seeds": ", ".join(map(str, seeds)), "change": change}
        for m in METRICS:
            values = [r.test(m) for r in ours]
            row[m] = f"{sum(values) / len(values):.4f} ({min(values):.4f} to {max(values):.4f})"
        for m in METRICS:
            row[f"vs default {m}"] = paired(ours, base, m) if change != "default" else ""
        for m in METRICS if change != "default" else ():  # the runs as the sample, which the users test leaves out
            gains = ", ".join(f"{100 * (a.test(m) / b.test(m) - 1):+.1f}" for a, b in zip(ours, base, strict=True))
            _, p = stats.paired_ttest([r.test(m) for r in ours], [r.test(m) for r in base])
            row[f"{m} per seed, % (t over seeds)"] = f"{gains} (p {p:.2g})"
        valid, valid_base = (sum(best_valid(r) for r in rs) / len(rs) for rs in (ours, base))
        row["best valid N@10"] = f"{valid:.4f}" + (f" ({100 * (valid / valid_base - 1):+.1f}%)"
                                                   if change != "default" else "")
        rows.append(row)
    rows.sort(key=lambda r: (r["probe"], r["change"] != "default"))
    return rows


def print_table(columns: list[str], rows: list[dict[str, str]]) -> None:
    print("| " + " | ".join(c.replace("ndcg@10", "N@10").replace("recall@10", "R@10") for c in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row.get(c, "") for c in columns) + " |")


def matches(run: Run, method: str, seed: int, sets: dict[str, str], protocol: dict[str, str]) -> bool:
    variant = run.record.get("variant") or {}
    given = {k: str(v) for k, v in (variant.get("protocol") or {}).items()}
    return (run.record.get("method") == method and run.seed == seed and run.ok
            and {k: str(v) for k, v in (variant.get("overrides") or {}).items()} == sets and given == protocol)


def main() -> None:
    runs, _ = collect_runs([HERE / "loo-full"])
    eager, _ = collect_runs([EAGER]) if EAGER.is_dir() else ([], [])
    text = (HERE / "runs.txt").read_text().splitlines()
    lines = [ln.strip().removeprefix("#~ ") for ln in text if ln.strip() and (ln[0] != "#" or ln.startswith("#~ "))]
    retired = {ln.removeprefix("#~ ").strip() for ln in text if ln.startswith("#~ ")}
    todo = []
    defaults: dict[tuple[str, int], Run] = {}
    by_change: dict[tuple[str, str], dict[int, Run]] = {}
    rows, curves = [], {}
    for line in lines:
        method, seed, sets, protocol = parse(line)
        change = ", ".join(f"{k}={v}" for k, v in {**protocol, **sets}.items()) or "default"
        logs = sorted(HERE.glob(f"logs/stop*/{run_name(line)}.log"))
        found = [r for r in runs if matches(r, method, seed, sets, protocol)]
        row = {"probe": method, "seed": str(seed), "change": change}
        if found:
            run = found[0]
            if change == "default":
                defaults[(method, seed)] = run
            by_change.setdefault((method, change), {})[seed] = run
            row.update(record_row(run, defaults.get((method, seed))))
            points = [p for p in run.record.get("curve", []) if "ndcg@10" in p and p.get("stage") == "generator"]
            status = ""
        elif logs:
            points = log_curve(logs[-1])
            best = max(points, key=lambda p: p["ndcg@10"]) if points else None
            rc = logs[-1].with_suffix(".rc")
            outcome = f"failed (exit {rc.read_text().strip()})" if rc.is_file() else "cut"
            row.update({m: outcome for m in METRICS})
            row["best valid N@10 (epoch)"] = f"{best['ndcg@10']:.4f} ({best['epoch']})" if best else "-"
            row["epochs run"] = f"{points[-1]['epoch'] + 1} ({outcome})" if points else f"0 ({outcome})"
            status = f" ({outcome})"
        else:
            row.update({m: "not run" for m in METRICS})
            points, status = [], ""
        if not found and line not in retired:
            todo.append(line)  # a cut or failed run is queued again unless retired
        row["wall s"] = wall_seconds(logs[-1]) if logs else "-"
        row["log"] = f"`{logs[-1].relative_to(HERE)}`" if logs else ""
        rows.append(row)
        if points and seed == 0:
            curves.setdefault(method, []).append((change + status, [(p["epoch"], p["ndcg@10"]) for p in points]))
    for (method, seed), base in defaults.items():
        ref = [r for r in eager if r.record.get("method") == method and r.seed == seed == 0 and r.ok]
        if ref:
            environment = ref[0].record.get("environment") or {}
            where = (f"{ref[0].precision}, {str(environment.get('device', '?')).removeprefix('cuda: ')}, "
                     f"code {str((environment.get('git') or {}).get('commit', '?'))[:7]}")
            rows.append({"probe": method, "seed": str(seed), "change": f"default ({where}; ../sid-tf32)",
                         **record_row(ref[0], base)})
    if "--todo" in sys.argv[1:]:
        print("\n".join(todo))
        return
    columns = ["probe", "seed", "change", *METRICS, *(f"vs default {m}" for m in METRICS), "best valid N@10 (epoch)",
               "epochs run", "generator s (per epoch)", "wall s", "log"]
    print_table(columns, rows)
    seeded = over_seeds(by_change)
    if seeded:
        print("\nOver seeds (each change against its probe's default on the seeds both have):\n")
        print_table(["probe", "seeds", "change", *METRICS, *(f"vs default {m}" for m in METRICS),
                     *(f"{m} per seed, % (t over seeds)" for m in METRICS), "best valid N@10"], seeded)
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
        for ax, (method, lines_) in zip(axes[0], sorted(curves.items()), strict=True):
            for label, points in lines_:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, "--" if label.endswith("(cut)") else "-", marker=".", label=label)
            ax.set(title=f"{method}, seed 0: validation N@10", xlabel="epoch", ylabel="N@10")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(HERE / "curves.png", dpi=110)
        print(f"\n(curves: {HERE.name}/curves.png)", file=sys.stderr)


if __name__ == "__main__":
    main()
