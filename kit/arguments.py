"""Command-line argument types every command shares, so that one rule holds for each kind of value.

Paths go through `kit.paths.argument` (taken from the working directory, once). Numbers that feed
arithmetic go through `finite_float`: Python's float() reads "inf" and "nan", and a learning rate of
inf trains a model of NaN weights that is then saved as if it were finished; a number is refused at
the command line instead, with the option's usage line.
"""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """argparse `type=` for a real number: "inf", "-inf" and "nan" are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value
