"""Finetune's resumable checkpoints: a step folder (trainable weights, AdamW moments, state.json) and a
pointer file naming it with the sha256 of each file, so a resume takes only a whole, matching checkpoint.

Why a module of its own: saving, finding and loading a checkpoint is one concern with its own rules
(what a resume may trust, what an interrupted save leaves), read and changed apart from the training
loop in kit.training.finetune, which re-exports these names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from kit.paths import atomic_write

CHECKPOINTS = "checkpoints"
POINTER = "latest.json"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _trainable(model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(out_dir: Path, model, optimizer, state: dict) -> Path:
    """A new step folder (weights, AdamW state, state.json), then the pointer to it; older folders go."""
    from safetensors.torch import save_file

    root = out_dir / CHECKPOINTS
    folder = root / f"step-{state['step']:06d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    params = _trainable(model)
    weights = {name: p.detach().to("cpu").contiguous() for name, p in params.items()}
    moments = {}
    for name, p in params.items():
        s = optimizer.state.get(p)
        if s:
            moments[f"{name}::exp_avg"] = s["exp_avg"].to("cpu").contiguous()
            moments[f"{name}::exp_avg_sq"] = s["exp_avg_sq"].to("cpu").contiguous()
    files = {"weights.safetensors": weights, "optimizer.safetensors": moments}
    for name, tensors in files.items():
        with atomic_write(folder / name) as tmp:
            save_file(tensors, str(tmp))
    with atomic_write(folder / "state.json") as tmp:
        tmp.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    pointer = {"folder": folder.name, "step": state["step"], "fingerprint": state["fingerprint"],
               "sha256": {name: sha256_file(folder / name) for name in (*files, "state.json")}}
    with atomic_write(root / POINTER) as tmp:
        tmp.write_text(json.dumps(pointer, indent=1) + "\n", encoding="utf-8")
    for old in root.iterdir():
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def find_checkpoint(out_dir: Path, fingerprint: str) -> tuple[Path | None, str]:
    """(folder, why) of the checkpoint to resume from; folder None with the reason to start clean."""
    pointer_path = out_dir / CHECKPOINTS / POINTER
    if not pointer_path.is_file():
        return None, "no checkpoint"
    try:
        pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        folder = out_dir / CHECKPOINTS / pointer["folder"]
        if pointer["fingerprint"] != fingerprint:
            return None, f"the checkpoint at step {pointer['step']} was made with other parameters or data"
        for name, digest in pointer["sha256"].items():
            if not (folder / name).is_file() or sha256_file(folder / name) != digest:
                return None, f"checkpoint file {folder / name} is missing or damaged (sha256 differs)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{pointer_path} is unreadable ({exc})"
    return folder, f"resuming from step {pointer['step']} ({folder})"


def load_checkpoint(folder: Path, model, optimizer) -> dict:
    from safetensors.torch import load_file

    params = _trainable(model)
    weights = load_file(str(folder / "weights.safetensors"))
    moments = load_file(str(folder / "optimizer.safetensors"))
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    if set(weights) != set(params):
        raise CheckpointError(f"{folder}: its weights do not match this model's trainable parameters")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device, p.dtype))
            if f"{name}::exp_avg" in moments:
                optimizer.state[p] = {"step": torch.tensor(float(state["step"]), device=p.device),
                                      "exp_avg": moments[f"{name}::exp_avg"].to(p.device),
                                      "exp_avg_sq": moments[f"{name}::exp_avg_sq"].to(p.device)}
    return state
