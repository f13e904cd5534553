"""Is the data as diverse as we asked for, and what did each trainable token cost?

Diversity control is the creative core of synthetic data: the generator injects entropy (topic,
persona, dynamic, first-message style) and this module checks what came out. Everything here reads
conversation records (kit.records) and returns plain, JSON-ready values:

- coverage: the realised share of every diversity element in the records' `meta` against its target
  share (from the recipe via `kit.generation.sampling.target_shares`, given explicitly, or uniform over what was
  observed), and the elements furthest off;
- distinct-n: unique word n-grams / all word n-grams, user and assistant turns apart; words are the
  lowercased runs of letters and digits (an inner apostrophe stays: "don't" is one word);
- first-message duplicate rate: the share of first user messages that repeat an earlier one
  (compared lowercased, with whitespace collapsed);
- near-duplicates: MinHash over each conversation's word 3-gram shingles, candidates from
  datasketch's MinHashLSH, kept when the estimated Jaccard similarity reaches the threshold, grouped
  by union-find into clusters (connected components, so A~B and B~C put A and C together);
  `near_duplicate_rate` is the share of records a dedup would remove (cluster members beyond the
  first). Word 3-grams rather than character 5-grams: conversations are long enough for word
  shingles, a rephrased sentence breaks them as it should, and there are 4-5x fewer to hash;
- style rules: non-ASCII rate, the identity's name in assistant turns, the language of the first
  user message (a small documented heuristic, see `guess_language`);
- cost: API dollars and tokens per supervised (loss mask == 1) token, using a kit tokenizer.

`python -m kit quality FILE` prints a table, or the report as JSON with --json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import statistics
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from kit.arguments import finite_float
from kit.paths import argument, output_problem
from kit.records import RecordError, file_problem, message_text, read_records, write_records
from kit.quality.validation import CONTENT_RULES, Rules, content_problems, errors, load_rules, validate_messages

# Diversity dimensions as they appear in generated records' meta. A dimension may be list-valued
# (each record drew several first-message categories); each list item counts once.
DIMENSIONS = ("recipe", "topic_category", "topic", "persona", "dynamic", "first_message_category")
_META_KEY = {"first_message_category": "first_message_categories"}

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


# ---- coverage -----------------------------------------------------------------------------------


def realised_counts(records: Sequence[dict], dims: Iterable[str] = DIMENSIONS) -> dict[str, dict]:
    """Per dimension: element counts and how many records lack the key in their meta."""
    out = {}
    for dim in dims:
        key = _META_KEY.get(dim, dim)
        counts: Counter = Counter()
        without = 0
        for record in records:
            value = (record.get("meta") or {}).get(key)
            if value is None or value == [] or value == "":
                without += 1
            elif isinstance(value, list):
                counts.update(str(v) for v in value)
            else:
                counts[str(value)] += 1
        out[dim] = {"counts": counts, "records_without": without}
    return out


def recipe_targets(records: Sequence[dict]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Target shares from `kit.generation.sampling.target_shares` for the recipes the records name, mixed in
    proportion to how many records each recipe made. Returns ({} , notes) when that is not possible."""
    recipes = Counter(str(r["meta"]["recipe"]) for r in records if (r.get("meta") or {}).get("recipe"))
    if not recipes:
        return {}, ["records name no recipe: targets are uniform over the observed elements"]
    try:
        from kit.generation.sampling import target_shares
    except ImportError as exc:
        return {}, [f"kit.generation.sampling unavailable ({exc}): targets are uniform over the observed elements"]
    total = sum(recipes.values())
    mixed: dict[str, dict[str, float]] = {"recipe": {name: n / total for name, n in recipes.items()}}
    for name, n in recipes.items():
        try:
            shares = target_shares(name)
        except Exception as exc:  # an unknown or broken recipe must not stop the report
            return {}, [f"recipe {name!r}: no target shares ({exc}): targets are uniform over the observed elements"]
        for dim, elements in shares.items():
            bucket = mixed.setdefault(dim, {})
            for element, share in elements.items():
                bucket[element] = bucket.get(element, 0.0) + share * n / total
    return mixed, [f"targets from recipe{'s' if len(recipes) > 1 else ''} {', '.join(sorted(recipes))}"]


