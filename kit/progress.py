"""Progress bars for the long loops (generation, memory sessions and questions, tokenizer corpus).

A live widget in JupyterLab, a line in a terminal, and none in a notebook the pipeline executes:
a widget stored in a notebook file shows its first frame, 0%, forever (on GitHub, in nbviewer), and
those notebooks print a summary when the loop ends anyway. The pipeline says so through
KIT_NO_PROGRESS=1 in the environment its kernels inherit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

QUIET_ENV = "KIT_NO_PROGRESS"


def progress_bar(iterable=None, *, disable: bool = False, **kwargs) -> tqdm:
    """tqdm.auto's bar, off when asked or when KIT_NO_PROGRESS=1."""
    return tqdm(iterable, disable=disable or os.environ.get(QUIET_ENV) == "1", **kwargs)


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Within the block, this process and the kernels it starts (they inherit the environment) show none."""
    before = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[QUIET_ENV]
        else:
            os.environ[QUIET_ENV] = before
