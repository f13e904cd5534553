"""The turns recipe: a session written one turn at a time, for a model that cannot write a whole one.

The embedded SmolLM2-135M cannot write a 20-turn session in one JSON reply (it loops, drops expenses,
and the reply is cut), but it can answer one user message in a sentence or two. So the kit lays the
session out from its plan (kit.memory.sessions) and writes what must be exact itself:

    user: greeting (first session: wants to track spending)      assistant: reply  <- model
    user: an expense, "I paid 12.5 for a latte."                 assistant: confirmation, amount and item
    user: small talk on the persona or an expense's scene        assistant: reply  <- model
    ... expenses and small talk interleaved ...
    user: closing                                                 assistant: reply  <- model

User turns and confirmations are filled from phrasing templates in knowledge/memory_scenes.yaml
(measured: asked to write "I spent 12.50 on a latte", the 135M model stated the amount and item in
about one reply in four, while a template always does; the rule check runs on template turns too).
The model writes only the assistant's conversational replies, each from a short system prompt, one
example exchange and the user message it answers, at most TURN_TOKENS tokens; a reply is trimmed to its last complete
sentence and must pass kit.memory.rules with no digits (an invented amount would contradict the
ledger), and must not open with the words of an earlier reply (or of a confirmation). Up to
`max_attempts` candidates per turn, each with its own seed (so a re-run replays them from the reply
cache); if none passes, the user's line before it (small talk, greeting, closing) is swapped for another
of the catalogue and the reply asked again, at most MAX_SWAPS times (measured: some lines draw "I'm sorry
for your loss" from the 135M model again and again); then the session is rejected with every
candidate's reasons. `turn_funnel`
counts candidates asked, kept and rejected per rule.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from string import Template

from kit.llm.client import LLMClient, RetriesExhausted
from kit.memory.rules import rule_name, trim_to_sentence, turn_problems
from kit.memory.scenes import Catalogue
from kit.memory.sessions import SessionPlan, SessionResult, attempt_seed, load_prompt, states

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


def layout(plan: SessionPlan, catalogue: Catalogue, seed: int | str) -> list[Slot]:
    """The session's turns: fixed texts where the kit writes them, model slots where the model does."""
    rng = random.Random(f"{seed}:layout:{plan.index}")
    phr = catalogue.phrasings
    pairs: list[list[Slot]] = []
    for n, e in enumerate(plan.expenses):
        said = {"amount": e.amount, "item": e.item}
        pairs.append([Slot("user", "expense", Template(rng.choice(phr["expense"])).substitute(said), n),
                      Slot("assistant", "confirm", Template(rng.choice(phr["confirm"])).substitute(said), n)])
    talk_pool = list(catalogue.small_talk["general"]) + list(catalogue.personas[plan.persona])
    for e in plan.expenses:
        talk_pool += catalogue.small_talk.get(e.scene, ())
    rng.shuffle(talk_pool)
    talk_pool = list(dict.fromkeys(talk_pool))  # a line is said once per session
    talks = (plan.turns - RESERVED_TURNS) // 2 - len(pairs)
    spare = tuple(talk_pool[talks:])
    for i in range(talks):
        pairs.append([Slot("user", "talk", talk_pool[i % len(talk_pool)], alternatives=spare[i::max(1, talks)]),
                      Slot("assistant", "reply")])
    rng.shuffle(pairs)
    greetings = list(phr["greeting_first"] if plan.first else phr["greeting_later"])
    closings = list(phr["closing"])
    rng.shuffle(greetings)
    rng.shuffle(closings)
    return ([Slot("user", "greeting", greetings[0], alternatives=tuple(greetings[1:])), Slot("assistant", "reply")]
            + [slot for pair in pairs for slot in pair]
            + [Slot("user", "closing", closings[0], alternatives=tuple(closings[1:])), Slot("assistant", "reply")])


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
                      turn: int, max_attempts: int, funnel: Counter, swap: int = 0) -> tuple[str | None, list[str]]:
    """The first of up to `max_attempts` model candidates that passes the rules, or None and why not."""
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
        if not problems:
            funnel["kept"] += 1
            return text, reasons
        for p in problems:
            funnel[rule_name(p)] += 1
        reasons.append(f"candidate {attempt}: {'; '.join(problems)} ({' '.join(completion.text.split())[:80]!r})")
    return None, reasons


async def generate_session_turns(client: LLMClient, plan: SessionPlan, catalogue: Catalogue, seed: int | str,
                                 max_attempts: int = 3) -> SessionResult:
    """Write one session turn by turn (see the module doc); rejected if a turn finds no good candidate."""
    system = load_prompt("memory_turn_system.txt").template
    dialogue: list[dict] = []
    evidence: list[list[int]] = [[] for _ in plan.expenses]
    funnel: Counter = Counter()
    previous = Slot("user", "none")
    for turn, slot in enumerate(layout(plan, catalogue, seed)):
        if slot.text is None:
            text, reasons = await write_reply(client, system, dialogue, seed, plan, turn, max_attempts, funnel)
            for swap, line in enumerate(previous.alternatives[:MAX_SWAPS], 1):
                if text is not None:
                    break
                funnel["user_line_swapped"] += 1  # the model found no good answer to that line: say another
                dialogue[-1] = {"role": "user", "content": line}
                text, more = await write_reply(client, system, dialogue, seed, plan, turn, max_attempts, funnel, swap)
                reasons += more
            if text is None:
                return SessionResult(plan, "rejected", funnel["asked"], dialogue,
                                     problems=[f"turn {turn}: no candidate passed"] + reasons,
                                     turn_funnel=dict(funnel))
        else:
            text = slot.text
            problems = turn_problems(text, [])  # templates repeat their own shape by design: no copy check
            if slot.expense is not None and not states(text, plan.expenses[slot.expense]):
                problems.append("expense: does not state its amount and item")
            if problems:  # a template in the YAML file that breaks a rule: say which
                return SessionResult(plan, "rejected", funnel["asked"], dialogue,
                                     problems=[f"turn {turn} ({slot.kind} template {text!r}): {'; '.join(problems)}"],
                                     turn_funnel=dict(funnel))
            if slot.expense is not None:
                evidence[slot.expense].append(turn)
        dialogue.append({"role": slot.role, "content": text})
        previous = slot
    return SessionResult(plan, "passed", funnel["asked"], dialogue, evidence, turn_funnel=dict(funnel))
