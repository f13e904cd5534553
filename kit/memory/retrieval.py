"""Yardsticks for the memory benchmark that need no language model: a ledger oracle and retrievers.

The oracle answers every question from the record's metadata alone: it reads the question's dates
(ISO, two for a range, one for a day) and the catalogue scenes it names back from its text, takes
the transactions of the sessions up to the question's `position`, and computes the answer the way
kit.memory.ledger does. Scored by kit.memory.evaluate's own scorer it must get 100%, so it is the
reference bar of the accuracy chart; anything less means a question, its answer or its position
disagrees with the ledger.

Evidence recall@k says how hard the *finding* is, before any model reads: a question's evidence is
the set of sessions (chunks) holding a transaction its answer depends on (in its date range, of the
scenes it names); a retriever ranks the sessions the question may see (0..position) and recall@k is
the share of the evidence among its top k. Retrievers: `bm25` (the question's words and dates
against each session's text, a small numpy BM25), `recent` (the newest sessions first) and `all`
(every visible session, whatever k: recall 1 at the price of the longest context).

`copied_dates` finds the right answers that need no reading: a date asked with one session in the prompt.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from kit.memory.evaluate import score, summarize
from kit.memory.ledger import Transaction, busiest_dates, format_cents, largest_cents, spent_cents, top_scenes
from kit.memory.questions import ANSWER_KIND, CATEGORIES, ISO_DATE
from kit.memory.rankers import RETRIEVERS, rank
from kit.memory.scenes import load_scenes

ORACLE_NAME = "oracle (ledger)"


def transactions(record: dict) -> list[Transaction]:
    """The record's ledger (metadata.transaction_events) as Transactions."""
    return [Transaction(**event) for event in record["metadata"]["transaction_events"]]


def question_facts(query: str, scenes: list[str]) -> tuple[str | None, str | None, list[str]]:
    """(start, end, scenes named) read from a question's text; one date means that day, none the whole history."""
    dates = ISO_DATE.findall(query)
    named = [s for s in scenes if re.search(rf"\b{re.escape(s)}\b", query, re.I)]
    if not dates:
        return None, None, named
    return min(dates), max(dates), named


def oracle_answer(question: dict, ledger: list[Transaction], scenes: list[str]) -> str:
    """The answer computed from the transactions of sessions 0..position (see the module doc)."""
    start, end, named = question_facts(question["query"], scenes)
    seen = [t for t in ledger if t.session_index <= question["position"]]
    category = question["category"]
    if category in ("time_range_scene_amount", "time_range_multiple_scenes_amount", "single_date_scene_amount"):
        return format_cents(spent_cents(seen, start, end, named))
    if category in ("time_range_total_amount", "total_amount"):
        return format_cents(spent_cents(seen, start, end))
    if category == "max_scene":
        return ", ".join(top_scenes(seen, start, end))
    if category == "max_frequency_date":
        dates = busiest_dates(seen, named[0]) if named else []
        return dates[0] if dates else ""
    if category == "max_single_amount":
        largest = largest_cents(seen, start, end)
        return "" if largest is None else format_cents(largest)
    raise ValueError(f"question {question.get('qid')}: unknown category {category!r}")


def oracle(records: list[dict]) -> dict:
    """Every question answered by `oracle_answer` and scored like a model (kit.memory.evaluate's layout)."""
    scenes = list(load_scenes())
    items = []
    for record in records:
        ledger = transactions(record)
        for q in record["questions"]:
            prediction = oracle_answer(q, ledger, scenes)
            items.append({"task_id": record["task_id"], "qid": q["qid"], "category": q["category"],
                          "query": q["query"], "answer": q["answer"], "position": q["position"],
                          "prediction": prediction, "correct": score(q["category"], q["answer"], prediction, scenes),
                          "error": None})
    return {"model": ORACLE_NAME, **summarize(items), "items": items}


def evidence(question: dict, ledger: list[Transaction], scenes: list[str]) -> set[int]:
    """Sessions 0..position holding a transaction in the question's range and of the scenes it names."""
    start, end, named = question_facts(question["query"], scenes)
    return {t.session_index for t in ledger
            if t.session_index <= question["position"]
            and (start is None or t.date >= start) and (end is None or t.date <= end)
            and (not named or t.scene in named)}


def evidence_recall(records: list[dict], k: int = 1, retrievers: tuple[str, ...] = RETRIEVERS) -> dict:
    """Mean recall@k per retriever, overall and per category, and one item per question and retriever.
    `counts` pools the questions instead: category (and "overall") -> retriever -> (evidence sessions in
    the top k, evidence sessions needed), the count a rate with its n is drawn from.

    A question with no evidence (a ledger with nothing in its range) has nothing to find and is not
    averaged; `questions_without_evidence` counts them.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    scenes = list(load_scenes())
    items = []
    for record in records:
        ledger = transactions(record)
        for q in record["questions"]:
            needed = evidence(q, ledger, scenes)
            for retriever in retrievers:
                ranked = rank(retriever, q["query"], record["chunks"], q["position"])
                top = ranked if retriever == "all" else ranked[:k]
                items.append({"qid": q["qid"], "category": q["category"], "retriever": retriever,
                              "evidence": sorted(needed), "retrieved": top,
                              "recall": len(needed & set(top)) / len(needed) if needed else None})
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for item in items:
        if item["recall"] is not None:
            by[item["category"], item["retriever"]].append(item["recall"])
            by["overall", item["retriever"]].append(item["recall"])
    order = [c for c in CATEGORIES if any(i["category"] == c for i in items)]
    table = {c: {r: float(np.mean(by[c, r])) if by[c, r] else None for r in retrievers} for c in order + ["overall"]}
    # pooled over the questions: (evidence sessions retrieved, evidence sessions needed), a count with its n
    counts = {c: {r: (0, 0) for r in retrievers} for c in order + ["overall"]}
    for item in items:
        for c in (item["category"], "overall"):
            found, needed = counts[c][item["retriever"]]
            counts[c][item["retriever"]] = (found + len(set(item["evidence"]) & set(item["retrieved"])),
                                            needed + len(item["evidence"]))
    return {"k": k, "per_category": {c: table[c] for c in order}, "overall": table["overall"], "counts": counts,
            "questions_without_evidence": sum(i["recall"] is None for i in items) // max(1, len(retrievers)),
            "items": items}


def copied_dates(items: list[dict]) -> list[dict]:
    """The right answers to date questions asked with one session in the prompt: every line there starts
    with that session's date, so writing the only date in sight is right whenever the retriever put the
    busiest date's session first. Such a hit credits the retriever, not the model's counting."""
    return [i for i in items if i.get("correct") and ANSWER_KIND.get(i["category"]) == "date"
            and i.get("chunks_given") == 1]