def coverage(records: Sequence[dict], targets: dict[str, dict[str, float]] | None = None, *, top: int = 10) -> dict:
    """Realised share of each diversity element against its target share.

    `targets` maps dimension -> {element: share}. With None, targets come from the records' recipe
    (kit.generation.sampling), else are uniform over the observed elements. A dimension no target covers is
    compared with uniform-over-observed, and says so in its `source`. Dimensions no record carries
    are left out (listed under `absent`), so records without meta give an empty but valid answer.
    """
    notes: list[str] = []
    if targets is None:
        targets, notes = recipe_targets(records)
        given_source = "recipe"
    else:
        given_source = "given"
    dims = list(DIMENSIONS) + [d for d in targets if d not in DIMENSIONS]
    realised = realised_counts(records, dims)
    dimensions, absent, off = {}, [], []
    for dim in dims:
        counts, without = realised[dim]["counts"], realised[dim]["records_without"]
        total = sum(counts.values())
        if total == 0 and not targets.get(dim):
            absent.append(dim)
            continue
        if dim in targets:
            target, source = dict(targets[dim]), given_source
        else:
            target, source = {e: 1 / len(counts) for e in counts}, "uniform over observed"
        elements = []
        for element in sorted(set(counts) | set(target), key=lambda e: (-target.get(e, 0.0), -counts[e], e)):
            share = counts[element] / total if total else 0.0
            t = target.get(element)
            diff = share - (t or 0.0)
            elements.append({"element": element, "count": counts[element], "share": share, "target": t, "diff": diff})
            off.append({"dimension": dim, "element": element, "share": share, "target": t, "diff": diff})
        dimensions[dim] = {
            "source": source,
            "n": total,
            "records_without": without,
            "total_variation": 0.5 * sum(abs(e["diff"]) for e in elements),
            "missing": [e["element"] for e in elements if (e["target"] or 0) > 0 and e["count"] == 0],
            "unexpected": [e["element"] for e in elements if e["count"] > 0 and not e["target"]],
            "elements": elements,
        }
    if absent and len(absent) == len(dims):
        notes.append("no record carries diversity meta (topic, persona, ...): coverage cannot be measured")
    off.sort(key=lambda e: (-abs(e["diff"]), e["dimension"], e["element"]))
    return {"dimensions": dimensions, "furthest_off": off[:top], "absent": absent, "notes": notes}


# ---- lexical diversity --------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lowercased words: runs of letters/digits, an inner apostrophe kept ("don't")."""
    return _WORD.findall(text.lower())


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Unique word n-grams / all word n-grams over all texts (n-grams never cross texts).

    None when the texts hold no n-gram at all. Unique n-grams are counted by their hash, which
    keeps memory flat on big files; a 64-bit collision is too rare to move the figure.
    """
    seen: set[int] = set()
    total = 0
    for text in texts:
        w = words(text)
        grams = zip(*(w[i:] for i in range(n)))
        for gram in grams:
            seen.add(hash(gram))
            total += 1
    return len(seen) / total if total else None


def role_texts(records: Sequence[dict], role: str) -> list[str]:
    return [message_text(m.get("content")) for r in records for m in r["messages"] if m.get("role") == role]


def distinct(records: Sequence[dict], ns: Sequence[int] = (1, 2, 3)) -> dict:
    """distinct-1/2/3 for user and assistant turns apart, with the number of words behind them."""
    out = {}
    for role in ("user", "assistant"):
        texts = role_texts(records, role)
        out[role] = {f"distinct_{n}": distinct_n(texts, n) for n in ns}
        out[role]["words"] = sum(len(words(t)) for t in texts)
    return out


def first_user_message(record: dict) -> str | None:
    for m in record["messages"]:
        if m.get("role") == "user":
            return message_text(m.get("content"))
    return None


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def first_message_duplicate_rate(records: Sequence[dict]) -> float | None:
    """Share of first user messages that repeat an earlier one (lowercased, whitespace collapsed).
    0 means every conversation opens differently; None when no record has a user message."""
    firsts = [_normalise(t) for t in map(first_user_message, records) if t is not None]
    return 1 - len(set(firsts)) / len(firsts) if firsts else None


def first_messages(records: Sequence[dict], top: int = 10) -> dict:
    firsts = [_normalise(t) for t in map(first_user_message, records) if t is not None]
    counts = Counter(firsts)
    return {
        "n": len(firsts),
        "unique": len(counts),
        "duplicate_rate": first_message_duplicate_rate(records),
        "most_common": [{"text": t, "count": c} for t, c in counts.most_common(top) if c > 1],
    }


# ---- near-duplicates ------------------------------------------------------------------------------

_EMPTY = np.uint32(0xFFFFFFFF)  # the signature value of an empty set, as in datasketch
_MASK64 = (1 << 64) - 1
_SHINGLE_MULT = 0x9E3779B97F4A7C15
_CHUNK_SHINGLES = 1 << 15  # shingles per numpy block: 32k x 128 perms x 4 bytes = 16 MiB


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
    from datasketch import LeanMinHash, MinHashLSH

    sig = minhash_signatures((conversation_text(r) for r in records), num_perm=num_perm, k=shingle, seed=seed)
    empty = np.all(sig == _EMPTY, axis=1)
    # LSH only proposes candidates; above ~0.98 datasketch cannot band the signature (b < 2), and a
    # lower candidate threshold loses nothing: each pair is kept only if its estimate reaches `threshold`
    lsh = MinHashLSH(threshold=min(threshold, 0.95), num_perm=num_perm)
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


# ---- style rules ----------------------------------------------------------------------------------

# Non-Latin scripts by Unicode block; a message is given the script most of its letters are in.
_SCRIPTS = (
    ("ja", ((0x3040, 0x30FF),)),  # kana (checked before Han: Japanese mixes both)
    ("ko", ((0xAC00, 0xD7AF), (0x1100, 0x11FF))),
    ("zh", ((0x4E00, 0x9FFF),)),
    ("ru", ((0x0400, 0x04FF),)),
    ("ar", ((0x0600, 0x06FF),)),
    ("he", ((0x0590, 0x05FF),)),
    ("hi", ((0x0900, 0x097F),)),
    ("el", ((0x0370, 0x03FF),)),
    ("th", ((0x0E00, 0x0E7F),)),
)
# Latin-script languages: frequent function words and greetings. Romanised greetings of other
# languages ("konnichiwa") count for the language they greet in, which is what a reader expects.
_LATIN_WORDS = {
    "en": "the a an is are was what who how why can do does you your i me my it this that of to in and or "
    "hi hello hey yo sup hiya howdy greetings thanks please tell about made are you good morning evening",
    "es": "el la los las es son que qué como cómo por para una un y de en eres tú quién hola gracias buenos buenas días saludos",
    "fr": "le la les est sont que qui quoi comment pour une un et de en es tu vous je bonjour salut merci bonsoir",
    "de": "der die das ist sind was wer wie warum für ein eine und von zu du bist ich hallo guten tag morgen danke",
    "it": "il lo la gli le è sono che chi come perché per una uno e di in sei tu ciao buongiorno grazie buonasera",
    "pt": "o a os as é são que quem como porque para uma um e de em você tu olá oi obrigado bom dia",
    "nl": "de het een is zijn wat wie hoe waarom voor en van je jij ik hoi dag goedemorgen bedankt",
    "sv": "hej och det är vad vem hur jag du tack",
    "tr": "merhaba selam nasılsın ve bir bu ne kim",
    "ja": "konnichiwa konbanwa ohayo arigato",
    "ko": "annyeong annyeonghaseyo",
    "zh": "nihao ni hao xiexie",  # "ni hao" scores twice
    "ru": "privet zdravstvuyte spasibo",
    "hi": "namaste",
    "he": "shalom",
    "haw": "aloha",
}
_LATIN = {lang: set(ws.split()) for lang, ws in _LATIN_WORDS.items()}


def guess_language(text: str) -> str:
    """A small heuristic: the dominant non-Latin script decides (ja, ko, zh, ru, ar, he, hi, el, th);
    otherwise the Latin-script language whose common words/greetings the text uses most (ties go to
    English); "und" (undetermined) when nothing matches, e.g. a typo greeting like "helo"."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "und"
    for lang, ranges in _SCRIPTS:
        n = sum(1 for c in letters if any(lo <= ord(c) <= hi for lo, hi in ranges))
        if n >= len(letters) / 2 or (lang == "ja" and n and n >= len(letters) / 10):
            return lang
    w = words(text)
    scores = {lang: sum(x in vocab for x in w) for lang, vocab in _LATIN.items()}
    best = max(scores.values())
    if best == 0:
        return "und"
    winners = [lang for lang, s in scores.items() if s == best]
    return "en" if "en" in winners else winners[0]


