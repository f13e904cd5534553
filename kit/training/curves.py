"""The loss curve of a training run: one figure for midtraining's and finetuning's loss.png and for the
notebooks (kit.figures, the display layer, shows it).

Why a module of its own: the picture was drawn three times and had drifted apart; what a loss curve
shows (train and validation loss, the uniform guess, tokens seen, bits per byte) is one decision, made
here, in the stage whose runs write it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from kit.paths import save_figure


def loss_figure(history: Sequence[dict], *, title: str, vocab_size: int | None = None):
    """A matplotlib Figure. Left: train loss per step and validation loss where measured; with
    `vocab_size`, ln(V) as a line (the loss of a uniform guess); tokens seen on the top axis when the
    entries count them. Right, when measured: validation bits per byte. `history` entries are
    {step, train_loss, and optionally tokens (cumulative), val_loss, val_bpb}: midtraining's history."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    steps = np.array([h["step"] for h in history], dtype=float)
    val = [h for h in history if h.get("val_loss") is not None]
    bpb = [h for h in val if h.get("val_bpb") is not None]
    if bpb:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    else:
        fig, left = plt.subplots(figsize=(6.4, 3.6))
    left.plot(steps, [h["train_loss"] for h in history], lw=1, marker="." if len(history) < 80 else None, label="train")
    if val:
        left.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", label="validation")
    if vocab_size:
        left.axhline(math.log(vocab_size), color="#C44E52", linestyle="--", lw=1,
                     label=f"ln(V) = {math.log(vocab_size):.2f}: a uniform guess over {vocab_size:,} tokens")
    left.set(xlabel="step", ylabel="loss (nats / target token)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    if len(steps) > 1 and all("tokens" in h for h in history):
        tokens = np.array([h["tokens"] for h in history], dtype=float)
        top = left.secondary_xaxis("top", functions=(lambda s: np.interp(s, steps, tokens),
                                                     lambda t: np.interp(t, tokens, steps)))
        top.set_xlabel("tokens seen", fontsize=8)
        top.xaxis.set_major_locator(MaxNLocator(5))
        top.xaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{t / 1000:,.0f}k" if t >= 1000 else f"{t:.0f}"))
        top.tick_params(labelsize=7)
    if bpb:
        right.plot([h["step"] for h in bpb], [h["val_bpb"] for h in bpb], "o-", color="#55A868")
        right.set(xlabel="step", ylabel="validation bits per byte")
        right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_loss_plot(history: Sequence[dict], path: str | os.PathLike, *, title: str,
                   vocab_size: int | None = None) -> Path:
    """`loss_figure` as a PNG at `path`, written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # a file, from a script or a server: no window, no display needed
    import matplotlib.pyplot as plt

    fig = loss_figure(history, title=title, vocab_size=vocab_size)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
