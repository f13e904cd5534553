"""The midtraining smoke run: task mixture -> rendered tokens -> packed rows -> a small GPT that learns.

`midtrain(records, tokenizer, preset=..., **overrides)` does it all and returns a `MidtrainResult`;
`python -m kit midtrain ...` is the same from the shell. Along the way it reports what a researcher
wants to see: how many tokens each loss mode trains on, tokens/s and MFU, validation loss and bits per
byte, samples before and after training, and it writes a checkpoint that loads back safely.

Loss modes (seed 003):
- `mid`: every real token is a target, user turns and tool outputs included, as nanochat's
  midtraining does: it is continued pretraining on chat-formatted text, teaching the format itself.
- `sft`: only targets whose mask is 1 (the assistant's own tokens), as in supervised fine-tuning.

The validation set is split off by conversation (all copies of a repeated identity conversation land
on the same side), so the validation loss measures conversations the model has not seen.

Several GPUs: `torchrun --nproc_per_node N -m kit midtrain ...` runs PyTorch DDP (each rank trains on
its own share of the rows, NCCL on GPUs; CPU processes use gloo, which is how the test suite runs it);
rank 0 evaluates, samples and writes. The single-process path is the plain loop below.

Checkpoints and resume. With `out_dir`, the run holds the folder's lock (kit.locking) and writes
`out_dir/checkpoint/` every `checkpoint_every` steps, on Ctrl-C and at the end (kit.training.checkpoints:
the scheme finetuning uses too, swapped in whole, every file fsynced and checked by sha256, nothing
pickled): weights, optimizer state, the model and training parameters, the step, the history, a digest
of the training rows, and the tokenizer. A run whose parameters and rows match the checkpoint's resumes
from its step (`resume=False`, `--no-resume`, starts over); one with other parameters says so and starts
over; a damaged one stops the run with a message naming the file.

Sampling with the calculator tool is kit.training.engine; device, threads, autocast and the LR schedule
are kit.training.runtime; the loss plot is kit.training.curves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from kit.arguments import finite_float
from kit.paths import argument, atomic_write, check_output, clashing_input, folder_problem
from kit.tokens.packing import IGNORE_INDEX, LOSS_MODES, Packed, batches, pack_rows, trained_tokens
from kit.training.checkpoints import (CHECKPOINT, NAMES, CheckpointError, checkpoint_folder, read_checkpoint,
                                      save_checkpoint)
from kit.training.curves import save_loss_plot
from kit.training.engine import samples
from kit.training.model import GPT, GPTConfig
from kit.training.runtime import autocast, cpu_threads, lr_at, measure_matmul_flops, pick_device, sync


@dataclass
class TrainConfig:
    vocab_size: int = 4096  # for a tokenizer trained here; a given tokenizer's own size wins
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    sequence_len: int = 256  # T: a packed row holds T + 1 tokens
    batch_size: int = 8  # rows per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    steps: int = 100
    lr: float = 6e-3
    warmup_frac: float = 0.05
    decay_frac: float = 0.5  # the last half of the run decays linearly ...
    final_lr_frac: float = 0.05  # ... to this fraction of lr
    weight_decay: float = 0.0
    loss_mode: str = "mid"
    val_fraction: float = 0.05
    eval_every: int = 25
    seed: int = 0
    dtype: str = "float32"  # "bfloat16": autocast on CUDA
    compile: bool = False
    packing: str = "best_fit_pad"
    cpu_threads: int | None = None  # torch intra-op threads on CPU (None: chosen by kit.training.runtime)
    checkpoint_every: int = 50  # steps between checkpoints when an out_dir is given (0: only at the end)


# Fields that change how a run goes, not what it computes: a checkpoint written under other values resumes.
OPERATIONAL_FIELDS = ("eval_every", "compile", "cpu_threads", "checkpoint_every")


PRESETS = {
    # about 1.9M parameters; sized for a 2-core CPU
    "cpu-smoke": TrainConfig(),
    # about 85M parameters (GPT-2 small's width and depth), bf16 autocast and torch.compile on CUDA
    "gpu": TrainConfig(vocab_size=8192, n_layer=12, n_head=6, n_embd=768, sequence_len=1024, batch_size=32,
                       steps=500, lr=1e-3, eval_every=100, dtype="bfloat16", compile=True, checkpoint_every=100),
}

DEFAULT_PROMPTS = (
    "Spell the word: garden",
    "How many r are in the word strawberry?",
    "A book has 120 pages. Ava reads 10 pages a day. How many days does the book take?",
)


@dataclass
class MidtrainResult:
    config: TrainConfig
    model_config: GPTConfig
    device: str
    num_params: int
    conversations: dict  # {"train": n, "val": n}
    tasks: dict  # conversations per task (meta["task"])
    packing: dict  # PackStats.as_dict() of the training rows
    trained_tokens: dict  # {"mid": n, "sft": n}: targets each loss mode trains on
    history: list[dict]
    final_train_loss: float
    val_loss: float | None
    val_bpb: float | None
    tokens_per_s: float
    mfu: float | None
    peak_flops: float | None
    flops_per_token: float
    samples_before: list[dict]
    samples_after: list[dict]
    out_dir: str | None
    ranks: int = 1  # processes that trained together (torchrun); tokens_per_s counts all of them
    resumed_from: int = 0  # the checkpoint step this run started from (0: a fresh start)
    model: GPT | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("model", "history")}


# ---------------------------------------------------------------------------------------------------
# Data

def split_validation(records: Sequence[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, val) by a stable hash of each conversation's source, so repeats stay on one side."""
    if fraction <= 0:
        return list(records), []
    train, val = [], []
    for rec in records:
        key = rec.get("meta", {}).get("source_id") or rec["id"]
        h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
        (val if h < fraction else train).append(rec)
    if not val and len(train) > 1:  # tiny sets: still validate on something
        val.append(train.pop())
    return train, val


