"""One dated session: ask the model for a dialogue and its transactions, then check what it wrote.

The model is told the date, the (scene, sub-scene) pairs to cover with a suggested amount each (the
kit draws amounts so their spread is controlled and a small model has a number to repeat; the model
may still say another one, the checks hold it to what it wrote) and the number of messages, and
answers with `{"dialogue": [...], "transactions": [...]}` under a JSON schema that also pins the
scene and sub-scene names where the endpoint enforces schemas (llama.cpp's grammar, OpenAI's strict mode).

The checks (`check_session`) trust nothing the schema promised: scenes and sub-scenes must be in the
catalogue, amounts positive numbers, every transaction's amount must be said in the dialogue
(45.5, 45.50 and "45.5 yuan" all match; a date's digits never do), and so must a word of what it was
spent on (its description, scene or sub-scene: "gym visit" filed under Shopping / Daily Necessities
needs "gym", "visit", "shopping", "daily" or "necessities" in the dialogue; plurals match singulars), so
that every answer can be read from the text the model sees. A session with problems is asked
again with a fresh seed, at most `max_attempts` times in all. If no attempt is clean, the best one is
*flagged*, and the record leaves it out (kit.memory.dataset): its dialogue may state amounts that its
checked transactions do not hold, and a reference answer must agree with every dialogue the model
reads. Its problems are listed in the record's metadata. (The reverse, an expense said in a clean
dialogue that the model did not record, cannot be caught by matching numbers.) A session with no
usable dialogue at all is dropped and counted.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from string import Template

from kit.llm.client import LLMClient, RetriesExhausted, parse_json_reply
from kit.memory.ledger import Transaction, to_cents
from kit.memory.scenes import canonical_scene, canonical_subscene
from kit.paths import knowledge_dir

ROLES = {"user": "User", "assistant": "Assistant"}
SCHEMA_NAME = "expense_session"
TEMPERATURE = 0.8
# Token budget of a reply: enough for a chatty message and a transaction, while a small model that
# rambles is cut off early (the reply is then repaired or re-asked) instead of filling its window.
TOKENS_PER_TURN = 45
TOKENS_PER_TRANSACTION = 35
MAX_TRANSACTIONS_PER_PAIR = 2
# Amounts as people write them: 1,234.50 or 45.5; ISO dates are removed first so 2024-01-15 gives no 15.
_AMOUNT = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\d.,])\d+(?:\.\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORD = re.compile(r"[a-z]+")
# Words that say nothing about what was bought, so finding one in the dialogue proves nothing.
_FUNCTION_WORDS = frozenset("and the for with from into this that some other".split())


@dataclass(frozen=True)
class SessionPlan:
    """What one session must cover; drawn from the seed, so the same seed plans the same sessions."""

    index: int
    date: str
    pairs: tuple[tuple[str, str], ...]
    amounts: tuple[str, ...]  # a suggested amount per pair, as the prompt writes it
    turns: int
    first: bool


@dataclass
class SessionResult:
    plan: SessionPlan
    status: str  # "passed", "flagged" (problems left after every attempt) or "dropped" (no usable dialogue)
    attempts: int
    dialogue: list[dict] = field(default_factory=list)
    transactions: list[dict] = field(default_factory=list)  # checked: scene, subscene, amount, description
    problems: list[str] = field(default_factory=list)  # of the attempt kept (or the last one, if dropped)
    transactions_proposed: int = 0


@dataclass
class CheckResult:
    dialogue: list[dict] | None  # None: no usable dialogue
    transactions: list[dict]
    problems: list[str]
    proposed: int


def load_prompt(name: str) -> Template:
    path = knowledge_dir() / "prompts" / name
    try:
        return Template(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: prompt template is missing") from None


def fill(template: Template, name: str, **slots: object) -> str:
    try:
        return template.substitute(**slots)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"prompt template {name}: slot {exc} is not one the kit fills "
                         f"(known: {', '.join(sorted(slots))}; write a literal dollar sign as $$)") from None


def session_example(plan: SessionPlan) -> str:
    """The reply shape, shown with this session's own expenses. A small model copies the example it is
    shown: one fixed example ("a notebook for 3.2") came back as every session, filed under whatever
    scene was planned, so the ledger named scenes the dialogue never mentioned. Built from the plan, a
    copy is still a true record: its dialogue names each sub-scene and amount the ledger holds."""
    items = [(sub.lower(), amount) for (_, sub), amount in zip(plan.pairs, plan.amounts)]
    said = " and ".join(f"{amount} for {item}" for item, amount in items)
    dialogue = [{"role": "user", "content": f"I paid {said}."},
                {"role": "assistant", "content": "Recorded: " + ", ".join(f"{item} {amount}" for item, amount in items) + "."}]
    transactions = [{"scene": scene, "subscene": sub, "amount": float(amount), "description": sub.lower()}
                    for (scene, sub), amount in zip(plan.pairs, plan.amounts)]
    return json.dumps({"dialogue": dialogue, "transactions": transactions})


def session_prompt(plan: SessionPlan) -> str:
    opening = load_prompt("memory_opening_first.txt" if plan.first else "memory_opening_later.txt").template
    expenses = "\n".join(f"- {scene} / {sub}: {amount}" for (scene, sub), amount in zip(plan.pairs, plan.amounts))
    return fill(load_prompt("memory_session.txt"), "memory_session.txt", date=plan.date, opening=opening,
                expenses=expenses, turns=plan.turns, example=session_example(plan))


def session_schema(plan: SessionPlan, min_turns: int, max_turns: int) -> dict:
    """The reply's JSON schema; each transaction is one of the planned scenes with its planned sub-scenes."""
    by_scene: dict[str, list[str]] = {}
    for scene, sub in plan.pairs:
        by_scene.setdefault(scene, []).append(sub)
    transaction_shapes = [
        {"type": "object",
         "properties": {"scene": {"type": "string", "enum": [scene]},
                        "subscene": {"type": "string", "enum": subs},
                        "amount": {"type": "number"},
                        "description": {"type": "string"}},
         "required": ["scene", "subscene", "amount", "description"],
         "additionalProperties": False}
        for scene, subs in by_scene.items()
    ]
    message = {"type": "object",
               "properties": {"role": {"type": "string", "enum": list(ROLES)}, "content": {"type": "string"}},
               "required": ["role", "content"], "additionalProperties": False}
    return {"type": "object",
            "properties": {
                "dialogue": {"type": "array", "items": message, "minItems": min_turns, "maxItems": max_turns},
                "transactions": {"type": "array", "minItems": 1,
                                 "maxItems": len(plan.pairs) * MAX_TRANSACTIONS_PER_PAIR,
                                 "items": transaction_shapes[0] if len(transaction_shapes) == 1
                                 else {"anyOf": transaction_shapes}}},
            "required": ["dialogue", "transactions"], "additionalProperties": False}


