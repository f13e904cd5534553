"""Figures for the data-quality notebook, drawn from kit.quality.report's results.

Kept apart from kit.quality.report so the report and the CLI never import matplotlib. Each function returns
a matplotlib Figure made without pyplot, so nothing piles up in pyplot's figure list: `fig.savefig`
writes it, and Jupyter shows it as a cell's value once the inline backend is on (`%matplotlib inline`,
which notebook 03 runs: a kernel that never imported pyplot has no PNG display for a bare Figure).
"""

from __future__ import annotations

import re

from typing import Sequence

from matplotlib.figure import Figure
from collections import Counter

from matplotlib.ticker import MaxNLocator, PercentFormatter

LABEL_CHARS = 42


def _short(text: str, n: int = LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def coverage_bars(coverage: dict, dims: Sequence[str] | None = None, max_elements: int = 30) -> Figure:
    """Realised share (bars) against target share (ticks) for each diversity dimension.

    `coverage` is kit.quality.diversity.coverage's result. A dimension with more than `max_elements`
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
    `lengths` is kit.quality.diversity.lengths's result."""
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
    """Rejected items by reason (kit.quality.report.reject_reasons's result); an item may have several."""
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


def plan_heatmap(records: Sequence[dict], rows: str = "topic_category", cols: str = "persona") -> Figure:
    """How often each pair of two diversity elements is drawn: counts of (rows, cols) from the records'
    meta. Fed with the sampler's plan (kit.generation.sampling.sample_elements for many indices, no model), it
    shows whether every topic category meets every persona; fed with data, what came out."""
    pairs = Counter((str(m[rows]), str(m[cols])) for m in ((r.get("meta") or {}) for r in records)
                    if m.get(rows) is not None and m.get(cols) is not None)
    row_names = sorted({r for r, _ in pairs})
    col_names = sorted({c for _, c in pairs})
    fig = Figure(figsize=(1.2 + 0.45 * max(len(col_names), 4), 1.6 + 0.35 * max(len(row_names), 2)))
    ax = fig.add_subplot()
    if not pairs:
        ax.text(0.5, 0.5, f"no record has both {rows} and {cols}", ha="center", va="center")
        ax.set_axis_off()
        return fig
    grid = [[pairs[(r, c)] for c in col_names] for r in row_names]
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value < max(map(max, grid)) / 2 else "black")
    ax.set_xticks(range(len(col_names)), [_short(c, 28) for c in col_names], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=8)
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    fig.colorbar(image, ax=ax, label="conversations", shrink=0.8)
    ax.set_title(f"{rows} x {cols}: conversations per pair (n={sum(pairs.values())})", fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def _as_share(row: dict, side: str) -> tuple[float, str] | None:
    """A comparison row's value on one side as (share, label), or None: shares as they are, coverage
    ("8 of 9" elements) as the share of elements covered."""
    value, n = row[side], row[f"n_{side}"]
    if row["pct"] and value is not None:
        return value, f"{100 * value:.0f}% (n={n})"
    if isinstance(value, str) and (m := re.fullmatch(r"(\d+) of (\d+)", value)) and int(m[2]):
        return int(m[1]) / int(m[2]), f"{value} elements"
    return None


def comparison_bars(rows: Sequence[dict], names: tuple[str, str] = ("generated", "reference")) -> Figure | None:
    """The rows of kit.quality.report.comparison that are shares (coverage as the share of elements
    covered) as paired bars, each labelled with its n. A row at 0% on both sides is left to the table: a
    chart of empty bars hides the rows that differ. None when no row is left."""
    sides = ("generated", "reference")
    shares = [(r, [_as_share(r, side) for side in sides]) for r in rows]
    shown = [(r, v) for r, v in shares if any(v) and any(x and x[0] > 0 for x in v)]
    if not shown:
        return None
    fig = Figure(figsize=(9, 0.9 + 0.45 * max(len(shown), 2)))
    ax = fig.add_subplot()
    for k, (side, color) in enumerate(zip(sides, ("tab:orange", "tab:green"))):
        y = [i + (k - 0.5) * 0.38 for i in range(len(shown))]
        for yy, (r, values) in zip(y, shown):
            value, label = values[k] or (0.0, "-")
            ax.barh(yy, value, height=0.36, color=color, alpha=0.8, label=names[k] if yy == y[0] else None)
            ax.text(value + 0.01, yy, label, va="center", fontsize=7)
    ax.set_yticks(range(len(shown)), [r["figure"].strip() for r, _ in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.25)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    left = sum(1 for _, v in shares if any(v)) - len(shown)
    ax.set_title(f"Generated data beside the reference: share of conversations, messages or elements\n"
                 f"({left} rows at 0% on both sides are in the table only)", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def score_bars(judge: dict) -> Figure:
    """The judge's scores: for each criterion, how many records got 1, 2, ... 5 (kit.quality.report.judge_summary)."""
    criteria = judge["criteria"]
    fig = Figure(figsize=(2.3 * len(criteria), 2.6))
    axes = fig.subplots(1, len(criteria), sharey=True, squeeze=False)[0]
    for ax, (name, d) in zip(axes, criteria.items()):
        ax.bar([int(k) for k in d["counts"]], list(d["counts"].values()), color="tab:purple", alpha=0.8)
        mean = "-" if d["mean"] is None else f"{d['mean']:.2f}"
        ax.set_title(f"{name}\nmean {mean}", fontsize=9)
        ax.set_xticks(range(1, 6))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("records")
    fig.suptitle(f"Judge scores ({judge['judged']} of {judge['n_records']} records judged)", fontsize=10)
    fig.tight_layout()
    return fig