def style(records: Sequence[dict], identity_name: str = "nanochat") -> dict:
    """Non-ASCII rate (the seeds ask for plain ASCII), mentions of the identity's name in assistant
    turns, and the language of the first user message."""
    messages = [message_text(m.get("content")) for r in records for m in r["messages"]]
    non_ascii_msgs = sum(not t.isascii() for t in messages)
    non_ascii_records = sum(any(not message_text(m.get("content")).isascii() for m in r["messages"]) for r in records)
    chars = Counter(c for t in messages if not t.isascii() for c in t if ord(c) > 127)
    name = re.compile(rf"\b{re.escape(identity_name)}\b", re.IGNORECASE)
    assistant = role_texts(records, "assistant")
    mentions = sum(bool(name.search(t)) for t in assistant)
    convs_mentioning = sum(
        any(m.get("role") == "assistant" and name.search(message_text(m.get("content"))) for m in r["messages"]) for r in records
    )
    languages = Counter(guess_language(t) for t in map(first_user_message, records) if t is not None)
    return {
        "non_ascii_message_rate": non_ascii_msgs / len(messages) if messages else None,
        "non_ascii_record_rate": non_ascii_records / len(records) if records else None,
        "non_ascii_top_chars": [{"char": c, "codepoint": f"U+{ord(c):04X}", "count": n} for c, n in chars.most_common(10)],
        "identity_name": identity_name,
        "identity_mention_rate": mentions / len(assistant) if assistant else None,
        "identity_mention_record_rate": convs_mentioning / len(records) if records else None,
        "first_message_languages": dict(languages.most_common()),
    }


# ---- lengths and cost -----------------------------------------------------------------------------


def lengths(records: Sequence[dict], tokenizer=None) -> dict[str, list[int]]:
    """Raw length lists for histograms: turns per conversation, characters (and tokens, given a
    tokenizer) per message by role."""
    out: dict[str, list[int]] = {"turns": [len(r["messages"]) for r in records]}
    for role in ("user", "assistant"):
        texts = role_texts(records, role)
        out[f"{role}_chars"] = [len(t) for t in texts]
        if tokenizer is not None:
            out[f"{role}_tokens"] = [len(ids) for ids in tokenizer.encode_batch(texts)]
    return out


def summarise(values: Sequence[float]) -> dict | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "mean": statistics.fmean(ordered),
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)],
        "min": ordered[0],
        "max": ordered[-1],
    }


def _ratio(a, b):
    return a / b if a is not None and b else None


