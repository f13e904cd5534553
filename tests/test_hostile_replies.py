"""Replies and reply-cache entries that look right and are not: each is checked where it is read.

A server's body shaped like a chat completion may hold the wrong types (content a number, `message` a
string); that is a retryable "malformed response", never an AttributeError in a command that reads
the text. A bad `usage` spoils only the accounting: the reply is good, its tokens count 0. A reply
cache entry edited into something else reads as a miss, so the request is asked again. A degenerate
reply (endless brackets, an HTML page) is rejected in one line and never cached: parse_json_reply never
raises, generate asks again on the next run, memory generate writes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fake_openai import MODEL, Reply, brackets_responder, conversation_responder, html_responder
from kit.llm.client import LLMClient, RetriesExhausted, run_sync
from kit.llm.endpoints import Endpoint
from kit.commands.generate import main as generate_main
from kit.commands.memory import main as memory_main
from kit.llm.reply import parse_json_reply


def completion(message, usage=None, finish_reason="stop") -> dict:
    body = {"id": "x", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}]}
    return body if usage is None else {**body, "usage": usage}


MALFORMED = {
    "content an int": json.dumps(completion({"role": "assistant", "content": 12345})),
    "content a dict": json.dumps(completion({"role": "assistant", "content": {"text": "hi"}})),
    "content a list": json.dumps(completion({"role": "assistant", "content": ["hi", 2]})),
    "message a string": json.dumps(completion("hello")),
    "finish_reason a list": json.dumps(completion({"role": "assistant", "content": "hi"}, finish_reason=["stop"])),
    "100,000 brackets": "[" * 100_000 + "]" * 100_000,
}
GOOD = json.dumps(completion({"role": "assistant", "content": "the real answer"}, {"prompt_tokens": 7,
                                                                                  "completion_tokens": 3}))


def client_for(srv, **kwargs) -> LLMClient:
    return LLMClient([Endpoint(srv.base_url, MODEL)], backoff_base=0.01, **kwargs)


def ask(client: LLMClient, **kwargs):
    return run_sync(client.complete([{"role": "user", "content": "hello"}], **kwargs))


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_wrongly_typed_completion_is_a_malformed_response_asked_again(body, fake_openai):
    srv = fake_openai(lambda request, n_seen: Reply(body=body if n_seen == 0 else GOOD))
    reply = ask(client_for(srv))
    assert (reply.text, reply.retries, reply.prompt_tokens) == ("the real answer", 1, 7)

    always = fake_openai(lambda request, n_seen: Reply(body=body))
    with pytest.raises(RetriesExhausted, match="malformed response from .*not an OpenAI chat completion"):
        ask(client_for(always, max_retries=1))


BAD_USAGE = {
    "usage a string": '"lots"',
    "prompt_tokens 1e999": '{"prompt_tokens": 1e999, "completion_tokens": 3}',
    "prompt_tokens NaN": '{"prompt_tokens": NaN, "completion_tokens": 3}',
    "prompt_tokens 12abc": '{"prompt_tokens": "12abc", "completion_tokens": 3}',
    "prompt_tokens negative": '{"prompt_tokens": -5, "completion_tokens": 3}',
    "prompt_tokens true": '{"prompt_tokens": true, "completion_tokens": 3}',
}


@pytest.mark.parametrize("usage", BAD_USAGE.values(), ids=BAD_USAGE.keys())
def test_a_bad_usage_counts_no_tokens_and_keeps_the_reply(usage, fake_openai):
    body = json.dumps(completion({"role": "assistant", "content": "fine"}))[:-1] + f', "usage": {usage}}}'
    srv = fake_openai(lambda request, n_seen: Reply(body=body))
    client = client_for(srv, prices=(1.0, 1.0))
    reply = ask(client)
    assert (reply.text, reply.retries, reply.prompt_tokens) == ("fine", 0, 0)
    assert reply.completion_tokens in (0, 3) and client.stats.prompt_tokens == 0
    assert client.stats.cost_usd == pytest.approx(reply.completion_tokens / 1e6)


ENTRY_EDITS = {
    "text a number": {"text": 12345},
    "text null": {"text": None},
    "prompt_tokens a word": {"prompt_tokens": "many"},
    "completion_tokens negative": {"completion_tokens": -1},
    "finish_reason a dict": {"finish_reason": {"why": "stop"}},
    "model a list": {"model": ["m"]},
}


@pytest.mark.parametrize("edit", ENTRY_EDITS.values(), ids=ENTRY_EDITS.keys())
def test_a_cache_entry_edited_into_wrong_types_is_a_miss(edit, fake_openai, tmp_path):
    srv = fake_openai(lambda request, n_seen: Reply(content="cached answer"))
    assert not ask(client_for(srv, cache_dir=tmp_path), seed=1).cached
    assert ask(client_for(srv, cache_dir=tmp_path), seed=1).cached
    (entry,) = tmp_path.rglob("*.json")
    entry.write_text(json.dumps({**json.loads(entry.read_text()), **edit}))
    again = ask(client_for(srv, cache_dir=tmp_path), seed=1)
    assert (again.text, again.cached) == ("cached answer", False) and len(srv.chat_requests) == 2
    assert ask(client_for(srv, cache_dir=tmp_path), seed=1).cached  # the entry was written whole again


def test_generate_finishes_when_first_replies_are_wrongly_typed(tmp_path, fake_openai, capsys):
    from kit.commands.generate import main as generate_main
    from kit.records import read_records

    good = conversation_responder()

    def respond(request, n_seen):
        if n_seen == 0:
            return Reply(body=MALFORMED["content an int"])
        return good(request, n_seen)

    srv = fake_openai(respond)
    out = tmp_path / "c.jsonl"
    assert generate_main(["--num", "3", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL,
                          "--no-progress", "--no-cache"]) == 0
    assert len(read_records(out).records) == 3
    manifest = json.loads((tmp_path / "c.manifest.json").read_text())
    assert manifest["summary"]["status"] == "complete"
    assert "Traceback" not in capsys.readouterr().err


# ---- degenerate replies: refused in one line, never cached ---------------------------------------

def no_traceback(text):
    assert "Traceback" not in text, text


def test_parse_json_reply_never_raises_on_degenerate_text():
    for text in ("[" * 1200, "{" * 100_000, '{"a": ' * 3000, "x" * (2**20 + 1), '["\\ud800"]'):
        reply = parse_json_reply(text)
        assert reply.value is None and reply.error, text[:20]
    assert parse_json_reply('{"a": [1, 2,]}').repaired


def test_a_looping_reply_is_rejected_and_never_replayed_from_the_cache(tmp_path, fake_openai, capsys):
    srv = fake_openai(brackets_responder)
    out = tmp_path / "c.jsonl"
    argv = ["--num", "3", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL, "--no-progress",
            "--reasks", "0"]
    assert generate_main(argv) == 0  # content rejects are outcomes, not failures
    captured = capsys.readouterr()
    no_traceback(captured.err)
    assert "3 rejected (" in captured.out and "json: 3" in captured.out
    assert len(srv.chat_requests) == 3
    assert generate_main([*argv, "--fresh"]) == 0
    assert len(srv.chat_requests) == 6  # asked again: the bad replies were not cached
    assert not list(Path(os.environ["KIT_CACHE_DIR"]).rglob("*.json"))


def test_memory_generate_with_a_looping_model_fails_in_one_line(tmp_path, fake_openai, capsys):
    srv = fake_openai(brackets_responder)
    out = tmp_path / "synth.json"
    rc = memory_main(["generate", "--fast", "--num-sessions", "2", "--max_attempts", "1", "--out", str(out),
                      "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "no session passed its checks" in err and "nothing written" in err, err
    no_traceback(err)
    assert not out.exists()


def test_memory_generate_against_an_html_page_fails_and_writes_nothing(tmp_path, fake_openai, capsys):
    srv = fake_openai(html_responder)
    out = tmp_path / "synth.json"
    rc = memory_main(["generate", "--fast", "--num-sessions", "2", "--max_attempts", "1", "--out", str(out),
                      "--endpoint", srv.base_url, "--model", MODEL, "--no-progress", "--item-timeout", "1"])
    captured = capsys.readouterr()
    assert rc == 1 and "no request got a reply" in captured.err and "not an OpenAI chat completion" in captured.err
    assert "Dataset written" not in captured.out and not out.exists()
