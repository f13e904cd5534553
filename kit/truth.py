"""Kept means true: every sentence an assistant says, checked against the knowledge base.

A conversation can pass every content rule and still teach a student something false: "It is only able
to work with integers", "I'm designed to learn and adapt", "He's a brilliant person, and I'm honored to be
his creation". This module reads an assistant's reply sentence by sentence and gives each a verdict:

  supported    what it claims about the assistant, the project or its training is in the knowledge base
               (knowledge/self_knowledge.md) or the user's turns
  social       no claim: a greeting, thanks, an offer to help, a question back to the user
  unsupported  a name, number or URL from nowhere, a claim of a category the knowledge base never makes
               (a person, an organisation, a repository, a version, a capability, a limitation), or a
               claim about the assistant whose content words are mostly not in the knowledge base
               (K-precision, Adlakha et al., TACL 2024: the share of a response's words found in the
               knowledge, a measured baseline of faithfulness)
  contradicts  the opposite of a fact: kit.facts (contradictions.yaml, a denied fact, a foreign identity)
               or a pattern of knowledge/truth.yaml (learning, memory, being its own creator, high
               performance, advice against checking its answers)
  flattery     praise ("never as flattery", says the knowledge base)

and, over a whole conversation, `repeated` (a sentence said again in a later turn) and `degenerate`
(a composed user turn that the content rules call degenerate, such as "YO!!!"). Every pattern, word list
and threshold is data in knowledge/truth.yaml; the check's precision and recall are measured on
hand-labelled real output of the embedded model (tests/fixtures/truth_sentences.jsonl, tests/test_truth.py).
The same check runs in `kit validate --knowledge`, in the distill recipe's verifier and in the identity
scorer, so what generation keeps, what validation flags and what evaluation fails agree.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from kit import paths
from kit.facts import contradictions, default_data, denied_facts, foreign_identity_claims, is_negated
from kit.rules import Problem, content_problems, load_rules
from kit.text import DIGIT_GROUPS, SENTENCE_END

TRUTH_FILE = "truth.yaml"
KNOWLEDGE_FILE = "self_knowledge.md"
VERDICTS = ("supported", "social", "unsupported", "contradicts", "flattery", "repeated", "degenerate")
KEPT = ("supported", "social")
CLAIM_VERDICTS = ("contradicts", "flattery", "unsupported")
_SETTINGS = {"min_k_precision", "strict_k_precision", "strict_one_line", "min_content_words", "stem_chars",
             "self_patterns",
             "arithmetic", "free_names", "stopwords", "known_words", "social", "claims"}

# grounding: a capitalised word, a number, a URL
_NAME = re.compile(r"(?<![\w'])([A-Z][\w'-]*)")
_NUMBER = re.compile(DIGIT_GROUPS)
_URL = re.compile(r"https?://[^\s)\]]+")
_SENTENCE_BREAK = re.compile(r"(?:^|[.!?:;]\s+|\n+)\W*$")
_WORD = re.compile(r"[a-z][a-z']*")


@dataclass(frozen=True)
class Claim:
    """A kind of claim the knowledge base contradicts or never makes: a match gives `verdict` because `says`."""
    id: str
    verdict: str
    says: str
    patterns: tuple[re.Pattern, ...]
    negated: bool = False  # the patterns are written to match negated sentences: a negation does not excuse them
    strict: bool = False  # generation's bar only (the distill verifier), not validation's or the identity scorer's


@dataclass(frozen=True)
class TruthRules:
    """knowledge/truth.yaml, read and checked."""
    min_k_precision: float
    strict_k_precision: float  # generation's bar: every sentence, not only a claim about the assistant
    strict_one_line: bool  # generation's bar counts a word found only when one line of the knowledge base has them all
    min_content_words: int
    stem_chars: int
    self_patterns: tuple[re.Pattern, ...]
    arithmetic: tuple[re.Pattern, ...]  # a sentence that shows a computation: its numbers are the sum's, not claims
    free_names: frozenset[str]
    stopwords: frozenset[str]
    known_words: frozenset[str]  # restatements of the knowledge base ("AI" for a language model)
    social: frozenset[str]
    claims: tuple[Claim, ...]


@dataclass(frozen=True)
class Verdict:
    """One sentence judged: `verdict` (one of VERDICTS), why, and its K-precision (None when not measured)."""
    sentence: str
    verdict: str
    reason: str = ""
    k_precision: float | None = None

    @property
    def kept(self) -> bool:
        return self.verdict in KEPT

    def as_dict(self) -> dict:
        return asdict(self)


def _compile(where: str, patterns: Any) -> tuple[re.Pattern, ...]:
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"{where}: expected a non-empty list of regular expressions")
    try:
        return tuple(re.compile(p, re.IGNORECASE) for p in patterns)
    except re.error as exc:
        raise ValueError(f"{where}: not a regular expression: {exc}") from None


def _word_set(where: str, value: Any) -> frozenset[str]:
    words = value.split() if isinstance(value, str) else value
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"{where}: expected words separated by spaces, or a list of words")
    return frozenset(w.lower() for w in words)


@lru_cache(maxsize=4)
def _load(path: Path) -> TruthRules:
    data = paths.read_yaml(path, "the truth check's settings")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    if unknown := sorted(set(data) - _SETTINGS):
        raise ValueError(f"{path}: unknown setting {unknown[0]!r}")
    claims = []
    for i, item in enumerate(data.get("claims") or []):
        where = f"{path}: claims[{i}]"
        if not isinstance(item, dict) or not item.get("id") or item.get("verdict") not in CLAIM_VERDICTS:
            raise ValueError(f"{where}: needs an id and a verdict ({', '.join(CLAIM_VERDICTS)})")
        claims.append(Claim(str(item["id"]), item["verdict"], str(item.get("says", item["id"])),
                            _compile(f"{where} ({item['id']})", item.get("patterns")), item.get("negated") is True,
                            item.get("strict") is True))
    rules = TruthRules(min_k_precision=data.get("min_k_precision", 0.5),
                       strict_k_precision=data.get("strict_k_precision", 0.9),
                       strict_one_line=data.get("strict_one_line", False),
                       min_content_words=data.get("min_content_words", 3), stem_chars=data.get("stem_chars", 5),
                       self_patterns=_compile(f"{path}: self_patterns", data.get("self_patterns")),
                       arithmetic=_compile(f"{path}: arithmetic", data.get("arithmetic")),
                       free_names=_word_set(f"{path}: free_names", data.get("free_names") or []),
                       stopwords=_word_set(f"{path}: stopwords", data.get("stopwords") or ""),
                       known_words=_word_set(f"{path}: known_words", data.get("known_words") or ""),
                       social=_word_set(f"{path}: social", data.get("social") or ""), claims=tuple(claims))
    for name in ("min_k_precision", "strict_k_precision"):
        if not isinstance(getattr(rules, name), (int, float)) or not 0 <= getattr(rules, name) <= 1:
            raise ValueError(f"{path}: {name} must be in [0, 1], got {getattr(rules, name)!r}")
    if not isinstance(rules.strict_one_line, bool):
        raise ValueError(f"{path}: strict_one_line must be true or false, got {rules.strict_one_line!r}")
    for name in ("min_content_words", "stem_chars"):
        if not isinstance(getattr(rules, name), int) or getattr(rules, name) < 1:
            raise ValueError(f"{path}: {name} must be an integer >= 1, got {getattr(rules, name)!r}")
    return rules


def load_truth(path: str | Path | None = None) -> TruthRules:
    """The truth check's settings (default knowledge/truth.yaml); a bad file names itself."""
    return _load(Path(path or paths.knowledge_dir() / TRUTH_FILE).resolve())


