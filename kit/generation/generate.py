"""Bulk generation of identity conversations: resumable, in index order, nothing lost.

    generate(100, "runs/interactive/data/conversations.jsonl", workers=8)
    python -m kit generate --num 100 --workers 8 --output runs/x/data/conversations.jsonl

Item `i` samples its elements (kit.generation.sampling), renders its prompt (kit.generation.prompts), asks the model for
JSON (schema attached: the turn-order grammar form when every endpoint is llama.cpp, the portable
form otherwise; a per-item `seed`, so sampling servers repeat themselves), repairs almost-JSON, and
validates the conversation (kit.rules). A failing item is asked again with its specific
problems appended (`reasks` times, default 1); after that it is rejected with every reason and the
raw reply. Nothing is dropped silently. `workers` requests are in flight at once, except against
the embedded model, which answers one at a time and so is sent one at a time.

Files, all beside the output (`conversations.jsonl` here):

    conversations.jsonl.journal.jsonl   the source of truth: one line per finished index
    conversations.jsonl                 accepted records, in index order
    conversations.rejects.jsonl         rejected items: index, reasons, raw reply, sampled elements
    conversations.manifest.json         the last call (and a history of all): counts, reasons, tokens, cost

Crash safety. Each finished item (accepted or rejected) is appended to the journal as one line and
flushed to the operating system before the next is recorded; a thread fsyncs the journal behind the
run, many lines at a time (group commit, kit.generation.journal), so a power cut can lose only the
last milliseconds of items, which the next run asks for again. The output and rejects files are never
appended to: they are rewritten from the journal, once it is synced, atomically (temp file + rename),
every FLUSH_EVERY_S seconds and when a run ends, so a reader or a SIGKILL never meets half a line. A
kill can only cut the journal's last line short; the next run drops that fragment. Re-running the same
command then requests only the indices the journal lacks (plus items rejected for API errors, which are
worth another try); a finished index is never asked for again, even with the response cache off.

Runs and indices. A journal remembers its seed and recipe and every range of indices asked of it.
Without flags a run asks for indices 0..num-1; `append=True` asks for `num` new indices after the
highest one asked so far; `fresh=True` deletes the files and starts over. Every run also finishes
indices an earlier, interrupted run had planned. The output always holds every accepted record the
journal has, so asking for fewer than exist keeps the rest.

Never writing over what the kit did not make (kit.generation.ownership): a run writes into a journal,
rejects or manifest file only when it names this command and this output, and deletes (`fresh`) an
output only when its journal is this generator's; anything else there is the user's, or another
command's, and is replaced only with `force=True` (`--force`). Two outputs that would share their
rejects and manifest (x.jsonl, x.json) are refused. Every check comes before the first byte is
written, so a run refused (or a user's file with a broken line under `append`) leaves no file behind.
`append` onto a user's file keeps each of its lines byte for byte, and a plan past
kit.generation.journal.MAX_PLANNED indices is refused before it is recorded.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from kit.llm.endpoints import endpoints_from_env
from kit.llm.client import DEFAULT_ITEM_TIMEOUT_S, DEFAULT_TIMEOUT_S, LLMClient, RetriesExhausted, run_sync
from kit.llm.reply import parse_json_reply
from kit.locking import exclusive
from kit.manifest import now_iso, write_manifest
from kit.generation.distill import DEFAULT_CANDIDATES, DEFAULT_TURN_TOKENS, OPENERS, DistillData, converse, load_distill_data
from kit.generation.prompts import SCHEMA_NAME, PromptFiles, conversation_schema
from kit.generation.jobs import JobLoop, needs_work
from kit.generation.journal import API_ERROR, Journal, file_paths
from kit.generation.ownership import check_start
from kit.records import write_jsonl, write_lines
from kit.generation.sampling import RECIPES, load_dimensions, sample_elements
from kit.facts import default_data
from kit.rules import Problem, Rules, dynamic_message_count, errors, load_rules, validate_messages

DEFAULT_OUTPUT = "runs/interactive/data/conversations.jsonl"
DEFAULT_MAX_TOKENS = 1024  # a whole conversation (v1, v2); distill asks one answer at a time
DEFAULT_TEMPERATURE = 1.0
# distill: one answer per request, sampled a little cooler: a 135M model strays from the facts at 1.0
RECIPE_DEFAULTS = {"distill": {"max_tokens": DEFAULT_TURN_TOKENS, "temperature": 0.8}}


def sampling_settings(recipe: str, temperature: float | None, max_tokens: int | None) -> tuple[float, int]:
    """(temperature, max_tokens): the given ones, else the recipe's defaults."""
    defaults = RECIPE_DEFAULTS.get(recipe, {})
    return (defaults.get("temperature", DEFAULT_TEMPERATURE) if temperature is None else temperature,
            defaults.get("max_tokens", DEFAULT_MAX_TOKENS) if max_tokens is None else max_tokens)


