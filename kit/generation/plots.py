"""Figures of a generation run (notebooks 01 and 02), drawn from the journal, one unit per panel, and the
sentence that compares two recipes' kept counts.

A funnel that puts conversations, turns and candidate answers on one axis reads as one flow, but the three
are counted over different totals. Here each unit has its own panel and its own axis: the share of that
panel's first bar, with the counts written beside every bar. Made with matplotlib's Figure (no pyplot), like
kit.quality.plots; kit.figures.show displays and saves it.
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from kit.stats import rate, wilson
from kit.generation.distill import CHECKS, as_written_counts, check_counts, funnel

BLUE, GREEN, DARK, CUT, RED = "#4C72B0", "#8FD19E", "#2E7D32", "#E1B84B", "#C44E52"


def funnel_steps(entries: Sequence[dict], asked: int) -> dict[str, list[tuple[str, int, int, str]]]:
    """The funnel's bars per unit: {unit: [(label, count, of, colour)]}, `of` being what the share is of.
    `asked` is the run's number of items asked (the summary's), so an item rejected before any answer
    was sampled still counts as asked."""
    row = next((r for r in funnel(list(entries)) if r["category"] == "all"), None) or {}
    get = lambda key: int(row.get(key, 0))
    kept, trimmed, alone = get("turns kept"), get("turns trimmed"), get("turns opening only")
    written = as_written_counts(list(entries))
    uncut = ([("as written (nothing cut): passed every check", written["passed"], written["sampled"], DARK)]
             if written["sampled"] else [])
    return {
        "conversations": [("asked", asked, asked, BLUE),
                          ("reached a model answer", get("items"), asked, GREEN),
                          ("kept: every turn kept an answer", get("kept"), asked, DARK)],
        "answer turns": [("reached (a turn after a failed one is never asked)", get("turns"), get("turns"), BLUE),
                         ("kept an answer", kept, get("turns"), GREEN),
                         ("  kept the model's text whole", kept - trimmed, get("turns"), DARK),
                         ("  cut to the sentences that pass", trimmed - alone, get("turns"), CUT),
                         ("  cut to the planned opening alone", alone, get("turns"), CUT)],
        "candidate answers": [("sampled", get("sampled"), get("sampled"), BLUE)] + uncut
                             + [(f"after the cut, passed: {c}", get(f"passed: {c}"), get("sampled"), CUT) for c in CHECKS],
    }


def distill_funnel(entries: Sequence[dict], asked: int) -> Figure:
    """Recipe distill's funnel in three panels (conversations; answer turns, with the cut as its own steps;
    candidate answers: how many passed every check as the model wrote them, then, after the verifier cut each
    to its passing sentences or its planned opening, through each check in order, a candidate counted up to the
    first check it fails, and beside each check how many candidates failed it at all after the cut and as
    written). Every share is of its own panel's first bar, and every step's label gives its rate with a 95% Wilson
    interval where the panel counts under 100."""
    steps = funnel_steps(entries, asked)
    failed = check_counts(list(entries))
    written = as_written_counts(list(entries))
    heights = [len(bars) for bars in steps.values()]
    fig = Figure(figsize=(10, 1.4 + 0.34 * sum(heights) + 0.7 * len(steps)))
    axes = fig.subplots(len(steps), 1, gridspec_kw={"height_ratios": heights})
    for ax, (unit, bars) in zip(axes, steps.items()):
        y = range(len(bars))
        ax.barh(list(y), [n / of if of else 0.0 for _, n, of, _ in bars], color=[b[3] for b in bars])
        for i, (label, n, of, _) in enumerate(bars):
            text = f"{n} of {of}" if i == 0 else rate(n, of)  # a step's rate with its n, and its interval below 100
            if label.startswith("after the cut, passed: ") and (check := label.split("passed: ")[1]) in failed:
                text += f"  (failed it: {failed[check]['failed']} after the cut"
                text += f", {written['failed'][check]} as written)" if written["sampled"] else ")"
            ax.text((n / of if of else 0.0) + 0.01, i, text, va="center", fontsize=8)
        ax.set_yticks(list(y), [b[0] for b in bars], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 2.2)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(f"share of {unit} ({bars[0][0].split(' (')[0]})", fontsize=8)
        ax.set_title(unit, fontsize=9, loc="left")
    conversations = steps["conversations"]
    fig.suptitle(f"distill funnel: {conversations[2][1]} of {asked} conversations kept", fontsize=10)
    fig.tight_layout()
    return fig


def kept_sentence(kept: dict[str, tuple[int, int]]) -> str:
    """Each recipe's kept count as a rate with its n and 95% Wilson interval, and the verdict from the values:
    a tie when the intervals overlap (a few items cannot rank two recipes), else which kept more."""
    said = "; ".join(f"{name} kept {rate(k, n)}" for name, (k, n) in kept.items())
    (a, (ka, na)), (b, (kb, nb)) = list(kept.items())[:2]
    (lo_a, hi_a), (lo_b, hi_b) = wilson(ka, na), wilson(kb, nb)
    if lo_a <= hi_b and lo_b <= hi_a:
        verdict = f"the intervals overlap: a tie, too few items ({na} and {nb}) to rank the recipes"
    else:
        verdict = f"{a if ka / na > kb / nb else b} keeps more, outside both intervals"
    return f"{said}: {verdict}."


def reasons_sentence(counts: dict[str, dict[str, int]]) -> str:
    """Why the reject table and the funnel give a check different counts, from `check_counts`'s values."""
    said = ("The reject table counts a rejected item under every check that any candidate of its failing turn "
            "failed; the funnel counts each candidate once, under the first check it failed.")
    later = [(c, v) for c, v in counts.items() if v["failed"] > v["stopped"]]
    if not later:
        return said + " Here they agree: no candidate failed a check after failing an earlier one."
    return said + " They differ where a candidate failed more than one check: " + "; ".join(
        f"{c} is named by {v['items']} rejected items and failed by {v['failed']} candidates, {v['stopped']} of them "
        f"first" for c, v in later) + "."


def as_written_sentence(entries: Sequence[dict]) -> str:
    """What the candidate panel's two counts of one check mean, from the values: how many candidates passed
    every check as the model wrote them, and, per check the cut changes, how many failed it as written and after
    the cut."""
    written = as_written_counts(list(entries))
    if not written["sampled"]:
        return "This journal records no candidate as the model wrote it (it predates `as_written`)."
    after = check_counts(list(entries))
    changed = [c for c in CHECKS if written["failed"][c] != after[c]["failed"]]
    said = (f"As the model wrote them, {rate(written['passed'], written['sampled'])} candidates passed every check "
            "with nothing cut.")
    if changed:
        said += " The verifier's cut changes what fails: " + "; ".join(
            f"{c} failed by {written['failed'][c]} as written, {after[c]['failed']} after the cut" for c in changed) + "."
    return said + (" So the candidate panel's steps after the cut count what was kept of the candidates, not what the "
                   "model wrote.")