@lru_cache(maxsize=4)
def _knowledge_file(path: Path, mtime: float) -> str:
    return paths.read_utf8(path)


def load_knowledge(path: str | Path | None = None) -> str:
    """The knowledge base's text (default knowledge/self_knowledge.md), read again only when it changed."""
    path = Path(path or paths.knowledge_dir() / KNOWLEDGE_FILE).resolve()
    return _knowledge_file(path, path.stat().st_mtime)


# ---- sentences and grounding -----------------------------------------------------------------------


def split_sentences(text: str) -> tuple[list[str], str]:
    """(the full sentences of `text` in order, the words after the last one)."""
    found, start = [], 0
    for end in SENTENCE_END.finditer(text):
        if sentence := text[start:end.end()].strip():
            found.append(sentence)
        start = end.end()
    return found, text[start:].strip()


def sentences(text: str) -> list[str]:
    """Every sentence of `text`, an unfinished last one included (it may say the false thing)."""
    found, tail = split_sentences(text if isinstance(text, str) else "")
    return found + [tail] if tail else found


def _words(text: str) -> set[str]:
    """The words of `text`, lower-cased, with every run of the parts of a hyphenated word: "GPT-2-level"
    gives gpt-2-level, gpt-2, 2-level, gpt, 2 and level, so an answer saying "a GPT-2 model" is grounded."""
    found = set()
    for word in re.findall(r"[\w'-]+", text.lower()):
        parts = [p for p in word.split("-") if p]
        found.add(word)
        found.update("-".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1))
    return found


