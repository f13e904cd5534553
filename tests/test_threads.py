"""kit.training.threads: the choice of torch's CPU threads, the slot files of the kit's loops, and the
re-check during a loop. Timings are the benchmark's (tests/bench/test_bench_threads.py), not these."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from kit import cores
from kit.training import threads
from kit.training.threads import Share, Slot, choose


@pytest.mark.parametrize("cores, others, peers, expected", [
    (2, 0, 0, 2),   # alone on an idle machine: every core
    (2, 0, 1, 1),   # beside another kit loop: half each
    (2, 1, 0, 1),   # another program runs on one core
    (2, 2, 0, 1),   # every core busy: one thread, never none
    (2, 5, 3, 1),
    (8, 0, 1, 4),
    (8, 0, 2, 2),   # 8 // 3
    (8, 3, 0, 5),
    (8, 1, 1, 4),   # the peer's running thread is the one counted: no double halving
    (1, 0, 0, 1),
    (1, 0, 4, 1),
])
def test_choose(cores, others, peers, expected):
    assert choose(cores, others, peers) == expected


def test_measurements_are_sane():
    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)


def test_others_running_counts_busy_processes():
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        assert cores.others_running() >= 2  # each child runs or waits for a core, in every sample
    finally:
        for child in busy:
            child.kill()
            child.wait()


def test_others_running_without_proc(monkeypatch):
    real = cores.Path.read_text

    def read_text(self, *a, **k):
        if str(self) == "/proc/loadavg":
            raise FileNotFoundError(self)
        return real(self, *a, **k)

    monkeypatch.setattr(cores.Path, "read_text", read_text)
    assert cores.others_running() == 0


def test_slots_in_one_process(tmp_path):
    a = Slot(tmp_path)
    assert a.peers() == 0
    b = Slot(tmp_path)
    assert a.peers() == b.peers() == 1
    b.close()
    assert a.peers() == 0
    a.close()
    assert list(tmp_path.iterdir()) == []


HOLD = """
import sys, time
from kit.training.threads import Slot
slot = Slot(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def _holder(folder) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_processes_register_and_a_dead_one_is_dropped(tmp_path):
    first, second = _holder(tmp_path), _holder(tmp_path)
    try:
        mine = Slot(tmp_path)
        assert mine.peers() == 2
        first.kill()  # SIGKILL: no clean-up of its own; the OS drops its lock
        first.wait()
        assert mine.peers() == 1
        assert len(list(tmp_path.glob("*.slot"))) == 2  # the dead one's file was removed
        mine.close()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_share_explicit_count_wins(tmp_path):
    before = torch.get_num_threads()
    holder = _holder(tmp_path)
    try:
        with Share(1, folder=tmp_path) as share:
            assert share.threads == torch.get_num_threads() == 1
            assert share.recheck(force=True) == 1
            assert len(list(tmp_path.glob("*.slot"))) == 2  # counted by the others all the same
    finally:
        holder.kill()
        holder.wait()
    assert torch.get_num_threads() == before
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.slot")] == [str(holder.pid)]  # ours is gone


def test_share_gives_threads_up_when_a_peer_starts_and_takes_them_back(tmp_path, monkeypatch):
    """The re-check runs from the optimizer hook during a loop, and set_num_threads mid-loop holds."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "others_running", lambda: 0)
    monkeypatch.setattr(threads, "RECHECK_S", 0.0)
    before = torch.get_num_threads()
    weight = torch.nn.Parameter(torch.ones(8, 8))
    optimizer = torch.optim.SGD([weight], lr=0.1)

    def step():
        (weight @ weight).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        return torch.get_num_threads()

    with Share(folder=tmp_path) as share:
        assert share.threads == 4
        assert step() == 4
        holder = _holder(tmp_path)
        try:
            assert step() == 2
        finally:
            holder.kill()
            holder.wait()
        assert step() == 4
    step()  # the hook is gone: no re-check after the loop
    assert torch.get_num_threads() == before


def test_recheck_waits_between_checks(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "others_running", lambda: calls.append(1) or 0)
    with Share(folder=tmp_path) as share:
        share.recheck()
        share.recheck()
    assert len(calls) == 1  # the check on entry; the next ones within RECHECK_S are skipped
