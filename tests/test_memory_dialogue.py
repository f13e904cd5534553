"""Memory sessions a person would read as a conversation: the user's lines are not said twice in a
record, no purchase is spoken of before it is recorded, questions name a category only in the user's
words, and a model's reply must answer the line before it (measured on real replies labelled by hand)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from kit.llm.client import LLMClient, run_sync
from kit.llm.endpoints import Endpoint
from kit.memory.dataset import MemoryConfig, generate_records
from kit.memory.rules import off_topic, off_topic_agreement, turn_problems
from kit.memory.scenes import load_catalogue
from kit.memory.sessions import plan_sessions, words_in
from kit.memory.turns import RESERVED_TURNS, draw_user_lines, generate_session_turns, layout
from kit.paths import project_root
from fake_openai import FakeOpenAI
from memory_fakes import OFF_TOPIC, model_responder

CATALOGUE = load_catalogue()
SMOKE = MemoryConfig(**{k: v for k, v in yaml.safe_load(
    (project_root() / "kit" / "presets" / "smoke.yaml").read_text())["06_memory_benchmark"].items()
    if k in MemoryConfig.__dataclass_fields__}, no_diversify=True)
FIXTURES = Path(__file__).parent / "fixtures" / "memory_replies.jsonl"
USER_LINE = re.compile(r'^\[\d{4}-\d{2}-\d{2}\] User said, "(.*)"$', re.M)


def _smoke_layouts(seed: int):
    plans = plan_sessions(SMOKE, CATALOGUE, str(seed), RESERVED_TURNS)
    lines = draw_user_lines(plans, CATALOGUE, seed)
    return plans, [layout(plan, CATALOGUE, seed, share) for plan, share in zip(plans, lines)]


@pytest.fixture(scope="module")
def smoke_record():
    """A record of the smoke preset's size (notebook 06's), written over the fake server (no reply cache)."""
    srv = FakeOpenAI(model_responder()).start()
    client = LLMClient(Endpoint(srv.base_url, "fake-model"), max_retries=1, backoff_base=0.01)

    async def main():
        try:
            return await generate_records(client, SMOKE, CATALOGUE, show_progress=False, embedded=True)
        finally:
            await client.aclose()
    try:
        [record] = run_sync(main())
    finally:
        srv.stop()
    return record


@pytest.mark.parametrize("seed", range(12))
def test_no_user_line_but_an_expense_is_said_twice_in_a_smoke_size_record(seed):
    _, layouts = _smoke_layouts(seed)
    said = Counter(s.text for slots in layouts for s in slots if s.role == "user" and s.kind != "expense")
    assert [line for line, n in said.items() if n > 1] == []


@pytest.mark.parametrize("seed", range(12))
def test_even_a_swapped_in_line_is_no_other_sessions_at_smoke_size(seed):
    """A line swapped in when no reply to the planned one passes must not be another session's either
    (seen: two sessions closing with "Thanks a lot, talk soon." after a swap)."""
    plans = plan_sessions(SMOKE, CATALOGUE, str(seed), RESERVED_TURNS)
    owner: dict[str, int] = {}
    for plan, share in zip(plans, draw_user_lines(plans, CATALOGUE, seed)):
        for line in {*share.greeting, *share.closing, *(line for line, _ in share.talk), *share.spare}:
            assert owner.setdefault(line, plan.index) == plan.index, (line, owner[line], plan.index)


def test_the_generated_smoke_record_repeats_no_user_line(smoke_record):
    assert len(smoke_record["chunks"]) == SMOKE.num_sessions
    said = Counter(line for chunk in smoke_record["chunks"] for line in USER_LINE.findall(chunk)
                   if not re.search(r"\d", line))  # expense lines differ by their amounts
    assert sum(said.values()) > 5 * SMOKE.num_sessions and [line for line, n in said.items() if n > 1] == []


@pytest.mark.parametrize("seed", range(12))
def test_no_purchase_is_spoken_of_before_it_is_recorded(seed):
    """Small talk on a kind of purchase (a line under its category or sub-scene in the catalogue), or
    naming a word of a purchase of the session, comes after that purchase's expense turn."""
    keyed = {line: key for key, lines in CATALOGUE.small_talk.items() if key != "general" for line in lines}
    plans, layouts = _smoke_layouts(seed)
    for plan, slots in zip(plans, layouts):
        recorded: set[int] = set()
        for slot in slots:
            if slot.kind == "expense":
                recorded.add(slot.expense)
            elif slot.kind == "talk":
                if slot.text in keyed:
                    assert any(keyed[slot.text] in (plan.expenses[n].scene, plan.expenses[n].subscene)
                               for n in recorded), (plan.index, slot.text)
                for n, e in enumerate(plan.expenses):
                    if n not in recorded:
                        assert not words_in(slot.text) & (words_in(e.item) | words_in(e.subscene)), (slot.text, e)