@lru_cache(maxsize=4)
def _known_words(knowledge: str) -> frozenset[str]:
    words = _words(knowledge)
    return frozenset(words | {w.removesuffix("s") for w in words})  # "H100s" grounds "H100"


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def ungrounded(answer: str, sources: str, knowledge: str, rules: TruthRules | None = None, *,
               numbers: bool = True) -> list[str]:
    """Names, URLs and (with `numbers`) numbers in `answer` that neither the knowledge base nor the
    conversation's user turns (`sources`) contain: what a small model invents ("Andrej Karpathy, a
    Japanese researcher", "my name is Ember", "trained in 2019"). A capitalised word counts as a name
    unless it starts a sentence; one a negation governs ("The MIT license, not the GPL") claims nothing."""
    free = (rules or load_truth()).free_names
    known = _known_words(knowledge) | _words(sources)
    found = []
    for match in _NAME.finditer(answer):
        word = match.group(1).strip("'-").removesuffix("'s")
        if _SENTENCE_BREAK.search(answer[:match.start()]) or word.lower() in free \
                or is_negated(answer, match.start(), match.end()):
            continue
        # "GPT-2-level" or "GPT-2-style" is known when "GPT-2" is: a lower-case part after a hyphen describes it
        stem = re.sub(r"(?:-[a-z]+)+$", "", word).lower()
        if not {word.lower(), word.lower().rstrip("s"), stem} & known:
            found.append(word)
    found += [url for url in (u.rstrip(".,;:!?'\"") for u in _URL.findall(answer))
              if url not in knowledge and url not in sources]  # "github.com/karpathy/nanogpt-fasten-architecture"
    if numbers:
        known_numbers = _numbers(knowledge) | _numbers(sources)
        text = _URL.sub(" ", answer)
        found += [m.group().replace(",", "") for m in _NUMBER.finditer(text)
                  if m.group().replace(",", "") not in known_numbers and not is_negated(text, m.start(), m.end())]
    return found


# ---- K-precision -----------------------------------------------------------------------------------


def stem(word: str, chars: int) -> str:
    """A word's first `chars` letters ("learning" ~ "learn"): how the truth check matches words."""
    word = word.strip("'").removesuffix("'s")
    return word[:chars] if len(word) > chars else word.rstrip("s") or word


def content_words(text: str, rules: TruthRules | None = None) -> list[str]:
    """The words of `text` that can carry a claim: lower-cased, hyphenated words split, stopwords out."""
    rules = rules or load_truth()
    return [w for w in _WORD.findall(text.lower().replace("\u2019", "'").replace("-", " "))
            if w.strip("'") and w not in rules.stopwords and len(w) > 1]


