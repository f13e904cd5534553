"""The turns recipe: a session written one turn at a time, for a model that cannot write a whole one.

The embedded SmolLM2-135M cannot write a 20-turn session in one JSON reply (it loops, drops expenses,
and the reply is cut), but it can answer one user message in a sentence or two. So the kit lays the
session out from its plan (kit.memory.sessions) and writes what must be exact itself:

    user: greeting (first session: wants to track spending)      assistant: reply  <- model
    user: an expense, "I paid 12.5 for a latte, under Dining."   assistant: confirmation, amount, item, category
    user: small talk: general, the persona's, or on an expense    assistant: reply  <- model
          already recorded in this session
    ... expenses and small talk interleaved ...
    user: closing                                                 assistant: reply  <- model

User turns and confirmations are filled from phrasing templates in knowledge/memory_scenes.yaml
(measured: asked to write "I spent 12.50 on a latte", the 135M model stated the amount and item in
about one reply in four, while a template always does; the rule check runs on template turns too).
The user's greetings, closings and small talk are drawn for the whole record at once
(`draw_user_lines`): no line is said twice in a record while the catalogue has unsaid ones, and a
line about a kind of purchase comes only after that purchase is recorded.
The model writes only the assistant's conversational replies, each from a short system prompt, one
example exchange and the user message it answers, at most TURN_TOKENS tokens; a reply is trimmed to
its last complete sentence and must pass kit.memory.rules with no digits (an invented amount would
contradict the ledger), must share a subject with the user's line (`off_topic`), and must not open
with the words of an earlier reply (or of a confirmation). Up to `max_attempts` candidates per turn,
each with its own seed (so a re-run replays them from the reply cache); if none passes, the user's
line before it (small talk, greeting, closing) is swapped for another of its record's spare lines
and the reply asked again, at most MAX_SWAPS times (measured: some lines draw "I'm sorry for your
loss" from the 135M model again and again); then the session is rejected with every candidate's
reasons. `turn_funnel` counts candidates asked, kept and rejected per rule.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from string import Template

from kit.llm.client import LLMClient, RetriesExhausted
from kit.memory.rules import off_topic, rule_name, trim_to_sentence, turn_problems
from kit.memory.scenes import Catalogue
from kit.memory.sessions import SessionPlan, SessionResult, attempt_seed, load_prompt, states, words_in

TURN_TOKENS = 40
TEMPERATURE = 0.8
# The model sees only the user message it answers: with the confirmations in view, the 135M model
# imitated them ("Got it, I'll keep running shoes."); every message it answers is the kit's own text.
HISTORY_TURNS = 1
RESERVED_TURNS = 4  # greeting and closing pairs around the expenses
MAX_SWAPS = 2  # other user lines tried when no reply to a line passes, before the session is rejected


@dataclass(frozen=True)
class Slot:
    role: str
    kind: str  # greeting, expense, confirm, talk, closing, reply (model)
    text: str | None = None  # None: the model writes it
    expense: int | None = None
    alternatives: tuple[str, ...] = ()  # other lines this user turn may say if no reply to it passes


@dataclass(frozen=True)
class UserLines:
    """What the user says in one session besides the expenses, drawn for the whole record (dataset)
    at once so that no line is said twice while the catalogue holds unsaid ones."""

    greeting: tuple[str, ...]  # the line said, then the ones to swap in
    closing: tuple[str, ...]
    talk: tuple[tuple[str, frozenset[int]], ...]  # (line, expenses it must come after)
    spare: tuple[str, ...]  # small talk tied to no expense, to swap in


class _Pool:
    """Lines handed out least-said first, in a seeded order among equals: a record repeats a line
    only once every line of its pool has been said (a record longer than the catalogue allows)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.said: Counter = Counter()
        self.order: dict[str, float] = {}

    def take(self, lines: list[str], n: int) -> list[str]:
        for line in lines:
            self.order.setdefault(line, self.rng.random())
        picked = sorted(dict.fromkeys(lines), key=lambda line: (self.said[line], self.order[line]))[:max(0, n)]
        self.said.update(picked)
        return picked


def talk_count(plan: SessionPlan) -> int:
    return (plan.turns - RESERVED_TURNS) // 2 - len(plan.expenses)


def _ties(line: str, plan: SessionPlan) -> frozenset[int]:
    """Expenses a line speaks of by a word of their item or sub-scene: it must come after them."""
    said = words_in(line)
    return frozenset(n for n, e in enumerate(plan.expenses) if said & (words_in(e.item) | words_in(e.subscene)))


