"""How many CPU threads a torch loop in this process should use, given the machine and what else runs.

Why a module of its own: torch's CPU threads wait for each other at the end of every operation, so
one that loses its core stalls the rest, and two processes that each take every core thrash. On this
2-core machine a small transformer training loop took 6.9 s alone with 2 threads (10.3 s with 1),
30 s beside a copy of itself with 2 threads each, and 14 s beside a copy with 1 thread each. (Waiting
threads that sleep instead of spinning, OMP_WAIT_POLICY=PASSIVE, also stop the thrash, 11 s beside a
copy, but cost a loop alone 16%, 8.0 s, and work only when set before torch loads: not the kit's to
choose for a notebook.) The real finetune: 16 LoRA steps trained in 23 s alone, in 122-124 s each beside
a second with every core, in 44-45 s each beside a second with this rule (tests/bench/test_bench_threads.py).

The rule (`choose`): the cores this process may run on (`os.sched_getaffinity`), shared evenly among
the kit's torch loops running now, and never more than the cores the rest of the machine leaves free;
at least one. The kit's loops find each other through slot files (`Slot`): one per loop in a folder
under the temp directory, each locked by its loop, so the OS releases it when the loop's process
dies. Other programs (a llama.cpp server answering, a test runner) count through the runnable threads
in /proc/loadavg, less our own, the least of a few samples so that one that ran for a moment is not
counted. An explicit count always wins. `Share` holds a loop's slot and re-checks at most every
`RECHECK_S` seconds after an optimizer step (a global torch optimizer hook, so the training loops need
no call of their own): a loop that started alone gives threads up when a second one starts, and takes
them back when it ends. torch.set_num_threads between steps takes effect at the next operation.

Limits: /proc/loadavg counts the whole machine (or the whole host in a container without its own
/proc), so where a container sees few of many busy cores the rule falls to one thread: slower than it
could be, never thrashing. Without /proc (macOS) only the kit's own loops are counted.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
import uuid
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from kit.cores import others_running, usable_cores

RECHECK_S = 5.0  # seconds between re-checks during a loop


def choose(cores: int, others_running: int, peers: int) -> int:
    """Threads for one loop: `cores` shared evenly with `peers` (the kit's other loops), no more than the
    cores that `others_running` (runnable threads of other processes) leave free, and at least 1."""
    return max(1, min(cores // (peers + 1), cores - others_running))


def registry() -> Path:
    """The folder of the slot files: one per user and machine, shared by every checkout of the kit."""
    return Path(tempfile.gettempdir()) / f"kit-torch-loops-{os.getuid()}"


class Slot:
    """This loop's place among the kit's torch loops: a file in `folder` that it holds locked."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else registry()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temp = self.folder / f".{name}.tmp"
        self._fd = os.open(temp, os.O_CREAT | os.O_WRONLY, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.path = self.folder / f"{name}.slot"
        os.rename(temp, self.path)  # locked before it is visible: never taken for a dead loop's

    def peers(self) -> int:
        """The kit's other loops running now. A slot nobody holds is a dead process's: removed."""
        n = 0
        for path in self.folder.glob("*.slot"):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its loop ended
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two checkers never block each other
            except BlockingIOError:
                n += 1
            else:
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return n

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self._fd)


class Share:
    """`with Share(n):` torch's CPU threads for a loop: `n` when given, else `choose(...)` now and again
    at most every `RECHECK_S` seconds after an optimizer step (`recheck()` may also be called directly).
    The slot is held either way, so the other loops count this one; the count before is restored at the end."""

    def __init__(self, n: int | None = None, folder: str | os.PathLike | None = None):
        self.n, self.folder = n, folder

    def __enter__(self) -> "Share":
        self._before = torch.get_num_threads()
        self.slot = Slot(self.folder)
        self._checked = 0.0
        self._hook = None if self.n else register_optimizer_step_post_hook(lambda *_: self.recheck())
        self.threads = self.n or self.recheck(force=True)
        torch.set_num_threads(self.threads)
        return self

    def recheck(self, force: bool = False) -> int:
        """Choose again (at most every RECHECK_S seconds unless `force`); returns the threads now."""
        now = time.monotonic()
        if not self.n and (force or now - self._checked >= RECHECK_S):
            self._checked = now
            self.threads = choose(usable_cores(), others_running(), self.slot.peers())
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        return self.threads

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()
        torch.set_num_threads(self._before)
        self.slot.close()
