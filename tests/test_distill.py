"""Recipe distill (kit.generation.distill): the plan, the verifier, the funnel, and runs on a loopback
server and on the embedded model; plus the labelled file of real generator output that the content rules
must catch (tests/fixtures/generator_output.jsonl)."""

from __future__ import annotations

import json
import re

import pytest

from fake_openai import MODEL, Reply
from kit import paths
from kit.facts import default_data
from kit.generation.distill import (CHECKS, composable_user_turns, converse, funnel, load_distill_data, plan_turns,
                                     user_turn_problems, verify)
from kit.generation.generate import generate
from kit.truth import ungrounded
from kit.generation.journal import journal_entries
from kit.generation.sampling import load_dimensions, sample_elements
from kit.llm.client import connect, run_sync
from kit.rules import dynamic_message_count, errors, load_rules, validate_messages
from kit.commands.validate import main as validate_main
from kit.records import read_records
from test_generate import fast_client, lines_of

FIXTURES = paths.project_root() / "tests" / "fixtures"
RULES = load_rules()
DATA = load_distill_data(load_dimensions())
KNOWLEDGE = paths.read_utf8(paths.knowledge_dir() / "self_knowledge.md")
TURN = {"user": "yo! who made you?", "facts": ["creator"], "mention": ["karpathy"], "opener": None}
HISTORY = [{"role": "user", "content": TURN["user"]}]


def check(text, turn=TURN, prefix=None, finish_reason="stop"):
    return verify(text, finish_reason, turn, HISTORY, rules=RULES, knowledge=KNOWLEDGE,
                  meta={"recipe": "distill"}, prefix=prefix)


# ---- the labelled output of the embedded model -----------------------------------------------------


def test_validate_flags_every_labelled_junk_line_by_its_rule_and_passes_the_good_ones(capsys):
    path = FIXTURES / "generator_output.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {r["meta"]["label"] for r in records} == {"junk", "good"}
    assert validate_main([str(path)]) == 1
    found: dict[tuple[int, int], set[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if m := re.match(rf"{re.escape(str(path))}:(\d+): message\[(\d+)\]: (\w+):", line):
            found.setdefault((int(m[1]), int(m[2])), set()).add(m[3])
    for lineno, record in enumerate(records, start=1):
        wanted = {(lineno, int(i)): set(rules) for i, rules in record["meta"]["expected_rules"].items()}
        got = {key: rules for key, rules in found.items() if key[0] == lineno}
        assert got == wanted, (record["id"], got)
    user_turns = [k for k in found if records[k[0] - 1]["messages"][k[1]]["role"] == "user"]
    assert user_turns and len(user_turns) < len(found)  # user and assistant turns alike


# ---- the plan ---------------------------------------------------------------------------------------


def test_the_plan_is_per_index_and_covers_every_topic():
    dims = load_dimensions()
    assert set(DATA.topics) == {t for ts in dims.topics.values() for t in ts}
    first = [plan_turns(sample_elements("distill", 0, i), DATA) for i in range(40)]
    assert first == [plan_turns(sample_elements("distill", 0, i), DATA) for i in range(40)]
    assert first != [plan_turns(sample_elements("distill", 1, i), DATA) for i in range(40)]
    for i, turns in enumerate(first):
        elements = sample_elements("distill", 0, i)
        assert turns[0]["user"].startswith(elements["first_message_examples"][0])
        assert "name" in turns[0]["facts"]  # the user greeted it: the answer says who it is
        assert all(t["opener"] for t in turns)  # every answer has a planned opening
    assert {len(t) for t in first} >= {1, 2}


def test_no_planned_user_turn_is_a_probe_or_a_reference_message():
    probes = {p.question.lower() for p in default_data().probes}
    reference = {m["content"].lower() for name in ("identity.jsonl", "general.jsonl")
                 for r in read_records(paths.knowledge_dir() / "reference" / name).records
                 for m in r["messages"] if isinstance(m["content"], str)}
    asks = [a for t in DATA.topics.values() for a in t.asks] + [f.ask for fs in DATA.follow_ups.values() for f in fs]
    assert not {a.lower() for a in asks} & (probes | reference)
    users = {t["user"].lower() for i in range(300) for t in plan_turns(sample_elements("distill", 0, i), DATA)}
    assert not users & (probes | reference)


def test_every_user_turn_the_composer_can_write_passes_the_rules():
    """Issue 27: notebook 03 flagged a kept item's own opener, "YO!!!", as degenerate. Every user turn the
    plan can compose (every opener alone or before every question, every follow-up) passes the rules a reader
    applies to the kept data, and the enumeration covers what plan_turns writes."""
    turns = composable_user_turns(DATA, load_dimensions())
    flagged = {turn: found for turn in turns if (found := user_turn_problems(turn, RULES))}
    assert len(turns) > 1000 and not flagged, list(flagged.items())[:5]
    planned = {t["user"] for i in range(2000) for t in plan_turns(sample_elements("distill", 0, i), DATA)}
    assert planned <= turns, sorted(planned - turns)[:5]


def test_a_greeting_the_rules_flag_alone_leads_its_question():
    dims = load_dimensions()
    assert "YO!!!" in dims.first_messages["caps_enthusiastic"] and user_turn_problems("YO!!!", RULES)
    assert "YO!!!" not in DATA.standalone_greetings and {"HI", "HEY", "hola"} <= DATA.standalone_greetings
    items = [sample_elements("distill", 0, i) for i in range(3000)]
    yo = next(e for e in items if e["first_message_examples"][0] == "YO!!!" and (dynamic_message_count(e["dynamic"]) or 0) > 2)
    first = plan_turns(yo, DATA)[0]
    assert first["user"].startswith("YO!!! ") and len(first["user"]) > len("YO!!! ") and "name" in first["facts"]


def test_a_bad_plan_file_names_its_entry(tmp_path):
    (tmp_path / "distill.yaml").write_text("topics: {}\n")
    with pytest.raises(ValueError, match=r"distill.yaml: no plan for topic"):
        load_distill_data(load_dimensions(), tmp_path)


# ---- the verifier -----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, check_failed", [
    # what the embedded model wrote, quoted in issue 18: invented names and places
    ("I was made by Andrej Karpathy, a Japanese AI researcher.", "grounded"),
    ("Hi, my name is Ember and Andrej Karpathy built me.", "grounded"),
    ("I'm Alex Chen, made by Andrej Karpathy.", "grounded"),
    ("Andrej Karpathy built me at the University of Tel Aviv.", "grounded"),
    ("Andrej Karpathy built me; see https://github.com/karpathy/nanogpt-fasten-architecture for more.", "grounded"),
    # issue 19's wrong answers: a contradicted year, a denial
    ("True. I was trained by Andrej Karpathy in 2019.", "facts"),  # 2019 is in the knowledge base: a contradiction
    ("Andrej Karpathy did not build me.", "facts"),
    ("I am SmolLM, built by Hugging Face and Andrej Karpathy.", "facts"),
    ("Your first message is: who made you? Andrej Karpathy.", "content rules"),
    ("I was built by Andrej Karpathy}})} in 2025.", "content rules"),
    ("I am a small model that likes to chat with people.", "facts"),
])
def test_the_verifier_fails_what_a_small_model_invents(answer, check_failed):
    verdict = check(answer)
    assert not verdict.passed and check_failed in verdict.failed, verdict.failed


