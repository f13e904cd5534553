"""kit.tokens.view: the HTML view, the DataFrame, the terminal command and file stats."""

from __future__ import annotations

import json
import re

import pytest

from kit.tokens.render import render_conversation
from kit.commands.tokens import main
from kit.tokens.view import TokenView, dataframe, file_stats, html_view, view


def test_html_view_colours_marks_and_explains(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    rendered = render_conversation(tok, gsm8k_example["conversation"])
    page = html_view(tok, rendered, title="GSM8K")
    tokens = re.findall(r'<span class="(t [^"]+)" title="([^"]*)" style="[^"]*">', page)  # the legend's chips have no title
    assert len(tokens) == len(rendered.ids)
    for (classes, _), token_id, mask in zip(tokens, rendered.ids, rendered.mask):
        assert ("sup" in classes.split()) == bool(mask) and ("unsup" in classes.split()) == (not mask)
        assert ("special" in classes.split()) == tok.is_special(token_id)
    first_hover = tokens[0][1]
    assert "idx 0" in first_hover and f"id {tok.bos_id}" in first_hover and "predicts →" in first_hover
    assert "↵" in page and "␣" in page and "<br>" in page  # whitespace and newlines are visible
    assert "&lt;|bos|&gt;" in page  # special names are escaped, not eaten as tags
    assert TokenView(tok, rendered, "GSM8K")._repr_html_() == page


def test_html_view_flags_truncation_and_empty_supervision(trained_tokenizer, gsm8k_example):
    cut = view(trained_tokenizer, gsm8k_example["conversation"], max_tokens=12)
    page = cut._repr_html_()
    assert f"truncated: {cut.rendered.n_truncated} tokens dropped" in page and "nothing supervised" in page


def test_view_saves_standalone_page(trained_tokenizer, gsm8k_example, tmp_path):
    path = view(trained_tokenizer, gsm8k_example["conversation"]).save(tmp_path / "tokens" / "gsm8k.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and 'charset="utf-8"' in text and "kit-tokens" in text


def test_dataframe_matches_table(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    rendered = render_conversation(tok, gsm8k_example["conversation"])
    frame = dataframe(tok, rendered)
    assert list(frame.columns) == ["token", "id", "mask", "role", "part", "target", "target_mask"]
    assert frame.index.name == "idx" and list(frame.index) == list(range(len(rendered.ids)))
    assert frame["id"].tolist() == rendered.ids and frame["mask"].tolist() == rendered.mask
    assert frame["target_mask"].iloc[:-1].tolist() == rendered.mask[1:]
    assert frame["token"].iloc[0] == "<|bos|>" and frame["target"].iloc[0] == "<|user_start|>"
    assert frame["target"].isna().iloc[-1]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_file_stats(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    chat = {"id": "c", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}], "meta": {"source": "identity"}}
    question = {"id": "q", "messages": [{"role": "user", "content": "a question without an answer"}], "meta": {}}
    generated = {**chat, "meta": {"recipe": "v2", "topic": "what nanochat is"}}
    records = [gsm8k_example["conversation"], chat, chat, question, generated]
    stats = file_stats(tok, records, max_tokens=30)
    rendered = [render_conversation(tok, r, 30) for r in records]
    assert stats["conversations"] == 5 and stats["tokens"] == sum(len(r.ids) for r in rendered)
    assert stats["supervised"] == sum(sum(r.mask) for r in rendered)
    assert stats["truncated"] == 1 and stats["truncated_tokens"] == rendered[0].n_truncated
    assert stats["all_masked"] == 2  # the question, and GSM8K cut inside its user message
    assert set(stats["by_source"]) == {"gsm8k", "identity", "unknown", "generated (v2)"}
    identity = stats["by_source"]["identity"]
    assert identity["conversations"] == 2 and identity["supervised_fraction"] == round(sum(rendered[1].mask) / len(rendered[1].ids), 4)
    assert stats["tokens_per_conversation"]["max"] == 30


def test_cli_views(trained_tokenizer, tokenizer_dir, gsm8k_example, tmp_path, capsys):
    data = _write(tmp_path / "c.jsonl", [gsm8k_example["conversation"]])
    assert main([str(data), "--tokenizer", str(tokenizer_dir), "--table"]) == 0
    out = capsys.readouterr().out
    n = len(render_conversation(trained_tokenizer, gsm8k_example["conversation"]).ids)
    assert f"seed003-gsm8k: {n} tokens" in out and "'<|python_start|>'" in out and len(out.splitlines()) == n + 2
    assert main([str(data), "--tokenizer", str(tokenizer_dir), "--plain", "--max-tokens", "10"]) == 0
    out = capsys.readouterr().out
    assert "TRUNCATED" in out and "(<|bos|>)" in out
    assert main([str(data), "--tokenizer", str(tokenizer_dir)]) == 0
    assert "\033[42;30m" in capsys.readouterr().out
    assert main([str(data), "--tokenizer", str(tokenizer_dir), "--regions"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 2 + 21 and "assistant/python_output" in out and "12/60" in out
    assert main([str(data), "--tokenizer", str(tokenizer_dir), "--stats"]) == 0
    assert "gsm8k" in capsys.readouterr().out


@pytest.mark.parametrize(
    "lines, args, message",
    [
        (['{"messages": [{"role": "assistant", "content": "x"}]}'], ["--index", "0"], "c.jsonl record 0 (id c:1): message 0: expected a user message"),
        # the record is named by its line even after an unreadable line shifted the positions
        (["not json", '{"messages": [{"role": "user", "content": "x"}]}', '{"messages": [{"role": "bot", "content": "x"}]}'],
         ["--stats"], "c.jsonl record 1 (id c:3): message 0: unknown role 'bot'"),
        (['{"messages": [{"role": "user", "content": "x"}]}'], ["--index", "5"], "out of range (the file has 1 records)"),
        (['{"messages": [{"role": "user", "content": "x"}]}', '{"messages": [{"role": "user"}, 3]}'], ["--stats"], ""),
    ],
)
def test_cli_errors_are_one_line(tokenizer_dir, tmp_path, capsys, lines, args, message):
    data = tmp_path / "c.jsonl"
    data.write_text("\n".join(lines) + "\n")
    code = main([str(data), "--tokenizer", str(tokenizer_dir), *args])
    err = capsys.readouterr().err
    if message:
        assert code == 1 and err.splitlines()[-1].startswith("kit tokens:") and message in err
    else:  # an unreadable line is reported and left out, the rest is counted, and the exit status says so
        assert code == 1 and "c.jsonl:2" in err and "1 unreadable lines left out" in err


def test_cli_missing_tokenizer(tmp_path, capsys):
    data = _write(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    assert main([str(data), "--tokenizer", str(tmp_path / "nope")]) == 1
    assert "tokenizer.json: missing" in capsys.readouterr().err


def test_cli_shows_a_conversation_validation_rejects_but_warns(tokenizer_dir, tmp_path, capsys):
    data = _write(tmp_path / "c.jsonl", [{"id": "e", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}])
    assert main([str(data), "--tokenizer", str(tokenizer_dir), "--plain"]) == 0
    out, err = capsys.readouterr()
    assert "[<|assistant_end|>]" in out
    assert err == "warning: e: message[1]: content is empty (kit validate calls this an error)\n"
