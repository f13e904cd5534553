"""kit.validation: every rule, all problems at once, never an exception, and the CLI."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.validation import Problem, errors, main, validate_messages


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
    assert isinstance(validate_messages(value, finish_reason="length"), list)


def test_cli_lists_every_problem_with_file_line_and_message(tmp_path, capsys):
    path = tmp_path / "conv.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "ok", "messages": [U(), A()], "meta": {}}),
        json.dumps([A(), U()]),                                              # CustomJSON line, two errors
        "{not json",
        json.dumps({"id": "cut", "messages": [U(), A()], "meta": {"finish_reason": "length"}}),
        json.dumps({"messages": [U("ñ"), A()]}),                             # warning only
    ]) + "\n")
    assert main([str(path)]) == 1
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
    assert main([str(path), "--no-ascii"]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{path}:2: not valid UTF-8: byte 0xe9 at byte 34 of the line"]


def test_cli_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps([U("ñ"), A()]) + "\n")
    assert main([str(good)]) == 0  # warnings alone do not fail
    assert "(warning)" in capsys.readouterr().out
    assert main([str(good), "--no-ascii"]) == 0 and capsys.readouterr().out == ""
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
