"""Time GAOQ's fit on synthetic item vectors and report time and peak memory per size (a benchmark, not a test).

Each case runs in a fresh subprocess, so its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the whole process, Python,
numpy and the item vectors included) belongs to that case alone. Cases are
``N`` or ``NxD``; the vectors are a seeded Gaussian mixture (``N // 50``
centres, spread 2, unit noise), or plain standard-normal with ``--random``.

    python reports/scaling/gaoq_scaling.py 10000 100000 500000
    python reports/scaling/gaoq_scaling.py --random 12101x384
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def item_vectors(n_items: int, dim: int, seed: int, random: bool) -> np.ndarray:
    """Seeded synthetic item vectors ``[n_items, dim]`` float32."""
    rng = np.random.default_rng(seed)
    if random:
        return rng.standard_normal((n_items, dim), dtype=np.float32)
    centres = rng.standard_normal((max(1, n_items // 50), dim), dtype=np.float32) * 2.0
    out = rng.standard_normal((n_items, dim), dtype=np.float32)
    out += centres[rng.integers(0, len(centres), n_items)]
    return out


def run_one(n_items: int, dim: int, seed: int, random: bool) -> dict:
    """Fit GAOQ once in this process; time, peak RSS and what it chose."""
    sys.path.insert(0, str(ROOT))
    from methods.tokenizers.gaoq import GAOQ

    vectors = item_vectors(n_items, dim, seed, random)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu_start = time.perf_counter(), time.process_time()
    tok = GAOQ(seed=seed).fit(vectors)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"n_items": n_items, "dim": dim, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "rss_before_fit_mib": rss_before / 1024, "rss_peak_mib": rss_peak / 1024, "branching": tok.fit_info_["branching"],
            "seconds_per_level": tok.fit_info_["seconds_per_level"],
            "unique": bool(len(np.unique(tok.codes_, axis=0)) == n_items)}


def parse_case(text: str, default_dim: int) -> tuple[int, int]:
    n, _, d = text.lower().partition("x")
    return int(n), int(d) if d else default_dim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=["10000", "100000", "500000"], help="N or NxD per case")
    parser.add_argument("--dim", type=int, default=128, help="dimension when a case gives only N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random", action="store_true", help="standard-normal vectors instead of a mixture")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_intermixed_args()
    if args.one:
        n, d = parse_case(args.cases[0], args.dim)
        print(json.dumps(run_one(n, d, args.seed, args.random)))
        return
    data = "standard normal" if args.random else "Gaussian mixture (N/50 centres)"
    print(f"GAOQ fit, default settings (automatic branching, n_iter=20), {data}, seed {args.seed}; "
          f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPUs. "
          f"Peak memory = ru_maxrss of a fresh process per case (includes the input vectors); "
          f"CPU s = time.process_time() of that process (user + system, all threads).\n")
    print("| items | dim | fit wall s | fit CPU s (all threads) | per level wall s | peak RSS MiB (before fit) "
          "| branching | unique SIDs |")
    print("|---:|---:|---:|---:|---|---:|---|---|")
    for case in args.cases:
        command = [sys.executable, __file__, "--one", case, "--dim", str(args.dim), "--seed", str(args.seed)]
        result = json.loads(subprocess.run(command + (["--random"] if args.random else []), check=True,
                                           capture_output=True, text=True).stdout)
        print(f"| {result['n_items']:,} | {result['dim']} | {result['seconds']:.1f} | {result['cpu_seconds']:.1f} | "
              f"{', '.join(f'{s:.1f}' for s in result['seconds_per_level'])} | "
              f"{result['rss_peak_mib']:.0f} ({result['rss_before_fit_mib']:.0f}) | {result['branching']} | "
              f"{result['unique']} |", flush=True)
    print()


if __name__ == "__main__":
    main()
