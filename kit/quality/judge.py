"""An LLM judge: does each conversation hold what it was asked for, and would we train on it?

The content rules (kit.rules) catch text that is broken in ways a pattern can see; whether a
conversation is on its topic, follows its persona, agrees with the knowledge base and reads like a
real chat takes a reader. This module asks one: any OpenAI-compatible endpoint (the embedded model
by default, a strong API model for real grading), through the same client, reply cache and crash
safety as generation.

    judge("runs/x/data/conversations.jsonl", "runs/x/quality/scores.jsonl")
    python -m kit judge FILE --out SCORES [--endpoint URL --model M] [--workers W]
                        [--min-score S --filtered-out FILE] [--calibrate]

The rubric is data (knowledge/prompts/judge.txt, `$slots` filled per record from its meta) and is
sent with a JSON schema: scores 1-5 for on_topic, persona_followed, consistent, natural and overall,
and a one-line reason. A reply that is not JSON, lacks a key or has a score out of range is asked
again once with its problem named (knowledge/prompts/judge_reask.txt); if the second reply is no
better, the record is written as unjudged with the reason. Nothing is dropped: SCORES holds one
line per record of FILE, in file order, joined to it by `id`.

Crash safety is generation's, through the same job loop (kit.generation.jobs): each finished record is
one line in `SCORES.journal.jsonl` (a ScoresJournal, whose header names this command and SCORES: an
output with another command's journal beside it, such as a generation run's, is not replaced without
--force), written and flushed when the record finishes and fsynced by group commit in a background
thread, and SCORES is rewritten from it atomically. A killed run resumes without judging a finished
record again (a record that failed only with API errors is tried again); scores already in the journal
are kept whichever judge gave them (each line names its `judge_model`), so judge with another model
into another SCORES file. The run holds kit.locking.exclusive(SCORES). With `min_score`, the records whose overall score reaches it are
written to `filtered_out`.

A judge is checked before it is believed: `calibrate` judges a labelled set (`calibration_set`: reference
conversations as good; the same conversations asked for another topic, and known junk, as bad) and
measures how often its verdict agrees with the labels. Below AGREEMENT_THRESHOLD (balanced agreement
0.8) `judge_refusal` says why, and kit.quality.report refuses to report realized coverage from it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kit import paths
from kit.generation.jobs import JobLoop, needs_work
from kit.generation.journal import API_ERROR, Journal, journal_path
from kit.llm.client import DEFAULT_ITEM_TIMEOUT_S, DEFAULT_TIMEOUT_S, LLMClient, RetriesExhausted, run_sync
from kit.llm.reply import parse_json_reply
from kit.locking import exclusive
from kit.generation.prompts import _fill, load_knowledge, load_template
from kit.records import file_problem, message_text, read_records, write_jsonl, write_records

CRITERIA = ("on_topic", "persona_followed", "consistent", "natural", "overall")
TEMPLATE = "judge.txt"
REASK_TEMPLATE = "judge_reask.txt"
SCHEMA_NAME = "grade"
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
    """record id -> its score line (kit.quality.judge's output). A line that is not one (not JSON, no id,
    no status, a judged line whose score is missing or not a whole number 1-5) is a ValueError naming
    file and line, so a report never stops on it with a KeyError or TypeError."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{paths.display_path(path)}:{lineno}: not a score line ({exc})") from None
            if problem := score_line_problem(obj):
                raise ValueError(f"{paths.display_path(path)}:{lineno}: not a score line: {problem}")
            out[str(obj["id"])] = obj
    return out


