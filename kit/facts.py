"""Who the assistant is, as data and pure text rules: the facts, the probes, the foreign names.

Both the quality stage (validation's `identity` content rule: a reply must not claim to be ChatGPT)
and the training stage (identity evaluation: does a finetuned model state its facts?) read the same
hand-written files in knowledge/identity/ and apply the same rules to text. The rules depend on
nothing but the text and those files, so they live here, at the foundations: neither stage imports
the other to use them, and a change to finetuning cannot break validation.

- `load_identity_data` reads and checks facts.yaml, foreign.yaml and probes.yaml;
- `foreign_identity_claims(text)`: the foreign identities a text claims as its own;
- `facts_stated(answer, fact_ids)` and `score_answer(probe, answer)`: the facts an answer asserts;
- `contradictions(answer)` and `fact_verdict(answer, fact_ids)`: what an answer gets wrong.

A fact's words are not enough: "No, not under the MIT license" names MIT and "Karpathy did not build me"
names Karpathy. A fact counts only when the answer *asserts* it: no negation governs any of its
mentions (a negator a few words before it in the same clause, or "X did not build me" after it), and no
contradiction of the knowledge base appears ("trained by Andrej Karpathy in 2019", "closed source", "I can
browse the web"). Contradictions are data too (contradictions.yaml), each naming the facts it fails.
Facts that state a limit ("no internet access", "works best in English") are said with negations, so
only contradictions can fail them. The plain pattern match is kept as `mentioned`, the scoring before these
checks, so a report can say how many answers each check turned from pass to fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from kit import paths
from kit.text import STATEMENT_END

from re import _parser as _re_parser  # the parse tree literal_screen reads (no public API gives it)

IDENTITY_DIR = "identity"
KINDS = ("direct", "indirect", "typo", "casual", "multilingual", "adversarial", "multiturn")
NO_FOREIGN = "no_foreign"  # the check every probe makes, reported beside the facts


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class Fact:
    id: str
    says: str
    patterns: tuple[re.Pattern, ...]
    limit: bool = False  # said with a negation ("no internet access", "not beyond 2048 tokens"): negators near it deny nothing

    def stated_in(self, text: str) -> bool:
        """Any pattern matches: the fact's words are there (asserted or not; see `fact_verdict`)."""
        return any(p.search(text) for p in self.patterns)


@dataclass(frozen=True)
class Contradiction:
    """Words that say the opposite of a knowledge-base fact; an asserted match fails every fact in `fails`."""
    id: str
    says: str
    fails: tuple[str, ...]
    patterns: tuple[re.Pattern, ...]


@dataclass(frozen=True)
class Probe:
    id: str
    kind: str
    question: str
    checks: tuple[str, ...]
    history: tuple[dict, ...] = ()
    lang: str = "en"

    def messages(self, system_prompt: str | None) -> list[dict]:
        """The conversation to send: the system prompt, the earlier turns, the question."""
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return system + [dict(m) for m in self.history] + [{"role": "user", "content": self.question}]


@dataclass(frozen=True)
class ForeignName:
    name: str
    patterns: tuple[re.Pattern, ...]


@dataclass(frozen=True)
class IdentityData:
    probes: tuple[Probe, ...]
    facts: dict[str, Fact]
    foreign: tuple[ForeignName, ...]
    folder: Path
    contradictions: tuple[Contradiction, ...] = ()

    @cached_property
    def foreign_screen(self) -> tuple[tuple[str, ...], "PatternScreen"]:
        """Every foreign pattern in the data's order, screened (`PatternScreen`), and the name of each."""
        pairs = [(f.name, p) for f in self.foreign for p in f.patterns]
        return tuple(name for name, _ in pairs), PatternScreen([p for _, p in pairs])


def _read_yaml(path: Path, key: str) -> list:
    try:
        data = paths.read_yaml(path, f"the identity data's {key}")  # malformed: a ValueError naming it
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path}: expected a mapping with a list under {key!r}")
    return data[key]


