"""Finetune a real chat model on conversation files: LoRA (default) or full, masked loss, resumable.

    python -m kit finetune --data runs/x/data/conversations.jsonl --out runs/x/finetune [--gguf]   (kit.commands.finetune)

What happens, and why:
- The base model (kit.training.base_model: the embedded SmolLM2-135M-Instruct GGUF by default) is loaded into
  torch. Every conversation gets the kit's system prompt unless it has its own (`chat_messages`), and
  is rendered with the model's own chat template by kit.tokens.render: ids + loss mask, same region rules as
  nanochat's format. Conversations longer than the preset's `max_tokens` are truncated (counted).
- Batches are length buckets, not packed rows: conversations sorted by length are grouped so that a
  batch holds at most `batch_tokens` slots (rows x longest row), padded at the right end. Packing
  several conversations into one row (kit.tokens.packing) would let them attend to each other unless the
  attention got a per-conversation boundary; with right padding and causal attention a pad never
  changes what a real token sees, so no attention mask is needed at all and SDPA takes its causal
  fast path. Batch order is shuffled per epoch (seeded).
- Loss: mean over supervised target tokens (mask of the target = 1), cross-entropy computed only at
  those positions: the output head (vocabulary 49k for SmolLM2) is a fifth of the model's compute, and
  half the positions of a chat are the prompt.
- LoRA (peft) on every linear layer of the decoder, merged into the weights at the end; or full
  finetuning. AdamW, linear warm-up then linear decay to a tenth, gradient clipping at 1. bf16 autocast
  on CUDA, fp32 on CPU and MPS (kit.training.runtime: the device rule and schedule midtraining uses too).
- A mixture adds general conversations (`mix=[(path, weight)]`, weight = share of the training
  examples), drawn without repetition while the file lasts, to limit forgetting.
- The output folder is always one run's. The run builds it in `.NAME.partial/` beside `out_dir` and
  switches it in whole at the end (kit.paths.switch_folder), so a kill leaves the old complete folder
  (and the partial one, resumed or cleared by the next run), never old and new files mixed: no stale
  model.gguf beside new weights, no older manifest beside a newer history. An existing `out_dir` is
  replaced only when it is a finetune's output (its manifest says so) or with `force`; a data file
  inside it is refused. A loss that is not finite stops the run: nothing is saved as a model.
- Checkpoints: every `checkpoint_every` steps and on Ctrl-C, `checkpoint/` in the partial folder
  (kit.training.loop and kit.training.checkpoints, the run loop and scheme midtraining uses too: trainable
  weights, the optimizer's state, step and history, each file fsynced and listed with its sha256, swapped
  in whole). A killed run leaves
  the last whole checkpoint. Re-run with the same parameters and data, it resumes from it if every hash
  matches; with other parameters or data, or a damaged checkpoint, it starts clean and says so. Nothing
  is pickled.
- Output (`out_dir`): model.safetensors (merged, float16) + config.json + generation_config.json +
  tokenizer files (HF layout, written by `kit.training.base_model.save_model`: its `load_finetuned` and
  transformers load it; the chat template's default system prompt is the kit's), manifest.json (listing
  every other file), history.json, loss.png, and with `gguf=True` model.gguf (kit.training.gguf_export)
  for `python -m kit serve --gguf`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from kit.training.base_model import causal_lm
from kit.training.checkpoints import (CHECKPOINT, CONFIG_FILE, NAMES, Checkpoint, CheckpointError, checkpoint_folder,
                                      remove_checkpoint, sha256_file)
from kit.training.curves import save_loss_plot
from kit.training.loop import HISTORY_FILE, Diverged, Interrupted, TrainingRun, check_finite, hold, write_history
from kit.training.runtime import autocast, lr_at, package_versions, pick_device
from kit.paths import (TEMP_NAME, OutputError, check_output, display_path, folder_problem, recover_folder, staging_path,
                       switch_folder)

METHODS = ("lora", "full")
IGNORE = -100
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class FinetuneConfig:
    method: str = "lora"
    epochs: float = 3.0
    steps: int | None = None  # overrides epochs and the floor
    min_steps: int = 16  # the floor on steps planned from epochs (see plan_steps)
    lr_lora: float = 1e-3
    lr_full: float = 3e-5
    batch_tokens: int = 512  # padded slots per batch (rows x longest row)
    max_tokens: int = 512  # longer conversations are truncated
    lora_r: int = 16
    lora_alpha: int = 32
    warmup: float = 0.05  # share of the steps
    weight_decay: float = 0.0
    checkpoint_every: int = 20
    bf16: bool = True  # autocast on CUDA; CPU and MPS always train in fp32
    cpu_threads: int | None = None  # None: the cores free of other work (kit.training.threads)

    def lr(self, method: str) -> float:
        return self.lr_lora if method == "lora" else self.lr_full


PRESETS = {
    # ~40 short conversations, 2 CPU cores: about a minute of training
    "cpu-smoke": FinetuneConfig(),
    # thousands of conversations on one GPU
    "gpu": FinetuneConfig(epochs=2.0, lr_lora=5e-4, lr_full=2e-5, batch_tokens=16384, max_tokens=2048,
                          lora_r=32, lora_alpha=64, checkpoint_every=200),
}


def plan_steps(config: FinetuneConfig, batches: int) -> tuple[int, str | None]:
    """(optimizer steps, a note when the choice needs saying). Steps come from `epochs` over the
    batches, but never fewer than `min_steps`: a small file gives too few. Measured on the embedded
    SmolLM2 with LoRA at 1e-3: 16 identity conversations, 3 epochs of 2 batches = 6 steps, changed 1 of
    3 unseen answers; 16 steps changed all 3. `steps` set by hand is kept, with a warning under the floor."""
    if config.steps:
        if config.steps < config.min_steps:
            return config.steps, (f"warning: {config.steps} steps is under {config.min_steps}, the fewest that changed "
                                  f"the embedded model's answers in our measurement; expect little to change")
        return config.steps, None
    from_epochs = max(1, math.ceil(config.epochs * batches))
    if from_epochs >= config.min_steps:
        return from_epochs, None
    return config.min_steps, (f"{config.min_steps} steps ({config.min_steps / batches:.1f} epochs): {config.epochs:g} epochs "
                              f"of {batches} batches would be {from_epochs}, under the floor of {config.min_steps} steps "
                              f"that a small file needs to change anything (FinetuneConfig.min_steps)")


class FinetuneError(ValueError):
    """Bad input for a finetune (a missing file, a bad weight, steps < 1, an unknown device). A loss that
    stops being a finite number is kit.training.loop's Diverged; Ctrl-C its Interrupted."""