def cost(records: Sequence[dict], tokenizer=None) -> dict:
    """API cost and tokens per supervised token (tokens the loss trains on: render mask == 1).

    Sums run over the records that carry `meta.usage`, so dollars and supervised tokens describe
    the same conversations. Rejected generations cost money too but are not in `records`; the
    generation manifest has the run's full bill.
    """
    priced = [r for r in records if isinstance((r.get("meta") or {}).get("usage"), dict)]
    usage = [r["meta"]["usage"] for r in priced]
    costs = [u.get("cost_usd") for u in usage if u.get("cost_usd") is not None]
    out: dict[str, Any] = {
        "records_with_usage": len(priced),
        "cost_usd": sum(costs) if costs else None,
        "prompt_tokens": sum(int(u.get("prompt_tokens") or 0) for u in usage),
        "completion_tokens": sum(int(u.get("completion_tokens") or 0) for u in usage),
        "supervised_tokens": None,
        "render_errors": 0,
    }
    if tokenizer is None:
        out["note"] = "no tokenizer: per-supervised-token figures need one (--tokenizer DIR)"
        return out
    supervised, unrenderable = 0, 0
    for record in priced:
        try:
            supervised += sum(tokenizer.render_conversation(record).mask)
        except ValueError:  # kit.tokens.render.RenderError: a broken conversation trains nothing
            unrenderable += 1
    out["supervised_tokens"], out["render_errors"] = supervised, unrenderable
    out["usd_per_supervised_token"] = _ratio(out["cost_usd"], supervised)
    out["usd_per_million_supervised_tokens"] = None if out["cost_usd"] is None else _ratio(out["cost_usd"] * 1e6, supervised)
    out["completion_tokens_per_supervised_token"] = _ratio(out["completion_tokens"], supervised)
    out["api_tokens_per_supervised_token"] = _ratio(out["prompt_tokens"] + out["completion_tokens"], supervised)
    return out


# ---- validity ------------------------------------------------------------------------------------


def validity(records: Sequence[dict]) -> dict:
    """Records that kit.quality.validation calls an error, counted by rule. kit.generation.generate's output holds none,
    but a hand-made or foreign file may, and the other figures then include data unfit to train on."""
    rules: Counter = Counter()
    ids = []
    for record in records:
        finish = (record.get("meta") or {}).get("finish_reason")
        broken = {p.rule for p in errors(validate_messages(record["messages"], finish_reason=finish, ascii_rule=False))}
        if broken:
            ids.append(record["id"])
            rules.update(broken)
    return {"invalid": len(ids), "rules": dict(rules.most_common()), "ids": ids[:10]}


# ---- content rules, judge scores, realized coverage -----------------------------------------------

# From this judge score on, a record counts as holding its sampled element (realized coverage).
REALIZED_MIN_SCORE = 4
# dimension -> the judge criterion that says whether a record holds its element
REALIZED_BY = {"topic_category": "on_topic", "topic": "on_topic", "persona": "persona_followed",
               "dynamic": "persona_followed"}


def content_rule_counts(records: Sequence[dict], rules: Rules | None = None, examples: int = 5) -> dict:
    """Content-rule findings (kit.quality.validation's markup, too_short, shape, identity, degenerate) by rule:
    findings, records with one, and the first ids; severities as the rules give them per recipe."""
    rules = rules or load_rules()
    per_rule = {rule: {"findings": 0, "records": 0, "errors": 0, "warnings": 0, "ids": []} for rule in CONTENT_RULES}
    flagged = 0
    for record in records:
        found = content_problems(record["messages"], record.get("meta"), rules)
        flagged += bool(found)
        for rule in {p.rule for p in found}:
            entry = per_rule[rule]
            entry["records"] += 1
            if len(entry["ids"]) < examples:
                entry["ids"].append(record["id"])
        for p in found:
            per_rule[p.rule]["findings"] += 1
            per_rule[p.rule]["errors" if p.severity == "error" else "warnings"] += 1
    return {"n": len(records), "records_flagged": flagged,
            "severity": {rule: rules.severity[rule] for rule in CONTENT_RULES}, "rules": per_rule}


def judge_summary(records: Sequence[dict], scores: dict[str, dict]) -> dict:
    """The judge's score distribution over these records (scores from kit.quality.judge.load_scores, by id):
    counts of 1-5 and the mean per criterion; records unjudged (with the first reasons) or not in the file."""
    from kit.quality.judge import CRITERIA

    judged = [scores[r["id"]] for r in records if scores.get(r["id"], {}).get("status") == "judged"]
    unjudged = [scores[r["id"]] for r in records if scores.get(r["id"], {}).get("status") == "unjudged"]
    criteria = {}
    for key in CRITERIA:
        values = [s[key] for s in judged]
        criteria[key] = {"counts": {str(k): values.count(k) for k in range(1, 6)},
                         "mean": statistics.fmean(values) if values else None}
    return {"n_records": len(records), "judged": len(judged), "unjudged": len(unjudged),
            "not_scored": len(records) - len(judged) - len(unjudged),
            "unjudged_reasons": [s.get("reason", "") for s in unjudged[:5]], "criteria": criteria}


