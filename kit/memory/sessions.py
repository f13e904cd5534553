"""One dated session: its plan (the ledger, drawn first), and the one-call recipe for large models.

The ledger never comes from model text. `plan_sessions` draws every session's date, persona, length
and expenses (scene, sub-scene, item, amount) from the seed and knowledge/memory_scenes.yaml; a
dialogue is then written to carry them, and checked to say each one. Two recipes write it:

- `turns` (kit.memory.turns): one turn at a time, for a model that cannot write a whole session
  (the embedded SmolLM2-135M);
- `one-call` (here): the whole session in one JSON reply, as the seed asks of a large model. The
  checks (`check_dialogue`) trust nothing: every planned expense must be stated, amount, item and
  category, in one user turn (that turn and the assistant's confirming reply are its evidence), no
  amount the ledger does not hold may be said, and every turn passes the turn rules (kit.memory.rules'
  `turn_problems`: no JSON or markup fragments, no copy of an earlier turn). A session with problems
  is asked again with a fresh seed, at most `max_attempts` times; one that never passes is flagged
  and left out of the record, with its problems in the metadata.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from string import Template

from kit.llm.client import LLMClient, RetriesExhausted
from kit.llm.reply import parse_json_reply
from kit.memory.ledger import Transaction, to_cents
from kit.memory.rules import turn_problems
from kit.memory.scenes import Catalogue
from kit.paths import knowledge_dir
from kit.text import NUMBER

ROLES = {"user": "User", "assistant": "Assistant"}
SCHEMA_NAME = "expense_session"
TEMPERATURE = 0.8
TOKENS_PER_TURN = 45
YEAR_START = date(2024, 1, 1)
YEAR_DAYS = 366  # 2024 is a leap year: 2024-01-01 .. 2024-12-31
# Amounts as people write them: 1,234.50 or 45.5; ISO dates are removed first so 2024-01-15 gives no 15.
_AMOUNT = re.compile(rf"(?<![\d.,])(?:{NUMBER})")  # not the tail of a longer number
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORD = re.compile(r"[a-z]+")
# Words that say nothing about what was bought, so finding one in the dialogue proves nothing.
_FUNCTION_WORDS = frozenset("and the for with from into this that some other".split())


@dataclass(frozen=True)
class Expense:
    """One planned transaction: what the ledger holds and the dialogue must say."""

    scene: str
    subscene: str
    item: str
    amount: str  # as said ("45.5"); the ledger stores it as a number


@dataclass(frozen=True)
class SessionPlan:
    """What one session must carry; drawn from the seed, so the same seed plans the same sessions."""

    index: int
    date: str
    expenses: tuple[Expense, ...]
    turns: int  # messages, even: user and assistant alternate, the user first
    first: bool
    persona: str


@dataclass
class SessionResult:
    plan: SessionPlan
    status: str  # "passed", "flagged" (one-call: problems left after every attempt) or "rejected"
    requests: int
    dialogue: list[dict] = field(default_factory=list)
    evidence: list[list[int]] = field(default_factory=list)  # per planned expense: the turns that state it
    problems: list[str] = field(default_factory=list)
    turn_funnel: dict = field(default_factory=dict)  # turns recipe: candidates asked, kept, rejected by rule


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


def draw_amount(rng: random.Random, low: float, high: float) -> str:
    """A price in [low, high], log-uniform, with 0-2 decimals as people say it ("8", "45.5", "12.99")."""
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    text = f"{value:.{rng.choice([0, 1, 2])}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text if to_cents(text) > 0 else "1"


def even_turns(rng: random.Random, low: int, high: int) -> int:
    """An even message count in [low, high] (user and assistant alternate, the user first)."""
    choices = [n for n in range(low, high + 1) if n % 2 == 0]
    if not choices:
        raise ValueError(f"min_turns..max_turns ({low}..{high}) holds no even message count")
    return rng.choice(choices)


def plan_sessions(config, catalogue: Catalogue, record_seed: str, reserved_turns: int = 0) -> list[SessionPlan]:
    """Dates (distinct, sorted), persona, length and expenses of every session of one record.

    `reserved_turns`: messages a recipe needs besides the expenses' (the turns recipe's greeting and
    closing); a session holds at most (turns - reserved) / 2 expenses."""
    rng = random.Random(f"{record_seed}:plan")
    days = sorted(rng.sample(range(YEAR_DAYS), config.num_sessions))
    persona = rng.choice(sorted(catalogue.personas))  # one user across the record's sessions
    plans = []
    for i, day in enumerate(days):
        turns = even_turns(rng, config.min_turns, config.max_turns)
        room = max(1, (turns - reserved_turns) // 2)
        k = min(rng.randint(config.min_scenes, config.max_scenes), room, len(catalogue.subscenes))
        expenses = []
        for sub in rng.sample(catalogue.subscenes, k):
            expenses.append(Expense(sub.scene, sub.name, rng.choice(sub.items), draw_amount(rng, *sub.price)))
        plans.append(SessionPlan(i, (YEAR_START + timedelta(days=day)).isoformat(), tuple(expenses), turns,
                                 i == 0, persona))
    return plans


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


def states(text: str, expense: Expense) -> bool:
    """Does `text` say this expense: its amount (any formatting), every content word of its item, and
    its category by name? Questions name categories, so the user must have said which one it was."""
    return (to_cents(expense.amount) in amounts_in(text) and words_in(expense.item) <= words_in(text)
            and re.search(rf"\b{re.escape(expense.scene)}\b", text, re.I) is not None)


def session_prompt(plan: SessionPlan) -> str:
    opening = load_prompt("memory_opening_first.txt" if plan.first else "memory_opening_later.txt").template
    expenses = "\n".join(f"- {e.amount} for {e.item} (category: {e.scene})" for e in plan.expenses)
    return fill(load_prompt("memory_session.txt"), "memory_session.txt", date=plan.date, opening=opening,
                expenses=expenses, turns=plan.turns)


def session_schema(min_turns: int, max_turns: int) -> dict:
    message = {"type": "object",
               "properties": {"role": {"type": "string", "enum": list(ROLES)}, "content": {"type": "string"}},
               "required": ["role", "content"], "additionalProperties": False}
    return {"type": "object",
            "properties": {"dialogue": {"type": "array", "items": message, "minItems": min_turns,
                                        "maxItems": max_turns}},
            "required": ["dialogue"], "additionalProperties": False}


def check_dialogue(value: object, plan: SessionPlan) -> tuple[list[dict] | None, list[list[int]], list[str]]:
    """(dialogue, evidence per expense, problems) of one parsed one-call reply (see the module doc)."""
    raw = value.get("dialogue") if isinstance(value, dict) else None
    if not isinstance(raw, list) or not raw:
        return None, [], ["reply holds no 'dialogue' list"]
    dialogue, problems = [], []
    for i, message in enumerate(raw):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected or not isinstance(content, str) or not content.strip():
            problems.append(f"dialogue[{i}]: expected a non-empty {expected} message")
            continue
        text = " ".join(content.split())
        problems += [f"dialogue[{i}]: {p}" for p in turn_problems(text, [m["content"] for m in dialogue])]
        dialogue.append({"role": role, "content": text})
    evidence = []
    for n, expense in enumerate(plan.expenses):
        turns = [i for i, m in enumerate(dialogue) if m["role"] == "user" and states(m["content"], expense)][:1]
        if not turns:
            problems.append(f"expense {n} ({expense.amount} for {expense.item}) is not stated in a user turn")
        elif turns[0] + 1 < len(dialogue) and to_cents(expense.amount) in amounts_in(dialogue[turns[0] + 1]["content"]):
            turns.append(turns[0] + 1)
        evidence.append(turns)
    planned = {to_cents(e.amount) for e in plan.expenses}
    extra = amounts_in(" ".join(m["content"] for m in dialogue)) - planned
    if extra:
        problems.append(f"says amounts the ledger does not hold: {sorted(c / 100 for c in extra)[:3]}")
    return dialogue, evidence, problems


def attempt_seed(seed: int | str, *parts: object) -> int:
    """A request seed per session, turn and attempt: a re-ask samples afresh instead of hitting the cache."""
    return random.Random(":".join(map(str, (seed, *parts)))).getrandbits(31)


async def generate_session_one_call(client: LLMClient, plan: SessionPlan, seed: int | str, min_turns: int,
                                    max_turns: int, max_attempts: int = 3) -> SessionResult:
    """Ask for the whole session until it passes every check or `max_attempts` are spent."""
    messages = [{"role": "user", "content": session_prompt(plan)}]
    best: tuple | None = None
    problems: list[str] = []
    attempt = 0
    for attempt in range(1, max_attempts + 1):
        try:
            completion = await client.complete(messages, schema=session_schema(min_turns, max_turns),
                                               schema_name=SCHEMA_NAME, temperature=TEMPERATURE,
                                               max_tokens=TOKENS_PER_TURN * max_turns + 60,
                                               seed=attempt_seed(seed, "session", plan.index, attempt))
        except RetriesExhausted as exc:
            problems = [f"request failed: {exc}"]
            continue
        reply = parse_json_reply(completion.text)
        if reply.error:
            problems = [f"reply is not JSON: {reply.error}"]
            continue
        dialogue, evidence, problems = check_dialogue(reply.value, plan)
        if completion.finish_reason == "length":
            problems.append("reply was cut at the token limit")
        if dialogue is not None and (best is None or len(problems) < len(best[2])):
            best = (dialogue, evidence, problems)
        if dialogue is not None and not problems:
            break
    if best is None:
        return SessionResult(plan, "rejected", attempt, problems=problems)
    return SessionResult(plan, "flagged" if best[2] else "passed", attempt, best[0], best[1], best[2])


def render_chunk(date: str, dialogue: list[dict]) -> str:
    """One session as text, a line per message: `[2024-01-15] User said, "..."`."""
    lines = []
    for message in dialogue:
        content = " ".join(message["content"].split())
        lines.append(f'[{date}] {ROLES[message["role"]]} said, "{content}"')
    return "\n".join(lines)


def to_transactions(result: SessionResult, chunk_index: int) -> list[Transaction]:
    """The plan's expenses as the ledger's transactions, with the turns that state each."""
    return [Transaction(result.plan.date, e.scene, e.subscene, to_cents(e.amount) / 100, e.item, chunk_index,
                        tuple(turns))
            for e, turns in zip(result.plan.expenses, result.evidence)]