@lru_cache(maxsize=8)
def _known_stems(knowledge: str, rules: TruthRules) -> frozenset[str]:
    words = content_words(knowledge, rules) + sorted(rules.known_words)
    return frozenset(stem(w, rules.stem_chars) for w in words)


def k_precision(sentence: str, sources: str = "", knowledge: str | None = None,
                rules: TruthRules | None = None) -> tuple[float | None, list[str]]:
    """(share of the sentence's content words found in the knowledge base or `sources`, the words not
    found); None for a sentence with no content word but social ones (they claim nothing). Words match
    on their first `stem_chars` letters."""
    rules = rules or load_truth()
    known = _known_stems(load_knowledge() if knowledge is None else knowledge, rules)
    known = known | {stem(w, rules.stem_chars) for w in content_words(sources, rules)}
    words = [w for w in content_words(sentence, rules) if w not in rules.social]
    if not words:
        return None, []
    missing = [w for w in words if stem(w, rules.stem_chars) not in known]
    return 1 - len(missing) / len(words), missing


@lru_cache(maxsize=8)
def _line_stems(knowledge: str, rules: TruthRules) -> tuple[frozenset[str], ...]:
    """The stems of each line of the knowledge base (a bullet with its wrapped lines, a heading, a paragraph)."""
    lines = re.split(r"\n\s*\n|\n(?=\s*(?:[-*]\s|#))", knowledge)
    return tuple(frozenset(stem(w, rules.stem_chars) for w in content_words(line, rules)) for line in lines if line.strip())


def one_line_precision(sentence: str, sources: str = "", knowledge: str | None = None,
                       rules: TruthRules | None = None) -> tuple[float | None, list[str]]:
    """K-precision against the one line of the knowledge base (or `sources`, one line more) that supports the
    sentence best, the known words counted everywhere: a sentence stitched from words of lines that say other things ("The size is set by
    one knob, the depth in my vocabulary.") finds every word in the knowledge base, but not in one line."""
    rules = rules or load_truth()
    words = [w for w in content_words(sentence, rules) if w not in rules.social]
    if not words:
        return None, []
    known = {stem(w, rules.stem_chars) for w in rules.known_words}
    said = frozenset(stem(w, rules.stem_chars) for w in content_words(sources, rules))  # one more line
    best: list[str] | None = None
    for line in (*_line_stems(load_knowledge() if knowledge is None else knowledge, rules), said):
        missing = [w for w in words if stem(w, rules.stem_chars) not in line | known]
        if best is None or len(missing) < len(best):
            best = missing
    best = best if best is not None else words
    return 1 - len(best) / len(words), best


# ---- one sentence ----------------------------------------------------------------------------------


def _claim(sentence: str, rules: TruthRules, strict: bool = False) -> tuple[Claim, str] | None:
    """The first claim pattern that matches `sentence` unnegated (or negated, for a `negated` entry); a
    `strict` entry only at generation's bar."""
    for claim in rules.claims:
        if claim.strict and not strict:
            continue
        for pattern in claim.patterns:
            for m in pattern.finditer(sentence):
                if claim.negated or not is_negated(sentence, m.start(), m.end()):
                    return claim, m.group()
    return None


def _facts_problem(sentence: str) -> str | None:
    """What kit.facts finds wrong in the sentence: a contradiction, a denied fact, a foreign identity."""
    data = default_data()
    if found := contradictions(sentence, data):
        says = {c.id: c.says for c in data.contradictions}
        return f"{found[0]}: the knowledge base says {says[found[0]]!r}"
    if denied := denied_facts(sentence, data):
        return f"denies {denied[0]}: the knowledge base says {data.facts[denied[0]].says!r}"
    if foreign := foreign_identity_claims(sentence, data):
        return f"claims a foreign identity: {foreign[0]}"
    return None


