"""The memory benchmark's pictures: a record's timeline, accuracy per category beside a reference, and
every condition's rates side by side with their 95% intervals (`plot_rates`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from kit.memory.questions import CATEGORIES, ISO_DATE
from kit.paths import save_figure

# Short labels so a question's row fits beside the timeline.
SHORT = {"time_range_scene_amount": "range, scene", "time_range_multiple_scenes_amount": "range, scenes",
         "time_range_total_amount": "range, total", "max_scene": "top scene", "max_frequency_date": "busiest date",
         "max_single_amount": "largest expense", "single_date_scene_amount": "day, scene",
         "total_amount": "overall total"}


def plot_timeline(record: dict, path: str | Path | None = None, title: str | None = None):
    """Sessions by date (dotted lines), their transactions (amount, coloured by scene) above, and
    one row per question below: its date range as a bar and a star at the session from which it is
    answerable (its position). Saved as PNG when `path` is given; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    chunk_dates = [ISO_DATE.search(chunk).group() for chunk in record["chunks"]]
    events = record["metadata"]["transaction_events"]
    questions = record["questions"]
    to_day = date.fromisoformat
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 2.6 + 0.28 * max(1, len(questions))),
                                      gridspec_kw={"height_ratios": [2, max(1.2, 0.28 * len(questions))]})
    scenes = sorted({e["scene"] for e in events})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(scenes)}
    for ax in (top, bottom):
        for i, d in enumerate(chunk_dates):
            ax.axvline(to_day(d), color="#999999", linestyle=":", lw=1)
    for i, d in enumerate(chunk_dates):
        top.annotate(f"session {i}", (to_day(d), 1), xycoords=("data", "axes fraction"), rotation=90,
                     va="top", ha="right", fontsize=8, color="#555555")
    for e in events:
        top.vlines(to_day(e["date"]), 0, e["amount"], color=colours[e["scene"]], lw=2)
        top.plot(to_day(e["date"]), e["amount"], "o", color=colours[e["scene"]])
    for s in scenes:
        top.plot([], [], "o", color=colours[s], label=s)
    if scenes:
        top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    top.set_ylabel("amount")
    top.set_ylim(0, max([e["amount"] for e in events], default=1) * 1.15)
    top.set_title(title or f"{record['task_id']}: {len(chunk_dates)} sessions, {len(events)} transactions, "
                  f"{len(questions)} questions", fontsize=10)
    for row, q in enumerate(questions):
        dates = sorted(ISO_DATE.findall(q["query"])) or [chunk_dates[0], chunk_dates[-1]]
        start, end = to_day(dates[0]), to_day(dates[-1])
        bottom.plot([start, end], [row, row], color="#4C72B0", lw=5, solid_capstyle="round", alpha=0.5)
        bottom.plot(to_day(chunk_dates[q["position"]]), row, "*", color="#C44E52", markersize=11)
    bottom.plot([], [], "*", color="#C44E52", label="answerable from this session on")
    bottom.set_yticks(range(len(questions)), [f"q{i} {SHORT.get(q['category'], q['category'])}"
                                              for i, q in enumerate(questions)], fontsize=8)
    bottom.set_ylim(len(questions) - 0.5, -0.5)
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    bottom.set_xlabel("date")
    fig.autofmt_xdate()
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_accuracy(result: dict, path: str | Path | None = None, title: str | None = None,
                  reference: dict | None = None):
    """A horizontal bar per category (accuracy, with correct/total), the overall score as a line, and
    beside each bar the same category's bar of `reference` (e.g. kit.memory.retrieval.oracle's result)
    when given. Saved as PNG when `path` is given; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    named = set(result["per_category"]) | set((reference or {}).get("per_category", {}))
    cats = [c for c in CATEGORIES if c in named] + sorted(named - set(CATEGORIES))
    rows = cats[::-1]
    height = 0.4 if reference is not None else 0.8
    fig, ax = plt.subplots(figsize=(9, (0.6 if reference is not None else 0.45) * len(cats) + 1.4))

    def bars(res: dict, offset: float, **style):
        values = [(res["per_category"].get(c) or {}).get("accuracy") or 0.0 for c in rows]
        drawn = ax.barh([i + offset for i in range(len(rows))], [v * 100 for v in values], height=height, **style)
        for bar, c in zip(drawn, rows):
            v = res["per_category"].get(c)
            if v:
                ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, f"{v['correct']}/{v['total']}",
                        va="center", fontsize=8)

    bars(result, height / 2 if reference is not None else 0, color="#4C72B0", label=result.get("model", "model"))
    if reference is not None:
        bars(reference, -height / 2, color="#DDDDDD", edgecolor="#555555", hatch="//",
             label=reference.get("model", "reference"))
    overall = result["overall"]["accuracy"]
    if overall is not None:
        ax.axvline(overall * 100, color="#C44E52", linestyle="--", label=f"overall {overall:.0%}")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlim(0, 115)
    ax.set_xlabel("accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title or f"Memory benchmark: {result.get('model', 'model')}")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def category_counts(result: dict) -> dict[str, tuple[int, int]]:
    """category (and "overall") -> (correct, total) of an evaluation or oracle result."""
    counts = {c: (v["correct"], v["total"]) for c, v in result["per_category"].items()}
    counts["overall"] = (result["overall"]["correct"], result["overall"]["total"])
    return counts


def plot_rates(conditions: dict[str, dict[str, tuple[int, int]]], path: str | Path | None = None,
               title: str | None = None, xlabel: str = "accuracy"):
    """Every condition side by side (name -> category -> (k, n)): per category a bar for each, its 95%
    Wilson interval as a whisker and k/n beside it. Bars whose whiskers overlap are not told apart."""
    import matplotlib.pyplot as plt

    from kit.stats import wilson

    names = list(conditions)
    named = set().union(*(set(c) for c in conditions.values())) - {"overall"}
    rows = ([c for c in CATEGORIES if c in named] + sorted(named - set(CATEGORIES)) + ["overall"])[::-1]
    height = 0.8 / len(names)
    colours = ("#4C72B0", "#DD8452", "#55A868", "#8172B3", "#DDDDDD")
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) * len(names) + 1.6))
    for j, name in enumerate(names):
        counts = [conditions[name].get(c, (0, 0)) for c in rows]
        ys = [i + (len(names) / 2 - j - 0.5) * height for i in range(len(rows))]
        shares = [k / n if n else 0.0 for k, n in counts]
        bounds = [wilson(k, n) for k, n in counts]
        errors = [[s - lo for s, (lo, _) in zip(shares, bounds)], [hi - s for s, (_, hi) in zip(shares, bounds)]]
        style = {"edgecolor": "#555555", "hatch": "//"} if name == "oracle" else {}
        ax.barh(ys, shares, height=height, color=colours[-1] if name == "oracle" else colours[j % 4], label=name,
                xerr=errors, error_kw={"ecolor": "#333333", "capsize": 2, "lw": 0.8}, **style)
        for y, (k, n), (_, hi) in zip(ys, counts, bounds):
            ax.text(hi + 0.01, y, f"{k}/{n}", va="center", fontsize=6)
    ax.set_yticks(range(len(rows)), [SHORT.get(c, c) for c in rows], fontsize=8)
    ax.axhline(0.5, color="#999999", lw=0.6)  # "overall" is the bottom row: a line sets it apart
    ax.set_xlim(0, 1.15)
    ax.set_xlabel(f"{xlabel} (whiskers: 95% Wilson interval)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title or "memory benchmark, every condition", fontsize=10)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
