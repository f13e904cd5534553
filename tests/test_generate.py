"""kit.generation.generate end to end against a real loopback server: faults, kill and resume, secrets, export.

The fake server (tests/fake_openai.py) scripts each reply from the prompt it receives, so a test can
give every index its own fault and then check that each index ended up exactly once in the output
or the rejects file, with the right reasons.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from fake_openai import MODEL, Reply
from kit import paths
from kit.llm.endpoints import Endpoint
from kit.commands.export import main as export_main
from kit.generation.generate import Journal, file_paths, generate
from kit.commands.generate import main as generate_main
from kit.llm.client import FatalAPIError, LLMClient
from kit.manifest import read_manifest
from kit.generation.prompts import render_prompt
from kit.records import read_records
from kit.generation.sampling import sample_elements

GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})
WRONG_ROLES = json.dumps({"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}]})
EMPTY_CONTENT = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]})
META_KEYS = {"recipe", "seed", "index", "topic_category", "topic", "persona", "dynamic", "first_message_examples",
             "first_message_categories", "model", "endpoint", "finish_reason", "attempts", "usage", "repaired",
             "warnings"}


def prompts_by_index(n, seed=0, recipe="v2"):
    return {render_prompt(sample_elements(recipe, seed, i)): i for i in range(n)}


def fast_client(srv, **kwargs):
    options = dict(concurrency=4, timeout=0.5, backoff_base=0.01, max_retries=3)
    return LLMClient(Endpoint(srv.base_url, MODEL), **{**options, **kwargs})


def run(srv, output, num, **kwargs):
    kwargs.setdefault("client", fast_client(srv))
    return generate(num, output, progress=False, **kwargs)


def lines_of(path):
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")  # never a partial last line
    return [json.loads(line) for line in text.splitlines()]


# --- faults -----------------------------------------------------------------------------------

FAULTS = ["429", "500", "slow", "not_json", "truncated", "wrong_roles_once", "empty_content", "repairable"]


def fault_responder(prompts):
    def respond(request, n_seen):
        messages = request["messages"]
        index = prompts[messages[0]["content"]]
        reask = len(messages) > 1
        fault = FAULTS[index % len(FAULTS)]
        if fault == "429" and n_seen == 0:
            return Reply(status=429, headers={"Retry-After": "0.2"})
        if fault == "500" and n_seen == 0:
            return Reply(status=500)
        if fault == "slow" and n_seen == 0:
            return Reply(content=GOOD, delay=1.2)  # past the client's 0.5 s timeout
        if fault == "not_json":
            return Reply(content="Sure! Here is a conversation: User says hi and nanochat answers.")
        if fault == "truncated":
            return Reply(content=GOOD[:60], finish_reason="length")
        if fault == "wrong_roles_once" and not reask:
            return Reply(content=WRONG_ROLES)
        if fault == "empty_content":
            return Reply(content=EMPTY_CONTENT)
        if fault == "repairable":
            return Reply(content="```json\n" + GOOD[:-2] + ",]\n```")  # code fence, trailing comma, no brace
        return Reply(content=GOOD)
    return respond


def test_every_index_ends_exactly_once_in_output_or_rejects(tmp_path, fake_openai):
    n = 16
    srv = fake_openai(fault_responder(prompts_by_index(n)))
    out = tmp_path / "data" / "conversations.jsonl"
    summary = run(srv, out, n)
    files = file_paths(out)

    records = read_records(out).records
    rejects = lines_of(files["rejects"])
    accepted = [r["meta"]["index"] for r in records]
    rejected = [r["index"] for r in rejects]
    assert accepted == sorted(accepted)  # index order
    assert sorted(accepted + rejected) == list(range(n))  # each index exactly once, nothing duplicated

    by_fault = {}
    for i in rejected:
        by_fault.setdefault(FAULTS[i % len(FAULTS)], []).append(i)
    assert set(by_fault) == {"not_json", "truncated", "empty_content"}
    for reject in rejects:
        fault = FAULTS[reject["index"] % len(FAULTS)]
        expected_rule = {"not_json": "json", "truncated": "finish_reason", "empty_content": "content"}[fault]
        assert expected_rule in reject["rules"] and reject["reasons"] and reject["raw"]
        assert len(reject["attempts"]) == 2  # asked once more with its problems before giving up
    reask = next(r.json for r in srv.chat_requests if len(r.json["messages"]) == 3)
    assert "Your reply could not be used" in reask["messages"][2]["content"]

    for record in records:
        meta = record["meta"]
        assert META_KEYS <= set(meta)
        assert meta["endpoint"] == srv.base_url and meta["model"] == MODEL
        fault = FAULTS[meta["index"] % len(FAULTS)]
        assert meta["attempts"] == (2 if fault == "wrong_roles_once" else 1)
        assert meta["repaired"] == (fault == "repairable")
        assert [m["role"] for m in record["messages"]] == ["user", "assistant"]

    assert summary.accepted == len(records) == summary.in_output and summary.rejected == len(rejects)
    assert summary.reject_reasons["json"] == 2 and summary.retries >= 6  # 429, 500 and timeout, twice each
    manifest = read_manifest(files["manifest"])
    assert manifest["summary"]["accepted"] == len(records)
    assert manifest["totals"]["reject_reasons"] == summary.reject_reasons
    assert manifest["endpoints"] == [srv.base_url] and manifest["parameters"]["seed"] == 0


def test_api_failures_are_rejected_then_retried_on_the_next_run(tmp_path, fake_openai):
    prompts = prompts_by_index(3)
    healthy = {"on": False}

    def respond(request, n_seen):
        if prompts[request["messages"][0]["content"]] == 1 and not healthy["on"]:
            return Reply(status=503)
        return Reply(content=GOOD)

    srv = fake_openai(respond)
    out = tmp_path / "c.jsonl"
    first = run(srv, out, 3, client=fast_client(srv, max_retries=1))
    assert (first.accepted, first.rejected, first.reject_reasons) == (2, 1, {"api_error": 1})
    assert "503" in lines_of(file_paths(out)["rejects"])[0]["reasons"][0]
    healthy["on"] = True
    second = run(srv, out, 3)
    assert (second.accepted, second.already_done, second.in_rejects) == (1, 2, 0)
    assert [r["meta"]["index"] for r in read_records(out).records] == [0, 1, 2]


def test_fatal_error_stops_the_run_with_one_line(tmp_path, fake_openai, capsys):
    srv = fake_openai(lambda request, n_seen: Reply(status=401))
    out = tmp_path / "c.jsonl"
    with pytest.raises(FatalAPIError, match="401"):
        run(srv, out, 3)
    assert read_manifest(file_paths(out)["manifest"])["summary"]["status"] == "failed"
    assert generate_main(["--num", "2", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL,
                          "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kit generate: 401 Unauthorized")


def test_cli_fails_when_items_failed_with_api_errors_and_the_same_command_retries_them(tmp_path, fake_openai,
                                                                                      capsys):
    prompts = prompts_by_index(3)
    healthy = {"on": False}

    def respond(request, n_seen):
        index = prompts[request["messages"][0]["content"]]
        if index == 1 and not healthy["on"]:
            return Reply(status=503, headers={"Retry-After": "0"})  # retried at once: the test need not wait
        return Reply(content=WRONG_ROLES if index == 2 else GOOD)

    srv = fake_openai(respond)

    def argv(name):
        return ["--num", "3", "--output", str(tmp_path / name), "--endpoint", srv.base_url, "--model", MODEL,
                "--reasks", "0", "--no-progress"]

    assert generate_main(argv("c.jsonl")) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("complete: 1 accepted, 2 rejected")
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kit generate: 1 of 3 items failed with API errors "
                                               "(first, index 1: API error: gave up after ")
    assert "503" in err[0] and err[0].endswith("; run the same generation again to retry them")

    healthy["on"] = True
    assert generate_main(argv("c.jsonl")) == 0  # only the API error is asked again; the content reject is an outcome
    captured = capsys.readouterr()
    assert captured.out.startswith("complete: 1 accepted, 0 rejected (none), 2 already done") and captured.err == ""
    assert [r["meta"]["index"] for r in read_records(tmp_path / "c.jsonl").records] == [0, 1]

    # content rejects alone are normal outcomes: exit 0, nothing on stderr
    assert generate_main(argv("d.jsonl")) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("complete: 2 accepted, 1 rejected") and captured.err == ""


@pytest.mark.parametrize("flags, message", [
    (["--num", "0"], "--num must be >= 1, got 0"),
    (["--num", "-1"], "--num must be >= 1, got -1"),
    (["--num", "2", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["--num", "2", "--reasks", "-1"], "--reasks must be >= 0, got -1"),
    (["--num", "2", "--max-tokens", "0"], "--max-tokens must be >= 1, got 0"),
    (["--num", "2", "--temperature", "-0.5"], "--temperature must be >= 0, got -0.5"),
])
def test_cli_refuses_impossible_counts_before_writing_anything(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        generate_main([*flags, "--output", str(tmp_path / "c.jsonl"), "--endpoint", "http://127.0.0.1:9/v1",
                       "--model", MODEL, "--no-progress"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"python -m kit generate: error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_a_conversation_that_copies_its_instructions_is_rejected(tmp_path, fake_openai):
    """The 135M model wrote "The user is: a journalist ..." as the user's message, and it was accepted."""
    def respond(request, n_seen):
        prompt = request["messages"][0]["content"]
        persona_line = next(line[2:] for line in prompt.splitlines() if line.startswith("- The user is: "))
        return Reply(content=json.dumps({"messages": [{"role": "user", "content": f"{persona_line}. Who made you?"},
                                                      {"role": "assistant", "content": "Andrej Karpathy did."}]}))

    srv = fake_openai(respond)
    summary = run(srv, tmp_path / "c.jsonl", 1)
    # caught twice: the prompt's own line (prompt_echo) and the leakage pattern "The user is:" (a content rule)
    assert (summary.accepted, summary.reject_reasons) == (0, {"leakage": 1, "prompt_echo": 1})
    [reject] = lines_of(tmp_path / "c.rejects.jsonl")
    assert "message[0]: repeats the generation prompt: 'The user is: " + \
        sample_elements("v2", 0, 0)["persona"][:47] + "'" in reject["reasons"]
    assert len(srv.chat_requests) == 2  # asked again once, with the problem named


