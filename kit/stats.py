"""Numbers as a reader should see them: a rate with the count it rests on and its 95% interval, a target
with its verdict, and the difference between two models asked the same probes.

Every stage that prints a rate uses these (generation's funnel, the quality comparison, the probes of a
small GPT, the students of notebook 07, the memory benchmark), so they sit with the foundations and
import nothing of the kit; `kit.figures` draws with them.
"""

from __future__ import annotations

from typing import Sequence


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate k/n (95% for z = 1.96): unlike k/n +- z*se it stays inside
    0..1 and says something for 0 of 5 or 5 of 5. (0.0, 1.0) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> str:
    """'22 of 29 (76%, 95% CI 58-88%)': a rate with the count it rests on, and its interval where n < 100."""
    if n <= 0:
        return f"{k} of {n}"
    text = f"{k} of {n} ({k / n:.0%}"
    if n < 100:
        lo, hi = wilson(k, n)
        text += f", 95% CI {100 * lo:.0f}-{100 * hi:.0f}%"
    return text + ")"


def met(ok: bool) -> str:
    """A target's verdict, from the values: 'met' or 'not met'."""
    return "met" if ok else "not met"


def paired_gain(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """How much more often `a` passes than `b` on the same items (a[i] and b[i] are one probe), with the
    95% interval for a difference of paired rates of Newcombe (1998, method 10: two Wilson intervals
    joined through the pairs' correlation). Only the probes where exactly one passes move the difference,
    and a few of them are weak evidence: 4 of 29 all one way is a tie (its interval holds 0, as McNemar's
    exact test, p = 0.125, agrees), where resampling the probes put the interval above 0.
    Returns {n, gain, lo, hi, a_only, b_only}."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_gain needs two equally long, non-empty lists, got {len(a)} and {len(b)}")
    n = len(a)
    both = sum(x and y for x, y in zip(a, b))
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    neither = n - both - a_only - b_only
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    (l1, u1), (l2, u2) = wilson(both + a_only, n), wilson(both + b_only, n)
    cross = both * neither - a_only * b_only
    if cross > 0:  # Newcombe's continuity correction of the correlation
        cross = max(cross - n / 2, 0.0)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    phi = cross / margins ** 0.5 if margins else 0.0
    below = ((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2) ** 0.5
    above = ((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2) ** 0.5
    gain = p1 - p2
    return {"n": n, "gain": gain, "lo": max(-1.0, gain - below), "hi": min(1.0, gain + above),
            "a_only": a_only, "b_only": b_only}


def gain_sentence(name_a: str, name_b: str, gain: dict) -> str:
    """'+0.21 (95% CI +0.03 to +0.38; 9 probes only the student passed, 3 only the teacher)', and whether
    the interval leaves out zero: inside it, the two are a tie at this n."""
    verdict = "a real difference" if gain["lo"] > 0 or gain["hi"] < 0 else "a tie at this n (the interval holds 0)"
    return (f"{name_a} minus {name_b}: {gain['gain']:+.2f} over {gain['n']} probes (95% CI {gain['lo']:+.2f} to "
            f"{gain['hi']:+.2f}; {gain['a_only']} passed by {name_a} only, {gain['b_only']} by {name_b} only): {verdict}")
