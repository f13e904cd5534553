"""kit.commands.export: what it writes of a file that kit.quality.validation calls invalid, and its messages."""

import json

from kit.commands.export import main as export_main


def _write_lines(path, *objs, raw=()):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs) + "".join(raw), encoding="utf-8")
    return path


def test_export_refuses_what_validate_calls_errors_or_skips_them_counted(tmp_path, capsys):
    good = {"id": "g", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"id": "b", "messages": [{"role": "assistant", "content": "hello"}]}
    src = _write_lines(tmp_path / "in.jsonl", good, bad)
    out = tmp_path / "out.jsonl"
    assert export_main([str(src), "--format", "customjson", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "record b:" in err and "nothing written" in err and not out.exists()
    assert export_main([str(src), "--format", "customjson", "--output", str(out), "--skip-invalid"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 conversations" in printed and "left out 1 invalid ones (--skip-invalid)" in printed
    assert [json.loads(line) for line in out.read_text().splitlines()] == [good["messages"]]


def test_parquet_names_the_content_type(tmp_path, capsys):
    src = _write_lines(tmp_path / "in.jsonl", {"id": "n", "messages": [{"role": "user", "content": 42},
                                                                      {"role": "assistant", "content": "x"}]})
    assert export_main([str(src), "--format", "parquet", "--output", str(tmp_path / "o.parquet"),
                        "--skip-invalid"]) == 0
    assert export_main([str(src), "--format", "parquet", "--output", str(tmp_path / "o.parquet"), "--force"]) == 1
    err = capsys.readouterr().err
    assert "content parts" not in err and "int" in err
