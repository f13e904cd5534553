"""Evaluating a model on a memory dataset: each question with only the sessions before its position.

For question q the model sees chunks 0..q.position (what had been said by the time the question
becomes answerable) and the question, and answers `{"answer": "..."}`. Scoring:
- amounts: the first number in the answer (thousands separators and currency words allowed) must be
  within max(0.01, 1% of the expected amount) of it;
- scenes: the answer must name exactly one catalogue scene, the right one (any case);
- dates: every date in the answer (2024-03-05, 2024/3/5, March 5, 2024, 5 March 2024) must be the
  expected one, and there must be at least one.
A question whose request failed is not scored (`correct` null, `error` says why) but counted in
`errors`: accuracy is over the answered questions, so a down endpoint never reads as a model that
answers everything wrong.

Context: `context_tokens` bounds the prompt (the embedded server's window is 4096 tokens; None means
no bound). Text is budgeted at CHARS_PER_TOKEN characters a token, a cautious figure for English
with per-digit number tokens. When the chunks do not fit, the oldest whole chunks are left out first
(the newest ones hold the question's end date), then the oldest lines of the newest chunk; each item
records what was cut and the summary counts the questions whose context was cut. Should the server
still refuse the prompt as too long, it is retried with a smaller budget.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from kit.llm.endpoints import endpoints_from_env
from kit.llm.client import (DEFAULT_ITEM_TIMEOUT_S, DEFAULT_TIMEOUT_S, FatalAPIError, LLMClient, RetriesExhausted,
                            connect, run_sync)
from kit.llm.reply import parse_json_reply
from kit.llm.local_server import DEFAULT_CONTEXT, default_gguf
from kit.memory.dataset import holds_json_keys, read_dataset, write_json_atomic
from kit.memory.questions import ANSWER_KIND, CATEGORIES
from kit.memory.rankers import RETRIEVERS, rank
from kit.memory.scenes import load_scenes
from kit.memory.sessions import fill, load_prompt
from kit.paths import cache_dir
from kit.progress import progress_bar
from kit.text import NUMBER, number_value

CHARS_PER_TOKEN = 3.0
REPLY_TOKENS = 48
RELATIVE_TOLERANCE = 0.01
ABSOLUTE_TOLERANCE = 0.01
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}
MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june", "july", "august",
                                      "september", "october", "november", "december"], 1)}
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_PATTERNS = (
    (re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b"), ("y", "m", "d")),
    (re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I), ("M", "d", "y")),
    (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b", re.I), ("d", "M", "y")),
)
_NUMBER = re.compile(rf"-?(?:{NUMBER})")  # signed


def token_counts(texts: list[str], gguf: str | Path | None = None) -> list[int]:
    """Tokens of each text in a GGUF model's own tokenizer (default: the embedded model's; only its
    vocabulary is loaded, no weights): how a session compares with that model's context window."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp prints its loading log on stderr
        vocab = llama_cpp.Llama(str(gguf or default_gguf()), vocab_only=True, verbose=False, n_ctx=64)
    return [len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)) for text in texts]


def answer_format(kind: str, scenes: list[str]) -> str:
    if kind == "amount":
        return "Give only the amount, as a number with two decimals."
    if kind == "scene":
        return f"Give only one category name, one of: {', '.join(scenes)}."
    return "Give only the date as YYYY-MM-DD."


def first_amount(text: str) -> float | None:
    match = _NUMBER.search(text.replace("\u00a0", " "))
    return number_value(match.group()) if match else None


def dates_in(text: str) -> set[str]:
    found = set()
    for pattern, order in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            parts = dict(zip(order, m.groups()))
            month = int(parts["m"]) if "m" in parts else next(
                n for name, n in MONTHS.items() if name.startswith(parts["M"][:3].lower()))
            day, year = int(parts["d"]), int(parts["y"])
            if 1 <= month <= 12 and 1 <= day <= 31:
                found.add(f"{year:04d}-{month:02d}-{day:02d}")
    return found


def score(category: str, expected: str, predicted: str, scenes: list[str]) -> bool:
    """Is `predicted` right for a question of `category` whose answer is `expected` (see module doc)."""
    kind = ANSWER_KIND[category]
    if kind == "amount":
        value = first_amount(predicted)
        target = float(expected)
        return value is not None and abs(value - target) <= max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(target))
    if kind == "scene":
        named = {s for s in scenes if re.search(rf"\b{re.escape(s)}\b", predicted, re.I)}
        return named == {expected}
    found = dates_in(predicted)
    return found == {expected}


@dataclass
class Context:
    text: str
    chunks_given: int
    chunks_dropped: int
    lines_dropped: int


def parse_context(spec: str) -> tuple[str, int | None]:
    """"full", "last", "bm25:3", "recent:2" -> (mode, k). Raises ValueError naming the bad spec."""
    mode, _, k = spec.partition(":")
    if mode in ("full", "last") and not k:
        return mode, None
    if mode in RETRIEVERS and mode != "all" and k.isdigit() and int(k) >= 1:
        return mode, int(k)
    raise ValueError(f"context {spec!r}: use full, last, bm25:K or recent:K (K >= 1)")


