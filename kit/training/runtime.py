"""What a training run runs with on this machine, for midtraining and finetuning alike: the device,
torch's CPU threads, bf16 autocast, the learning-rate schedule, the achievable matmul speed (the
denominator of MFU), and the versions of the libraries it used (for the manifest).

Why a module of its own: these settings decide speed, numerics and reproducibility, not what is
learned; the two loops share one rule for each, read and tuned apart from the loops themselves.
"""

from __future__ import annotations

import re
import time
from contextlib import nullcontext

import torch

from kit.training.threads import Share


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: CUDA when torch sees a GPU, else Apple's MPS when torch has it, else the CPU. A device
    named (cpu, cuda, cuda:N, mps) is used only when torch can use it here; anything else is a
    ValueError saying what can be asked for. bf16 autocast is CUDA's only; MPS and CPU train in fp32."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} asked for, but torch sees no such CUDA GPU here")
    if device == "mps" and not mps:
        raise ValueError("device 'mps' asked for, but torch has no Apple MPS here")
    return torch.device(device)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked for; fp32 everywhere else (a new context per use)."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def lr_at(step: int, total: int, peak: float, *, warmup: float, decay: float, final: float) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total`: a linear warm-up over the first
    `warmup` share of the steps, the peak, then a linear decay over the last `decay` share (never into
    the warm-up) down to `final` x peak. Midtraining holds the peak for half the run; finetuning
    decays from the end of its warm-up (decay 1)."""
    n_warm = max(1, round(warmup * total))
    if step < n_warm:
        return peak * (step + 1) / n_warm
    decay_start = max(n_warm, total - round(decay * total))
    if step < decay_start:
        return peak
    progress = (step - decay_start) / max(1, total - decay_start)
    return peak * (1 - progress * (1 - final))


def measure_matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None,
                         seconds: float = 0.3) -> float:
    """Achievable matmul FLOP/s on this device: the denominator of MFU when no peak is given."""
    size = size or (4096 if device.type == "cuda" else 512)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm up kernels and caches
    sync(device)
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or runs < 3:
        a @ b
        runs += 1
        if runs % 4 == 0:
            sync(device)
    sync(device)
    elapsed = time.perf_counter() - start
    return 2 * size**3 * runs / elapsed


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a timing measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_threads(device: torch.device, n: int | None):
    """A context for a run on `device` that sets torch's CPU threads: `n` when set, else the cores free of
    other work, shared with the kit's other torch loops and re-checked during the run (kit.training.threads).
    On 2 idle cores a LoRA step took 1.7 s with 2 threads and 3.0 s with 1; two finetunes at once with every
    core each stall each other. A GPU run sets nothing and holds no slot, so CPU loops beside it keep their
    cores."""
    return Share(n) if device.type == "cpu" else nullcontext()


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
