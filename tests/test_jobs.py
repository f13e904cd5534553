"""kit.generation.jobs: which items a run asks for again, and what a run that is cut short leaves behind."""

from __future__ import annotations

import asyncio

import pytest

from kit.generation.jobs import JobLoop, needs_work
from kit.generation.journal import API_ERROR, Journal
from kit.quality.judge import ScoresJournal


def test_needs_work_asks_again_only_what_is_unfinished_or_failed_by_the_api(tmp_path):
    journal = Journal(tmp_path / "c.jsonl.journal.jsonl")
    journal.entries = {0: {"index": 0, "status": "accepted", "record": {}},
                       1: {"index": 1, "status": "rejected", "reject": {"rules": ["json"]}},
                       2: {"index": 2, "status": "rejected", "reject": {"rules": [API_ERROR]}}}
    assert [i for i in range(4) if needs_work(journal, i)] == [2, 3]

    scores = ScoresJournal(tmp_path / "s.jsonl.journal.jsonl")
    scores.entries = {0: {"index": 0, "id": "a", "status": "judged"},
                      1: {"index": 1, "id": "b", "status": "unjudged", "rule": "bad_grade"},
                      2: {"index": 2, "id": "c", "status": "unjudged", "rule": API_ERROR}}
    ids = ["a", "b", "c", "d"]
    assert [i for i in range(4) if needs_work(scores, i, ids[i])] == [2, 3]
    assert needs_work(scores, 0, "another record now at index 0")


class _Client:  # what the loop reads of a client: its counters
    class stats:
        @staticmethod
        def as_dict() -> dict:
            return {"requests": 0}


def test_an_interrupted_run_keeps_what_finished_and_rewrites_the_outputs(tmp_path):
    journal = Journal(tmp_path / "c.jsonl.journal.jsonl")
    journal.claim(seed=0, recipe="v2")
    rewritten = []

    def start(client):
        async def item(index: int):
            if index == 2:
                raise KeyboardInterrupt
            return {"index": index, "status": "rejected", "reject": {"rules": ["json"], "reasons": []}}, 1
        return item

    loop = JobLoop(journal, [0, 1, 2, 3], rewrite=lambda: rewritten.append(sorted(journal.entries)), desc="t",
                   progress=False, client=_Client())
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(loop.run(start, workers=1))
    assert loop.status == "interrupted" and loop.ended
    assert rewritten == [[0, 1]] and loop.counts == {"rejected": 2, "reasks": 2}
    assert sorted(Journal(journal.path).load().entries) == [0, 1]  # on disk: the next run asks for 2 and 3