def amounts_in(text: str) -> set[int]:
    """Every amount written in `text`, in cents (thousands separators allowed, dates ignored)."""
    found = set()
    for match in _AMOUNT.finditer(_ISO_DATE.sub(" ", text)):
        try:
            found.add(to_cents(Decimal(match.group().replace(",", ""))))
        except InvalidOperation:
            continue
    return found


def words_in(text: str) -> set[str]:
    """Content words of `text`, lower case, a plural folded to its singular ("books" -> "book")."""
    found = set()
    for word in _WORD.findall(text.lower()):
        if len(word) < 3 or word in _FUNCTION_WORDS:
            continue
        if word.endswith("ies") and len(word) > 4:
            word = word[:-3] + "y"
        elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
            word = word[:-1]
        found.add(word)
    return found


def check_session(value: object, scenes: dict[str, list[str]]) -> CheckResult:
    """Every problem of one parsed reply, and the dialogue and transactions that survive them."""
    if not isinstance(value, dict):
        return CheckResult(None, [], [f"reply is {type(value).__name__}, not a JSON object"], 0)
    problems: list[str] = []
    raw_dialogue = value.get("dialogue")
    dialogue: list[dict] = []
    if not isinstance(raw_dialogue, list):
        problems.append("no 'dialogue' list")
    else:
        for i, message in enumerate(raw_dialogue):
            role = message.get("role") if isinstance(message, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if role not in ROLES:
                problems.append(f"dialogue[{i}]: role {role!r} is not user or assistant")
            elif not isinstance(content, str) or not content.strip():
                problems.append(f"dialogue[{i}]: empty content")
            else:
                dialogue.append({"role": role, "content": content.strip()})
    if not dialogue:
        problems.append("dialogue has no usable message")
        return CheckResult(None, [], problems, 0)

    text = "\n".join(m["content"] for m in dialogue)
    said, said_words = amounts_in(text), words_in(text)
    raw_txs = value.get("transactions")
    if not isinstance(raw_txs, list) or not raw_txs:
        problems.append("no transactions recorded")
        raw_txs = raw_txs if isinstance(raw_txs, list) else []
    kept: list[dict] = []
    for i, tx in enumerate(raw_txs):
        if not isinstance(tx, dict):
            problems.append(f"transactions[{i}]: not an object")
            continue
        scene = canonical_scene(scenes, tx.get("scene"))
        subscene = canonical_subscene(scenes, scene, tx.get("subscene")) if scene else None
        amount = tx.get("amount")
        description = tx.get("description")
        if scene is None:
            problems.append(f"transactions[{i}]: unknown scene {tx.get('scene')!r}")
        elif subscene is None:
            problems.append(f"transactions[{i}]: {tx.get('subscene')!r} is not a sub-scene of {scene}")
        elif isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
            problems.append(f"transactions[{i}]: amount {amount!r} is not a number")
        elif to_cents(amount) <= 0:
            problems.append(f"transactions[{i}]: amount {amount!r} is not positive")
        elif to_cents(amount) not in said:
            problems.append(f"transactions[{i}]: amount {amount!r} is not in the dialogue")
        elif not words_in(f"{scene} {subscene} {description if isinstance(description, str) else ''}") & said_words:
            problems.append(f"transactions[{i}]: no word of {scene} / {subscene} / {description!r} is in the dialogue")
        else:
            kept.append({"scene": scene, "subscene": subscene, "amount": to_cents(amount) / 100,
                         "description": description.strip() if isinstance(description, str) else ""})
    return CheckResult(dialogue, kept, problems, len(raw_txs))


def attempt_seed(seed: int | str, index: int, attempt: int) -> int:
    """A request seed per session and attempt: a re-ask samples afresh instead of hitting the cache."""
    return random.Random(f"{seed}:session:{index}:{attempt}").getrandbits(31)


def _better(a: CheckResult, b: CheckResult | None) -> bool:
    """Is attempt `a` worth keeping over `b`: more checked transactions, then fewer problems."""
    return b is None or (len(a.transactions), -len(a.problems)) > (len(b.transactions), -len(b.problems))


async def generate_session(client: LLMClient, plan: SessionPlan, scenes: dict[str, list[str]], seed: int | str,
                           min_turns: int, max_turns: int, max_attempts: int = 3) -> SessionResult:
    """Ask for one session until it passes every check or `max_attempts` are spent (see module doc)."""
    messages = [{"role": "user", "content": session_prompt(plan)}]
    schema = session_schema(plan, min_turns, max_turns)
    max_tokens = (TOKENS_PER_TURN * max_turns
                  + TOKENS_PER_TRANSACTION * len(plan.pairs) * MAX_TRANSACTIONS_PER_PAIR + 60)
    best: CheckResult | None = None
    last_problems: list[str] = []
    attempt = 0
    for attempt in range(1, max_attempts + 1):
        try:
            completion = await client.complete(messages, schema=schema, schema_name=SCHEMA_NAME,
                                               temperature=TEMPERATURE, max_tokens=max_tokens,
                                               seed=attempt_seed(seed, plan.index, attempt))
        except RetriesExhausted as exc:
            last_problems = [f"request failed: {exc}"]
            continue
        reply = parse_json_reply(completion.text)
        if reply.error:
            last_problems = [f"reply is not JSON: {reply.error}"]
            continue
        checked = check_session(reply.value, scenes)
        if completion.finish_reason == "length":
            checked.problems.append("reply was cut at the token limit")
        last_problems = checked.problems
        if checked.dialogue is not None and _better(checked, best):
            best = checked
        if checked.dialogue is not None and not checked.problems:
            break
    if best is None:
        return SessionResult(plan, "dropped", attempt, problems=last_problems)
    return SessionResult(plan, "passed" if not best.problems else "flagged", attempt, best.dialogue,
                         best.transactions, best.problems, best.proposed)


def render_chunk(date: str, dialogue: list[dict]) -> str:
    """One session as text, a line per message: `[2024-01-15] User said, "..."`."""
    lines = []
    for message in dialogue:
        content = " ".join(message["content"].split())
        lines.append(f'[{date}] {ROLES[message["role"]]} said, "{content}"')
    return "\n".join(lines)


def to_transactions(result: SessionResult, chunk_index: int) -> list[Transaction]:
    return [Transaction(result.plan.date, t["scene"], t["subscene"], t["amount"], t["description"], chunk_index)
            for t in result.transactions]
