"""The ledger oracle (100% on a fixture dataset, and it notices a wrong answer), BM25 against a hand
computation, and evidence recall@k of the three retrievers on a tiny hand-made dataset."""

from __future__ import annotations

import math

import pytest

from kit.memory.ledger import Transaction
from kit.memory.questions import draw_questions
from kit.memory.rankers import bm25_scores
from kit.memory.retrieval import ORACLE_NAME, evidence_recall, oracle
from kit.memory.scenes import load_scenes
from kit.memory.sessions import render_chunk

SCENE_ORDER = list(load_scenes())
LEDGER = [
    Transaction("2024-01-10", "Dining", "Restaurant", 30.0, "lunch", 0),
    Transaction("2024-01-10", "Transportation", "Taxi", 12.0, "taxi home", 0),
    Transaction("2024-02-05", "Shopping", "Books", 45.5, "books", 1),
    Transaction("2024-03-01", "Dining", "Restaurant", 20.0, "dinner", 2),
    Transaction("2024-03-01", "Dining", "Coffee", 4.5, "latte", 2),
]
CHUNKS = [
    render_chunk("2024-01-10", [{"role": "user", "content": "Lunch at a restaurant was 30 and the taxi home 12."},
                                {"role": "assistant", "content": "Recorded lunch 30 and taxi 12."}]),
    render_chunk("2024-02-05", [{"role": "user", "content": "I bought books for 45.5."},
                                {"role": "assistant", "content": "Noted, books 45.5."}]),
    render_chunk("2024-03-01", [{"role": "user", "content": "Dinner was 20 and a latte 4.5."},
                                {"role": "assistant", "content": "Recorded dinner 20 and latte 4.5."}]),
]


def record(questions: list[dict]) -> dict:
    return {"task_id": "fixture", "chunks": CHUNKS, "questions": questions,
            "metadata": {"transaction_events": [t.to_dict() for t in LEDGER]}}


def drawn_record(seed: int) -> dict:
    draw = draw_questions(LEDGER, ["2024-01-10", "2024-02-05", "2024-03-01"], SCENE_ORDER, 22, seed)
    return record([q.to_dict(f"q{i}") for i, q in enumerate(draw.questions)])


def q(qid: str, category: str, query: str, position: int, answer: str = "0") -> dict:
    return {"qid": qid, "category": category, "query": query, "position": position, "answer": answer}


@pytest.mark.parametrize("seed", range(5))
def test_the_oracle_answers_every_question_of_every_type(seed):
    rec = drawn_record(seed)
    result = oracle([rec])
    assert result["model"] == ORACLE_NAME
    assert len(result["per_category"]) == 8  # every question type is asked and answered
    assert result["overall"] == {"correct": len(rec["questions"]), "total": len(rec["questions"]),
                                 "errors": 0, "accuracy": 1.0}


def test_the_oracle_notices_an_answer_or_position_that_disagrees_with_the_ledger():
    rec = drawn_record(0)
    amount = next(i for i, x in enumerate(rec["questions"]) if x["category"] == "time_range_total_amount")
    rec["questions"][amount]["answer"] = "999.99"
    total = next(i for i, x in enumerate(rec["questions"]) if x["category"] == "total_amount")
    rec["questions"][total]["position"] = 0  # asked before the later sessions were said
    items = {i["qid"]: i["correct"] for i in oracle([rec])["items"]}
    assert not items[rec["questions"][amount]["qid"]] and not items[rec["questions"][total]["qid"]]
    assert sum(items.values()) == len(items) - 2


def test_bm25_matches_a_hand_computation():
    scores = bm25_scores("c", ["a b", "a c c"])
    idf = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))  # N = 2 documents, one holds "c"
    expected = idf * 2 * 2.5 / (2 + 1.5 * (0.25 + 0.75 * 3 / 2.5))  # tf 2, length 3, mean length 2.5
    assert scores[0] == 0 and scores[1] == pytest.approx(expected)


def test_evidence_recall_at_k_by_hand():
    rec = record([
        # evidence: sessions 0 and 2 (Dining); dates 2024-01-10 and 2024-03-01 point BM25 at both
        q("dining", "time_range_scene_amount", "How much did I spend on Dining from 2024-01-10 to 2024-03-01?", 2),
        # evidence: session 1 only, the newest the question may see
        q("books", "single_date_scene_amount", "How much did I spend on Shopping on 2024-02-05?", 1),
        # evidence: session 0 only, but the question comes after all three
        q("taxi", "max_frequency_date", "On which date did I record the most Transportation transactions? "
          "If several dates tie, give the earliest one.", 2),
    ])
    at1, at2 = evidence_recall([rec], k=1), evidence_recall([rec], k=2)
    by = {(i["qid"], i["retriever"]): i for i in at2["items"]}
    assert by["dining", "bm25"]["evidence"] == [0, 2] and sorted(by["dining", "bm25"]["retrieved"]) == [0, 2]
    assert by["dining", "recent"]["retrieved"] == [2, 1] and by["dining", "all"]["retrieved"] == [2, 1, 0]
    assert at2["per_category"]["time_range_scene_amount"] == {"bm25": 1.0, "recent": 0.5, "all": 1.0}
    assert at1["per_category"]["time_range_scene_amount"] == {"bm25": 0.5, "recent": 0.5, "all": 1.0}
    assert at1["per_category"]["single_date_scene_amount"] == {"bm25": 1.0, "recent": 1.0, "all": 1.0}
    # "Transportation" is not a word the session says (it says "taxi"): BM25 has only common words to go on
    assert at1["per_category"]["max_frequency_date"]["recent"] == 0.0
    assert at2["overall"]["recent"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert at1["overall"]["all"] == 1.0 and at1["questions_without_evidence"] == 0
    # pooled counts: 1 + 1 + 0 of 2 + 1 + 1 evidence sessions in recent's top 2
    assert at2["counts"]["time_range_scene_amount"]["recent"] == (1, 2)
    assert at2["counts"]["overall"]["recent"] == (2, 4) and at2["counts"]["overall"]["all"] == (4, 4)


def test_recall_needs_a_positive_k():
    with pytest.raises(ValueError, match="k must be at least 1"):
        evidence_recall([record([])], k=0)


def test_a_right_date_from_a_one_session_prompt_is_counted_as_copied():
    from kit.memory.retrieval import copied_dates

    items = [{"category": "max_frequency_date", "correct": True, "chunks_given": 1},   # the only date in sight
             {"category": "max_frequency_date", "correct": True, "chunks_given": 3},   # chosen among three
             {"category": "max_frequency_date", "correct": False, "chunks_given": 1},
             {"category": "total_amount", "correct": True, "chunks_given": 1},         # an amount is not a copy
             {"category": "max_frequency_date", "correct": None, "error": "timed out"}]
    assert copied_dates(items) == [items[0]]