def test_instruction_lines_leave_out_the_knowledge_and_the_example_openers():
    from kit.generation.prompts import instruction_lines, load_knowledge

    elements = sample_elements("v2", 0, 3)
    lines = instruction_lines(render_prompt(elements), elements)
    assert f"The user is: {elements['persona']}" in lines and f"Topic: {elements['topic']}" in lines
    knowledge = {line.strip().removeprefix("- ").strip() for line in load_knowledge().splitlines()}
    assert len(knowledge) > 20 and not set(lines) & knowledge
    assert not set(lines) & set(elements["first_message_examples"])


# --- resume, append, fresh -------------------------------------------------------------------------

def test_rerun_requests_nothing_append_adds_fresh_restarts(tmp_path, fake_openai):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = tmp_path / "c.jsonl"
    assert run(srv, out, 4).accepted == 4
    before = len(srv.chat_requests)
    again = run(srv, out, 4)
    assert (again.requests, again.already_done, again.in_output) == (0, 4, 4) and len(srv.chat_requests) == before
    history = read_manifest(file_paths(out)["manifest"])["history"]
    assert [h["requests"] for h in history] == [4, 0]  # the resumed run's manifest keeps the first run's work

    more = run(srv, out, 3, append=True)
    assert more.accepted == 3
    records = read_records(out).records
    assert [r["meta"]["index"] for r in records] == list(range(7))
    assert len({r["id"] for r in records}) == 7

    with pytest.raises(ValueError, match="seed 0"):
        run(srv, out, 2, seed=1)
    with pytest.raises(ValueError, match="exclude"):
        run(srv, out, 2, append=True, fresh=True)
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        run(srv, out, 2, workers=0)

    restarted = run(srv, out, 2, fresh=True, save_metadata=False)
    assert restarted.accepted == 2 and restarted.requests == 2
    assert [r["meta"] for r in read_records(out).records] == [{}, {}]


