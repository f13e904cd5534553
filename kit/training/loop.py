"""The training-run loop that midtraining and finetuning share: what a run holds while it trains (its
folder's lock, its share of the CPU), the resume from a matching checkpoint, a checkpoint every N steps
and on Ctrl-C, the stop on a loss that is not finite, and the history file.

Why a module of its own: the two stages say what one optimizer step computes; how a run of steps goes,
and what a kill or a Ctrl-C leaves to resume from, is one set of rules, written and tested once.

A stage's loop reads, top to bottom:

    with hold(out_dir, device, threads):
        run = TrainingRun(out_dir, model, optimizer, key=..., total=steps, checkpoint_every=...)
        run.resume()                          # the checkpoint's weights, optimizer state, step, history
        with run.interruptible():             # Ctrl-C: the last finished step saved, then Interrupted
            for step in range(run.start, run.total):
                ...                           # forward, backward
                check_finite(loss, step, run.total, lr)   # Diverged
                ...                           # optimizer step
                run.step_done({"step": step + 1, ...})    # history; a checkpoint every N steps
        write_history(out_dir, run.history)

A run's `key` is the entries of a checkpoint's state that must be equal for the run to resume from it
(midtraining: the parameters that change what is computed, the model's shape, a digest of the rows and
the number of ranks, as `train`, `model`, `rows`, `ranks`; finetuning: one hash of its parameters and
files, as `fingerprint`). They are stored as they are, so a checkpoint resumes across kit versions as
long as the values are computed the same way.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from kit.locking import exclusive
from kit.paths import atomic_write, display_path
from kit.training.checkpoints import CHECKPOINT, Checkpoint, read_checkpoint, save_checkpoint
from kit.training.runtime import cpu_threads

HISTORY_FILE = "history.json"


class Diverged(ValueError):
    """The loss stopped being a finite number: the run stops and saves no model."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint of the last finished step was saved (when the run
    writes checkpoints): `step` of `total` steps is done, `checkpoint` is the folder holding it (None:
    nothing saved)."""

    def __init__(self, step: int, total: int, checkpoint: Path | None):
        super().__init__(step, total, checkpoint)
        self.step, self.total, self.checkpoint = step, total, checkpoint

    def __str__(self) -> str:
        if self.checkpoint is None:
            return f"interrupted at step {self.step} of {self.total}; nothing saved"
        return (f"interrupted at step {self.step} of {self.total}; checkpoint saved in "
                f"{display_path(self.checkpoint)}; run the same command again to resume")


@contextmanager
def hold(folder: str | os.PathLike | None, device: torch.device, threads: int | None) -> Iterator[None]:
    """What a run holds while it trains: `folder`'s lock (one writer per output folder, kit.locking; none
    when `folder` is None) and torch's CPU threads for a run on `device` (kit.training.runtime)."""
    with (exclusive(folder) if folder is not None else nullcontext()), cpu_threads(device, threads):
        yield


def check_finite(loss: float, step: int, total: int, lr: float) -> None:
    """Diverged when the loss of step `step` (0-based) is not a finite number."""
    if not math.isfinite(loss):
        raise Diverged(f"the loss is {loss} at step {step + 1} of {total}: training diverged "
                       f"(lr {lr:g} is likely too high); nothing was saved as a model")


def write_history(folder: str | os.PathLike, history: list[dict]) -> Path:
    """history.json in `folder`: one object per step, written atomically."""
    path = Path(folder) / HISTORY_FILE
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    return path


@dataclass
class TrainingRun:
    """One run of `total` optimizer steps of `model` with `optimizer`, checkpointed in `folder`
    (kit.training.checkpoints; None: no checkpoints). `key` is what a checkpoint must match to be resumed
    (see the module docstring); `state` holds more entries each checkpoint stores and a resume restores
    (finetuning's `train_seconds`); `extra(folder)` writes more files into each checkpoint (midtraining's
    tokenizer). `writes` False: resume, but write nothing (torchrun's ranks other than 0)."""

    folder: Path | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    key: dict
    total: int
    checkpoint_every: int = 0  # steps between checkpoints (0: only on Ctrl-C)
    writes: bool = True
    extra: Callable[[Path], object] | None = None
    state: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    start: int = 0  # the step this run resumed from
    resumed: bool = False  # whether it resumed from a checkpoint (perhaps one of step 0)

    def resume(self, check: Callable[[Checkpoint], None] | None = None) -> tuple[Checkpoint | None, list[str]]:
        """Load the checkpoint in `folder` into the model and the optimizer when its key is this run's
        and `check(checkpoint)` (which may raise CheckpointError) accepts it; `start`, `history` and `state`
        then continue from it. Returns (the checkpoint, or None when there is none; the key entries it
        differs in, empty when resumed). A damaged checkpoint is a CheckpointError."""
        saved = read_checkpoint(self.folder)
        if saved is None:
            return None, []
        differs = [k for k in self.key if saved.state.get(k) != self.key[k]]
        if not differs:
            if check is not None:
                check(saved)
            saved.restore(self.model, self.optimizer)
            self.start, self.history, self.resumed = saved.state["step"], saved.state["history"], True
            self.state.update((k, saved.state[k]) for k in self.state if k in saved.state)
        return saved, differs

    def step_done(self, entry: dict) -> None:
        """A finished step's history entry (its `step` counted from 1); a checkpoint every
        `checkpoint_every` steps, except after the last (the stage saves its result then)."""
        self.history.append(entry)
        step = entry["step"]
        if self.checkpoint_every and step % self.checkpoint_every == 0 and step < self.total:
            self.save(step)

    def save(self, step: int) -> Path | None:
        """The checkpoint of `step` (the history must end there); None when this run writes none."""
        if self.folder is None or not self.writes:
            return None
        return save_checkpoint(self.folder, self.model, self.optimizer,
                               {**self.key, "step": step, "history": self.history, **self.state}, extra=self.extra)

    @contextmanager
    def interruptible(self, *, always_save: bool = False) -> Iterator[None]:
        """Ctrl-C inside: the checkpoint of the last finished step is saved when the run got further than
        it started, or with `always_save` when it did not resume (a fresh run's folder then holds a
        checkpoint, of step 0 if need be), and Interrupted is raised."""
        try:
            yield
        except KeyboardInterrupt:
            done = self.history[-1]["step"] if self.history else self.start
            saved = self.save(done) if done > self.start or (always_save and not self.resumed) else None
            if saved is None and self.resumed and self.writes:
                saved = self.folder / CHECKPOINT  # the one this run resumed from holds the step
            raise Interrupted(done, self.total, saved) from None