def select_chunks(spec: str, question: dict, chunks: list[str]) -> list[int]:
    """The sessions a question is asked with, in date order (see parse_context)."""
    mode, k = parse_context(spec)
    position = question["position"]
    if mode == "full":
        return list(range(position + 1))
    if mode == "last":
        return [position]
    return sorted(rank(mode, question["query"], chunks, position)[:k])


def fit_context(chunks: list[str], position: int, budget_chars: int | None,
                selected: list[int] | None = None) -> Context:
    """Chunks 0..position (or the `selected` ones), newest kept first when they do not all fit in `budget_chars`."""
    wanted = chunks[:position + 1] if selected is None else [chunks[i] for i in selected]
    if budget_chars is None:
        return Context("\n\n".join(wanted), len(wanted), 0, 0)
    kept: list[str] = []
    used = 0
    for chunk in reversed(wanted):
        if used + len(chunk) + 2 > budget_chars:
            break
        kept.insert(0, chunk)
        used += len(chunk) + 2
    lines_dropped = 0
    if not kept:  # even the newest chunk is too long: keep its newest lines
        lines = wanted[-1].split("\n")
        while lines and sum(len(line) + 1 for line in lines) > budget_chars:
            lines.pop(0)
            lines_dropped += 1
        kept = ["\n".join(lines)] if lines else []
    return Context("\n\n".join(kept), len(kept), len(wanted) - len(kept), lines_dropped)


def prompt_budget(question: dict, scenes: list[str], context_tokens: int | None) -> int | None:
    """Characters left for the sessions once the template and the question are in (None: no bound)."""
    if context_tokens is None:
        return None
    overhead = len(eval_prompt("", question, scenes))
    return int((context_tokens - REPLY_TOKENS) * CHARS_PER_TOKEN) - overhead


def eval_prompt(context: str, question: dict, scenes: list[str]) -> str:
    """The prompt that asks `question` after the sessions in `context` (knowledge/prompts/memory_eval.txt)."""
    return fill(load_prompt("memory_eval.txt"), "memory_eval.txt", context=context,
                answer_format=answer_format(ANSWER_KIND.get(question["category"], "amount"), scenes),
                question=question["query"])


async def _ask(client: LLMClient, record: dict, question: dict, scenes: list[str],
               context_tokens: int | None, context_spec: str = "full", stream: int | None = None) -> dict:
    category = question["category"]
    budget = prompt_budget(question, scenes, context_tokens)
    item = {"task_id": record["task_id"], "qid": question["qid"], "category": category,
            "query": question["query"], "answer": question["answer"], "position": question["position"]}
    selected = select_chunks(context_spec, question, record["chunks"])
    for _ in range(3):
        context = fit_context(record["chunks"], question["position"], budget, selected)
        prompt = eval_prompt(context.text, question, scenes)
        try:
            completion = await client.complete([{"role": "user", "content": prompt}], schema=SCHEMA,
                                               schema_name="answer", temperature=0.0, max_tokens=REPLY_TOKENS,
                                               seed=0, stream=stream)
        except FatalAPIError as exc:
            too_long = exc.status == 400 and re.search(r"context|too long|exceed|tokens", str(exc), re.I)
            if not too_long or budget is None or budget < 200:
                if too_long:
                    return {**item, "prediction": "", "correct": None, "error": str(exc)}
                raise
            budget = budget * 6 // 10
            continue
        except RetriesExhausted as exc:
            return {**item, "prediction": "", "correct": None, "error": str(exc)}
        reply = parse_json_reply(completion.text)
        raw = completion.text.strip()
        if isinstance(reply.value, dict) and isinstance(reply.value.get("answer"), (str, int, float)):
            prediction = str(reply.value["answer"]).strip()
        else:
            prediction = raw
        return {**item, "prediction": prediction, "raw": raw[:500],
                "correct": score(category, question["answer"], prediction, scenes),
                "chunks_selected": selected, "chunks_given": context.chunks_given,
                "chunks_dropped": context.chunks_dropped,
                "lines_dropped": context.lines_dropped, "error": None}
    return {**item, "prediction": "", "correct": None, "error": "prompt too long even after cutting context"}


def summarize(items: list[dict]) -> dict:
    """Accuracy over the answered questions, overall and per category (see the module docstring)."""
    by_category: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        by_category[item["category"]].append(item)

    def acc(group: list[dict]) -> dict:
        flags = [i["correct"] for i in group if i["error"] is None]
        return {"correct": sum(flags), "total": len(flags), "errors": len(group) - len(flags),
                "accuracy": sum(flags) / len(flags) if flags else None}

    order = [c for c in CATEGORIES if c in by_category] + sorted(set(by_category) - set(CATEGORIES))
    return {"overall": acc(items), "per_category": {c: acc(by_category[c]) for c in order}}


