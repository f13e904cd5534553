"""Figures for the data-quality notebook, drawn from kit.quality.report's results.

Kept apart from kit.quality.report so the report and the CLI never import matplotlib. Each function returns
a matplotlib Figure made without pyplot, so nothing piles up in pyplot's figure list: `fig.savefig`
writes it, and Jupyter shows it as a cell's value once the inline backend is on (`%matplotlib inline`,
which notebook 03 runs: a kernel that never imported pyplot has no PNG display for a bare Figure).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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


def _binomial_range(n: int, p: float, coverage: float = 0.95) -> tuple[int, int]:
    """The counts a Binomial(n, p) falls between with probability `coverage` (equal tails): where a pair's
    count lands by chance alone when the draws are independent."""
    tail = (1 - coverage) / 2
    lo = hi = None
    total = 0.0
    for k in range(n + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                          + (k * math.log(p) if k else 0.0) + ((n - k) * math.log1p(-p) if n - k else 0.0))
        if lo is None and total > tail:
            lo = k
        if total >= 1 - tail:
            hi = k
            break
    return lo if lo is not None else 0, hi if hi is not None else n


def pair_counts(records: Sequence[dict], rows: str = "topic_category", cols: str = "persona",
                row_names: Sequence[str] | None = None, col_names: Sequence[str] | None = None) -> dict:
    """How often each pair of two diversity elements is drawn, and what chance alone would give.

    `expected` is the count per pair when both are drawn uniformly and independently (n / pairs, as the v2
    plan draws a topic category and a persona), and `chance` the range 95% of pairs fall in then (binomial);
    `outside` lists the pairs beyond it, of which about 5% are expected by chance. `row_names`/`col_names`
    (the elements that could be drawn) make a pair never drawn show as 0 instead of going missing."""
    found = Counter((str(m[rows]), str(m[cols])) for m in ((r.get("meta") or {}) for r in records)
                    if m.get(rows) is not None and m.get(cols) is not None)
    row_names = sorted(set(row_names or ()) | {r for r, _ in found})
    col_names = sorted(set(col_names or ()) | {c for _, c in found})
    n = sum(found.values())
    grid = [[found[(r, c)] for c in col_names] for r in row_names]
    pairs = len(row_names) * len(col_names)
    expected = n / pairs if pairs else 0.0
    chance = _binomial_range(n, 1 / pairs) if n and pairs > 1 else (n, n)
    outside = [(r, c, found[(r, c)]) for r in row_names for c in col_names if not chance[0] <= found[(r, c)] <= chance[1]]
    return {"rows": row_names, "cols": col_names, "grid": grid, "n": n, "pairs": pairs, "expected": expected,
            "chance": chance, "outside": outside, "never": sum(v == 0 for line in grid for v in line),
            "fewest": min((v for line in grid for v in line), default=0),
            "most": max((v for line in grid for v in line), default=0)}


def pairs_sentence(counts: dict, rows: str = "topic_category", cols: str = "persona") -> str:
    """What the pair counts show, in words, from the values: drawn or not, and whether the spread is more
    than chance gives."""
    lo, hi = counts["chance"]
    by_chance = 0.05 * counts["pairs"]
    # balanced when no more pairs stray than 95% of independent, uniform plans would show
    ok = counts["never"] == 0 and len(counts["outside"]) <= _binomial_range(counts["pairs"], 0.05)[1]
    verdict = ("within what chance alone gives: the plan is balanced" if ok
               else "more than chance alone gives: the plan is not balanced")
    return (f"{counts['pairs'] - counts['never']} of {counts['pairs']} {rows} x {cols} pairs are drawn at least once "
            f"in {counts['n']} items (fewest {counts['fewest']}, most {counts['most']}, expected "
            f"{counts['expected']:.1f} each); {len(counts['outside'])} fall outside {lo}-{hi}, the range 95% of "
            f"pairs fall in by chance, where about {by_chance:.0f} would: {verdict}.")


def plan_heatmap(records: Sequence[dict], rows: str = "topic_category", cols: str = "persona",
                 row_names: Sequence[str] | None = None, col_names: Sequence[str] | None = None) -> Figure:
    """How often each pair of two diversity elements is drawn: counts of (rows, cols) from the records'
    meta. Fed with the sampler's plan (kit.generation.sampling.sample_elements for many indices, no model), it
    shows whether every topic category meets every persona; fed with data, what came out.

    The colour scale starts at 0 (white: a pair never drawn) and runs to twice the expected count (or the
    largest count), so counts that differ only by chance look alike instead of being stretched from the
    smallest to the largest; pairs outside the 95% range chance allows (`pair_counts`) are boxed, and the
    title counts them. `row_names`/`col_names` as for `pair_counts`."""
    table = pair_counts(records, rows, cols, row_names, col_names)
    row_names, col_names, grid = table["rows"], table["cols"], table["grid"]
    fig = Figure(figsize=(1.2 + 0.45 * max(len(col_names), 4), 1.9 + 0.35 * max(len(row_names), 2)))
    ax = fig.add_subplot()
    if not table["n"]:
        ax.text(0.5, 0.5, f"no record has both {rows} and {cols}", ha="center", va="center")
        ax.set_axis_off()
        return fig
    top = max(2 * table["expected"], table["most"])
    image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=top, aspect="auto")
    boxed = {(r, c) for r, c, *_ in table["outside"]}
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 * top else "black")
            if (row_names[i], col_names[j]) in boxed:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red", linewidth=1.5))
    ax.set_xticks(range(len(col_names)), [_short(c, 28) for c in col_names], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=8)
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    fig.colorbar(image, ax=ax, label="conversations (scale from 0)", shrink=0.8)
    lo, hi = table["chance"]
    ax.set_title(f"{rows} x {cols}: conversations per pair\n(n={table['n']}, {table['expected']:.1f} expected per pair)"
                 f"; boxed: {len(table['outside'])} of {table['pairs']} pairs\noutside {lo}-{hi}, the range of chance "
                 f"alone (95%), where about {0.05 * table['pairs']:.0f} would fall", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def _as_share(row: dict, side: str) -> tuple[float, str] | None:
    """A comparison row's value on one side as (share, label), or None: shares as they are, coverage
    ("8 of 9" elements) as the share of elements covered."""
    value, n = row[side], row[f"n_{side}"]
    if row["pct"] and value is not None:
        return value, f"{100 * value:.0f}% (n={n})"
    if isinstance(value, dict) and value["of"]:
        band = row.get(f"band_{side}")
        spread = f", 95% {round(band[0] * value['of'])}-{round(band[1] * value['of'])}" if band else ""
        return value["covered"] / value["of"], f"{value['covered']} of {value['of']} elements{spread}"
    return None


def comparison_bars(rows: Sequence[dict], names: tuple[str, str] = ("generated", "reference")) -> Figure | None:
    """The rows of kit.quality.report.comparison that are shares (coverage as the share of elements
    covered) as paired bars, each labelled with its n; a row's `band_generated` / `band_reference` (low, high
    shares) is drawn as a whisker. A row at 0% on both sides is left to the table: a chart of empty bars
    hides the rows that differ. None when no row is left."""
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
            band = r.get(f"band_{side}")
            ax.barh(yy, value, height=0.36, color=color, alpha=0.8, label=names[k] if yy == y[0] else None,
                    xerr=[[value - band[0]], [band[1] - value]] if band else None,
                    error_kw={"ecolor": "#333333", "capsize": 3})
            ax.text((band[1] if band else value) + 0.01, yy, label, va="center", fontsize=7)
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
