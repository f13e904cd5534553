"""One writer per output: an exclusive lock held for as long as a command writes a file or folder.

Two runs on one output used to interleave their journals and overwrite each other's files. Every
command that writes (generate, memory generate, judge, finetune, midtrain, a pipeline run) takes
`exclusive(output)` first. The lock is `fcntl.flock` on a hidden file beside the output, so the
operating system releases it when the holder dies, SIGKILL included: a stale lock file never blocks
anyone. The file holds the holder's pid and command line, so the second run can say who holds it;
the command line is scrubbed of secrets first (kit.secrets), since an endpoint URL on it may carry a
key in its query string and the lock file outlives the run.

    with exclusive("runs/x/data/conversations.jsonl"):
        ...  # write

A second process gets `LockedError("... is being written by process 4242 (python -m kit generate ...)")`.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.secrets import scrub_text


class LockedError(RuntimeError):
    """Another process holds the output's lock. `holder` is what that process wrote: pid and command."""

    def __init__(self, path: Path, holder: str):
        self.path, self.holder = path, holder
        who = f"process {holder}" if holder else "another process"
        super().__init__(f"{path} is being written by {who}; wait for it to finish or stop it")


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of an output file or folder: `.NAME.lock` beside it (the same path whether or not
    the output exists yet, so the first run and the second agree)."""
    out = Path(output).resolve()
    return out.with_name(f".{out.name}.lock")


@contextmanager
def exclusive(output: str | os.PathLike) -> Iterator[Path]:
    """Hold the output's lock for the block, or raise `LockedError` at once (never waits). Re-entrant
    within one process is not supported on purpose: one command, one lock."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # a lock file an older kit wrote holds its command line unscrubbed
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            raise LockedError(Path(output), scrub_text(holder)) from None
        holder = f"{os.getpid()} ({scrub_text(' '.join(['python', *sys.argv]))[:300]})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock; the file stays (deleting it races)
