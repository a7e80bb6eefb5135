"""FAMAE's loss before and after it got fixed shapes (stop 12), on random data at Beauty's sizes.

    python reports/speed/famae_loss_shapes.py > reports/speed/famae_loss_shapes_cpu.txt

Loads the earlier loss (masked rows selected by boolean indexing) from commit b86ce7b
through `git show`, and prints for both: the loss and gradient difference on one
batch, the median forward + backward time of 10 training steps after one warm-up
(the two losses alternate), and how many graphs and graph breaks dynamo traces.
"""

from __future__ import annotations

import subprocess
import sys
import time
import types

import numpy as np
import torch

from methods.encoders.famae import FAMAEModel, draw_field_mask, famae_loss

BEFORE = "b86ce7b"
N_ITEMS, BATCH, HISTORY = 12101, 2048, 20
STEPS = 10
VOCABS = {"brand": 2000, "cat1": 5, "cat2": 40, "cat3": 200, "price": 10}  # about Beauty's field sizes


def earlier_loss():
    source = subprocess.run(["git", "show", f"{BEFORE}:methods/famae.py"], capture_output=True, text=True,
                            check=True).stdout
    module = types.ModuleType("famae_before")
    exec(compile(source, f"{BEFORE}:methods/famae.py", "exec"), module.__dict__)
    return module.famae_loss


def main() -> int:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    fields = {name: rng.integers(0, size, N_ITEMS) for name, size in VOCABS.items()}
    model = FAMAEModel(N_ITEMS, fields=fields, vocab_sizes=VOCABS)
    hist = torch.randint(0, N_ITEMS + 1, (BATCH, HISTORY))
    target = torch.randint(0, N_ITEMS, (BATCH,))
    masked = draw_field_mask(BATCH, model.n_fields)
    losses = {"before": earlier_loss(), "after": famae_loss}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {BATCH}, {N_ITEMS} items")

    model.eval()  # no dropout: both losses see the same h
    values = {name: fn(model, hist, target, masked) for name, fn in losses.items()}
    grads = {name: torch.autograd.grad(v, list(model.parameters()), allow_unused=True) for name, v in values.items()}
    gap = max((a - b).abs().max().item() for a, b in zip(grads["before"], grads["after"]) if a is not None)
    rel = abs(values["before"] - values["after"]).item() / values["before"].item()
    print(f"loss before {values['before'].item():.6f}, after {values['after'].item():.6f} (relative difference "
          f"{rel:.1e}); largest gradient difference {gap:.1e}")

    model.train()
    times: dict[str, list[float]] = {name: [] for name in losses}
    for step in range(STEPS + 1):  # the two alternate, so drift in the machine's speed hits both alike
        mask = draw_field_mask(BATCH, model.n_fields)
        for name, fn in losses.items():
            start = time.perf_counter()
            fn(model, hist, target, mask).backward()
            if step:  # step 0 warms up
                times[name].append(time.perf_counter() - start)
    for name, fn in losses.items():
        explained = torch._dynamo.explain(fn)(model, hist, target, masked)
        torch._dynamo.reset()
        print(f"{name}: forward + backward {1000 * float(np.median(times[name])):.0f} ms (median of {STEPS}, "
              f"range {1000 * min(times[name]):.0f} to {1000 * max(times[name]):.0f}); dynamo: "
              f"{explained.graph_count} graphs, {explained.graph_break_count} breaks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
