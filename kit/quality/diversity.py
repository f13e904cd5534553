"""What came out against what was asked for: coverage of the diversity elements, distinct-n, first-message
repeats, style rules, lengths and the cost per supervised token. Every function reads conversation
records (kit.records) and returns plain, JSON-ready values.

- coverage: the realised share of every diversity element in the records' `meta` against its target
  share (from the recipe via `kit.generation.sampling.target_shares`, given explicitly, or uniform over
  what was observed), and the elements furthest off;
- distinct-n: unique word n-grams / all word n-grams, user and assistant turns apart; words are the
  lowercased runs of letters and digits (an inner apostrophe stays: "don't" is one word);
- first-message duplicate rate: the share of first user messages that repeat an earlier one
  (compared lowercased, with whitespace collapsed);
- style rules: non-ASCII rate, the identity's name in assistant turns, the language of the first
  user message (a small documented heuristic, see `guess_language`);
- cost: API dollars and tokens per supervised (loss mask == 1) token, using a kit tokenizer.

Why a module of its own: these are the figures; kit.quality.report assembles, compares and prints
them, kit.quality.neardup finds near-duplicates.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Any, Iterable, Sequence

from kit.records import message_text

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


def supervised_text(record: dict, tokenizer) -> str:
    """The text the SFT loss trains on in `record` (its mask-1 tokens that are not special), each run of
    supervised tokens decoded on a line of its own."""
    rendered = tokenizer.render_conversation(record)
    runs, run = [], []
    for token_id, mask in zip(rendered.ids, rendered.mask):
        if mask and not tokenizer.is_special(token_id):
            run.append(token_id)
        elif run:
            runs.append(tokenizer.decode(run))
            run = []
    if run:
        runs.append(tokenizer.decode(run))
    return "\n".join(runs)


def cost_in_one_unit(records: Sequence[dict], tokenizer, count) -> dict:
    """`cost`'s token ratios with both sides in one unit. API usage is counted by the generating model's
    tokenizer, supervised tokens by `tokenizer`; a ratio across the two mixes units (two tokenizers cut the
    same text into different numbers of pieces). `count(texts)` gives each text's length in the
    generator's tokenizer (kit.memory.evaluate.token_counts for the embedded model), so the supervised text
    is counted in the same unit as the bill. Bytes of supervised text (a line break between runs) are given
    too: a unit every tokenizer shares."""
    priced = [r for r in records if isinstance((r.get("meta") or {}).get("usage"), dict)]
    texts = []
    for record in priced:
        try:
            texts.append(supervised_text(record, tokenizer))
        except ValueError:  # kit.tokens.render.RenderError: a broken conversation trains nothing
            continue
    usage = [r["meta"]["usage"] for r in priced]
    prompt = sum(int(u.get("prompt_tokens") or 0) for u in usage)
    completion = sum(int(u.get("completion_tokens") or 0) for u in usage)
    supervised = sum(count(texts)) if texts else 0
    return {"records_with_usage": len(priced), "prompt_tokens": prompt, "completion_tokens": completion,
            "supervised_bytes": sum(len(t.encode("utf-8")) for t in texts),
            "supervised_generator_tokens": supervised,
            "completion_tokens_per_supervised_token": _ratio(completion, supervised),
            "api_tokens_per_supervised_token": _ratio(prompt + completion, supervised)}