def record_id(recipe: str, seed: int, index: int) -> str:
    return f"{recipe}-{seed}-{index:06d}"


def api_seed(seed: int, index: int, attempt: int) -> int:
    """The `seed` sent with a request: sampling servers (llama.cpp, vLLM) then repeat their reply."""
    return random.Random(f"{seed}:{index}:{attempt}").randrange(2**31)


# ---------------------------------------------------------------------------------------------
# One item


def check_reply(text: str, finish_reason: str | None, instructions: list[str] = (), *,
                elements: dict | None = None, rules: Rules | None = None) -> tuple[list | None, list[Problem], bool]:
    """(messages, problems, repaired) for one raw reply; `instructions` are the prompt's own lines
    (kit.generation.prompts.instruction_lines), which no message may repeat; with `rules`, the content rules
    run too, `elements` (the sampled ones) giving the recipe and the dynamic."""
    reply = parse_json_reply(text)
    cut = [Problem(None, "finish_reason", "reply was cut off at the token limit (finish_reason=length)")] \
        if finish_reason == "length" else []
    if reply.error:
        return None, cut + [Problem(None, "json", f"reply is {reply.error}")], False
    value = reply.value
    messages = value.get("messages") if isinstance(value, dict) else value
    if not isinstance(messages, list):
        return None, cut + [Problem(None, "shape", "reply has no 'messages' list")], reply.repaired
    problems = validate_messages(messages, finish_reason, rules=rules, meta=elements)
    return messages, problems + _echoes(messages, instructions), reply.repaired


def _echoes(messages: list, instructions: list[str]) -> list[Problem]:
    problems = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and (copied := next((line for line in instructions if line in content), None)):
            problems.append(Problem(i, "prompt_echo", f"repeats the generation prompt: {copied[:60]!r}"))
    return problems


@dataclass
class _ItemContext:
    client: LLMClient
    recipe: str
    seed: int
    reasks: int
    temperature: float
    max_tokens: int
    dims: Any
    rules: Rules = field(default_factory=load_rules)
    candidates: int = DEFAULT_CANDIDATES
    opener: str = "planned"
    # the knowledge base and templates, read once per run rather than looked at again per item
    prompts: PromptFiles = field(default_factory=PromptFiles)

    def __post_init__(self) -> None:
        # what the content rules read on first use (the identity files, the compiled screens), read
        # before the first request rather than in the first reply's way
        self.rules.leakage_screen
        if self.rules.severity_of("identity", self.recipe) != "off":
            default_data().foreign_screen

    @cached_property
    def distill(self) -> DistillData:
        return load_distill_data(self.dims)

    @cached_property
    def schema(self) -> dict:
        return conversation_schema(grammar=all(ep.schema_style == "llamacpp" for ep in self.client.endpoints))

    def schema_for(self, elements: dict) -> dict:
        """The schema, with a grammar's shapes narrowed to the message counts the item's dynamic allows
        (the content rule `shape`): a small model then cannot answer "three rounds" with one."""
        shapes = self.schema["properties"]["messages"].get("anyOf")
        if shapes is None or self.rules.severity_of("shape", elements.get("recipe")) == "off" or not elements.get("dynamic"):
            return self.schema
        wanted = dynamic_message_count(elements["dynamic"])
        allowed = [s for s in shapes if len(s["prefixItems"]) == wanted
                   or (wanted is None and len(s["prefixItems"]) <= self.rules.max_messages)]
        if not allowed:
            return self.schema
        return {**self.schema, "properties": {**self.schema["properties"], "messages": {"anyOf": allowed}}}


