"""Checkpoints of both training loops (midtraining and finetuning): one folder that a kill, a full disk
or a power cut leaves whole, holding any torch optimizer's state, read back without running code.

Why a module of its own: what a resume may trust is one set of rules (what an interrupted save leaves,
how damage is caught, what is never unpickled). Both loops keep their checkpoints here, so the rules are
written, tested and fixed once; the loops only say what to store and when to resume.

`ROOT/checkpoint/` holds
- `model.safetensors`: the model's trainable parameters by name (midtraining's GPT trains all of them,
  so its checkpoint is also the finished model),
- `optimizer.safetensors`: every tensor of `optimizer.state_dict()`, whatever the optimizer,
- `config.json`: the loop's own state (the step, the history, what a run must match to resume), the rest
  of the optimizer's state as JSON (its numbers, flags and param groups, each tensor named where it
  was) and the sha256 of every other file,
- what the loop adds (`extra`: midtraining's tokenizer).

A save builds the next folder as `.checkpoint.partial` beside it and puts it in place with
kit.paths.switch_folder (every file fsynced, then one atomic swap, or two renames that the next save
completes or undoes): a reader finds the previous checkpoint or the new one, never files of two steps.
A reader checks every file against its sha256 before it loads anything, so a damaged checkpoint is a
CheckpointError naming the file. safetensors and JSON only: loading never executes code.

The state must hold `step` (steps trained) and `history` (one object per step, each with its `step`),
and they must agree: a config.json edited by hand to say step 999 after 2 steps would otherwise resume
into a run that reports 999 steps done. A reader refuses a state that breaks this (CheckpointError).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import safetensors.torch
import torch

from kit.paths import old_path, recover_folder, staging_path, switch_folder, write_error
from kit.records import load_json

CHECKPOINT = "checkpoint"
MODEL_FILE, OPTIMIZER_FILE, CONFIG_FILE = "model.safetensors", "optimizer.safetensors", "config.json"
# the checkpoint and the two folders switch_folder keeps beside it while it swaps: all of them are ours
NAMES = (CHECKPOINT, staging_path(CHECKPOINT).name, old_path(Path(CHECKPOINT)).name)
_OURS = ("optimizer", "sha256")  # keys of config.json this module adds to the loop's state


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted (a file missing or damaged) or does not fit the model it is
    loaded into."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def trainable(model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(root: str | os.PathLike, model, optimizer, state: dict,
                    extra: Callable[[Path], object] | None = None) -> Path:
    """Replace ROOT/checkpoint/ whole with the trainable weights of `model`, the state of `optimizer`,
    `state` (JSON: the loop's step, history, identity) and what `extra(folder)` writes into the folder.
    A failed write (a full disk) leaves the previous checkpoint and raises an OSError naming the folder."""
    if clash := set(state) & set(_OURS):
        raise ValueError(f"checkpoint state keys {sorted(clash)} are the checkpoint's own")
    if problem := state_problem(state):
        raise ValueError(f"checkpoint state: {problem}")
    dest = Path(root) / CHECKPOINT
    staging = staging_path(dest)
    try:
        recover_folder(dest, complete=_is_whole)  # a swap a kill cut short: finished or undone first
        shutil.rmtree(staging, ignore_errors=True)  # a save a kill cut short
        staging.mkdir(parents=True)
        weights = {name: p.detach().cpu().contiguous() for name, p in trainable(model).items()}
        safetensors.torch.save_file(weights, staging / MODEL_FILE)
        tensors: dict[str, torch.Tensor] = {}
        tree = _split(optimizer.state_dict(), tensors)
        safetensors.torch.save_file(tensors, staging / OPTIMIZER_FILE)
        if extra is not None:
            extra(staging)
        digests = {f.relative_to(staging).as_posix(): sha256_file(f) for f in sorted(staging.rglob("*")) if f.is_file()}
        # written last: a folder with a config.json listing every file is a whole checkpoint
        with open(staging / CONFIG_FILE, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({**state, "optimizer": tree, "sha256": digests}, indent=1) + "\n")
        switch_folder(staging, dest)
    except (OSError, safetensors.SafetensorError) as exc:  # safetensors reports a full disk as its own error
        shutil.rmtree(staging, ignore_errors=True)
        raise write_error(exc, dest) from None
    return dest


def state_problem(state: dict) -> str | None:
    """Why a loop's state cannot be resumed from (see the module docstring), or None."""
    step, history = state.get("step"), state.get("history")
    if not _whole(step):
        return f"'step' is {json.dumps(step)[:40]}, not a number of steps"
    if not isinstance(history, list) or not all(isinstance(h, dict) and _whole(h.get("step")) for h in history):
        return "'history' is not a list of objects with a 'step' each"
    last = history[-1]["step"] if history else 0
    if last != step:
        return f"'step' is {step} but the history ends at step {last}"
    return None


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _split(value, tensors: dict[str, torch.Tensor]):
    """`value` (an optimizer state dict, or a part of it) as JSON: each tensor moves to `tensors` and is
    replaced by {"tensor": its name}; dicts become {"dict": [[key, value], ...]} (their keys are ints
    and strings), tuples {"tuple": [...]}, so `_join` gives back exactly what was saved."""
    if torch.is_tensor(value):
        name = str(len(tensors))
        tensors[name] = value.detach().cpu().contiguous()
        return {"tensor": name}
    if isinstance(value, dict):
        return {"dict": [[key, _split(v, tensors)] for key, v in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [_split(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_split(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"the optimizer's state holds a {type(value).__name__}, which a checkpoint cannot store")


def _join(value, tensors: dict[str, torch.Tensor]):
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    if isinstance(value, dict):
        if "tensor" in value:
            return tensors[value["tensor"]]
        if "tuple" in value:
            return tuple(_join(v, tensors) for v in value["tuple"])
        return {key: _join(v, tensors) for key, v in value["dict"]}
    return value


def checkpoint_folder(root: str | os.PathLike) -> Path | None:
    """The checkpoint to read in ROOT, found without changing anything (a writer may be at work):
    `checkpoint/`, else the previous one while a two-rename swap is halfway, else ROOT itself when it is
    a checkpoint folder; None when there is none."""
    root = Path(root)
    for folder in (root / CHECKPOINT, old_path(root / CHECKPOINT)):
        if (folder / CONFIG_FILE).is_file():
            return folder
    # ROOT itself only when it holds all three (a finetune's output folder has a config.json of its own)
    return root if all((root / name).is_file() for name in (CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE)) else None


@dataclass
class Checkpoint:
    folder: Path
    state: dict  # what the loop saved: step, history, what a run must match to resume
    sha256: dict[str, str]
    optimizer_tree: object

    def verify(self) -> None:
        for name, digest in self.sha256.items():
            path = self.folder / name
            if not path.is_file() or sha256_file(path) != digest:
                raise CheckpointError(f"checkpoint file {path} is missing or damaged (sha256 differs)")

    def restore(self, model, optimizer=None) -> None:
        """Every file checked, then the weights into `model`'s trainable parameters and the state into
        `optimizer`; a checkpoint that does not fit changes neither (CheckpointError)."""
        self.verify()
        weights = safetensors.torch.load_file(self.folder / MODEL_FILE)
        params = trainable(model)
        if set(weights) != set(params) or any(weights[n].shape != p.shape for n, p in params.items()):
            raise CheckpointError(f"{self.folder}: its weights do not match this model's trainable parameters")
        if optimizer is not None:
            try:
                optimizer.load_state_dict(_join(self.optimizer_tree,
                                                safetensors.torch.load_file(self.folder / OPTIMIZER_FILE)))
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{self.folder}: its optimizer state does not fit this optimizer ({exc})") from None
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name])


def _open(folder: Path) -> Checkpoint:
    path = folder / CONFIG_FILE
    try:
        config = load_json(path.read_text(encoding="utf-8"))
        sha256, tree = config.get("sha256"), config.get("optimizer")
        if not isinstance(sha256, dict) or not {MODEL_FILE, OPTIMIZER_FILE} <= set(sha256) or tree is None:
            raise ValueError(f"no sha256 of {MODEL_FILE} and {OPTIMIZER_FILE}, or no optimizer state: "
                             f"written by an older kit, or not a checkpoint")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    if problem := state_problem(config):
        raise CheckpointError(f"{path}: refused: {problem}")
    return Checkpoint(folder, {k: v for k, v in config.items() if k not in _OURS}, sha256, tree)


def read_checkpoint(root: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint in ROOT (see `checkpoint_folder`), its state read and its files not yet checked
    (`restore` checks them); None when there is none. An unreadable config.json is a CheckpointError."""
    folder = checkpoint_folder(root)
    return None if folder is None else _open(folder)


def _is_whole(folder: Path) -> bool:
    try:
        _open(folder).verify()
    except CheckpointError:
        return False
    return True


def remove_checkpoint(root: str | os.PathLike) -> None:
    """ROOT's checkpoint and the folders a save or a swap left beside it."""
    for name in NAMES:
        shutil.rmtree(Path(root) / name, ignore_errors=True)