@dataclass
class FinetuneResult:
    out_dir: Path
    method: str
    steps: int
    history: list[dict]
    train_seconds: float
    tokens_per_s: float
    tokens: int  # real (non-pad) tokens through forward + backward
    supervised_tokens: int
    examples: dict[str, int]  # per source file
    resumed_from: int | None
    gguf: Path | None
    manifest: dict = field(repr=False, default_factory=dict)

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None

    def loss_ends(self, k: int = 5) -> tuple[float, float] | None:
        """(mean loss of the first k steps, of the last k): one batch's loss swings with the batch, so a single
        step (the last) says little about where training ended. None without history."""
        if not self.history:
            return None
        k = max(1, min(k, len(self.history)))
        return (sum(h["loss"] for h in self.history[:k]) / k, sum(h["loss"] for h in self.history[-k:]) / k)


# ---- data --------------------------------------------------------------------------------------


def read_conversations(path: str | os.PathLike) -> list[dict]:
    """Records of a conversation file; a bad line or a conversation kit.rules calls an error
    refuses the file with file:line (as midtraining does)."""
    from kit.records import file_problem
    from kit.training.tasks import IdentityTask

    from kit.records import RecordError

    problem = file_problem(Path(path))
    if problem:
        raise FinetuneError(problem)
    try:
        records = IdentityTask(path).records
    except (RecordError, ValueError) as exc:
        raise FinetuneError(str(exc)) from None
    for record in records:  # said now, not after the model has loaded
        for i, message in enumerate(record["messages"]):
            parts = message.get("content") if isinstance(message.get("content"), list) else []
            tools = sorted({p.get("type") for p in parts if isinstance(p, dict) and p.get("type") != "text"})
            if tools:
                raise FinetuneError(f"{display_path(path)}: record {record.get('id')}: message {i} has {'/'.join(tools)} "
                                    f"parts; a chat model's template has no tool tokens (rule no-tool-tokens): "
                                    f"finetune on text conversations")
    return records