async def make_item(ctx: _ItemContext, index: int) -> tuple[dict, int]:
    """(journal entry, number of re-asks) for one index. Raises FatalAPIError only.

    An accepted entry keeps the raw reply beside the record (the journal is an audit trail); the
    output file gets only the record."""
    if ctx.recipe == "distill":
        return await _distill_item(ctx, index), 0
    elements = sample_elements(ctx.recipe, ctx.seed, index, ctx.dims)
    prompt = ctx.prompts.render(elements)
    instructions = ctx.prompts.instructions(prompt, elements)
    messages = [{"role": "user", "content": prompt}]
    usage = Counter()
    attempts: list[dict] = []
    source = {"model": None, "endpoint": None}
    schema = ctx.schema_for(elements)
    for attempt in range(ctx.reasks + 1):
        try:
            completion = await ctx.client.complete(
                messages, schema=schema, schema_name=SCHEMA_NAME, temperature=ctx.temperature,
                max_tokens=ctx.max_tokens, seed=api_seed(ctx.seed, index, attempt))
        except RetriesExhausted as exc:
            attempts.append({"finish_reason": None, "rules": [API_ERROR], "reasons": [f"API error: {exc}"], "raw": ""})
            break
        usage.update(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens)
        usage["cost_usd"] += completion.cost_usd
        source = {"model": completion.model, "endpoint": completion.endpoint}
        conversation, problems, repaired = check_reply(completion.text, completion.finish_reason, instructions,
                                                       elements=elements, rules=ctx.rules)
        failures = errors(problems)
        if not failures:
            meta = {**elements, **source, "finish_reason": completion.finish_reason, "attempts": attempt + 1,
                    "usage": _usage(usage), "repaired": repaired,
                    "warnings": [str(p) for p in problems]}
            if attempts:  # why the first reply was not good enough (notebook 01 shows it)
                meta["first_attempt_problems"] = attempts[0]["reasons"]
            record = {"id": record_id(ctx.recipe, ctx.seed, index),
                      "messages": [{"role": m["role"], "content": _tidy(m["content"])} for m in conversation],
                      "meta": meta}
            return {"index": index, "status": "accepted", "record": record, "raw": completion.text}, attempt
        reasons = [str(p) for p in failures]
        attempts.append({"finish_reason": completion.finish_reason, "rules": sorted({p.rule for p in failures}),
                         "reasons": reasons, "raw": completion.text})
        if attempt < ctx.reasks:
            messages = ctx.prompts.reask(prompt, completion.text, reasons)
    last = attempts[-1]
    reject = {"index": index, "id": record_id(ctx.recipe, ctx.seed, index), "rules": last["rules"],
              "reasons": last["reasons"], "raw": last["raw"], "attempts": attempts,
              "meta": {**elements, **source, "usage": _usage(usage)}}
    return {"index": index, "status": "rejected", "reject": reject}, max(0, len(attempts) - 1)


async def _distill_item(ctx: _ItemContext, index: int) -> dict:
    """One item of recipe distill (kit.generation.distill): the planned turns, K verified answers each."""
    elements = sample_elements(ctx.recipe, ctx.seed, index, ctx.dims)
    meta = {**elements, "user_turns": "composed", "opener": ctx.opener, "reference_data": False}
    rid = record_id(ctx.recipe, ctx.seed, index)

    async def complete(messages: list[dict], turn: int, candidate: int):
        return await ctx.client.complete(messages, temperature=ctx.temperature, max_tokens=ctx.max_tokens,
                                         seed=api_seed(ctx.seed, index, 1000 * turn + candidate))

    try:
        outcome = await converse(complete, elements, ctx.distill, candidates=ctx.candidates, opener=ctx.opener,
                                 rules=ctx.rules, knowledge=ctx.prompts.knowledge)
    except RetriesExhausted as exc:
        reject = {"index": index, "id": rid, "rules": [API_ERROR], "reasons": [f"API error: {exc}"], "raw": "",
                  "attempts": [], "meta": meta}
        return {"index": index, "status": "rejected", "reject": reject}
    meta.update(outcome.source, turns=outcome.turns, usage=_usage(outcome.usage))
    if outcome.messages is None:
        reject = {"index": index, "id": rid, "rules": outcome.rules, "reasons": outcome.reasons,
                  "raw": "\n---\n".join(outcome.raw), "attempts": [], "meta": meta}
        return {"index": index, "status": "rejected", "reject": reject}
    record = {"id": rid, "messages": outcome.messages, "meta": {**meta, "warnings": []}}
    return {"index": index, "status": "accepted", "record": record}


def _tidy(content: Any) -> Any:
    """Strip the whitespace models put around a turn; content parts stay as they are."""
    return content.strip() if isinstance(content, str) else content


