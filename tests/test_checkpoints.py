"""kit.training.checkpoints, the one checkpoint scheme of midtraining and finetuning: a SIGKILL at every
filesystem step of a save leaves the last good checkpoint loadable and resumable (never a mix of two
steps, never an error), any torch optimizer's state comes back exactly, and a damaged file is named.

How the kill is placed, with no hook in the code under test: a child process installs an audit hook
(`sys.addaudithook`) that counts the save's filesystem events (a file opened for writing, mkdir,
rename/replace, remove, rmdir, rmtree, the renameat2 swap through ctypes) and SIGKILLs itself at the
N-th; N runs 1, 2, ... until a save finishes unkilled. The children fork from a forkserver that has
imported torch, transformers and the kit once, so a try costs a fork rather than seconds of imports.
The state to save is made by optimizer steps on seeded random gradients: the same bits in every
process.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import multiprocessing
import os
import shutil
import signal
import sys

import pytest
import torch

from tiny_lm import make_tiny_model

from kit import paths
from kit.training import finetune, midtrain
from kit.training.checkpoints import (CHECKPOINT, CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, CheckpointError,
                                      read_checkpoint, save_checkpoint, trainable)
from kit.training.loop import TrainingRun
from kit.training.model import GPT, GPTConfig

PREV, NEW = 2, 4  # the step of the last good checkpoint, and of the save that is killed
GPT_CONFIG = GPTConfig(vocab_size=64, sequence_len=16, n_layer=1, n_head=2, n_embd=32)
# what a checkpoint must match to be resumed (kit.training.loop): midtraining's fingerprint, finetuning's hash
FINGERPRINT = {"train": {"lr": 0.01}, "model": GPT_CONFIG.to_dict(), "rows": "0123456789abcdef", "ranks": 1}
FINETUNE_KEY = {"fingerprint": "f"}
# what a save may do to the filesystem; each one is a place a kill can land
EVENTS = {"open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.link",
          "os.symlink", "ctypes.call_function"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def forkserver():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "safetensors.torch", "transformers", "peft", "kit.training.midtrain",
                                    "kit.training.finetune", "tiny_lm", __name__])
    return context


def build(loop: str, tiny, steps: int):
    """The model and optimizer each loop checkpoints (midtraining: a GPT, all of it trained, AdamW;
    finetuning: a Llama with LoRA adapters, fused AdamW over them), after `steps` seeded steps."""
    model = copy.deepcopy(untrained(loop, tiny))
    if loop == "midtrain":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    else:
        optimizer = torch.optim.AdamW(trainable(model).values(), lr=1e-3, betas=(0.9, 0.95), fused=True)
    step_with_random_gradients(model, optimizer, steps)
    return model, optimizer


@functools.cache
def untrained(loop: str, tiny):
    """Made once per process (loading the Llama and adding LoRA takes a while); `build` copies it."""
    torch.manual_seed(0)
    if loop == "midtrain":
        return GPT(GPT_CONFIG)
    from transformers import AutoModelForCausalLM

    from kit.training.finetune import PRESETS, prepare_model

    return prepare_model(AutoModelForCausalLM.from_pretrained(tiny), "lora", PRESETS["cpu-smoke"])


def step_with_random_gradients(model, optimizer, steps: int) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in trainable(model).values():
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def trained(step: int) -> dict:
    """The least state a checkpoint holds after `step` steps: the step and one history entry per step."""
    return {"step": step, "history": [{"step": s + 1} for s in range(step)]}


def save(loop: str, root, model, optimizer, step: int, tokenizer_dir) -> None:
    """What each loop calls to checkpoint (midtraining adds its tokenizer and its fingerprint; finetuning
    its hash and its seconds of training)."""
    if loop == "midtrain":
        from kit.tokens.tokenizer import Tokenizer

        run = midtrain._checkpoints(root, model, optimizer, Tokenizer.load(tokenizer_dir), FINGERPRINT,
                                    midtrain.TrainConfig())
    else:
        run = TrainingRun(root, model, optimizer, key=FINETUNE_KEY, total=10, state={"train_seconds": 1.5})
    run.history = trained(step)["history"]
    run.save(step)


def resumed(loop: str, root, tiny) -> tuple:
    """What a resuming run of `loop` gets from root: (weights, optimizer state, step), through the
    loop's own resume path."""
    model, optimizer = build(loop, tiny, 0)
    if loop == "midtrain":
        run = midtrain._checkpoints(root, model, optimizer, None, FINGERPRINT, midtrain.TrainConfig())
        midtrain._resume(run, root, log=print)
    else:
        run = TrainingRun(root, model, optimizer, key=FINETUNE_KEY, total=10, state={"train_seconds": 0.0})
        finetune._resume(run, True, log=print)
        assert run.state["train_seconds"] == 1.5
    assert [h["step"] for h in run.history] == list(range(1, run.start + 1))
    return snapshot(model, optimizer, run.start)


