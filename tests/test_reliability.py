"""Issue 11's reproductions, each a test: one writer per output, hostile replies and inputs, deadlines,
secrets in no file or stream, truthful exits, full disks, and the small ones (export, surrogates, BOMs,
knowledge files, endpoint URLs). Every server is a real loopback one (tests/fake_openai.py).
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_openai import (MODEL, Reply, brackets_responder, echo_key_responder, hang_responder, html_responder,
                         trickle_responder)
from kit import paths
from kit.llm.endpoints import Endpoint
from kit.commands.export import main as export_main
from kit.generation.generate import Journal, file_paths, generate
from kit.commands.generate import main as generate_main
from kit.llm.client import LLMClient, RetriesExhausted, run_sync
from kit.llm.reply import parse_json_reply
from kit.locking import LockedError, exclusive
from kit.commands.memory import main as memory_main
from kit.pipeline import NotebookFailed, RunResult, failure_message
from kit.records import load_json, read_records
from kit.secrets import scrub, scrub_text
from kit.commands.validate import main as validate_main
from memory_fakes import model_responder

GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})
CANARY = "sk-canary-0d1e2f3a4b5c6d7e"
DEEP_META = '{"id": "x", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], ' \
            '"meta": ' + "[" * 5000 + "]" * 5000 + "}\n"


def kit_command(*args):
    return [sys.executable, "-m", "kit", *map(str, args)]


def no_traceback(text):
    assert "Traceback" not in text, text


def hold_lock(path):
    """Another process holding `path`'s lock until killed (what a second terminal's run would be)."""
    code = (f"import time\nfrom kit.locking import exclusive\nwith exclusive({str(path)!r}):\n"
            f"    print('locked', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=paths.project_root())
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def locked(tmp_path):
    procs = []

    def lock(path):
        procs.append(hold_lock(path))
        return procs[-1]

    yield lock
    for proc in procs:
        proc.kill()
        proc.wait()


# --- 1. one writer per output -------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_generate_on_the_same_output_is_refused_naming_the_first(tmp_path, fake_openai, capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD, delay=0.3))
    out = tmp_path / "c.jsonl"
    command = kit_command("generate", "--num", 40, "--workers", 2, "--output", out, "--endpoint", srv.base_url,
                          "--model", MODEL, "--no-progress")
    first = subprocess.Popen(command, cwd=paths.project_root(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        journal = file_paths(out)["journal"]
        deadline = time.monotonic() + 60
        while not (journal.exists() and '"status"' in journal.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for flags in ([], ["--seed", "2"], ["--append"]):
            assert generate_main(["--num", "40", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL,
                                  "--no-progress", *flags]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"being written by process {first.pid}" in err, err
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0, first.stderr.read()
    entries = [e for e in Journal(journal).load().entries.values()]
    assert len(entries) == 40 and len(read_records(out).records) == 40
    assert len(srv.chat_requests) == 40  # nobody asked twice


def test_memory_midtrain_and_pipeline_take_the_lock_too(tmp_path, locked, capsys):
    out = tmp_path / "synth.json"
    holder = locked(out)
    assert memory_main(["generate", "--fast", "--out", str(out), "--endpoint", "http://127.0.0.1:9/v1",
                        "--model", "m"]) == 1
    assert f"being written by process {holder.pid}" in capsys.readouterr().err

    from kit.commands.midtrain import main as midtrain_main

    holder = locked(tmp_path / "mid")
    assert midtrain_main(["--out", str(tmp_path / "mid"), "--size", "10", "--steps", "1", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kit midtrain:") and f"process {holder.pid}" in err and err.count("\n") == 1

    from kit.pipeline import run_pipeline

    locked(tmp_path / "runs" / "r1")
    with pytest.raises(LockedError, match="being written by process"):
        run_pipeline(run_id="r1", runs_root=tmp_path / "runs", echo=lambda *a, **k: None)


def test_the_lock_dies_with_its_holder(tmp_path):
    holder = hold_lock(tmp_path / "x")
    with pytest.raises(LockedError):
        with exclusive(tmp_path / "x"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with exclusive(tmp_path / "x"):  # no stale lock: the OS released it
        pass


def test_a_journal_refuses_replies_of_another_model(tmp_path, fake_openai):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = tmp_path / "c.jsonl"
    generate(2, out, endpoint=srv.base_url, model=MODEL, progress=False)
    with pytest.raises(ValueError, match="holds replies of model 'fake-model', not 'other-model'"):
        generate(4, out, endpoint=srv.base_url, model="other-model", progress=False)
    assert len(read_records(out).records) == 2


# --- 2. degenerate replies and hostile inputs ------------------------------------------------------------

def test_parse_json_reply_never_raises_on_degenerate_text():
    for text in ("[" * 1200, "{" * 100_000, '{"a": ' * 3000, "x" * (2**20 + 1), '["\\ud800"]'):
        reply = parse_json_reply(text)
        assert reply.value is None and reply.error, text[:20]
    assert parse_json_reply('{"a": [1, 2,]}').repaired


def test_a_looping_reply_is_rejected_and_never_replayed_from_the_cache(tmp_path, fake_openai, capsys):
    srv = fake_openai(brackets_responder)
    out = tmp_path / "c.jsonl"
    argv = ["--num", "3", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL, "--no-progress",
            "--reasks", "0"]
    assert generate_main(argv) == 0  # content rejects are outcomes, not failures
    captured = capsys.readouterr()
    no_traceback(captured.err)
    assert "3 rejected (" in captured.out and "json: 3" in captured.out
    assert len(srv.chat_requests) == 3
    assert generate_main([*argv, "--fresh"]) == 0
    assert len(srv.chat_requests) == 6  # asked again: the bad replies were not cached
    assert not list(Path(os.environ["KIT_CACHE_DIR"]).rglob("*.json"))


def test_memory_generate_with_a_looping_model_fails_in_one_line(tmp_path, fake_openai, capsys):
    srv = fake_openai(brackets_responder)
    out = tmp_path / "synth.json"
    rc = memory_main(["generate", "--fast", "--num-sessions", "2", "--max_attempts", "1", "--out", str(out),
                      "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "no session passed its checks" in err and "nothing written" in err, err
    no_traceback(err)
    assert not out.exists()


def test_deeply_nested_input_is_a_problem_of_its_line_in_every_reader(tmp_path, capsys, tokenizer_dir):
    bad = tmp_path / "deep.jsonl"
    bad.write_text(DEEP_META)
    result = read_records(bad, strict=False)
    assert result.records == [] and "nested more than" in str(result.errors[0]) and ":1:" in str(result.errors[0])

    assert validate_main([str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:1: " in captured.out and "nested more than" in captured.out
    from kit.commands.quality import main as quality_main
    from kit.commands.midtrain import main as midtrain_main
    from kit.commands.tokens import main as tokens_main

    commands = {"export": lambda: export_main([str(bad), "--format", "customjson", "--output", str(tmp_path / "o")]),
                "quality": lambda: quality_main([str(bad)]),
                "tokens": lambda: tokens_main([str(bad), "--tokenizer", str(tokenizer_dir)]),
                "midtrain": lambda: midtrain_main(["--data", str(bad), "--out", str(tmp_path / "m"), "--size", "5",
                                                   "--steps", "1", "--device", "cpu"])}
    for name, command in commands.items():
        try:
            command()
        except SystemExit:
            pass
        err = capsys.readouterr().err
        assert "nested more than" in err and "Traceback" not in err, (name, err)


def test_memory_datasets_and_training_sets_are_read_within_limits(tmp_path):
    from kit.training.datasets import DatasetError, SmolTalk
    from kit.memory.dataset import read_dataset

    deep = tmp_path / "synth.json"
    deep.write_text('{"task_id": "t", "chunks": [], "questions": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(ValueError, match="synth.json: not valid JSON \\(nested more than 64"):
        read_dataset(deep)
    rows = tmp_path / "smoltalk.jsonl"
    rows.write_bytes(b"\xef\xbb\xbf" + DEEP_META.encode())
    with pytest.raises(DatasetError, match="smoltalk.jsonl: row 1: nested more than 64"):
        SmolTalk(rows)


def test_load_json_limits():
    assert load_json('{"a": [[1]]}') == {"a": [[1]]}
    assert load_json('"\\ud83d\\ude00"') == "\U0001F600"  # a surrogate pair is one character
    for text, message in (("[" * 70 + "]" * 70, "nested more than 64"), ('"\\udc80"', "lone surrogate")):
        with pytest.raises(ValueError, match=message):
            load_json(text)


# --- 3. midtrain: atomic checkpoints, resume, Ctrl-C --------------------------------------------------

TINY = dict(n_layer=1, n_head=2, n_embd=32, sequence_len=32, batch_size=2, eval_every=100, progress=False,
            sample_tokens=0, peak_flops=1e9, val_fraction=0)


def spelling(n=12):
    from kit.training.tasks import SimpleSpelling

    return list(SimpleSpelling(n, seed=0))


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_leaves_the_previous_one_loadable(trained_tokenizer, tmp_path, monkeypatch):
    import safetensors.torch

    from kit.training.midtrain import load_checkpoint, midtrain

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
        midtrain(spelling(), trained_tokenizer, device="cpu", steps=4, checkpoint_every=2, out_dir=tmp_path, **TINY)
    assert "checkpoint" in str(info.value) and "\n" not in str(info.value)
    config = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert config["step"] == 2
    load_checkpoint(tmp_path)  # whole, and config and weights belong together
    assert not paths.staging_path(tmp_path / "checkpoint").exists()


def test_a_swap_cut_short_falls_back_to_the_previous_checkpoint(trained_tokenizer, tmp_path):
    from kit.training.midtrain import load_checkpoint, midtrain

    result = midtrain(spelling(), trained_tokenizer, device="cpu", steps=2, out_dir=tmp_path, **TINY)
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
    from kit.training.midtrain import midtrain

    full = midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, **TINY)
    real_lr_at = kit.training.midtrain.lr_at

    def ctrl_c_at_step_4(step, *args, **kwargs):
        if step == 3:
            raise KeyboardInterrupt
        return real_lr_at(step, *args, **kwargs)

    monkeypatch.setattr(kit.training.midtrain, "lr_at", ctrl_c_at_step_4)
    with pytest.raises(Interrupted) as info:
        midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, out_dir=tmp_path, checkpoint_every=0, **TINY)
    assert info.value.step == 3
    assert json.loads((tmp_path / "checkpoint" / "config.json").read_text())["step"] == 3
    monkeypatch.setattr(kit.training.midtrain, "lr_at", real_lr_at)

    resumed = midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, out_dir=tmp_path, **TINY)
    assert resumed.resumed_from == 3 and [h["step"] for h in resumed.history] == list(range(1, 7))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]

    other = midtrain(spelling(), trained_tokenizer, device="cpu", steps=6, out_dir=tmp_path,
                     **{**TINY, "progress": True, "lr": 1e-3})
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


# --- 4. deadlines ---------------------------------------------------------------------------------

@pytest.mark.parametrize("responder", [hang_responder, trickle_responder], ids=["never answers", "trickles"])
def test_a_request_that_never_completes_hits_the_deadlines(fake_openai, responder):
    srv = fake_openai(responder)
    client = LLMClient(Endpoint(srv.base_url, MODEL), timeout=0.6, item_timeout=2.0, backoff_base=0.05)

    async def ask():
        try:
            return await client.complete([{"role": "user", "content": "hi"}])
        finally:
            await client.aclose()

    with pytest.raises(RetriesExhausted, match="timed out after 0.6 s") as info:
        run_sync(ask())
    assert 1 <= info.value.attempts < 7  # the item deadline, not the retry cap, ended it
    assert "item deadline" in str(info.value)


def test_generate_cli_takes_timeouts_and_fails_truthfully(tmp_path, fake_openai, capsys):
    srv = fake_openai(hang_responder)
    rc = generate_main(["--num", "2", "--output", str(tmp_path / "c.jsonl"), "--endpoint", srv.base_url,
                        "--model", MODEL, "--no-progress", "--timeout", "0.3", "--item-timeout", "0.8"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 of 2 items failed with API errors" in err and "timed out after" in err


# --- 5. secrets ---------------------------------------------------------------------------------------

def test_a_key_echoed_by_the_server_reaches_no_file_and_no_stream(tmp_path, fake_openai, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    srv = fake_openai(echo_key_responder(500))
    out = tmp_path / "run" / "c.jsonl"
    rc = generate_main(["--num", "2", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL,
                        "--no-progress", "--item-timeout", "1"])
    assert rc == 1
    assert srv.chat_requests[0].headers["authorization"] == f"Bearer {CANARY}"  # the key was in use
    streams = capsys.readouterr()
    assert "Incorrect API key provided: <redacted>" in streams.err

    sessions, seen = model_responder(), []

    def one_session_fails_echoing_the_key(request, n_seen):  # the other session passes: a dataset is written
        prompt = request["messages"][-1]["content"]
        seen.append(prompt)
        return Reply(status=500, echo_key=True) if prompt == seen[0] else sessions(request, n_seen)

    memory_srv = fake_openai(one_session_fails_echoing_the_key)
    synth = tmp_path / "run" / "synth.json"
    rc = memory_main(["generate", "--fast", "--num-sessions", "2", "--max_attempts", "2", "--no_diversify",
                      "--out", str(synth), "--endpoint", memory_srv.base_url, "--model", MODEL, "--no-progress",
                      "--item-timeout", "0.5"])
    streams = [streams.out, streams.err, *capsys.readouterr()]
    assert rc == 0, streams
    assert "Incorrect API key provided: <redacted>" in synth.read_text()  # the echoed error is kept, the key is not
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"c.jsonl.journal.jsonl", "c.rejects.jsonl", "c.manifest.json"} <= {p.name for p in files}
    for text in streams + [p.read_text(errors="replace") for p in files]:
        assert CANARY not in text


def test_scrub_covers_env_dotenv_and_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("MY_SERVICE_API_KEY", "key-1234567890")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENROUTER_API_KEY=sk-or-from-dotenv-123456\nPLAIN_SETTING=visible-value\n")
    text = ("a hf_abcdefghijklmnop b key-1234567890 c sk-or-from-dotenv-123456 d visible-value "
            "e https://user:pa55word@example.com/v1 f http://token@host:8080/x")
    assert scrub_text(text) == ("a <redacted> b <redacted> c <redacted> d visible-value "
                                "e https://***@example.com/v1 f http://***@host:8080/x")
    assert scrub({"api_key": "x" * 9, "tokens": 3, "note": ["https://a:b@h/"]}) == \
        {"api_key": "<redacted>", "tokens": 3, "note": ["https://***@h/"]}


def test_credentials_in_an_endpoint_url_are_refused_without_showing_them(tmp_path, fake_openai, capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    url = srv.base_url.replace("http://", "http://alice:hunter2-secret@")
    assert generate_main(["--num", "2", "--output", str(tmp_path / "c.jsonl"), "--endpoint", url, "--model", MODEL,
                          "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "has credentials in it" in err and "http://***@127.0.0.1" in err and "hunter2" not in err
    assert not srv.chat_requests
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert "hunter2" not in path.read_text(errors="replace"), path


def test_pipeline_failure_message_keeps_the_leak_notice_and_hides_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    failure = NotebookFailed("02_generate", tmp_path / "02.ipynb", "cell 3",
                             f"FatalAPIError: 401 Unauthorized: Incorrect API key provided: {CANARY}")
    result = RunResult("r", tmp_path, "failed", [], tmp_path / "manifest.json", failure, ["notebooks/02.ipynb"])
    message = failure_message(result)
    assert "notebook 02_generate failed" in message and "SECRET LEAK" in message and CANARY not in message


def test_a_key_printed_by_a_notebook_is_cut_out_of_the_executed_notebook(tmp_path, monkeypatch):
    from test_pipeline import SETUP, run, write_notebook

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_echo.ipynb", 'run_dir = "x"', SETUP,
                   'print("server said: bad key", os.environ["OPENAI_API_KEY"])',
                   'raise RuntimeError("401 " + os.environ["OPENAI_API_KEY"])')
    result, manifest = run(folder, tmp_path)
    executed = (result.run_dir / "notebooks" / "01_echo.ipynb").read_text()
    assert "server said: bad key <redacted>" in executed and CANARY not in executed
    assert result.failure is not None and result.secret_hits == []
    assert CANARY not in failure_message(result) and CANARY not in json.dumps(manifest)


# --- 6. truthful exits -----------------------------------------------------------------------------

def test_memory_generate_against_an_html_page_fails_and_writes_nothing(tmp_path, fake_openai, capsys):
    srv = fake_openai(html_responder)
    out = tmp_path / "synth.json"
    rc = memory_main(["generate", "--fast", "--num-sessions", "2", "--max_attempts", "1", "--out", str(out),
                      "--endpoint", srv.base_url, "--model", MODEL, "--no-progress", "--item-timeout", "1"])
    captured = capsys.readouterr()
    assert rc == 1 and "no request got a reply" in captured.err and "not an OpenAI chat completion" in captured.err
    assert "Dataset written" not in captured.out and not out.exists()


def test_the_cache_belongs_to_its_server_and_a_cache_only_run_says_so(tmp_path, fake_openai, capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    argv = ["--num", "3", "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"]
    assert generate_main([*argv, "--output", str(tmp_path / "a.jsonl")]) == 0
    assert generate_main([*argv, "--output", str(tmp_path / "b.jsonl")]) == 0
    assert "0 requests: all 3 replies from the cache of model fake-model" in capsys.readouterr().out
    assert generate_main([*argv, "--output", str(tmp_path / "c.jsonl"), "--no-cache"]) == 0
    assert len(srv.chat_requests) == 6 and "from the cache" not in capsys.readouterr().out

    refused = srv.base_url
    srv.stop()  # same model name, nothing listening: the cache of a live server must not answer for it
    rc = generate_main(["--num", "3", "--endpoint", refused.replace("/v1", "/v2"), "--model", MODEL, "--no-progress",
                        "--output", str(tmp_path / "d.jsonl"), "--item-timeout", "1"])
    assert rc == 1 and "failed with API errors" in capsys.readouterr().err


# --- 7. a full disk -----------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_naming_the_file_and_keeps_earlier_data(tmp_path, fake_openai, monkeypatch,
                                                                        capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = tmp_path / "c.jsonl"
    argv = ["--num", "3", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"]
    assert generate_main(argv) == 0
    before = out.read_bytes()
    capsys.readouterr()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    rc = generate_main([*argv, "--append", "--no-cache"])
    monkeypatch.setattr(os, "fsync", real_fsync)
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "No space left on device" in err
    assert "c.jsonl" in err and "Traceback" not in err
    assert out.read_bytes() == before and len(read_records(out).records) == 3
    Journal(file_paths(out)["journal"]).load()  # still readable


# --- 8. the small ones ----------------------------------------------------------------------------

def _write_lines(path, *objs, raw=()):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs) + "".join(raw), encoding="utf-8")
    return path


def test_export_refuses_what_validate_calls_errors_or_skips_them_counted(tmp_path, capsys):
    good = {"id": "g", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"id": "b", "messages": [{"role": "assistant", "content": "hello"}]}
    src = _write_lines(tmp_path / "in.jsonl", good, bad)
    out = tmp_path / "out.jsonl"
    assert export_main([str(src), "--format", "customjson", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "record b:" in err and "nothing written" in err and not out.exists()
    assert export_main([str(src), "--format", "customjson", "--output", str(out), "--skip-invalid"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 conversations" in printed and "left out 1 invalid ones (--skip-invalid)" in printed
    assert [json.loads(line) for line in out.read_text().splitlines()] == [good["messages"]]


def test_parquet_names_the_content_type(tmp_path, capsys):
    src = _write_lines(tmp_path / "in.jsonl", {"id": "n", "messages": [{"role": "user", "content": 42},
                                                                      {"role": "assistant", "content": "x"}]})
    assert export_main([str(src), "--format", "parquet", "--output", str(tmp_path / "o.parquet"),
                        "--skip-invalid"]) == 0
    assert export_main([str(src), "--format", "parquet", "--output", str(tmp_path / "o.parquet"), "--force"]) == 1
    err = capsys.readouterr().err
    assert "content parts" not in err and "int" in err


def test_lone_surrogates_are_a_problem_at_file_and_line(tmp_path, capsys):
    good = {"id": "g", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    src = _write_lines(tmp_path / "s.jsonl", good, raw=['{"messages": [{"role": "user", "content": "a\\udc80"}, '
                                                        '{"role": "assistant", "content": "b"}]}\n'])
    assert validate_main([str(src)]) == 1
    assert f"{src}:2: " in capsys.readouterr().out
    assert export_main([str(src), "--format", "customjson", "--output", str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err
    assert f"{src}:2: " in err and "lone surrogate" in err and "Traceback" not in err


def test_a_bom_at_the_start_of_a_file_is_accepted(tmp_path, capsys):
    record = {"id": "g", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    src = tmp_path / "bom.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + (json.dumps(record) + "\n").encode() * 2)
    assert [r["id"] for r in read_records(src).records] == ["g", "g"]
    assert validate_main([str(src), "--structure-only"]) == 0


def test_a_knowledge_file_that_is_not_utf8_is_named(tmp_path):
    from kit.generation.sampling import load_dimensions

    folder = tmp_path / "knowledge"
    shutil.copytree(paths.knowledge_dir(), folder)
    (folder / "topics.yaml").write_bytes((folder / "topics.yaml").read_bytes() + b"\n- caf\xe9\n")
    with pytest.raises(ValueError, match=r"topics\.yaml:\d+: not valid UTF-8 \(byte 0xe9\)"):
        load_dimensions(folder)


def test_an_endpoint_that_is_not_a_url_is_refused_at_once(tmp_path, capsys):
    for url in ("not-a-url", "ftp://host/v1", "http://"):
        assert generate_main(["--num", "1", "--output", str(tmp_path / "c.jsonl"), "--endpoint", url,
                              "--no-progress"]) == 1
        assert "is not an http(s) URL" in capsys.readouterr().err