def realized_coverage(records: Sequence[dict], scores: dict[str, dict], targets: dict | None = None) -> dict:
    """Coverage of what the conversations hold, not what they asked for: a judged record counts for its
    topic (category) when its on_topic score reaches REALIZED_MIN_SCORE, and for its persona and dynamic
    when persona_followed does. Shares are over the judged records, so an element nobody wrote well
    shows as missing. Same layout as `coverage`, limited to the dimensions a criterion speaks for."""
    if targets is None:
        targets, _ = recipe_targets(records)
    judged = [r for r in records if scores.get(r["id"], {}).get("status") == "judged"]
    dims = {}
    for dim, criterion in REALIZED_BY.items():
        held = [r for r in judged if scores[r["id"]][criterion] >= REALIZED_MIN_SCORE]
        found = coverage(held, {dim: targets[dim]} if dim in targets else None)["dimensions"].get(dim)
        if found is None:
            continue
        for e in found["elements"]:  # shares over every judged record: not holding its element is a miss
            e["share"] = e["count"] / len(judged) if judged else 0.0
            e["diff"] = e["share"] - (e["target"] or 0.0)
        found.update(n=len(judged), held=len(held), criterion=criterion,
                     total_variation=0.5 * sum(abs(e["diff"]) for e in found["elements"])
                     + 0.5 * (1 - len(held) / len(judged) if judged else 0.0))
        dims[dim] = found
    return {"dimensions": dims, "judged": len(judged), "min_score": REALIZED_MIN_SCORE,
            "notes": [] if judged else ["no record of this file is judged: realized coverage needs `kit judge`"]}


# ---- side by side with the reference -------------------------------------------------------------


def default_reference() -> Path | None:
    """knowledge/reference/identity.jsonl, the hand-written yardstick, when it exists."""
    from kit import paths

    path = paths.knowledge_dir() / "reference" / "identity.jsonl"
    return path if path.exists() else None


def comparison(report: dict, reference: dict) -> list[dict]:
    """The report's headline figures beside the reference's: one row per figure, each value with the
    sample size it rests on (`n`), so a figure from 3 conversations is not read like one from 300."""
    rows = []

    def row(figure: str, get, pct: bool = False) -> None:
        cells = {}
        for side, r in (("generated", report), ("reference", reference)):
            value, n = get(r)
            cells[side], cells[f"n_{side}"] = value, n
        rows.append({"figure": figure, **cells, "pct": pct})

    def mean_of(name):
        return lambda r: ((r["lengths"].get(name) or {}).get("mean"), (r["lengths"].get(name) or {}).get("n", 0))

    row("conversations", lambda r: (r["n_records"], r["n_records"]))
    row("rejected by generation (n = asked)", lambda r: ((r.get("rejects") or {}).get("n", 0), (r.get("rejects") or {}).get("n", 0)
                                             + r["n_records"]))
    row("conversations with a content-rule finding", lambda r: (
        _share(r["content_rules"]["records_flagged"], r["n_records"]), r["n_records"]), pct=True)
    for rule in CONTENT_RULES:
        row(f"  {rule}", lambda r, rule=rule: (_share(r["content_rules"]["rules"][rule]["records"], r["n_records"]),
                                               r["n_records"]), pct=True)
    row("near-duplicate rate", lambda r: (r["near_duplicate_rate"], r["n_records"]), pct=True)
    row("first-message duplicate rate", lambda r: (r["first_messages"]["duplicate_rate"], r["first_messages"]["n"]), pct=True)
    row("distinct-2, assistant messages (n = words)", lambda r: (r["distinct"]["assistant"]["distinct_2"], r["distinct"]["assistant"]["words"]))
    row("messages per conversation (mean)", mean_of("turns"))
    row("characters per assistant message (mean)", mean_of("assistant_chars"))
    row(f"conversations where the assistant says '{report['style']['identity_name']}'",
        lambda r: (r["style"]["identity_mention_record_rate"], r["n_records"]), pct=True)
    row("messages with non-ASCII characters", lambda r: (r["style"]["non_ascii_message_rate"], _messages(r)), pct=True)
    for dim in ("topic_category", "topic", "persona", "dynamic", "first_message_category"):
        row(f"requested {dim}: elements covered", lambda r, dim=dim: covered_elements(r["coverage"], dim))
    if report.get("realized_coverage") or reference.get("realized_coverage"):
        for dim in REALIZED_BY:
            row(f"realized {dim}: elements covered", lambda r, dim=dim: covered_elements(r.get("realized_coverage"), dim))
    if report.get("judge") or reference.get("judge"):
        row("judge overall score (mean, 1-5)", lambda r: ((r.get("judge") or {}).get("criteria", {}).get("overall", {}).get("mean"),
                                                           (r.get("judge") or {}).get("judged", 0)))
    return rows


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _messages(report: dict) -> int:
    return sum((report["lengths"].get(f"{role}_chars") or {}).get("n", 0) for role in ("user", "assistant"))


def covered_elements(cov: dict | None, dim: str) -> tuple[str | None, int]:
    """("k of K", n): elements with a target that occur at least once, and the records behind it."""
    d = (cov or {}).get("dimensions", {}).get(dim)
    if not d:
        return None, 0
    wanted = [e for e in d["elements"] if (e["target"] or 0) > 0]
    return f"{sum(e['count'] > 0 for e in wanted)} of {len(wanted)}", d["n"]


