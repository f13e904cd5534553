"""kit.records: the line formats it reads, bad lines reported by number, atomic writes."""

import json
import os
from pathlib import Path

import pytest

from kit.records import (RecordError, dumps_record, iter_records, load_json, message_text, read_records,
                         to_customjson_line, write_records)
from kit.commands.export import main as export_main
from kit.commands.validate import main as validate_main

CONVERSATION = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello, I am nanochat"}]


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_reads_all_three_line_formats(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [
        json.dumps({"id": "a", "messages": CONVERSATION, "meta": {"topic": "x"}}),
        json.dumps(CONVERSATION),  # nanochat CustomJSON: a bare array
        json.dumps({"messages": CONVERSATION, "metadata": {"persona": "y"}}),  # nanochat --save-metadata
    ])
    records = read_records(path).records
    assert [r["messages"] for r in records] == [CONVERSATION] * 3
    assert records[0]["id"] == "a" and records[0]["meta"] == {"topic": "x"}
    assert records[1]["id"] == "mixed:2" and records[1]["meta"] == {"format": "customjson"}
    assert records[2]["meta"] == {"persona": "y"}


def test_corrupt_line_is_reported_by_number(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(CONVERSATION), '{"messages": [', json.dumps(CONVERSATION)])
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert info.value.lineno == 2 and str(info.value).startswith(f"{path}:2: invalid JSON")

    result = read_records(path, strict=False)  # lenient: keep reading, collect the error with its raw text
    assert len(result.records) == 2
    assert [(e.lineno, e.raw) for e in result.errors] == [(2, '{"messages": [')]


def test_a_line_that_is_not_utf8_fails_alone(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join([json.dumps(CONVERSATION).encode(), b'[{"role": "user", "content": "caf\xe9"}]',
                                  json.dumps(CONVERSATION).encode()]) + b"\n")
    errors = []
    assert len(list(iter_records(path, errors=errors))) == 2
    assert [(e.lineno, e.reason) for e in errors] == [(2, "not valid UTF-8: byte 0xe9 at byte 34 of the line")]
    assert "caf\ufffd" in errors[0].raw  # the raw text kept for the report, readable


@pytest.mark.parametrize("line, reason", [
    ('"just a string"', "expected a JSON object or array"),
    ('{"id": "x"}', "no 'messages' key"),
    ('{"messages": "hi"}', "'messages' must be a list"),
    ('[{"role": "user"}]', "message 0 lacks 'role' or 'content'"),
    ('["hi"]', "message 0 is a str"),
    ('{"messages": [], "meta": 3}', "'meta' must be an object"),
])
def test_wrong_shapes_say_why(tmp_path, line, reason):
    path = write_lines(tmp_path / "shape.jsonl", ["", line])  # blank lines are skipped but still counted
    errors = []
    assert list(iter_records(path, errors=errors)) == []
    assert errors[0].lineno == 2 and reason in errors[0].reason


def test_write_then_read_round_trip_keeps_unicode(tmp_path):
    records = [{"id": f"r{i}", "messages": CONVERSATION + [{"role": "user", "content": "你好 ✓"}], "meta": {"i": i}}
               for i in range(3)]
    path = tmp_path / "sub" / "out.jsonl"
    assert write_records(path, records) == 3
    assert read_records(path).records == records
    assert "你好" in path.read_text(encoding="utf-8")  # readable, not \u escapes


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    write_records(path, [{"id": "old", "messages": CONVERSATION}])
    before = path.read_text()

    def broken():
        yield {"id": "new", "messages": CONVERSATION}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_records(path, broken())
    assert path.read_text() == before  # the old file is untouched, never half-written
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # and no temporary file is left

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((Path(a), Path(b))), real_replace(a, b)))
    write_records(path, [{"id": "new", "messages": CONVERSATION}])
    assert [(a.parent, a.name.startswith(".out.jsonl."), b) for a, b in replaced] == [(tmp_path, True, path)]
    assert read_records(path).records[0]["id"] == "new"


def test_customjson_line_and_message_text():
    record = {"id": "x", "messages": CONVERSATION, "meta": {"a": 1}}
    assert json.loads(to_customjson_line(record)) == CONVERSATION
    assert json.loads(dumps_record(record)) == record
    parts = [{"type": "text", "text": "2+2 is "}, {"type": "python", "text": "2+2"}, {"type": "python_output", "text": "4"}]
    assert message_text(parts) == "2+2 is 2+24"
    assert message_text("plain") == "plain" and message_text(None) == ""


def test_export_names_a_folder_given_as_a_file_and_leaves_no_litter(tmp_path, capsys):
    from kit.commands.export import main as export

    data = write_lines(tmp_path / "c.jsonl", [json.dumps(CONVERSATION)])
    (tmp_path / "out").mkdir()
    assert export([str(tmp_path / "out"), "--format", "customjson", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert capsys.readouterr().err == f"kit export: {tmp_path / 'out'}: is a folder; give a conversation file (.jsonl)\n"
    for fmt in ("customjson", "parquet"):
        assert export([str(data), "--format", fmt, "--output", str(tmp_path / "out")]) == 1
        assert capsys.readouterr().err == f"kit export: {tmp_path / 'out'} is a folder; give a file path\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "out"]


def test_load_json_limits():
    assert load_json('{"a": [[1]]}') == {"a": [[1]]}
    assert load_json('"\\ud83d\\ude00"') == "\U0001F600"  # a surrogate pair is one character
    for text, message in (("[" * 70 + "]" * 70, "nested more than 64"), ('"\\udc80"', "lone surrogate")):
        with pytest.raises(ValueError, match=message):
            load_json(text)


def test_lone_surrogates_are_a_problem_at_file_and_line(tmp_path, capsys):
    good = {"id": "g", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    src = write_lines(tmp_path / "s.jsonl", [json.dumps(good), '{"messages": [{"role": "user", "content": "a\\udc80"}, '
                                                               '{"role": "assistant", "content": "b"}]}'])
    assert validate_main([str(src)]) == 1
    assert f"{src}:2: " in capsys.readouterr().out
    assert export_main([str(src), "--format", "customjson", "--output", str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err
    assert f"{src}:2: " in err and "lone surrogate" in err and "Traceback" not in err


def test_a_bom_at_the_start_of_a_file_is_accepted(tmp_path, capsys):
    record = {"id": "g", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    src = tmp_path / "bom.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + (json.dumps(record) + "\n").encode() * 2)
    assert [r["id"] for r in read_records(src).records] == ["g", "g"]
    assert validate_main([str(src), "--structure-only"]) == 0
