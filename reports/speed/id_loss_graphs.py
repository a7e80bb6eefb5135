"""How many graphs dynamo compiles while each ID method trains (synthetic, smoke budget, 3 epochs,
``run --compile eager``: dynamo's tracing without inductor, so it runs in seconds on a CPU).

    python reports/speed/id_loss_graphs.py > reports/speed/id_loss_graphs_cpu.txt

Run from a checkout (or a ``git worktree``) of the commit to measure, with ``PYTHONPATH`` set to it. A step
whose shapes do not depend on the data gives two graphs: the full batches and the smaller last batch.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

from bench.cli import main

METHODS = ("sasrec", "sasrec-bce", "bert4rec", "s3rec")


def count(method: str) -> str:
    dynamo.reset()
    counters.clear()
    with tempfile.TemporaryDirectory() as out:
        code = main(["run", "--methods", method, "--dataset", "synthetic", "--budget", "smoke", "--set", "epochs=3",
                     "--compile", "eager", "--quiet", "--out", out])
    if code != 0:
        sys.exit(f"{method} failed (exit status {code})")
    return (f"{method}: {counters['stats']['unique_graphs']} graphs, "
            f"{sum(counters['graph_break'].values())} graph breaks")


if __name__ == "__main__":
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"code {commit}, torch {torch.__version__}")
    for name in METHODS:
        print(count(name), flush=True)
