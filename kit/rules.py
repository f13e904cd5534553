"""Is a conversation fit to train on? Every problem, with the message it is in, never an exception.

The rules are pure text checks over one conversation (they import only the foundations), so every stage
can apply them: the generator to decide between keeping an item, re-asking and rejecting it; export and
the token views to refuse a conversation; `kit.quality.validation` to check a whole file. Checking never
stops at the first problem and never raises, whatever it is given (a model's reply is untrusted data: a
string, a number, a dict with no roles...).

Rules (severity error unless noted):
  shape            messages is a list of objects with "role" and "content"
  min_messages     at least two messages
  role             roles are user/assistant only; a system message is allowed first
  starts_with_user the first message after an optional system message is the user's
  alternation      no two user or two assistant messages in a row
  ends_with_assistant  the last message is the assistant's (the thing being taught)
  content          non-empty text; parts ({"type", "text"}) only in assistant messages; an assistant
                   message has at least one letter or digit (small models emit JSON debris like "}, {")
  finish_reason    the reply was not cut off by the token limit ("length")
  ascii            plain ASCII text (warning; the generation prompt asks for it)

Content rules (`rules=load_rules()`; severities and limits are data in knowledge/quality_rules.yaml,
per recipe): a conversation can be well-formed and still useless, the way a 135M writer's often is.
  markup           HTML/XML tags or markdown artefacts (headings, bold, code fences, links, tables)
  too_short        an assistant reply under `min_words` words, or with no word made of letters
  shape            message count differs from what the sampled dynamic asks for ("4 messages",
                   "three rounds" = 6 exactly; a dynamic that names no count: any even count up to
                   `max_messages`); needs the record's meta
  identity         an assistant message claims a foreign identity (kit.facts), or the user asks
                   who or what it is (or its name) and the next reply does not use the taught name
  degenerate       one sentence said twice, a reply repeating an earlier one or copying the user's
                   message, or text that is mostly symbols
  leakage          the generator's instructions in the text instead of a conversation ("Your first
                   message is", "The user is: ...", "A JSON object"): patterns are data
                   (`leakage_patterns`), each taken from a real reply of a small model
  fragment         JSON or record debris in prose: a key of the record format ('"role":'), more closing
                   brackets than opening ones ("gasoline}}}"), a turn starting mid-sentence (", a question,
                   about ..."); balanced code with braces passes
  cut_off          an assistant reply that stops mid-sentence (no closing punctuation, not a link)
Content-rule messages start with the rule's name, so `message[1]: too_short: ...` says which it is.
The structural rules run always; the content rules only when asked (`rules=`), because callers that
only need renderable conversations (tasks, token views) must not reject a one-word toy reply.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

from kit import paths
from kit.facts import PatternScreen, foreign_identity_claims  # the foreign names are data in knowledge/identity/
from kit.text import SENTENCE_OR_LINE_BREAK

ROLES = ("user", "assistant")
PART_TYPES = ("text", "python", "python_output")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True)
class Problem:
    index: int | None  # message index, None for the conversation as a whole
    rule: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"message[{self.index}]: " if self.index is not None else ""
        tag = " (warning)" if self.severity == "warning" else ""
        return f"{where}{self.message}{tag}"


def _content_problem(content: Any, role: Any) -> str | None:
    """Why this content is not usable text, or None if it is."""
    if isinstance(content, str):
        if not content.strip():
            return "content is empty"
        return _wordless(content) if role == "assistant" else None
    if isinstance(content, list):
        if role != "assistant":
            return f"content parts are only allowed in assistant messages, not {role!r}"
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in PART_TYPES or not isinstance(part.get("text"), str):
                return f"content part {j} is not {{'type': one of {'/'.join(PART_TYPES)}, 'text': str}}"
        if not any(part["text"].strip() for part in content):
            return "content parts hold no text"
        return _wordless("".join(part["text"] for part in content))
    return f"content is a {type(content).__name__}, not a string"


def _wordless(text: str) -> str | None:
    if any(ch.isalnum() for ch in text):
        return None
    return f"assistant content has no letter or digit: {text.strip()[:40]!r}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _ascii_problem(i: int, content: Any) -> Problem | None:
    match = _NON_ASCII.search(_text(content))
    if match is None:
        return None
    ch = match.group()
    return Problem(i, "ascii", f"non-ASCII character {ch!r} (U+{ord(ch):04X}) at position {match.start()}", "warning")


# ---- content rules ---------------------------------------------------------------------------------

CONTENT_RULES = ("markup", "too_short", "shape", "identity", "degenerate", "leakage", "fragment", "cut_off")
SEVERITIES = ("error", "warning", "off")
RULES_FILE = "quality_rules.yaml"


@dataclass(frozen=True)
class Rules:
    """Settings of the content rules: a severity per rule (overridable per recipe) and their limits."""

    severity: dict[str, str]
    recipes: dict[str, dict[str, str]] = field(default_factory=dict)
    identity_name: str = "nanochat"
    min_words: int = 3
    copy_similarity: float = 0.8
    max_messages: int = 8
    leakage: tuple[re.Pattern, ...] = ()

    def severity_of(self, rule: str, recipe: Any = None) -> str:
        return self.recipes.get(recipe, {}).get(rule, self.severity[rule]) if isinstance(recipe, str) \
            else self.severity[rule]

    @cached_property
    def leakage_screen(self) -> PatternScreen:
        """The leakage patterns behind their literal screens (kit.facts.PatternScreen)."""
        return PatternScreen(self.leakage)


def _check_severities(where: str, given: Any, required: bool) -> dict[str, str]:
    if not isinstance(given, dict):
        raise ValueError(f"{where}: expected a mapping of rule -> severity")
    unknown = sorted(set(given) - set(CONTENT_RULES))
    if unknown:
        raise ValueError(f"{where}: unknown rule {unknown[0]!r} (rules: {', '.join(CONTENT_RULES)})")
    given = {rule: "off" if value is False else value for rule, value in given.items()}  # YAML reads a bare off as false
    for rule, value in given.items():
        if value not in SEVERITIES:
            raise ValueError(f"{where}.{rule}: severity {value!r} is not one of {', '.join(SEVERITIES)}")
    missing = [r for r in CONTENT_RULES if r not in given]
    if required and missing:
        raise ValueError(f"{where}: no severity for rule {missing[0]!r}")
    return dict(given)


@lru_cache(maxsize=8)
def _load_rules(path: Path) -> Rules:
    data = paths.read_yaml(path, "content-rule settings")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    unknown = sorted(set(data) - {"severity", "recipes", "identity_name", "min_words", "copy_similarity", "max_messages",
                          "leakage_patterns"})
    if unknown:
        raise ValueError(f"{path}: unknown setting {unknown[0]!r}")
    recipes = data.get("recipes") or {}
    if not isinstance(recipes, dict):
        raise ValueError(f"{path}: recipes: expected a mapping of recipe -> severities")
    defaults = Rules(severity={})
    rules = Rules(severity=_check_severities(f"{path}: severity", data.get("severity"), required=True),
                  recipes={str(name): _check_severities(f"{path}: recipes.{name}", given or {}, required=False)
                           for name, given in recipes.items()},
                  identity_name=str(data.get("identity_name", defaults.identity_name)),
                  min_words=data.get("min_words", defaults.min_words),
                  copy_similarity=data.get("copy_similarity", defaults.copy_similarity),
                  max_messages=data.get("max_messages", defaults.max_messages),
                  leakage=_leakage_patterns(path, data.get("leakage_patterns") or []))
    if not isinstance(rules.min_words, int) or rules.min_words < 1:
        raise ValueError(f"{path}: min_words must be an integer >= 1, got {rules.min_words!r}")
    if not isinstance(rules.max_messages, int) or rules.max_messages < 2:
        raise ValueError(f"{path}: max_messages must be an integer >= 2, got {rules.max_messages!r}")
    if not isinstance(rules.copy_similarity, (int, float)) or not 0 < rules.copy_similarity <= 1:
        raise ValueError(f"{path}: copy_similarity must be in (0, 1], got {rules.copy_similarity!r}")
    return rules


def _leakage_patterns(path: Path, given: Any) -> tuple[re.Pattern, ...]:
    if not isinstance(given, list) or not all(isinstance(p, str) and p for p in given):
        raise ValueError(f"{path}: leakage_patterns must be a list of regular expressions")
    compiled = []
    for i, pattern in enumerate(given):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{path}: leakage_patterns[{i}] {pattern!r} is not a regular expression: {exc}") from None
    return tuple(compiled)


def load_rules(path: str | Path | None = None) -> Rules:
    """The content-rule settings (default knowledge/quality_rules.yaml); a bad file names itself."""
    return _load_rules(Path(path or paths.knowledge_dir() / RULES_FILE).resolve())


_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_MARKDOWN = (
    ("a markdown heading", re.compile(r"(?m)^\s{0,3}#{1,6}\s+\S")),
    ("markdown bold", re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")),
    ("a markdown code fence", re.compile(r"```")),
    ("a markdown link", re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")),
    ("a markdown table", re.compile(r"(?m)^\s*\|?\s*:?-{3,}:?\s*\|")),
)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_SYMBOL = re.compile(r"[^\w\s]|_")
_SPACE = re.compile(r"\s")
# the user asks who or what the assistant is, or its name
_ASKS_IDENTITY = re.compile(
    r"\bwho\s+(?:are|r)\s+(?:you|u)\b|\bwhat\s+(?:are|r)\s+(?:you|u)\s*(?:[?!.]|$|exactly|called|really)"
    r"|\bwhat(?:'s|\s+is)\s+your\s+name\b|\byour\s+name\s*\?|\b(?:have|got)\s+a\s+name\b|\btell\s+me\s+your\s+name\b"
    r"|\bwho\s+am\s+i\s+(?:talking|speaking|chatting)\b|\bwhat\s+(?:should|do|can)\s+i\s+call\s+you\b"
    r"|\bintroduce\s+yourself\b|\bwhat\s+is\s+this\s*(?:[?!.]|$)",
    re.IGNORECASE)
_ASKS_IDENTITY_SCREEN = PatternScreen([_ASKS_IDENTITY])
_COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "twelve": 12}
_COUNT = re.compile(rf"\b(\d+|{'|'.join(_COUNT_WORDS)})\s+(messages?|rounds?)\b", re.IGNORECASE)


def _asks_identity(text: str) -> bool:
    return bool(_ASKS_IDENTITY_SCREEN.candidates(text)) and _ASKS_IDENTITY.search(text) is not None


def dynamic_message_count(dynamic: Any) -> int | None:
    """The exact message count a dynamic's text asks for ("4 messages", "three rounds" = 6), or None.
    A count of messages wins over a count of rounds when the text names both."""
    if not isinstance(dynamic, str):
        return None
    found = {}
    for number, unit in _COUNT.findall(dynamic):
        n = int(number) if number.isdigit() else _COUNT_WORDS[number.lower()]
        found.setdefault("messages" if unit.lower().startswith("message") else "rounds", n)
    if "messages" in found:
        return found["messages"]
    return 2 * found["rounds"] if "rounds" in found else None


def _markup(text: str) -> str | None:
    if tag := _TAG.search(text):
        return f"HTML/XML tag {tag.group()[:30]!r} in plain text"
    for what, pattern in _MARKDOWN:
        if found := pattern.search(text):
            return f"{what} ({found.group().strip()[:30]!r}) in plain text"
    return None


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _too_short(text: str, min_words: int, words: list[str] | None = None) -> str | None:
    w = _words(text) if words is None else words
    if len(w) < min_words:
        return f"the reply has {len(w)} word{'s' * (len(w) != 1)}, under {min_words}: {text.strip()[:40]!r}"
    if not any(ch.isalpha() for word in w for ch in word):
        return f"the reply has no sentence, no word made of letters: {text.strip()[:40]!r}"
    return None


def _mostly_symbols(text: str) -> str | None:
    symbols = len(_SYMBOL.findall(text))
    if symbols * 4 < len(text):  # the common case, decided without counting spaces
        return None
    visible = len(text) - len(_SPACE.findall(text))
    if visible and symbols * 2 > visible:
        return f"the text is mostly symbols ({symbols} of {visible} characters): {text.strip()[:40]!r}"
    return None


def _repeated_sentence(text: str) -> str | None:
    seen = set()
    for sentence in SENTENCE_OR_LINE_BREAK.split(text):
        key = " ".join(_words(sentence))
        if len(key.split()) < 3:  # "Yes." twice is speech, not a loop
            continue
        if key in seen:
            return f"a sentence is said twice: {sentence.strip()[:50]!r}"
        seen.add(key)
    return None


def _leak(text: str, screen: PatternScreen) -> str | None:
    """The first leakage pattern that matches (`Rules.leakage_screen`: most texts are ruled out by a few
    substring tests, where the ten searches cost ~25 us)."""
    for i in screen.candidates(text):
        if found := screen.patterns[i].search(text):
            return f"the generator's instructions leak into the text: {found.group()[:40]!r}"
    return None


_RECORD_KEY = re.compile(r'"(?:role|content|messages|user|assistant)"\s*:')
_CLOSERS = {"}": "{", "]": "["}


def _fragment(text: str) -> str | None:
    if text.lstrip()[:1] in (",", ";", ")", "]", "}"):  # the tail of a sentence the prompt began
        return f"starts mid-sentence: {text.strip()[:30]!r}"
    if found := _RECORD_KEY.search(text):
        return f"a key of the record format in prose: {found.group()!r}"
    for closer, opener in _CLOSERS.items():
        if text.count(closer) > text.count(opener):
            at = text.index(closer)
            return f"more {closer!r} than {opener!r}: JSON debris near {text[max(0, at - 20):at + 5]!r}"
    return None


_ENDS_SENTENCE = re.compile(r"""(?:[.!?…]["')\]]*|["')]|https?://\S+|:\)|:D)\s*$""")


def _cut_off(text: str) -> str | None:
    if _ENDS_SENTENCE.search(text):
        return None
    return f"the reply stops mid-sentence: {text.strip()[-40:]!r}"


def _copies(reply: str, user: str, threshold: float, reply_words: list[str] | None = None) -> str | None:
    a = " ".join(_words(_TAG.sub(" ", user)))
    b = " ".join(_words(reply) if reply_words is None else reply_words)
    if not a or not b or 2 * min(len(a), len(b)) < threshold * (len(a) + len(b)):  # lengths alone rule it out
        return None
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold \
            and (ratio := matcher.ratio()) >= threshold:
        return f"the reply copies the user's message ({ratio:.0%} alike): {reply.strip()[:40]!r}"
    return None


def _prose(content: Any) -> str:
    """The text parts only: code and its output are not prose, so markup, symbols and sentences are
    read in the words around them."""
    if isinstance(content, list):
        return "".join(p["text"] for p in content
                       if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def content_problems(messages: Any, meta: Any, rules: Rules) -> list[Problem]:
    """The content rules alone; nothing when the structure is too broken to read (every message must
    be a {role, content} object), since the structural rules then say what is wrong."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        return []
    meta = meta if isinstance(meta, dict) else {}
    recipe = meta.get("recipe")
    severity = {rule: rules.severity_of(rule, recipe) for rule in CONTENT_RULES}
    problems: list[Problem] = []

    def add(index: int | None, rule: str, message: str) -> None:
        if severity[rule] != "off":
            problems.append(Problem(index, rule, f"{rule}: {message}", severity[rule]))

    turns = [(i, m.get("role"), m.get("content")) for i, m in enumerate(messages)
             if isinstance(m, dict) and m.get("role") in ROLES]
    if severity["shape"] != "off" and meta.get("dynamic"):
        wanted, n = dynamic_message_count(meta["dynamic"]), len(turns)
        if wanted is not None and n != wanted:
            add(None, "shape", f"{n} messages, but the dynamic asks for {wanted}: {meta['dynamic']!r}")
        elif wanted is None and not (n % 2 == 0 and 2 <= n <= rules.max_messages):
            add(None, "shape", f"{n} messages; a dynamic that names no count allows an even number from 2 to "
                               f"{rules.max_messages}")
    last_user, replies = None, set()
    for i, role, content in turns:
        prose = _prose(content)
        if reason := _markup(prose):
            add(i, "markup", reason)
        if reason := _mostly_symbols(prose):
            add(i, "degenerate", reason)
        if reason := _leak(prose, rules.leakage_screen):
            add(i, "leakage", reason)
        if reason := _fragment(prose):
            add(i, "fragment", reason)
        if role == "user":
            last_user = prose
            continue
        text = _text(content)
        if isinstance(content, str) and (reason := _cut_off(content)):
            add(i, "cut_off", reason)
        words = _words(text)  # one reading for the rules below (prose is text unless there are parts)
        if reason := _too_short(text, rules.min_words, words):
            add(i, "too_short", reason)
        if reason := _repeated_sentence(prose):
            add(i, "degenerate", reason)
        key = " ".join(words)
        if key and key in replies:
            add(i, "degenerate", f"the reply repeats an earlier reply: {text.strip()[:40]!r}")
        replies.add(key)
        if last_user is not None and (reason := _copies(prose, last_user, rules.copy_similarity,
                                                        words if prose is text else None)):
            add(i, "degenerate", reason)
        if severity["identity"] != "off":
            for claim in foreign_identity_claims(text):
                add(i, "identity", f"claims a foreign identity: {claim!r}")
            if last_user is not None and _asks_identity(last_user) \
                    and rules.identity_name.lower() not in text.lower():
                add(i, "identity", f"asked who it is, the reply does not say {rules.identity_name!r}")
    return problems


def validate_messages(messages: Any, finish_reason: Any = None, ascii_rule: bool = True, *,
                      rules: Rules | None = None, meta: Any = None) -> list[Problem]:
    """All problems of one conversation; an empty list means it is fit to train on.

    With `rules` (`load_rules()`), the content rules run too, once the structure is sound enough to
    read (every message a {role, content} object); `meta` (a record's meta, or the sampled elements)
    gives the recipe for the severities and the dynamic for the shape rule."""
    problems: list[Problem] = []
    if finish_reason == "length":
        problems.append(Problem(None, "finish_reason", "reply was cut off at the token limit (finish_reason=length)"))
    if not isinstance(messages, list):
        problems.append(Problem(None, "shape", f"messages is a {type(messages).__name__}, not a list"))
        return problems
    if len(messages) < 2:
        problems.append(Problem(None, "min_messages", f"needs at least 2 messages, has {len(messages)}"))

    turns: list[tuple[int, str]] = []  # (index, role) of well-formed user/assistant messages
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(Problem(i, "shape", f"is a {type(message).__name__}, not an object"))
            continue
        missing = [k for k in ("role", "content") if k not in message]
        if missing:
            problems.append(Problem(i, "shape", f"lacks {' and '.join(repr(k) for k in missing)}"))
        role = message.get("role")
        if "role" in message:
            if role == "system":
                if i != 0:
                    problems.append(Problem(i, "role", "a system message is only allowed first"))
            elif role in ROLES:
                turns.append((i, role))
            else:
                problems.append(Problem(i, "role", f"role {role!r} is not user or assistant"))
        if "content" in message:
            reason = _content_problem(message["content"], role)
            if reason:
                problems.append(Problem(i, "content", reason))
            elif ascii_rule and (p := _ascii_problem(i, message["content"])):
                problems.append(p)

    if turns:
        first_i, first_role = turns[0]
        if first_role != "user":
            problems.append(Problem(first_i, "starts_with_user", f"the conversation starts with {first_role}, not user"))
        for (_, prev), (i, role) in zip(turns, turns[1:]):
            if role == prev:
                problems.append(Problem(i, "alternation", f"two {role} messages in a row"))
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") in ROLES + ("system",) and last.get("role") != "assistant":
        problems.append(Problem(len(messages) - 1, "ends_with_assistant",
                                f"the conversation ends with {last.get('role')}, not assistant"))
    if rules is not None:
        problems += content_problems(messages, meta, rules)
    problems.sort(key=lambda p: (-1 if p.index is None else p.index))
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