def mixture(data: Sequence[str | os.PathLike], mix: Sequence[tuple[str | os.PathLike, float]], seed: int
            ) -> tuple[list[dict], dict[str, int]]:
    """All conversations of the data files, plus from each mix file as many as make `weight` of the
    examples (drawn in a seeded order, repeating only when the file is used up). Returns the examples
    (each with meta.source = its file) and the count per file."""
    examples: list[dict] = []
    counts: dict[str, int] = {}
    for path in data:
        records = read_conversations(path)
        examples += [{**r, "meta": {**r.get("meta", {}), "source": display_path(path)}} for r in records]
        counts[display_path(path)] = len(records)
    total_weight = sum(w for _, w in mix)
    for path, weight in mix:
        if not 0 < weight < 1:
            raise FinetuneError(f"--mix {path}:{weight}: the weight is a share of the examples, between 0 and 1")
    if mix and total_weight >= 1:
        raise FinetuneError(f"the --mix weights sum to {total_weight:g}; they must leave room for the data (< 1)")
    n_total = len(examples) / (1 - total_weight) if mix else len(examples)
    for k, (path, weight) in enumerate(mix):
        records = read_conversations(path)
        n = round(weight * n_total)
        rng = random.Random(f"{seed}:mix:{k}")
        order: list[int] = []
        while len(order) < n:
            block = list(range(len(records)))
            rng.shuffle(block)
            order += block
        examples += [{**records[i], "meta": {**records[i].get("meta", {}), "source": display_path(path)}}
                     for i in order[:n]]
        counts[display_path(path)] = n
    return examples, counts


def render_examples(tokenizer, examples: Sequence[dict], max_tokens: int) -> tuple[list[tuple[list[int], list[int]]], dict]:
    """(ids, mask) per example through chat_messages (the kit's system prompt unless one is given);
    truncated and nothing-supervised counts are returned, and the latter left out (they teach nothing)."""
    from kit.training.base_model import chat_messages
    from kit.tokens.render import RenderError

    rendered, truncated, empty, cut = [], 0, [], []
    for n, record in enumerate(examples):
        messages = chat_messages(record)
        added = len(messages) - len(record["messages"] if isinstance(record, dict) else messages)
        try:
            r = tokenizer.render_conversation(messages, max_tokens=max_tokens)
        except RenderError as exc:  # numbered as in the file, not counting the system prompt added here
            index = None if exc.message_index is None else exc.message_index - added
            where = "" if index is None else f"message {index}: "
            raise FinetuneError(f"{record.get('meta', {}).get('source', '?')} record {record.get('id')}: "
                                f"{where}{exc.detail} [rule: {exc.rule}]") from None
        truncated += r.truncated
        if r.all_masked:
            empty.append(record.get("id"))
            if r.truncated:
                cut.append(record.get("id"))
            continue
        rendered.append((r.ids, r.mask))
    return rendered, {"truncated": truncated, "nothing_supervised": len(empty), "nothing_supervised_ids": empty[:20],
                      "cut_before_reply": len(cut), "cut_before_reply_ids": cut[:20], "max_tokens": max_tokens}