def check_sentence(sentence: str, *, sources: str = "", knowledge: str | None = None,
                   rules: TruthRules | None = None, strict: bool = False) -> Verdict:
    """The verdict on one sentence; `sources` is what the user said (their turns support what they name).

    `strict` is generation's bar: every sentence but a social one needs `strict_k_precision` of its words in
    the knowledge base or the user's turns (a candidate dropped wrongly costs a sample; one kept wrongly
    teaches a student); otherwise only a claim about the assistant is held to `min_k_precision` (a true
    reply explained in its own words must pass validation)."""
    rules = rules or load_truth()
    knowledge = load_knowledge() if knowledge is None else knowledge
    text = sentence.replace("\u2019", "'")
    if reason := _facts_problem(text):
        return Verdict(sentence, "contradicts", reason)
    if found := _claim(text, rules, strict):
        claim, words = found
        return Verdict(sentence, claim.verdict, f"{claim.says}: {words!r}")
    computes = any(p.search(text) for p in rules.arithmetic)
    if invented := ungrounded(text, sources, knowledge, rules, numbers=not computes):
        return Verdict(sentence, "unsupported", f"not in the knowledge base or the question: {', '.join(invented[:5])}")
    words = content_words(text, rules)
    about_self = any(p.search(text) for p in rules.self_patterns)
    if all(w in rules.social for w in words) or (text.rstrip().endswith("?") and not about_self):
        return Verdict(sentence, "social")
    share, missing = k_precision(text, sources, knowledge, rules)
    if strict and rules.strict_one_line and share is not None and share >= rules.strict_k_precision:
        line_share, line_missing = one_line_precision(text, sources, knowledge, rules)
        if line_share is not None and line_share < rules.strict_k_precision:
            return Verdict(sentence, "unsupported", f"one-line K-precision {line_share:.2f} < {rules.strict_k_precision}: "
                                                    f"no one line of the knowledge base has {', '.join(line_missing[:6])} "
                                                    "with the rest", round(line_share, 3))
    bar = rules.strict_k_precision if strict else rules.min_k_precision
    # generation's bar holds every sentence, however short ("I'm not a brand, just an idea."): a short invented
    # claim teaches a student as much as a long one
    if share is not None and share < bar and (strict or (about_self and len(words) >= rules.min_content_words)):
        return Verdict(sentence, "unsupported", f"K-precision {share:.2f} < {bar}: "
                                                f"not in the knowledge base or the question: {', '.join(missing[:6])}",
                       round(share, 3))
    return Verdict(sentence, "supported", "", None if share is None else round(share, 3))


def check_reply(reply: str, *, sources: str = "", knowledge: str | None = None,
                rules: TruthRules | None = None, strict: bool = False) -> list[Verdict]:
    """A verdict for every sentence of an assistant reply (an unfinished last sentence included)."""
    return [check_sentence(s, sources=sources, knowledge=knowledge, rules=rules, strict=strict)
            for s in sentences(reply)]


def false_sentences(reply: str, **kwargs) -> list[Verdict]:
    """The sentences of `reply` that are not kept (every verdict but supported and social)."""
    return [v for v in check_reply(reply, **kwargs) if not v.kept]


# ---- a conversation --------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p["text"] for p in content
                        if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _key(sentence: str) -> str:
    return " ".join(_WORD.findall(sentence.lower()))


def _asks_back(sentence: str, asked: set[str], rules: TruthRules) -> bool:
    """A question of two content words or more, every one from the user's last turn: the user's question
    asked back ("Why does it cost less?" after "Why does training cost less today?"), which answers nothing."""
    words = {stem(w, rules.stem_chars) for w in content_words(sentence, rules)}
    return sentence.rstrip().endswith("?") and len(words) >= 2 and words <= asked


