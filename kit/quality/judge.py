"""An LLM judge: does each conversation hold what it was asked for, and would we train on it?

The content rules (kit.quality.validation) catch text that is broken in ways a pattern can see; whether a
conversation is on its topic, follows its persona, agrees with the knowledge base and reads like a
real chat takes a reader. This module asks one: any OpenAI-compatible endpoint (the embedded model
by default, a strong API model for real grading), through the same client, reply cache and crash
safety as generation.

    judge("runs/x/data/conversations.jsonl", "runs/x/quality/scores.jsonl")
    python -m kit judge FILE --out SCORES [--endpoint URL --model M] [--workers W]
                        [--min-score S --filtered-out FILE]

The rubric is data (knowledge/prompts/judge.txt, `$slots` filled per record from its meta) and is
sent with a JSON schema: scores 1-5 for on_topic, persona_followed, consistent, natural and overall,
and a one-line reason. A reply that is not JSON, lacks a key or has a score out of range is asked
again once with its problem named (knowledge/prompts/judge_reask.txt); if the second reply is no
better, the record is written as unjudged with the reason. Nothing is dropped: SCORES holds one
line per record of FILE, in file order, joined to it by `id`.

Crash safety is kit.generation.generate's: each finished record is one fsynced line in `SCORES.journal.jsonl`
(its Journal), and SCORES is rewritten from it atomically. A killed run resumes without judging a
finished record again (a record that failed only with API errors is tried again); scores already in
the journal are kept whichever judge gave them (each line names its `judge_model`), so judge with
another model into another SCORES file. The run holds
kit.locking.exclusive(SCORES). With `min_score`, the records whose overall score reaches it are
written to `filtered_out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kit import paths
from kit.generation.generate import FLUSH_EVERY_S, Journal
from kit.llm.client import FatalAPIError, LLMClient, RetriesExhausted, connect, parse_json_reply, run_sync, run_workers
from kit.locking import LockedError, exclusive
from kit.progress import progress_bar
from kit.generation.prompts import _fill, load_knowledge, load_template
from kit.records import file_problem, message_text, read_records, write_jsonl, write_records

CRITERIA = ("on_topic", "persona_followed", "consistent", "natural", "overall")
TEMPLATE = "judge.txt"
REASK_TEMPLATE = "judge_reask.txt"
SCHEMA_NAME = "grade"
API_ERROR = "api_error"
MAX_TOKENS = 256
ROLE_NAMES = {"user": "User", "assistant": "nanochat", "system": "System"}


def grade_schema() -> dict:
    score = {"type": "integer", "minimum": 1, "maximum": 5}
    return {"type": "object",
            "properties": {**{c: score for c in CRITERIA}, "reason": {"type": "string"}},
            "required": [*CRITERIA, "reason"], "additionalProperties": False}


def render_conversation_text(record: dict) -> str:
    return "\n".join(f"{ROLE_NAMES.get(m.get('role'), m.get('role'))}: {message_text(m.get('content')).strip()}"
                     for m in record["messages"])


def judge_prompt(record: dict, knowledge_dir: str | Path | None = None) -> str:
    """The rubric filled for one record; elements its meta lacks read "not given"."""
    meta = record.get("meta") or {}
    given = {k: str(meta[k]) if meta.get(k) else "not given" for k in ("topic", "persona", "dynamic")}
    return _fill(load_template(TEMPLATE, knowledge_dir), TEMPLATE, knowledge=load_knowledge(knowledge_dir),
                 conversation=render_conversation_text(record), **given)


def check_grade(text: str) -> tuple[dict | None, str | None]:
    """(scores, None) for a usable grade, else (None, why not)."""
    reply = parse_json_reply(text)
    if reply.error:
        return None, f"the reply is {reply.error}"
    value = reply.value
    if not isinstance(value, dict):
        return None, f"the reply is a JSON {type(value).__name__}, not an object"
    missing = [k for k in (*CRITERIA, "reason") if k not in value]
    if missing:
        return None, f"the reply lacks {', '.join(repr(k) for k in missing)}"
    scores = {}
    for key in CRITERIA:
        score = value[key]
        if isinstance(score, float) and score.is_integer():
            score = int(score)
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            return None, f"{key} is {score!r}, not a whole number from 1 to 5"
        scores[key] = score
    reason = value["reason"]
    if not isinstance(reason, str) or not reason.strip():
        return None, "reason is empty or not a string"
    scores["reason"] = " ".join(reason.split())
    return scores, None


@dataclass
class _Context:
    client: LLMClient
    reasks: int
    max_tokens: int


async def judge_record(ctx: _Context, index: int, record: dict) -> dict:
    """The journal entry of one record: status judged (with scores) or unjudged (with the reason)."""
    prompt = judge_prompt(record)
    messages = [{"role": "user", "content": prompt}]
    attempts = []
    model = None
    for attempt in range(ctx.reasks + 1):
        try:
            completion = await ctx.client.complete(messages, schema=grade_schema(), schema_name=SCHEMA_NAME,
                                                   temperature=0.0, max_tokens=ctx.max_tokens)
        except RetriesExhausted as exc:
            attempts.append({"problem": f"API error: {exc}", "raw": ""})
            return {"index": index, "id": record["id"], "status": "unjudged", "rule": API_ERROR,
                    "reason": attempts[-1]["problem"], "attempts": attempts, "model": model}
        model = completion.model
        scores, problem = check_grade(completion.text)
        if scores is not None:
            return {"index": index, "id": record["id"], "status": "judged", "scores": scores,
                    "attempts": len(attempts) + 1, "model": model}
        attempts.append({"problem": problem, "raw": completion.text})
        follow_up = _fill(load_template(REASK_TEMPLATE), REASK_TEMPLATE, problem=problem)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion.text},
                    {"role": "user", "content": follow_up}]
    return {"index": index, "id": record["id"], "status": "unjudged", "rule": "bad_grade",
            "reason": "; ".join(f"attempt {k + 1}: {a['problem']}" for k, a in enumerate(attempts)),
            "attempts": attempts, "model": model}


def score_line(entry: dict) -> dict:
    """One line of the scores file: the record id, its status and scores (or why it is unjudged)."""
    if entry["status"] == "judged":
        return {"id": entry["id"], "status": "judged", **entry["scores"], "judge_model": entry.get("model")}
    return {"id": entry["id"], "status": "unjudged", "reason": entry["reason"], "judge_model": entry.get("model")}


def load_scores(path: str | Path) -> dict[str, dict]:
    """record id -> its score line (kit.quality.judge's output); a line that is not JSON names file and line."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                out[str(obj["id"])] = obj
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a score line ({exc})") from None
    return out


def _needs_work(entry: dict | None, record_id: str) -> bool:
    """Not judged yet, judged for another record at this position, or failed only with API errors."""
    return entry is None or entry.get("id") != record_id or entry.get("rule") == API_ERROR


@dataclass
class JudgeSummary:
    scores: str
    status: str  # complete | interrupted | failed
    records: int
    already_done: int
    judged: int  # in the scores file now
    unjudged: int
    reasks: int
    requests: int
    cache_hits: int
    filtered_out: str | None
    kept: int | None  # records written to filtered_out
    elapsed_s: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        kept = f"; {self.kept} of {self.judged} judged records reach the minimum score, in {self.filtered_out}" \
            if self.filtered_out else ""
        return (f"{self.status}: {self.judged} of {self.records} records judged, {self.unjudged} unjudged, "
                f"{self.already_done} already done; {self.requests} requests, {self.cache_hits} cache hits, "
                f"{self.reasks} re-asks; {self.elapsed_s:.1f} s{kept}")


async def ajudge(path: str | Path, out: str | Path, *, endpoint: str | list[str] | None = None,
                 model: str | None = None, workers: int = 4, reasks: int = 1, max_tokens: int = MAX_TOKENS,
                 min_score: float | None = None, filtered_out: str | Path | None = None,
                 progress: bool = True, client: LLMClient | None = None) -> JudgeSummary:
    """The async core of `judge` (same arguments)."""
    if workers < 1 or reasks < 0:
        raise ValueError(f"workers must be >= 1 and reasks >= 0, got {workers} and {reasks}")
    if (min_score is None) != (filtered_out is None):
        raise ValueError("give min_score and filtered_out together: the records reaching the score go to that file")
    if min_score is not None and not 1 <= min_score <= 5:
        raise ValueError(f"min_score must be from 1 to 5, got {min_score}")
    path, out = paths.resolve(path), paths.resolve(out)
    if problem := file_problem(path):
        raise FileNotFoundError(problem)
    records = read_records(path).records
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: record id {twice!r} appears more than once; scores are joined by id")
    with exclusive(out):
        journal = Journal(out.with_name(out.name + ".journal.jsonl")).load()
        todo = [i for i, r in enumerate(records) if _needs_work(journal.entries.get(i), r["id"])]
        t0, status, reasks_done = time.perf_counter(), "complete", 0
        stats_before: dict = {}
        used: LLMClient | None = client
        last_flush = time.monotonic()

        def entries() -> list[dict]:
            return [journal.entries[i] for i, r in enumerate(records)
                    if i in journal.entries and journal.entries[i].get("id") == r["id"]]

        def rewrite() -> None:
            write_jsonl(out, [score_line(e) for e in entries()])

        bar = progress_bar(total=len(todo), desc="judge", unit="conv", disable=not progress or not todo,
                           dynamic_ncols=True)

        async def work(c: LLMClient) -> None:
            nonlocal used, stats_before
            used, stats_before = c, c.stats.as_dict()
            ctx = _Context(c, reasks, max_tokens)
            async def one(index: int) -> None:
                nonlocal last_flush, reasks_done
                entry = await judge_record(ctx, index, records[index])
                journal.add(entry)
                attempts = entry["attempts"]
                reasks_done += (attempts if isinstance(attempts, int) else len(attempts)) - 1
                bar.update(1)
                if time.monotonic() - last_flush > FLUSH_EVERY_S:
                    rewrite()
                    last_flush = time.monotonic()

            await run_workers(todo, workers, one)

        try:
            if todo and client is not None:
                await work(client)
            elif todo:
                async with connect(endpoint, model, concurrency=workers, cache_dir=str(paths.cache_dir())) as c:
                    await work(c)
        except FatalAPIError:
            status = "failed"
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            status = "interrupted"
            raise
        finally:
            bar.close()
            journal.close()
            rewrite()
        done = entries()
        judged = [e for e in done if e["status"] == "judged"]
        kept = None
        if min_score is not None:
            good = {e["id"] for e in judged if e["scores"]["overall"] >= min_score}
            kept = write_records(paths.resolve(filtered_out), [r for r in records if r["id"] in good])
        now = used.stats.as_dict() if used else {}
        return JudgeSummary(
            scores=str(out), status=status, records=len(records), already_done=len(records) - len(todo),
            judged=len(judged), unjudged=len(done) - len(judged), reasks=reasks_done,
            requests=now.get("requests", 0) - stats_before.get("requests", 0),
            cache_hits=now.get("cache_hits", 0) - stats_before.get("cache_hits", 0),
            filtered_out=str(filtered_out) if filtered_out is not None else None, kept=kept,
            elapsed_s=round(time.perf_counter() - t0, 3))


def judge(path: str | Path, out: str | Path, **kwargs: Any) -> JudgeSummary:
    """Judge every record of `path` into the scores file `out` (see the module docstring); works in
    notebooks too. Keyword arguments: endpoint, model, workers, reasks, max_tokens, min_score,
    filtered_out, progress, client."""
    return run_sync(ajudge(path, out, **kwargs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit judge",
                                     description="Score each conversation with an LLM judge (resumable; see kit/quality/judge.py).")
    parser.add_argument("file", help="conversation file (.jsonl)")
    parser.add_argument("--out", required=True, help="scores file: one JSON line per record id")
    parser.add_argument("--endpoint", action="append", help="OpenAI-compatible base URL (repeatable); "
                        "default: OPENAI_BASE_URL / OPENAI_API_KEY / OPENROUTER_API_KEY, else the embedded model")
    parser.add_argument("--model", help="model name at the endpoint")
    parser.add_argument("--workers", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("--min-score", type=float, help="with --filtered-out: keep records whose overall score reaches this")
    parser.add_argument("--filtered-out", help="file for the records that reach --min-score")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = judge(args.file, args.out, endpoint=args.endpoint, model=args.model, workers=args.workers,
                        min_score=args.min_score, filtered_out=args.filtered_out, progress=not args.no_progress)
    except (ValueError, OSError, FatalAPIError, LockedError) as exc:  # RecordError is a ValueError
        print(f"kit judge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kit judge: interrupted; judged records are kept, run the same command again to resume", file=sys.stderr)
        return 130
    print(summary)
    api_failed = [e for e in load_scores(args.out).values() if e["status"] == "unjudged" and e["reason"].startswith("API error")]
    if api_failed:
        print(f"kit judge: {len(api_failed)} records failed with API errors (first, {api_failed[0]['id']}: "
              f"{api_failed[0]['reason']}); run the same command again to retry them", file=sys.stderr)
        return 1
    return 0
