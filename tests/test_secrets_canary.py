"""No piece of the API key reaches a file or a stream, whatever the server sends back.

Some gateways echo the Authorization header in their replies. A reply is text the kit splits into
words, quotes in reject reasons, scores, lowercases and writes into outputs, journals, rejects,
caches and stdout; so a key that came back in a reply has many ways out, and a piece of it (the
random part after its prefix, "CANARY123") is as good as the key to someone who knows its prefix.
Every command that talks to an endpoint runs here against a loopback server that puts the key in
every reply, and no run may leave any 8-character piece of the key anywhere.
"""

from __future__ import annotations

import json

import pytest

from fake_openai import MODEL, Reply
from kit.__main__ import main as kit_main

KEY = "sk-test-CANARY123-7f3a9c1e5b2d4f60a8e1"
PIECE = 8  # a piece this long of the key is a leak (kit.secrets.MIN_SECRET_LEN)
ECHO = (f"Your header was Bearer {KEY}. In words: {' '.join(KEY.split('-'))}. "
        f"Once more, {KEY.upper()} and {KEY.lower()}; the secret part is {KEY.split('-')[2]}.")
MEMORY = {"task_id": "t", "chunks": ["2024-01-02\nuser: I spent 5 yuan on coffee.", "2024-01-05\nuser: 7 yuan on tea."],
          "questions": [{"qid": "q0", "query": "How much did I spend in total?", "answer": "12.00", "position": 1,
                         "category": "total_amount"}]}


def instance(schema: dict) -> object:
    """A value of the JSON schema a request asks for, every string the echo (so the key goes where a
    well-behaved server's answer would)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: instance(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance(schema.get("items", {})) for _ in range(max(2, schema.get("minItems", 0)))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 3)
    if kind == "boolean":
        return True
    return ECHO


def echoing_responder(request: dict, n_seen: int) -> Reply:
    fmt = request.get("response_format") or {}
    schema = fmt.get("schema") or fmt.get("json_schema", {}).get("schema")
    if schema is None:
        return Reply(content=ECHO)
    if "messages" in schema.get("properties", {}):  # a whole conversation (generate v1/v2)
        return Reply(content=json.dumps({"messages": [{"role": "user", "content": "Who are you?"},
                                                      {"role": "assistant", "content": f"I am nanochat. {ECHO}"}]}))
    return Reply(content=json.dumps(instance(schema)))


def pieces(key: str) -> set[str]:
    return {key[i:i + PIECE].lower() for i in range(len(key) - PIECE + 1)}


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return sorted(p for p in pieces(KEY) if p in lowered)


def conversations(path, n: int = 2) -> None:
    lines = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Hello number {i}, who made you?"},
                                          {"role": "assistant", "content": "I am nanochat, made by Andrej Karpathy."}]}
             for i in range(n)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


COMMANDS = {
    "generate v2": lambda tmp, url: ["generate", "--num", "2", "--recipe", "v2", "--output", str(tmp / "v2.jsonl")],
    "generate distill": lambda tmp, url: ["generate", "--num", "2", "--recipe", "distill", "--candidates", "2",
                                          "--output", str(tmp / "distill.jsonl")],
    "judge": lambda tmp, url: ["judge", str(tmp / "in.jsonl"), "--out", str(tmp / "scores.jsonl")],
    "memory generate": lambda tmp, url: ["memory", "generate", "--fast", "--out", str(tmp / "memory.json")],
    "memory eval": lambda tmp, url: ["memory", "eval", str(tmp / "bench.json"), "--out", str(tmp / "eval.json")],
    "identity eval": lambda tmp, url: ["identity", "eval", "--limit", "3", "--out", str(tmp / "ident.json")],
    "identity eval --json": lambda tmp, url: ["identity", "eval", "--limit", "3", "--json"],
    "identity eval --knowledge": lambda tmp, url: ["identity", "eval", "--limit", "3", "--knowledge"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_no_piece_of_an_echoed_key_reaches_a_file_or_a_stream(command, tmp_path, fake_openai, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    srv = fake_openai(echoing_responder)
    conversations(tmp_path / "in.jsonl")
    (tmp_path / "bench.json").write_text(json.dumps(MEMORY))
    inputs = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = COMMANDS[command](tmp_path, srv.base_url)
    flags = ["--endpoint", srv.base_url, "--model", MODEL] + (["--no-progress"] if argv[0] != "judge" else [])
    try:
        kit_main(argv + flags)
    except SystemExit:
        pass
    out, err = capsys.readouterr()
    sent = {r.headers.get("authorization") for r in srv.chat_requests}
    assert sent == {f"Bearer {KEY}"}  # the key was in use, and every reply echoed it
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in inputs]
    assert written  # outputs, journals, caches: the run wrote something to look into
    for name, text in [("stdout", out), ("stderr", err)] + [(str(p), p.read_text(errors="replace")) for p in written]:
        assert not leaks(text), (name, leaks(text), text[:2000])


def test_scrub_cuts_every_piece_of_a_key_in_any_case_and_leaves_short_words():
    from kit.secrets import REDACTED, scrub_text

    text = ("not in the knowledge base or the question: Bearer, CANARY123, 123; "
            f"{KEY}; {KEY.lower()}; sk-test; 7f3a9c1e; 7f3a9c1")
    scrubbed = scrub_text(text, [KEY])
    assert not leaks(scrubbed)
    assert scrubbed == (f"not in the knowledge base or the question: Bearer, {REDACTED}, 123; "
                        f"{REDACTED}; {REDACTED}; sk-test; {REDACTED}; 7f3a9c1")