def draw_user_lines(plans: list[SessionPlan], catalogue: Catalogue, seed: int | str) -> list[UserLines]:
    """Greetings, closings and small talk of every session of one record (see UserLines).

    Small talk under a category or sub-scene (knowledge/memory_scenes.yaml) is a candidate only in a
    session holding such an expense, and comes after it; so does a general line that names an item
    of the session ("a trip" before the trip is paid would announce it)."""
    pool = _Pool(random.Random(f"{seed}:user_lines"))
    phr, talk = catalogue.phrasings, catalogue.small_talk
    mains = []
    for plan in plans:
        greeting = pool.take(list(phr["greeting_first" if plan.first else "greeting_later"]), 1)
        closing = pool.take(list(phr["closing"]), 1)
        tied: dict[str, frozenset[int]] = {}
        for n, e in enumerate(plan.expenses):
            for line in talk.get(e.scene, ()) + talk.get(e.subscene, ()):
                tied.setdefault(line, frozenset({n}) | _ties(line, plan))
        free = [line for line in talk["general"] + catalogue.personas[plan.persona] if line not in tied]
        lines = pool.take(list(tied) + free, talk_count(plan))
        mains.append((greeting, closing, tuple((line, tied.get(line) or _ties(line, plan)) for line in lines)))
    out = []
    for plan, (greeting, closing, lines) in zip(plans, mains):  # swaps draw from what no session says
        free = [line for line in talk["general"] + catalogue.personas[plan.persona] if not _ties(line, plan)]
        out.append(UserLines(tuple(greeting + pool.take(list(phr["greeting_first" if plan.first else "greeting_later"]),
                                                        MAX_SWAPS)),
                             tuple(closing + pool.take(list(phr["closing"]), MAX_SWAPS)),
                             lines, tuple(pool.take(free, MAX_SWAPS))))
    return out


def layout(plan: SessionPlan, catalogue: Catalogue, seed: int | str, lines: UserLines | None = None) -> list[Slot]:
    """The session's turns: fixed texts where the kit writes them, model slots where the model does.
    `lines`: this session's share of draw_user_lines over the whole record (default: drawn for this
    session alone)."""
    lines = lines or draw_user_lines([plan], catalogue, seed)[0]
    rng = random.Random(f"{seed}:layout:{plan.index}")
    phr = catalogue.phrasings
    order = list(range(len(plan.expenses)))
    rng.shuffle(order)
    place = {n: p for p, n in enumerate(order)}
    keyed: list[tuple[float, list[Slot]]] = []
    for n, e in enumerate(plan.expenses):
        said = {"amount": e.amount, "item": e.item, "category": e.scene}
        keyed.append((place[n], [
            Slot("user", "expense", Template(rng.choice(phr["expense"])).substitute(said), n),
            Slot("assistant", "confirm", Template(rng.choice(phr["confirm"])).substitute(said), n)]))
    for line, after in lines.talk:
        low = max((place[n] + 0.5 for n in after), default=-0.5)  # after every expense it speaks of
        keyed.append((rng.uniform(low, len(order)), [Slot("user", "talk", line, alternatives=lines.spare),
                                                     Slot("assistant", "reply")]))
    keyed.sort(key=lambda pair: pair[0])
    return ([Slot("user", "greeting", lines.greeting[0], alternatives=lines.greeting[1:]), Slot("assistant", "reply")]
            + [slot for _, pair in keyed for slot in pair]
            + [Slot("user", "closing", lines.closing[0], alternatives=lines.closing[1:]), Slot("assistant", "reply")])


def _opening(text: str) -> str:
    """A reply's first two words: replies that all open alike ("I'd be happy...") read as a template."""
    return " ".join(text.casefold().replace(",", " ").split()[:2])


def example_exchange() -> list[dict]:
    """One user line and a good reply (knowledge/prompts/memory_turn_example.txt), shown before the
    message to answer: measured on 24 lines, 21 replies passed the rules with it and 18 without. An
    example about cooking drew replies about meals and recipes; one about saving keeps them on budgets."""
    lines = [line.strip() for line in load_prompt("memory_turn_example.txt").template.splitlines() if line.strip()]
    if len(lines) != 2:
        raise ValueError("knowledge/prompts/memory_turn_example.txt: expected two lines, a user message and a reply")
    return [{"role": "user", "content": lines[0]}, {"role": "assistant", "content": lines[1]}]


