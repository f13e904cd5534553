"""Assembling benchmark records: plan the sessions, generate them, ask the questions, write the file.

A record has the seed's layout: `task_id`, `questions` [{qid, query, answer, position, category}],
`chunks` (one string per session that passed its checks, in date order) and `metadata` {num_sessions, num_turns,
num_transactions, date_range, scenes, total_amount, transaction_events}, plus what this kit adds:
each transaction's `evidence_turns` (the messages of its session that state it), `personas`,
`consistency` (how sessions fared under the checks, the turn funnel), `question_counts`, `rephrase`
and `generator` (seed, recipe, model, endpoint without key, parameters, token use, time).

File layout: with num_records == 1 the output file is that one record (a JSON object); with more,
it is a JSON list of records, record r generated from seed "<seed>:<r>". The file is written
atomically (temp file + rename), so a crash never leaves half a dataset.

Everything random comes from the seed: session dates (distinct days of 2024), the ledger (sub-scenes,
items, amounts: kit.memory.sessions.plan_sessions), turn counts, phrasings, request seeds, question
draws and the task id. With a deterministic endpoint (or the reply cache) the same seed gives the same
record. Resuming: every model request is seeded and cached as it arrives (kit.llm.cache), so after a
kill the same command replays the finished turns and sessions from the cache and asks only for the rest.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from kit.llm.endpoints import endpoints_from_env
from kit.llm.client import DEFAULT_ITEM_TIMEOUT_S, DEFAULT_TIMEOUT_S, LLMClient, LLMError, connect, run_sync
from kit.locking import exclusive
from kit.memory.ledger import Transaction, format_cents, spent_cents
from kit.memory.questions import ANSWER_KIND, CATEGORIES, ISO_DATE, draw_questions
from kit.memory.rephrase import rephrase_questions
from kit.memory.scenes import Catalogue, load_catalogue
from kit.memory.sessions import (YEAR_DAYS, SessionPlan, SessionResult, generate_session_one_call, plan_sessions,
                                 render_chunk, to_transactions)
from kit.memory.turns import RESERVED_TURNS, draw_user_lines, generate_session_turns
from kit.paths import atomic_write, cache_dir
from kit.progress import progress_bar
from kit.records import load_json
from kit.secrets import scrub_text

RECIPES = ("auto", "turns", "one-call")


@dataclass(frozen=True)
class MemoryConfig:
    """The seed's parameters and defaults, plus a seed, attempts and the recipe that writes sessions.

    recipe: "turns" (one turn at a time, kit.memory.turns), "one-call" (a whole session per reply,
    for large models) or "auto" (turns for the embedded model, one-call for an endpoint).
    max_attempts: candidates per model-written turn (turns) or requests per session (one-call)."""

    num_sessions: int = 50
    num_questions: int = 100
    min_turns: int = 20
    max_turns: int = 50
    min_scenes: int = 1
    max_scenes: int = 10
    no_diversify: bool = False
    num_records: int = 1
    llm_concurrency: int = 8
    seed: int = 0
    max_attempts: int = 3
    recipe: str = "auto"

    def check(self) -> None:
        """Raise ValueError naming the first impossible parameter."""
        if not 1 <= self.num_sessions <= YEAR_DAYS:
            raise ValueError(f"num_sessions must be 1..{YEAR_DAYS} (distinct days of 2024), got {self.num_sessions}")
        if self.num_questions < 1:
            raise ValueError(f"num_questions must be at least 1, got {self.num_questions}")
        if not 2 <= self.min_turns <= self.max_turns:
            raise ValueError(f"need 2 <= min_turns <= max_turns, got {self.min_turns}, {self.max_turns}")
        if self.min_turns == self.max_turns and self.min_turns % 2:
            raise ValueError(f"min_turns = max_turns = {self.min_turns} is odd: sessions alternate user and "
                             f"assistant from the user, so a message count is even")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.recipe == "turns" and self.max_turns < RESERVED_TURNS + 2:
            raise ValueError(f"the turns recipe needs max_turns >= {RESERVED_TURNS + 2} (greeting, an expense, "
                             f"closing), got {self.max_turns}")
        if not 1 <= self.min_scenes <= self.max_scenes:
            raise ValueError(f"need 1 <= min_scenes <= max_scenes, got {self.min_scenes}, {self.max_scenes}")
        for name in ("num_records", "llm_concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


# The seed's --fast preset: a quick test run.
FAST = {"num_sessions": 3, "num_questions": 10, "min_turns": 5, "max_turns": 10, "min_scenes": 1, "max_scenes": 3}


def fast_config(**overrides) -> MemoryConfig:
    """The --fast preset; explicit values override it."""
    return MemoryConfig(**{**FAST, **overrides})


def consistency_report(results: list[SessionResult], recipe: str, max_attempts: int) -> dict:
    """How the sessions fared; only passed sessions are in the record. `turn_funnel` (turns recipe):
    model candidates asked, kept, and rejected per rule, over every session."""
    funnel: Counter = Counter()
    for r in results:
        funnel.update(r.turn_funnel)
    kept = [r for r in results if r.status == "passed"]
    return {
        "recipe": recipe,
        "sessions_planned": len(results),
        "sessions_passed": len(kept),
        "sessions_flagged": sum(r.status == "flagged" for r in results),
        "sessions_rejected": sum(r.status == "rejected" for r in results),
        "max_attempts": max_attempts,
        "requests": sum(r.requests for r in results),
        "transactions_planned": sum(len(r.plan.expenses) for r in results),
        "transactions_kept": sum(len(r.plan.expenses) for r in kept),
        "turn_funnel": dict(funnel),
        "problems": [{"date": r.plan.date, "status": r.status, "requests": r.requests, "problems": r.problems}
                     for r in results if r.status != "passed"],
    }


def resolve_recipe(recipe: str, embedded: bool) -> str:
    """"auto" is the turns recipe for the embedded model and one call per session for an endpoint."""
    return ("turns" if embedded else "one-call") if recipe == "auto" else recipe


async def generate_record(client: LLMClient, config: MemoryConfig, record_seed: str, catalogue: Catalogue,
                          recipe: str, progress: tqdm | None = None) -> dict:
    """One benchmark record (see the module docstring for its layout)."""
    started = time.perf_counter()
    plans = plan_sessions(config, catalogue, record_seed, RESERVED_TURNS if recipe == "turns" else 0)
    lines = draw_user_lines(plans, catalogue, record_seed) if recipe == "turns" else []  # no line said twice

    async def one(plan: SessionPlan) -> SessionResult:
        if recipe == "turns":
            result = await generate_session_turns(client, plan, catalogue, record_seed, config.max_attempts,
                                                  lines[plan.index])
        else:
            result = await generate_session_one_call(client, plan, record_seed, config.min_turns, config.max_turns,
                                                     config.max_attempts)
        if progress is not None:
            progress.update(1)
        return result

    results = await asyncio.gather(*(one(p) for p in plans))
    kept = [r for r in results if r.status == "passed"]  # answers must agree with every chunk a model reads
    chunks = [render_chunk(r.plan.date, r.dialogue) for r in kept]
    transactions: list[Transaction] = [t for i, r in enumerate(kept) for t in to_transactions(r, i)]
    chunk_dates = [r.plan.date for r in kept]

    scene_order = list(catalogue.scenes)
    questions, counts, rephrase = [], {}, None
    if kept:
        draw = draw_questions(transactions, chunk_dates, scene_order, config.num_questions, record_seed)
        questions = draw.questions
        counts = {"requested": draw.requested, "shortfall": draw.shortfall}
        if not config.no_diversify and questions:
            report = await rephrase_questions(client, questions, scene_order, record_seed)
            questions = [replace(q, query=text) for q, text in zip(questions, report.queries)]
            rephrase = report.as_dict()
    counts["generated"] = {c: sum(q.category == c for q in questions) for c in CATEGORIES}

    task_hex = f"{random.Random(f'{record_seed}:task').getrandbits(32):08x}"
    return {
        "task_id": f"consumption_tracking_{task_hex}",
        "questions": [q.to_dict(f"synth_{task_hex}_{i}") for i, q in enumerate(questions)],
        "chunks": chunks,
        "metadata": {
            "num_sessions": len(kept),
            "num_turns": sum(len(r.dialogue) for r in kept),
            "num_transactions": len(transactions),
            "date_range": {"start": chunk_dates[0], "end": chunk_dates[-1]} if kept else None,
            "scenes": [s for s in scene_order if any(t.scene == s for t in transactions)],
            "total_amount": spent_cents(transactions) / 100,
            "total_amount_text": format_cents(spent_cents(transactions)),
            "transaction_events": [t.to_dict() for t in transactions],
            "personas": sorted({r.plan.persona for r in kept}),
            "consistency": consistency_report(results, recipe, config.max_attempts),
            "question_counts": counts,
            "rephrase": rephrase if rephrase is not None else "off" if config.no_diversify else "no questions",
            "generator": {"record_seed": record_seed, "recipe": recipe, "parameters": asdict(config),
                          "elapsed_s": round(time.perf_counter() - started, 2)},
        },
    }


async def generate_records(client: LLMClient, config: MemoryConfig, catalogue: Catalogue | None = None,
                           show_progress: bool = True, embedded: bool = False) -> list[dict]:
    """`num_records` records, generated concurrently under the client's concurrency limit."""
    config.check()
    catalogue = catalogue or load_catalogue()
    recipe = resolve_recipe(config.recipe, embedded)
    seeds = [str(config.seed)] if config.num_records == 1 else [f"{config.seed}:{r}" for r in range(config.num_records)]
    with progress_bar(total=config.num_sessions * config.num_records, desc="sessions", unit="session",
                      disable=not show_progress) as progress:
        return list(await asyncio.gather(*(generate_record(client, config, s, catalogue, recipe, progress)
                                           for s in seeds)))