async def evaluate_records(client: LLMClient, records: list[dict], context_tokens: int | None,
                           show_progress: bool = True, context: str = "full") -> list[dict]:
    """Every question's item, in dataset order. Questions are sent grouped by the sessions they are
    asked with: a server that answers one request at a time (the embedded one) reuses the KV cache of
    the shared prompt prefix (the sessions come first) instead of reading the same sessions again.
    With several servers the ordered questions are cut into one contiguous stream per server, so
    neighbours that share sessions meet the same cache (taking them in turns read the notebook's
    full-context prompts 23,117 tokens' worth; streams, 15,709)."""
    scenes = list(load_scenes())
    pairs = [(r, q) for r in records for q in r["questions"]]
    owner = [n for n, r in enumerate(records) for _ in r["questions"]]
    order = sorted(range(len(pairs)), key=lambda i: (owner[i], select_chunks(context, pairs[i][1], pairs[i][0]["chunks"]),
                                                     i))
    streams = min(len(client.endpoints), len(order)) or 1
    gates = [asyncio.Semaphore(max(1, client.concurrency // streams)) for _ in range(streams)]
    with progress_bar(total=len(pairs), desc="questions", unit="q", disable=not show_progress) as progress:
        async def one(position: int, record: dict, question: dict) -> dict:
            stream = position * streams // len(order)
            async with gates[stream]:  # a stream's next question waits for its server, not for any server
                item = await _ask(client, record, question, scenes, context_tokens, context, stream)
            progress.update(1)
            return item

        answered = await asyncio.gather(*(one(k, *pairs[i]) for k, i in enumerate(order)))
    items: list[dict] = [{}] * len(pairs)
    for i, item in zip(order, answered):
        items[i] = item
    return items


def evaluate(dataset: str | Path, endpoint: str | None = None, model: str | None = None,
             out: str | Path | None = None, context_tokens: int | None | str = "auto",
             concurrency: int = 8, show_progress: bool = True, context: str = "full", cache: bool = True,
             timeout: float = DEFAULT_TIMEOUT_S, item_timeout: float = DEFAULT_ITEM_TIMEOUT_S) -> dict:
    """Score a model (the embedded one when no endpoint is configured) on every question of `dataset`.

    context_tokens: "auto" bounds prompts by the embedded server's window and leaves other endpoints
    unbounded; an int bounds them; None never cuts.
    context: which sessions a question is asked with (`parse_context`): "full" (0..position), "last"
    (the position's session), "bm25:K" or "recent:K" (a ranker's top K, kit.memory.rankers).
    cache=False asks the server even for cached replies; `timeout` bounds one request (body
    included), `item_timeout` all attempts at one question: the same meanings as `kit generate`'s.
    """
    parse_context(context)
    records = read_dataset(dataset)
    embedded = not endpoints_from_env(endpoint, model)
    if context_tokens == "auto":
        context_tokens = DEFAULT_CONTEXT if embedded else None
    started = time.perf_counter()

    async def main() -> tuple[list[dict], dict, str]:
        async with connect(endpoint, model, concurrency=concurrency, cache_dir=cache_dir() if cache else None,
                           timeout=timeout, item_timeout=item_timeout) as client:
            items = await evaluate_records(client, records, context_tokens, show_progress, context)
            return items, client.stats.as_dict(), client.endpoints[0].model

    items, stats, model_name = run_sync(main())
    result = {
        "dataset": str(dataset),
        "model": model_name,
        "endpoint": "embedded" if embedded else endpoint or "from environment",
        "scoring": {"amount": f"first number within max({ABSOLUTE_TOLERANCE}, {RELATIVE_TOLERANCE:.0%} of expected)",
                    "scene": "exactly one scene named, the expected one (any case)",
                    "date": "every date given equals the expected one"},
        "context": context,
        "context_tokens": context_tokens,
        "chars_per_token": CHARS_PER_TOKEN,
        **summarize(items),
        "questions_with_context_cut": sum(bool(i.get("chunks_dropped") or i.get("lines_dropped")) for i in items),
        "errors": sum(i["error"] is not None for i in items),
        "elapsed_s": round(time.perf_counter() - started, 2),
        "llm_stats": stats,
        "items": items,
    }
    if out is not None:
        write_json_atomic(out, result)
    return result


def is_evaluation(path: Path) -> bool:
    """Whether `path` holds what `evaluate` writes (replacing it loses one evaluation)."""
    return holds_json_keys(path, {"dataset", "scoring", "items"})


def accuracy_table(result: dict) -> str:
    """Accuracy per category and overall as an aligned text table."""
    rows = [(c, v) for c, v in result["per_category"].items()] + [("overall", result["overall"])]
    width = max(len(c) for c, _ in rows)
    lines = [f"{'category':<{width}}  correct  accuracy", "-" * (width + 19)]
    for name, v in rows:
        if name == "overall":
            lines.append("-" * (width + 19))
        accuracy = "n/a" if v["accuracy"] is None else f"{v['accuracy']:.1%}"
        not_scored = f"  ({v['errors']} not scored: request failed)" if v.get("errors") else ""
        lines.append(f"{name:<{width}}  {v['correct']:>3}/{v['total']:<3}  {accuracy:>8}{not_scored}")
    return "\n".join(lines)