def render_all(tokenizer, records: Iterable[dict]) -> list[tuple[list[int], list[int]]]:
    from kit.tokens.render import RenderError

    rendered = []
    for rec in records:
        try:
            r = tokenizer.render_conversation(rec)
        except RenderError as exc:
            meta = rec.get("meta", {})
            source = f"{meta['source_id']!r} of task {meta.get('task')}" if "source_id" in meta else f"of task {meta.get('task')}"
            raise ValueError(f"conversation {rec.get('id')!r} ({source}): {exc}") from None
        rendered.append((r.ids, r.mask))
    return rendered


def token_byte_lengths(tokenizer) -> torch.Tensor:
    """UTF-8 bytes per token id; special tokens count 0 so they are left out of bits per byte."""
    return torch.tensor([0 if tokenizer.is_special(i) else len(tokenizer.token_bytes(i))
                         for i in range(tokenizer.vocab_size)], dtype=torch.float64)


def _endless_batches(packed: Packed, batch_size: int, loss_mode: str, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Epoch after epoch, reshuffled; full batches only (fixed shapes: no recompiles), unless there are
    fewer rows than one batch."""
    drop_last = len(packed) >= batch_size
    epoch = 0
    while True:
        yield from batches(packed, batch_size, loss_mode=loss_mode, seed=seed + epoch, drop_last=drop_last)
        epoch += 1


# ---------------------------------------------------------------------------------------------------
# Evaluation

@torch.no_grad()
def evaluate_loss(model: GPT, packed: Packed, loss_mode: str, device: torch.device, batch_size: int,
                  token_bytes: torch.Tensor | None = None, bf16: bool = False) -> tuple[float, float | None]:
    """(mean loss per target, bits per byte) over all rows; bpb counts only non-special targets."""
    model.eval()
    total_loss, total_targets, total_nats, total_bytes = 0.0, 0, 0.0, 0.0
    for inputs, targets in batches(packed, batch_size, loss_mode=loss_mode):
        x, y = torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
        with autocast(device, bf16):
            logits = model(x)
        losses = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1),
                                                   ignore_index=IGNORE_INDEX, reduction="none").double().cpu()
        flat = y.view(-1).cpu()
        valid = flat != IGNORE_INDEX
        total_loss += float(losses[valid].sum())
        total_targets += int(valid.sum())
        if token_bytes is not None:
            nbytes = torch.where(valid, token_bytes[flat.clamp(min=0)], torch.zeros((), dtype=torch.float64))
            total_nats += float((losses * (nbytes > 0)).sum())
            total_bytes += float(nbytes.sum())
    model.train()
    loss = total_loss / total_targets if total_targets else float("nan")
    bpb = total_nats / (math.log(2) * total_bytes) if total_bytes else None
    return loss, bpb


# ---------------------------------------------------------------------------------------------------
# Training

def midtrain(records: Sequence[dict], tokenizer, *, preset: str = "cpu-smoke", out_dir: str | os.PathLike | None = None,
             device: str = "auto", peak_flops: float | None = None, prompts: Sequence[str] | None = None,
             sample_tokens: int = 64, progress: bool = True, manifest_extra: dict | None = None,
             resume: bool = True, force: bool = False, **overrides) -> MidtrainResult:
    """Train a fresh GPT on `records` (conversation records, e.g. a kit.training.tasks.Mixture).

    `overrides` set TrainConfig fields (steps=..., loss_mode=..., lr=...). `peak_flops` is the device's
    peak for MFU; by default a matmul is timed here. `prompts` are sampled greedily before and after
    training (default: one per built-in task, plus the first identity conversation's question if any),
    up to `sample_tokens` tokens after and a third of that before (an untrained model only babbles).
    With `out_dir`, the run is saved there (see `save_run`; its lock is held meanwhile) and checkpointed
    as it goes, and `resume` picks up a matching checkpoint there (see the module docstring); Ctrl-C
    saves a checkpoint and raises `Interrupted`. `manifest_extra` joins the manifest. An `out_dir` whose
    checkpoint/, history.json, manifest.json or loss.png another program made is written only with
    `force`; a run that fails before its first checkpoint removes the folder if it made it. A loss
    that is not finite stops the run (`Diverged`) and saves nothing.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = replace(PRESETS[preset], **overrides)
    if config.loss_mode not in LOSS_MODES:
        raise ValueError(f"unknown loss mode {config.loss_mode!r}; choose 'mid' or 'sft'")
    if config.steps < 1:
        raise ValueError(f"steps must be >= 1, got {config.steps}")
    for name in ("lr", "weight_decay"):
        if not math.isfinite(getattr(config, name)):
            raise ValueError(f"{name} must be a finite number, got {getattr(config, name)}")
    if config.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {config.dtype!r}")
    if out_dir is not None and (problem := folder_problem(out_dir)):
        raise ValueError(problem)
    created = out_dir is not None and not Path(out_dir).exists()
    with cpu_threads(pick_device(device), config.cpu_threads), _lock(out_dir):
        if out_dir is not None:
            check_output(out_dir, force=force, ours=_is_midtrain_folder)
        try:
            return _train(records, tokenizer, config, out_dir=out_dir, device=device, peak_flops=peak_flops,
                          prompts=prompts, sample_tokens=sample_tokens, progress=progress,
                          manifest_extra=manifest_extra or {}, resume=resume)
        except BaseException:
            if created and is_main_process() and checkpoint_folder(out_dir) is None:
                shutil.rmtree(out_dir, ignore_errors=True)  # nothing to resume from: leave no empty folder
            raise


OUTPUT_NAMES = (*NAMES, "history.json", "manifest.json", "loss.png")


def _is_midtrain_folder(out: Path) -> bool:
    """Whether midtrain may write into `out`: none of the names it writes is taken, or they are a
    midtrain's (its manifest or its checkpoint). Other files in the folder are left alone either way."""
    if not any((out / name).exists() for name in OUTPUT_NAMES):
        return True
    try:
        if json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("command") == "midtrain":
            return True
    except (OSError, ValueError, AttributeError):
        pass
    return checkpoint_folder(out) not in (None, out)


class Diverged(ValueError):
    """The loss stopped being a finite number: the run stops and saves no model."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint of the last finished step was saved (when there is
    an out_dir): `step` is that step, `out_dir` where it is."""

    def __init__(self, step: int, out_dir: str | os.PathLike | None):
        super().__init__(step, out_dir)
        self.step, self.out_dir = step, out_dir


@contextmanager
def _lock(out_dir):
    """One writer per output folder; only rank 0 writes, so only rank 0 locks (the others would find
    rank 0's lock)."""
    if out_dir is None or not is_main_process():
        yield
        return
    from kit.locking import exclusive

    with exclusive(out_dir):
        yield


def _train(records, tokenizer, config: TrainConfig, *, out_dir, device, peak_flops, prompts, sample_tokens,
           progress, manifest_extra, resume) -> MidtrainResult:
    ddp = _ddp_setup()
    rank, world = (ddp["rank"], ddp["world"]) if ddp else (0, 1)
    dev = ddp["device"] if ddp else pick_device(device)
    is_main = rank == 0
    log = (lambda *a: print(*a, flush=True)) if progress and is_main else (lambda *a: None)
    torch.manual_seed(config.seed)

    records = list(records)
    train_records, val_records = split_validation(records, config.val_fraction, config.seed)
    row_len = config.sequence_len + 1
    train_packed = pack_rows(render_all(tokenizer, train_records), row_len, strategy=config.packing,
                             pad_id=tokenizer.bos_id, bos_id=tokenizer.bos_id)
    val_packed = (pack_rows(render_all(tokenizer, val_records), row_len, strategy=config.packing,
                            pad_id=tokenizer.bos_id, bos_id=tokenizer.bos_id) if val_records else None)
    counts = {mode: trained_tokens(train_packed, mode) for mode in LOSS_MODES}
    log(f"{len(train_records)} train / {len(val_records)} val conversations -> {len(train_packed)} rows of "
        f"{row_len}; targets: mid {counts['mid']:,}, sft {counts['sft']:,} (training on {config.loss_mode})")
    if counts[config.loss_mode] == 0:
        raise ValueError(f"no targets to train on in loss mode {config.loss_mode!r}")
    if ddp:
        _check_same_rows(train_packed, dev)
    shard = train_packed if world == 1 else _shard(train_packed, rank, world)

    model_config = GPTConfig(vocab_size=tokenizer.vocab_size, sequence_len=config.sequence_len,
                             n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd)
    model = GPT(model_config).to(dev)
    raw_model = model
    bf16 = config.dtype == "bfloat16"
    prompts = list(prompts) if prompts is not None else _default_prompts(records)
    samples_before = samples(raw_model, tokenizer, prompts, sample_tokens // 3) if is_main else []
    if config.compile and dev.type == "cuda":
        model = torch.compile(model)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.AdamW(raw_model.parameters(), lr=config.lr, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=config.weight_decay)
    token_bytes = token_byte_lengths(tokenizer)
    flops_per_token = raw_model.estimate_flops_per_token()
    if peak_flops is None:
        peak_flops = measure_matmul_flops(dev, torch.bfloat16 if bf16 and dev.type == "cuda" else torch.float32)

    stream = _endless_batches(shard, config.batch_size, config.loss_mode, config.seed)
    history: list[dict] = []
    identity = run_identity(config, model_config, train_packed, world)
    start_step = 0
    if out_dir is not None and resume:
        start_step, history = _resume(out_dir, identity, raw_model, optimizer, log)
    if start_step:
        for _ in range(start_step * config.grad_accum):  # the data stream continues where it stopped
            next(stream)
        log(f"resuming from the checkpoint of step {start_step}/{config.steps} in {out_dir}")

    def checkpoint(step: int) -> None:
        if out_dir is not None and is_main:
            _save(out_dir, raw_model, optimizer, tokenizer, identity, step, history)

    tallies: dict = {}
    try:
        _train_steps(config, model, raw_model, optimizer, stream, dev, world, bf16, val_packed, token_bytes,
                     is_main, log, history, start_step, checkpoint, tallies)
    except KeyboardInterrupt:
        done = history[-1]["step"] if history else start_step
        if done > start_step:
            checkpoint(done)
        raise Interrupted(done, out_dir) from None
    timed_tokens, timed_seconds = tallies.get("tokens", 0), tallies.get("seconds", 0.0)
    train_loss = history[-1]["train_loss"] if history else float("nan")

    tokens_per_s = timed_tokens / timed_seconds if timed_seconds else 0.0
    mfu = flops_per_token * tokens_per_s / peak_flops if peak_flops else None
    final_val = next((h for h in reversed(history) if "val_loss" in h), {})
    samples_after = samples(raw_model, tokenizer, prompts, sample_tokens) if is_main else []
    result = MidtrainResult(
        config=config, model_config=model_config, device=str(dev), num_params=raw_model.num_params(),
        conversations={"train": len(train_records), "val": len(val_records)},
        tasks=dict(Counter(r.get("meta", {}).get("task", "unknown") for r in records)),
        packing=train_packed.stats.as_dict(), trained_tokens=counts, history=history,
        final_train_loss=train_loss, val_loss=final_val.get("val_loss"), val_bpb=final_val.get("val_bpb"),
        tokens_per_s=tokens_per_s, mfu=mfu, peak_flops=peak_flops, flops_per_token=flops_per_token,
        samples_before=samples_before, samples_after=samples_after,
        out_dir=str(out_dir) if out_dir else None, ranks=world, resumed_from=start_step, model=raw_model,
    )
    if start_step >= config.steps:
        log(f"nothing left to train: the checkpoint is at step {start_step}/{config.steps}")
    else:
        log(f"done: {tokens_per_s:,.0f} tokens/s, MFU {100 * (mfu or 0):.2f}% of {peak_flops / 1e9:,.1f} GFLOP/s")
    if out_dir and is_main:
        save_run(result, tokenizer, out_dir, manifest_extra, optimizer=optimizer, identity=identity)
    if ddp:
        torch.distributed.destroy_process_group()
    return result


def _train_steps(config, model, raw_model, optimizer, stream, dev, world, bf16, val_packed, token_bytes,
                 is_main, log, history, start_step, checkpoint, tallies) -> None:
    """Optimizer steps start_step..config.steps-1, appending to `history`; checkpoints every
    config.checkpoint_every steps. `tallies` gets the timed tokens and seconds (for tokens/s)."""
    timed_tokens, timed_seconds = 0, 0.0
    tokens_seen = history[-1]["tokens"] if history else 0
    for step in range(start_step, config.steps):
        lr = lr_at(step, config.steps, config.lr, warmup=config.warmup_frac, decay=config.decay_frac,
                   final=config.final_lr_frac)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [next(stream) for _ in range(config.grad_accum)]
        step_tokens = sum(x.size for x, _ in micro) * world  # positions processed, padding included
        n_targets = max(1, sum(int((y != IGNORE_INDEX).sum()) for _, y in micro))
        sync(dev)
        t0 = time.perf_counter()
        step_loss = 0.0
        for inputs, targets in micro:
            x, y = torch.from_numpy(inputs).to(dev), torch.from_numpy(targets).to(dev)
            with autocast(dev, bf16):
                loss = model(x, y, reduction="sum") / n_targets
            loss.backward()
            step_loss += float(loss.detach())
        if not math.isfinite(step_loss):  # before the step: the weights stay those of the last good one
            raise Diverged(f"the loss is {step_loss} at step {step + 1} of {config.steps}: training diverged "
                           f"(lr {config.lr:g} is likely too high); nothing was saved as a model")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(dev)
        dt = time.perf_counter() - t0
        if step > start_step or config.steps - start_step == 1:  # the first step pays for warm-up and compilation
            timed_tokens += step_tokens
            timed_seconds += dt
            tallies.update(tokens=timed_tokens, seconds=timed_seconds)
        tokens_seen += step_tokens
        entry = {"step": step + 1, "lr": lr, "train_loss": step_loss, "tokens": tokens_seen, "step_s": dt}
        last = step + 1 == config.steps
        if val_packed is not None and is_main and ((step + 1) % config.eval_every == 0 or last):
            entry["val_loss"], entry["val_bpb"] = evaluate_loss(raw_model, val_packed, config.loss_mode, dev,
                                                                config.batch_size, token_bytes, bf16)
        history.append(entry)
        if "val_loss" in entry or step == start_step:
            extra = f" val {entry['val_loss']:.3f} bpb {entry['val_bpb'] or float('nan'):.3f}" if "val_loss" in entry else ""
            log(f"step {step + 1}/{config.steps} loss {step_loss:.3f} lr {lr:.2e}{extra}")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and not last:
            checkpoint(step + 1)


def _default_prompts(records: Sequence[dict]) -> list[str]:
    identity = next((r for r in records if r.get("meta", {}).get("task") == "identity"), None)
    first_user = next((m["content"] for m in identity["messages"] if m["role"] == "user"), None) if identity else None
    return ([first_user] if isinstance(first_user, str) else []) + list(DEFAULT_PROMPTS)


def is_main_process() -> bool:
    """False on torchrun's ranks other than 0: they train but write nothing."""
    return int(os.environ.get("RANK", "0")) == 0


def _ddp_setup() -> dict | None:
    """Under torchrun (WORLD_SIZE > 1): one GPU per rank with NCCL, or CPU processes with gloo (how the
    multi-process path is tested on a machine without GPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device(f"cuda:{local_rank}"), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend)
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "device": device}


def _check_same_rows(packed: Packed, device: torch.device) -> None:
    """Every rank builds the mixture, the tokenizer and the rows itself (deterministic by seed); if
    they differ anyway, ranks would train on each other's rows under different token ids, silently."""
    import torch.distributed as dist

    digest = int.from_bytes(hashlib.sha256(packed.ids.tobytes()).digest()[:7], "big")
    low, high = (torch.tensor([digest], dtype=torch.int64, device=device) for _ in range(2))
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if low.item() != high.item():
        raise ValueError("the ranks packed different rows (a different tokenizer or data on some rank?): "
                         "give every rank the same files and --tokenizer DIR")


def _shard(packed: Packed, rank: int, world: int) -> Packed:
    if len(packed) < world:
        raise ValueError(f"{len(packed)} rows cannot be shared by {world} ranks")
    return Packed(packed.ids[rank::world], packed.mask[rank::world], packed.pad[rank::world], packed.stats)


# ---------------------------------------------------------------------------------------------------
# Checkpoints

HISTORY_FILE = "history.json"


def run_identity(config: TrainConfig, model_config: GPTConfig, packed: Packed, world: int) -> dict:
    """What a checkpoint must share with a run to be resumed by it: the parameters that change what is
    computed, the model's shape, the training rows (a digest) and the number of ranks."""
    train = {k: v for k, v in asdict(config).items() if k not in OPERATIONAL_FIELDS}
    rows = hashlib.sha256(packed.ids.tobytes() + packed.mask.tobytes()).hexdigest()[:16]
    return {"train": train, "model": model_config.to_dict(), "rows": rows, "ranks": world}


def _save(out_dir, model: GPT, optimizer, tokenizer, identity: dict, step: int, history: list[dict]) -> Path:
    return save_checkpoint(out_dir, model, optimizer, {**identity, "step": step, "history": history},
                           extra=lambda folder: tokenizer.save(folder / "tokenizer"))


def _resume(out_dir, identity: dict, model: GPT, optimizer, log) -> tuple[int, list[dict]]:
    """Load the checkpoint in out_dir into `model` and `optimizer` when this run may resume from it and
    return its (step, history); (0, []) when there is none or it was made with other parameters (then
    says what differs). A damaged one is a CheckpointError that says how to go on."""
    try:
        saved = read_checkpoint(out_dir)
        if saved is None:
            return 0, []
        state = saved.state
        differs = [k for k in identity if state.get(k) != identity[k]]
        if "train" in differs and isinstance(state.get("train"), dict):
            differs = [f"{k} {state['train'].get(k)!r} -> {v!r}" for k, v in identity["train"].items()
                       if state["train"].get(k) != v] + [d for d in differs if d != "train"]
        if differs:
            log(f"the checkpoint in {out_dir} was made with other settings ({', '.join(differs)}); training from step 0")
            return 0, []
        saved.restore(model, optimizer)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; delete {Path(out_dir) / CHECKPOINT} or pass --no-resume") from None
    return state["step"], state["history"]


def save_run(result: MidtrainResult, tokenizer, out_dir: str | os.PathLike, manifest_extra: dict | None = None,
             *, optimizer=None, identity: dict | None = None) -> Path:
    """checkpoint/ (weights, optimizer state when given, the tokenizer), history.json, manifest.json and
    loss.png into out_dir; every file atomically. A plot that fails is reported on stderr and leaves the
    rest saved."""
    from kit.manifest import write_manifest

    out = Path(out_dir)
    identity = identity or {"train": asdict(result.config), "model": result.model_config.to_dict()}
    optimizer = optimizer or torch.optim.AdamW(result.model.parameters())
    _save(out, result.model, optimizer, tokenizer, identity, result.config.steps, result.history)
    with atomic_write(out / HISTORY_FILE) as tmp:
        tmp.write_text(json.dumps(result.history, indent=1) + "\n", encoding="utf-8")
    write_manifest(out / "manifest.json", {"command": "midtrain", **(manifest_extra or {}), **result.summary()})
    try:
        save_loss_plot(result.history, out / "loss.png", title="midtraining loss",
                       vocab_size=result.model_config.vocab_size)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"kit midtrain: loss plot not written: {exc}", file=sys.stderr)
    return out


def load_checkpoint(out_dir: str | os.PathLike, device: str = "cpu") -> tuple[GPT, "object"]:
    """(model, tokenizer) from a run folder written by midtrain/save_run (or its checkpoint folder),
    every file checked against its sha256 first; safetensors and JSON only, nothing is unpickled."""
    from kit.tokens.tokenizer import Tokenizer

    saved = read_checkpoint(out_dir)
    if saved is None:
        raise FileNotFoundError(f"{out_dir}: no checkpoint (a checkpoint/ folder written by midtrain)")
    model = GPT(GPTConfig(**saved.state["model"]))
    saved.restore(model)
    return model.to(device).eval(), Tokenizer.load(saved.folder / "tokenizer")


# ---------------------------------------------------------------------------------------------------
# CLI

def train_tokenizer_on(records: Iterable[dict], vocab_size: int):
    """A tokenizer trained on the knowledge folder and the mixture's text (when none is given)."""
    from kit.training.tasks import conversation_texts
    from kit.tokens.tokenizer import Tokenizer, texts_from_paths
    from kit.paths import knowledge_dir

    texts = list(conversation_texts(records))
    if knowledge_dir().is_dir():
        texts += list(texts_from_paths([knowledge_dir()]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small corpus gives a smaller vocabulary; tok.vocab_size says so
        return Tokenizer.train(texts, vocab_size, progress=False)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit midtrain",
                                     description="Pack a task mixture and train a small GPT on it (CPU or GPU).")
    parser.add_argument("--data", nargs="*", default=[], type=argument, metavar="PATH",
                        help="identity conversation files (.jsonl, kit or CustomJSON lines)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-smoke")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    parser.add_argument("--loss-mode", choices=LOSS_MODES, default="mid")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--out", required=True, type=argument, help="folder for the checkpoint, history, tokenizer, manifest")
    parser.add_argument("--tokenizer", type=argument, help="a tokenizer folder (default: train one on the mixture)")
    parser.add_argument("--vocab-size", type=int, help="vocabulary of a tokenizer trained here (default: the preset's)")
    parser.add_argument("--size", type=int, default=1000, help="built-in task conversations (default 1000)")
    parser.add_argument("--identity-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-flops", type=finite_float, help="device peak FLOP/s for MFU (default: a timed matmul)")
    parser.add_argument("--sample-tokens", type=int, default=64, help="tokens per sampled reply (0: no samples)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the preset's; 0: at the end only)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start from step 0 even when --out holds a checkpoint of the same run")
    parser.add_argument("--force", action="store_true",
                        help="write into an --out folder whose checkpoint, history or manifest another program made")
    for name in ("smoltalk", "mmlu", "gsm8k", "memory"):
        parser.add_argument(f"--{name}", type=argument, metavar="PATH",
                            help=f"add the {name} set (a file or folder in its published format)")
    args = parser.parse_args(argv)

    from kit.training.datasets import DatasetError
    from kit.locking import LockedError
    from kit.records import RecordError
    from kit.training.tasks import default_mixture
    from kit.tokens.tokenizer import Tokenizer

    if problem := folder_problem(args.out):
        print(f"kit midtrain: --out {problem}", file=sys.stderr)
        return 1
    inputs = [*args.data, args.tokenizer, args.smoltalk, args.mmlu, args.gsm8k, args.memory]
    for name in OUTPUT_NAMES:  # what midtrain writes in --out; an input there would be overwritten
        if clash := clashing_input(args.out / name, inputs):
            print(f"kit midtrain: --out {args.out} would overwrite the input {clash} ({name}); choose another folder",
                  file=sys.stderr)
            return 2
    try:
        mixture = default_mixture(args.data, seed=args.seed, size=args.size, identity_epochs=args.identity_epochs,
                                  smoltalk=args.smoltalk, mmlu=args.mmlu, gsm8k=args.gsm8k, memory=args.memory)
        if is_main_process():
            print(f"mixture: {mixture.counts()}", flush=True)
        vocab_size = args.vocab_size or PRESETS[args.preset].vocab_size
        tokenizer = Tokenizer.load(args.tokenizer) if args.tokenizer else train_tokenizer_on(mixture, vocab_size)
        overrides = {"loss_mode": args.loss_mode, "seed": args.seed}
        for name in ("steps", "checkpoint_every"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        result = midtrain(mixture, tokenizer, preset=args.preset, out_dir=args.out, device=args.device,
                          peak_flops=args.peak_flops, sample_tokens=args.sample_tokens, resume=not args.no_resume,
                          force=args.force,
                          manifest_extra={"argv": argv, "tokenizer": args.tokenizer or "trained on the mixture"},
                          **overrides)
    except (OSError, ValueError, RecordError, DatasetError, LockedError) as exc:
        print(f"kit midtrain: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        saved = f"the checkpoint of step {exc.step} is in {args.out}; run the same command again to resume" \
            if exc.step else "nothing trained yet"
        print(f"kit midtrain: interrupted; {saved}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("kit midtrain: interrupted before training started", file=sys.stderr)
        return 130
    if not is_main_process():
        return 0
    for sample in result.samples_after:
        print(f"> {sample['prompt']}\n{sample['reply']}\n")
    print(f"val loss {result.val_loss}, bpb {result.val_bpb}; saved to {args.out}")
    return 0
