"""Near-duplicate detection at scale: 100k synthetic conversations with planted near-duplicates.

Prints, measured in this run:
- kit.quality.neardup.near_duplicates on 100k conversations: seconds, peak memory (growth of the process's peak
  resident set over the run; Linux resets that counter through /proc/self/clear_refs), recall of the planted pairs;
- the exact O(n^2) pairwise Jaccard baseline on a 2k sample: seconds (and that time scaled to 100k),
  and MinHash-LSH's recall of the pairs the exact baseline finds on the same sample;
- numpy-vectorised signatures against one datasketch MinHash.update_batch per conversation.

Conversations are Zipf-distributed pseudo-words (4 turns, 15-60 words each). 5% of them are copies of
an earlier one with 1-6 words replaced: exact Jaccard of their word 3-gram sets from about 0.67 to 0.99,
so planted pairs sit below, at and above the 0.8 threshold on purpose. Recall is reported per band of
exact Jaccard: around the threshold about half is expected (the MinHash estimate falls on either side),
above 0.9 it must be at least 0.95.
"""

from __future__ import annotations

import itertools
import re
import resource
import time
from pathlib import Path

import numpy as np

from kit.quality import neardup

N = 100_000
SAMPLE = 2_000
PLANTED_SHARE = 0.05
THRESHOLD = 0.8
VOCAB = 20_000


