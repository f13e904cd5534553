"""No piece of the API key reaches a file or a stream, whatever the server sends back.

Some gateways echo the Authorization header in their replies. A reply is text the kit splits into
words, quotes in reject reasons, scores, lowercases and writes into outputs, journals, rejects,
caches and stdout; so a key that came back in a reply has many ways out, and a piece of it (the
random part after its prefix, "CANARY123") is as good as the key to someone who knows its prefix.
Every command that talks to an endpoint runs here against a loopback server that puts the key in
every reply, and no run may leave any 8-character piece of the key anywhere.

Also: kit.secrets.scrub covers the environment, .env and credentials in URLs; a pipeline failure and a
notebook that prints the key show it as <redacted>.
"""

from __future__ import annotations

import json

import pytest

from fake_openai import MODEL, Reply, echo_key_responder
from kit.__main__ import main as kit_main
from memory_fakes import model_responder
from kit.commands.generate import main as generate_main
from kit.commands.memory import main as memory_main
from kit.pipeline import NotebookFailed, RunResult, failure_message
from kit.secrets import scrub, scrub_text

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


CANARY = "sk-canary-0d1e2f3a4b5c6d7e"


def test_a_key_echoed_by_the_server_reaches_no_file_and_no_stream(tmp_path, fake_openai, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    srv = fake_openai(echo_key_responder(500))
    out = tmp_path / "run" / "c.jsonl"
    rc = generate_main(["--num", "2", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL,
                        "--no-progress", "--item-timeout", "1"])
    assert rc == 1
    assert srv.chat_requests[0].headers["authorization"] == f"Bearer {CANARY}"  # the key was in use
    streams = capsys.readouterr()
    assert "Incorrect API key provided: <redacted>" in streams.err

    sessions, seen = model_responder(), []

    def one_session_fails_echoing_the_key(request, n_seen):  # the other session passes: a dataset is written
        prompt = request["messages"][-1]["content"]
        seen.append(prompt)
        return Reply(status=500, echo_key=True) if prompt == seen[0] else sessions(request, n_seen)

    memory_srv = fake_openai(one_session_fails_echoing_the_key)
    synth = tmp_path / "run" / "synth.json"
    rc = memory_main(["generate", "--fast", "--num-sessions", "2", "--max_attempts", "2", "--no_diversify",
                      "--out", str(synth), "--endpoint", memory_srv.base_url, "--model", MODEL, "--no-progress",
                      "--item-timeout", "0.5"])
    streams = [streams.out, streams.err, *capsys.readouterr()]
    assert rc == 0, streams
    assert "Incorrect API key provided: <redacted>" in synth.read_text()  # the echoed error is kept, the key is not
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"c.jsonl.journal.jsonl", "c.rejects.jsonl", "c.manifest.json"} <= {p.name for p in files}
    for text in streams + [p.read_text(errors="replace") for p in files]:
        assert CANARY not in text


def test_scrub_covers_env_dotenv_and_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("MY_SERVICE_API_KEY", "key-1234567890")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENROUTER_API_KEY=sk-or-from-dotenv-123456\nPLAIN_SETTING=visible-value\n")
    text = ("a hf_abcdefghijklmnop b key-1234567890 c sk-or-from-dotenv-123456 d visible-value "
            "e https://user:pa55word@example.com/v1 f http://token@host:8080/x")
    assert scrub_text(text) == ("a <redacted> b <redacted> c <redacted> d visible-value "
                                "e https://***@example.com/v1 f http://***@host:8080/x")
    assert scrub({"api_key": "x" * 9, "tokens": 3, "note": ["https://a:b@h/"]}) == \
        {"api_key": "<redacted>", "tokens": 3, "note": ["https://***@h/"]}


def test_pipeline_failure_message_keeps_the_leak_notice_and_hides_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    failure = NotebookFailed("02_generate", tmp_path / "02.ipynb", "cell 3",
                             f"FatalAPIError: 401 Unauthorized: Incorrect API key provided: {CANARY}")
    result = RunResult("r", tmp_path, "failed", [], tmp_path / "manifest.json", failure, ["notebooks/02.ipynb"])
    message = failure_message(result)
    assert "notebook 02_generate failed" in message and "SECRET LEAK" in message and CANARY not in message


def test_a_key_printed_by_a_notebook_is_cut_out_of_the_executed_notebook(tmp_path, monkeypatch):
    from test_pipeline import SETUP, run, write_notebook

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_echo.ipynb", 'run_dir = "x"', SETUP,
                   'print("server said: bad key", os.environ["OPENAI_API_KEY"])',
                   'raise RuntimeError("401 " + os.environ["OPENAI_API_KEY"])')
    result, manifest = run(folder, tmp_path)
    executed = (result.run_dir / "notebooks" / "01_echo.ipynb").read_text()
    assert "server said: bad key <redacted>" in executed and CANARY not in executed
    assert result.failure is not None and result.secret_hits == []
    assert CANARY not in failure_message(result) and CANARY not in json.dumps(manifest)
