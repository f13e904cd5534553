"""kit.training.midtrain: the loss falls, a tiny model memorises a few conversations and answers with them,
sft mode trains on the assistant's tokens only, checkpoints round-trip, and the CLI reports errors.
A checkpoint cut short by a full disk or a kill between renames leaves the previous one loadable; an
interrupted run resumes exactly, and SIGKILL or Ctrl-C of `kit midtrain` resumes at the saved step."""

import json
import os
import subprocess
import sys
import errno
import signal
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kit.tokens.packing import pack_rows, targets
from kit.training.tasks import SimpleSpelling
from kit.training.engine import chat
from kit.commands.midtrain import main
from kit.training.midtrain import PRESETS, load_checkpoint, midtrain, split_validation
from kit.training.runtime import lr_at
from kit import paths

TINY = dict(n_layer=2, n_head=2, n_embd=64, sequence_len=64, batch_size=4, eval_every=10, progress=False,
            sample_tokens=0, peak_flops=1e9)

FACTS = [
    ("What is your name?", "My name is kit, a small model."),
    ("Who made you?", "I was trained in a notebook."),
    ("What do you like?", "I like packing tokens."),
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread: splitting 64-wide matmuls over cores costs more than it saves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def facts():
    return [{"id": f"fact:{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
             "meta": {"task": "identity"}} for i, (q, a) in enumerate(FACTS)]


def test_a_few_steps_lower_the_loss(trained_tokenizer):
    records = list(SimpleSpelling(60, seed=0))
    result = midtrain(records, trained_tokenizer, device="cpu", steps=12, lr=3e-3, **TINY)
    losses = [h["train_loss"] for h in result.history]
    assert np.mean(losses[-3:]) < losses[0] - 0.5
    assert result.val_loss is not None and result.val_bpb is not None and result.val_bpb > 0
    assert result.tokens_per_s > 0 and 0 < result.mfu
    assert result.trained_tokens["mid"] > result.trained_tokens["sft"] > 0


def test_training_is_deterministic_on_cpu(trained_tokenizer):
    records = list(SimpleSpelling(30, seed=0))
    a = midtrain(records, trained_tokenizer, device="cpu", steps=4, **TINY)
    b = midtrain(records, trained_tokenizer, device="cpu", steps=4, **TINY)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_overfits_a_handful_and_answers_with_a_trained_reply(trained_tokenizer):
    # rows of 33 tokens hold one conversation each, so every answer is learnt from its question alone
    # (conversations sharing a row would also learn to follow each other)
    result = midtrain(facts(), trained_tokenizer, device="cpu", steps=120, lr=1e-2, val_fraction=0,
                      warmup_frac=0.05, decay_frac=0.3, **{**TINY, "sequence_len": 32})
    assert result.packing["rows"] == 3 and result.packing["cropped"] == 0
    assert result.final_train_loss < 0.1
    for question, answer in FACTS:
        assert chat(result.model, trained_tokenizer, question, max_new_tokens=40) == answer


def test_sft_mode_trains_on_assistant_tokens_only(trained_tokenizer):
    tok = trained_tokenizer
    conversation = facts()[0]
    rendered = tok.render_conversation(conversation)
    packed = pack_rows([(rendered.ids, rendered.mask)], 64 + 1, pad_id=tok.bos_id, bos_id=tok.bos_id)
    sft = targets(packed, "sft")[0]
    # the targets left in sft mode spell the assistant's reply and its end token, nothing of the user
    assert tok.decode(sft[sft != -1].tolist()) == FACTS[0][1] + "<|assistant_end|>"
    # and the model's loss in sft mode is the cross-entropy over exactly those positions, by hand
    torch.manual_seed(0)
    from kit.training.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=tok.vocab_size, sequence_len=64, n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():
        model.lm_head.weight.normal_()
    x = torch.from_numpy(packed.ids[:, :-1].astype(np.int64))
    logits = model(x)[0]
    keep = torch.from_numpy(packed.mask[0, 1:] == 1)
    by_hand = F.cross_entropy(logits[keep], torch.from_numpy(packed.ids[0, 1:].astype(np.int64))[keep])
    assert torch.allclose(model(x, torch.from_numpy(sft)[None]), by_hand, atol=1e-6)
    # a user token's logits get no gradient in sft mode
    logits_leaf = model(x).detach().requires_grad_(True)
    F.cross_entropy(logits_leaf[0], torch.from_numpy(sft), ignore_index=-1).backward()
    user_positions = ~keep
    assert logits_leaf.grad[0, user_positions].abs().max() == 0
    assert logits_leaf.grad[0, keep].abs().max() > 0


def test_checkpoint_round_trip_gives_identical_logits(trained_tokenizer, tmp_path):
    result = midtrain(facts(), trained_tokenizer, device="cpu", steps=3, val_fraction=0, out_dir=tmp_path, **TINY)
    model, tokenizer = load_checkpoint(tmp_path)
    idx = torch.tensor([trained_tokenizer.render_for_completion(facts()[0])])
    result.model.eval()
    assert torch.equal(model(idx), result.model(idx))
    assert tokenizer.encode("packing tokens") == trained_tokenizer.encode("packing tokens")
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["trained_tokens"] == result.trained_tokens and "environment" in manifest


@pytest.mark.parametrize("overrides, message", [({"steps": 0}, "steps must be >= 1, got 0"),
                                                ({"loss_mode": "all"}, "unknown loss mode 'all'")])
def test_impossible_settings_are_refused_before_training(trained_tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        midtrain(list(SimpleSpelling(4, seed=0)), trained_tokenizer, device="cpu", **{**TINY, **overrides})


def test_schedule_warms_up_holds_and_decays():
    config = PRESETS["cpu-smoke"]
    lrs = [lr_at(s, config.steps, config.lr, warmup=config.warmup_frac, decay=config.decay_frac,
                 final=config.final_lr_frac) for s in range(config.steps)]
    assert lrs[0] < lrs[10] == config.lr
    assert lrs[-1] == pytest.approx(config.lr * (config.final_lr_frac + (1 - config.final_lr_frac) / 50))
    assert all(a >= b for a, b in zip(lrs[50:], lrs[51:]))


def test_validation_split_keeps_repeats_together():
    records = [{"id": f"identity:{i}", "messages": [], "meta": {"source_id": f"c{i % 10}"}} for i in range(40)]
    train, val = split_validation(records, 0.3, seed=0)
    assert val and train
    assert not {r["meta"]["source_id"] for r in train} & {r["meta"]["source_id"] for r in val}


def test_cli_runs_and_writes_a_checkpoint(tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "midtrain"
    rc = main(["--preset", "cpu-smoke", "--steps", "1", "--size", "20", "--device", "cpu", "--out", str(out),
               "--tokenizer", str(tokenizer_dir), "--sample-tokens", "0", "--peak-flops", "1e9"])
    assert rc == 0
    assert {"checkpoint", "history.json", "manifest.json", "loss.png"} <= {p.name for p in out.iterdir()}
    assert {"model.safetensors", "optimizer.safetensors", "config.json", "tokenizer"} <= {
        p.name for p in (out / "checkpoint").iterdir()}
    assert "targets: mid" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    rc = main(["--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kit midtrain:") and "missing.jsonl" in err and "\n" not in err
    (tmp_path / "o").write_text("")
    assert main(["--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == f"kit midtrain: --out {tmp_path / 'o'} is a file; give a folder\n"


DDP_SCRIPT = """
import hashlib, os, sys
import torch
from kit.training.tasks import SimpleSpelling
from kit.tokens.tokenizer import Tokenizer
from kit.training.midtrain import midtrain
torch.set_num_threads(1)
r = midtrain(list(SimpleSpelling(60, seed=0)), Tokenizer.load(sys.argv[1]), device="cpu", steps=3, **TINY)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in r.model.parameters())).hexdigest()
losses = " ".join(str(h["train_loss"]) for h in r.history)
open(os.path.join(sys.argv[2], "rank" + os.environ["RANK"]), "w").write(f"{digest} {r.ranks} {losses}")
"""


@pytest.mark.slow
def test_torchrun_ranks_train_different_rows_into_one_model(tokenizer_dir, tmp_path):
    """torchrun's DDP path, on CPU processes with gloo: the ranks see different rows (their losses
    differ) yet end with identical weights, which only gradient all-reduce can give."""
    script = tmp_path / "ddp_train.py"
    script.write_text(f"TINY = {TINY!r}\n" + DDP_SCRIPT)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tokenizer_dir), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    (digest0, ranks0, *losses0), (digest1, ranks1, *losses1) = ((tmp_path / f"rank{r}").read_text().split()
                                                                for r in (0, 1))
    assert ranks0 == ranks1 == "2"
    assert losses0 != losses1
    assert digest0 == digest1


# ---- atomic checkpoints, resume, Ctrl-C ----------------------------------------------------------

def kit_command(*args):
    return [sys.executable, "-m", "kit", *map(str, args)]


ONE_LAYER = dict(n_layer=1, n_head=2, n_embd=32, sequence_len=32, batch_size=2, eval_every=100, progress=False,
                 sample_tokens=0, peak_flops=1e9, val_fraction=0)


def spelling(n=12):
    return list(SimpleSpelling(n, seed=0))


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_leaves_the_previous_one_loadable(trained_tokenizer, tmp_path, monkeypatch):
    import safetensors.torch
    real, calls = safetensors.torch.save_file, []

    def save_file(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) > 2:  # the first checkpoint (weights, optimizer) fits; the disk is full after it
            with open(filename, "wb") as fh:
                fh.write(b"\0" * 10)  # half a file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    with pytest.raises(OSError, match="No space left on device") as info:
        midtrain(spelling(), trained_tokenizer, device="cpu", steps=4, checkpoint_every=2, out_dir=tmp_path, **ONE_LAYER)
    assert "checkpoint" in str(info.value) and "\n" not in str(info.value)
    config = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert config["step"] == 2
    load_checkpoint(tmp_path)  # whole, and config and weights belong together
    assert not paths.staging_path(tmp_path / "checkpoint").exists()


def test_a_swap_cut_short_falls_back_to_the_previous_checkpoint(trained_tokenizer, tmp_path):
    result = midtrain(spelling(), trained_tokenizer, device="cpu", steps=2, out_dir=tmp_path, **ONE_LAYER)
    os.replace(tmp_path / "checkpoint", tmp_path / ".checkpoint.old")  # killed between the two renames
    paths.staging_path(tmp_path / "checkpoint").mkdir()  # and a half-written new one beside it
    (paths.staging_path(tmp_path / "checkpoint") / "model.safetensors").write_bytes(b"\0" * 7)
    model, _ = load_checkpoint(tmp_path)
    assert all((a == b).all() for a, b in zip(model.parameters(), result.model.parameters()))


@pytest.mark.slow
def test_an_interrupted_run_resumes_exactly_and_other_parameters_start_over(trained_tokenizer, tmp_path,
                                                                           monkeypatch, capsys):
    import kit.training.midtrain
    from kit.training.loop import Interrupted

    full = midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, **ONE_LAYER)
    real_lr_at = kit.training.midtrain.lr_at

    def ctrl_c_at_step_4(step, *args, **kwargs):
        if step == 3:
            raise KeyboardInterrupt
        return real_lr_at(step, *args, **kwargs)

    monkeypatch.setattr(kit.training.midtrain, "lr_at", ctrl_c_at_step_4)
    with pytest.raises(Interrupted) as info:
        midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, out_dir=tmp_path, checkpoint_every=0, **ONE_LAYER)
    assert info.value.step == 3
    assert json.loads((tmp_path / "checkpoint" / "config.json").read_text())["step"] == 3
    monkeypatch.setattr(kit.training.midtrain, "lr_at", real_lr_at)

    resumed = midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, out_dir=tmp_path, **ONE_LAYER)
    assert resumed.resumed_from == 3 and [h["step"] for h in resumed.history] == list(range(1, 7))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]

    other = midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, out_dir=tmp_path,
                     **{**ONE_LAYER, "progress": True, "lr": 1e-3})
    assert other.resumed_from == 0
    assert "made with other settings (lr 0.006 -> 0.001)" in capsys.readouterr().out


