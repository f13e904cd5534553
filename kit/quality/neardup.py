"""Near-duplicate conversations: MinHash over each conversation's word 3-gram shingles, candidates from
datasketch's MinHashLSH, kept when the estimated Jaccard similarity reaches the threshold, grouped by
union-find into clusters (connected components, so A~B and B~C put A and C together).
`near_duplicate_rate` is the share of records a dedup would remove (cluster members beyond the first).
Word 3-grams rather than character 5-grams: conversations are long enough for word shingles, a
rephrased sentence breaks them as it should, and there are 4-5x fewer to hash.

Why a module of its own: hashing, signatures and clustering are one algorithm with its own tests and
speed budget, read apart from the report that only shows its result (kit.quality.report).
"""

from __future__ import annotations

import itertools
import zlib

from dataclasses import dataclass, field

from typing import Any, Iterable, Sequence

import numpy as np

from kit.records import message_text
from kit.quality.diversity import words

_EMPTY = np.uint32(0xFFFFFFFF)  # the signature value of an empty set, as in datasketch
_MASK64 = (1 << 64) - 1
_SHINGLE_MULT = 0x9E3779B97F4A7C15
_CHUNK_SHINGLES = 1 << 15  # shingles per numpy block: 32k x 128 perms x 4 bytes = 16 MiB
# Fewer permutations than this cannot be banded by LSH at common thresholds; more than this buys no
# precision worth its memory (each record holds num_perm numbers; 10^8 asked for 159 GiB).
MIN_NUM_PERM, MAX_NUM_PERM = 16, 1024


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, which datasketch's "affine32" scheme applies before permuting."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _mix64(z):
    """splitmix64's finaliser; works on Python ints (masked) and on uint64 arrays (wrapping)."""
    if isinstance(z, int):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def word_hash(word: str) -> int:
    return zlib.crc32(word.encode("utf-8"))


def shingle_hash(shingle: Sequence[str]) -> int:
    """32-bit hash of a word shingle: crc32 per word, folded, then mixed. `_block_signatures` computes
    the same vectorised; this scalar form lets datasketch's own MinHash check it."""
    x = 0
    for word in shingle:
        x = (x * _SHINGLE_MULT + word_hash(word)) & _MASK64
    return _mix64(x) >> 32


def conversation_text(record: dict) -> str:
    return "\n".join(message_text(m.get("content")) for m in record["messages"])


def shingles(text: str, k: int = 3) -> list[tuple[str, ...]]:
    """Word k-gram shingles; a text shorter than k words is one shingle (empty text: none)."""
    w = words(text)
    if len(w) < k:
        return [tuple(w)] if w else []
    return [tuple(w[i : i + k]) for i in range(len(w) - k + 1)]


class _WordHashes(dict):
    """word -> word_hash(word), computed on first sight; lookups stay in C (`map(cache.__getitem__, ...)`)."""

    def __missing__(self, word: str) -> int:
        self[word] = value = word_hash(word)
        return value


