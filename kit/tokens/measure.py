"""What a tokenizer learned and what a file's loss masks supervise, measured and drawn (notebook 04).

Compression is measured on text the tokenizer never saw: a tokenizer compresses its own training text
better than new text (some merges fit only that corpus), so a vocabulary compared on its training text
looks better than it is. `split_corpus` holds one knowledge file out of the corpus for that.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from kit.tokens.tokenizer import Tokenizer, texts_from_paths

# General conversations (sky colours, recipes, code): a domain the identity and task text never touches.
HELD_OUT = Path("reference") / "general.jsonl"


def split_corpus(extra_paths: Iterable[str | Path] = (), texts: Iterable[str] = (),
                 held_out: str | Path = HELD_OUT) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): kit.tokens.tokenizer.default_corpus without the knowledge file
    `held_out` (relative to the knowledge folder), and that file's texts."""
    from kit.paths import knowledge_dir

    root = knowledge_dir()
    held = root / held_out
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and p != held)
    train = list(texts_from_paths(files)) + list(texts_from_paths(extra_paths)) + list(texts)
    return train, list(texts_from_paths([held]))


def chars_per_token(tok: Tokenizer, texts: Sequence[str]) -> float:
    """Characters per token over `texts` (higher: the vocabulary compresses this text better)."""
    tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    return sum(map(len, texts)) / tokens if tokens else 0.0


def compression_sweep(train: Sequence[str], held_out: Sequence[str], sizes: Sequence[int]) -> list[dict]:
    """One tokenizer per vocabulary size, trained on `train`: characters per token on its training text and
    on the held-out text, the seconds it took, and the tokenizer itself. The size is the one the corpus gave (it may run out of
    merges before a large size)."""
    rows = []
    for size in sizes:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a short corpus: the row's vocab_size says what it gave
            tok = Tokenizer.train(train, size, progress=False)
        rows.append({"asked": size, "vocab_size": tok.vocab_size, "train chars/token": chars_per_token(tok, train),
                     "held-out chars/token": chars_per_token(tok, held_out), "seconds": time.perf_counter() - t0,
                     "tokenizer": tok})
    return rows


def compression_sentence(rows: Sequence[dict]) -> str:
    """What the sweep shows, from its rows: the gain on held-out text against the gain on training text."""
    first, last = rows[0], rows[-1]
    held_gain = last["held-out chars/token"] / first["held-out chars/token"]
    train_gain = last["train chars/token"] / first["train chars/token"]
    return (f"From {first['vocab_size']} to {last['vocab_size']} ids, held-out text goes from "
            f"**{first['held-out chars/token']:.2f} to {last['held-out chars/token']:.2f}** characters per token "
            f"(x{held_gain:.2f}); the training text from {first['train chars/token']:.2f} to "
            f"{last['train chars/token']:.2f} (x{train_gain:.2f}). "
            + ("The training text gains more: part of a large vocabulary's gain is merges that fit only its own corpus."
               if train_gain > held_gain else "The held-out text gains as much: the merges carry over to new text."))


def longest_tokens(tok: Tokenizer, k: int = 12) -> list[str]:
    """The `k` longest learned tokens (by bytes, specials left out), as text: what the merges found worth a
    single id."""
    learned = sorted(tok.mergeable_ranks, key=lambda b: (-len(b), tok.mergeable_ranks[b]))
    return [b.decode("utf-8", errors="replace") for b in learned[:k]]


def compression_figure(rows: Sequence[dict], title: str | None = None):
    """Characters per token against vocabulary size, on the training text and on held-out text."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    sizes = [r["vocab_size"] for r in rows]
    for key, style, offset in (("train chars/token", "o--", 6), ("held-out chars/token", "s-", -12)):
        values = [r[key] for r in rows]
        ax.plot(sizes, values, style, label=key.replace(" chars/token", " text"))
        for x, y in zip(sizes, values):
            ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, offset), ha="center", fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("vocabulary size (ids, log scale)")
    ax.set_ylabel("characters per token")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "compression vs vocabulary size: training text and held-out text", fontsize=9)
    fig.tight_layout()
    return fig


def supervised_fractions(rendered: Sequence, sources: Sequence[str]) -> dict[str, list[float]]:
    """source -> the supervised share (mask 1) of each of its conversations' tokens."""
    out: dict[str, list[float]] = {}
    for r, source in zip(rendered, sources):
        if len(r.ids):
            out.setdefault(source, []).append(sum(r.mask) / len(r.ids))
    return out


def supervised_histogram(fractions: dict[str, list[float]], title: str | None = None):
    """One row per source: a histogram of the supervised share per conversation, its median marked."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(fractions), 1, sharex=True, squeeze=False,
                             figsize=(6.5, 0.9 * len(fractions) + 1.0))
    bins = np.linspace(0, 1, 41)
    for ax, (source, values) in zip(axes[:, 0], sorted(fractions.items())):
        ax.hist(values, bins=bins, color="#7BC47F", edgecolor="#4F8A52")
        median = float(np.median(values))
        ax.axvline(median, color="#333333", lw=1)
        ax.set_ylabel(source, rotation=0, ha="right", va="center", fontsize=8)
        ax.text(1.01, 0.5, f"n={len(values)}, median {median:.0%}", transform=ax.transAxes, fontsize=7, va="center")
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("supervised share of a conversation's tokens (loss mask = 1)")
    axes[-1, 0].xaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    fig.suptitle(title or "supervised share per conversation, by source (line: median)", fontsize=9)
    fig.tight_layout()
    return fig
