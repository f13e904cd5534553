"""Session checks (planted faults), chunk rendering, and session generation over a loopback fake server."""

from __future__ import annotations

import json

import pytest

from kit.llm.client import LLMClient, run_sync
from kit.llm.endpoints import Endpoint
from kit.memory.scenes import load_scenes
from kit.memory.sessions import (SessionPlan, amounts_in, check_session, generate_session, render_chunk,
                                 session_example, session_prompt)
from memory_fakes import model_responder

SCENES = load_scenes()
PLAN = SessionPlan(index=0, date="2024-03-05", pairs=(("Dining", "Coffee"), ("Transportation", "Taxi")),
                   amounts=("4.5", "23"),
                   turns=6, first=True)


def reply(transactions, dialogue=None):
    dialogue = dialogue or [{"role": "user", "content": "Coffee was 45.50 yuan and the taxi 1,234.5."},
                            {"role": "assistant", "content": "Noted both."}]
    return {"dialogue": dialogue, "transactions": transactions}


def tx(scene="Dining", subscene="Coffee", amount=45.5, description="latte"):
    return {"scene": scene, "subscene": subscene, "amount": amount, "description": description}


def test_amounts_match_whatever_their_formatting():
    assert amounts_in("I paid 45.5 yuan, then $1,234.50 and 7.") == {4550, 123450, 700}
    assert amounts_in("On 2024-01-15 nothing.") == set()  # the date's digits are not amounts
    assert 4550 in amounts_in("it cost 45.50")


def test_a_clean_reply_passes_and_names_are_canonical():
    result = check_session(reply([tx(scene="dining", subscene="coffee"), tx("Transportation", "Taxi", 1234.5)]),
                           SCENES)
    assert result.problems == []
    assert [(t["scene"], t["subscene"], t["amount"]) for t in result.transactions] == [
        ("Dining", "Coffee", 45.5), ("Transportation", "Taxi", 1234.5)]


@pytest.mark.parametrize("bad, problem", [
    (tx(amount=46.5), "amount 46.5 is not in the dialogue"),
    (tx(scene="Gambling"), "unknown scene 'Gambling'"),
    (tx(subscene="Taxi"), "'Taxi' is not a sub-scene of Dining"),
    (tx(amount=-45.5), "is not positive"),
    (tx(amount="45.5"), "is not a number"),
    (tx(amount=True), "is not a number"),
])
def test_planted_faults_are_caught_and_only_that_transaction_is_dropped(bad, problem):
    result = check_session(reply([tx("Transportation", "Taxi", 1234.5), bad]), SCENES)
    assert len(result.problems) == 1 and problem in result.problems[0] and "transactions[1]" in result.problems[0]
    assert [t["amount"] for t in result.transactions] == [1234.5]


def test_unusable_dialogue_is_reported():
    assert check_session({"transactions": []}, SCENES).dialogue is None
    assert check_session([1, 2], SCENES).dialogue is None
    bad_roles = check_session(reply([tx()], [{"role": "system", "content": "45.5"}]), SCENES)
    assert bad_roles.dialogue is None and any("role 'system'" in p for p in bad_roles.problems)


def test_the_prompt_shows_the_reply_shape_with_this_sessions_own_expenses():
    """A small model copies the example it is shown: a copy must still be a session that passes."""
    plan = SessionPlan(0, "2024-03-01", (("Medical", "Checkup"), ("Transportation", "Taxi")), ("45.5", "12"), 4, True)
    assert session_example(plan) in session_prompt(plan)
    result = check_session(json.loads(session_example(plan)), SCENES)
    assert result.problems == []
    assert [(t["scene"], t["subscene"], t["amount"]) for t in result.transactions] == [
        ("Medical", "Checkup", 45.5), ("Transportation", "Taxi", 12.0)]


def test_chunk_rendering():
    text = render_chunk("2024-01-15", [{"role": "user", "content": "Hi,\nI'd like to record my expenses."},
                                       {"role": "assistant", "content": "Of course!"}])
    assert text == ('[2024-01-15] User said, "Hi, I\'d like to record my expenses."\n'
                    '[2024-01-15] Assistant said, "Of course!"')


