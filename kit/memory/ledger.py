"""Transactions and the computations behind every answer of the benchmark.

Money is summed in integer cents, so 0.1 + 0.2 is 0.30 and an answer never carries float noise;
answers are written with two decimals ("123.45"). Dates are ISO strings (YYYY-MM-DD), which order
correctly as text. Every function takes an inclusive date range and returns *all* tied winners,
leaving the tie policy to the question generator.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable


@dataclass(frozen=True)
class Transaction:
    date: str
    scene: str
    subscene: str
    amount: float
    description: str
    session_index: int
    evidence_turns: tuple[int, ...] = ()  # the session's messages that state it (user turn, confirmation)

    def to_dict(self) -> dict:
        return asdict(self)


def to_cents(amount: float | int | str | Decimal) -> int:
    """Whole cents, rounding half up (45.505 -> 4551), going through str so 0.1 stays 0.1."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def in_range(tx: Transaction, start: str | None, end: str | None) -> bool:
    return (start is None or tx.date >= start) and (end is None or tx.date <= end)


def spent_cents(txs: Iterable[Transaction], start: str | None = None, end: str | None = None,
                scenes: Iterable[str] | None = None) -> int:
    """Total spent in [start, end] (None: unbounded), only on `scenes` if given. An empty range is 0."""
    wanted = None if scenes is None else set(scenes)
    return sum(to_cents(t.amount) for t in txs
               if in_range(t, start, end) and (wanted is None or t.scene in wanted))


def top_scenes(txs: Iterable[Transaction], start: str | None = None, end: str | None = None) -> list[str]:
    """The scene(s) with the highest total in the range, sorted; [] for an empty range."""
    totals: Counter[str] = Counter()
    for t in txs:
        if in_range(t, start, end):
            totals[t.scene] += to_cents(t.amount)
    if not totals:
        return []
    best = max(totals.values())
    return sorted(s for s, v in totals.items() if v == best)


def busiest_dates(txs: Iterable[Transaction], scene: str) -> list[str]:
    """The date(s) with the most transactions of `scene` (all sessions of a day count), sorted."""
    counts = Counter(t.date for t in txs if t.scene == scene)
    if not counts:
        return []
    best = max(counts.values())
    return sorted(d for d, n in counts.items() if n == best)


def largest_cents(txs: Iterable[Transaction], start: str | None = None, end: str | None = None) -> int | None:
    """The largest single amount in the range, or None for an empty range."""
    amounts = [to_cents(t.amount) for t in txs if in_range(t, start, end)]
    return max(amounts) if amounts else None