def score_line_problem(obj: Any) -> str | None:
    """What keeps `obj` from being a line of a scores file, or None."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if not isinstance(obj.get("id"), (str, int)) or isinstance(obj.get("id"), bool):
        return "no record id"
    if obj.get("status") not in ("judged", "unjudged"):
        return f"record {obj['id']}: status {obj.get('status')!r}, expected 'judged' or 'unjudged'"
    if obj["status"] == "unjudged":
        return None if isinstance(obj.get("reason"), str) else f"record {obj['id']}: unjudged without a reason"
    for key in CRITERIA:
        value = obj.get(key)
        if key not in obj:
            return f"record {obj['id']}: {key} missing"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            return f"record {obj['id']}: {key} is {json.dumps(value)}, not a whole number from 1 to 5"
    return None


class ScoresJournal(Journal):
    """The judge's journal, SCORES.journal.jsonl: a header naming this command and SCORES, then one entry
    per finished record {index, id, status: judged (scores) | unjudged (rule, reason), attempts, model}."""

    COMMAND = "kit.quality.judge"
    REPAIR = "fix or delete the line (its record is judged again)"
    HEADER_REQUIRED = False  # a journal from before the header opens with its first entry

    def headerless(self, first: Any) -> bool:
        return isinstance(first, dict) and "index" in first and self.entry_problem(first) is None

    def api_failed(self, entry: dict) -> bool:
        return entry.get("rule") == API_ERROR

    def header_problem(self, obj: dict) -> str | None:
        if obj["journal"] != self.COMMAND:
            return f"a header of {obj['journal']!r}, not of {self.COMMAND}"
        return None if isinstance(obj.get("output", ""), str) else "the header's output is not a file name"

    def entry_problem(self, obj: dict) -> str | None:
        index, status = obj["index"], obj.get("status")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            return f"index {json.dumps(index)} is not a whole number >= 0"
        if not isinstance(obj.get("id"), str) or not isinstance(obj.get("model"), (str, type(None))):
            return f"index {index}: no record id, or a model that is not a name"
        if status == "judged":
            if not isinstance(obj.get("scores"), dict):
                return f"index {index}: judged without its scores"
            return score_line_problem(score_line(obj))
        if status == "unjudged":
            if not isinstance(obj.get("reason"), str) or not isinstance(obj.get("rule", ""), str):
                return f"index {index}: unjudged without a reason"
            return None
        return f"index {index}: status {json.dumps(status)}, expected \"judged\" or \"unjudged\""


def _journal(out: Path) -> ScoresJournal:
    return ScoresJournal(journal_path(out))


def _is_scores_file(path: Path) -> bool:
    """Whether `path` is what judge writes (its own journal beside it, or score lines only): replacing it
    loses nothing the journal or a re-run cannot give back. A journal of another command (kit generate's
    beside its conversations) makes it that command's output."""
    if (journal := _journal(path)).path.is_file():
        return journal.owner_problem() is None
    try:
        return bool(load_scores(path))
    except (OSError, ValueError):
        return False