def test_questions_name_categories_only_in_the_users_words(smoke_record):
    """Each category a question names was said by the user, in a session the question may read."""
    scenes = list(CATALOGUE.scenes)
    user_text = [" ".join(USER_LINE.findall(chunk)) for chunk in smoke_record["chunks"]]
    named = 0
    for q in smoke_record["questions"]:
        said = " ".join(user_text[:q["position"] + 1])
        for scene in scenes:
            if re.search(rf"\b{re.escape(scene)}\b", q["query"], re.I):
                named += 1
                assert re.search(rf"\b{re.escape(scene)}\b", said, re.I), (scene, q["query"])
    assert named >= 5
    assert not any("consumption scene" in q["query"] for q in smoke_record["questions"])  # a word no user says


def _fixtures() -> list[dict]:
    return [json.loads(line) for line in FIXTURES.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_reply_fixtures_are_real_and_labelled():
    rows = _fixtures()
    assert len(rows) >= 200 and {r["label"] for r in rows} == {"answers", "non-sequitur"}
    assert all(r["user"] and r["reply"] and r["source"] for r in rows)
    assert sum(r["source"].startswith("notebooks/06") for r in rows) >= 10


def test_off_topic_measured_on_hand_labelled_real_replies():
    """Precision and recall of `off_topic` at flagging a non sequitur, on real SmolLM2-135M replies
    (tests/fixtures/memory_replies.jsonl). Measured: n = 224 (91 non sequiturs), precision 0.69 (35 of
    51 flagged), recall 0.38 (35 of 91); on the 80 replies labelled after the check was written
    (source "fixtures29b"), 0.53 (10 of 19) and 0.32 (10 of 31). It catches a reply that ignores the
    line, not one that takes up its words and misreads them ("I feel much better with a fresh cut." ->
    "... a fresh cut of the day's meat.")."""
    c = off_topic_agreement(_fixtures(), CATALOGUE.reply_topics)
    precision, recall = c["caught"] / c["flagged"], c["caught"] / c["non_sequiturs"]
    assert precision >= 0.65 and recall >= 0.35, c


@pytest.mark.parametrize("user, reply, answers", [
    ("Some months are great and some are really slow.",
     "If you can't get rid of those few weeks, it's time to have a chat with your bank about budget changes.", False),
    ("I hope this course helps my career.", "You're always welcome to join the fun.", False),
    ("I want to set money aside for emergencies.", "Saving for emergencies is a great idea!", True),
    ("Do you think tracking every expense really helps?", "Tracking where it goes shows you what to cut.", True),
    ("Thanks, that's everything for now.", "You're welcome, see you next time!", True),
])
def test_a_reply_must_share_a_subject_with_the_users_line(user, reply, answers):
    assert (off_topic(reply, user, CATALOGUE.reply_topics) is None) == answers


def test_the_assistant_may_not_answer_as_the_user():
    assert {"as_user", "echo"} <= {p.split(":")[0] for p in turn_problems(
        "Hello, it's me!", ["Hello, it's me again."], reply=True)}


def test_an_off_topic_reply_is_sampled_again(fake_openai):
    srv = fake_openai(model_responder(turn_mode=lambda request, n_seen: "off_topic" if n_seen < 2 else "valid"))
    plans = plan_sessions(SMOKE, CATALOGUE, "0", RESERVED_TURNS)
    client = LLMClient(Endpoint(srv.base_url, "fake-model"), max_retries=1, backoff_base=0.01)

    async def main():
        try:
            return await generate_session_turns(client, plans[0], CATALOGUE, 0, max_attempts=3)
        finally:
            await client.aclose()
    result = run_sync(main())
    funnel = result.turn_funnel
    assert result.status == "passed" and funnel["off_topic"] >= 2 * funnel["kept"], funnel
    assert OFF_TOPIC not in json.dumps(result.dialogue)
