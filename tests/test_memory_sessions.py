"""Sessions: the ledger drawn from the catalogue, the turn rules (planted faults), the turns recipe and
the one-call recipe over a loopback fake server, and chunk rendering."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kit.llm.client import LLMClient, run_sync
from kit.llm.endpoints import Endpoint
from kit.memory.dataset import MemoryConfig
from kit.memory.rules import trim_to_sentence, turn_problems
from kit.memory.scenes import ScenesError, load_catalogue
from kit.memory.sessions import (Expense, SessionPlan, amounts_in, check_dialogue, generate_session_one_call,
                                 plan_sessions, render_chunk, session_prompt, states, to_transactions)
from kit.memory.turns import MAX_SWAPS, RESERVED_TURNS, generate_session_turns, layout
from memory_fakes import GOOD_TURNS, PLANTED, model_responder, session_reply

CATALOGUE = load_catalogue()
PLAN = SessionPlan(index=0, date="2024-03-05", expenses=(Expense("Dining", "Coffee", "a latte", "4.5"),
                                                        Expense("Transportation", "Taxi", "a taxi home", "23")),
                   turns=12, first=True, persona="student")
CONFIG = MemoryConfig(num_sessions=40, min_turns=20, max_turns=30, min_scenes=2, max_scenes=5)


def test_amounts_match_whatever_their_formatting():
    assert amounts_in("I paid 45.5 yuan, then $1,234.50 and 7.") == {4550, 123450, 700}
    assert amounts_in("On 2024-01-15 nothing.") == set()  # the date's digits are not amounts
    assert states("Coffee: a latte, 4.50 in all, under dining.", PLAN.expenses[0])
    assert not states("A latte, 5.4, Dining.", PLAN.expenses[0])
    assert not states("Dining: coffee, 4.5.", PLAN.expenses[0])
    assert not states("A latte for 4.5.", PLAN.expenses[0])  # questions name the category: the user must say it


def test_the_ledger_is_drawn_from_the_catalogue_and_the_plan_is_seeded():
    plans = plan_sessions(CONFIG, CATALOGUE, "7", RESERVED_TURNS)
    subs = {(s.scene, s.name): s for s in CATALOGUE.subscenes}
    assert plans == plan_sessions(CONFIG, CATALOGUE, "7", RESERVED_TURNS)
    assert plans != plan_sessions(CONFIG, CATALOGUE, "8", RESERVED_TURNS)
    dates = [p.date for p in plans]
    assert dates == sorted(dates) and len(set(dates)) == 40 and [p.first for p in plans[:2]] == [True, False]
    for p in plans:
        assert 20 <= p.turns <= 30 and p.turns % 2 == 0 and 2 <= len(p.expenses) <= 5
        for e in p.expenses:
            sub = subs[e.scene, e.subscene]
            assert e.item in sub.items and sub.price[0] - 0.01 <= float(e.amount) <= sub.price[1] + 0.01


def test_a_bad_catalogue_entry_is_named(tmp_path):
    text = (CATALOGUE.path.read_text().replace("Coffee: {price: [2.5, 7]", "Coffee: {price: [7, 2.5]"))
    bad = tmp_path / "scenes.yaml"
    bad.write_text(text)
    with pytest.raises(ScenesError, match=r"scenes.yaml: Dining / Coffee: price must be \[low, high\]"):
        load_catalogue(bad)
    bad.write_text(CATALOGUE.path.read_text().replace('"Please record $amount for $item under $category."',
                                                      '"Please record $amount for $item."'))
    with pytest.raises(ScenesError, match=r"expense: 'Please record \$amount for \$item.' must use every one"):
        load_catalogue(bad)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_every_planted_fault_breaks_a_rule(name):
    text = trim_to_sentence(PLANTED[name]) or PLANTED[name]
    assert turn_problems(text, [], numbers=False), name


def test_good_turns_pass_and_a_copy_does_not():
    for text in GOOD_TURNS:
        assert turn_problems(text, [], numbers=False) == []
    assert turn_problems("That sounds like a sensible plan for this month!", GOOD_TURNS) == [
        "copy: repeats an earlier turn"]
    assert trim_to_sentence("Good idea. Saving a little every week and") == "Good idea."


def test_the_layout_greets_first_and_carries_every_expense():
    plan = replace(PLAN, turns=20)
    slots = layout(plan, CATALOGUE, 1)
    assert len(slots) == 20 and [s.role for s in slots] == ["user", "assistant"] * 10
    assert slots[0].kind == "greeting" and slots[0].text in CATALOGUE.phrasings["greeting_first"]
    assert slots[-2].kind == "closing" and slots[-1].text is None  # the model closes
    for n, e in enumerate(plan.expenses):
        carrying = [s for s in slots if s.expense == n]
        assert [s.kind for s in carrying] == ["expense", "confirm"] and all(states(s.text, e) for s in carrying)
    talk = [s.text for s in slots if s.kind == "talk"]
    assert len(talk) == len(set(talk)) == 20 // 2 - 2 - 2


def _client(srv):
    return LLMClient(Endpoint(srv.base_url, "fake-model"), max_retries=1, backoff_base=0.01)


def run(coro_fn, srv, *args, **kw):
    """Run one recipe call with a fresh client, closing it after."""
    client = _client(srv)

    async def main():
        try:
            return await coro_fn(client, *args, **kw)
        finally:
            await client.aclose()
    return run_sync(main())


def test_the_turns_recipe_writes_a_whole_session_whose_ledger_is_in_its_evidence_turns(fake_openai):
    srv = fake_openai(model_responder())
    plan = replace(PLAN, turns=22)
    result = run(generate_session_turns, srv, plan, CATALOGUE, seed=3, max_attempts=3)
    assert result.status == "passed" and len(result.dialogue) == 22
    model_turns = [i for i, s in enumerate(layout(plan, CATALOGUE, 3)) if s.text is None]
    assert result.requests == len(srv.chat_requests) >= len(model_turns) == result.turn_funnel["kept"]
    for tx in to_transactions(result, 0):
        assert len(tx.evidence_turns) == 2
        for turn in tx.evidence_turns:
            text = result.dialogue[turn]["content"]
            assert tx.description in text and round(tx.amount * 100) in amounts_in(text)
    request = srv.chat_requests[0].json
    assert request["max_tokens"] <= 40 and request["messages"][0]["role"] == "system"


def test_planted_faults_never_reach_the_dialogue(fake_openai):
    """Every model turn's first candidates are planted faults (JSON fragments, a wrong amount, a leaked
    prompt, a cut sentence); the re-sampled good candidate is kept, the faults nowhere."""
    faults = sorted(PLANTED)
    srv = fake_openai(model_responder(turn_mode=lambda request, n_seen: faults[n_seen] if n_seen < 4 else "valid"))
    result = run(generate_session_turns, srv, replace(PLAN, turns=10), CATALOGUE, seed=3, max_attempts=5)
    assert result.status == "passed"
    text = json.dumps(result.dialogue)
    assert "}}" not in text and "99.5" not in text and "Respond to" not in text and "and you can" not in text
    funnel = result.turn_funnel
    assert funnel["asked"] == 5 * funnel["kept"]
    assert {"markup", "number", "prompt_leak", "cut"} <= set(funnel)


def test_a_turn_with_no_good_candidate_rejects_the_session_with_reasons(fake_openai):
    srv = fake_openai(model_responder(turn_mode=lambda request, n_seen: "json"))
    result = run(generate_session_turns, srv, PLAN, CATALOGUE, seed=3, max_attempts=2)
    assert result.status == "rejected" and result.requests == 2 * (1 + MAX_SWAPS)  # the greeting swapped twice
    assert result.problems[0] == "turn 1: no candidate passed" and "markup" in result.problems[1]
    assert len(result.problems) == 1 + 2 * (1 + MAX_SWAPS) and result.turn_funnel["user_line_swapped"] == MAX_SWAPS


def test_a_user_line_no_reply_fits_is_swapped_for_another(fake_openai):
    first = layout(PLAN, CATALOGUE, 3)[0].text
    srv = fake_openai(model_responder(
        turn_mode=lambda request, n_seen: "leak" if request["messages"][-1]["content"] == first else "valid"))
    result = run(generate_session_turns, srv, PLAN, CATALOGUE, seed=3, max_attempts=2)
    assert result.status == "passed" and result.dialogue[0]["content"] != first
    assert result.dialogue[0]["content"] in CATALOGUE.phrasings["greeting_first"]
    assert "Respond to" not in json.dumps(result.dialogue) and result.turn_funnel["prompt_leak"] == 2


def test_one_call_checks_trust_nothing():
    prompt = session_prompt(PLAN)
    assert "- 4.5 for a latte" in prompt and "2024-03-05" in prompt
    dialogue, evidence, problems = check_dialogue(json.loads(session_reply(prompt, 1)), PLAN)
    assert problems == [] and evidence == [[2, 3], [4, 5]]
    for mode, expected in [("wrong_amount", "expense 0 (4.5 for a latte) is not stated"),
                           ("extra_amount", "says amounts the ledger does not hold: [77.0]"),
                           ("json_fragment", "dialogue[1]: markup")]:
        _, _, problems = check_dialogue(json.loads(session_reply(prompt, 1, mode)), PLAN)
        assert any(expected in p for p in problems), (mode, problems)


def test_one_call_reasks_and_flags(fake_openai):
    srv = fake_openai(model_responder(lambda prompt, n_seen: "wrong_amount" if n_seen == 0 else "valid"))
    result = run(generate_session_one_call, srv, PLAN, 1, 2, 12, max_attempts=3)
    assert (result.status, result.requests) == ("passed", 2)
    seeds = [r.json["seed"] for r in srv.chat_requests]
    assert seeds[0] != seeds[1]  # a re-ask samples afresh, not from the cache
    srv = fake_openai(model_responder(lambda prompt, n_seen: "wrong_amount"))
    assert run(generate_session_one_call, srv, PLAN, 1, 2, 12, max_attempts=2).status == "flagged"
    srv = fake_openai(model_responder(lambda prompt, n_seen: "not_json"))
    result = run(generate_session_one_call, srv, PLAN, 1, 2, 12, max_attempts=2)
    assert result.status == "rejected" and "not JSON" in result.problems[0]


def test_chunk_rendering():
    text = render_chunk("2024-01-15", [{"role": "user", "content": "Hi,\nI'd like to record my expenses."},
                                       {"role": "assistant", "content": "Of course!"}])
    assert text == ('[2024-01-15] User said, "Hi, I\'d like to record my expenses."\n'
                    '[2024-01-15] Assistant said, "Of course!"')


def test_a_catalogue_line_that_breaks_a_turn_rule_is_named(tmp_path):
    bad = tmp_path / "scenes.yaml"
    bad.write_text(CATALOGUE.path.read_text().replace('"Hello, it\'s me again."', '"Hi!"'))
    with pytest.raises(ScenesError, match=r"phrasings: greeting_later: 'Hi!' breaks a turn rule: too_short"):
        load_catalogue(bad)


@pytest.mark.parametrize("reply, rule", [
    ("No, I don't think it does.", "dismissive"),
    ("I'm back with more expenses, and I'd like to discuss how I can manage my budget effectively.", "as_user"),
    ("I've been eating out a lot lately, is that bad for you?", "echo"),
])
def test_replies_that_no_reader_would_keep_are_refused(reply, rule):
    problems = turn_problems(reply, ["I've been eating out a lot lately, is that bad?"], reply=True)
    assert rule in [p.split(":")[0] for p in problems]


@pytest.mark.parametrize("reply", [
    "This message is warm and encouraging, but it can be made more engaging.",  # seen from the 135M model
    "Sure, no need for numbers. You can enjoy the gift of caffeine!",
    "Lad, I'm sorry to hear about your personal financial situation.",
    "I'm really sorry, but I'd need to know the exact amount due today.",
])
def test_leaked_instructions_and_odd_openings_are_refused(reply):
    assert turn_problems(reply, ["Coffee on the way to work is my little treat."], numbers=False, reply=True)
