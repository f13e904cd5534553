"""Which endpoint the kit talks to: arguments > OPENAI_* > OPENROUTER_API_KEY > embedded; keys never shown."""

from __future__ import annotations

import json

import pytest

from kit.llm.endpoints import NO_KEY, OPENAI_DEFAULT_BASE_URL, OPENROUTER_BASE_URL, Endpoint, endpoints_from_env
from fake_openai import MODEL, Reply
from kit.commands.generate import main as generate_main

KEY = "sk-secret-value-1234"


@pytest.fixture
def dotenv_dir(tmp_path, monkeypatch):
    """A working directory whose .env the kit may read (the autouse fixture disables .env by default)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KIT_NO_DOTENV")
    monkeypatch.setenv("KIT_PROJECT_ROOT", str(tmp_path))
    return tmp_path


def test_nothing_configured_means_the_embedded_model():
    assert endpoints_from_env() == []


def test_explicit_urls_win_and_are_used_in_order(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    eps = endpoints_from_env("http://a:8000/v1/, http://b:8000/v1", model="m")
    assert [e.base_url for e in eps] == ["http://a:8000/v1", "http://b:8000/v1"]
    assert all(e.model == "m" and e.api_key == KEY and e.schema_style == "auto" for e in eps)
    assert [e.base_url for e in endpoints_from_env(["http://c/v1"])] == ["http://c/v1"]


def test_openai_variables(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://vllm-1:8000/v1,http://vllm-2:8000/v1")
    monkeypatch.setenv("OPENAI_MODEL", "Qwen/Qwen3-8B")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-other")
    eps = endpoints_from_env()
    assert [e.base_url for e in eps] == ["http://vllm-1:8000/v1", "http://vllm-2:8000/v1"]
    assert eps[0].model == "Qwen/Qwen3-8B" and eps[0].api_key == NO_KEY


def test_openai_key_alone_means_openai(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    [ep] = endpoints_from_env(model="gpt-4o-mini")
    assert (ep.base_url, ep.api_key) == (OPENAI_DEFAULT_BASE_URL, KEY)


def test_openrouter_key_is_a_shortcut(monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("KIT_MODEL", "google/gemini-2.5-flash")
    [ep] = endpoints_from_env()
    assert (ep.base_url, ep.model, ep.api_key) == (OPENROUTER_BASE_URL, "google/gemini-2.5-flash", KEY)
    [explicit] = endpoints_from_env("https://openrouter.ai/api/v1")
    assert explicit.api_key == KEY


def test_schema_style_from_argument_or_environment(monkeypatch):
    assert endpoints_from_env("http://a/v1", schema_style="llamacpp")[0].schema_style == "llamacpp"
    monkeypatch.setenv("KIT_SCHEMA_STYLE", "llamacpp")
    assert endpoints_from_env("http://a/v1")[0].schema_style == "llamacpp"
    with pytest.raises(ValueError, match="schema_style"):
        Endpoint("http://a/v1", "m", schema_style="xml")


def test_dotenv_is_read_without_overriding_the_environment(dotenv_dir, monkeypatch):
    (dotenv_dir / ".env").write_text(f"OPENAI_BASE_URL=http://from-dotenv/v1\nOPENAI_API_KEY={KEY}\n"
                                     "OPENAI_MODEL=dotenv-model\n")
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    [ep] = endpoints_from_env()
    assert (ep.base_url, ep.api_key, ep.model) == ("http://from-dotenv/v1", KEY, "env-model")


def test_dotenv_is_ignored_when_disabled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"OPENROUTER_API_KEY={KEY}\n")
    assert endpoints_from_env() == []


def test_key_never_appears_in_repr_or_str():
    ep = Endpoint("https://openrouter.ai/api/v1", "some/model", KEY)
    for shown in (repr(ep), str(ep), repr([ep]), f"{ep}"):
        assert KEY not in shown
    assert "some/model" in str(ep) and "openrouter.ai" in repr(ep)


GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})


def test_credentials_in_an_endpoint_url_are_refused_without_showing_them(tmp_path, fake_openai, capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    url = srv.base_url.replace("http://", "http://alice:hunter2-secret@")
    assert generate_main(["--num", "2", "--output", str(tmp_path / "c.jsonl"), "--endpoint", url, "--model", MODEL,
                          "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "has credentials in it" in err and "http://***@127.0.0.1" in err and "hunter2" not in err
    assert not srv.chat_requests
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert "hunter2" not in path.read_text(errors="replace"), path


def test_an_endpoint_that_is_not_a_url_is_refused_at_once(tmp_path, capsys):
    for url in ("not-a-url", "ftp://host/v1", "http://"):
        assert generate_main(["--num", "1", "--output", str(tmp_path / "c.jsonl"), "--endpoint", url,
                              "--no-progress"]) == 1
        assert "is not an http(s) URL" in capsys.readouterr().err
