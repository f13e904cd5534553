"""Held-out prompts for a midtrained model, and what its replies do, counted with their n.

Reading one reply of a small model says little; counting what many replies do says more, if each count
carries the number of prompts behind it. `draw_probes` takes prompts the mixture never trained on: items
of each built-in task drawn with another seed (any whose user message is in the mixture is skipped), and
the hand-written identity probes that ask for the model's name (knowledge/identity/probes.yaml, never
training data). Each knows what a right reply holds: the word spelt out, the letter count, the arithmetic
answer, the name. `trait_counts` turns greedy replies into (k, n) per trait, where n counts only the
probes a trait applies to: a `####` line is looked for in the tasks that end with one, and whether its
number is the right one is a trait of its own, so a reply in the right format with a wrong number is not
counted as right. `compare` and `trait_bars` put two runs side by side with 95% Wilson intervals and call
a difference a tie while the intervals overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from kit.facts import default_data, facts_stated
from kit.stats import rate, wilson
from kit.training.tasks import Arithmetic, SimpleSpelling, SpellingBee

PROBE_SEED_OFFSET = 7919  # the probes' seed is the mixture's plus this, so they are other draws

# trait -> the probe tasks it is counted on
TRAITS = {
    "says its name": ("identity",),
    "spells the word right": ("spelling",),
    "a call the calculator ran": ("spelling_bee", "arithmetic"),
    "a #### line (format only)": ("spelling_bee", "arithmetic"),
    "#### with the right number": ("spelling_bee", "arithmetic"),
    "an output the model wrote itself": ("identity", "spelling", "spelling_bee", "arithmetic"),
    "a loop": ("identity", "spelling", "spelling_bee", "arithmetic"),
}
_ANSWER_LINE = re.compile(r"####\s*(-?\d[\d,]*(?:\.\d+)?)")


@dataclass(frozen=True)
class Probe:
    task: str
    prompt: str
    expected: str  # what a right reply holds: "garden:g,a,r,d,e,n", "3", "12"; the fact id for identity


def _user_message(record: dict) -> str:
    return next(m["content"] for m in record["messages"] if m["role"] == "user")


def draw_probes(mixture: Sequence[dict], per_task: int = 6, seed: int = 0, identity: int = 12) -> list[Probe]:
    """`per_task` prompts of each built-in task whose user message the mixture does not hold, and the
    first `identity` single-turn English identity probes that check the name (0: none, as for a mixture
    without identity conversations, whose model never met its name)."""
    seen = {_user_message(r) for r in mixture}
    probes: list[Probe] = []
    for task, expected in ((SimpleSpelling, lambda m: f"{m['word']}:{','.join(m['word'])}"),
                           (SpellingBee, lambda m: str(m["answer"])), (Arithmetic, lambda m: str(m["answer"]))):
        source, drawn, index = task(50 * per_task, seed=seed + PROBE_SEED_OFFSET), [], 0
        while len(drawn) < per_task and index < len(source):
            record = source[index]
            index += 1
            prompt = _user_message(record)
            if prompt not in seen and prompt not in {p.prompt for p in drawn}:
                drawn.append(Probe(task.name, prompt, expected(record["meta"])))
        probes += drawn
    named = [p for p in default_data().probes if "name" in p.checks and not p.history and p.lang == "en"]
    probes += [Probe("identity", p.question, "name") for p in named[:identity]]
    return probes


def loops(reply: str) -> bool:
    """Some run of three words comes back three times or more: the model is going round in circles."""
    words = reply.split()
    runs = [" ".join(words[k:k + 3]) for k in range(len(words) - 2)]
    return any(runs.count(r) >= 3 for r in set(runs))


def _same_number(said: str, expected: str) -> bool:
    try:
        return abs(float(said.replace(",", "")) - float(expected)) < 1e-9
    except ValueError:
        return False


def traits(probe: Probe, sample: dict) -> dict[str, bool]:
    """The traits of one reply ({prompt, reply, calls}, as kit.training.engine.samples gives it) that
    apply to its probe's task."""
    reply = sample["reply"]
    line = _ANSWER_LINE.search(reply)
    every = {
        "says its name": probe.task == "identity" and facts_stated(reply, [probe.expected])[probe.expected],
        "spells the word right": probe.expected in reply,
        "a call the calculator ran": bool(sample["calls"]),
        "a #### line (format only)": "####" in reply,
        "#### with the right number": bool(line) and _same_number(line[1], probe.expected),
        "an output the model wrote itself": reply.count("<|output_start|>") > len(sample["calls"]),
        "a loop": loops(reply),
    }
    return {name: value for name, value in every.items() if probe.task in TRAITS[name]}