def nothing_supervised(stats: dict) -> str:
    """Why no example is left to train on, naming the token limit when it cut the replies off."""
    why = "no conversation has anything supervised (an assistant reply) to train on"
    if stats.get("cut_before_reply"):
        why += (f": {stats['cut_before_reply']} were cut at the token limit ({stats['max_tokens']} tokens, the "
                f"preset's max_tokens) before their assistant reply (first: record {stats['cut_before_reply_ids'][0]})")
    return why


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped by length: sorted, then cut so rows x longest row <= batch_tokens (one row at least)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (T tokens) and targets (the next token where its mask is 1, else IGNORE), right-padded."""
    width = max(len(ids) for ids, _ in rows) - 1
    inputs = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, (ids, mask) in enumerate(rows):
        n = len(ids) - 1
        inputs[r, :n] = torch.tensor(ids[:-1])
        t = torch.tensor(ids[1:])
        t[torch.tensor(mask[1:]) == 0] = IGNORE
        targets[r, :n] = t
    return inputs, targets


# ---- the model ---------------------------------------------------------------------------------


def masked_loss(model, inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over supervised targets only, with the output head applied only there."""
    lm = causal_lm(model)
    hidden = lm.base_model(input_ids=inputs).last_hidden_state
    keep = targets != IGNORE
    logits = lm.get_output_embeddings()(hidden[keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction=reduction)


def prepare_model(model, method: str, config: FinetuneConfig):
    """LoRA adapters on the decoder's linear layers (only they train), or every weight trainable."""
    if method == "full":
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise FinetuneError(f"no LoRA target layers ({', '.join(LORA_TARGETS)}) in {type(model).__name__}")
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft asks transformers a question transformers says it will rename
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


@torch.no_grad()
def conversation_loss(model, tokenizer, records: Sequence[dict], *, max_tokens: int = 1024,
                      batch_tokens: int = 4096) -> dict:
    """Mean loss (nats per supervised target token) and bits per byte of the supervised text of
    `records`, rendered as finetuning renders them: the retention figure on held-out general data."""
    rows, _ = render_examples(tokenizer, records, max_tokens)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, n_tokens, n_bytes = 0.0, 0, 0
    byte_len: dict[int, int] = {}
    for batch in length_batches([len(ids) for ids, _ in rows], batch_tokens):
        inputs, targets = collate([rows[i] for i in batch], tokenizer.pad_id)
        inputs, targets = inputs.to(device), targets.to(device)
        total += float(masked_loss(model, inputs, targets, reduction="sum"))
        kept = targets[targets != IGNORE].tolist()
        n_tokens += len(kept)
        for t in kept:
            if t not in byte_len:
                byte_len[t] = len(tokenizer.decode([t]).encode("utf-8")) if not tokenizer.is_special(t) else 0
            n_bytes += byte_len[t]
    model.train(was_training)
    return {"loss": total / max(n_tokens, 1), "tokens": n_tokens,
            "bits_per_byte": total / math.log(2) / n_bytes if n_bytes else None}


# ---- the run -----------------------------------------------------------------------------------


def finetune(data: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, base: str | os.PathLike | None = None,
             method: str = "lora", steps: int | None = None, epochs: float | None = None, lr: float | None = None,
             batch_tokens: int | None = None, device: str = "auto", mix: Sequence[tuple[str | os.PathLike, float]] = (),
             seed: int = 0, preset: str = "cpu-smoke", gguf: bool = False, resume: bool = True,
             progress: bool = True, checkpoint_every: int | None = None, force: bool = False) -> FinetuneResult:
    """Finetune `base` on the conversation files `data` (+ `mix`) and write the result to `out_dir`
    (see the module docstring). Ctrl-C saves a checkpoint and raises `Interrupted`. `force` replaces an
    existing `out_dir` that is not a finetune's output (never one holding an input)."""
    if preset not in PRESETS:
        raise FinetuneError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if method not in METHODS:
        raise FinetuneError(f"unknown method {method!r}; choose lora or full")
    if not data:
        raise FinetuneError("no data: give at least one conversation file")
    for name, value in (("steps", steps), ("batch_tokens", batch_tokens), ("checkpoint_every", checkpoint_every)):
        if value is not None and value < 1:
            raise FinetuneError(f"{name} must be >= 1, got {value}")
    for name, value in (("epochs", epochs), ("lr", lr)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise FinetuneError(f"{name} must be a finite number > 0, got {value}")
    for path, weight in mix:
        if not math.isfinite(weight):
            raise FinetuneError(f"--mix {path}:{weight}: the weight must be a finite number")
    if problem := folder_problem(out_dir):
        raise FinetuneError(f"--out {problem}")
    try:
        dev = pick_device(device)
    except ValueError as exc:
        raise FinetuneError(str(exc)) from None
    overrides = {k: v for k, v in (("steps", steps), ("epochs", epochs), ("batch_tokens", batch_tokens),
                                   ("checkpoint_every", checkpoint_every)) if v is not None}
    config = replace(PRESETS[preset], method=method, **overrides)
    out = Path(out_dir)
    inputs = [*data, *(p for p, _ in mix), *([base] if base is not None else [])]
    with hold(out, dev, config.cpu_threads):
        recover_folder(out, complete=lambda folder: _finished(folder) is not None)
        try:
            check_output(out, inputs, force=force, ours=lambda folder: _finished(folder) is not None)
        except OutputError as exc:
            raise FinetuneError(str(exc)) from None
        staging = staging_path(out)
        for stale in (staging.iterdir() if staging.is_dir() else ()):  # half-written outputs of a killed run
            if stale.name not in NAMES:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        staging.mkdir(parents=True, exist_ok=True)
        try:
            result = _run(data, staging, base=base, config=config, lr=lr or config.lr(method), dev=dev, mix=list(mix),
                          seed=seed, preset=preset, gguf=gguf, resume=resume, progress=progress)
        except Interrupted:
            raise  # the partial folder holds the checkpoint the next run resumes from
        except BaseException:
            if checkpoint_folder(staging) is None:  # nothing to resume: leave nothing behind
                shutil.rmtree(staging, ignore_errors=True)
            raise
        switch_folder(staging, out)
        result.out_dir = out
        result.gguf = out / result.gguf.name if result.gguf else None
        return result


def _finished(folder: Path) -> dict | None:
    """The manifest of a finetune's finished output folder, or None when `folder` is not one: no finetune
    manifest, or a file it does not list (something the user put there; kit temp files excepted)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        listed = {"manifest.json", *manifest["outputs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if manifest.get("kind") != "finetune":
        return None
    if any(p.name not in listed and not TEMP_NAME.fullmatch(p.name) for p in folder.iterdir()):
        return None
    return manifest


def _run(data, out: Path, *, base, config: FinetuneConfig, lr: float, dev: torch.device, mix, seed: int,
         preset: str, gguf: bool, resume: bool, progress: bool) -> FinetuneResult:
    """The run in `out` (the partial folder): what it trains on and what it is (its fingerprint), the
    model, the resume, the steps, the outputs."""
    from kit.manifest import write_manifest
    from kit.training.base_model import default_gguf, describe, load_base, save_model

    log = print if progress else (lambda *a, **k: None)
    examples, counts = mixture(data, mix, seed)
    files = [{"path": str(p), "sha256": sha256_file(p), "role": role, **({"weight": w} if role == "mix" else {})}
             for p, role, w in [(p, "data", None) for p in data] + [(p, "mix", w) for p, w in mix]]
    base_path = Path(base) if base is not None else default_gguf()
    if gguf and not base_path.is_file():
        raise FinetuneError("--gguf needs a GGUF base model (its metadata is the export's template); "
                            f"{base_path} is a folder")
    parameters = {"method": config.method, "lr": lr, "seed": seed, "preset": preset, "device": str(dev),
                  "config": asdict(config), "base": str(base_path), "mix": [[str(p), w] for p, w in mix]}
    fingerprint = hashlib.sha256(json.dumps({"parameters": {k: v for k, v in parameters.items() if k != "device"},
                                             "files": files}, sort_keys=True).encode()).hexdigest()[:16]

    # the base model, the rows it is trained on, batched by length, and the steps
    load_started = time.perf_counter()
    torch.manual_seed(seed)
    model, tokenizer = load_base(base_path, device="cpu")
    load_seconds = time.perf_counter() - load_started
    rows, render_stats = render_examples(tokenizer, examples, config.max_tokens)
    if not rows:
        raise FinetuneError(nothing_supervised(render_stats))
    if render_stats["cut_before_reply"]:
        log(f"finetune: {render_stats['cut_before_reply']} conversations left out: cut at the token limit "
            f"({config.max_tokens}) before their assistant reply (first: record {render_stats['cut_before_reply_ids'][0]})",
            flush=True)
    batches = length_batches([len(ids) for ids, _ in rows], config.batch_tokens)
    total_steps, steps_note = plan_steps(config, len(batches))
    if steps_note:
        log(f"finetune: {steps_note}", flush=True)

    # what trains (LoRA adapters or every weight), its optimizer, the resume
    model = prepare_model(model, config.method, config).to(dev)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    # fused: one kernel over all parameters per step instead of a loop of small ones (CPU and CUDA)
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=config.weight_decay, fused=True)
    run = TrainingRun(out, model, optimizer, key={"fingerprint": fingerprint}, total=total_steps,
                      checkpoint_every=config.checkpoint_every, state={"train_seconds": 0.0})
    _resume(run, resume, log)
    log(f"finetune: {len(rows)} conversations ({', '.join(f'{Path(k).name}: {v}' for k, v in counts.items())}), "
        f"{len(batches)} batches/epoch, {total_steps} steps, {config.method} ({n_trainable:,} trainable), "
        f"lr {lr:g}, {dev}", flush=True)

    tokens, supervised, wall = _steps(run, rows, batches, pad_id=tokenizer.pad_id, device=dev, lr=lr, config=config,
                                      seed=seed, progress=progress)

    # the outputs: the merged model, its GGUF, history, loss curve, manifest; the checkpoint is done with
    if config.method == "lora":
        model = model.merge_and_unload()
    model.eval()
    saved = save_model(model, tokenizer, out)
    gguf_path, export_seconds = _export_gguf(model, tokenizer, out, base_path) if gguf else (None, 0.0)
    write_history(out, run.history)
    curve = [{"step": h["step"], "train_loss": h["loss"], "tokens": seen}
             for h, seen in zip(run.history, accumulate(h["tokens"] for h in run.history))]
    save_loss_plot(curve, out / "loss.png", title=f"finetuning loss ({config.method}, {base_path.name})")
    remove_checkpoint(out)  # the outputs are the result now

    tokens_per_s = tokens / wall if wall > 0 and tokens else 0.0
    manifest = {
        "kind": "finetune",
        "parameters": parameters,
        "fingerprint": fingerprint,
        "data_files": files,
        "examples": counts,
        "rendering": {"format": tokenizer.chat_format.name, "system_prompt": "kit.training.base_model.SYSTEM_PROMPT unless a conversation has one",
                      "conversations": len(rows), **render_stats},
        "steps": total_steps,
        "steps_note": steps_note,
        "resumed_from": run.start if run.resumed else None,
        "trainable_parameters": n_trainable,
        "base_model": {k: v for k, v in describe(causal_lm(model)).items() if k != "config"},
        "timings": {"load_s": round(load_seconds, 2), "train_s_this_run": round(wall, 2),
                    "train_s_total": round(run.state["train_seconds"], 2), "gguf_export_s": round(export_seconds, 2)},
        "tokens_this_run": tokens, "supervised_tokens_this_run": supervised, "tokens_per_s": round(tokens_per_s, 1),
        "final_loss": run.history[-1]["loss"] if run.history else None,
        "outputs": saved + [HISTORY_FILE, "loss.png"] + (["model.gguf"] if gguf_path else []),
        "environment_extra": package_versions("transformers", "peft", "gguf"),
    }
    write_manifest(out / "manifest.json", manifest)
    return FinetuneResult(out, config.method, total_steps, run.history, round(wall, 2), round(tokens_per_s, 1), tokens,
                          supervised, counts, manifest["resumed_from"], gguf_path, manifest)


def _steps(run: TrainingRun, rows, batches: list[list[int]], *, pad_id: int, device: torch.device, lr: float,
           config: FinetuneConfig, seed: int, progress: bool) -> tuple[int, int, float]:
    """Optimizer steps run.start..run.total-1: each a batch of its epoch's seeded order, the masked loss,
    a clipped AdamW step. Returns the real and the supervised tokens trained on, and the seconds taken."""
    from kit.progress import progress_bar

    model, optimizer = run.model, run.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    bar = progress_bar(total=run.total, initial=run.start, desc="finetune", unit="step", disable=not progress)
    tokens = supervised = 0
    started = time.perf_counter()
    try:
        with run.interruptible(always_save=True):  # the partial folder then holds what the next run resumes
            for step in range(run.start, run.total):
                epoch, k = divmod(step, len(batches))
                order = list(range(len(batches)))
                random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
                batch = batches[order[k]]
                inputs, targets = collate([rows[i] for i in batch], pad_id)
                inputs, targets = inputs.to(device), targets.to(device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, run.total, lr, warmup=config.warmup, decay=1.0, final=0.1)
                t0 = time.perf_counter()
                with autocast(device, config.bf16):
                    loss = masked_loss(model, inputs, targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                value = loss.detach().item()  # waits for the device
                check_finite(value, step, run.total, lr)
                run.state["train_seconds"] += time.perf_counter() - t0
                n_real = int(sum(len(rows[i][0]) - 1 for i in batch))
                n_sup = int((targets != IGNORE).sum())
                tokens += n_real
                supervised += n_sup
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
                run.step_done({"step": step + 1, "epoch": round((step + 1) / len(batches), 3), "loss": round(value, 5),
                               "lr": optimizer.param_groups[0]["lr"], "tokens": n_real, "supervised": n_sup})
    except Diverged:
        remove_checkpoint(run.folder)  # a resume would diverge the same way
        raise
    finally:
        bar.close()
    return tokens, supervised, time.perf_counter() - started


def _resume(run: TrainingRun, resume: bool, log) -> None:
    """Continue from the checkpoint in the partial folder when it is this run's (same parameters and files)
    and whole; else start clean, saying why, with no checkpoint left behind."""
    out = run.folder
    if not resume:
        if checkpoint_folder(out) is not None:
            log(f"finetune: resume off: the checkpoint in {out / CHECKPOINT} is discarded; starting clean", flush=True)
    else:
        try:
            saved, differs = run.resume(check=_check_seconds)
            if differs:
                log(f"finetune: the checkpoint at step {saved.state.get('step')} was made with other parameters or "
                    f"data; starting clean", flush=True)
            elif saved is not None:
                log(f"finetune: resuming from step {run.start} ({saved.folder})", flush=True)
        except CheckpointError as exc:
            log(f"finetune: {exc}; starting clean", flush=True)
    if run.start == 0:
        remove_checkpoint(out)  # `out` is the kit's partial folder: its checkpoints are the kit's


def _check_seconds(saved: Checkpoint) -> None:
    seconds = saved.state.get("train_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise CheckpointError(f"{saved.folder / CONFIG_FILE}: 'train_seconds' is {seconds!r}, not a number of seconds")


def _export_gguf(model, tokenizer, out: Path, base_path: Path) -> tuple[Path, float]:
    """model.gguf in out, with the base GGUF's metadata and the kit's system prompt as the template's default."""
    from kit.training.base_model import SYSTEM_PROMPT, with_default_system
    from kit.training.gguf_export import export_gguf

    t0 = time.perf_counter()
    template = with_default_system(tokenizer.hf.chat_template, tokenizer.chat_format.default_system, SYSTEM_PROMPT)
    path = export_gguf(model, out / "model.gguf", base_path, chat_template=template, name=f"{base_path.stem} kit-finetune")
    return path, time.perf_counter() - t0