def _holds_only(path: Path, records: list[dict]) -> bool:
    """Whether every record in `path` is one of `records` as it is (an earlier --filtered-out of the
    same input): rewriting it loses nothing."""
    try:
        kept = read_records(path).records
    except (OSError, ValueError):
        return False
    known = {json.dumps(r, sort_keys=True) for r in records}
    return all(json.dumps(r, sort_keys=True) in known for r in kept)


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
                 progress: bool = True, client: LLMClient | None = None, force: bool = False, cache: bool = True,
                 timeout: float = DEFAULT_TIMEOUT_S, item_timeout: float = DEFAULT_ITEM_TIMEOUT_S) -> JudgeSummary:
    """The async core of `judge` (same arguments)."""
    if workers < 1 or reasks < 0:
        raise ValueError(f"workers must be >= 1 and reasks >= 0, got {workers} and {reasks}")
    if (min_score is None) != (filtered_out is None):
        raise ValueError("give min_score and filtered_out together: the records reaching the score go to that file")
    if min_score is not None and not 1 <= min_score <= 5:
        raise ValueError(f"min_score must be from 1 to 5, got {min_score}")
    path, out = paths.resolve(path), paths.resolve(out)
    filtered_out = paths.resolve(filtered_out) if filtered_out is not None else None
    # before anything is read: an output that is the input would replace the conversations with scores
    # (force=True: only the clash is checked here; whether an existing output is ours needs the input)
    paths.check_output(out, [path, filtered_out], force=True, option="--out")
    if filtered_out is not None:
        paths.check_output(filtered_out, [path], force=True, option="--filtered-out")
    if problem := file_problem(path):
        raise FileNotFoundError(problem)
    records = read_records(path).records
    paths.check_output(out, force=force, ours=_is_scores_file, option="--out")
    # a journal beside a missing output is still another command's: judge entries must not join it
    foreign_journal = _journal(out).owner_problem()
    paths.check_output(_journal(out).path, force=force, ours=lambda _: foreign_journal is None,
                       option=f"--out {out.name}: its journal")
    if filtered_out is not None:
        paths.check_output(filtered_out, force=force, ours=lambda p: _holds_only(p, records), option="--filtered-out")
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: record id {twice!r} appears more than once; scores are joined by id")
    with exclusive(out):
        journal = _journal(out)
        if journal.owner_problem() is not None:  # another command's, and --force said to replace it
            journal.path.unlink()
        journal.load()
        todo = [i for i, r in enumerate(records) if needs_work(journal, i, r["id"])]
        if todo:
            journal.claim()
        t0 = time.perf_counter()

        def entries() -> list[dict]:
            return [journal.entries[i] for i, r in enumerate(records)
                    if i in journal.entries and journal.entries[i].get("id") == r["id"]]

        def start(c: LLMClient):
            ctx = _Context(c, reasks, max_tokens)

            async def one(index: int) -> tuple[dict, int]:
                entry = await judge_record(ctx, index, records[index])
                attempts = entry["attempts"]
                return entry, (attempts if isinstance(attempts, int) else len(attempts)) - 1

            return one

        loop = JobLoop(journal, todo, rewrite=lambda: write_jsonl(out, [score_line(e) for e in entries()]),
                       desc="judge", progress=progress, client=client)
        await loop.run(start, workers=workers, endpoint=endpoint, model=model, cache=cache, timeout=timeout,
                       item_timeout=item_timeout)
        done = entries()
        judged = [e for e in done if e["status"] == "judged"]
        kept = None
        if min_score is not None:
            good = {e["id"] for e in judged if e["scores"]["overall"] >= min_score}
            kept = write_records(filtered_out, [r for r in records if r["id"] in good])
        usage = loop.usage()
        return JudgeSummary(
            scores=str(out), status=loop.status, records=len(records), already_done=len(records) - len(todo),
            judged=len(judged), unjudged=len(done) - len(judged), reasks=loop.counts["reasks"],
            requests=usage["requests"], cache_hits=usage["cache_hits"],
            filtered_out=str(filtered_out) if filtered_out is not None else None, kept=kept,
            elapsed_s=round(time.perf_counter() - t0, 3))

def api_failure(scores: str | Path) -> str | None:
    """What went wrong when records of a scores file are unjudged for API errors, else None: they were
    never answered, and judging the same file again retries exactly them."""
    failed = [e for e in load_scores(scores).values() if e["status"] == "unjudged" and e["reason"].startswith("API error")]
    if not failed:
        return None
    return (f"{len(failed)} records failed with API errors (first, {failed[0]['id']}: {failed[0]['reason']}); "
            f"run the same command again to retry them")


def judge(path: str | Path, out: str | Path, **kwargs: Any) -> JudgeSummary:
    """Judge every record of `path` into the scores file `out` (see the module docstring); works in
    notebooks too. Keyword arguments: endpoint, model, workers, reasks, max_tokens, min_score,
    filtered_out, progress, client, force (replace an existing output that is not the judge's), cache
    (False: ask the server even for replies in the reply cache), timeout (seconds per request, body
    included), item_timeout (seconds for all attempts at one request)."""
    return run_sync(ajudge(path, out, **kwargs))


# ---- calibration: is this judge worth believing? --------------------------------------------------

LABELS = ("good", "bad")
# The balanced agreement (mean of the shares of good and of bad conversations the judge calls right) a
# judge must reach on a labelled set before its realized coverage is reported. A judge that calls
# everything good, or everything bad, scores 0.5; 0.8 asks for a judge that is right on four of five of
# each kind.
AGREEMENT_THRESHOLD = 0.8
GOOD_MIN_SCORE = 4  # the judge calls a conversation good when overall and on_topic both reach it
_SWAPPED = ("topic_category", "topic", "persona", "dynamic")


def verdict(line: dict) -> str | None:
    """'good' or 'bad' from a score line: would we train on it, and does it hold its topic? None: unjudged."""
    if line.get("status") != "judged":
        return None
    return "good" if min(line["overall"], line["on_topic"]) >= GOOD_MIN_SCORE else "bad"