MIDTRAIN_ARGS = ["--preset", "cpu-smoke", "--size", "30", "--device", "cpu", "--sample-tokens", "0",
                 "--peak-flops", "1e9", "--checkpoint-every", "2"]


def _wait_for_checkpoint(out, proc, least=2):
    config = out / "checkpoint" / "config.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(config.read_text())["step"] >= least:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_at_the_saved_step(tokenizer_dir, tmp_path):
    out = tmp_path / "mid"
    command = kit_command("midtrain", *MIDTRAIN_ARGS, "--steps", 40, "--tokenizer", tokenizer_dir, "--out", out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=paths.project_root(), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads((out / "checkpoint" / "config.json").read_text())["step"]
    assert 2 <= saved < 40
    rerun = subprocess.run(command, cwd=paths.project_root(), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from the checkpoint of step {saved}/40" in rerun.stdout
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, 41))


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130_with_one_line(tokenizer_dir, tmp_path):
    out = tmp_path / "mid"
    command = kit_command("midtrain", *MIDTRAIN_ARGS, "--steps", 400, "--tokenizer", tokenizer_dir, "--out", out)
    proc = subprocess.Popen(command, cwd=paths.project_root(), env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.count("\n") == 1 and err.startswith("kit midtrain: interrupted; the checkpoint of step "), err
    step = int(err.split("step ")[1].split()[0])
    assert json.loads((out / "checkpoint" / "config.json").read_text())["step"] == step >= 2