def synthetic_conversations(n: int, seed: int = 0) -> tuple[list[dict], list[tuple[int, int]]]:
    """n records of pseudo-words, and the planted (original, copy) position pairs (copies at random positions)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=rng.integers(2, 9))) for _ in range(VOCAB)]
    p = 1.0 / np.arange(1, VOCAB + 1) ** 1.05
    p /= p.sum()
    lengths = rng.integers(15, 61, size=(n, 4))
    ids = rng.choice(VOCAB, size=int(lengths.sum()), p=p)
    records, pos = [], 0
    for i in range(n):
        messages = []
        for turn, k in enumerate(lengths[i]):
            messages.append({"role": ("user", "assistant")[turn % 2], "content": " ".join(vocab[j] for j in ids[pos : pos + k])})
            pos += k
        records.append({"id": f"syn-{i:06d}", "messages": messages, "meta": {}})
    planted: list[tuple[int, int]] = []
    copies = rng.choice(np.arange(1, n), size=int(n * PLANTED_SHARE), replace=False)
    for dup in sorted(copies):
        orig = int(rng.integers(0, dup))
        while orig in copies:  # copy an original, so planted pairs are the ground truth
            orig = int(rng.integers(0, dup))
        messages = [dict(m) for m in records[orig]["messages"]]
        for _ in range(rng.integers(1, 7)):
            m = messages[rng.integers(0, 4)]
            words = m["content"].split()
            words[rng.integers(0, len(words))] = vocab[rng.integers(0, VOCAB)]
            m["content"] = " ".join(words)
        records[dup] = {"id": f"syn-{dup:06d}", "messages": messages, "meta": {}}
        planted.append((orig, int(dup)))
    return records, planted


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def peak_memory_growth(fn):
    """(fn(), bytes the process's peak resident set grew while fn ran, how it was measured)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: peak RSS := current RSS
        before, how = _status_kib("VmRSS"), "peak RSS"
    except OSError:
        before, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "max RSS (not reset: a lower bound)"
    result = fn()
    after = _status_kib("VmHWM") if how == "peak RSS" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, (after - before) * 1024, how


def exact_pairs(records: list[dict], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair at or above the threshold, with its exact Jaccard similarity: the O(n^2) baseline."""
    sets = [frozenset(neardup.shingles(neardup.conversation_text(r))) for r in records]
    found = {}
    for i, j in itertools.combinations(range(len(sets)), 2):
        inter = len(sets[i] & sets[j])
        if inter and (jac := inter / (len(sets[i]) + len(sets[j]) - inter)) >= threshold:
            found[(i, j)] = jac
    return found


def same_cluster(clusters: list[list[int]], n: int) -> np.ndarray:
    label = np.arange(n)
    for c in clusters:
        label[c] = c[0]
    return label


def recall(pairs, label) -> float:
    pairs = list(pairs)
    return sum(label[a] == label[b] for a, b in pairs) / len(pairs) if pairs else float("nan")


BANDS = ((0.6, 0.8), (0.8, 0.9), (0.9, 1.01))


def recall_by_band(pair_jaccard: dict, label) -> dict[str, float]:
    """Recall per band of exact Jaccard: near the threshold a MinHash estimate lands on either side
    of it about equally often, so recall there is about one half by nature; above it, it must be ~1."""
    out = {}
    for lo, hi in BANDS:
        pairs = [p for p, j in pair_jaccard.items() if lo <= j < hi]
        if pairs:
            out[f"[{lo:.1f}, {min(hi, 1.0):.1f}{')' if hi <= 1 else ']'} n={len(pairs)}"] = recall(pairs, label)
    return out


def _bands(r: dict) -> str:
    return ", ".join(f"{band}: {value:.3f}" for band, value in r.items())


def test_bench_dedup_100k():
    t0 = time.perf_counter()
    records, planted = synthetic_conversations(N)
    print(f"\n{N} synthetic conversations, {len(planted)} planted near-duplicates ({time.perf_counter() - t0:.1f} s to make)")
    planted_j = {
        (a, b): len(sa & sb) / len(sa | sb)
        for a, b in planted
        for sa, sb in [(set(neardup.shingles(neardup.conversation_text(records[a]))), set(neardup.shingles(neardup.conversation_text(records[b]))))]
    }
    print(f"planted pairs: exact Jaccard {min(planted_j.values()):.2f}..{max(planted_j.values()):.2f}")

    # ---- MinHash + LSH on all 100k ------------------------------------------------------------
    t0 = time.perf_counter()
    nd, grew, how = peak_memory_growth(lambda: neardup.near_duplicates(records, threshold=THRESHOLD, num_perm=128))
    minhash_s = time.perf_counter() - t0
    label = same_cluster(nd.clusters, N)
    planted_recall = recall_by_band(planted_j, label)
    print(
        f"MinHash-LSH, 100k: {minhash_s:.1f} s, {how} grew {grew / 2**20:.0f} MiB, "
        f"{len(nd.clusters)} clusters, near_duplicate_rate {nd.rate:.4f}, candidate pairs {nd.candidate_pairs}"
    )
    print(f"  recall of planted pairs by exact Jaccard: {_bands(planted_recall)}")

    # ---- exact pairwise baseline on a sample holding planted pairs ----------------------------
    rng = np.random.default_rng(1)
    chosen = [planted[i] for i in rng.choice(len(planted), size=SAMPLE // 4, replace=False)]
    members = {i for pair in chosen for i in pair}
    others = [i for i in rng.permutation(N)[: SAMPLE * 2] if i not in members][: SAMPLE - len(members)]
    sample_ids = sorted(members | set(int(i) for i in others))
    sample = [records[i] for i in sample_ids]
    t0 = time.perf_counter()
    truth = exact_pairs(sample, THRESHOLD)
    exact_s = time.perf_counter() - t0
    scaled = exact_s * (N / len(sample)) ** 2
    t0 = time.perf_counter()
    nd_sample = neardup.near_duplicates(sample, threshold=THRESHOLD, num_perm=128)
    sample_minhash_s = time.perf_counter() - t0
    sample_label = same_cluster(nd_sample.clusters, len(sample))
    merged = {(i, j) for c in nd_sample.clusters for i, j in itertools.combinations(sorted(c), 2)}
    sample_recall = recall_by_band(truth, sample_label)
    print(
        f"exact pairwise Jaccard, {len(sample)} records: {exact_s:.1f} s ({len(truth)} pairs >= {THRESHOLD}); "
        f"scaled to 100k: {scaled / 3600:.1f} h"
    )
    print(
        f"MinHash-LSH on the same sample: {sample_minhash_s:.2f} s, recall of the exact pairs {_bands(sample_recall)}, "
        f"merged pairs below {THRESHOLD} (exact) {len(merged - truth.keys())}"
    )

    # ---- signatures: numpy blocks vs one datasketch MinHash per conversation -----------------
    from datasketch import MinHash

    texts = [neardup.conversation_text(r) for r in sample]
    t0 = time.perf_counter()
    neardup.minhash_signatures(texts)
    vec_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for text in texts:
        m = MinHash(num_perm=128, hashfunc=neardup.shingle_hash)
        m.update_batch(neardup.shingles(text))
    ds_s = time.perf_counter() - t0
    print(f"signatures of {len(texts)} conversations: numpy {vec_s:.2f} s, datasketch update_batch {ds_s:.2f} s ({ds_s / vec_s:.1f}x)")

    print(f"limit: MinHash-LSH on 100k must beat the exact baseline scaled to 100k by 10x: {scaled / minhash_s:.0f}x")
    assert list(planted_recall.values())[-1] >= 0.95  # pairs at Jaccard >= 0.9
    assert list(sample_recall.values())[-1] >= 0.95
    assert scaled / minhash_s >= 10