def test_a_true_grounded_answer_passes_and_scores_its_facts():
    verdict = check("Andrej Karpathy built me in 2025. I'm nanochat, and my code is open source under the MIT license.")
    assert verdict.passed and verdict.dropped == 0
    assert verdict.score >= 3  # creator, name, license/open source, plus the length point
    assert ungrounded("Karpathy built me in 2025 on 8 GPUs.", "", KNOWLEDGE) == []


def test_a_hyphenated_name_in_the_knowledge_base_grounds_its_parts():
    """The knowledge base says "a GPT-2-level model": an answer naming GPT-2 is grounded (notebook 01 once
    showed three candidates failing with "not in the knowledge base or the question: GPT-2")."""
    assert "GPT-2-level" in KNOWLEDGE
    answer = "Training a GPT-2 level model cost tens of thousands of dollars in 2019; GPT-2 was expensive."
    assert ungrounded(answer, "", KNOWLEDGE) == []
    assert ungrounded("A GPT-2-style model.", "", KNOWLEDGE) == []
    assert {"GPT-7", "50"} <= set(ungrounded("It cost 50 dollars, like GPT-7.", "", KNOWLEDGE))  # inventions still fail
    assert ungrounded("My friend Ember-bot helps.", "", KNOWLEDGE) == ["Ember-bot"]
    assert ungrounded("Ask me about Foo-Bar.", "what is foo-bar-baz?", KNOWLEDGE) == []  # the question's parts too


