"""Device, precision and seeding: where and how numerically a run computes."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from bench.core.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def current_precision(device: Any) -> str:
    """The float32 matmul precision in effect for work on ``device`` (stage caches record it)."""
    import torch

    return "tf32" if torch.device(device).type == "cuda" and torch.backends.cuda.matmul.allow_tf32 else "fp32"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, found {name!r}")
    return torch.device(name)


PRECISIONS = ("fp32", "tf32")


def apply_precision(precision: str, device: torch.device) -> None:
    """Set float32 matmul precision for this process: exact fp32, or TF32 tensor cores (CUDA only)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, found {precision!r}")
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError(f"--precision tf32 uses CUDA tensor cores, but the device is {device.type}; "
                          "drop --precision or run with --device cuda")
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {torch.get_num_threads()} threads"