def _usage(usage: Counter) -> dict:
    return {"prompt_tokens": int(usage["prompt_tokens"]), "completion_tokens": int(usage["completion_tokens"]),
            "cost_usd": round(float(usage["cost_usd"]), 8)}


def generate_one(client: LLMClient, index: int, *, recipe: str = "v2", seed: int = 0, reasks: int = 1,
                 temperature: float | None = None, max_tokens: int | None = None,
                 candidates: int = DEFAULT_CANDIDATES, opener: str = "planned") -> dict:
    """One item through the whole path a bulk run takes (sample, prompt, ask, repair, validate,
    re-ask; for distill, every turn's candidates), without writing anything: {index, status, record,
    raw} or {index, status, reject}."""
    ctx = _ItemContext(client, recipe, seed, reasks, *sampling_settings(recipe, temperature, max_tokens),
                       load_dimensions(), candidates=candidates, opener=opener)
    entry, _ = run_sync(make_item(ctx, index))
    return entry


# ---------------------------------------------------------------------------------------------
# A run


@dataclass
class RunSummary:
    """What one call did (this call's work) and what the files hold now."""

    output: str
    rejects: str
    manifest: str
    status: str  # complete | interrupted | failed
    asked: int  # indices this call was responsible for
    already_done: int  # of those, finished by an earlier run
    accepted: int
    rejected: int
    reject_reasons: dict[str, int]  # rejected items per failed rule (an item can fail several)
    first_api_error: str | None  # "index N: reason" of the lowest index rejected for an API error
    in_output: int
    in_rejects: int
    requests: int  # HTTP requests sent (retries included); cache hits are free
    cache_hits: int
    retries: int
    reasks: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    elapsed_s: float
    model: str | None = None

    @property
    def conversations_per_s(self) -> float:
        finished = self.accepted + self.rejected
        return finished / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "conversations_per_s": round(self.conversations_per_s, 3)}

    def api_failure(self) -> str | None:
        """What went wrong when items ended as API errors, else None. Unlike content rejects these were
        never answered: the run is not done, and running the same call again retries exactly them."""
        n = self.reject_reasons.get(API_ERROR, 0)
        if not n:
            return None
        return (f"{n} of {self.accepted + self.rejected} items failed with API errors (first, "
                f"{self.first_api_error}); run the same generation again to retry them")

    def cache_note(self) -> str | None:
        """Said when nothing was asked: the replies are old ones, perhaps from an earlier server."""
        if self.requests == 0 and self.cache_hits:
            return (f"0 requests: all {self.cache_hits} replies from the cache of model {self.model} "
                    f"(--no-cache asks the server again)")
        return None

    def __str__(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.reject_reasons.items())) or "none"
        return (f"{self.status}: {self.accepted} accepted, {self.rejected} rejected ({reasons}), "
                f"{self.already_done} already done; {self.in_output} records in {Path(self.output).name}; "
                f"{self.requests} requests, {self.cache_hits} cache hits, {self.retries} retries, "
                f"{self.reasks} re-asks; {self.prompt_tokens}+{self.completion_tokens} tokens, "
                f"${self.cost_usd:.4f}; {self.elapsed_s:.1f} s")


