"""kit.rules and kit.quality.validation: every rule, all problems at once, never an exception, and the CLI.

The content rules are tested on the exact bad examples of issue 13 (tests/fixtures/bad_examples.jsonl)
and on the hand-written reference files, which must pass with no finding at all."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import paths
from kit.commands.validate import main
from kit.quality.validation import validate_file
from kit.rules import CONTENT_RULES, Problem, dynamic_message_count, errors, load_rules, validate_messages

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = paths.knowledge_dir() / "reference"


def U(text="hi"):
    return {"role": "user", "content": text}


def A(text="hello"):
    return {"role": "assistant", "content": text}


def rules(messages, **kwargs):
    return [(p.index, p.rule, p.severity) for p in validate_messages(messages, **kwargs)]


def test_a_good_conversation_has_no_problems():
    assert validate_messages([U(), A()]) == []
    assert validate_messages([{"role": "system", "content": "be brief"}, U(), A(), U("more"), A("sure")]) == []
    parts = [{"type": "text", "text": "2+2="}, {"type": "python", "text": "2+2"}, {"type": "python_output", "text": "4"}]
    assert validate_messages([U(), {"role": "assistant", "content": parts}]) == []


@pytest.mark.parametrize("messages, expected", [
    ([U()], [(None, "min_messages", "error"), (0, "ends_with_assistant", "error")]),
    ([], [(None, "min_messages", "error")]),
    ([A(), A("again")], [(0, "starts_with_user", "error"), (1, "alternation", "error")]),
    ([U(), U("again"), A()], [(1, "alternation", "error")]),
    ([U(), A(), U("bye")], [(2, "ends_with_assistant", "error")]),
    ([U(), {"role": "bot", "content": "x"}], [(1, "role", "error")]),
    ([U(), A(), {"role": "system", "content": "late"}, A()], [(2, "role", "error"), (3, "alternation", "error")]),
    ([U(""), A("   ")], [(0, "content", "error"), (1, "content", "error")]),
    ([U(), {"role": "assistant", "content": None}], [(1, "content", "error")]),
    ([{"role": "user", "content": [{"type": "text", "text": "hi"}]}, A()], [(0, "content", "error")]),
    ([U(), {"role": "assistant", "content": [{"type": "image", "text": "x"}]}], [(1, "content", "error")]),
    ([U(), {"role": "assistant"}], [(1, "shape", "error")]),
    ([U("?"), A("}, {")], [(1, "content", "error")]),  # a user may say "?"; a taught reply needs words
    ([U(), {"role": "assistant", "content": [{"type": "python", "text": "()"}]}], [(1, "content", "error")]),
    ([U(), A("42")], []),
    ([U(), "hello"], [(1, "shape", "error")]),
    ([U("héllo"), A()], [(0, "ascii", "warning")]),
])
def test_each_rule(messages, expected):
    assert rules(messages) == expected


def test_finish_reason_length_is_an_error_and_ascii_rule_can_be_off():
    assert rules([U(), A()], finish_reason="length") == [(None, "finish_reason", "error")]
    assert rules([U(), A()], finish_reason="stop") == []
    assert rules([U("naïve"), A()], ascii_rule=False) == []


def test_all_problems_are_reported_not_just_the_first():
    found = validate_messages([A(""), A("x"), {"role": "tool", "content": 5}], finish_reason="length")
    assert {p.rule for p in found} >= {"finish_reason", "starts_with_user", "content", "alternation", "role"}
    assert errors(found) == [p for p in found if p.severity == "error"]
    assert str(Problem(2, "content", "content is empty")) == "message[2]: content is empty"


@pytest.mark.parametrize("bad", [None, 3, "text", {"messages": []}, [None], [[1, 2]], [{"role": ["x"], "content": {}}],
                                 [{"role": None, "content": [1]}]])
def test_bad_data_never_raises(bad):
    found = validate_messages(bad)
    assert found and all(isinstance(p, Problem) for p in found)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                               st.sampled_from(["role", "content", "type", "text", "x"]), inner, max_size=4),
                           max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_gives_a_list_of_problems(value):
    found = validate_messages(value, finish_reason="length")
    assert found[0] == Problem(None, "finish_reason", "reply was cut off at the token limit (finish_reason=length)")
    _check_problems(found, value, STRUCTURAL_RULES)
    if not isinstance(value, list):
        assert [p.rule for p in found] == ["finish_reason", "shape"]


STRUCTURAL_RULES = {"shape", "min_messages", "role", "starts_with_user", "alternation", "ends_with_assistant",
                    "content", "finish_reason", "ascii"}


def _check_problems(found: list, value, rules: set[str]) -> None:
    """Each problem a Problem of a known rule, about the whole conversation or one of its messages."""
    for p in found:
        assert isinstance(p, Problem) and p.rule in rules and p.severity in ("error", "warning"), p
        assert p.index is None or (isinstance(value, list) and 0 <= p.index < len(value)), p
        assert isinstance(p.message, str) and p.message


def test_cli_lists_every_problem_with_file_line_and_message(tmp_path, capsys):
    path = tmp_path / "conv.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "ok", "messages": [U(), A()], "meta": {}}),
        json.dumps([A(), U()]),                                              # CustomJSON line, two errors
        "{not json",
        json.dumps({"id": "cut", "messages": [U(), A()], "meta": {"finish_reason": "length"}}),
        json.dumps({"messages": [U("ñ"), A()]}),                             # warning only
    ]) + "\n")
    assert main([str(path), "--structure-only"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"{path}: 5 lines, 3 with errors, 4 errors, 1 warnings\n"  # the bad JSON line counts too
    out = captured.out.splitlines()
    assert f"{path}:2: message[0]: the conversation starts with assistant, not user" in out
    assert f"{path}:2: message[1]: the conversation ends with user, not assistant" in out
    assert any(line.startswith(f"{path}:3: invalid JSON") for line in out)
    assert f"{path}:4: reply was cut off at the token limit (finish_reason=length)" in out
    assert any(line.startswith(f"{path}:5: message[0]: non-ASCII") and line.endswith("(warning)") for line in out)
    assert len(out) == 5


def test_cli_a_byte_that_is_not_utf8_is_an_error_of_its_line(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps([U(), A()]).encode()
    path.write_bytes(good + b"\n" + json.dumps([U("caf\u00e9"), A()]).encode("utf-8").replace(b"\\u00e9", b"\xe9") + b"\n" + good + b"\n")
    assert main([str(path), "--no-ascii", "--structure-only"]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{path}:2: not valid UTF-8: byte 0xe9 at byte 34 of the line"]


def test_cli_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps([U("ñ"), A("hello, I am nanochat.")]) + "\n")
    assert main([str(good)]) == 0  # warnings alone do not fail
    assert "(warning)" in capsys.readouterr().out
    assert main([str(good), "--no-ascii"]) == 0 and capsys.readouterr().out == ""
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


# --- content rules ---------------------------------------------------------------------------------

RULES = load_rules()
REPLY = "I am nanochat, a small open-source chat model."


def content(messages, meta=None, rules=RULES):
    return [(p.index, p.rule, p.severity) for p in validate_messages(messages, rules=rules, meta=meta)
            if p.rule in CONTENT_RULES]


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_issue_13_bad_examples_fail_by_their_rule_and_kit_validate_flags_them(capsys):
    bad = FIXTURES / "bad_examples.jsonl"
    records = read_lines(bad)
    assert [r["meta"]["expected_rule"] for r in records] == ["markup", "markup", "shape"]
    assert records[0]["messages"][1]["content"] == "<b>"
    assert records[1]["messages"][0]["content"] == "<h3>Hello,</h4><strong>helo nanochat!"
    assert records[1]["messages"][1]["content"] == "hello tha nanochat!!!"
    assert records[1]["meta"]["topic"] == "doing arithmetic with the calculator tool"
    assert len(records[2]["messages"]) == 2 and "three rounds" in records[2]["meta"]["dynamic"]
    assert content(records[0]["messages"], records[0]["meta"]) == [
        (1, "markup", "error"), (1, "degenerate", "error"), (1, "cut_off", "error"), (1, "too_short", "error")]
    assert content(records[1]["messages"], records[1]["meta"]) == [(0, "markup", "error"), (1, "degenerate", "error")]
    assert content(records[2]["messages"], records[2]["meta"]) == [(None, "shape", "warning")]

    assert main([str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{bad}:1: message[1]: markup: HTML/XML tag '<b>' in plain text" in out
    assert f"{bad}:2: message[0]: markup: HTML/XML tag '<h3>' in plain text" in out
    assert any(line.startswith(f"{bad}:2: message[1]: degenerate: the reply copies the user's message") for line in out)
    assert any(line.startswith(f"{bad}:3: shape: 2 messages, but the dynamic asks for 6") and line.endswith("(warning)")
               for line in out)


@pytest.mark.parametrize("name", ["identity.jsonl", "general.jsonl"])
def test_reference_files_pass_every_rule_with_no_finding(name):
    path = REFERENCE / name
    n, found = validate_file(path, RULES)
    assert n >= 40
    assert [f"{path.name}:{line}: {p}" for line, p in found] == []


def test_each_content_rule():
    short = {"recipe": "v2", "dynamic": "short: one question and one complete answer (2 messages)"}
    assert content([U("who are you?"), A(REPLY)], short) == []
    assert content([U("hi"), A("**nanochat** is a small model.")]) == [(1, "markup", "error")]
    assert content([U("hi"), A("# About me\nI am nanochat, a small model.")]) == [(1, "markup", "error")]
    assert content([U("hi"), A("See [the code](https://github.com/karpathy/nanochat) for more.")]) == [(1, "markup", "error")]
    assert content([U("hi"), A("Sure!")]) == [(1, "too_short", "error")]
    assert content([U("what is 42 / 7?"), A("42 / 7 = 6.")]) == [(1, "too_short", "error")]  # no word of letters
    assert content([U("what is 6 times 7?"), A("6 times 7 is 42.")]) == []
    parts = [{"type": "text", "text": "Let me compute it: "}, {"type": "python", "text": "(12*7)/3"},
             {"type": "python_output", "text": "28"}, {"type": "text", "text": " so the answer is 28."}]
    assert content([U("what is 12*7/3?"), {"role": "assistant", "content": parts}]) == []  # code is not prose
    assert content([U("who are you?"), A("I am SmolLM, a small model made by Hugging Face.")]) == [
        (1, "identity", "error"), (1, "identity", "error"), (1, "identity", "error")]  # two claims, and no taught name
    assert content([U("who are you?"), A("I'm not ChatGPT; I am nanochat, a small open model.")]) == []
    assert content([U("hey, what's your name?"), A("I am a small open-source chat model.")]) == [(1, "identity", "error")]
    assert content([U("the nano in your name means tiny?"), A("Yes, it means tiny and hackable.")]) == []
    loop = "I am nanochat, a small model. I am nanochat, a small model."
    assert content([U("hi"), A(loop)]) == [(1, "degenerate", "error")]
    assert content([U("hi"), A(REPLY), U("and?"), A(REPLY)]) == [(3, "degenerate", "error")]
    assert content([U("hi"), A("I am ~~~ =^.^= ~~~ !!! ??? ... nanochat.")]) == [(1, "degenerate", "error")]
    assert content([U("tell me about your training data"), A("tell me about your training data!")]) == [
        (1, "degenerate", "error")]


@pytest.mark.parametrize("dynamic, count", [
    ("short: one question and one complete answer (2 messages)", 2),
    ("medium: a question, an answer, a follow-up and its answer (4 messages)", 4),
    ("deep: three rounds of increasingly technical questions (6 messages)", 6),
    ("deep: three rounds of questions", 6),
    ("learning: the user starts simple and the assistant builds up step by step", None),
    (None, None),
])
def test_dynamic_message_count(dynamic, count):
    assert dynamic_message_count(dynamic) == count


def test_shape_needs_the_meta_and_allows_even_counts_up_to_eight_when_the_dynamic_names_none():
    six = [U("a question"), A(REPLY), U("why?"), A("Because it is small and open."), U("ok"), A("Glad to help with that.")]
    learning = {"recipe": "v2", "dynamic": "learning: the user starts simple and the assistant builds up step by step"}
    assert content(six) == []  # no meta: nothing to compare with
    assert content(six, learning) == []
    assert content(six, {"recipe": "v2", "dynamic": "medium: a question, an answer, a follow-up and its answer (4 messages)"}) \
        == [(None, "shape", "warning")]
    ten = six + [U("more"), A("Here is more about it."), U("and more"), A("That is all I know about it.")]
    assert content(ten, learning) == [(None, "shape", "warning")]
    assert content(ten, {"recipe": "v1", "dynamic": learning["dynamic"]}) == []  # v1 turns shape off


def test_severities_are_data_per_recipe(tmp_path):
    settings = tmp_path / "rules.yaml"
    settings.write_text("severity: {markup: warning, too_short: error, shape: error, identity: error, degenerate: off, "
                        "leakage: error, fragment: error, cut_off: off}\n"
                        "recipes: {v1: {markup: error}}\nmin_words: 2\n")
    rules = load_rules(settings)
    messages = [U("hi"), A("<i>ok ok</i>")]
    assert content(messages, rules=rules) == [(1, "markup", "warning")]
    assert content(messages, {"recipe": "v1"}, rules=rules) == [(1, "markup", "error")]
    assert content([U("hi"), A("ok")], rules=rules) == [(1, "too_short", "error")]
    for text, message in [("severity: {markup: fatal}\n", "severity 'fatal' is not one of error, warning, off"),
                          ("severity: {markup: error}\n", "no severity for rule 'too_short'"),
                          ("severity: {typo: error}\n", "unknown rule 'typo'"),
                          ("colour: red\n", "unknown setting 'colour'")]:
        broken = tmp_path / f"broken{len(list(tmp_path.iterdir()))}.yaml"  # a fresh path: load_rules caches by path
        broken.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_rules(broken)
    assert main([str(FIXTURES / "bad_examples.jsonl"), "--rules", str(tmp_path / "missing.yaml")]) == 2


def test_content_rules_run_only_on_sound_structure_and_never_raise():
    broken = [U("hi"), {"role": "assistant"}]
    assert validate_messages(broken, rules=RULES) == validate_messages(broken)  # the structural error says it all
    found = validate_messages([U(), A(None)], rules=RULES, meta="not a dict")
    # the reply's missing text, read as empty by the content rules; a meta that is no dict is no problem
    assert [(p.index, p.rule) for p in found] == [(1, "content"), (1, "too_short")]


@settings(max_examples=200, deadline=None)
@given(json_values, json_values)
def test_any_json_value_with_rules_and_meta_gives_a_list_of_problems(value, meta):
    found = validate_messages(value, rules=RULES, meta=meta)
    _check_problems(found, value, STRUCTURAL_RULES | set(CONTENT_RULES))
    assert found or validate_messages(value) == []  # the content rules add to a sound structure only


def test_kit_validate_on_the_bad_examples_plus_the_reference_flags_exactly_the_bad_ones(tmp_path, capsys):
    lines = [line for name in ("identity.jsonl", "general.jsonl") if (REFERENCE / name).exists()
             for line in (REFERENCE / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = (FIXTURES / "bad_examples.jsonl").read_text(encoding="utf-8").splitlines()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(lines[:10] + bad + lines[10:]) + "\n", encoding="utf-8")
    assert main([str(mixed)]) == 1
    flagged = {int(line.split(":")[1]) for line in capsys.readouterr().out.splitlines()}
    assert flagged == {11, 12, 13}


# --- the content rules in generation -----------------------------------------------------------------

def test_generation_reasks_naming_the_content_problem_and_keeps_it_in_meta(tmp_path, fake_openai):
    from fake_openai import MODEL, Reply
    from kit.llm.endpoints import Endpoint
    from kit.generation.generate import generate
    from kit.llm.client import LLMClient
    from kit.generation.prompts import render_prompt
    from kit.records import read_records
    from kit.generation.sampling import sample_elements

    n = 4
    elements = {render_prompt(sample_elements("v2", 0, i)): sample_elements("v2", 0, i) for i in range(n)}

    def conversation(count, reply):
        msgs = [U(f"question {k} about how nanochat works") if k % 2 == 0 else A(reply.format(k=k)) for k in range(count)]
        return json.dumps({"messages": msgs})

    def respond(request, n_seen):
        found = elements[request["messages"][0]["content"]]
        count = dynamic_message_count(found["dynamic"]) or 4
        if len(request["messages"]) == 1 and found["index"] % 2 == 0:
            return Reply(content=conversation(count, "<b>"))
        return Reply(content=conversation(count, "Answer {k}: nanochat is a small open-source chat model."))

    srv = fake_openai(respond)
    client = LLMClient(Endpoint(srv.base_url, MODEL, schema_style="llamacpp"), concurrency=2, timeout=2.0,
                       backoff_base=0.01, max_retries=2)
    summary = generate(n, tmp_path / "c.jsonl", client=client, progress=False)
    assert (summary.accepted, summary.rejected, summary.reasks) == (n, 0, 2)
    records = {r["meta"]["index"]: r for r in read_records(tmp_path / "c.jsonl").records}
    assert records[0]["meta"]["first_attempt_problems"][:2] == [
        "message[1]: markup: HTML/XML tag '<b>' in plain text", "message[1]: degenerate: the text is mostly symbols "
        "(2 of 3 characters): '<b>'"]
    assert "first_attempt_problems" not in records[1]["meta"]
    reasks = [s.json for s in srv.chat_requests if len(s.json["messages"]) == 3]
    assert len(reasks) == 2 and all("markup: HTML/XML tag '<b>'" in r["messages"][2]["content"] for r in reasks)
    for seen in srv.chat_requests:  # the grammar allows only the message count the item's dynamic asks for
        found = elements[seen.json["messages"][0]["content"]]
        shapes = seen.json["response_format"]["schema"]["properties"]["messages"]["anyOf"]
        wanted = dynamic_message_count(found["dynamic"])
        assert [len(s["prefixItems"]) for s in shapes] == ([wanted] if wanted else [2, 4, 6, 8])