def calibration_set(good: list[dict], junk: list[dict] = (), *, n: int = 4, seed: int = 0) -> list[dict]:
    """A labelled set for `calibrate`: `n` conversations of `good` as they are (label good), `n` others of
    `good` whose meta asks for another record's topic, persona and dynamic (label bad: fine text, but not
    what was asked for, the failure realized coverage exists to catch), and every record of `junk` (label
    bad). meta.label and meta.label_source say which; ids are unique."""
    import random

    if len(good) < 2 * n or n < 1:
        raise ValueError(f"calibration_set: need at least {2 * n} good conversations for n={n}, got {len(good)}")
    rng = random.Random(f"calibration:{seed}")
    picked = rng.sample(range(len(good)), 2 * n)
    out = [{**good[i], "id": f"cal-good-{good[i]['id']}",
            "meta": {**good[i].get("meta", {}), "label": "good", "label_source": "reference as written"}} for i in picked[:n]]
    for i in picked[n:]:
        meta = good[i].get("meta", {})
        other = next(good[j] for j in rng.sample(range(len(good)), len(good))
                     if good[j].get("meta", {}).get("topic_category") != meta.get("topic_category"))
        swapped = {k: other["meta"][k] for k in _SWAPPED if k in other.get("meta", {})}
        out.append({**good[i], "id": f"cal-swapped-{good[i]['id']}",
                    "meta": {**meta, **swapped, "label": "bad",
                             "label_source": f"reference with the topic and persona of {other['id']}"}})
    out += [{**r, "id": f"cal-junk-{r['id']}", "meta": {**r.get("meta", {}), "label": "bad", "label_source": "known junk"}}
            for r in junk]
    return out


@dataclass
class Calibration:
    """How often a judge's verdict (`verdict`) agrees with the labels of a calibration set."""

    judge_model: str | None
    n: int
    per_label: dict  # label -> {n, agreed, rate}
    unjudged: int  # counted as disagreeing: a judge that gives no verdict is not right
    agreement: float  # share of all labelled conversations
    balanced: float  # mean of the per-label rates: what the threshold is held against
    threshold: float
    rows: list

    @property
    def trusted(self) -> bool:
        return self.balanced >= self.threshold

    @property
    def why(self) -> str:
        rates = ", ".join(f"{label} {d['agreed']} of {d['n']}" for label, d in self.per_label.items())
        if self.trusted:
            return (f"judge {self.judge_model} agrees with the labels: balanced agreement {self.balanced:.2f} "
                    f">= {self.threshold} ({rates} called right)")
        return (f"judge {self.judge_model} does not tell good conversations from bad: balanced agreement "
                f"{self.balanced:.2f} < {self.threshold} ({rates} called right, {self.unjudged} unjudged), "
                f"so its scores are not findings")

    def as_dict(self) -> dict:
        return {**asdict(self), "trusted": self.trusted, "why": self.why}

    def __str__(self) -> str:
        return (f"calibration on {self.n} labelled conversations: agreement {self.agreement:.2f}, balanced "
                f"{self.balanced:.2f} (threshold {self.threshold}): {'trusted' if self.trusted else 'NOT trusted'}\n"
                f"{self.why}")


def agreement(records: list[dict], scores: dict[str, dict], threshold: float = AGREEMENT_THRESHOLD) -> Calibration:
    """The judge's verdicts on labelled records (meta.label good|bad) against the labels."""
    rows = []
    for r in records:
        label = (r.get("meta") or {}).get("label")
        if label not in LABELS:
            raise ValueError(f"record {r['id']}: meta.label is {label!r}, expected one of {', '.join(LABELS)}")
        line = scores.get(r["id"], {})
        said = verdict(line)
        rows.append({"id": r["id"], "label": label, "source": r["meta"].get("label_source", ""), "verdict": said,
                     "agrees": said == label, **{k: line.get(k) for k in (*CRITERIA, "reason")}})
    per_label = {}
    for label in LABELS:
        mine = [row for row in rows if row["label"] == label]
        agreed = sum(row["agrees"] for row in mine)
        per_label[label] = {"n": len(mine), "agreed": agreed, "rate": agreed / len(mine) if mine else None}
    if not all(per_label[label]["n"] for label in LABELS):
        raise ValueError("a calibration set needs both good and bad conversations")
    models = sorted({str(scores[r["id"]].get("judge_model")) for r in records if r["id"] in scores})
    return Calibration(judge_model=", ".join(models) or None, n=len(rows), per_label=per_label,
                       unjudged=sum(row["verdict"] is None for row in rows),
                       agreement=sum(row["agrees"] for row in rows) / len(rows),
                       balanced=sum(d["rate"] for d in per_label.values()) / len(LABELS), threshold=threshold, rows=rows)


