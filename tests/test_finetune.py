"""kit.training.finetune on a tiny Llama model (tests/tiny_lm.py): LoRA and full training lower the masked loss,
the output folder loads back, mixtures count right, bad input is one line with rc 2, and a run killed
with SIGKILL or stopped with Ctrl-C resumes from its checkpoint (never from a damaged one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ctrl_c import default_sigint
from tiny_lm import GENERAL, IDENTITY, make_tiny_model

from kit.paths import display_path, staging_path
from kit.training.checkpoints import CHECKPOINT, CONFIG_FILE, MODEL_FILE, NAMES
from kit.commands.finetune import main
from kit.training.finetune import (FinetuneError, collate, conversation_loss, finetune, length_batches, masked_loss,
                                   mixture)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def run(tiny, out, **kw):
    kw.setdefault("steps", 12)
    kw.setdefault("lr", 3e-3)
    return finetune([IDENTITY], out, base=tiny, progress=False, **kw)


def test_lora_lowers_the_loss_and_writes_a_loadable_folder(tiny, tmp_path):
    from kit.training.base_model import SYSTEM_PROMPT, chat_messages, load_base, load_finetuned

    out = tmp_path / "ft"
    result = run(tiny, out, steps=16)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 16 and losses[-1] < losses[0] - 0.3
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "manifest.json",
                 "history.json", "loss.png"):
        assert (out / name).is_file(), name
    assert not any((out / name).exists() for name in NAMES)
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.bin"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data_files"][0]["sha256"] and manifest["tokens_per_s"] > 0 and manifest["parameters"]["method"] == "lora"
    assert json.loads((out / "history.json").read_text()) == result.history
    model, tok = load_finetuned(out)
    assert "lora" not in " ".join(n for n, _ in model.named_parameters())  # merged, a plain model
    # the saved template's default system prompt is the kit's: a client sending none gets what training used
    question = [{"role": "user", "content": "What's your name?"}]
    assert tok.chat_format.default_system == SYSTEM_PROMPT
    served = tok.hf.apply_chat_template(question, tokenize=True, add_generation_prompt=True, return_dict=True)
    assert list(served["input_ids"]) == tok.render_for_completion(chat_messages(question))
    # the merged model computes the loss the last training steps reached (not the base model's)
    records = [json.loads(line) for line in IDENTITY.read_text().splitlines()]
    after = conversation_loss(model, tok, records)
    assert after["loss"] < losses[0] - 0.3 and after["bits_per_byte"] > 0 and after["tokens"] > 100
    base_model, base_tok = load_base(tiny)
    assert conversation_loss(base_model, base_tok, records)["loss"] > after["loss"] + 0.3


def test_full_finetune_changes_every_weight_kind(tiny, tmp_path):
    from safetensors.torch import load_file

    result = run(tiny, tmp_path / "full", method="full", lr=3e-3, steps=10)
    assert result.history[-1]["loss"] < result.history[0]["loss"] - 0.3
    before, after = load_file(str(tiny / "model.safetensors")), load_file(str(tmp_path / "full" / "model.safetensors"))
    changed = [k for k in before if not torch.allclose(before[k].float(), after[k].float(), atol=1e-4)]
    assert any("embed" in k for k in changed) and any("mlp" in k for k in changed)


def test_masked_loss_counts_only_supervised_targets():
    class Echo(torch.nn.Module):  # a model whose logits we know: uniform over 5 ids
        def __init__(self):
            super().__init__()
            self.base_model = lambda input_ids: type("O", (), {"last_hidden_state": torch.zeros(*input_ids.shape, 3)})()
            self.head = torch.nn.Linear(3, 5, bias=False)

        def get_output_embeddings(self):
            return self.head

    inputs, targets = collate([([1, 2, 3, 4], [0, 0, 1, 1]), ([1, 2], [0, 1])], pad_id=0)
    assert targets.tolist() == [[-100, 3, 4], [2, -100, -100]]
    with torch.no_grad():
        loss = masked_loss(Echo(), inputs, targets)
    assert abs(loss.item() - float(torch.log(torch.tensor(5.0)))) < 1e-6


def test_length_batches_respect_the_budget():
    lengths = [5, 50, 7, 30, 30, 8, 100]
    batches = length_batches(lengths, 64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64


def test_mixture_takes_the_weight_as_share_of_examples():
    examples, counts = mixture([IDENTITY], [(GENERAL, 0.3)], seed=0)
    assert counts == {display_path(IDENTITY): 10, display_path(GENERAL): 4} and len(examples) == 14
    assert {e["meta"]["source"] for e in examples[10:]} == {display_path(GENERAL)}
    again, _ = mixture([IDENTITY], [(GENERAL, 0.3)], seed=0)
    assert again == examples
    big, counts = mixture([IDENTITY], [(GENERAL, 0.6)], seed=0)  # 15 of 6 general: each used, then repeated
    assert counts[display_path(GENERAL)] == 15 and len({e["id"] for e in big[10:]}) == 6
    for bad in ([(GENERAL, 0)], [(GENERAL, 1.5)], [(GENERAL, 0.5), (GENERAL, 0.5)]):
        with pytest.raises(FinetuneError, match="weight"):
            mixture([IDENTITY], bad, seed=0)


def test_invalid_conversation_refuses_the_file_with_its_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = IDENTITY.read_text().splitlines()[:2]
    lines.append(json.dumps({"id": "x", "messages": [{"role": "assistant", "content": "I speak first"},
                                                     {"role": "user", "content": "odd"}]}))
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(FinetuneError, match=rf"{bad.name}:3"):
        mixture([bad], [], seed=0)


@pytest.mark.parametrize("args, message", [
    (["--data", "nope.jsonl"], "nope.jsonl: no such file"),
    (["--steps", "0"], "steps must be >= 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--mix", "x.jsonl"], "expected FILE:WEIGHT"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
])
def test_cli_bad_input_is_one_line_rc_2(tmp_path, capsys, args, message):
    argv = ["--data", str(IDENTITY), "--out", str(tmp_path / "o"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and err.startswith("kit finetune: ")


def test_cli_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["--data", str(IDENTITY), "--out", str(out)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_one_writer_per_output(tiny, tmp_path):
    from kit.locking import LockedError, exclusive

    out = tmp_path / "locked"
    out.mkdir()
    with exclusive(out):
        with pytest.raises(LockedError):
            run(tiny, out)


def _start(tiny, out, steps, every=2, extra=()) -> subprocess.Popen:
    command = [sys.executable, "-m", "kit", "finetune", "--data", str(IDENTITY), "--out", str(out), "--base", str(tiny),
               "--steps", str(steps), "--lr", "3e-3", "--batch-tokens", "256", "--checkpoint-every", str(every), *extra]
    env = {**os.environ, "KIT_NO_PROGRESS": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)


def _wait_for_checkpoint(proc, out: Path, min_step: int, timeout: float = 120) -> int:
    pointer = staging_path(out) / CHECKPOINT / CONFIG_FILE  # the run builds its folder beside `out`
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pointer.is_file():
            step = json.loads(pointer.read_text())["step"]
            if step >= min_step:
                return step
        assert proc.poll() is None, f"finished before the checkpoint: {proc.communicate()}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no checkpoint in time")


def _killed_after_a_checkpoint(tiny, out: Path, steps: int, min_step: int) -> None:
    """A finetune SIGKILLed once it has saved a checkpoint at `min_step` or later (left in its partial folder)."""
    proc = _start(tiny, out, steps=steps)
    _wait_for_checkpoint(proc, out, min_step)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_then_resume_from_checkpoint_and_never_a_damaged_one(tiny, tmp_path):
    import shutil

    out = tmp_path / "killed"
    _killed_after_a_checkpoint(tiny, out, steps=60, min_step=4)
    partial = staging_path(out)
    assert not out.exists()  # a kill leaves no half-made output folder, only the partial one beside it
    step = json.loads((partial / CHECKPOINT / CONFIG_FILE).read_text())["step"]
    damaged = tmp_path / "damaged"
    shutil.copytree(partial, staging_path(damaged))
    folder = staging_path(damaged) / CHECKPOINT
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[-8:] = b"\x00" * 8
    (folder / MODEL_FILE).write_bytes(bytes(data))

    common = dict(steps=60, lr=3e-3, batch_tokens=256, checkpoint_every=2)
    resumed = run(tiny, out, **common)
    assert resumed.resumed_from == step and len(resumed.history) == 60
    assert [h["step"] for h in resumed.history] == list(range(1, 61))
    clean = run(tiny, damaged, **common)
    assert clean.resumed_from is None and len(clean.history) == 60
    # the resumed run continues the same trajectory as the uninterrupted one
    assert abs(resumed.history[-1]["loss"] - clean.history[-1]["loss"]) < 0.05


@pytest.mark.slow
def test_a_hand_edited_checkpoint_without_its_seconds_starts_clean_in_one_line(tiny, tmp_path, capfd):
    out = tmp_path / "edited"
    _killed_after_a_checkpoint(tiny, out, steps=60, min_step=2)
    config = staging_path(out) / CHECKPOINT / CONFIG_FILE
    saved = json.loads(config.read_text())
    del saved["train_seconds"]
    config.write_text(json.dumps(saved))
    result = finetune([IDENTITY], out, base=tiny, steps=60, lr=3e-3, batch_tokens=256, checkpoint_every=2,
                      progress=True)  # the same parameters: only the edit stops the resume
    assert result.resumed_from is None and len(result.history) == 60
    assert "'train_seconds' is None, not a number of seconds; starting clean" in capfd.readouterr().out


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130_then_other_parameters_start_clean(tiny, tmp_path, capfd):
    out = tmp_path / "interrupted"
    proc = _start(tiny, out, steps=100_000)  # far more than the test waits for: Ctrl-C must end it
    _wait_for_checkpoint(proc, out, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    last = err.strip().splitlines()[-1]
    assert last.startswith("kit finetune: interrupted at step ") and "resume" in last
    saved = json.loads((staging_path(out) / CHECKPOINT / CONFIG_FILE).read_text())["step"]
    assert f"at step {saved} " in last
    result = finetune([IDENTITY], out, base=tiny, steps=3, lr=1e-3, batch_tokens=256, progress=True)
    assert result.resumed_from is None and len(result.history) == 3
    assert "other parameters or data; starting clean" in capfd.readouterr().out