def trait_counts(probes: Sequence[Probe], samples: Sequence[dict]) -> dict[str, tuple[int, int]]:
    """trait -> (replies with it, replies it applies to), in TRAITS order; traits no probe applies to are left out."""
    counts = {name: [0, 0] for name in TRAITS}
    for probe, sample in zip(probes, samples, strict=True):
        for name, value in traits(probe, sample).items():
            counts[name][0] += value
            counts[name][1] += 1
    return {name: (k, n) for name, (k, n) in counts.items() if n}


def verdict(a: tuple[int, int], b: tuple[int, int], names: tuple[str, str]) -> str:
    """'tie' while the two 95% Wilson intervals overlap, else which is higher."""
    (lo_a, hi_a), (lo_b, hi_b) = wilson(*a), wilson(*b)
    if lo_a <= hi_b and lo_b <= hi_a:
        return "tie"
    return f"{names[0] if lo_a > hi_b else names[1]} higher"


def compare(runs: dict[str, dict[str, tuple[int, int]]]):
    """A table of each trait's count per run with its 95% interval and, for two runs, the verdict."""
    import pandas as pd

    names = tuple(runs)
    rows = {}
    for trait in TRAITS:
        if not all(trait in counts for counts in runs.values()):
            continue
        row = {name: rate(*runs[name][trait]) for name in names}
        if len(names) == 2:
            row["verdict"] = verdict(runs[names[0]][trait], runs[names[1]][trait], names)
        rows[trait] = row
    return pd.DataFrame(rows).T.rename_axis("replies with")


def trait_bars(runs: dict[str, dict[str, tuple[int, int]]], title: str | None = None):
    """One group of bars per trait, a bar per run, each with its 95% Wilson interval as a whisker and
    k/n beside it: bars whose whiskers overlap are not told apart."""
    import matplotlib.pyplot as plt

    names = list(runs)
    shown = [t for t in TRAITS if all(t in runs[n] for n in names)][::-1]
    height = 0.8 / len(names)
    colours = ("#4C72B0", "#DD8452", "#55A868", "#8172B3")
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(shown) * len(names) + 1.6))
    for j, name in enumerate(names):
        ys = [i + (len(names) / 2 - j - 0.5) * height for i in range(len(shown))]
        counts = [runs[name][t] for t in shown]
        shares = [k / n for k, n in counts]
        bounds = [wilson(k, n) for k, n in counts]
        errors = [[s - lo for s, (lo, _) in zip(shares, bounds)], [hi - s for s, (_, hi) in zip(shares, bounds)]]
        ax.barh(ys, shares, height=height, color=colours[j % len(colours)], label=name, xerr=errors,
                error_kw={"ecolor": "#333333", "capsize": 2})
        for y, (k, n), (_, hi) in zip(ys, counts, bounds):
            ax.text(hi + 0.01, y, f"{k}/{n}", va="center", fontsize=7)
    ax.set_yticks(range(len(shown)), shown, fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("share of the probes the trait applies to (whiskers: 95% interval)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "what the replies do, on held-out probes", fontsize=10)
    fig.tight_layout()
    return fig
