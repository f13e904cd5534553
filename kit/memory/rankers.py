"""Rankers of a record's sessions for a question, with no language model: BM25, newest first, all.

kit.memory.retrieval measures how well they find a question's evidence (recall@k) and
kit.memory.evaluate asks a model with their top k sessions, so both use these same rankings.
"""

from __future__ import annotations

import re

import numpy as np

from kit.text import PLAIN_NUMBER

RETRIEVERS = ("bm25", "recent", "all")
BM25_K1, BM25_B = 1.5, 0.75
_TOKEN = re.compile(rf"\d{{4}}-\d{{2}}-\d{{2}}|[a-z]+|{PLAIN_NUMBER}")


def tokens(text: str) -> list[str]:
    """Lower-case words, numbers and whole ISO dates: a date matches only the same date."""
    return _TOKEN.findall(text.lower())


def bm25_scores(query: str, documents: list[str]) -> np.ndarray:
    """Okapi BM25 of `query` against each document (k1 = 1.5, b = 0.75, idf never negative)."""
    docs = [tokens(d) for d in documents]
    lengths = np.array([len(d) for d in docs], dtype=float)
    mean_length = lengths.mean() if len(docs) and lengths.mean() > 0 else 1.0
    scores = np.zeros(len(docs))
    for term in set(tokens(query)):
        tf = np.array([d.count(term) for d in docs], dtype=float)
        df = int((tf > 0).sum())
        if df == 0:
            continue
        idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        scores += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * lengths / mean_length))
    return scores


def rank(retriever: str, query: str, chunks: list[str], position: int) -> list[int]:
    """Sessions 0..position in the retriever's order, best first (ties: the newer session first)."""
    visible = list(range(position + 1))
    if retriever == "bm25":
        scores = bm25_scores(query, chunks[:position + 1])
        return sorted(visible, key=lambda i: (-scores[i], -i))
    if retriever in ("recent", "all"):
        return visible[::-1]
    raise ValueError(f"unknown retriever {retriever!r} (known: {', '.join(RETRIEVERS)})")
