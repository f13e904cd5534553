"""The eight question types against a hand-built ledger, checked by an independent computation here.

The ledger has two sessions on one day, float-unfriendly amounts (0.1 + 0.2), a scene tie on one date
and a frequency tie; the reference answers below are computed with Decimal from the raw tuples, not
with kit.memory.ledger.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal

import pytest

from kit.memory.ledger import Transaction, busiest_dates, largest_cents, spent_cents, top_scenes
from kit.memory.questions import CATEGORIES, Question, check_rewrite, draw_questions, quotas
from kit.memory.scenes import load_scenes

SCENES = list(load_scenes())
CHUNK_DATES = ["2024-01-05", "2024-01-05", "2024-02-10", "2024-03-01", "2024-03-15"]
# (chunk, scene, subscene, amount)
RAW = [
    (0, "Dining", "Coffee", "12.5"), (0, "Transportation", "Taxi", "30"),
    (1, "Dining", "Restaurant", "0.1"), (1, "Dining", "Snacks", "0.2"),
    (2, "Shopping", "Books", "45.5"), (2, "Dining", "Coffee", "20"),
    (3, "Dining", "Coffee", "5"), (3, "Shopping", "Clothing", "17.5"), (3, "Medical", "Medicine", "8.8"),
    (4, "Transportation", "Train", "62.25"), (4, "Dining", "Takeout", "60.5"), (4, "Dining", "Coffee", "1.75"),
    (4, "Medical", "Dental", "9.99"),
]
LEDGER = [Transaction(CHUNK_DATES[c], scene, sub, float(a), f"{sub} purchase", c) for c, scene, sub, a in RAW]


def reference_answer(category: str, query: str) -> str:
    """The answer recomputed from RAW and the query text alone."""
    dates = re.findall(r"\d{4}-\d{2}-\d{2}", query)
    named = [s for s in SCENES if re.search(rf"\b{s}\b", query)]
    rows = [(CHUNK_DATES[c], scene, Decimal(a)) for c, scene, _, a in RAW]
    if len(dates) == 2:
        rows_in = [r for r in rows if dates[0] <= r[0] <= dates[1]]
    elif len(dates) == 1:
        rows_in = [r for r in rows if r[0] == dates[0]]
    else:
        rows_in = rows
    money = lambda d: f"{d:.2f}"  # noqa: E731
    if category in ("time_range_scene_amount", "time_range_multiple_scenes_amount", "single_date_scene_amount"):
        return money(sum((r[2] for r in rows_in if r[1] in named), Decimal(0)))
    if category in ("time_range_total_amount", "total_amount"):
        return money(sum((r[2] for r in rows_in), Decimal(0)))
    if category == "max_single_amount":
        return money(max(r[2] for r in rows_in))
    if category == "max_scene":
        totals: dict[str, Decimal] = {}
        for _, scene, amount in rows_in:
            totals[scene] = totals.get(scene, Decimal(0)) + amount
        best = max(totals.values())
        winners = [s for s, v in totals.items() if v == best]
        assert len(winners) == 1, f"a tied range was asked: {query}"
        return winners[0]
    if category == "max_frequency_date":
        counts = Counter(r[0] for r in rows if r[1] == named[0])
        best = max(counts.values())
        return min(d for d, n in counts.items() if n == best)
    raise AssertionError(category)


def reference_position(category: str, query: str) -> int:
    dates = re.findall(r"\d{4}-\d{2}-\d{2}", query)
    end = dates[-1] if dates else "9999-12-31"
    return max(i for i, d in enumerate(CHUNK_DATES) if d <= end)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_answer_matches_an_independent_computation(seed):
    draw = draw_questions(LEDGER, CHUNK_DATES, SCENES, 100, seed)
    assert draw.questions, "no questions drawn"
    for q in draw.questions:
        assert q.answer == reference_answer(q.category, q.query), q
        assert q.position == reference_position(q.category, q.query), q
    assert Counter(q.category for q in draw.questions)["total_amount"] == 1


def test_all_eight_types_are_asked_and_share_the_quota():
    assert quotas(100) == {**{c: 14 for c in CATEGORIES[:7]}, "time_range_scene_amount": 15, "total_amount": 1}
    assert sum(quotas(10).values()) == 10 and quotas(1) == {**{c: 0 for c in CATEGORIES[:7]}, "total_amount": 1}
    draw = draw_questions(LEDGER, CHUNK_DATES, SCENES, 22, seed=5)
    assert {q.category for q in draw.questions} == set(CATEGORIES)
    assert len(draw.questions) + sum(draw.shortfall.values()) == 22


def test_known_answers_of_the_hand_built_ledger():
    assert spent_cents(LEDGER) == 27409  # 274.09
    assert spent_cents(LEDGER, "2024-01-05", "2024-01-05", ["Dining"]) == 1280  # 12.5 + 0.1 + 0.2, no float noise
    assert top_scenes(LEDGER, "2024-03-15", "2024-03-15") == ["Dining", "Transportation"]  # 62.25 each: a tie
    assert busiest_dates(LEDGER, "Dining") == ["2024-01-05"]  # three Dining transactions over two sessions
    assert busiest_dates(LEDGER, "Medical") == ["2024-03-01", "2024-03-15"]  # a tie: the earliest is the answer
    assert largest_cents(LEDGER, "2024-01-05", "2024-02-10") == 4550


def test_empty_range_gives_zero_and_no_winner():
    assert spent_cents(LEDGER, "2024-06-01", "2024-06-30") == 0
    assert top_scenes(LEDGER, "2024-06-01", "2024-06-30") == []
    assert largest_cents(LEDGER, "2024-06-01", "2024-06-30") is None
    assert busiest_dates(LEDGER, "Education") == []


def test_ties_are_never_asked_or_are_broken_as_the_question_says():
    for seed in range(10):
        for q in draw_questions(LEDGER, CHUNK_DATES, SCENES, 50, seed).questions:
            if q.category == "max_scene":
                assert "2024-03-15 to 2024-03-15" not in q.query
            if q.category == "max_frequency_date" and "Medical" in q.query:
                assert q.answer == "2024-03-01" and "earliest" in q.query


def test_same_day_sessions_position_after_the_last_of_them():
    qs = [q for seed in range(20) for q in draw_questions(LEDGER, CHUNK_DATES, SCENES, 50, seed).questions
          if q.category == "single_date_scene_amount" and "2024-01-05" in q.query]
    assert qs and all(q.position == 1 for q in qs)
    assert any(q.answer == "12.80" for q in qs if "Dining" in q.query)


def test_one_transaction_ledger():
    one = [Transaction("2024-07-04", "Other", "Pets", 19.99, "cat food", 0)]
    draw = draw_questions(one, ["2024-07-04"], SCENES, 15, seed=0)
    answers = {q.category: q.answer for q in draw.questions}
    assert answers == {"time_range_scene_amount": "19.99", "time_range_total_amount": "19.99", "max_scene": "Other",
                       "max_frequency_date": "2024-07-04", "max_single_amount": "19.99",
                       "single_date_scene_amount": "19.99", "total_amount": "19.99"}
    assert draw.shortfall["time_range_multiple_scenes_amount"] == 2  # needs two scenes: none exist
    assert all(q.position == 0 for q in draw.questions)


def test_no_duplicate_questions():
    draw = draw_questions(LEDGER, CHUNK_DATES, SCENES, 200, seed=0)
    queries = [q.query for q in draw.questions]
    assert len(queries) == len(set(queries))
    assert draw.shortfall  # a 5-session ledger cannot hold 28 distinct questions of every type


def test_questions_are_determined_by_the_seed():
    a = draw_questions(LEDGER, CHUNK_DATES, SCENES, 30, seed=7).questions
    b = draw_questions(LEDGER, CHUNK_DATES, SCENES, 30, seed=7).questions
    c = draw_questions(LEDGER, CHUNK_DATES, SCENES, 30, seed=8).questions
    assert a == b and a != c


def test_out_of_order_chunks_are_refused():
    with pytest.raises(ValueError, match="date order"):
        draw_questions(LEDGER, list(reversed(CHUNK_DATES)), SCENES, 10, seed=0)


Q = Question("time_range_multiple_scenes_amount",
             "How much did I spend on Dining and Shopping in total from 2024-01-05 to 2024-02-10?",
             "78.30", 2, ("2024-01-05", "2024-02-10"), ("Dining", "Shopping"))


@pytest.mark.parametrize("rewrite, reason", [
    ("Between 2024-01-05 and 2024-02-10, what did dining plus shopping cost me altogether?", None),
    ("What did Dining and Shopping cost me in January 2024?", "drops the date 2024-01-05"),
    ("From 2024-01-05 to 2024-02-10, how much went on Dining?", "drops the scene Shopping"),
    ("From 2024-01-05 to 2024-02-10, how much went on Dining, Shopping and Medical?", "adds the scene Medical"),
    ("From 2024-01-05 to 2024-02-11, Dining and Shopping spending?", "drops the date 2024-02-10"),
    ("Dining and Shopping from 2024-01-05 to 2024-02-10 came to 78.30, right?", "gives the answer away"),
    ("", "empty rewrite"),
    (None, "empty rewrite"),
])
def test_rephrase_guard(rewrite, reason):
    assert check_rewrite(Q, rewrite, SCENES) == reason


def test_rephrase_guard_keeps_the_tie_rule():
    q = Question("max_frequency_date", "On which date did I record the most Dining transactions? "
                 "If several dates tie, give the earliest one.", "2024-01-05", 4, (), ("Dining",), ("earliest",))
    assert check_rewrite(q, "Which day had the most Dining purchases?", SCENES) == "drops the word 'earliest'"
    assert check_rewrite(q, "Which day had the most Dining purchases (earliest if tied)?", SCENES) is None


def test_rephrase_guard_refuses_a_rewrite_that_asks_something_else():
    q = Question("total_amount", "What is the total amount of all the expenses I have recorded?", "274.09", 4)
    garbage = "How many meals did you have in a week? 120, the total is 480."  # seen from SmolLM2-135M
    assert check_rewrite(q, garbage, SCENES) == "adds the number 120"
    assert check_rewrite(q, "Where do I live?", SCENES) == "no longer asks the same thing"
    assert check_rewrite(q, "How much have I spent altogether so far?", SCENES) is None