def check_conversation(messages: Any, *, knowledge: str | None = None, rules: TruthRules | None = None,
                       strict: bool = False, sources: str = "") -> list[tuple[int, Verdict]]:
    """(message index, verdict) for every sentence of every assistant turn, judged against the knowledge
    base and the user's turns so far; a sentence of four words or more said in an earlier assistant turn
    is `repeated` (and, at generation's bar, a question that asks the user's own question back), and a user turn the content rules call degenerate ("YO!!!") is `degenerate`. `sources`:
    more text that supports every turn (the distill recipe's planned opening). Never raises on bad data: what
    is not a {role, content} message is skipped."""
    if not isinstance(messages, list):
        return []
    rules = rules or load_truth()
    turns = [(i, m) for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    degenerate = {p.index: p.message for p in content_problems(messages, {}, load_rules())
                  if p.rule == "degenerate"}
    found: list[tuple[int, Verdict]] = []
    said: set[str] = set()
    users: list[str] = [sources] if sources else []
    for i, message in turns:
        text = _text(message.get("content"))
        if message["role"] == "user":
            users.append(text)
            if i in degenerate:
                found.append((i, Verdict(text, "degenerate", degenerate[i].removeprefix("degenerate: "))))
            continue
        asked = {stem(w, rules.stem_chars) for w in content_words(users[-1], rules)} if users else set()
        for verdict in check_reply(text, sources=" ".join(users), knowledge=knowledge, rules=rules, strict=strict):
            key = _key(verdict.sentence)
            if len(key.split()) >= 4 and key in said:
                verdict = Verdict(verdict.sentence, "repeated", "said in an earlier turn of this conversation")
            elif strict and verdict.kept and _asks_back(verdict.sentence, asked, rules):
                verdict = Verdict(verdict.sentence, "repeated", "asks the user's question back")
            found.append((i, verdict))
        said.update(_key(s) for s in sentences(text))
    return found


def truth_problems(messages: Any, *, knowledge: str | None = None) -> list[Problem]:
    """The assistant sentences that are not kept, as problems of their messages (rule = the verdict):
    `message[1]: unsupported: "It is only able to work with integers.", a limitation ...`. User turns
    are left to the content rules, which already report a degenerate one."""
    return [Problem(i, v.verdict, f"{v.verdict}: {v.sentence!r}, {v.reason}")
            for i, v in check_conversation(messages, knowledge=knowledge)
            if not v.kept and v.verdict != "degenerate"]


def keepable(messages: Any, *, knowledge: str | None = None) -> bool:
    """Would a careful reader keep this conversation: every sentence kept, no user turn degenerate."""
    return all(v.kept for _, v in check_conversation(messages, knowledge=knowledge))


def keepable_share(records: Any, *, knowledge: str | None = None) -> tuple[int, int]:
    """(conversations every sentence of which is kept, conversations): how many a careful reader would keep."""
    records = list(records)
    kept = sum(keepable(r.get("messages") if isinstance(r, dict) else r, knowledge=knowledge) for r in records)
    return kept, len(records)


def sentence_table(record: Any, *, knowledge: str | None = None):
    """One conversation (a record or a list of messages) as a DataFrame for a notebook: one row per
    sentence (turn, role, sentence, verdict, why), user turns whole."""
    import pandas as pd

    messages = record.get("messages") if isinstance(record, dict) else record
    verdicts: dict[int, list[Verdict]] = {}
    for i, v in check_conversation(messages, knowledge=knowledge):
        verdicts.setdefault(i, []).append(v)
    rows = []
    for i, m in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            continue
        if m["role"] == "user":
            v = (verdicts.get(i) or [None])[0]
            rows.append({"turn": i, "role": "user", "sentence": _text(m.get("content")),
                         "verdict": v.verdict if v else "", "why": v.reason if v else ""})
        rows += [{"turn": i, "role": "assistant", "sentence": v.sentence, "verdict": v.verdict, "why": v.reason}
                 for v in verdicts.get(i, [])]
    return pd.DataFrame(rows, columns=["turn", "role", "sentence", "verdict", "why"])
