"""How a command stops: one line on stderr, `kit COMMAND: why`, scrubbed of secrets (an endpoint URL or a
server's error may carry a key), and the exit status the command returns (1 refused or failed, 2 bad
input, 130 interrupted)."""

from __future__ import annotations

import sys

from kit.secrets import scrub_text


def fail(command: str, message: str, status: int = 1) -> int:
    """Print `kit COMMAND: MESSAGE` on stderr and return `status`, for `return fail(...)` in a main()."""
    print(f"kit {command}: {scrub_text(message)}", file=sys.stderr)
    return status