def write_json_atomic(path: str | Path, data: object) -> Path:
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(scrub_text(json.dumps(data, ensure_ascii=False, indent=1)))
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_dataset(path: str | Path, records: list[dict]) -> Path:
    """One record as an object, several as a list (see the module docstring)."""
    return write_json_atomic(path, records[0] if len(records) == 1 else records)


class DatasetError(ValueError):
    """A dataset file that is not one `memory generate` writes: names the file, the record and the place."""


def holds_json_keys(path: Path, keys: set[str]) -> bool:
    """Whether `path` is JSON whose object (or every object of its list) has `keys`: how a memory
    command recognises its own earlier output, which it may replace without --force."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    items = value if isinstance(value, list) and value else [value]
    return all(isinstance(item, dict) and keys <= set(item) for item in items)


def is_dataset(path: Path) -> bool:
    """Whether `path` holds what `generate` writes (a benchmark dataset)."""
    return holds_json_keys(path, {"task_id", "questions", "chunks", "generator"})


def read_dataset(path: str | Path) -> list[dict]:
    """The records of a dataset file (object or list), every field a scorer reads checked for its type
    and range (a DatasetError naming the place for anything else)."""
    path = Path(path)
    try:
        data = load_json(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    records = data if isinstance(data, list) else [data]
    for r, record in enumerate(records):
        where = f"{path}: record {r}" if isinstance(data, list) else str(path)
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: a record must be a JSON object")
        for key, kind in (("task_id", str), ("questions", list), ("chunks", list)):
            if not isinstance(record.get(key), kind):
                raise DatasetError(f"{where}: missing or malformed '{key}'")
        for c, chunk in enumerate(record["chunks"]):
            if not isinstance(chunk, str):
                raise DatasetError(f"{where}: chunk {c} is not a string (it is {json.dumps(chunk)[:40]})")
        for i, q in enumerate(record["questions"]):
            if problem := _question_problem(q, len(record["chunks"])):
                raise DatasetError(f"{where}: question {i} {problem}")
    return records


def _question_problem(q: object, chunks: int) -> str | None:
    """Why a question cannot be asked and scored, or None: its answer is scored by its category's kind
    (an amount is read as a number, a date compared as YYYY-MM-DD)."""
    if not isinstance(q, dict) or not {"qid", "query", "answer", "position", "category"} <= q.keys():
        return "lacks qid/query/answer/position/category"
    for key in ("qid", "query", "answer", "category"):
        if not isinstance(q[key], str):
            return f"has {key} {json.dumps(q[key])[:40]}, not a string"
    if q["category"] not in ANSWER_KIND:
        return f"has category {q['category']!r}, not one of {', '.join(ANSWER_KIND)}"
    position = q["position"]
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < chunks:
        return f"has position {json.dumps(position)[:40]} outside the chunks"
    kind = ANSWER_KIND[q["category"]]
    if kind == "amount" and not _is_amount(q["answer"]):
        return f"has answer {q['answer'][:40]!r}, not an amount"
    if kind == "date" and not ISO_DATE.fullmatch(q["answer"]):
        return f"has answer {q['answer'][:40]!r}, not a date (YYYY-MM-DD)"
    return None


def _is_amount(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def summary_lines(record: dict, index: int, total: int) -> list[str]:
    """The seed's summary block for one record, plus the consistency counts."""
    meta = record["metadata"]
    rng = meta["date_range"]
    cons = meta["consistency"]
    lines = [f"=== Generating dataset {index + 1}/{total} ===",
             f"Generated {meta['num_sessions']} of {cons['sessions_planned']} planned dates"
             + (f": {rng['start']} to {rng['end']}" if rng else ""),
             f"Total: {meta['num_turns']} turns, {meta['num_transactions']} transactions",
             f"Generated {len(record['questions'])} questions", "",
             f"   - Task ID: {record['task_id']}",
             f"   - Sessions: {meta['num_sessions']}",
             f"   - Chunks: {len(record['chunks'])}",
             f"   - Turns: {meta['num_turns']}",
             f"   - Transactions: {meta['num_transactions']}",
             f"   - Questions: {len(record['questions'])}",
             f"   - Total amount: {meta['total_amount_text']}",
             f"   - Sessions ({cons['recipe']}): {cons['sessions_passed']} passed, {cons['sessions_flagged']} "
             f"flagged and {cons['sessions_rejected']} rejected (left out); {cons['transactions_kept']}/"
             f"{cons['transactions_planned']} planned transactions kept; {cons['requests']} requests"]
    if cons["turn_funnel"]:
        funnel = cons["turn_funnel"]
        lines.append(f"   - Model turns: {funnel.get('kept', 0)} kept of {funnel.get('asked', 0)} candidates; "
                     + ", ".join(f"{k} {v}" for k, v in funnel.items() if k not in ("asked", "kept")))
    if isinstance(meta["rephrase"], dict):
        lines.append(f"   - Rephrased: {meta['rephrase']['rewritten']}, kept original: "
                     f"{meta['rephrase']['kept_original']}")
    if meta["question_counts"].get("shortfall"):
        lines.append(f"   - Fewer distinct questions than asked for: {meta['question_counts']['shortfall']}")
    return lines


