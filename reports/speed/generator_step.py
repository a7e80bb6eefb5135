"""Time one training step of the shared SID generator, eager against ``torch.compile`` (a benchmark, not a test).

The step is the Trainer's: bf16 autocast on CUDA, loss, backward, gradient
clipping, fused AdamW. The model has a method's default generator size
(``tiger``: 4.7M parameters over 4 levels; ``resid``: 1.9M over 3 levels)
and random unique SIDs for Beauty's 12,101 items; the batch is 1,024 random
histories of 20 items. Each mode builds its model and optimizer from the
same seed. For ``compile`` and ``reduce-overhead`` the first steps include
compilation, and their time is reported separately.

    python reports/speed/generator_step.py --device cuda --out reports/speed/generator_step_h100.json
    python reports/speed/generator_step.py --device cpu --batch 64 --steps 3   # a quick smoke check
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.core import registry
from bench.sid.generator import GeneratorConfig, SIDGenerator

METHODS = {"tiger": [256, 256, 256, 8], "resid": [28, 28, 16]}  # codebook sizes (tiger: 3 levels + collision level)
N_ITEMS, HISTORY = 12101, 20


def unique_codes(sizes: list[int], n_items: int, rng: np.random.Generator) -> np.ndarray:
    space = int(np.prod(sizes, dtype=np.int64))
    flat = rng.choice(space, size=n_items, replace=False)
    return np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64)


def generator_config(method: str) -> GeneratorConfig:
    import methods  # noqa: F401  (registers the methods)

    cfg = registry.get("method", method).Config()
    return GeneratorConfig(**{f: getattr(cfg, f) for f in GeneratorConfig.__dataclass_fields__})


def time_mode(method: str, mode: str, device: torch.device, batch: int, steps: int, warmup: int) -> dict:
    rng = np.random.default_rng(0)
    sizes = METHODS[method]
    cfg = generator_config(method)
    torch.manual_seed(0)
    model = SIDGenerator(cfg, torch.from_numpy(unique_codes(sizes, N_ITEMS, rng)), sizes, HISTORY).to(device)
    model.train()
    histories = torch.from_numpy(rng.integers(0, N_ITEMS, size=(batch, HISTORY))).to(device)
    histories[: batch // 4, : HISTORY // 2] = N_ITEMS  # some left padding, as short histories have
    users = torch.arange(batch, device=device)
    targets = torch.from_numpy(rng.integers(0, N_ITEMS, size=batch)).to(device)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cuda)
    loss_fn = model.loss
    if mode == "compile":
        loss_fn = torch.compile(model.loss)
    elif mode == "reduce-overhead":
        loss_fn = torch.compile(model.loss, mode="reduce-overhead")

    def step() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(histories, users, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        return loss.detach()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    per_step = (time.perf_counter() - start) / steps
    return {"method": method, "mode": mode, "params": sum(p.numel() for p in model.parameters()),
            "batch": batch, "steps": steps, "ms_per_step": round(per_step * 1000, 2),
            "warmup_s": round(warm_s, 2), "last_loss": round(float(loss), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default="resid,tiger")
    parser.add_argument("--modes", default="eager,compile,reduce-overhead")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for method in args.methods.split(","):
        for mode in args.modes.split(","):
            try:
                rows.append(time_mode(method, mode, device, args.batch, args.steps, args.warmup))
            except Exception as exc:  # one failing mode must not hide the others' numbers
                rows.append({"method": method, "mode": mode, "error": f"{type(exc).__name__}: {exc}"[:500]})
            print(json.dumps(rows[-1]), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"\n{name}, torch {torch.__version__}\n")
    print("| method | mode | params | ms per step | warm-up s (incl. compile) | steps per Beauty epoch (129) s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['mode']} | | failed: {r['error'][:80]} | | |")
        else:
            print(f"| {r['method']} | {r['mode']} | {r['params']:,} | {r['ms_per_step']} | {r['warmup_s']} | "
                  f"{r['ms_per_step'] * 129 / 1000:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "argv": sys.argv[1:],
                                        "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