def _compile(path: Path, where: str, patterns: Any) -> tuple[re.Pattern, ...]:
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{path}: {where}: 'patterns' must be a non-empty list of strings")
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{path}: {where}: bad pattern {p!r}: {exc}") from None
    return tuple(compiled)


def _entry(path: Path, i: int, item: Any, required: tuple[str, ...]) -> dict:
    if not isinstance(item, dict):
        raise ValueError(f"{path}: entry {i}: expected a mapping, got {type(item).__name__}")
    missing = [k for k in required if not item.get(k)]
    if missing:
        raise ValueError(f"{path}: entry {i} ({item.get('id') or item.get('name') or '?'}): missing {', '.join(missing)}")
    return item


def load_identity_data(folder: str | Path | None = None) -> IdentityData:
    """Probes, facts, foreign names and contradictions (contradictions.yaml, optional) from `folder` (default
    knowledge/identity/), checked: an unknown fact id, a duplicate probe id, a bad pattern or a malformed
    history is an error naming file and entry."""
    folder = Path(folder) if folder is not None else paths.knowledge_dir() / IDENTITY_DIR
    facts_path, foreign_path, probes_path = folder / "facts.yaml", folder / "foreign.yaml", folder / "probes.yaml"

    facts: dict[str, Fact] = {}
    for i, item in enumerate(_read_yaml(facts_path, "facts")):
        item = _entry(facts_path, i, item, ("id", "patterns"))
        if item["id"] in facts or item["id"] == NO_FOREIGN:
            raise ValueError(f"{facts_path}: entry {i}: fact id {item['id']!r} is used twice or reserved")
        facts[item["id"]] = Fact(item["id"], str(item.get("says", "")),
                                 _compile(facts_path, f"fact {item['id']}", item["patterns"]),
                                 limit=item.get("limit") is True)

    contradictions: list[Contradiction] = []
    contra_path = folder / "contradictions.yaml"
    for i, item in enumerate(_read_yaml(contra_path, "contradictions") if contra_path.exists() else []):
        item = _entry(contra_path, i, item, ("id", "fails", "patterns"))
        fails = item["fails"] if isinstance(item["fails"], list) else [item["fails"]]
        unknown = [f for f in fails if f not in facts]
        if unknown or any(c.id == item["id"] for c in contradictions):
            raise ValueError(f"{contra_path}: entry {i} ({item['id']}): "
                             + (f"fails unknown fact(s) {', '.join(map(str, unknown))}" if unknown else "id used twice"))
        contradictions.append(Contradiction(str(item["id"]), str(item.get("says", "")), tuple(fails),
                                            _compile(contra_path, f"contradiction {item['id']}", item["patterns"])))

    foreign = tuple(
        ForeignName(str(item["name"]), _compile(foreign_path, f"name {item['name']}", item["patterns"]))
        for i, item in enumerate(_read_yaml(foreign_path, "foreign"))
        if _entry(foreign_path, i, item, ("name", "patterns")))

    probes: list[Probe] = []
    for i, item in enumerate(_read_yaml(probes_path, "probes")):
        item = _entry(probes_path, i, item, ("id", "kind", "question"))
        where = f"{probes_path}: probe {item['id']}"
        if any(p.id == item["id"] for p in probes):
            raise ValueError(f"{where}: id used twice")
        if item["kind"] not in KINDS:
            raise ValueError(f"{where}: unknown kind {item['kind']!r} (kinds: {', '.join(KINDS)})")
        checks = item.get("checks") or []
        unknown = [c for c in checks if c not in facts]
        if unknown:
            raise ValueError(f"{where}: checks unknown fact(s) {', '.join(map(str, unknown))} "
                             f"(facts: {', '.join(facts)})")
        history = item.get("history") or []
        roles = [m.get("role") if isinstance(m, dict) else None for m in history]
        if roles != ["user", "assistant"] * (len(history) // 2) or any(
                not isinstance(m.get("content"), str) or not m["content"].strip() for m in history):
            raise ValueError(f"{where}: history must be user/assistant pairs with text content")
        probes.append(Probe(str(item["id"]), item["kind"], str(item["question"]), tuple(checks),
                            tuple({"role": m["role"], "content": m["content"]} for m in history),
                            str(item.get("lang", "en"))))
    return IdentityData(tuple(probes), facts, foreign, folder, tuple(contradictions))


