"""kit.locking: one writer per output. A second run on an output that a live process is writing is refused
in one line naming that process, by every command that writes; the lock dies with its holder."""

import json
import signal
import subprocess
import sys
import time

import pytest

from fake_openai import MODEL, Reply
from kit import paths
from kit.commands.generate import main as generate_main
from kit.commands.memory import main as memory_main
from kit.generation.journal import Journal, file_paths
from kit.locking import LockedError, exclusive
from kit.records import read_records


GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})


def kit_command(*args):
    return [sys.executable, "-m", "kit", *map(str, args)]


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