def format_comparison(rows: list[dict], names: tuple[str, str] = ("generated", "reference")) -> str:
    """The comparison as a text table: value (n=sample size) for each side."""
    def cell(value, n, pct):
        return "-" if value is None else f"{value if isinstance(value, str) else format_value(value, pct)} (n={n})"

    width = max(len(r["figure"]) for r in rows)
    lines = [f"{'':<{width}}  {names[0]:>22}  {names[1]:>22}"]
    for r in rows:
        lines.append(f"{r['figure']:<{width}}  {cell(r['generated'], r['n_generated'], r['pct']):>22}  "
                     f"{cell(r['reference'], r['n_reference'], r['pct']):>22}")
    return "\n".join(lines)


# ---- rejects and the whole report -----------------------------------------------------------------


def rejects_path(path: str | Path) -> Path | None:
    """The rejects file beside a conversation file: `<stem>.rejects.jsonl`, else `rejects.jsonl`."""
    path = Path(path)
    for candidate in (path.with_name(f"{path.stem}.rejects.jsonl"), path.with_name("rejects.jsonl")):
        if candidate.exists() and candidate != path:
            return candidate
    return None


def reject_reasons(path: str | Path | None) -> dict:
    """What the rejects file holds: counts by rule (kit.generation.generate writes `rules`; older or foreign
    files give `reasons` strings), and the API usage the rejected items still cost. A line that is
    not JSON is counted, not fatal."""
    out: dict[str, Any] = {"file": None, "n": 0, "reasons": {}, "unreadable_lines": 0,
                           "usage": {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}}
    if path is None or not Path(path).exists():
        return out
    reasons: Counter = Counter()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                given = entry.get("rules") or entry.get("reasons") or entry.get("reason") or ["unknown"]
            except (json.JSONDecodeError, AttributeError):
                out["unreadable_lines"] += 1
                continue
            out["n"] += 1
            reasons.update(str(r) for r in (given if isinstance(given, list) else [given]))
            usage = (entry.get("meta") or {}).get("usage") or {}
            for key in out["usage"]:
                out["usage"][key] += usage.get(key) or 0
    out["file"], out["reasons"] = str(path), dict(reasons.most_common())
    return out


def quality_report(
    records: Sequence[dict],
    *,
    targets: dict | None = None,
    tokenizer=None,
    threshold: float = 0.8,
    num_perm: int = 128,
    identity_name: str = "nanochat",
    near: NearDuplicates | None = None,
    rules: Rules | None = None,
    scores: dict[str, dict] | None = None,
    calibration: dict | None = None,
) -> dict:
    """Everything above in one JSON-serialisable dict. Pass `near` to reuse a near_duplicates result,
    `rules` for other content-rule settings, `scores` (kit.quality.judge.load_scores) for the judge's
    distribution and realized coverage. `coverage` is the requested coverage (from meta). With the judge's
    `calibration` (a `kit judge --calibrate` result) below the agreement threshold, realized coverage is
    refused: `{"refused": why}`; without one it carries a note that the judge is unchecked."""
    nd = near or near_duplicates(records, threshold=threshold, num_perm=num_perm)
    firsts = first_messages(records)
    lens = lengths(records, tokenizer)
    judged = {}
    if scores is not None:
        from kit.quality.judge import judge_refusal

        refused = judge_refusal(scores, calibration)
        real = {"refused": refused} if refused else realized_coverage(records, scores, targets)
        if calibration is None and not refused:
            real["notes"].append("the judge is not calibrated (kit judge --calibrate): these figures are unchecked")
        judged = {"judge": judge_summary(records, scores), "realized_coverage": real}
    return {
        "n_records": len(records),
        "records_without_meta": sum(not r.get("meta") for r in records),
        "validity": validity(records),
        "content_rules": content_rule_counts(records, rules),
        "near_duplicate_rate": nd.rate,
        "first_message_duplicate_rate": firsts["duplicate_rate"],
        "coverage": coverage(records, targets),
        **judged,
        "distinct": distinct(records),
        "first_messages": firsts,
        "near_duplicates": nd.to_dict(records),
        "style": style(records, identity_name),
        "lengths": {name: summarise(values) for name, values in lens.items()},
        "cost": cost(records, tokenizer),
    }


def file_report(
    path: str | Path, *, threshold: float = 0.8, num_perm: int = 128, dedup_out: str | Path | None = None, **kwargs
) -> tuple[dict, list[dict]]:
    """Read a conversation file (bad lines are reported, not fatal) and report on it, with its
    rejects file if there is one; with `dedup_out`, also write the records minus near-duplicates
    there. Other keyword arguments go to quality_report. Returns (report, records)."""
    result = read_records(path, strict=False)
    near = near_duplicates(result.records, threshold=threshold, num_perm=num_perm)
    report = quality_report(result.records, near=near, **kwargs)
    rejects = reject_reasons(rejects_path(path))
    c = report["cost"]
    if rejects["n"] and c["cost_usd"] is not None:
        # rejected items were paid for too: the honest price of a trainable token includes them
        c["cost_usd_with_rejects"] = c["cost_usd"] + rejects["usage"]["cost_usd"]
        c["usd_per_supervised_token_with_rejects"] = _ratio(c["cost_usd_with_rejects"], c["supervised_tokens"])
    report = {"file": str(path), **report, "read_errors": [_error_dict(e) for e in result.errors], "rejects": rejects}
    if dedup_out is not None:
        kept = dedup(result.records, near.clusters)
        write_records(dedup_out, kept)
        report["dedup_out"] = {"file": str(dedup_out), "kept": len(kept), "removed": len(result.records) - len(kept)}
    return report, result.records