def calibration_path(scores: str | Path) -> Path:
    """Where `calibrate` writes its result: beside the scores, SCORES.calibration.json."""
    scores = Path(scores)
    return scores.with_name(scores.stem + ".calibration.json")


def calibrate(path: str | Path, out: str | Path, *, threshold: float = AGREEMENT_THRESHOLD, **kwargs: Any) -> Calibration:
    """Judge a labelled file (`calibration_set`, or any file whose records carry meta.label good|bad) into
    the scores file `out`, compare the verdicts with the labels, and write the result to
    `calibration_path(out)` (what `kit quality --calibration` reads). Keyword arguments go to `judge`."""
    records = read_records(paths.resolve(path)).records
    agreement(records, {}, threshold)  # the labels are checked before any conversation is judged
    judge(path, out, **kwargs)
    result = agreement(records, load_scores(paths.resolve(out)), threshold)
    with paths.atomic_write(calibration_path(paths.resolve(out))) as tmp:
        tmp.write_text(json.dumps(result.as_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def judge_refusal(scores: dict[str, dict], calibration: dict | None) -> str | None:
    """Why figures built on these scores (realized coverage) must not be reported, or None.

    calibration: `Calibration.as_dict()` (a `calibrate` result file) of the judge that gave `scores`;
    below the agreement threshold, or from another judge model, the scores are refused."""
    if calibration is None:
        return None
    if not calibration.get("trusted"):
        return calibration.get("why") or "the judge failed its calibration"
    models = {str(s.get("judge_model")) for s in scores.values() if s.get("status") == "judged"}
    if models and models != {str(calibration.get("judge_model"))}:
        return (f"the calibration is of judge {calibration.get('judge_model')}, these scores come from "
                f"{', '.join(sorted(models))}: calibrate the judge that gave them")
    return None



def degenerate_scores(scores: dict[str, dict]) -> dict:
    """How many judgements are not a reading of the conversation but a filled-in form: the scale in order
    across the criteria (1-2-3-4-5 or 5-4-3-2-1, the schema's own order), one score for every criterion,
    and the most common row of scores. A judge whose rows are mostly these copies the form; its agreement
    with labels, whatever it is, then comes from the form, not from the conversations."""
    rows = [tuple(s[k] for k in CRITERIA) for s in scores.values() if s.get("status") == "judged"]
    scale = tuple(range(1, len(CRITERIA) + 1))
    common = Counter(rows).most_common(1)
    return {"n": len(rows), "in_order": sum(r in (scale, scale[::-1]) for r in rows),
            "constant": sum(len(set(r)) == 1 for r in rows),
            "most_common": list(common[0][0]) if common else None, "most_common_n": common[0][1] if common else 0}


def degenerate_sentence(d: dict) -> str:
    """degenerate_scores in words, with what it means for trusting the judge."""
    n = d["n"]
    if not n:
        return "No judgement to look at."
    copies = d["in_order"] + d["constant"]
    text = (f"Of **{n} judgements**, **{d['in_order']}** are the scale in order across the criteria "
            f"({', '.join(CRITERIA)}), **{d['constant']}** give every criterion one score, and "
            f"**{d['most_common_n']} of {n}** are the same row ({'-'.join(map(str, d['most_common']))}).")
    if copies * 2 > n or d["most_common_n"] == n > 1:
        text += (" The judge fills in the form instead of reading the conversation: its scores carry no "
                 "information about the data, and its calls on the labelled set come from that form, not from "
                 "what it read.")
    else:
        text += " Most rows vary with the conversation: the scores are at least a reading, as far as this check sees."
    return text