async def agenerate(num: int, output: str | Path = DEFAULT_OUTPUT, *, workers: int = 8, seed: int = 0,
                    recipe: str = "v2", endpoint: str | list[str] | None = None, model: str | None = None,
                    append: bool = False, fresh: bool = False, save_metadata: bool = True, reasks: int = 1,
                    temperature: float | None = None, max_tokens: int | None = None,
                    candidates: int = DEFAULT_CANDIDATES, opener: str = "planned",
                    prices: tuple[float, float] | None = None, progress: bool = True,
                    client: LLMClient | None = None, cache: bool = True, timeout: float = DEFAULT_TIMEOUT_S,
                    item_timeout: float = DEFAULT_ITEM_TIMEOUT_S, force: bool = False) -> RunSummary:
    """The async core of `generate` (same arguments); use it from async code. Holds the output's lock
    (kit.locking) for the whole run: a second run on the same output fails at once with LockedError."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if opener not in OPENERS:
        raise ValueError(f"unknown opener {opener!r}; choose one of {', '.join(OPENERS)}")
    temperature, max_tokens = sampling_settings(recipe, temperature, max_tokens)
    for name, value, least in (("num", num, 0), ("workers", workers, 1), ("reasks", reasks, 0),
                               ("candidates", candidates, 1)):
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    if append and fresh:
        raise ValueError("append and fresh exclude each other: fresh starts over, append adds to what exists")
    if client is None:
        endpoints_from_env(endpoint, model)  # a URL that is not one is refused before any file is touched
    files = file_paths(output)
    if problem := Journal(files["journal"]).plan_problem((0, num)):
        raise ValueError(problem)
    # refused before the lock file (or the output's folder) is made; checked again under the lock
    check_start(files, append=append, fresh=fresh, force=force)
    run = _Run(num, workers, seed, recipe, append, fresh, save_metadata, reasks, temperature, max_tokens,
               candidates, opener, prices, progress, cache, timeout, item_timeout, force)
    with exclusive(files["output"]):
        return await _agenerate_locked(files, run, client, endpoint, model)


@dataclass(frozen=True)
class _Run:
    """The settings of one generation call, checked (`agenerate`'s arguments but the endpoint and client)."""

    num: int
    workers: int
    seed: int
    recipe: str
    append: bool
    fresh: bool
    save_metadata: bool
    reasks: int
    temperature: float
    max_tokens: int
    candidates: int
    opener: str
    prices: tuple[float, float] | None
    progress: bool
    cache: bool
    timeout: float
    item_timeout: float
    force: bool

    @property
    def distill_settings(self) -> dict:
        """What else decides a distill item's answers: another value would mix two recipes in one file."""
        return {"candidates": self.candidates, "opener": self.opener} if self.recipe == "distill" else {}

    def parameters(self) -> dict:
        """The manifest's record of them."""
        distill = self.recipe == "distill"
        return {"num": self.num, "workers": self.workers, "seed": self.seed, "recipe": self.recipe,
                "append": self.append, "fresh": self.fresh, "save_metadata": self.save_metadata,
                "reasks": self.reasks, "candidates": self.candidates if distill else None,
                "opener": self.opener if distill else None, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "cache": self.cache, "timeout_s": self.timeout,
                "item_timeout_s": self.item_timeout,
                "prices_per_million": list(self.prices) if self.prices else None}


def _open_journal(files: dict[str, Path], run: _Run) -> tuple[Journal, list[int]]:
    """The output's journal, its plan recorded, and the indices this call answers for. Every check comes
    before the first byte is written or deleted."""
    begin = check_start(files, append=run.append, fresh=run.fresh, force=run.force)
    journal = Journal(files["journal"])
    if files["journal"] not in begin.replace:
        journal.load()
    if journal.header and (journal.header["seed"], journal.header["recipe"]) != (run.seed, run.recipe):
        raise ValueError(f"{files['output']} was generated with seed {journal.header['seed']} and recipe "
                         f"{journal.header['recipe']}, not seed {run.seed} and recipe {run.recipe}; use those, "
                         f"another output, or --fresh to start over")
    settings = run.distill_settings
    for key, value in settings.items():
        if journal.header and journal.header.get(key, value) != value:
            raise ValueError(f"{files['output']} was generated with {key} {journal.header[key]!r}, not {value!r}; "
                             f"use that, another output, or --fresh to start over")
    start = max(journal.next_index(), len(begin.adopted)) if run.append else 0
    plan = (start, start + run.num)
    if problem := journal.plan_problem(plan):
        raise ValueError(problem)  # before it is recorded: a plan past the ceiling would stay for every later run
    for path in begin.replace:  # every check passed: a refused run deletes nothing
        path.unlink(missing_ok=True)
    if begin.adopted:  # the user's records keep their lines, and indices 0.., in a journal of our own
        journal.claim(seed=run.seed, recipe=run.recipe, **settings)
        for entry in begin.adopted:
            journal.add(entry)
    journal.start(run.seed, run.recipe, plan, settings)
    return journal, sorted(set(range(*plan)) | journal.planned())


async def _agenerate_locked(files: dict[str, Path], run: _Run, client: LLMClient | None,
                            endpoint: str | list[str] | None, model: str | None) -> RunSummary:
    journal, asked = _open_journal(files, run)
    todo = [i for i in asked if needs_work(journal, i)]
    started_at, t0 = now_iso(), time.perf_counter()
    reasons: Counter[str] = Counter()

    def rewrite() -> None:
        write_lines(files["output"], journal.output_lines(run.save_metadata))
        write_jsonl(files["rejects"], journal.rejected())

    def on_finish(entry: dict) -> None:
        if entry["status"] == "rejected":
            reasons.update(entry["reject"]["rules"])
        usage, counts = loop.usage(), loop.counts
        loop.bar.set_postfix(ok=counts["accepted"], rejected=counts["rejected"],
                             retries=usage["retries"] + counts["reasks"],
                             tokens=usage["prompt_tokens"] + usage["completion_tokens"], refresh=False)

    def start(c: LLMClient):
        journal.bind_model(c.endpoints[0].model)
        ctx = _ItemContext(c, run.recipe, run.seed, run.reasks, run.temperature, run.max_tokens, load_dimensions(),
                           candidates=run.candidates, opener=run.opener)
        return lambda index: make_item(ctx, index)

    loop = JobLoop(journal, todo, rewrite=rewrite, desc="generate", progress=run.progress, client=client,
                   on_finish=on_finish)
    try:
        await loop.run(start, workers=run.workers, endpoint=endpoint, model=model, cache=run.cache,
                       prices=run.prices, timeout=run.timeout, item_timeout=run.item_timeout)
    finally:
        if loop.ended:  # else writing the journal or the outputs failed: that error goes on, alone
            stats, used = loop.usage(), loop.client
            api_failed = [(i, e["reject"].get("reasons") or [API_ERROR]) for i, e in sorted(journal.entries.items())
                          if journal.api_failed(e)]
            summary = RunSummary(
                output=str(files["output"]), rejects=str(files["rejects"]), manifest=str(files["manifest"]),
                status=loop.status, asked=len(asked), already_done=len(asked) - len(todo),
                accepted=loop.counts["accepted"], rejected=loop.counts["rejected"], reject_reasons=dict(reasons),
                first_api_error=f"index {api_failed[0][0]}: {api_failed[0][1][0]}" if api_failed else None,
                in_output=len(journal.accepted()), in_rejects=len(journal.rejected()),
                requests=stats["requests"], cache_hits=stats["cache_hits"], retries=stats["retries"],
                reasks=loop.counts["reasks"], prompt_tokens=stats["prompt_tokens"],
                completion_tokens=stats["completion_tokens"], cost_usd=round(stats["cost_usd"], 6),
                elapsed_s=round(time.perf_counter() - t0, 3), model=used.endpoints[0].model if used else None)
            write_manifest(files["manifest"], {
                "kind": "generation",
                "parameters": run.parameters(),
                "endpoints": [ep.base_url for ep in used.endpoints] if used else [],
                "model": used.endpoints[0].model if used else None,
                "summary": summary.as_dict(),
                "history": _previous_runs(files["manifest"]) + [summary.as_dict()],
                "totals": {"in_output": summary.in_output, "in_rejects": summary.in_rejects,
                           "reject_reasons": dict(Counter(r for rej in journal.rejected() for r in rej["rules"]))},
                "client": stats,
                "timings": {"started_at": started_at, "finished_at": now_iso(), "elapsed_s": summary.elapsed_s,
                            "conversations_per_s": round(summary.conversations_per_s, 3)},
                "files": {k: str(v) for k, v in files.items()},
            })
    return summary


def _previous_runs(manifest: Path) -> list[dict]:
    """Summaries of the earlier calls on this output, so a resumed run's manifest keeps the first one's cost."""
    try:
        return list(json.loads(manifest.read_text(encoding="utf-8")).get("history", []))
    except (OSError, ValueError, AttributeError):
        return []


def generate(num: int, output: str | Path = DEFAULT_OUTPUT, **kwargs: Any) -> RunSummary:
    """Generate `num` conversations into `output` (see the module docstring); works in notebooks too.

    Keyword arguments: workers, seed, recipe ("v1"|"v2"|"distill"), endpoint (URL or list), model, append,
    fresh (only a run this generator journaled, unless force=True), force (replace files beside the
    output that another command or output wrote), save_metadata, reasks,
    temperature and max_tokens (None: the recipe's default), candidates and
    opener ("planned"|"sampled"; distill only), prices ((in, out) dollars per million tokens),
    progress, client (an LLMClient to reuse; else one is connected, the embedded model by default),
    cache (False: ask the server even for replies in the reply cache), timeout (seconds per request,
    body included), item_timeout (seconds for all attempts at one request).
    """
    return run_sync(agenerate(num, output, **kwargs))