def _error_dict(error: RecordError) -> dict:
    return {"file": error.path, "line": error.lineno, "reason": error.reason}


def load_targets(spec: str) -> dict:
    """--targets: a JSON/YAML file {dimension: {element: share}}, or a recipe name for kit.generation.sampling."""
    path = Path(spec)
    if path.suffix in (".json", ".yaml", ".yml") or path.exists():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    from kit.generation.sampling import target_shares

    return target_shares(spec)


# ---- the table ------------------------------------------------------------------------------------


def format_value(x, pct: bool = False) -> str:
    """A report value for a table: 4 significant digits, a percentage, or "-" for None."""
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f}%"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def format_report(report: dict) -> str:
    lines = [f"{report.get('file', 'records')}: {report['n_records']} conversations"]
    for e in report.get("read_errors", []):
        lines.append(f"  unreadable: {e['file']}:{e['line']}: {e['reason']}")
    v = report["validity"]
    if v["invalid"]:
        rules = ", ".join(f"{rule} {n}" for rule, n in v["rules"].items())
        lines.append(f"  invalid: {v['invalid']} conversations break a validation rule ({rules}), e.g. {', '.join(v['ids'][:3])}; "
                     f"`python -m kit validate` lists them")
    rejects = report.get("rejects") or {}
    if rejects.get("n"):
        top = ", ".join(f"{r} {n}" for r, n in list(rejects["reasons"].items())[:5])
        lines.append(f"  rejects: {rejects['n']} ({top})")
    nd = report["near_duplicates"]
    lines += [
        "",
        "near-duplicates",
        f"  rate (removable share)  {format_value(nd['near_duplicate_rate'], True)}  "
        f"({nd['removable']} of {nd['n_records']}, {nd['clusters']} clusters, Jaccard >= {nd['threshold']} on {nd['shingle']})",
    ]
    for c in nd["largest"][:3]:
        lines.append(f"  cluster of {c['size']}: {', '.join(c.get('ids', map(str, c['positions']))[:5])}")
        lines.append(f"    {c['examples'][0]}" if c.get("examples") else "")
    lines += ["", "diversity", f"  first-message duplicate rate  {format_value(report['first_message_duplicate_rate'], True)}"]
    lines.append(f"  {'':<10} {'distinct-1':>10} {'distinct-2':>10} {'distinct-3':>10} {'words':>9}")
    for role, d in report["distinct"].items():
        lines.append(
            f"  {role:<10} {format_value(d['distinct_1']):>10} {format_value(d['distinct_2']):>10} {format_value(d['distinct_3']):>10} {d['words']:>9}"
        )
    cov = report["coverage"]
    lines += ["", "requested coverage (sampled elements in meta: share vs target; total variation = half the summed "
                  "absolute differences)"]
    for dim, d in cov["dimensions"].items():
        lines.append(
            f"  {dim:<24} covered {covered_elements(cov, dim)[0]:>9}  total variation {format_value(d['total_variation'], True):>6}"
            f"  (n={d['n']}, targets: {d['source']})"
        )
    if cov["furthest_off"]:
        lines.append("  furthest off:")
        for e in cov["furthest_off"][:5]:
            lines.append(f"    {e['dimension']:<22} {_snippet(e['element'], 40):<40} {format_value(e['share'], True):>6} vs {format_value(e['target'], True)}")
    lines += [f"  note: {n}" for n in cov["notes"]]
    if (real := report.get("realized_coverage")) and real.get("refused"):
        lines += ["", f"realized coverage: not reported: {real['refused']}"]
    elif real:
        lines += ["", f"realized coverage (judged records holding their element: judge score >= {real['min_score']})"]
        for dim, d in real["dimensions"].items():
            lines.append(f"  {dim:<24} {d['held']:>3} of {d['n']} hold it ({d['criterion']})  total variation "
                         f"{format_value(d['total_variation'], True):>6}  missing {len(d['missing'])}")
        lines += [f"  note: {n}" for n in real["notes"]]
    cr = report["content_rules"]
    lines += ["", f"content rules  {cr['records_flagged']} of {cr['n']} conversations with a finding"]
    for rule, d in cr["rules"].items():
        ids = f"  e.g. {', '.join(d['ids'][:3])}" if d["ids"] else ""
        lines.append(f"  {rule:<11} {cr['severity'][rule]:<8} {d['records']:>4} conversations  {d['findings']:>4} findings{ids}")
    if j := report.get("judge"):
        lines += ["", f"judge  {j['judged']} of {j['n_records']} judged, {j['unjudged']} unjudged, {j['not_scored']} not in the scores file"]
        for key, d in j["criteria"].items():
            counts = " ".join(f"{k}:{v}" for k, v in d["counts"].items())
            lines.append(f"  {key:<17} mean {format_value(d['mean']):>6}   {counts}")
        lines += [f"  unjudged: {reason}" for reason in j["unjudged_reasons"][:3]]
    s = report["style"]
    langs = ", ".join(f"{k} {v}" for k, v in list(s["first_message_languages"].items())[:6])
    lines += [
        "",
        "style",
        f"  non-ASCII messages  {format_value(s['non_ascii_message_rate'], True)}   records {format_value(s['non_ascii_record_rate'], True)}",
        f"  '{s['identity_name']}' in assistant turns  {format_value(s['identity_mention_rate'], True)}   in conversations {format_value(s['identity_mention_record_rate'], True)}",
        f"  first-message language  {langs or '-'}",
    ]
    c = report["cost"]
    lines += ["", "cost"]
    lines.append(
        f"  records with usage {c['records_with_usage']}  cost {'-' if c['cost_usd'] is None else '$' + format_value(c['cost_usd'])}  "
        f"prompt {c['prompt_tokens']}  completion {c['completion_tokens']} tokens"
    )
    if c.get("supervised_tokens") is not None:
        lines.append(
            f"  supervised tokens {c['supervised_tokens']}  $/1M supervised {format_value(c['usd_per_million_supervised_tokens'])}  "
            f"completion/supervised {format_value(c['completion_tokens_per_supervised_token'])}  "
            f"API tokens/supervised {format_value(c['api_tokens_per_supervised_token'])}"
        )
    elif c.get("note"):
        lines.append(f"  {c['note']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit quality", description=__doc__.split("\n")[0])
    parser.add_argument("file", type=argument, help="conversation file (.jsonl)")
    parser.add_argument("--reference", type=argument, help="file to compare with, figure by figure "
                        "(default knowledge/reference/identity.jsonl, the hand-written yardstick)")
    parser.add_argument("--scores", type=argument, help="the judge's scores for FILE (python -m kit judge): score "
                        "distribution and realized coverage")
    parser.add_argument("--rules", type=argument, help="content-rule settings (default knowledge/quality_rules.yaml)")
    parser.add_argument("--tokenizer", type=argument,
                        help="tokenizer directory, for supervised-token counts and cost per token")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--calibration", type=argument, help="the judge's calibration (`kit judge --calibrate` writes "
                        "SCORES.calibration.json): realized coverage is refused below its agreement threshold")
    parser.add_argument("--threshold", type=finite_float, default=0.8, help="Jaccard threshold for near-duplicates (default 0.8)")
    parser.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    parser.add_argument("--identity-name", default="nanochat", help="the name assistant turns should use")
    parser.add_argument("--targets", help="recipe name, or a JSON/YAML file {dimension: {element: share}}")
    parser.add_argument("--dedup-out", type=argument, help="write the records with near-duplicates removed to this file")
    parser.add_argument("--force", action="store_true", help="replace an existing --dedup-out file")
    args = parser.parse_args(argv)
    if args.dedup_out and (problem := output_problem(args.dedup_out, [args.file, args.reference, args.scores, args.rules],
                                                     force=args.force, option="--dedup-out")):
        print(f"kit quality: {problem}", file=sys.stderr)
        return 2
    for given in (args.file, args.reference, args.scores):
        if given and (problem := file_problem(Path(given))):
            print(f"kit quality: {problem}", file=sys.stderr)
            return 2
    if not 0 < args.threshold <= 1:
        print(f"kit quality: --threshold must be in (0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    tokenizer = targets = scores = calibration = None
    try:
        if args.tokenizer:
            from kit.tokens.tokenizer import Tokenizer

            tokenizer = Tokenizer.load(args.tokenizer)
        if args.targets:
            targets = load_targets(args.targets)
        if args.scores:
            from kit.quality.judge import load_scores

            scores = load_scores(args.scores)
        if args.calibration:
            calibration = json.loads(Path(args.calibration).read_text(encoding="utf-8"))
        rules = load_rules(args.rules)
    except Exception as exc:  # user input (a path, a recipe name, a settings file): one line, no traceback
        print(f"kit quality: {exc}", file=sys.stderr)
        return 2
    reference = Path(args.reference) if args.reference else default_reference()
    if reference is not None and reference.resolve() == Path(args.file).resolve():
        reference = None  # the reference itself: nothing to compare with
    common = dict(tokenizer=tokenizer, threshold=args.threshold, num_perm=args.num_perm,
                  identity_name=args.identity_name, rules=rules)
    try:
        report, _ = file_report(args.file, targets=targets, scores=scores, calibration=calibration,
                                dedup_out=args.dedup_out, **common)
        if reference is not None:
            report["reference"], _ = file_report(reference, **common)
            report["comparison"] = comparison(report, report["reference"])
    except (OSError, UnicodeDecodeError) as exc:  # unreadable file or unwritable --dedup-out
        print(f"kit quality: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        if reference is not None:
            print(f"{args.file} beside the reference {reference}\n")
            print(format_comparison(report["comparison"], (Path(args.file).name, reference.name)) + "\n")
        print(format_report(report))
        if args.dedup_out:
            print(f"\nwrote {report['dedup_out']['kept']} records to {args.dedup_out} ({report['dedup_out']['removed']} near-duplicates removed)")
    for e in report["read_errors"]:
        print(f"{e['file']}:{e['line']}: {e['reason']}", file=sys.stderr)
    return 1 if report["read_errors"] else 0
