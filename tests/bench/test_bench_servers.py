"""The embedded model on every free core: `kit generate --recipe distill` with one server per free core
against one server, and two runs at once against the two one after the other.

The real command (journal, verifier, reply cache off, the embedded SmolLM2-135M on llama.cpp) asks the
same items in each configuration; the seeded replies are the same whichever server answers, so the
runs do the same work. Printed: requests/s with one server (`KIT_SERVERS=1`, as the kit ran before)
and with the default (one per free core), their ratio against LIMIT; then two runs started together
against the same two run one after the other (they must not thrash: the second sizes itself by the
cores the first leaves free). Run it on idle cores: other programs' threads are inside the figures.
One server and several must write the same conversations (kit.llm.local_server._reuse_prompts_only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kit.cores import free_cores

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 16
LIMIT = 1.7  # on 2 idle cores: two servers should come close to twice one
THRASH_LIMIT = 1.15  # two runs at once may take at most this much longer than the two in turn


def _start(out: Path, servers: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "KIT_SERVERS"}
    if servers:
        env["KIT_SERVERS"] = servers
    command = [sys.executable, "-m", "kit", "generate", "--recipe", "distill", "--num", str(ITEMS), "--candidates", "2",
               "--no-cache", "--no-progress", "--output", str(out)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _requests(proc: subprocess.Popen, out: Path) -> int:
    log, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, log[-3000:]
    manifest = json.loads(out.with_name(out.stem + ".manifest.json").read_text())
    return manifest["client"]["requests"]


def _timed(out: Path, servers: str | None) -> tuple[float, int]:
    """(seconds of the whole command, servers' start and the interpreter's included; requests sent)."""
    started = time.perf_counter()
    n = _requests(_start(out, servers), out)
    return time.perf_counter() - started, n


def _conversations(out: Path) -> list[list[dict]]:
    """What a student would learn from: the messages, not meta (which names the server's port)."""
    return [json.loads(line)["messages"] for line in out.read_text().splitlines()]


def test_servers_on_every_free_core(tmp_path):
    cores = free_cores()
    one_s, one_n = _timed(tmp_path / "one.jsonl", "1")
    many_s, many_n = _timed(tmp_path / "many.jsonl", None)
    ratio = (many_n / many_s) / (one_n / one_s)
    print(f"\n{cores} free cores; one server: {one_n} requests in {one_s:.1f} s ({one_n / one_s:.2f}/s); "
          f"one per free core: {many_n} in {many_s:.1f} s ({many_n / many_s:.2f}/s); "
          f"ratio {ratio:.2f}x (limit {LIMIT}x on 2 idle cores)")
    assert _conversations(tmp_path / "one.jsonl") == _conversations(tmp_path / "many.jsonl")  # same replies
    if cores >= 2:
        assert ratio >= LIMIT


def test_two_runs_at_once_do_not_thrash(tmp_path):
    in_turn = sum(_timed(tmp_path / f"turn{i}.jsonl", None)[0] for i in range(2))
    started = time.perf_counter()
    procs = [(_start(tmp_path / f"once{i}.jsonl", None), tmp_path / f"once{i}.jsonl") for i in range(2)]
    for proc, out in procs:
        _requests(proc, out)
    at_once = time.perf_counter() - started
    print(f"\ntwo runs one after the other: {in_turn:.1f} s; at once: {at_once:.1f} s; "
          f"ratio {at_once / in_turn:.2f} (limit {THRASH_LIMIT})")
    assert at_once <= THRASH_LIMIT * in_turn