def _block_signatures(docs: list[list[str]], k: int, a: np.ndarray, b: np.ndarray, cache: _WordHashes) -> np.ndarray:
    """Signatures of a block of word lists: all shingle hashes at once, one min-reduce per doc."""
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    h = np.fromiter(map(cache.__getitem__, itertools.chain.from_iterable(docs)), dtype=np.uint64, count=int(lengths.sum()))
    # k-word windows over the concatenated words (wrapping uint64 arithmetic = shingle_hash's
    # masked ints); only windows that start early enough to stay inside their doc are shingles
    x = np.zeros(max(len(h) - k + 1, 0), dtype=np.uint64)
    for j in range(k):
        x = x * np.uint64(_SHINGLE_MULT) + h[j : j + len(x)]
    windows = _mix64(x) >> np.uint64(32)
    counts = np.where(lengths >= k, lengths - k + 1, (lengths > 0).astype(np.int64))
    doc_of = np.repeat(np.arange(len(docs)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    word_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    src = word_start[doc_of] + np.arange(len(doc_of)) - first[doc_of]
    short = np.flatnonzero((lengths > 0) & (lengths < k))
    if len(short):  # fewer than k words: the whole text is the one shingle
        is_short = np.isin(doc_of, short)
        src[is_short] = len(windows) + np.arange(len(short))
        windows = np.concatenate([windows, np.array([shingle_hash(docs[i]) for i in short], dtype=np.uint64)])
    sig = np.full((len(docs), len(a)), _EMPTY, dtype=np.uint32)
    nonempty = np.flatnonzero(counts > 0)
    if len(nonempty):
        # datasketch's affine32 permutations: a*h + b wrapping in uint32 (a odd: a bijection).
        # One row per permutation, so each doc's min runs along contiguous memory (10x faster).
        phv = a[:, None] * _fmix32(windows[src].astype(np.uint32))[None, :] + b[:, None]
        sig[nonempty] = np.minimum.reduceat(phv, first[nonempty], axis=1).T
    return sig


def minhash_signatures(texts: Iterable[str], num_perm: int = 128, k: int = 3, seed: int = 1) -> np.ndarray:
    """MinHash signatures (n x num_perm, uint32) of the texts' word k-gram sets.

    Equal to `datasketch.MinHash(num_perm, seed=seed, hashfunc=shingle_hash).update_batch(shingles(t, k))`
    for each text (the tests check it), computed for blocks of texts at once in numpy: one
    datasketch MinHash per text hashes in a Python loop and is several times slower. The scheme is
    datasketch's default "affine32". Memory stays flat: texts are tokenised block by block. A text
    without words gets the empty signature (all 2**32-1), as in datasketch.
    """
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    cache = _WordHashes()
    blocks, docs, pending = [], [], 0
    for text in texts:
        docs.append(words(text))
        pending += max(len(docs[-1]) - k + 1, 1)
        if pending >= _CHUNK_SHINGLES:
            blocks.append(_block_signatures(docs, k, a, b, cache))
            docs, pending = [], 0
    if docs or not blocks:
        blocks.append(_block_signatures(docs, k, a, b, cache))
    return np.concatenate(blocks)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)  # the root is the earliest record


@dataclass
class NearDuplicates:
    """Clusters are lists of record positions (file order), earliest first, biggest cluster first."""

    threshold: float
    num_perm: int
    shingle: str
    n_records: int
    clusters: list[list[int]] = field(default_factory=list)
    candidate_pairs: int = 0
    similar_pairs: int = 0
    empty_records: int = 0

    @property
    def removable(self) -> int:
        return sum(len(c) - 1 for c in self.clusters)

    @property
    def rate(self) -> float:
        """Share of records a dedup would remove: every cluster member but the first."""
        return self.removable / self.n_records if self.n_records else 0.0

    def to_dict(self, records: Sequence[dict] | None = None, top: int = 5, snippet: int = 100) -> dict:
        largest = []
        for cluster in self.clusters[:top]:
            entry: dict[str, Any] = {"size": len(cluster), "positions": cluster[:10]}
            if records is not None:
                entry["ids"] = [records[i]["id"] for i in cluster[:10]]
                entry["examples"] = [_snippet(conversation_text(records[i]), snippet) for i in cluster[:3]]
            largest.append(entry)
        return {
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "shingle": self.shingle,
            "n_records": self.n_records,
            "clusters": len(self.clusters),
            "records_in_clusters": sum(map(len, self.clusters)),
            "removable": self.removable,
            "near_duplicate_rate": self.rate,
            "candidate_pairs": self.candidate_pairs,
            "similar_pairs": self.similar_pairs,
            "empty_records": self.empty_records,
            "largest": largest,
        }


def _snippet(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def lsh_index(threshold: float, num_perm: int):
    """datasketch's MinHashLSH for these settings, or a ValueError that says which to change (the
    quality CLI calls it before it reads anything)."""
    from datasketch import MinHashLSH

    if isinstance(num_perm, bool) or not isinstance(num_perm, int) or not MIN_NUM_PERM <= num_perm <= MAX_NUM_PERM:
        raise ValueError(f"num_perm must be {MIN_NUM_PERM}..{MAX_NUM_PERM}, got {num_perm!r}")
    # LSH only proposes candidates; above ~0.98 datasketch cannot band the signature (b < 2), and a
    # lower candidate threshold loses nothing: each pair is kept only if its estimate reaches `threshold`
    try:
        return MinHashLSH(threshold=min(threshold, 0.95), num_perm=num_perm)
    except ValueError as exc:
        raise ValueError(f"num_perm {num_perm} is too few for a threshold of {threshold:g} ({exc}); "
                         f"use 64 or more") from None


def near_duplicates(
    records: Sequence[dict], threshold: float = 0.8, num_perm: int = 128, shingle: int = 3, seed: int = 1
) -> NearDuplicates:
    """Clusters of conversations whose word-shingle sets have Jaccard similarity >= threshold.

    LSH proposes candidate pairs; each is kept only if its MinHash estimate reaches the threshold
    (this drops most LSH false positives; the estimate's standard error is about
    sqrt(J(1-J)/num_perm), 0.035 at J=0.8 with 128 permutations). So a pair right at the threshold
    is found about half the time, a pair 0.1 above it almost always (tests/bench/test_bench_dedup.py
    measures this). Records without words are left out.
    """
    from datasketch import LeanMinHash

    lsh = lsh_index(threshold, num_perm)  # first: a bad num_perm fails before any signature is computed
    sig = minhash_signatures((conversation_text(r) for r in records), num_perm=num_perm, k=shingle, seed=seed)
    empty = np.all(sig == _EMPTY, axis=1)
    keep = np.flatnonzero(~empty)
    with lsh.insertion_session() as session:
        for i in keep:
            session.insert(int(i), LeanMinHash(seed=seed, hashvalues=sig[i], scheme="affine32"), check_duplication=False)
    uf = _UnionFind(len(records))
    candidates = similar = 0
    for i in keep:
        i = int(i)
        others = [j for j in lsh.query(LeanMinHash(seed=seed, hashvalues=sig[i], scheme="affine32")) if j > i]
        if not others:
            continue
        candidates += len(others)
        estimates = (sig[others] == sig[i]).mean(axis=1)
        for j, est in zip(others, estimates):
            if est >= threshold:
                similar += 1
                uf.union(i, j)
    groups: dict[int, list[int]] = {}
    for i in keep:
        groups.setdefault(uf.find(int(i)), []).append(int(i))
    clusters = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    return NearDuplicates(threshold, num_perm, f"word {shingle}-grams", len(records), clusters, candidates, similar, int(empty.sum()))


def dedup(records: Sequence[dict], clusters: Iterable[Sequence[int]]) -> list[dict]:
    """The records with each cluster reduced to its first member (file order, so the lowest index)."""
    drop = {i for cluster in clusters for i in sorted(cluster)[1:]}
    return [r for i, r in enumerate(records) if i not in drop]
