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
`out_dir/checkpoint/` every `checkpoint_every` steps, on Ctrl-C and at the end (kit.training.loop and
kit.training.checkpoints: the run loop and the scheme finetuning uses too, swapped in whole, every file fsynced and checked by sha256, nothing
pickled): weights, optimizer state, the model and training parameters, the step, the history, a digest
of the training rows, and the tokenizer. A run whose parameters and rows match the checkpoint's resumes
from its step (`resume=False`, `--no-resume`, starts over); one with other parameters says so and starts
over; a damaged one stops the run with a message naming the file.

Sampling with the calculator tool is kit.training.engine; device, threads, autocast and the LR schedule
are kit.training.runtime; the loss plot is kit.training.curves; `python -m kit midtrain` is
kit.commands.midtrain.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from kit.paths import check_output, folder_problem
from kit.tokens.packing import IGNORE_INDEX, LOSS_MODES, Packed, batches, pack_rows, trained_tokens
from kit.training.checkpoints import CHECKPOINT, NAMES, CheckpointError, checkpoint_folder, read_checkpoint
from kit.training.curves import save_loss_plot
from kit.training.engine import samples
from kit.training.model import GPT, GPTConfig
from kit.training.loop import HISTORY_FILE, TrainingRun, check_finite, hold, write_history
from kit.training.runtime import autocast, lr_at, measure_matmul_flops, pick_device, sync


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
    config = _config(preset, overrides)
    if out_dir is not None and (problem := folder_problem(out_dir)):
        raise ValueError(problem)
    created = out_dir is not None and not Path(out_dir).exists()
    # only rank 0 writes, so only rank 0 locks (the others would find rank 0's lock)
    with hold(out_dir if is_main_process() else None, pick_device(device), config.cpu_threads):
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


def _config(preset: str, overrides: dict) -> TrainConfig:
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
    return config


OUTPUT_NAMES = (*NAMES, HISTORY_FILE, "manifest.json", "loss.png")


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


