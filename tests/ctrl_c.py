"""A child that a test stops with Ctrl-C (SIGINT) must start with SIGINT's default handling: a shell that
runs the suite in the background (`make test &`) starts it with SIGINT ignored, a child inherits that, and
Python then never raises KeyboardInterrupt, so the child would run on as if no one had pressed Ctrl-C."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """`preexec_fn` for subprocess.Popen: runs in the child before it executes the command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