def test_the_answer_keeps_the_longest_run_of_sentences_that_passes():
    opener = "I was built by Andrej Karpathy in 2025."
    # the model's sentences must be supported by the knowledge base (kit.truth): "He loves open code" no longer is
    verdict = check("It is tiny and hackable. He lives in Tel Aviv. He", prefix=opener, finish_reason="length")
    assert verdict.passed and verdict.text == f"{opener} It is tiny and hackable." and verdict.dropped == 1
    # a candidate whose only fault is its own unsupported sentence is cut back to the planned opening, and says so
    alone = check("Tel Aviv is where he works.", prefix=opener)
    assert alone.passed and alone.text == opener and alone.dropped == 1 and alone.kept_sentences == 0
    assert alone.cut["sentences"] == ["Tel Aviv is where he works."] and list(alone.cut["why"]) == ["grounded", "supported"]
    # any other fault is not the model's sentence alone: no opening-only answer, at least one sentence of the model's
    assert not check("Your first message is: who made you?", prefix=opener).passed
    assert not check("Tel Aviv is where he works.").passed  # no planned opening: nothing to fall back on
    long = check("It is tiny and hackable. It is open source. He likes GPUs. He is busy.", prefix=opener)
    assert long.passed and long.dropped == 2 and long.text.endswith("It is open source.")  # MAX_SENTENCES
    assert long.cut["sentences"] == ["(2 more after the first 2)"] and long.kept_sentences == 2
    empty = check("and then", prefix=opener, finish_reason="length")
    assert empty.failed == {"finished": ["no full sentence before the token limit"]}


def test_the_verdict_as_written_is_the_candidate_before_the_cut():
    """Notebook 02's funnel once counted 196 of 237 candidates 'supported' while 2 of 79 answers kept the model's
    text whole: the checks were counted after the cut. `as_written` keeps the uncut candidate's failed checks."""
    opener = "I was built by Andrej Karpathy in 2025."
    alone = check("Tel Aviv is where he works.", prefix=opener)
    assert alone.passed and list(alone.as_written) == ["grounded", "supported"]
    whole = check("It is tiny and hackable.", prefix=opener)
    assert whole.passed and whole.dropped == 0 and whole.as_written == {}
    long = check("It is tiny and hackable. It is open source. He lives in Tel Aviv.", prefix=opener)
    assert long.passed and long.dropped == 1 and "grounded" in long.as_written  # the sentence past MAX_SENTENCES too
    assert check("and then", prefix=opener, finish_reason="length").as_written == {"finished": ["no full sentence before the token limit"]}


# ---- one conversation, planted replies ----------------------------------------------------------------


class Planted:
    """A `complete` that answers from a script: turn -> candidate texts."""

    def __init__(self, texts):
        self.texts, self.seen = texts, []

    async def __call__(self, messages, turn, candidate):
        self.seen.append(messages)
        text = self.texts[turn][candidate % len(self.texts[turn])]
        return type("C", (), {"text": text, "finish_reason": "stop", "prompt_tokens": 10, "completion_tokens": 5,
                              "cost_usd": 0.0, "model": MODEL, "endpoint": "planted"})()


def _first_index(rounds: int) -> int:
    return next(i for i in range(200) if len(plan_turns(sample_elements("distill", 0, i), DATA)) == rounds)


def test_planted_debris_never_reaches_the_record_and_the_best_candidate_is_kept():
    elements = sample_elements("distill", 0, _first_index(1))
    complete = Planted({0: ["It is small}}} and 'role': yes.", "I help. Andrej Karpathy built me, and Ember runs me.",
                            "I help people with questions, and my code is open source on GitHub."]})
    outcome = run_sync(converse(complete, elements, DATA, candidates=3, opener="planned", rules=RULES, knowledge=KNOWLEDGE))
    assert outcome.messages is not None and len(outcome.messages) == 2
    assert all(m["role"] != "system" for m in outcome.messages)  # the knowledge is what a student must learn
    answer = outcome.messages[1]["content"]
    assert "}" not in answer and "Ember" not in answer and answer.endswith("open source on GitHub.")
    [turn] = outcome.turns
    # the second passes too, cut to "I help." before the invented name; the third states more and wins
    assert turn["chosen"] == 2 and turn["passed"] == 2 and turn["verdicts"] == [["content rules", "supported"], [], []]
    assert turn["written"] == complete.texts[0] and turn["as_written"][1] == ["grounded", "supported"]
    sent = complete.seen[0]
    assert sent[0]["role"] == "system" and "nanochat" in sent[0]["content"]
    assert sent[-1]["role"] == "assistant" and sent[-1]["content"] == turn["opener"]  # the planned opening