def turn_messages(system: str, dialogue: list[dict], example: list[dict]) -> list[dict]:
    return [{"role": "system", "content": system}] + example + dialogue[-HISTORY_TURNS:]


async def write_reply(client: LLMClient, system: str, dialogue: list[dict], seed: int | str, plan: SessionPlan,
                      turn: int, max_attempts: int, funnel: Counter, topics: dict[str, frozenset[str]],
                      swap: int = 0) -> tuple[str | None, list[str]]:
    """The first of up to `max_attempts` model candidates that passes the rules and answers the user's
    line (kit.memory.rules.off_topic, with the catalogue's reply topics), or None and why not."""
    reasons = []
    example = example_exchange()
    earlier = [m["content"] for m in example + dialogue]  # a copy of the example is a copy too
    openings = {_opening(m["content"]) for m in dialogue if m["role"] == "assistant"}
    for attempt in range(swap * max_attempts + 1, (swap + 1) * max_attempts + 1):
        funnel["asked"] += 1
        try:
            completion = await client.complete(turn_messages(system, dialogue, example), temperature=TEMPERATURE,
                                               max_tokens=TURN_TOKENS,
                                               seed=attempt_seed(seed, "turn", plan.index, turn, attempt))
        except RetriesExhausted as exc:
            funnel["request_failed"] += 1
            reasons.append(f"request failed: {exc}")
            continue
        text = trim_to_sentence(completion.text)
        problems = turn_problems(text or completion.text, earlier, numbers=False, reply=True)
        if text and _opening(text) in openings:
            problems.append(f"repeat_opening: {_opening(text)!r} opens an earlier reply")
        unanswered = off_topic(text, dialogue[-1]["content"], topics) if text else None
        if unanswered:
            problems.append(unanswered)
        if not problems:
            funnel["kept"] += 1
            return text, reasons
        for p in problems:
            funnel[rule_name(p)] += 1
        reasons.append(f"candidate {attempt}: {'; '.join(problems)} ({' '.join(completion.text.split())[:80]!r})")
    return None, reasons


async def generate_session_turns(client: LLMClient, plan: SessionPlan, catalogue: Catalogue, seed: int | str,
                                 max_attempts: int = 3, lines: UserLines | None = None) -> SessionResult:
    """Write one session turn by turn (see the module doc); rejected if a turn finds no good candidate.
    `lines`: the session's share of draw_user_lines over its record (default: drawn for it alone)."""
    system = load_prompt("memory_turn_system.txt").template
    dialogue: list[dict] = []
    evidence: list[list[int]] = [[] for _ in plan.expenses]
    funnel: Counter = Counter()
    previous = Slot("user", "none")
    topics = catalogue.reply_topics
    for turn, slot in enumerate(layout(plan, catalogue, seed, lines)):
        if slot.text is None:
            text, reasons = await write_reply(client, system, dialogue, seed, plan, turn, max_attempts, funnel, topics)
            said = {m["content"] for m in dialogue}  # the talk slots of a session share their spare lines
            unsaid = [line for line in previous.alternatives if line not in said]
            for swap, line in enumerate(unsaid[:MAX_SWAPS], 1):
                if text is not None:
                    break
                funnel["user_line_swapped"] += 1  # the model found no good answer to that line: say another
                dialogue[-1] = {"role": "user", "content": line}
                text, more = await write_reply(client, system, dialogue, seed, plan, turn, max_attempts, funnel,
                                               topics, swap)
                reasons += more
            if text is None:
                return SessionResult(plan, "rejected", funnel["asked"], dialogue,
                                     problems=[f"turn {turn}: no candidate passed"] + reasons,
                                     turn_funnel=dict(funnel))
        else:
            text = slot.text
            problems = turn_problems(text, [])  # templates repeat their own shape by design: no copy check
            if slot.expense is not None and not states(text, plan.expenses[slot.expense]):
                problems.append("expense: does not state its amount, item and category")
            if problems:  # a template in the YAML file that breaks a rule: say which
                return SessionResult(plan, "rejected", funnel["asked"], dialogue,
                                     problems=[f"turn {turn} ({slot.kind} template {text!r}): {'; '.join(problems)}"],
                                     turn_funnel=dict(funnel))
            if slot.expense is not None:
                evidence[slot.expense].append(turn)
        dialogue.append({"role": slot.role, "content": text})
        previous = slot
    return SessionResult(plan, "passed", funnel["asked"], dialogue, evidence, turn_funnel=dict(funnel))
