"""Accuracy per question category as a bar chart, for the notebook and reports."""

from __future__ import annotations

from pathlib import Path


def plot_accuracy(result: dict, path: str | Path | None = None, title: str | None = None):
    """A horizontal bar per category (accuracy, with correct/total), the overall score as a line.
    Saved as PNG when `path` is given; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    cats = list(result["per_category"])
    values = [result["per_category"][c]["accuracy"] or 0.0 for c in cats]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(cats) + 1.4))
    bars = ax.barh(cats[::-1], [v * 100 for v in values[::-1]], color="#4C72B0")
    for bar, c in zip(bars, cats[::-1]):
        v = result["per_category"][c]
        ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, f"{v['correct']}/{v['total']}",
                va="center", fontsize=9)
    overall = result["overall"]["accuracy"]
    if overall is not None:
        ax.axvline(overall * 100, color="#C44E52", linestyle="--", label=f"overall {overall:.0%}")
        ax.legend(loc="lower right")
    ax.set_xlim(0, 110)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(title or f"Memory benchmark: {result.get('model', 'model')}")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