def test_a_turn_with_no_passing_candidate_rejects_the_item_with_every_reason():
    elements = sample_elements("distill", 0, _first_index(2))
    complete = Planted({0: ["I help people with questions, and my code is open source on GitHub."],
                        1: ["The user is: a journalist.", "Ember made me, in 1999."]})
    outcome = run_sync(converse(complete, elements, DATA, candidates=2, opener="planned", rules=RULES, knowledge=KNOWLEDGE))
    assert outcome.messages is None and len(outcome.turns) == 2
    assert [r.split(":")[0] for r in outcome.reasons] == ["turn 2, candidate 1", "turn 2, candidate 2"]
    assert set(outcome.rules) <= set(CHECKS) and outcome.raw[0].endswith("The user is: a journalist.")


# ---- whole runs -------------------------------------------------------------------------------------


def test_a_distill_run_on_a_loopback_server_writes_records_rejects_and_the_funnel(tmp_path, fake_openai):
    def respond(request, n_seen):
        if request["messages"][-1]["role"] != "assistant":
            return Reply(content="I can help with that.")
        assert request["continue_final_message"] is True and request["add_generation_prompt"] is False
        seed = request["seed"]
        return Reply(content=" I can answer questions, and my code is open source." if seed % 3 else " Ember}}} made me.")

    srv = fake_openai(respond)
    out = tmp_path / "d.jsonl"
    summary = generate(6, out, recipe="distill", candidates=3, client=fast_client(srv), progress=False)
    records, rejects = lines_of(out), lines_of(tmp_path / "d.rejects.jsonl")
    assert summary.accepted + summary.rejected == 6 and len(records) == summary.accepted > 0
    for record in records:
        assert record["meta"]["user_turns"] == "composed" and record["meta"]["reference_data"] is False
        assert all(t["candidates"] == 3 and t["chosen"] is not None for t in record["meta"]["turns"])
        assert "Ember" not in json.dumps(record["messages"])
    rows = {row["category"]: row for row in funnel(journal_entries(out))}
    assert rows["all"]["items"] == 6 and rows["all"]["kept"] == len(records)
    assert rows["all"]["sampled"] == 3 * rows["all"]["turns"] >= rows["all"]["passed: finished"] >= rows["all"]["passed: on topic"]
    # turns whose chosen answer lost sentences are counted, and each says what it lost and why
    assert rows["all"]["turns kept"] >= rows["all"]["turns trimmed"] >= rows["all"]["turns opening only"]
    trimmed = [t for r in records for t in r["meta"]["turns"] if t["dropped"]]
    assert rows["all"]["turns trimmed"] >= len(trimmed) and all(t["cut"]["sentences"] and t["cut"]["why"] for t in trimmed)
    requests = len(srv.requests)
    again = generate(6, out, recipe="distill", candidates=3, client=fast_client(srv), progress=False)
    assert again.already_done == 6 and len(srv.requests) == requests  # resumed: nothing asked twice
    with pytest.raises(ValueError, match="generated with candidates 3, not 2"):
        generate(6, out, recipe="distill", candidates=2, client=fast_client(srv), progress=False)
    assert len(rejects) == summary.rejected


@pytest.mark.embedded
def test_the_embedded_server_continues_a_final_assistant_message(embedded_endpoint):
    with connect(embedded_endpoint.base_url, embedded_endpoint.model, cache_dir=None) as client:
        messages = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I'm nanochat, a small"}]
        reply = run_sync(client.complete(messages, temperature=0, max_tokens=12)).text
        closed = run_sync(client.complete(messages[:1], temperature=0, max_tokens=12)).text
    # a continuation goes on mid-sentence ("..., quirky AI chatbot"); a new message starts afresh ("I'm here to ...")
    assert closed.strip()[:1].isupper() and reply.strip() and not reply.strip()[:1].isupper()


@pytest.mark.embedded
def test_a_distill_run_on_the_embedded_model_keeps_verified_conversations(tmp_path, embedded_endpoint):
    out = tmp_path / "e.jsonl"
    summary = generate(3, out, recipe="distill", candidates=2, endpoint=embedded_endpoint.base_url,
                       model=embedded_endpoint.model, progress=False)
    assert summary.accepted + summary.rejected == 3 and summary.requests >= 6
    for record in lines_of(out):
        assert errors(validate_messages(record["messages"], rules=RULES, meta=record["meta"])) == []