@lru_cache(maxsize=1)
def default_data() -> IdentityData:
    """knowledge/identity/ read once per process."""
    return load_identity_data()


# ---------------------------------------------------------------- screening

_LITERAL, _SUBPATTERN, _BRANCH = _re_parser.LITERAL, _re_parser.SUBPATTERN, _re_parser.BRANCH
_REPEATS = tuple(getattr(_re_parser, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
                 if hasattr(_re_parser, name))


def literal_screen(pattern: re.Pattern) -> tuple[tuple[str, ...], ...] | None:
    """What an ASCII text must contain, lowercased, for `pattern` to match it: groups of lowercase
    strings, every match holding at least one string of each group; None when the pattern has no such
    string (a pattern of classes only, say).

    A cheap test before an expensive search (`PatternScreen`), exact by construction: in a text that
    lacks every string of a group, `pattern.search` finds nothing. The strings are the pattern's own
    literal runs, read from its parse tree (in a group, a repeat of at least one, every branch of an
    alternation). Only ASCII characters of the pattern count, and only an ASCII text is screened: under
    IGNORECASE a non-ASCII character can match an ASCII one (the Kelvin sign matches "k"), which
    lowercasing would not see."""
    try:
        tree = _re_parser.parse(pattern.pattern, pattern.flags)
    except Exception:  # pragma: no cover - it compiled, so it parses; screening never fails a check
        return None
    # the most telling groups first, so a text that fails fails early; a group with a one-letter string
    # (" ", ":") is true of nearly every text and only costs time (leaving a group out is always exact)
    groups = sorted((g for g in dict.fromkeys(_requirements(list(tree))) if min(map(len, g)) >= 2),
                    key=lambda g: -min(map(len, g)))
    return tuple(tuple(sorted(g)) for g in groups[:3]) or None


class PatternScreen:
    """Regular expressions behind their literal screens: `candidates(text)` is the indices, in order, of
    the patterns that may match `text`; the others cannot (see `literal_screen`). A text is lowercased
    once and tested for every screen string at once; which patterns those strings admit is remembered
    per set of strings found (a handful of sets in practice)."""

    def __init__(self, patterns: tuple[re.Pattern, ...] | list[re.Pattern]):
        self.patterns = tuple(patterns)
        screens = [literal_screen(p) for p in self.patterns]
        self._needs = tuple(None if n is None else tuple(frozenset(g) for g in n) for n in screens)
        self._strings = tuple(sorted({s for n in screens if n for g in n for s in g}))
        self._all = tuple(range(len(self.patterns)))
        self._admitted: dict[frozenset[str], tuple[int, ...]] = {}

    def candidates(self, text: str) -> tuple[int, ...]:
        if not text.isascii():
            return self._all
        lowered = text.lower()
        found = frozenset([s for s in self._strings if s in lowered])
        admitted = self._admitted.get(found)
        if admitted is None:
            if len(self._admitted) >= 4096:  # bounded, whatever the texts
                self._admitted.clear()
            admitted = self._admitted[found] = tuple(
                i for i, needs in enumerate(self._needs)
                if needs is None or all(not group.isdisjoint(found) for group in needs))
        return admitted


def _best(groups: list[frozenset[str]]) -> frozenset[str] | None:
    """The most telling group: the one whose shortest string is longest."""
    return max(groups, key=lambda g: min(map(len, g)), default=None)


def _requirements(items: list) -> list[frozenset[str]]:
    """Groups of strings such that every match of the parsed sequence `items` holds one of each group."""
    groups: list[frozenset[str]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            groups.append(frozenset({"".join(run)}))
            run.clear()

    for op, arg in items:
        if op is _LITERAL and arg < 128:
            run.append(chr(arg).lower())
            continue
        end_run()
        if op is _SUBPATTERN:
            groups += _requirements(list(arg[-1]))
        elif op is _BRANCH:
            alternatives = [_best(_requirements(list(branch))) for branch in arg[1]]
            if all(alternatives):
                groups.append(frozenset().union(*alternatives))
        elif op in _REPEATS and arg[0] >= 1:
            groups += _requirements(list(arg[2]))
        # anything else (a class, an anchor, a lookaround, a back-reference) requires no known string
    end_run()
    return groups


# ---------------------------------------------------------------- claims

# How a speaker names itself: "I am", "my name is", "call me" (and the same in the probes' languages).
_SELF = re.compile(
    r"(?:\bi\s+am|\bi'?m|\bi\s+was|\bmy\s+name\s+is|\bmy\s+name's|\bcall\s+me|\bthis\s+is"
    r"|\bi\s+(?:belong\s+to|come\s+from|work\s+for|run\s+as)"
    r"|\bmy\s+(?:creators?|makers?|developers?|authors?|company|parent\s+company|team|trainers?|base\s+model)\s+(?:is|are|was|were)"
    r"|\byou(?:'re|\s+are)\s+(?:talking|chatting|speaking)\s+(?:to|with)"
    r"|\bje\s+suis|\bje\s+m'appelle|\bmon\s+nom\s+est|\bsoy|\bme\s+llamo|\bmi\s+nombre\s+es"
    r"|\bich\s+bin|\bich\s+hei(?:ss|\u00df)e|\bmein\s+name\s+ist|\bsono|\bmi\s+chiamo|\beu\s+sou|\bmeu\s+nome\s+\u00e9)"
    r"\s+", re.IGNORECASE)
# Words that may stand between "I am" and a name without changing who is named ("I am a large language
# model called X", "I'm an AI from X"). Anything else (not, like, than, behind, comma) breaks the claim,
# which is how comparisons and negations pass. \x00 stands for another foreign name ("I'm Meta's Llama").
_FILLER = (r"a|an|the|actually|really|just|simply|basically|indeed|truly|officially|called|named|known|as|"
           r"model|models|language|large|llm|ai|artificial|intelligence|assistant|chatbot|bot|chat|version|"
           r"variant|of|based|on|from|by|at|built|made|created|developed|trained|designed|programmed|"
           r"fine-?tuned|small|smaller|tiny|little|compact|helpful|friendly|open|source|open-source|instance|"
           r"part|one|member|powered|running|team|company|un|une|una|uno|modelo|mod\u00e8le|modello|ein|eine|"
           r"einer|ia|ki|assistent|asistente|assistente|de|del|von|du|la|le|el|il|lo|di|da|basado|bas\u00e9|"
           r"basiert|auf|sur|en|\x00+(?:'s)?")
_MID = rf"(?:(?:{_FILLER})[\s-]+){{0,8}}"
_SELF_CLAIM = re.compile(rf"(?<![\w']){_MID}$", re.IGNORECASE)
_NEGATED_BEFORE = re.compile(r"(?:\bno|\bnot|\bnever|n't|\bnicht|\bne|\bnon|\bn\u00e3o)\s+$", re.IGNORECASE)
# "made by X": the maker named after a verb of making (English, French, Spanish, Italian, Portuguese, German)
_AGENT = re.compile(
    r"(?:\b(?:created|made|built|developed|trained|designed|programmed|engineered|owned|released|produced|"
    r"fine-?tuned|powered|maintained|funded|invented)\s+(?:by|at)"
    r"|\b(?:cr\u00e9\u00e9e?|d\u00e9velopp\u00e9e?|entra\u00een\u00e9e?|con\u00e7ue?|fait)\s+par"
    r"|\b(?:creado|creada|desarrollado|entrenado|hecho|dise\u00f1ado)\s+por"
    r"|\b(?:creato|sviluppato|addestrato)\s+da|\b(?:criado|desenvolvido|treinado)\s+pel[oa]"
    r"|\b(?:entwickelt|erstellt|trainiert|gebaut|gemacht|programmiert)\s+von)"
    r"\s+(?:the\s+|la\s+|el\s+|le\s+|l')?(?:(?:team|folks|people|engineers|researchers|developers|company|"
    r"equipo|\u00e9quipe)\s+(?:at|from|of|de|von)\s+)?(?:\x00+(?:'s)?\s+)?$", re.IGNORECASE)
_GERMAN_AGENT_AFTER = re.compile(r"^\s*(?:entwickelt|erstellt|trainiert|gebaut|gemacht|programmiert)\b", re.IGNORECASE)
_GERMAN_VON = re.compile(r"\bvon\s+$", re.IGNORECASE)
_MAKER_VERB_AFTER = re.compile(r"^\s*(?:'s\s+\w+\s+)?(?:created|made|built|developed|trained|designed|programmed)\s+me\b",
                               re.IGNORECASE)
_AS_CLAIM = re.compile(rf"^\s*(?:well,?\s+|speaking\s+)?as\s+{_MID}$", re.IGNORECASE)
_AS_AFTER = re.compile(rf"^(?:'s)?(?:[\s-]+(?:{_FILLER})){{0,4}}\s*,", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|me|my|myself|je|j'|moi|yo|soy|fui|ich|mich|mir|bin|eu|sou|io|sono)\b",
                           re.IGNORECASE)
_NOT_SELF = re.compile(r"\b(?:it|he|she|they|them|its|their|his|her|unlike|like|than|compared|versus|vs|similar|"
                       r"other|others)\b", re.IGNORECASE)
_NEGATION_NEAR = re.compile(r"(?:\bno|\bnot|\bnever|n't|\bneither|\bnor|\bnicht|\bnon|\bpas|\bnunca)\b[\w\s']{0,20}$",
                            re.IGNORECASE)
# a sentence with no subject before the verb: "Created by X.", "nanochat, a model trained by X"
_SUBJECTLESS = re.compile(rf"^\s*(?:{_MID})?(?:[\w-]+,?\s+)?(?:{_MID})?$", re.IGNORECASE)


def _sentence_start(text: str, pos: int) -> int:
    starts = [m.end() for m in STATEMENT_END.finditer(text, 0, pos)]
    return starts[-1] if starts else 0


def foreign_identity_claims(text: str, data: IdentityData | None = None) -> list[str]:
    """The foreign identities `text` claims as its own, in order of first claim, each once.

    A claim: "I am X" / "I'm X" / "my name is X" / "call me X" (a few filler words may stand between:
    "I'm a language model called X"), "created/made/built/developed/trained by X" said of itself,
    "X made me", a sentence opening "As X, ...", and the same in French, Spanish, German, Italian and
    Portuguese. Negations and comparisons are not claims: "I'm not ChatGPT", "I am nanochat, not
    Claude", "far behind GPT-4", "unlike ChatGPT, which was made by OpenAI".
    """
    if not isinstance(text, str) or not text:
        return []
    data = data or default_data()
    text = text.replace("\u2019", "'")
    # only the patterns whose screen the text passes: most replies name nobody, and a few substring tests
    # say so where all the patterns cost ~50 us per reply (validation runs this on every one)
    names, screen = data.foreign_screen
    found: list[tuple[int, int, str]] = []
    for i in screen.candidates(text):
        found += [(m.start(), m.end(), names[i]) for m in screen.patterns[i].finditer(text) if m.end() > m.start()]
    if not found:
        return []
    found.sort()
    # every name shown as \x00s, so "I'm Meta's Llama" reads as filler before the name
    masked = list(text)
    for start, end, _ in found:
        masked[start:end] = "\x00" * (end - start)
    masked_text = "".join(masked)

    claimed: list[str] = []
    unclaimed: list[int] = []  # where names that were only mentioned start: a subject that is not "I"
    for start, end, name in found:
        sentence = _sentence_start(text, start)
        others = [s - sentence for s in unclaimed if s >= sentence]
        if _is_claim(masked_text[sentence:start], masked_text[end:], others):
            if name not in claimed:
                claimed.append(name)
        else:
            unclaimed.append(start)
    return claimed


def _is_claim(before: str, after: str, mentioned_before: list[int]) -> bool:
    """Is the name between `before` (its sentence so far) and `after` claimed? `mentioned_before`: where
    names that were not claimed start in `before` ("unlike ChatGPT, which was made by X": X is ChatGPT's)."""
    filler = _SELF_CLAIM.search(before)
    if filler is not None:
        head = before[:filler.start()]
        subject = _ends_with_self(head)
        if subject is not None and not _NEGATED_BEFORE.search(head[:subject]):
            return True
    if _AS_CLAIM.search(before) and _AS_AFTER.match(after):
        return True
    agent = _AGENT.search(before)
    if agent is None and _GERMAN_AGENT_AFTER.match(after):
        agent = _GERMAN_VON.search(before)
    if agent is not None:
        lead = before[:agent.start()]
        if _NEGATION_NEAR.search(lead) or _NOT_SELF.search(lead) or any(s < agent.start() for s in mentioned_before):
            return False
        return bool(_FIRST_PERSON.search(lead)) or _SUBJECTLESS.match(lead) is not None
    if _MAKER_VERB_AFTER.match(after):
        return not _NEGATION_NEAR.search(before)
    return False


def _ends_with_self(head: str) -> int | None:
    """Where the first-person subject that ends `head` starts ("... I am " -> the index of "I"), or None."""
    for m in _SELF.finditer(head):
        if m.end() == len(head):
            return m.start()
    return None


# ---------------------------------------------------------------- asserted, denied, contradicted

# A clause ends at punctuation, a dash between words, or a turn of contrast: "Not ChatGPT, no: I'm nanochat."
_CLAUSE_END = re.compile(r"[.!?;:,()\n\"]|\s[-\u2013\u2014]+\s|[\u2013\u2014]|\b(?:but|however|though|although|yet|instead)\b",
                         re.IGNORECASE)
_NEGATORS = (r"not|no|never|nor|neither|cannot|nobody|ne|pas|nicht|kein\w*|non|nunca|jamais|n\u00e3o|nada|nie")
# a negator at most three words before the mention, in its clause: "not under the MIT license", "I'm not nanochat"
# ("non-profit" and "no-nonsense" negate nothing)
_NEG_BEFORE = re.compile(rf"(?:\b(?:{_NEGATORS})\b(?!-)|n't\b|\bn')(?:[\s'-]+[\w'-]+){{0,3}}[\s'-]*$", re.IGNORECASE)
# "Karpathy did not build me", "nanochat is not my name": a denial right after the mention
_NEG_AFTER = re.compile(
    r"^[\s']*(?:(?:did|does|do|is|was|were|are|has|have|had|could|would|can|will)(?:n't|\s+not|\s+never)|never)\s+"
    r"(?:\w+\s+)?(?:build|built|make|made|create|created|train|trained|develop|developed|design|designed|write|wrote|"
    r"program|programmed|me|my|who|what|behind|involved|responsible)\b", re.IGNORECASE)
# Negators that negate nothing around them
_IDIOMS = re.compile(r"\b(?:no\s+doubt|not\s+only|not\s+just|no\s+matter|no\s+problem|no\s+worries|"
                     r"never\s+mind|nothing\s+but)\b", re.IGNORECASE)


def _clause(text: str, start: int, end: int) -> tuple[str, str]:
    """The mention's clause: the text before it and after it, up to the clause's ends."""
    begin = max((m.end() for m in _CLAUSE_END.finditer(text, 0, start)), default=0)
    stop = _CLAUSE_END.search(text, end)
    return text[begin:start], text[end:stop.start() if stop else len(text)]


def is_negated(text: str, start: int, end: int) -> bool:
    """Does a negation govern text[start:end]? A negator up to three words before it in its clause, or a
    denial right after it ("... did not build me")."""
    before, after = _clause(text, start, end)
    return bool(_NEG_BEFORE.search(_IDIOMS.sub(" ", before)) or _NEG_AFTER.match(after))


def _mentions(text: str, patterns: tuple[re.Pattern, ...]) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for p in patterns for m in p.finditer(text) if m.end() > m.start()]


def _normal(text: str) -> str:
    return text.replace("\u2019", "'") if isinstance(text, str) else ""


def denied_facts(answer: str, data: IdentityData | None = None) -> list[str]:
    """Facts (of every fact in the data, limits aside) some mention of which is negated."""
    data, text = data or default_data(), _normal(answer)
    return [f.id for f in data.facts.values()
            if not f.limit and any(is_negated(text, s, e) for s, e in _mentions(text, f.patterns))]


def contradictions(answer: str, data: IdentityData | None = None) -> list[str]:
    """Ids of the contradictions of the knowledge base `answer` asserts (a negated one, "it is not
    proprietary", does not count), in the data's order."""
    data, text = data or default_data(), _normal(answer)
    return [c.id for c in data.contradictions
            if any(not is_negated(text, s, e) for s, e in _mentions(text, c.patterns))]


def fact_verdict(answer: str, fact_ids: tuple[str, ...] | list[str] = (), data: IdentityData | None = None) -> dict:
    """Everything the scorer (and a generation verifier) needs to know about one answer:

    - `stated`: fact id -> asserted, for the facts asked (mentioned, no mention negated, not contradicted);
    - `mentioned`: fact id -> the fact's words are there (the scoring before negation and contradictions);
    - `denied`: facts of the whole knowledge base the answer negates ("I'm not nanochat");
    - `contradicted`: contradiction id -> the facts it fails ("trained ... in 2019" -> creator);
    - `foreign`: foreign identities claimed;
    - `ok`: every asked fact stated, nothing denied or contradicted, nothing foreign claimed.
    """
    data = data or default_data()
    text = _normal(answer)
    unknown = [f for f in fact_ids if f not in data.facts]
    if unknown:
        raise ValueError(f"unknown fact id(s) {', '.join(map(str, unknown))} (facts: {', '.join(data.facts)})")
    denied = denied_facts(text, data)
    contradicted = {c.id: list(c.fails) for c in data.contradictions if c.id in contradictions(text, data)}
    failed = set(denied) | {f for fails in contradicted.values() for f in fails}
    mentioned = {f: data.facts[f].stated_in(text) for f in fact_ids}
    stated = {f: mentioned[f] and f not in failed for f in fact_ids}
    foreign = foreign_identity_claims(text, data)
    return {"stated": stated, "mentioned": mentioned, "denied": denied, "contradicted": contradicted,
            "foreign": foreign, "ok": all(stated.values()) and not denied and not contradicted and not foreign}


def verdict_reasons(answer: str, fact_ids: tuple[str, ...] | list[str] = (), data: IdentityData | None = None) -> list[str]:
    """`fact_verdict` in words, one line per asked fact and per other finding: why a fact is or is not stated
    ("creator: not stated: its words are there, but the answer contradicts the knowledge base (other_year:
    Andrej Karpathy built it in 2025; the answer: 'I was created in 2019')")."""
    data = data or default_data()
    verdict, text = fact_verdict(answer, fact_ids, data), _normal(answer)
    says = {c.id: c for c in data.contradictions}

    def quoted(patterns) -> str:
        spans = [(s, e) for s, e in _mentions(text, patterns) if not is_negated(text, s, e)] or _mentions(text, patterns)
        return repr(text[spans[0][0]:spans[0][1]]) if spans else "?"

    against = {f: [c for c, fails in verdict["contradicted"].items() if f in fails] for f in fact_ids}
    lines = []
    for f in fact_ids:
        if verdict["stated"][f]:
            lines.append(f"{f}: stated")
        elif not verdict["mentioned"][f]:
            lines.append(f"{f}: not stated: none of its patterns is in the answer (the knowledge base: {data.facts[f].says})")
        elif f in verdict["denied"]:
            lines.append(f"{f}: not stated: the answer negates it")
        else:
            lines.append(f"{f}: not stated: its words are there, but the answer contradicts the knowledge base ("
                         + "; ".join(f"{c}: {says[c].says}; the answer: {quoted(says[c].patterns)}" for c in against[f]) + ")")
    lines += [f"denied: {f}" for f in verdict["denied"] if f not in fact_ids]
    lines += [f"contradicts: {c} ({says[c].says}; the answer: {quoted(says[c].patterns)})"
              for c in verdict["contradicted"] if not any(c in v for v in against.values())]
    lines += [f"claims a foreign identity: {name}" for name in verdict["foreign"]]
    return lines


# ---------------------------------------------------------------- scoring

# The checks a probe's answer must also pass besides naming its facts, as `identity eval` reports them.
NEW_CHECKS = ("negation", "contradiction")


def facts_stated(answer: str, fact_ids: tuple[str, ...] | list[str], data: IdentityData | None = None) -> dict[str, bool]:
    """For each fact id, whether `answer` asserts it (see `fact_verdict`)."""
    return fact_verdict(answer, fact_ids, data)["stated"]


def score_answer(probe: Probe, answer: str, data: IdentityData | None = None) -> dict:
    """One answer scored: `facts` (fact id -> asserted), `foreign` (identities claimed), `denied`,
    `contradicted`, `pass` (`fact_verdict`'s ok), and the scoring before the negation and contradiction
    checks: `mentioned` (fact id -> its words are there), `pass_mentioned`, and `flipped_by` (the new
    checks that turned this answer from pass to fail)."""
    verdict = fact_verdict(answer, probe.checks, data)
    pass_mentioned = all(verdict["mentioned"].values()) and not verdict["foreign"]
    flipped_by = [] if verdict["ok"] or not pass_mentioned else [
        check for check, hit in zip(NEW_CHECKS, (verdict["denied"], verdict["contradicted"])) if hit]
    return {"facts": verdict["stated"], "foreign": verdict["foreign"], "denied": verdict["denied"],
            "contradicted": sorted(verdict["contradicted"]), "pass": verdict["ok"],
            "mentioned": verdict["mentioned"], "pass_mentioned": pass_mentioned, "flipped_by": flipped_by}


KNOWLEDGE_PROMPT = ("You are the assistant described below. Answer questions about yourself from these "
                    "facts only.\n\n{knowledge}")


def knowledge_prompt(knowledge: str) -> str:
    """A knowledge base's text as a system prompt: what the distill recipe's teacher is told, and the
    "told every fact" row of an identity evaluation (one wording, so the two are comparable)."""
    return KNOWLEDGE_PROMPT.format(knowledge=knowledge.strip())


def knowledge_system_prompt(knowledge_dir: str | Path | None = None) -> str:
    """`knowledge_prompt` of knowledge/self_knowledge.md (or of `knowledge_dir`'s)."""
    folder = Path(knowledge_dir) if knowledge_dir is not None else paths.knowledge_dir()
    return knowledge_prompt(paths.read_utf8(folder / "self_knowledge.md"))