def _train(records, tokenizer, config: TrainConfig, *, out_dir, device, peak_flops, prompts, sample_tokens,
           progress, manifest_extra, resume) -> MidtrainResult:
    ddp = _ddp_setup()
    rank, world = (ddp["rank"], ddp["world"]) if ddp else (0, 1)
    dev = ddp["device"] if ddp else pick_device(device)
    is_main = rank == 0
    log = (lambda *a: print(*a, flush=True)) if progress and is_main else (lambda *a: None)
    torch.manual_seed(config.seed)

    # the rows: validation split off by conversation, both sides rendered and packed
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

    # the model, its samples before training, the optimizer
    model_config = GPTConfig(vocab_size=tokenizer.vocab_size, sequence_len=config.sequence_len,
                             n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd)
    raw_model = GPT(model_config).to(dev)
    model = raw_model
    bf16 = config.dtype == "bfloat16"
    prompts = list(prompts) if prompts is not None else _default_prompts(records)
    samples_before = samples(raw_model, tokenizer, prompts, sample_tokens // 3) if is_main else []
    if config.compile and dev.type == "cuda":
        model = torch.compile(model)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.AdamW(raw_model.parameters(), lr=config.lr, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=config.weight_decay)
    flops_per_token = raw_model.estimate_flops_per_token()
    if peak_flops is None:
        peak_flops = measure_matmul_flops(dev, torch.bfloat16 if bf16 and dev.type == "cuda" else torch.float32)

    # resume: the checkpoint's weights, optimizer state and history; the data stream where it stopped
    run = _checkpoints(out_dir, raw_model, optimizer, tokenizer, fingerprint(config, model_config, train_packed, world),
                       config, writes=is_main)
    if out_dir is not None and resume:
        _resume(run, out_dir, log)
    stream = _endless_batches(shard, config.batch_size, config.loss_mode, config.seed)
    for _ in range(run.start * config.grad_accum):
        next(stream)
    if run.start:
        log(f"resuming from the checkpoint of step {run.start}/{config.steps} in {out_dir}")

    with run.interruptible():
        timed_tokens, timed_seconds = _steps(run, model, stream, config=config, device=dev, world=world,
                                             val_packed=val_packed if is_main else None,
                                             token_bytes=token_byte_lengths(tokenizer), log=log)

    tokens_per_s = timed_tokens / timed_seconds if timed_seconds else 0.0
    mfu = flops_per_token * tokens_per_s / peak_flops if peak_flops else None
    final_val = next((h for h in reversed(run.history) if "val_loss" in h), {})
    samples_after = samples(raw_model, tokenizer, prompts, sample_tokens) if is_main else []
    result = MidtrainResult(
        config=config, model_config=model_config, device=str(dev), num_params=raw_model.num_params(),
        conversations={"train": len(train_records), "val": len(val_records)},
        tasks=dict(Counter(r.get("meta", {}).get("task", "unknown") for r in records)),
        packing=train_packed.stats.as_dict(), trained_tokens=counts, history=run.history,
        final_train_loss=run.history[-1]["train_loss"] if run.history else float("nan"),
        val_loss=final_val.get("val_loss"), val_bpb=final_val.get("val_bpb"),
        tokens_per_s=tokens_per_s, mfu=mfu, peak_flops=peak_flops, flops_per_token=flops_per_token,
        samples_before=samples_before, samples_after=samples_after,
        out_dir=str(out_dir) if out_dir else None, ranks=world, resumed_from=run.start, model=raw_model,
    )
    if run.start >= config.steps:
        log(f"nothing left to train: the checkpoint is at step {run.start}/{config.steps}")
    else:
        log(f"done: {tokens_per_s:,.0f} tokens/s, MFU {100 * (mfu or 0):.2f}% of {peak_flops / 1e9:,.1f} GFLOP/s")
    if out_dir and is_main:
        save_run(result, tokenizer, out_dir, manifest_extra, optimizer=optimizer, key=run.key)
    if ddp:
        torch.distributed.destroy_process_group()
    return result


def _steps(run: TrainingRun, model, stream, *, config: TrainConfig, device: torch.device, world: int,
           val_packed: Packed | None, token_bytes: torch.Tensor, log) -> tuple[int, float]:
    """Optimizer steps run.start..config.steps-1 of `model` (compiled or DDP-wrapped; run.model is the
    raw one) on `stream`; validation on `val_packed` every config.eval_every steps and at the end.
    Returns the tokens and seconds of the timed steps (for tokens/s: every step but the first, which
    pays for warm-up and compilation, unless it is the only one)."""
    bf16 = config.dtype == "bfloat16"
    timed_tokens, timed_seconds = 0, 0.0
    tokens_seen = run.history[-1]["tokens"] if run.history else 0
    for step in range(run.start, config.steps):
        lr = lr_at(step, config.steps, config.lr, warmup=config.warmup_frac, decay=config.decay_frac,
                   final=config.final_lr_frac)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        micro = [next(stream) for _ in range(config.grad_accum)]
        step_tokens = sum(x.size for x, _ in micro) * world  # positions processed, padding included
        n_targets = max(1, sum(int((y != IGNORE_INDEX).sum()) for _, y in micro))
        sync(device)
        t0 = time.perf_counter()
        step_loss = 0.0
        for inputs, targets in micro:
            x, y = torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
            with autocast(device, bf16):
                loss = model(x, y, reduction="sum") / n_targets
            loss.backward()
            step_loss += float(loss.detach())
        check_finite(step_loss, step, config.steps, config.lr)  # before the step: the weights stay the last good ones
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        sync(device)
        dt = time.perf_counter() - t0
        if step > run.start or config.steps - run.start == 1:
            timed_tokens += step_tokens
            timed_seconds += dt
        tokens_seen += step_tokens
        entry = {"step": step + 1, "lr": lr, "train_loss": step_loss, "tokens": tokens_seen, "step_s": dt}
        if val_packed is not None and ((step + 1) % config.eval_every == 0 or step + 1 == config.steps):
            entry["val_loss"], entry["val_bpb"] = evaluate_loss(run.model, val_packed, config.loss_mode, device,
                                                                config.batch_size, token_bytes, bf16)
        if "val_loss" in entry or step == run.start:
            extra = f" val {entry['val_loss']:.3f} bpb {entry['val_bpb'] or float('nan'):.3f}" if "val_loss" in entry else ""
            log(f"step {step + 1}/{config.steps} loss {step_loss:.3f} lr {lr:.2e}{extra}")
        run.step_done(entry)
    return timed_tokens, timed_seconds


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

def fingerprint(config: TrainConfig, model_config: GPTConfig, packed: Packed, world: int) -> dict:
    """What a checkpoint must share with a run to be resumed by it (its key, kit.training.loop): the
    parameters that change what is computed, the model's shape, the training rows (a digest) and the
    number of ranks."""
    train = {k: v for k, v in asdict(config).items() if k not in OPERATIONAL_FIELDS}
    rows = hashlib.sha256(packed.ids.tobytes() + packed.mask.tobytes()).hexdigest()[:16]
    return {"train": train, "model": model_config.to_dict(), "rows": rows, "ranks": world}


def _checkpoints(out_dir, model: GPT, optimizer, tokenizer, key: dict, config: TrainConfig, *,
                 writes: bool = True) -> TrainingRun:
    """The run's checkpointing in out_dir: midtraining's checkpoints carry the tokenizer."""
    return TrainingRun(None if out_dir is None else Path(out_dir), model, optimizer, key=key, total=config.steps,
                       checkpoint_every=config.checkpoint_every, writes=writes,
                       extra=lambda folder: tokenizer.save(folder / "tokenizer"))


def _resume(run: TrainingRun, out_dir, log) -> None:
    """Continue `run` from the checkpoint in out_dir when it was made with this run's parameters and rows;
    else say what differs and train from step 0. A damaged one is a CheckpointError that says how to go on."""
    try:
        saved, differs = run.resume()
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; delete {Path(out_dir) / CHECKPOINT} or pass --no-resume") from None
    if differs:
        was = saved.state.get("train")
        if "train" in differs and isinstance(was, dict):
            differs = [f"{k} {was.get(k)!r} -> {v!r}" for k, v in run.key["train"].items()
                       if was.get(k) != v] + [d for d in differs if d != "train"]
        log(f"the checkpoint in {out_dir} was made with other settings ({', '.join(differs)}); training from step 0")


def save_run(result: MidtrainResult, tokenizer, out_dir: str | os.PathLike, manifest_extra: dict | None = None,
             *, optimizer=None, key: dict | None = None) -> Path:
    """checkpoint/ (weights, optimizer state when given, the tokenizer), history.json, manifest.json and
    loss.png into out_dir; every file atomically. A plot that fails is reported on stderr and leaves the
    rest saved."""
    from kit.manifest import write_manifest

    out = Path(out_dir)
    key = key or {"train": asdict(result.config), "model": result.model_config.to_dict()}
    run = _checkpoints(out, result.model, optimizer or torch.optim.AdamW(result.model.parameters()), tokenizer, key,
                       result.config)
    run.history = result.history
    run.save(result.config.steps)
    write_history(out, result.history)
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