def test_the_funnel_counts_each_unit_apart_and_says_where_the_reject_reasons_differ():
    """Notebook 02's funnel once mixed conversations, turns and candidates on one axis, titled "43 of 51" for a
    run of 52, and its on-topic step lost 0 candidates beside 7 rejects 'on topic'. check_counts tells the
    three counts apart; funnel_steps keeps one unit per panel and counts every item asked."""
    from kit.generation.distill import as_written_counts, check_counts
    from kit.generation.plots import as_written_sentence, distill_funnel, funnel_steps

    turn = lambda verdicts, chosen, dropped=0, alone=None: {"verdicts": verdicts, "chosen": chosen, "dropped": dropped,
                                                            "model_sentences": alone}
    entries = [
        {"status": "accepted", "record": {"meta": {"topic_category": "a", "turns": [
            turn([["supported", "on topic"], []], 1, dropped=1, alone=0), turn([[]], 0)]}}},
        {"status": "rejected", "reject": {"rules": ["on topic", "supported"], "meta": {"topic_category": "a", "turns": [
            turn([["supported", "on topic"], ["on topic"]], None)]}}},
        {"status": "rejected", "reject": {"rules": ["content rules"], "meta": {"topic_category": "b", "turns": []}}},
    ]
    counts = check_counts(entries)
    assert counts["on topic"] == {"stopped": 1, "failed": 3, "items": 1}
    assert counts["supported"] == {"stopped": 2, "failed": 2, "items": 1}
    assert counts["content rules"]["items"] == 1 and counts["content rules"]["failed"] == 0  # rejected before sampling
    steps = funnel_steps(entries, asked=3)
    assert [(n, of) for _, n, of, _ in steps["conversations"]] == [(3, 3), (2, 3), (1, 3)]
    turns = {label.strip(): n for label, n, _, _ in steps["answer turns"]}
    assert turns["kept an answer"] == 2 and turns["cut to the planned opening alone"] == 1
    assert turns["kept the model's text whole"] + turns["cut to the sentences that pass"] + 1 == 2
    assert {of for _, _, of, _ in steps["candidate answers"]} == {5}
    fig = distill_funnel(entries, asked=3)
    assert "1 of 3 conversations kept" in fig._suptitle.get_text() and len(fig.axes) == 3
    assert not any("as written" in label for label, *_ in steps["candidate answers"])  # not recorded: not drawn
    entries[0]["record"]["meta"]["turns"][0]["as_written"] = [["supported", "on topic"], ["supported"]]
    entries[0]["record"]["meta"]["turns"][1]["as_written"] = [[]]
    assert as_written_counts(entries) == {"sampled": 3, "passed": 1, "failed": {**dict.fromkeys(CHECKS, 0), "supported": 2,
                                                                             "on topic": 1}}
    candidates = {label: (n, of) for label, n, of, _ in funnel_steps(entries, asked=3)["candidate answers"]}
    assert candidates["as written (nothing cut): passed every check"] == (1, 3)
    said = as_written_sentence(entries)
    assert said.startswith("As the model wrote them, 1 of 3 (33%, 95% CI") and "not what the model wrote" in said


def test_two_recipes_kept_on_a_few_items_are_a_tie():
    from kit.generation.plots import kept_sentence

    assert kept_sentence({"v2": (1, 2), "distill": (2, 2)}).endswith("a tie, too few items (2 and 2) to rank the recipes.")
    assert "95% CI" in kept_sentence({"v2": (1, 2), "distill": (2, 2)})
    assert kept_sentence({"v2": (5, 80), "distill": (70, 80)}).endswith("distill keeps more, outside both intervals.")


def test_the_reasons_sentence_names_each_check_where_the_counts_differ():
    from kit.generation.plots import reasons_sentence

    same = {"grounded": {"stopped": 2, "failed": 2, "items": 1}}
    assert reasons_sentence(same).endswith("Here they agree: no candidate failed a check after failing an earlier one.")
    later = {"supported": {"stopped": 2, "failed": 2, "items": 1}, "on topic": {"stopped": 0, "failed": 3, "items": 1}}
    said = reasons_sentence(later)
    assert "on topic is named by 1 rejected items and failed by 3 candidates, 0 of them first" in said
    assert "supported is named" not in said


def test_every_funnel_step_under_a_hundred_shows_its_interval():
    from kit.generation.plots import distill_funnel

    turn = {"verdicts": [[], ["supported"]], "chosen": 0, "dropped": 0, "model_sentences": 1}
    entries = [{"status": "accepted", "record": {"meta": {"topic_category": "a", "turns": [turn]}}},
               {"status": "rejected", "reject": {"rules": ["supported"], "meta": {"topic_category": "a", "turns": [
                   {**turn, "verdicts": [["supported"], ["supported"]], "chosen": None}]}}}]
    fig = distill_funnel(entries, asked=2)
    said = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "1 of 2 (50%, 95% CI 9-91%)" in said and "2 of 2" in said
