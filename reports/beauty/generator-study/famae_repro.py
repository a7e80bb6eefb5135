"""Does a FAMAE fit reproduce itself on one GPU? Fits FAMAE on Beauty, seed 0, twice in each mode, and compares.

Stop 30 found that a compiled FAMAE fit of seed 0 did not reproduce stop 29's (best epoch 35 of 46 against 43 of
54), while the RQ-VAE did. This separates the candidate causes, on a short budget (``--epochs``, 5 by default):
- ``eager``: two plain fits; differing vectors mean run-to-run non-determinism (e.g. CUDA atomics in the
  embedding and scatter-add backward passes), not compiling;
- ``eager-deterministic``: the same under ``torch.use_deterministic_algorithms`` (warn only: the ops without a
  deterministic kernel are listed);
- ``compiled``: two fits with ``--compile reduce-overhead``, as the study runs them.
Each fit runs in this process, one after another; tf32 as in the study. On the device machine:

    PYTHONPATH=. python reports/beauty/generator-study/famae_repro.py --out $OUT/famae_repro.json

It prints one line per mode (the largest absolute difference between the two fits' item vectors, and each fit's
validation proxy recall@10) and writes them to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before CUDA starts, for determinism

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.core.device import apply_precision, resolve_device  # noqa: E402
from bench.core.method import FitContext  # noqa: E402
from bench.data.dataset import load_dataset  # noqa: E402
from bench.data.protocol import Protocol, Split  # noqa: E402
from methods.encoders.famae import FAMAE  # noqa: E402

MODES = {"eager": (None, False), "eager-deterministic": (None, True), "compiled": ("reduce-overhead", False)}


def fit_once(split: Split, device: torch.device, epochs: int, compile_mode: str | None) -> tuple[np.ndarray, dict]:
    ctx = FitContext(device=device, seed=0, valid=None, quiet=True, compile=compile_mode)  # type: ignore[arg-type]
    start = time.perf_counter()
    encoder = FAMAE(epochs=epochs).fit(split, ctx)
    info = {"seconds": round(time.perf_counter() - start, 1),
            "valid_recall@10": encoder.fit_info_["proxy"]["valid"].get("proxy_item_recall@10")}
    return encoder.item_vectors_, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--out", default="famae_repro.json")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {unknown}; expected some of {sorted(MODES)}")
    device = resolve_device(args.device)
    apply_precision("tf32" if device.type == "cuda" else "fp32", device)
    dataset = load_dataset("beauty")
    split = Split(dataset, Protocol.from_options(dataset.protocol_defaults, {}))
    results = {}
    for mode in modes:
        compile_mode, deterministic = MODES[mode]
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (first, info1), (second, info2) = (fit_once(split, device, args.epochs, compile_mode) for _ in range(2))
        lacking = sorted({str(w.message).split(" does not have a deterministic")[0] for w in caught
                          if "deterministic" in str(w.message)})
        results[mode] = {"max_abs_diff": float(np.abs(first - second).max()), "identical": bool(np.array_equal(
            first, second)), "fits": [info1, info2], "ops_without_deterministic_kernel": lacking}
        print(mode, json.dumps(results[mode]), flush=True)
    torch.use_deterministic_algorithms(False)
    with open(args.out, "w") as handle:
        json.dump({"epochs": args.epochs, "device": str(device), "torch": torch.__version__, "modes": results},
                  handle, indent=1)


if __name__ == "__main__":
    main()
