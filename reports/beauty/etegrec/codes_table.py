"""The codes-and-losses table of README.md, read from the records: one column per ETEGRec-family run.

    python reports/beauty/etegrec/codes_table.py reports/beauty/etegrec/loo-full
"""
import json
import pathlib
import statistics
import sys


def column(record: dict) -> dict[str, str]:
    info = record["extra"]["sid"]["etegrec"]
    refreshes = info["refreshes"]
    later = [r["changed_share"] for r in refreshes[1:]]
    terms = info["loss_terms"]
    # etegrec-joint trains both in every step: its one phase, "joint", counts as either
    tok = [t for t in terms if t["phase"] in ("tokenizer", "joint")]
    gen = [t for t in terms if t["phase"] in ("generator", "joint")]

    def first_last(rows, key):
        values = [t[key] for t in rows if key in t]
        return f"{values[0]:.2f}, {values[-1]:.2f}" if values else "off"

    rq = [t["rq"] for t in tok]
    joint = [p for p in record["curve"] if p.get("stage") == "joint" and p.get("phase") in ("generator", "joint")]
    scored = [p for p in joint if "ndcg@10" in p]
    best = max(scored, key=lambda p: p["ndcg@10"])

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    return {
        "stage-1 epochs (the best validation's epoch, from 0)": f"{joint[-1]['epoch'] + 1} ({best['epoch']})",
        "items moved at the first refresh": pct(refreshes[0]["changed_share"]),
        "items moved per later refresh: range (median)":
            f"{pct(min(later))} to {pct(max(later))} ({pct(statistics.median(later))})" if later else "-",
        "final SID differs from stage 0's": pct(info["codes_changed_share"]),
        "collision rate: stage 0, last refresh": f"{info['stage0']['collision_rate']:.4f}, "
                                                 f"{refreshes[-1]['collision_rate']:.4f}",
        "largest group sharing 3 codes: stage 0, last refresh": f"{info['stage0']['largest_group']}, "
                                                                f"{refreshes[-1]['largest_group']}",
        "codebook usage per level, last refresh": ", ".join(f"{u:g}" for u in refreshes[-1]["usage"]),
        "RQ loss: first, last tokenizer epoch (lowest)": f"{rq[0]:.2f}, {rq[-1]:.2f} ({min(rq):.2f})" if rq else "-",
        "SIA: first, last tokenizer epoch with it": first_last(tok, "sia"),
        "PSA: likewise": first_last(tok, "psa"),
        "generation loss: first, last generator epoch": first_last(gen, "generation"),
    }


def main(root: str) -> None:
    columns = {}
    for path in sorted(pathlib.Path(root).glob("*/etegrec*/seed*/result.json")):
        record = json.loads(path.read_text())
        if not any(p.get("stage") == "joint" for p in record["curve"]):
            continue  # no stage 1 of its own (etegrec-two-stage reads etegrec's from the stage cache)
        variant = record.get("variant") or {}
        asked = [f"{k}={v}" for k, v in sorted((variant.get("protocol") or {}).items())]
        asked += [f"{k}={v}" for k, v in sorted((variant.get("overrides") or {}).items())]
        if record.get("compile"):
            asked.append("compiled")
        # a run with other protocol or options is another column (seed0~VARIANT beside seed0), never a replacement
        name = f"`{record['method']}` s{record['seed']}" + (f" ({', '.join(asked)})" if asked else "")
        columns[name] = column(record)
    if not columns:
        sys.exit(f"no ETEGRec records with refreshes under {root}: expected loo-full/<dataset>/<method>/seed*/")
    rows = next(iter(columns.values())).keys()
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for row in rows:
        print(f"| {row} | " + " | ".join(c[row] for c in columns.values()) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports/beauty/etegrec/loo-full")