def test_existing_file_without_journal_needs_append_or_fresh(tmp_path, fake_openai):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = tmp_path / "theirs.jsonl"
    out.write_text(json.dumps(json.loads(GOOD)["messages"]) + "\n")  # a CustomJSON file from elsewhere
    with pytest.raises(FileExistsError, match="--append"):
        run(srv, out, 2)
    summary = run(srv, out, 2, append=True)
    records = read_records(out).records
    assert summary.accepted == 2 and len(records) == 3
    assert records[0]["meta"] == {"format": "customjson"}  # the adopted record is kept as it was
    assert [r["meta"]["index"] for r in records[1:]] == [1, 2]


def test_journal_drops_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "j.jsonl"
    whole = json.dumps({"index": 0, "status": "rejected", "reject": {"rules": ["json"]}})
    path.write_text('{"journal": "kit.generation.generate", "version": 1, "seed": 0, "recipe": "v2"}\n' + whole + '\n{"index": 1, "sta')
    journal = Journal(path).load()
    assert list(journal.entries) == [0]
    assert path.read_text().endswith(whole + "\n")  # the fragment is gone, appends start on a fresh line
    path.write_text(path.read_text() + "garbage\n" + whole + "\n")
    with pytest.raises(ValueError, match=r"j.jsonl:3: unreadable journal line"):
        Journal(path).load()


