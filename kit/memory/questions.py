"""The eight question types, their computed answers, and the guard that vets rephrased questions.

Types 1-7 share `num_questions - 1` questions as evenly as possible (the first types take the
remainder); type 8, the overall total, is asked exactly once. Drawing is seeded: the same seed and
the same transactions give the same questions.

Deliberate choices, so that every question has exactly one right answer:
- Time ranges run between two session dates (inclusive, possibly the same date), so a range always
  contains at least one session; a scene asked about is drawn from the scenes that have transactions
  in the range, so no answer is an empty "0.00" (the overall total is the one exception: a ledger
  with nothing kept honestly answers 0.00).
- `max_scene`: a range whose top scene is tied is not used (ties in cents are rare; another range is drawn).
- `max_frequency_date`: ties in transaction counts are common (one Dining purchase a day), so the
  question itself says "if several dates tie, give the earliest" and the answer is the earliest tied date.
- Several sessions on one date are one date: counts and totals include all of them.
- Duplicates (the same query text) are dropped; a type whose distinct questions run out before its
  quota is asked fewer times, and `draw_questions` reports the shortfall.
- A category is named as the user files expenses under it ("... under Dining", kit.memory.turns), and
  the top-category question says "category", the user's word, not the seed's "consumption scene".
- `position` is the index of the last chunk (session, in date order) dated on or before the end of
  the question's range: after reading it, everything needed is known. Whole-history questions
  (types 5 and 8) have the last chunk as position.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from kit.text import PLAIN_NUMBER
from kit.memory.ledger import (Transaction, busiest_dates, format_cents, largest_cents, spent_cents,
                               top_scenes)

CATEGORIES = (
    "time_range_scene_amount",
    "time_range_multiple_scenes_amount",
    "time_range_total_amount",
    "max_scene",
    "max_frequency_date",
    "max_single_amount",
    "single_date_scene_amount",
    "total_amount",
)
# What kind of answer each category has: scoring and the eval prompt depend on it.
ANSWER_KIND = {c: "amount" for c in CATEGORIES} | {"max_scene": "scene", "max_frequency_date": "date"}
TIE_WORD = "earliest"
# How many draws a type may spend per question it still needs before giving up on its quota.
DRAWS_PER_QUESTION = 50

# A rewrite must still ask about the same kind of thing: one of these words (any case) must remain.
TOPIC_WORDS = {
    "time_range_scene_amount": r"spen[dt]|spending|cost|paid|pay|expens|much",
    "time_range_multiple_scenes_amount": r"spen[dt]|spending|cost|paid|pay|expens|much",
    "time_range_total_amount": r"spen[dt]|spending|cost|paid|pay|expens|much|total",
    "max_scene": r"most|highest|biggest|largest|top|greatest",
    "max_frequency_date": r"most|highest|greatest|often|frequent",
    "max_single_amount": r"largest|biggest|highest|most expensive|max|priciest",
    "single_date_scene_amount": r"spen[dt]|spending|cost|paid|pay|expens|much",
    "total_amount": r"total|overall|altogether|in all|sum|all",
}
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
NUMBER = re.compile(PLAIN_NUMBER)


@dataclass(frozen=True)
class Question:
    category: str
    query: str
    answer: str
    position: int
    # The facts a rephrasing must keep (see check_rewrite).
    dates: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()

    def to_dict(self, qid: str) -> dict:
        return {"qid": qid, "query": self.query, "answer": self.answer, "position": self.position,
                "category": self.category}


@dataclass
class QuestionDraw:
    questions: list[Question]
    requested: dict[str, int]
    shortfall: dict[str, int] = field(default_factory=dict)


def quotas(num_questions: int) -> dict[str, int]:
    """How many questions each category gets: 7 types share n-1, the overall total gets 1."""
    if num_questions < 1:
        raise ValueError(f"num_questions must be at least 1, got {num_questions}")
    base, extra = divmod(num_questions - 1, 7)
    return {c: base + (i < extra) for i, c in enumerate(CATEGORIES[:7])} | {"total_amount": 1}


def _fmt_scenes(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class _Drawer:
    """One draw of one question type at a time, over a fixed ledger and fixed chunk dates."""

    def __init__(self, txs: list[Transaction], chunk_dates: list[str], scene_order: list[str],
                 rng: random.Random):
        self.txs = txs
        self.chunk_dates = chunk_dates
        self.dates = sorted(set(chunk_dates))
        self.rank = {s: i for i, s in enumerate(scene_order)}
        self.rng = rng

    def position(self, end: str | None) -> int:
        if end is None:
            return len(self.chunk_dates) - 1
        return max(i for i, d in enumerate(self.chunk_dates) if d <= end)

    def _range(self) -> tuple[str, str]:
        a, b = sorted(self.rng.randrange(len(self.dates)) for _ in range(2))
        return self.dates[a], self.dates[b]

    def _scenes_in(self, start: str | None, end: str | None) -> list[str]:
        found = {t.scene for t in self.txs if (start is None or t.date >= start) and (end is None or t.date <= end)}
        return sorted(found, key=lambda s: (self.rank.get(s, len(self.rank)), s))

    def draw(self, category: str) -> Question | None:
        return getattr(self, category)()

    def time_range_scene_amount(self) -> Question | None:
        start, end = self._range()
        present = self._scenes_in(start, end)
        if not present:
            return None
        scene = self.rng.choice(present)
        return Question("time_range_scene_amount",
                        f"How much did I spend on {scene} from {start} to {end}?",
                        format_cents(spent_cents(self.txs, start, end, [scene])),
                        self.position(end), (start, end), (scene,))

    def time_range_multiple_scenes_amount(self) -> Question | None:
        start, end = self._range()
        present = self._scenes_in(start, end)
        if len(present) < 2:
            return None
        picked = self.rng.sample(present, self.rng.randint(2, min(3, len(present))))
        picked.sort(key=present.index)
        return Question("time_range_multiple_scenes_amount",
                        f"How much did I spend on {_fmt_scenes(picked)} in total from {start} to {end}?",
                        format_cents(spent_cents(self.txs, start, end, picked)),
                        self.position(end), (start, end), tuple(picked))

    def time_range_total_amount(self) -> Question | None:
        start, end = self._range()
        if not self._scenes_in(start, end):
            return None
        return Question("time_range_total_amount",
                        f"How much did I spend in total from {start} to {end}?",
                        format_cents(spent_cents(self.txs, start, end)),
                        self.position(end), (start, end))

    def max_scene(self) -> Question | None:
        start, end = self._range()
        top = top_scenes(self.txs, start, end)
        if len(top) != 1:  # empty range or a tie
            return None
        return Question("max_scene",
                        f"Which category did I spend the most on from {start} to {end}?",
                        top[0], self.position(end), (start, end))

    def max_frequency_date(self) -> Question | None:
        present = self._scenes_in(None, None)
        if not present:
            return None
        scene = self.rng.choice(present)
        return Question("max_frequency_date",
                        f"On which date did I record the most {scene} transactions? "
                        f"If several dates tie, give the {TIE_WORD} one.",
                        busiest_dates(self.txs, scene)[0], self.position(None), (), (scene,), (TIE_WORD,))

    def max_single_amount(self) -> Question | None:
        start, end = self._range()
        largest = largest_cents(self.txs, start, end)
        if largest is None:
            return None
        return Question("max_single_amount",
                        f"What was the largest single expense I recorded from {start} to {end}?",
                        format_cents(largest), self.position(end), (start, end))

    def single_date_scene_amount(self) -> Question | None:
        date = self.rng.choice(self.dates)
        present = self._scenes_in(date, date)
        if not present:
            return None
        scene = self.rng.choice(present)
        return Question("single_date_scene_amount",
                        f"How much did I spend on {scene} on {date}?",
                        format_cents(spent_cents(self.txs, date, date, [scene])),
                        self.position(date), (date,), (scene,))

    def total_amount(self) -> Question | None:
        return Question("total_amount", "What is the total amount of all the expenses I have recorded?",
                        format_cents(spent_cents(self.txs)), self.position(None))


def draw_questions(txs: list[Transaction], chunk_dates: list[str], scene_order: list[str],
                   num_questions: int, seed: int | str) -> QuestionDraw:
    """Questions of the 8 types, answers computed from `txs`, in category order, without duplicates.

    chunk_dates: the date of each chunk (session) in chunk order, which is date order.
    scene_order: the catalogue's scene order, used to list several scenes in a stable order.
    """
    if not chunk_dates:
        raise ValueError("cannot ask questions about zero sessions")
    if list(chunk_dates) != sorted(chunk_dates):
        raise ValueError("chunks must be in date order")
    wanted = quotas(num_questions)
    rng = random.Random(f"{seed}:questions")
    drawer = _Drawer(list(txs), list(chunk_dates), scene_order, rng)
    questions: list[Question] = []
    seen: set[str] = set()
    shortfall: dict[str, int] = {}
    for category, need in wanted.items():
        got = 0
        for _ in range(need * DRAWS_PER_QUESTION):
            if got == need:
                break
            q = drawer.draw(category)
            if q is not None and q.query not in seen:
                seen.add(q.query)
                questions.append(q)
                got += 1
        if got < need:
            shortfall[category] = need - got
    return QuestionDraw(questions, wanted, shortfall)


def check_rewrite(question: Question, rewrite: object, all_scenes: list[str]) -> str | None:
    """Why a rephrased question may not replace the original, or None if it keeps its meaning.

    A rewrite must keep every date of the question verbatim (YYYY-MM-DD), name every scene it names
    (any case), keep the tie-break word, add no date, scene or number (nor the answer), and keep a
    word of what is asked (TOPIC_WORDS: "spent", "largest", "total", ...).
    """
    if not isinstance(rewrite, str) or not rewrite.strip():
        return "empty rewrite"
    text = rewrite.strip()
    if len(text) > 3 * len(question.query) + 80:
        return "rewrite is far longer than the question"
    for date in question.dates:
        if date not in text:
            return f"drops the date {date}"
    extra_dates = set(ISO_DATE.findall(text)) - set(question.dates)
    if extra_dates:
        return f"adds the date {sorted(extra_dates)[0]}"
    for scene in all_scenes:
        named = re.search(rf"\b{re.escape(scene)}\b", text, re.I) is not None
        if scene in question.scenes and not named:
            return f"drops the scene {scene}"
        if scene not in question.scenes and named:
            return f"adds the scene {scene}"
    for word in question.keywords:
        if not re.search(rf"\b{re.escape(word)}\b", text, re.I):
            return f"drops the word {word!r}"
    original_numbers = NUMBER.findall(ISO_DATE.sub(" ", question.query))
    rewrite_numbers = NUMBER.findall(ISO_DATE.sub(" ", text))
    for number in original_numbers:
        if number not in rewrite_numbers:
            return f"drops the number {number}"
    if question.answer in text and question.answer not in question.query:
        return "gives the answer away"
    for number in rewrite_numbers:
        if number not in original_numbers:
            return f"adds the number {number}"
    if not re.search(rf"\b(?:{TOPIC_WORDS[question.category]})", text, re.I):
        return "no longer asks the same thing"
    return None
