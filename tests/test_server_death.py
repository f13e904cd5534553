"""When the embedded model server dies, every command says so in one line, stops, and rejects nothing.

A crashing llama.cpp build (signal 11 on the first chat completion) used to look like a flaky network:
seven retries against a closed port, then each item rejected as an API error. Here a stand-in server
(tests/fake_openai.py --crash-after N, a real process on loopback) takes the embedded server's place
and kills itself with SIGSEGV at its Nth request; each command that talks to a model must print the
server's exit, exit non-zero, and leave nothing marked as failed, so the same command afterwards asks
those items again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kit.__main__ import main as kit_main
from kit.llm import local_server
from kit.paths import project_root

STAND_IN = Path(__file__).with_name("fake_openai.py")
CRASH = "the embedded model server exited (signal 11: segmentation fault)"
REFERENCE = project_root() / "knowledge" / "reference" / "identity.jsonl"


@pytest.fixture
def stand_in(monkeypatch):
    """`stand_in(n)`: the next embedded servers are the stand-in, crashing at request n (0: never)."""
    crash_after = {"n": 0}

    def start(gguf, port, alias, n_ctx, n_threads, log_path):
        command = [sys.executable, str(STAND_IN), "--port", str(port), "--latency", "0", "--reply", "conversation",
                   "--crash-after", str(crash_after["n"])]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        local_server._running.add(proc)
        return proc

    monkeypatch.setattr(local_server, "_start", start)
    monkeypatch.setenv("KIT_SERVERS", "1")  # the crash comes at a known request: each server counts its own

    def set_crash(n: int) -> None:
        crash_after["n"] = n

    return set_crash


def run(capsys, *argv: str) -> tuple[int, str]:
    code = kit_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def one_crash_line(err: str) -> None:
    lines = [line for line in err.splitlines() if CRASH in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err


def test_generate_stops_rejects_nothing_and_resumes(stand_in, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    stand_in(3)
    code, err = run(capsys, "generate", "--recipe", "v2", "--num", "5", "--output", str(out), "--no-progress")
    assert code != 0
    one_crash_line(err)
    assert "gave up after" not in err  # not retried against a closed port
    journal = [json.loads(line) for line in out.with_name(out.name + ".journal.jsonl").read_text().splitlines()]
    assert not [e for e in journal if e.get("status") == "rejected"], journal
    rejects = out.with_name("c.rejects.jsonl")
    assert not rejects.exists() or rejects.read_text().strip() == ""
    kept_before = out.read_text().splitlines()
    assert len(kept_before) == 2  # the two answered before the crash are kept

    stand_in(0)
    code, err = run(capsys, "generate", "--recipe", "v2", "--num", "5", "--output", str(out), "--no-progress")
    assert code == 0, err
    after = out.read_text().splitlines()
    assert len(after) == 5 and after[:len(kept_before)] == kept_before


def test_judge_stops_and_marks_nothing_unjudged(stand_in, tmp_path, capsys):
    stand_in(1)
    scores = tmp_path / "scores.jsonl"
    code, err = run(capsys, "judge", str(REFERENCE), "--out", str(scores), "--no-progress")
    assert code != 0
    one_crash_line(err)
    written = scores.read_text().splitlines() if scores.exists() else []
    assert not [line for line in written if "unjudged" in line]


def test_identity_eval_stops(stand_in, tmp_path, capsys):
    stand_in(1)
    code, err = run(capsys, "identity", "eval", "--limit", "3", "--no-progress", "--out", str(tmp_path / "i.json"))
    assert code != 0
    one_crash_line(err)
    assert not (tmp_path / "i.json").exists()


def test_memory_generate_stops(stand_in, tmp_path, capsys):
    stand_in(1)
    out = tmp_path / "m.json"
    code, err = run(capsys, "memory", "generate", "--fast", "--out", str(out), "--no-progress")
    assert code != 0
    one_crash_line(err)
    assert not out.exists()


def test_memory_eval_stops(stand_in, tmp_path, capsys):
    stand_in(1)
    out, data = tmp_path / "scores.json", tmp_path / "tiny.json"
    data.write_text(json.dumps({"task_id": "t", "chunks": ["2024-01-02\nuser: I spent 5 yuan on coffee."],
                                "questions": [{"qid": "q0", "query": "How much did I spend in total?", "answer": "5.00",
                                               "position": 0, "category": "total_amount"}]}))
    code, err = run(capsys, "memory", "eval", str(data), "--out", str(out), "--no-progress")
    assert code != 0
    one_crash_line(err)
    assert not out.exists()