def test_sigkill_mid_run_then_rerun_finishes_without_asking_twice(tmp_path, fake_openai):
    n = 12
    prompts = prompts_by_index(n)
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD, delay=0.4))
    out = tmp_path / "c.jsonl"
    journal = file_paths(out)["journal"]
    command = [sys.executable, "-m", "kit", "generate", "--num", str(n), "--workers", "2", "--output", str(out),
               "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"]

    def env(cache):  # a separate, empty reply cache per run: only the journal can prevent repeats
        return {**os.environ, "KIT_CACHE_DIR": str(tmp_path / cache)}

    proc = subprocess.Popen(command, env=env("cache1"), cwd=paths.project_root(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count('"status"') >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {e["index"] for e in lines_of(journal) if "status" in e}
    assert 3 <= len(finished) < n, "the run should have been killed midway"
    if out.exists():
        lines_of(out)  # whatever was there is whole lines

    rerun = subprocess.run(command, env=env("cache2"), cwd=paths.project_root(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    records = read_records(out).records
    assert [r["meta"]["index"] for r in records] == list(range(n))
    assert len(lines_of(out)) == n
    for prompt, index in prompts.items():
        seen = srv.count(prompt)
        assert seen == 1 if index in finished else seen >= 1, (index, seen)


# --- secrets, recipes, export -----------------------------------------------------------------------

def test_no_file_the_run_writes_contains_the_api_key(tmp_path, fake_openai, monkeypatch):
    canary = "sk-canary-7f3a9c1e5b2d4f60"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    srv = fake_openai(fault_responder(prompts_by_index(8)))
    out = tmp_path / "run" / "conversations.jsonl"
    generate(8, out, endpoint=srv.base_url, model=MODEL, progress=False, workers=4)
    sent = [{k.lower(): v for k, v in r.headers.items()}.get("authorization") for r in srv.chat_requests]
    assert f"Bearer {canary}" in sent  # the key was really in use
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 5  # output, journal, rejects, manifest, cache entries
    for path in written:
        assert canary not in path.read_text(encoding="utf-8", errors="replace"), path


def test_recipe_v1_and_customjson_and_parquet_export(tmp_path, fake_openai, capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = tmp_path / "v1.jsonl"
    run(srv, out, 3, recipe="v1", seed=5)
    records = read_records(out).records
    assert [r["id"] for r in records] == ["v1-5-000000", "v1-5-000001", "v1-5-000002"]
    assert len(records[0]["meta"]["first_message_examples"]) == 5 and records[0]["meta"]["topic"] is None

    custom = tmp_path / "identity.jsonl"
    assert export_main([str(out), "--format", "customjson", "--output", str(custom)]) == 0
    assert lines_of(custom) == [r["messages"] for r in records]
    parquet = tmp_path / "c.parquet"
    assert export_main([str(out), "--format", "parquet", "--output", str(parquet)]) == 0
    table = pq.read_table(parquet).to_pylist()
    assert [row["messages"] for row in table] == [r["messages"] for r in records]
    assert json.loads(table[0]["meta"]) == records[0]["meta"]

    broken = tmp_path / "broken.jsonl"
    broken.write_text(out.read_text() + "{oops\n")
    assert export_main([str(broken), "--format", "customjson", "--output", str(tmp_path / "x.jsonl")]) == 1
    assert f"{broken}:4: invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_both_export_formats_scrub_a_key_written_into_a_message_by_hand(tmp_path, monkeypatch):
    """A file the kit did not write (edited by hand, from elsewhere) may hold a key: neither export format
    copies it, in a message or in meta."""
    key = "sk-export-canary-0123456789"
    monkeypatch.setenv("SOME_API_KEY", key)
    src = tmp_path / "hand.jsonl"
    record = {"id": "h1", "messages": [{"role": "user", "content": f"my key is {key}"},
                                       {"role": "assistant", "content": "Please keep it private."}],
              "meta": {"note": key}}
    src.write_text(json.dumps(record) + "\n")
    for fmt, name in (("customjson", "h.jsonl"), ("parquet", "h.parquet")):
        assert export_main([str(src), "--format", fmt, "--output", str(tmp_path / name)]) == 0
        assert key.encode() not in (tmp_path / name).read_bytes(), fmt
    assert pq.read_table(tmp_path / "h.parquet").to_pylist()[0]["messages"][0]["content"] == "my key is <redacted>"


def test_llamacpp_endpoints_get_the_grammar_schema(tmp_path, fake_openai):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    run(srv, tmp_path / "o.jsonl", 1)
    run(srv, tmp_path / "l.jsonl", 1, client=LLMClient(Endpoint(srv.base_url, MODEL, schema_style="llamacpp")))
    openai_style, llamacpp_style = (r.json["response_format"] for r in srv.chat_requests)
    assert openai_style["json_schema"]["schema"]["properties"]["messages"]["items"]["properties"]["role"]["enum"]
    assert openai_style["json_schema"]["strict"] is True
    assert llamacpp_style["type"] == "json_object" and "anyOf" in llamacpp_style["schema"]["properties"]["messages"]
    assert all(r.json["seed"] is not None and r.json["max_tokens"] for r in srv.chat_requests)


# --- the embedded model ----------------------------------------------------------------------------

@pytest.mark.embedded
def test_three_conversations_from_the_embedded_model(tmp_path, embedded_endpoint):
    client = LLMClient(embedded_endpoint, concurrency=1, timeout=120)
    out = tmp_path / "conversations.jsonl"
    summary = generate(3, out, client=client, max_tokens=128, reasks=0, progress=False)
    records = read_records(out).records
    rejects = lines_of(file_paths(out)["rejects"])
    assert sorted([r["meta"]["index"] for r in records] + [r["index"] for r in rejects]) == [0, 1, 2]
    assert all(r["reasons"] and "raw" in r for r in rejects)
    assert summary.requests >= 3 and summary.completion_tokens > 0
    for record in records:
        assert record["messages"][0]["role"] == "user" and record["messages"][-1]["role"] == "assistant"