def _run(srv, plan=PLAN, max_attempts=3):
    client = LLMClient(Endpoint(srv.base_url, "fake-model"), max_retries=1, backoff_base=0.01)
    return run_sync(generate_session(client, plan, SCENES, seed=1, min_turns=2, max_turns=10,
                                     max_attempts=max_attempts))


def test_valid_reply_passes_first_time(fake_openai):
    srv = fake_openai(model_responder())
    result = _run(srv)
    assert (result.status, result.attempts, len(result.transactions)) == ("passed", 1, 2)
    request = srv.chat_requests[0].json
    assert "2024-03-05" in request["messages"][0]["content"] and "Dining / Coffee: 4.5" in request["messages"][0]["content"]
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["transactions"]["items"]["anyOf"][0]["properties"]["scene"]["enum"] == ["Dining"]


def test_a_mismatch_is_reasked_and_then_passes(fake_openai):
    srv = fake_openai(model_responder(lambda prompt, n_seen: "mismatch" if n_seen == 0 else "valid"))
    result = _run(srv)
    assert (result.status, result.attempts) == ("passed", 2)
    seeds = [r.json["seed"] for r in srv.chat_requests]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # a re-ask samples afresh, not from the cache


def test_a_session_that_never_passes_is_flagged_with_only_checked_transactions(fake_openai):
    srv = fake_openai(model_responder(lambda prompt, n_seen: "mismatch"))
    result = _run(srv)
    assert (result.status, result.attempts, len(srv.chat_requests)) == ("flagged", 3, 3)
    assert len(result.transactions) == 1 and result.transactions_proposed == 2
    assert any("not in the dialogue" in p for p in result.problems)
    said = amounts_in(json.dumps(result.dialogue))
    assert all(round(t["amount"] * 100) in said for t in result.transactions)


def test_a_session_without_json_is_dropped(fake_openai):
    srv = fake_openai(model_responder(lambda prompt, n_seen: "not_json"))
    result = _run(srv, max_attempts=2)
    assert (result.status, result.attempts, result.dialogue) == ("dropped", 2, [])
    assert result.problems and "not JSON" in result.problems[0]


def test_a_transaction_whose_words_the_dialogue_never_says_is_flagged_like_an_amount_mismatch():
    """The committed smoke run's case: the dialogue says "paid 18.5 when I was not here", the ledger
    filed it under Shopping / Daily Necessities as a "gym visit": no word of that is in the text."""
    dialogue = [{"role": "user", "content": "I bought a notebook for 3.2 and paid 18.5 when I was not here."},
                {"role": "assistant", "content": "To continue, you can [insert activity] today."}]
    result = check_session(reply([tx("Shopping", "Daily Necessities", 3.2, "notebook"),
                                  tx("Shopping", "Daily Necessities", 18.5, "gym visit")], dialogue), SCENES)
    assert result.problems == ["transactions[1]: no word of Shopping / Daily Necessities / 'gym visit' "
                               "is in the dialogue"]
    assert [t["description"] for t in result.transactions] == ["notebook"]


@pytest.mark.parametrize("scene, subscene, description", [
    ("Shopping", "Books", "a novel"),  # "books" in the dialogue names the sub-scene
    ("Shopping", "Daily Necessities", "soap"),  # the description is said
    ("Dining", "Coffee", ""),  # no description: the sub-scene is enough
])
def test_a_word_of_the_scene_sub_scene_or_description_is_enough(scene, subscene, description):
    dialogue = [{"role": "user", "content": "Two books and some soap came to 45.5, then coffee 4.5."},
                {"role": "assistant", "content": "Noted."}]
    amount = 4.5 if subscene == "Coffee" else 45.5
    assert check_session(reply([tx(scene, subscene, amount, description)], dialogue), SCENES).problems == []


def test_function_words_prove_nothing():
    dialogue = [{"role": "user", "content": "And the other one for 45.5."}, {"role": "assistant", "content": "Ok."}]
    problems = check_session(reply([tx("Other", "Donation", 45.5, "for the other")], dialogue), SCENES).problems
    assert len(problems) == 1 and "no word of Other / Donation" in problems[0]
