"""Recipe "distill": identity conversations a 135M model can write, one verified answer at a time.

Recipe v2 asks a model for a whole multi-turn conversation as JSON from a long prompt; the embedded
SmolLM2-135M cannot do that. It can answer one user message when it is told the facts. So here the kit
plans the conversation as data and the model only answers:

- the user's turns are composed from `knowledge/distill.yaml` and the diversity grid: the opener drawn
  for the item, then a question about the item's topic, then follow-ups of its topic category, for as
  many rounds as the sampled dynamic asks (meta `user_turns: "composed"`);
- each assistant turn is sampled `candidates` times with the knowledge base as the system prompt and
  the conversation so far; with `opener="planned"` each answer is opened with a sentence stating the
  turn's first required fact (from `fact_openers`), which the model continues in its own words;
- every candidate goes through `verify`: the content rules of kit.rules, grounding (every
  capitalised name and every number also appears in the knowledge base or the user's words), the facts
  the turn must state (kit.facts.fact_verdict: asserted; no fact denied, nothing contradicting the knowledge
  base, no foreign identity claimed), every sentence supported (kit.truth: no invented capability,
  person, year..., no contradiction, no flattery, nothing said again from an earlier turn), and one of the
  topic's words. The best passing candidate is kept (`score`); a turn with none rejects the item
  with every candidate's reasons;
- the user's turns must pass the same rules a reader applies to the kept data (notebook 03, `kit validate`):
  a greeting-only opener that the rules flag on its own ("YO!!!" is mostly symbols) is put in front of the
  question like any other opener, never sent alone (`DistillData.standalone_greetings`), and
  `composable_user_turns` lists every user turn the plan can compose so a test checks them all. A user turn
  of a custom plan that the rules still call degenerate rejects the item before anything is asked;
- the record has no system prompt: the knowledge is what a student trained on it must learn (context
  distillation with rejection sampling). Its meta keeps every candidate's verdict and the chosen score.

A candidate is cut to its longest passing run of sentences; one whose only faults are its own unsupported
sentences may be cut back to the planned opening alone. What was cut, and why, is kept in the turn's meta
(`cut`, `dropped`, `model_sentences`), and the funnel counts those turns. Each candidate's text as the model wrote
it (`written`) and the checks it failed before any cut (`as_written`) are kept too, so the funnel can say how many
candidates passed as written and not only what was kept of them (`as_written_counts`).

The funnel (candidates sampled -> passed each check -> kept, turns trimmed, turns kept as the opening alone)
is computed from the journal by `funnel`.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit import paths
from kit.facts import default_data, fact_verdict, facts_stated, knowledge_prompt
from kit.generation.sampling import Dimensions, item_rng
from kit.rules import RULES_FILE, Rules, dynamic_message_count, errors, load_rules, validate_messages
from kit.truth import check_conversation, split_sentences, ungrounded

OPENERS = ("planned", "sampled")
DEFAULT_CANDIDATES = 4
DEFAULT_TURN_TOKENS = 48
# the model's sentences kept after a planned opening at most: read, the third sentence of a 135M model is
# mostly drift ("He created a custom accelerator ..."), and a student learns whatever it is shown
MAX_SENTENCES = 2
DISTILL_FILE = "distill.yaml"
# the checks in the order the funnel reports them; a candidate is counted under the first it fails
CHECKS = ("finished", "content rules", "grounded", "facts", "supported", "on topic")
# a candidate failing only these (an invented name or number, an unsupported sentence of the model's) may be cut
# back to its planned opening alone
TRIMMABLE = frozenset({"grounded", "supported"})


@dataclass(frozen=True)
class TopicPlan:
    facts: tuple[str, ...]
    mention: tuple[re.Pattern, ...]
    asks: tuple[str, ...]
    says: str | None  # the planned opening of an answer on a topic with no fact of facts.yaml


@dataclass(frozen=True)
class FollowUp:
    ask: str
    facts: tuple[str, ...]
    says: str | None


@dataclass(frozen=True)
class DistillData:
    """knowledge/distill.yaml, checked against the topics, opener styles and facts it refers to."""

    topics: dict[str, TopicPlan]
    follow_ups: dict[str, tuple[FollowUp, ...]]
    greeting_only_styles: frozenset[str]
    fact_openers: dict[str, tuple[str, ...]]
    # the openers of greeting_only_styles that the rules pass as a whole user turn; the rest lead the question
    standalone_greetings: frozenset[str]


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def _patterns(where: str, value: Any) -> tuple[re.Pattern, ...]:
    try:
        return tuple(re.compile(p, re.IGNORECASE) for p in _strings(where, value))
    except re.error as exc:
        raise ValueError(f"{where}: not a regular expression: {exc}") from None


def _fact_ids(where: str, value: Any, known: set[str]) -> tuple[str, ...]:
    ids = _strings(where, value) if value else ()
    if unknown := [f for f in ids if f not in known]:
        raise ValueError(f"{where}: unknown fact {unknown[0]!r} (facts: {', '.join(sorted(known))})")
    return ids


def _what_to_state(where: str, entry: dict, known: set[str]) -> tuple[tuple[str, ...], str | None]:
    """(facts, says) of a topic or follow-up: the facts its answer must state, or else the sentence it opens with."""
    facts = _fact_ids(f"{where}.facts", entry.get("facts"), known)
    says = _strings(f"{where}.says", [entry["says"]])[0] if "says" in entry else None
    if not facts and not says:
        raise ValueError(f"{where}: needs facts or says: what its answer must state")
    return facts, says


def _follow_ups(where: str, entries: Any, known: set[str]) -> tuple[FollowUp, ...]:
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: expected a non-empty list")
    parsed = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{where}[{i}]: expected {{ask, facts}} or {{ask, says}}")
        facts, says = _what_to_state(f"{where}[{i}]", entry, known)
        parsed.append(FollowUp(_strings(f"{where}[{i}].ask", [entry.get("ask")])[0], facts, says))
    return tuple(parsed)


def user_turn_problems(text: str, rules: Rules) -> list[str]:
    """What the rules (content rules and the ascii warning, at recipe distill's severities) find in one
    composed user turn, as `kit validate` reports it on the kept conversation; empty when it passes."""
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "Hello, I'm nanochat."}]
    return [p.message for p in validate_messages(messages, rules=rules, meta={"recipe": "distill"}) if p.index == 0]


def _load(path: Path, dims: Dimensions, rules: Rules) -> DistillData:
    data = paths.read_yaml(path, "the distill recipe's plan")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    known = set(default_data().facts)
    topics = {}
    for name, entry in (data.get("topics") or {}).items():
        where = f"{path}: topics.{name}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with facts, mention and asks")
        facts, says = _what_to_state(where, entry, known)
        topics[name] = TopicPlan(facts, _patterns(f"{where}.mention", entry.get("mention")),
                                 _strings(f"{where}.asks", entry.get("asks")), says)
    wanted = {t for ts in dims.topics.values() for t in ts}
    if missing := sorted(wanted - set(topics)):
        raise ValueError(f"{path}: no plan for topic {missing[0]!r} of topics.yaml")
    follow_ups = {category: _follow_ups(f"{path}: follow_ups.{category}",
                                        (data.get("follow_ups") or {}).get(category), known)
                  for category in dims.topics}
    styles = frozenset(_strings(f"{path}: greeting_only_styles", data.get("greeting_only_styles") or []) or ())
    if unknown := sorted(styles - set(dims.first_messages)):
        raise ValueError(f"{path}: greeting_only_styles: unknown opener style {unknown[0]!r}")
    openers = {fact: _strings(f"{path}: fact_openers.{fact}", sentences)
               for fact, sentences in (data.get("fact_openers") or {}).items()}
    if unknown := sorted(set(openers) - known):
        raise ValueError(f"{path}: fact_openers: unknown fact {unknown[0]!r}")
    standalone = frozenset(o for style in styles for o in dims.first_messages[style] if not user_turn_problems(o, rules))
    return DistillData(topics, follow_ups, styles, openers, standalone)


def load_distill_data(dims: Dimensions, knowledge_dir: str | Path | None = None, rules: Rules | None = None) -> DistillData:
    """The plan file of `knowledge_dir` (default knowledge/), checked against `dims`; a bad entry names itself.
    `rules` (default: the folder's quality_rules.yaml) decide which greetings may stand alone as a user turn."""
    folder = Path(knowledge_dir) if knowledge_dir is not None else paths.knowledge_dir()
    if rules is None:
        rules = load_rules(folder / RULES_FILE if (folder / RULES_FILE).exists() else None)
    return _load((folder / DISTILL_FILE).resolve(), dims, rules)


# ---- the plan of one conversation ------------------------------------------------------------------


def rounds_for(dynamic: str | None, rng: random.Random) -> int:
    """Rounds the dynamic asks for ("4 messages": 2); a dynamic naming no count gets one or two."""
    wanted = dynamic_message_count(dynamic)
    return wanted // 2 if wanted else rng.choice((1, 2))


def _joined(opener: str, ask: str) -> str:
    """An opener put in front of a question: "hey nanochat! Who made you?"."""
    return f"{opener}{'' if opener[-1] in '.!?,' else '!'} {ask}" if opener else ask


def composable_user_turns(data: DistillData, dims: Dimensions) -> set[str]:
    """Every user turn `plan_turns` can compose from `data`: any opener alone (a greeting that may stand
    alone) or in front of any question of any topic, and every follow-up. The topic and the opener are drawn
    independently, so every pairing can occur."""
    asks = {a for topic in data.topics.values() for a in topic.asks}
    turns = {f.ask for follow in data.follow_ups.values() for f in follow}
    for style, openers in dims.first_messages.items():
        for opener in openers:
            turns.update(_joined(opener, ask) for ask in asks)
            if style in data.greeting_only_styles and opener in data.standalone_greetings:
                turns.add(opener)
                turns.update(asks)
    return turns


def plan_turns(elements: dict, data: DistillData) -> list[dict]:
    """The user turns of item `elements` with what each answer must do: [{user, facts, mention, opener}].

    Drawn from the item's own random stream (after the elements), so an index always plans the same
    conversation. The first answer must say the assistant's name: the user greeted it."""
    rng = item_rng(elements["seed"], elements["index"])
    rng.random()  # a stream apart from the elements' draws
    rng = random.Random(rng.random())
    topic = data.topics[elements["topic"]]
    rounds = rounds_for(elements.get("dynamic"), rng)
    opener, style = elements["first_message_examples"][0], elements["first_message_categories"][0]
    ask = rng.choice(topic.asks)
    mention = [p.pattern for p in topic.mention]
    turns: list[dict] = []
    if style in data.greeting_only_styles and opener in data.standalone_greetings and rounds > 1:
        turns.append({"user": opener, "facts": ["name"], "mention": [], "says": None})
        turns.append({"user": ask, "facts": list(topic.facts), "mention": mention, "says": topic.says})
    else:
        turns.append({"user": _joined(opener, ask), "facts": list(dict.fromkeys(["name", *topic.facts])), "mention": mention,
                      "says": topic.says})
    follow_ups = list(data.follow_ups[elements["topic_category"]])
    rng.shuffle(follow_ups)
    for follow in follow_ups[:max(0, rounds - len(turns))]:
        turns.append({"user": follow.ask, "facts": list(follow.facts), "mention": [], "says": follow.says})
    for turn in turns:
        said: list[str] = []
        for fact in turn["facts"]:
            sentence = rng.choice(data.fact_openers[fact]) if fact in data.fact_openers else None
            # an introduction that names the creator makes the creator's own sentence redundant (other facts'
            # patterns are too loose for this: "a small chat assistant" would count as stating the limits)
            if sentence and not (fact == "creator" and facts_stated(" ".join(said), [fact])[fact]):
                said.append(sentence)
        turn["opener"] = " ".join(said + [turn.pop("says")] if turn["says"] else said) or None
    return turns


# ---- checking one candidate ------------------------------------------------------------------------


@dataclass
class Verdict:
    text: str
    failed: dict[str, list[str]]  # check -> reasons, in CHECKS order; empty when the candidate passes
    score: float
    dropped: int  # sentences cut from the end of the model's text to pass (0: kept whole)
    # what was cut and why, so nothing is lost silently: {"sentences": [...], "why": {check: reasons}}
    cut: dict | None = None
    kept_sentences: int = 0  # the model's sentences kept after the planned opening (0: the opening alone)
    # the checks the candidate fails as the model wrote it, before any cut: the planned opening and every full
    # sentence the model wrote (an unfinished last sentence at the token limit aside: the limit cut it, not a check)
    as_written: dict[str, list[str]] | None = None

    @property
    def passed(self) -> bool:
        return not self.failed


def score(text: str) -> float:
    """Best of K: the facts the answer states (every fact of facts.yaml counts, asked or not), plus up to
    one point for a length between 12 and 60 words (a short answer teaches less, a long one rambles)."""
    words = len(text.split())
    length = 1.0 if 12 <= words <= 60 else max(0.0, 1 - abs(words - (12 if words < 12 else 60)) / 30)
    return sum(facts_stated(text, list(default_data().facts)).values()) + length


def _failures(text: str, turn: dict, history: list[dict], rules: Rules, knowledge: str, meta: dict,
              prefix: str | None = None) -> dict:
    failed: dict[str, list[str]] = {}
    messages = history + [{"role": "assistant", "content": text}]
    problems = [p for p in errors(validate_messages(messages, rules=rules, meta=meta))
                if p.index in (len(messages) - 1, None) and p.rule != "shape"]
    if problems:
        failed["content rules"] = [p.message for p in problems]
    sources = " ".join(m["content"] for m in history if m["role"] == "user")
    if invented := ungrounded(text, sources, knowledge):
        failed["grounded"] = [f"not in the knowledge base or the question: {', '.join(invented[:5])}"]
    verdict = fact_verdict(text, turn["facts"])
    facts = [f"does not state {f}" for f, ok in verdict["stated"].items() if not ok and f not in verdict["denied"]]
    facts += [f"denies {f}" for f in verdict["denied"]]
    facts += [f"contradicts the knowledge base ({c})" for c in verdict["contradicted"]]
    facts += [f"claims a foreign identity: {name}" for name in verdict["foreign"]]
    if facts:
        failed["facts"] = facts
    # the model's own sentences, held to generation's bar; the planned opening is the plan's (true by
    # construction, tests/test_truth.py) and supports the words the model continues it with
    said = text[len(prefix):].strip() if prefix and text.startswith(prefix) else text
    checked = history + [{"role": "assistant", "content": said}]
    if untrue := [v for i, v in check_conversation(checked, knowledge=knowledge, strict=True, sources=prefix or "")
                  if i == len(checked) - 1 and not v.kept]:
        failed["supported"] = [f"{v.verdict}: {v.sentence!r}, {v.reason}" for v in untrue]
    if turn["mention"] and not any(re.search(p, text, re.IGNORECASE) for p in turn["mention"]):
        failed["on topic"] = ["uses none of the topic's words"]
    return {check: failed[check] for check in CHECKS if check in failed}


def verify(reply: str, finish_reason: str | None, turn: dict, history: list[dict], *, rules: Rules,
           knowledge: str, meta: dict, prefix: str | None = None) -> Verdict:
    """Every check of one candidate answer to `turn` after `history` (the conversation so far, ending
    with the user's turn); `prefix` is the planned opening the model continued. Never raises on what a
    model wrote.

    A small model's first sentences are its best: it drifts and invents as it goes on. So the answer is
    the longest run of the model's first `MAX_SENTENCES` full sentences that passes every check, sentences
    cut from the end counted in `dropped` and kept with why in `cut`; a reply cut at the token limit loses
    its unfinished sentence. The run is at least one sentence, or none after a planned opening when the whole
    candidate's only faults are its own unsupported sentences (checks `TRIMMABLE`): the opening states the
    turn's facts and is a whole answer, and what the model added is not kept because it is not true."""
    said, tail = split_sentences((reply or "").strip())
    if tail and finish_reason != "length":
        said.append(tail)  # a finished reply's last words, even without a full stop (the rule cut_off judges them)
    written = said
    beyond = max(0, len(said) - MAX_SENTENCES)
    said = said[:MAX_SENTENCES]
    join = lambda n: " ".join(([prefix] if prefix else []) + said[:n])
    if not said:
        unfinished = {"finished": ["no full sentence before the token limit"]}
        return Verdict(join(0), unfinished, 0.0, 0, as_written=unfinished)
    as_written = (_failures(" ".join(([prefix] if prefix else []) + written), turn, history, rules, knowledge, meta, prefix)
                  if beyond else None)  # without sentences beyond the first MAX_SENTENCES, the loop's first try
    first_failure = None
    for n in range(len(said), -1, -1):
        if n == 0 and not (prefix and first_failure and set(first_failure) <= TRIMMABLE):
            break
        failed = _failures(join(n), turn, history, rules, knowledge, meta, prefix)
        if as_written is None:
            as_written = failed
        if not failed:
            cut = None
            if n < len(said) or beyond:
                cut = {"sentences": said[n:] + ([f"({beyond} more after the first {MAX_SENTENCES})"] if beyond else []),
                       "why": first_failure or {"length": [f"only the first {MAX_SENTENCES} sentences are kept"]}}
            return Verdict(join(n), {}, score(join(n)), len(said) - n + beyond, cut, n, as_written)
        first_failure = first_failure or failed
    return Verdict(join(len(said)), first_failure, 0.0, 0, None, len(said), as_written)


# ---- the funnel ------------------------------------------------------------------------------------


def funnel(entries: list[dict]) -> list[dict]:
    """Per topic category (and 'all'): candidates sampled, passing each check in turn, turns and items
    kept. `entries` are journal entries (kit.generation.journal.journal_entries)."""
    rows: dict[str, Counter] = {}
    for entry in entries:
        meta = entry["record"]["meta"] if entry["status"] == "accepted" else entry["reject"].get("meta", {})
        turns = meta.get("turns") or []
        if not turns:  # an API error before the first answer: nothing was sampled
            continue
        for key in (meta.get("topic_category") or "?", "all"):
            row = rows.setdefault(key, Counter())
            row["items"] += 1
            row["kept"] += entry["status"] == "accepted"
            for turn in turns:
                row["turns"] += 1
                row["turns kept"] += turn.get("chosen") is not None
                row["turns trimmed"] += turn.get("chosen") is not None and bool(turn.get("dropped"))
                row["turns opening only"] += turn.get("chosen") is not None and turn.get("model_sentences") == 0
                for verdict in turn["verdicts"]:
                    row["sampled"] += 1
                    first = next(iter(verdict), None)
                    for check in CHECKS:
                        if first == check:
                            break
                        row[f"passed: {check}"] += 1
    table = []
    for key in sorted(rows, key=lambda k: (k == "all", k)):
        row = rows[key]
        table.append({"category": key, "items": row["items"], "sampled": row["sampled"],
                      **{f"passed: {c}": row[f"passed: {c}"] for c in CHECKS},
                      "turns kept": row["turns kept"], "turns trimmed": row["turns trimmed"],
                      "turns opening only": row["turns opening only"], "turns": row["turns"], "kept": row["kept"],
                      "yield per candidate": round(row["turns kept"] / row["sampled"], 3) if row["sampled"] else 0.0})
    return table


def check_counts(entries: list[dict]) -> dict[str, dict[str, int]]:
    """Per check, three counts that are easy to confuse: `stopped` (candidates the funnel loses at it: it was
    the first check they failed), `failed` (candidates that failed it at all, first or after an earlier one)
    and `items` (rejected items whose reasons name it: the summary's reject_reasons, where an item counts under
    every check any candidate of its failing turn failed). `entries` as for `funnel`."""
    counts = {check: Counter() for check in CHECKS}
    for entry in entries:
        meta = entry["record"]["meta"] if entry["status"] == "accepted" else entry["reject"].get("meta", {})
        for turn in meta.get("turns") or []:
            for verdict in turn["verdicts"]:
                for k, check in enumerate(c for c in CHECKS if c in verdict):
                    counts[check]["failed"] += 1
                    counts[check]["stopped"] += k == 0
        if entry["status"] == "rejected":
            for check in set(entry["reject"].get("rules") or ()) & set(CHECKS):
                counts[check]["items"] += 1
    return {check: {k: c[k] for k in ("stopped", "failed", "items")} for check, c in counts.items()}


def as_written_counts(entries: list[dict]) -> dict:
    """The candidates checked as the model wrote them, before the verifier cut them (turn meta `as_written`):
    {"sampled": candidates with that verdict recorded, "passed": those passing every check uncut,
    "failed": {check: candidates failing it uncut}}. A journal written before `as_written` was recorded
    counts 0 sampled. `entries` as for `funnel`."""
    sampled = passed = 0
    failed = Counter()
    for entry in entries:
        meta = entry["record"]["meta"] if entry["status"] == "accepted" else entry["reject"].get("meta", {})
        for turn in meta.get("turns") or []:
            for checks in turn.get("as_written") or []:
                sampled += 1
                passed += not checks
                failed.update(checks)
    return {"sampled": sampled, "passed": passed, "failed": {check: failed[check] for check in CHECKS}}


# ---- one item --------------------------------------------------------------------------------------


def choose(verdicts: list[Verdict]) -> int | None:
    """The passing candidate with the highest score (the lowest index among equals), or None."""
    passing = [j for j, v in enumerate(verdicts) if v.passed]
    return max(passing, key=lambda j: (verdicts[j].score, -j)) if passing else None


@dataclass
class Outcome:
    """What one item came to: the conversation when every turn kept an answer, else the turn that kept none."""

    messages: list[dict] | None
    turns: list[dict]  # per answered turn: the plan, every candidate's failed checks, the chosen one
    reasons: list[str]  # why the failing turn's candidates failed, one line per candidate
    rules: list[str]  # the checks they failed
    raw: list[str]  # the failing turn's candidate texts
    usage: Counter
    source: dict


async def converse(complete, elements: dict, data: DistillData, *, candidates: int, opener: str, rules: Rules,
                   knowledge: str) -> Outcome:
    """Write the planned conversation turn by turn. `complete(messages, turn, candidate)` is the caller's
    request (it raises on API errors): a Completion with text, finish_reason and token counts.
    `knowledge` is the knowledge base's text: the teacher's system prompt and what answers are grounded in."""
    if opener not in OPENERS:
        raise ValueError(f"unknown opener {opener!r}; choose one of {', '.join(OPENERS)}")
    system = knowledge_prompt(knowledge)
    history: list[dict] = []
    turns_meta: list[dict] = []
    usage: Counter = Counter()
    source: dict = {"model": None, "endpoint": None}
    for t, turn in enumerate(plan_turns(elements, data)):
        history.append({"role": "user", "content": turn["user"]})
        # a custom plan's own words must pass the rules a reader applies to the kept conversation (notebook 03)
        if degenerate := [p.message for p in errors(validate_messages(history, rules=rules, meta=elements))
                          if p.index == len(history) - 1 and p.rule == "degenerate"]:
            return Outcome(None, turns_meta, [f"turn {t + 1}, the planned user turn: {m}" for m in degenerate],
                           ["content rules"], [turn["user"]], usage, source)
        prefix = turn["opener"] if opener == "planned" else None
        messages = [{"role": "system", "content": system}, *history]
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
        completions = await asyncio.gather(*(complete(messages, t, j) for j in range(candidates)))
        verdicts = []
        written = []
        for completion in completions:
            usage.update(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens)
            usage["cost_usd"] += completion.cost_usd
            source = {"model": completion.model, "endpoint": completion.endpoint}
            written.append(completion.text or "")
            verdicts.append(verify(completion.text, completion.finish_reason, turn, history, rules=rules,
                                   knowledge=knowledge, meta=elements, prefix=prefix))
        chosen = choose(verdicts)
        turns_meta.append({"facts": turn["facts"], "opener": prefix, "candidates": candidates,
                           "passed": sum(v.passed for v in verdicts), "chosen": chosen,
                           "score": round(verdicts[chosen].score, 3) if chosen is not None else None,
                           "dropped": verdicts[chosen].dropped if chosen is not None else None,
                           "cut": verdicts[chosen].cut if chosen is not None else None,
                           "model_sentences": verdicts[chosen].kept_sentences if chosen is not None else None,
                           "verdicts": [list(v.failed) for v in verdicts],
                           # each candidate as the model wrote it (after the planned opening) and the checks it
                           # failed so, before the verifier cut it: the funnel's "as written" counts
                           "written": written, "as_written": [list(v.as_written or {}) for v in verdicts]})
        if chosen is None:
            reasons = [f"turn {t + 1}, candidate {j + 1}: " + "; ".join(r for rs in v.failed.values() for r in rs)
                       for j, v in enumerate(verdicts)]
            return Outcome(None, turns_meta, reasons, sorted({c for v in verdicts for c in v.failed}),
                           [v.text for v in verdicts], usage, source)
        history.append({"role": "assistant", "content": verdicts[chosen].text})
    return Outcome(history, turns_meta, [], [], [], usage, source)