def generate(config: MemoryConfig, out: str | Path | None = None, endpoint: str | None = None,
             model: str | None = None, show_progress: bool = True, cache: bool = True,
             timeout: float = DEFAULT_TIMEOUT_S, item_timeout: float = DEFAULT_ITEM_TIMEOUT_S) -> list[dict]:
    """Generate `config.num_records` records with the configured endpoint (the embedded model when none)
    and write them to `out` if given (holding its lock, kit.locking, meanwhile). Works from scripts and
    from Jupyter (no event loop juggling). `cache=False` asks the server even for cached replies;
    `timeout` bounds one request (body included), `item_timeout` all attempts at one.

    Raises LLMError, writing nothing, when no session passed (a server answering HTML, a refused port,
    a model that only loops): a dataset of zero sessions is a failure, not a result."""
    config.check()
    if out is None:
        return _generate(config, None, endpoint, model, show_progress, cache, timeout, item_timeout)
    with exclusive(out):
        return _generate(config, out, endpoint, model, show_progress, cache, timeout, item_timeout)


def _generate(config, out, endpoint, model, show_progress, cache, timeout, item_timeout) -> list[dict]:
    catalogue = load_catalogue()
    embedded = not endpoints_from_env(endpoint, model)

    async def main() -> list[dict]:
        # connect() sends the embedded server one request at a time whatever llm_concurrency says
        async with connect(endpoint, model, concurrency=config.llm_concurrency, timeout=timeout,
                           item_timeout=item_timeout, cache_dir=cache_dir() if cache else None) as client:
            records = await generate_records(client, config, catalogue, show_progress, embedded)
            source = {"model": client.endpoints[0].model,
                      "endpoint": "embedded" if embedded else ", ".join(ep.base_url for ep in client.endpoints),
                      "concurrency": client.concurrency,
                      "llm_stats": client.stats.as_dict()}
        for record in records:
            record["metadata"]["generator"].update(source)
        return records

    records = run_sync(main())
    if not any(record["chunks"] for record in records):
        stats = records[0]["metadata"]["generator"]["llm_stats"]
        what = "session passed its checks" if stats["completions"] or stats["cache_hits"] else "request got a reply"
        raise LLMError(f"no {what} ({first_problem(records)}); nothing written")
    if out is not None:
        write_dataset(out, records)
    return records


def first_problem(records: list[dict]) -> str:
    """The first session problem of the records, to say why a run produced nothing."""
    for record in records:
        for item in record["metadata"]["consistency"]["problems"]:
            if item["problems"]:
                return f"{item['date']}: {item['problems'][0]}"
    return "no problem recorded"


def cache_note(records: list[dict]) -> str | None:
    """Said when nothing was asked: every reply came from the reply cache."""
    stats = records[0]["metadata"]["generator"]["llm_stats"] if records else {}
    if stats and stats.get("requests") == 0 and stats.get("cache_hits"):
        return (f"0 requests: all {stats['cache_hits']} replies from the cache of model "
                f"{records[0]['metadata']['generator']['model']} (--no-cache asks the server again)")
    return None
