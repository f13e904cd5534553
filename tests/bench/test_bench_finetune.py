"""Finetune throughput against a plain transformers training loop, measured in the same run.

Both train the real base model (SmolLM2-135M-Instruct from the embedded GGUF), fully (every weight),
on the same batches (the fixture identity conversations, rendered by the kit, right-padded), with the
same masked loss (mean over supervised target tokens) and AdamW. The plain loop is what one writes
from the transformers docs: `model(input_ids, attention_mask=..., labels=...)` with -100 on the
unsupervised targets, and torch's default AdamW. kit.training.finetune's step applies the output head only at
supervised positions, needs no attention mask (right padding under causal attention) and uses the
fused AdamW. Target: kit / plain >= 1.0x. The LoRA
step (the default method) is printed beside them.

Timings are the best of interleaved rounds, so background load hits every method alike; the target is
asserted only when the machine was quiet before the run (other programs' threads stall torch's).
On CUDA the same is measured in bf16 autocast and MFU is printed against a timed bf16 matmul.
"""

from __future__ import annotations

import json
import os
import time
import warnings

import torch

from tiny_lm import IDENTITY

ROUNDS = 3


def _batches(tok, n_batches: int, rows_per_batch: int):
    """(inputs, targets, attention mask) per batch; the mask is for the plain loop only."""
    from kit.training.base_model import chat_messages
    from kit.training.finetune import collate

    records = [json.loads(line) for line in IDENTITY.read_text().splitlines()]
    rows = [(r.ids, r.mask) for r in (tok.render_conversation(chat_messages(rec)) for rec in records)]
    out = []
    for k in range(n_batches):
        chunk = rows[k * rows_per_batch:(k + 1) * rows_per_batch]
        inputs, targets = collate(chunk, tok.pad_id)
        attention = torch.zeros_like(inputs)
        for r, (ids, _) in enumerate(chunk):
            attention[r, :len(ids) - 1] = 1
        out.append((inputs, targets, attention))
    return out


def _plain_loss(model, inputs, targets, attention):
    """The docs' way: the whole sequence in, labels with -100, transformers shifts them itself."""
    ids = torch.cat([inputs, inputs[:, -1:]], dim=1)  # one more position: its logits are dropped by the shift
    labels = torch.cat([torch.full_like(targets[:, :1], -100), targets], dim=1)
    mask = torch.cat([attention, attention[:, -1:]], dim=1)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def test_finetune_step_throughput():
    from kit.training.base_model import load_base
    from kit.training.finetune import PRESETS, masked_loss, prepare_model
    from kit.training.runtime import autocast
    from kit.llm.local_server import default_threads

    load_before = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(default_threads())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, tok = load_base(device=device)
    batches = [tuple(x.to(device) for x in b) for b in _batches(tok, n_batches=2, rows_per_batch=4)]
    real_tokens = sum(int((t != -100).sum()) for _, t, _ in batches)  # supervised, for the record
    all_tokens = sum(i.numel() for i, _, _ in batches)
    model.train()
    optimizers = {"kit": torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True),  # as kit.training.finetune makes it
                  "plain": torch.optim.AdamW(model.parameters(), lr=1e-6)}  # torch's default

    def step(loss_fn, m, opt):
        for inputs, targets, attention in batches:
            with autocast(device, True):
                loss = loss_fn(m, inputs, targets, attention)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def kit_loss(m, inputs, targets, _attention):
        return masked_loss(m, inputs, targets)

    methods = {"kit.training.finetune step (full)": lambda: step(kit_loss, model, optimizers["kit"]),
               "plain transformers loop (full)": lambda: step(_plain_loss, model, optimizers["plain"])}
    best = {name: float("inf") for name in methods}
    for _ in range(ROUNDS):
        for name, run in methods.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    optimizers.clear()  # their moments: two copies of the model's size
    lora = prepare_model(model, "lora", PRESETS["cpu-smoke"])
    lora_opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-6, fused=True)
    best["kit.training.finetune step (LoRA, the default)"] = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        step(kit_loss, lora, lora_opt)
        best["kit.training.finetune step (LoRA, the default)"] = min(best["kit.training.finetune step (LoRA, the default)"], time.perf_counter() - start)

    print(f"\n{len(batches)} batches, {all_tokens} padded tokens ({real_tokens} supervised targets), {device}, "
          f"{torch.get_num_threads()} torch threads, {cores} cores, load average {load_before:.1f} before the run")
    for name, seconds in best.items():
        print(f"  {name:<40} {all_tokens / seconds:9.1f} tokens/s  ({seconds:.2f} s)")
    ratio = best["plain transformers loop (full)"] / best["kit.training.finetune step (full)"]
    print(f"  kit / plain: {ratio:.2f}x (target >= 1.0x)")
    if device.type == "cuda":
        from kit.training.runtime import measure_matmul_flops

        params = sum(p.numel() for p in model.parameters())
        flops = 6 * params * all_tokens / best["kit.training.finetune step (full)"]
        peak = measure_matmul_flops(device, torch.bfloat16)
        print(f"  MFU (6 N flops/token vs a timed bf16 matmul of {peak / 1e12:.0f} TFLOP/s): {100 * flops / peak:.1f}%")
    if load_before < 0.5 * cores:
        assert ratio >= 1.0
    else:
        print(f"  (target not asserted: load average {load_before:.1f} on {cores} cores)")
