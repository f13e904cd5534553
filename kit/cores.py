"""How many of this machine's cores are free: what the kit's torch loops and its embedded model servers
both size themselves by (kit.training.threads, kit.llm.local_server).

Other programs (a test runner, another notebook's server) count through the runnable threads in
/proc/loadavg, less this process's own, the least of a few samples so that one that ran for a moment is
not counted. Where /proc is missing (macOS) nothing else is counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SAMPLES = 3  # /proc/loadavg readings per check, 10 ms apart; the least counts


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; all of them where the OS has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def others_running(samples: int = SAMPLES, gap: float = 0.01) -> int:
    """Runnable threads of other processes now: the running count of /proc/loadavg (every thread on the
    machine that runs or waits for a core, the reader included) less this process's own, the least of
    `samples` readings. 0 where /proc is missing."""
    counts = []
    for i in range(samples):
        if i:
            time.sleep(gap)
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - own_running())
    return max(0, min(counts))


def own_running() -> int:
    """This process's threads in state R (torch's workers may still spin after an operation)."""
    n = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the thread ended
        n += text[text.rindex(")") + 2] == "R"
    return max(1, n)  # the reader itself runs


def free_cores() -> int:
    """The usable cores that other processes leave idle now; at least 1."""
    return max(1, usable_cores() - others_running())