def snapshot(model, optimizer, step: int) -> tuple:
    return ({n: p.detach().clone() for n, p in trainable(model).items()}, copy.deepcopy(optimizer.state_dict()), step)


def same(a, b) -> bool:
    """Equal to the bit, types included (a tuple is not a list, float32 is not float64)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def save_until_killed(loop: str, root, tiny, tokenizer_dir, kill_at: int, exchange: bool) -> None:
    """In the child: the save of step NEW, SIGKILLed at its `kill_at`-th filesystem event."""
    if not exchange:
        paths._exchange = lambda a, b: False  # a filesystem that cannot swap two folders in one step
    model, optimizer = build(loop, tiny, NEW)
    under, seen = str(root), 0

    def hook(event: str, args: tuple) -> None:
        nonlocal seen
        if event not in EVENTS:
            return
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if mode else flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if isinstance(path, int) or not writes:
                return
        if event != "ctypes.call_function":
            path = os.fsdecode(args[0]) if not isinstance(args[0], int) else ""
            if os.path.isabs(path) and not path.startswith(under):  # rmtree's inner calls are relative
                return
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    save(loop, root, model, optimizer, NEW, tokenizer_dir)


@pytest.mark.parametrize("exchange", [True, False], ids=["one-step swap", "two renames"])
@pytest.mark.parametrize("loop", ["midtrain", "finetune"])
def test_a_kill_at_every_step_of_a_save_leaves_the_last_good_checkpoint(loop, exchange, tiny, tokenizer_dir, tmp_path,
                                                                        forkserver):
    pristine = tmp_path / "pristine"
    model, optimizer = build(loop, tiny, PREV)
    save(loop, pristine, model, optimizer, PREV, tokenizer_dir)
    prev = snapshot(model, optimizer, PREV)
    trained = build(loop, tiny, NEW)
    new = snapshot(*trained, NEW)
    assert not same(prev, new)
    found = []
    for n in itertools.count(1):
        root = tmp_path / f"killed-{n}"
        shutil.copytree(pristine, root)
        child = forkserver.Process(target=save_until_killed, args=(loop, root, tiny, tokenizer_dir, n, exchange))
        child.start()
        child.join(120)
        got = resumed(loop, root, tiny)
        if child.exitcode == 0:
            assert same(got, new)
            break
        assert child.exitcode == -signal.SIGKILL, f"the child failed at event {n}: exit code {child.exitcode}"
        assert same(got, prev) or same(got, new), f"killed at event {n}: neither the last checkpoint nor the new one"
        found.append("new" if same(got, new) else "prev")
        # the next run's save completes or undoes what the kill left, and a resume finds what it saved
        save(loop, root, *trained, NEW, tokenizer_dir)
        assert same(resumed(loop, root, tiny), new)
        shutil.rmtree(root)
    # the kills landed on both sides of the switch: before it the last checkpoint, after it the new one
    assert found.count("prev") >= 4 and "new" in found, found
    assert found == sorted(found, key=["prev", "new"].index), found


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.95), eps=1e-8),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=1e-3),
    lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True),
    lambda ps: torch.optim.Rprop(ps, lr=1e-2, etas=(0.4, 1.3)),
], ids=["AdamW", "SGD-momentum", "Adagrad", "Adam-amsgrad", "Rprop"])
def test_any_optimizer_state_round_trips_exactly_and_trains_on_the_same(make, tmp_path):
    torch.manual_seed(0)
    model = GPT(GPT_CONFIG)
    optimizer = make(model.parameters())
    step_with_random_gradients(model, optimizer, 3)
    save_checkpoint(tmp_path, model, optimizer, trained(3))

    torch.manual_seed(1)  # other weights, a fresh optimizer: all of it must come from the checkpoint
    loaded = GPT(GPT_CONFIG)
    loaded_optimizer = make(loaded.parameters())
    read_checkpoint(tmp_path).restore(loaded, loaded_optimizer)
    assert same(snapshot(loaded, loaded_optimizer, 3), snapshot(model, optimizer, 3))
    # the next step of the restored pair is the next step of the original, to the bit
    step_with_random_gradients(model, optimizer, 1)
    step_with_random_gradients(loaded, loaded_optimizer, 1)
    assert same(snapshot(loaded, loaded_optimizer, 4), snapshot(model, optimizer, 4))
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete"])
@pytest.mark.parametrize("name", [MODEL_FILE, OPTIMIZER_FILE])
def test_a_damaged_file_is_named_and_nothing_is_loaded(tmp_path, damage, name):
    torch.manual_seed(0)
    model = GPT(GPT_CONFIG)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step_with_random_gradients(model, optimizer, 2)
    save_checkpoint(tmp_path, model, optimizer, trained(2))
    path = tmp_path / CHECKPOINT / name
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    fresh = GPT(GPT_CONFIG)
    before = {n: p.detach().clone() for n, p in fresh.named_parameters()}
    with pytest.raises(CheckpointError, match=rf"{name} is missing or damaged"):
        read_checkpoint(tmp_path).restore(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9))
    assert all(torch.equal(p, before[n]) for n, p in fresh.named_parameters())


def test_a_checkpoint_of_another_model_is_refused_before_anything_changes(tmp_path):
    model = GPT(GPT_CONFIG)
    save_checkpoint(tmp_path, model, torch.optim.AdamW(model.parameters()), trained(0))
    other = GPT(GPTConfig(vocab_size=64, sequence_len=16, n_layer=2, n_head=2, n_embd=32))
    before = {n: p.detach().clone() for n, p in other.named_parameters()}
    with pytest.raises(CheckpointError, match="do not match this model's trainable parameters"):
        read_checkpoint(tmp_path).restore(other, torch.optim.AdamW(other.parameters()))
    assert all(torch.equal(p, before[n]) for n, p in other.named_parameters())


def test_the_config_is_json_with_the_loops_state_and_a_digest_per_file(tmp_path):
    model = GPT(GPT_CONFIG)
    save_checkpoint(tmp_path, model, torch.optim.AdamW(model.parameters()), trained(7),
                    extra=lambda folder: (folder / "notes.txt").write_text("kept"))
    config = json.loads((tmp_path / CHECKPOINT / CONFIG_FILE).read_text())
    assert config["step"] == 7 and set(config["sha256"]) == {MODEL_FILE, OPTIMIZER_FILE, "notes.txt"}
    assert read_checkpoint(tmp_path).state == trained(7)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]  # no staging or old folder left


def test_a_checkpoint_without_digests_is_refused_with_a_reason(tmp_path):
    model = GPT(GPT_CONFIG)
    save_checkpoint(tmp_path, model, torch.optim.AdamW(model.parameters()), trained(1))
    config = tmp_path / CHECKPOINT / CONFIG_FILE
    config.write_text(json.dumps({"step": 1, "optimizer_groups": []}))  # the layout midtrain wrote before
    with pytest.raises(CheckpointError, match="unreadable checkpoint .*written by an older kit"):
        read_checkpoint(tmp_path)
