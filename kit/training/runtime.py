"""What a finetune runs with on this machine: torch's CPU threads, bf16 autocast on CUDA, the LR
schedule, and the versions of the libraries it used (for the manifest).

Why a module of its own: these settings decide speed, numerics and reproducibility, not what is
learned, and are read and tuned apart from the training loop in kit.training.finetune.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext

import torch


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up over `warmup` of the steps, then linear decay to a tenth of the peak."""
    n_warm = max(1, round(warmup * total))
    if step < n_warm:
        return peak * (step + 1) / n_warm
    progress = (step - n_warm) / max(1, total - n_warm)
    return peak * (1.0 - 0.9 * progress)


def _autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def _cpu_threads(n: int | None):
    """torch's CPU threads for the run: all cores unless set. On 2 idle cores a LoRA step took 1.7 s
    with 2 threads and 3.0 s with 1. Its threads wait for each other at every operation, though, so
    on a machine busy with other work one that loses its core stalls them all (on 2 busy cores a
    forward pass took 7.1 s with 2 threads and 1.0 s with 1): set cpu_threads there."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def package_versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of `packages` (None for one that is missing), recorded so a run can be repeated."""
    from importlib import metadata

    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
