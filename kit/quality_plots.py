"""Figures for the data-quality notebook, drawn from kit.quality's results.

Kept apart from kit.quality so the report and the CLI never import matplotlib. Each function returns
a matplotlib Figure made without pyplot, so nothing piles up in pyplot's figure list: `fig.savefig`
writes it, and Jupyter shows it as a cell's value once the inline backend is on (`%matplotlib inline`,
which notebook 03 runs: a kernel that never imported pyplot has no PNG display for a bare Figure).
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure
from collections import Counter

from matplotlib.ticker import MaxNLocator, PercentFormatter

LABEL_CHARS = 42


def _short(text: str, n: int = LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def coverage_bars(coverage: dict, dims: Sequence[str] | None = None, max_elements: int = 30) -> Figure:
    """Realised share (bars) against target share (ticks) for each diversity dimension.

    `coverage` is kit.quality.coverage's result. A dimension with more than `max_elements`
    elements shows the ones furthest from their target, so a missing topic is never hidden.
    """
    found = coverage["dimensions"]
    dims = [d for d in (dims or found) if d in found]
    if not dims:
        fig = Figure(figsize=(6, 1.5))
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no diversity meta in these records", ha="center", va="center")
        ax.set_axis_off()
        return fig
    rows = []
    for dim in dims:
        elements = found[dim]["elements"]
        if len(elements) > max_elements:
            elements = sorted(elements, key=lambda e: -abs(e["diff"]))[:max_elements]
            elements.sort(key=lambda e: -(e["target"] or 0))
        rows.append((dim, elements))
    heights = [max(len(e), 2) for _, e in rows]
    fig = Figure(figsize=(9, 0.9 + 0.24 * sum(heights) + 0.5 * len(rows)))
    axes = fig.subplots(len(rows), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    for ax, (dim, elements) in zip(axes, rows):
        y = range(len(elements))
        ax.barh(y, [e["share"] for e in elements], color="tab:blue", alpha=0.75, label="realised")
        targets = [(i, e["target"]) for i, e in enumerate(elements) if e["target"] is not None]
        if targets:
            ax.scatter([t for _, t in targets], [i for i, _ in targets], marker="|", s=180, color="black",
                       linewidths=2, label="target", zorder=3)
        ax.set_yticks(list(y), [_short(e["element"]) for e in elements], fontsize=8)
        ax.invert_yaxis()
        d = found[dim]
        shown = "" if len(elements) == len(d["elements"]) else f", {len(elements)} of {len(d['elements'])} furthest off"
        ax.set_title(f"{dim}  (n={d['n']}, total variation {100 * d['total_variation']:.1f}%{shown})", fontsize=9, loc="left")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Coverage: realised share vs target share", fontsize=11)
    fig.tight_layout()
    return fig


def length_histograms(lengths: dict[str, list[int]]) -> Figure:
    """Turns per conversation, and characters (and tokens, when counted) per message by role.
    `lengths` is kit.quality.lengths's result."""
    panels = [("turns", "messages per conversation", None)]
    for unit in ("chars", "tokens"):
        if f"user_{unit}" in lengths:
            panels.append((unit, f"{'characters' if unit == 'chars' else 'tokens'} per message", ("user", "assistant")))
    fig = Figure(figsize=(4.2 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title, roles) in zip(axes, panels):
        if roles is None:
            counts = Counter(lengths["turns"])
            ax.bar(list(counts), list(counts.values()), width=0.8, color="tab:gray")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if counts:  # one bar alone would get fractional ticks around it
                ax.set_xlim(min(counts) - 1, max(counts) + 1)
        else:
            for role, color in zip(roles, ("tab:orange", "tab:blue")):
                values = lengths.get(f"{role}_{key}", [])
                if values:
                    ax.hist(values, bins=30, alpha=0.6, color=color, label=f"{role} (n={len(values)})")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def reject_reasons_bar(rejects: dict) -> Figure:
    """Rejected items by reason (kit.quality.reject_reasons's result); an item may have several."""
    reasons = rejects.get("reasons") or {}
    fig = Figure(figsize=(7, 0.8 + 0.3 * max(len(reasons), 2)))
    ax = fig.add_subplot()
    if not reasons:
        ax.text(0.5, 0.5, "no rejects", ha="center", va="center")
        ax.set_axis_off()
        return fig
    names = list(reasons)
    ax.barh(range(len(names)), [reasons[n] for n in names], color="tab:red", alpha=0.75)
    ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("rejected items")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Rejects by reason ({rejects['n']} items)", fontsize=10, loc="left")
    fig.tight_layout()
    return fig
