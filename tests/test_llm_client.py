"""LLMClient against a real loopback server whose replies each test scripts (tests/fake_openai.py)."""

from __future__ import annotations

import asyncio
import email.utils
import time
import json

import httpx
import pytest

from fake_openai import MODEL, Reply, hang_responder, trickle_responder
from kit.llm.endpoints import Endpoint
from kit.llm.client import AdaptiveLimiter, FatalAPIError, LLMClient, RetriesExhausted, connect, response_format, run_sync
from kit.llm.reply import parse_json_reply, retry_delay
from kit.commands.generate import main as generate_main

USER = [{"role": "user", "content": "hello"}]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}


def client_for(*servers, **kwargs) -> LLMClient:
    kwargs.setdefault("backoff_base", 0.01)
    return LLMClient([Endpoint(s.base_url, MODEL) for s in servers], **kwargs)


def ask(client: LLMClient, content: str = "hello", **kwargs):
    return run_sync(client.complete([{"role": "user", "content": content}], **kwargs))


def test_completion_carries_text_tokens_and_cost(fake_openai):
    srv = fake_openai(lambda req, n: Reply(content="hi there", usage=(1000, 500)))
    client = client_for(srv, prices=(2.0, 8.0))
    c = ask(client)
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("hi there", "stop", 1000, 500)
    assert c.cost_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    assert (c.model, c.endpoint, c.retries, c.cached) == (MODEL, srv.base_url, 0, False)
    ask(client, "again")
    s = client.stats
    assert (s.requests, s.completions, s.prompt_tokens, s.completion_tokens) == (2, 2, 2000, 1000)
    assert s.cost_usd == pytest.approx(2 * c.cost_usd)


def test_odd_replies_pass_through_for_validation_to_judge(fake_openai):
    replies = {"empty": Reply(content=None), "long": Reply(content="{\"a\": ", finish_reason="length"),
               "role": Reply(content="x", role="user")}
    srv = fake_openai(lambda req, n: replies[req["messages"][-1]["content"]])
    client = client_for(srv)
    assert ask(client, "empty").text == ""
    assert ask(client, "long").finish_reason == "length"
    assert ask(client, "role").text == "x"


def test_429_is_retried_after_the_retry_after_delay(fake_openai):
    srv = fake_openai(lambda req, n: Reply(status=429, headers={"Retry-After": "1"}) if n == 0 else Reply())
    client = client_for(srv)
    c = ask(client)
    first, second = srv.chat_requests
    assert second.at - first.at >= 0.95
    assert c.retries == 1 and client.stats.rate_limited == 1 and client.stats.retries == 1


def test_retry_after_accepts_seconds_milliseconds_and_http_dates():
    assert retry_delay(httpx.Headers({"Retry-After": "2.5"})) == 2.5
    assert retry_delay(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_delay(httpx.Headers({"Retry-After": in_ten})) <= 10
    assert retry_delay(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_delay(httpx.Headers()) is None


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
def test_server_errors_are_retried(fake_openai, status):
    srv = fake_openai(lambda req, n: Reply(status=status) if n < 2 else Reply(content="fine"))
    c = ask(client_for(srv))
    assert c.text == "fine" and c.retries == 2 and len(srv.chat_requests) == 3


def test_malformed_body_is_retried(fake_openai):
    srv = fake_openai(lambda req, n: Reply(body="<html>proxy error</html>") if n == 0 else Reply(content="ok"))
    assert ask(client_for(srv)).text == "ok"


def test_timeouts_are_retried_up_to_the_cap(fake_openai):
    srv = fake_openai(lambda req, n: Reply(delay=2.0))
    client = client_for(srv, timeout=0.2, max_retries=2)
    with pytest.raises(RetriesExhausted, match="timed out") as info:
        ask(client)
    assert info.value.attempts == 3 and len(srv.chat_requests) == 3


def test_connection_refused_is_retried_then_exhausted():
    client = LLMClient([Endpoint("http://127.0.0.1:9/v1", MODEL)], max_retries=1, backoff_base=0.01)
    with pytest.raises(RetriesExhausted, match="connection"):
        ask(client)


def test_an_unknown_host_is_named_as_such_not_as_a_timeout(monkeypatch):
    import socket

    def no_such_host(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    client = LLMClient([Endpoint("http://no-such-host.test/v1", MODEL)], max_retries=0)
    with pytest.raises(RetriesExhausted) as info:
        ask(client)
    assert "connection to http://no-such-host.test/v1 failed" in str(info.value)
    assert "Name or service not known" in str(info.value) and "timed out" not in str(info.value)


@pytest.mark.parametrize("status, message", [
    (401, "401 Unauthorized: bad or missing API key"),
    (403, "403 Forbidden"),
    (404, f"404: unknown model '{MODEL}'"),
    (400, "400 bad request: bad request: invalid field"),
])
def test_client_errors_fail_fast_with_the_cause(fake_openai, status, message):
    srv = fake_openai(lambda req, n: Reply(status=status))
    with pytest.raises(FatalAPIError, match=message) as info:
        ask(client_for(srv))
    assert info.value.status == status
    assert len(srv.chat_requests) == 1


def test_requests_go_round_robin_over_endpoints(fake_openai):
    a, b = fake_openai(), fake_openai()
    client = client_for(a, b)
    for i in range(6):
        ask(client, f"q{i}")
    assert len(a.chat_requests) == len(b.chat_requests) == 3


def test_a_stream_keeps_to_its_endpoint_while_that_one_is_free(fake_openai):
    """A server's prompt cache holds the stream's previous request: memory eval's neighbours share sessions."""
    a, b = fake_openai(), fake_openai()
    client = client_for(a, b)
    for i in range(4):
        ask(client, f"q{i}", stream=1)
    assert (len(a.chat_requests), len(b.chat_requests)) == (0, 4)
    ask(client, "q4", stream=2)  # streams beyond the endpoints wrap around
    assert len(b.chat_requests) == 4 and len(a.chat_requests) == 1


def test_a_retry_moves_to_the_next_endpoint(fake_openai):
    down, up = fake_openai(lambda req, n: Reply(status=503)), fake_openai()
    c = ask(client_for(down, up))
    assert c.endpoint == up.base_url and c.retries == 1


@pytest.mark.parametrize("style", ["openai", "llamacpp"])
def test_schema_is_sent_the_way_each_server_takes_it(fake_openai, style):
    srv = fake_openai(lambda req, n: Reply(content='{"answer": 1}'))
    client = LLMClient([Endpoint(srv.base_url, MODEL, schema_style=style)])
    run_sync(client.complete(USER, schema=SCHEMA, schema_name="answer"))
    sent = srv.chat_requests[0].json["response_format"]
    if style == "openai":
        assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}}
    else:
        assert sent == {"type": "json_object", "schema": SCHEMA}
    assert sent == response_format(SCHEMA, "answer", style)


def test_sampling_parameters_and_key_reach_the_server(fake_openai):
    srv = fake_openai()
    client = LLMClient([Endpoint(srv.base_url, MODEL, api_key="sk-test-123456")])
    run_sync(client.complete(USER, temperature=0.7, max_tokens=33, seed=5))
    seen = srv.chat_requests[0]
    assert (seen.json["temperature"], seen.json["max_tokens"], seen.json["seed"]) == (0.7, 33, 5)
    assert seen.headers["authorization"] == "Bearer sk-test-123456"


def test_cache_hit_sends_no_request_and_costs_nothing(fake_openai, tmp_path):
    srv = fake_openai(lambda req, n: Reply(content=f"reply {n}", usage=(7, 3)))
    first = ask(client_for(srv, cache_dir=tmp_path, prices=(1.0, 1.0)), seed=1)
    again = client_for(srv, cache_dir=tmp_path, prices=(1.0, 1.0))  # a new client, as a resumed run has
    hit = ask(again, seed=1)
    assert len(srv.chat_requests) == 1
    assert (hit.text, hit.cached, hit.cost_usd) == (first.text, True, 0.0)
    assert again.stats.cache_hits == 1 and again.stats.prompt_tokens == 0 and again.stats.requests == 0
    ask(again, seed=2)  # another seed is another request
    assert len(srv.chat_requests) == 2


def test_unseeded_sampling_is_not_cached(fake_openai, tmp_path):
    srv = fake_openai()
    client = client_for(srv, cache_dir=tmp_path)
    ask(client, temperature=1.0)
    ask(client, temperature=1.0)
    assert len(srv.chat_requests) == 2


def test_run_sync_works_inside_a_running_loop(fake_openai):
    srv = fake_openai()
    client = client_for(srv)

    async def notebook_cell():  # Jupyter runs cells inside its own event loop
        return run_sync(client.complete(USER))

    assert asyncio.run(notebook_cell()).text == "echo: hello"
    assert ask(client).text == "echo: hello"  # and again afterwards, on a fresh loop


def test_concurrency_bound_is_respected(fake_openai):
    srv = fake_openai(lambda req, n: Reply(delay=0.05))
    client = client_for(srv, concurrency=4)

    async def many():
        await asyncio.gather(*(client.complete([{"role": "user", "content": str(i)}]) for i in range(24)))

    run_sync(many())
    assert 1 <= srv.max_in_flight <= 4 and len(srv.chat_requests) == 24


def test_rate_limits_shrink_concurrency(fake_openai):
    srv = fake_openai(lambda req, n: Reply(status=429, headers={"Retry-After": "0"}) if n == 0 else Reply(delay=0.02))
    client = client_for(srv, concurrency=16)

    async def many():
        await asyncio.gather(*(client.complete([{"role": "user", "content": str(i)}]) for i in range(32)))

    run_sync(many())
    assert client.stats.rate_limited == 32
    assert client.limiter.limit < 16


def test_limiter_halves_once_per_window_and_grows_back():
    async def scenario():
        limiter = AdaptiveLimiter(8)
        epochs = [await limiter.acquire() for _ in range(8)]
        for e in epochs[:3]:  # three 429s from the same window: one cut
            limiter.release(e, rate_limited=True)
        assert limiter.limit == 4
        for e in epochs[3:]:
            limiter.release(e, success=True)
        grown = []
        for _ in range(40):
            limiter.release(await limiter.acquire(), success=True)
            grown.append(limiter.limit)
        return grown

    grown = asyncio.run(scenario())
    assert grown[-1] == 8 and grown == sorted(grown)


def test_limiter_makes_waiters_queue_in_order():
    async def scenario():
        limiter = AdaptiveLimiter(1)
        order = []

        async def worker(i):
            epoch = await limiter.acquire()
            order.append(i)
            await asyncio.sleep(0)
            limiter.release(epoch, success=True)

        await asyncio.gather(*(worker(i) for i in range(5)))
        return order, limiter.in_flight

    assert asyncio.run(scenario()) == ([0, 1, 2, 3, 4], 0)


def test_connect_uses_the_given_endpoint_and_asks_it_for_the_model(fake_openai):
    srv = fake_openai()
    with connect(srv.base_url) as client:
        assert client.endpoints[0].model == MODEL
        assert ask(client).text == "echo: hello"


@pytest.mark.parametrize("owned_by, style", [("llamacpp", "llamacpp"), ("me", "llamacpp"), ("vllm", "openai")])
def test_connect_learns_how_the_server_takes_a_schema(fake_openai, owned_by, style, monkeypatch):
    monkeypatch.delenv("KIT_SCHEMA_STYLE", raising=False)
    srv = fake_openai()
    srv.owned_by = owned_by
    with connect(srv.base_url, model=MODEL) as client:
        assert client.endpoints[0].schema_style == style
        ask(client, schema={"type": "object"})
    sent = srv.chat_requests[-1].json["response_format"]
    assert sent["type"] == {"llamacpp": "json_object", "openai": "json_schema"}[style]


def test_connect_works_with_async_with(fake_openai):
    srv = fake_openai()

    async def main():
        async with connect(srv.base_url, model="m2") as client:
            return await client.complete(USER)

    assert asyncio.run(main()).model == "m2"


@pytest.mark.parametrize("text, value, repaired", [
    ('{"a": 1}', {"a": 1}, False),
    ('```json\n{"a": 1,}\n```', {"a": 1}, True),
    ('{"a": [1, 2', {"a": [1, 2]}, True),
])
def test_parse_json_reply_repairs_almost_json(text, value, repaired):
    reply = parse_json_reply(text)
    assert (reply.value, reply.error, reply.repaired) == (value, None, repaired)


@pytest.mark.parametrize("text", [None, "", "   ", "I cannot answer that."])
def test_parse_json_reply_reports_what_is_not_json(text):
    reply = parse_json_reply(text)
    assert reply.value is None and reply.error


def test_connect_caches_replies_in_the_kit_cache_dir(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    srv = fake_openai()
    with connect(srv.base_url) as client:
        assert not ask(client, seed=3).cached
        assert ask(client, seed=3).cached
    assert len(srv.chat_requests) == 1 and len(list(tmp_path.rglob("*.json"))) == 1


def test_an_unreadable_cache_entry_is_asked_again(fake_openai, tmp_path):
    srv = fake_openai()
    ask(client_for(srv, cache_dir=tmp_path), seed=1)
    [entry] = tmp_path.rglob("*.json")
    entry.write_text('{"text": "trunc')
    again = ask(client_for(srv, cache_dir=tmp_path), seed=1)
    assert not again.cached and len(srv.chat_requests) == 2
    assert ask(client_for(srv, cache_dir=tmp_path), seed=1).cached  # rewritten whole


def test_the_cache_is_keyed_by_the_set_of_servers(fake_openai, tmp_path):
    """Replicas used round-robin share entries whatever their order; another server never answers from them."""
    a, b, c = (fake_openai() for _ in range(3))
    ask = [{"role": "user", "content": "same question"}]

    def asked_live(servers):
        client = LLMClient([Endpoint(s.base_url, MODEL) for s in servers], cache_dir=str(tmp_path))
        return not run_sync(client.complete(ask, seed=1)).cached

    assert asked_live([a, b])
    assert not asked_live([b, a])
    assert asked_live([c])
    assert len(a.chat_requests) + len(b.chat_requests) == 1 and len(c.chat_requests) == 1


def test_a_server_the_kit_started_is_cached_by_its_model_file_not_its_port(fake_openai, tmp_path):
    """kit.llm.local_server names its endpoint by the GGUF it serves: a re-run on a new port reuses the replies."""
    first, second = fake_openai(), fake_openai()
    ask = [{"role": "user", "content": "same question"}]

    def asked_live(server, name):
        client = LLMClient([Endpoint(server.base_url, MODEL, cache_name=name)], cache_dir=str(tmp_path))
        return not run_sync(client.complete(ask, seed=1)).cached

    assert asked_live(first, "local:model.gguf:123")
    assert not asked_live(second, "local:model.gguf:123")
    assert asked_live(second, "local:other.gguf:456")


def test_a_json_reply_that_does_not_parse_is_not_cached(fake_openai, tmp_path):
    srv = fake_openai(lambda request, n_seen: Reply(content="[" * 1200 if n_seen == 0 else '{"ok": true}'))
    client = LLMClient(Endpoint(srv.base_url, MODEL), cache_dir=str(tmp_path))
    schema = {"type": "object"}
    first = run_sync(client.complete([{"role": "user", "content": "q"}], schema=schema, seed=3))
    second = run_sync(client.complete([{"role": "user", "content": "q"}], schema=schema, seed=3))
    third = run_sync(client.complete([{"role": "user", "content": "q"}], schema=schema, seed=3))
    assert first.text.startswith("[[[") and not second.cached and second.text == '{"ok": true}' and third.cached


GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})


@pytest.mark.parametrize("responder", [hang_responder, trickle_responder], ids=["never answers", "trickles"])
def test_a_request_that_never_completes_hits_the_deadlines(fake_openai, responder):
    srv = fake_openai(responder)
    client = LLMClient(Endpoint(srv.base_url, MODEL), timeout=0.6, item_timeout=2.0, backoff_base=0.05)

    async def ask():
        try:
            return await client.complete([{"role": "user", "content": "hi"}])
        finally:
            await client.aclose()

    with pytest.raises(RetriesExhausted, match="timed out after 0.6 s") as info:
        run_sync(ask())
    assert 1 <= info.value.attempts < 7  # the item deadline, not the retry cap, ended it
    assert "item deadline" in str(info.value)


def test_the_cache_belongs_to_its_server_and_a_cache_only_run_says_so(tmp_path, fake_openai, capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    argv = ["--num", "3", "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"]
    assert generate_main([*argv, "--output", str(tmp_path / "a.jsonl")]) == 0
    assert generate_main([*argv, "--output", str(tmp_path / "b.jsonl")]) == 0
    assert "0 requests: all 3 replies from the cache of model fake-model" in capsys.readouterr().out
    assert generate_main([*argv, "--output", str(tmp_path / "c.jsonl"), "--no-cache"]) == 0
    assert len(srv.chat_requests) == 6 and "from the cache" not in capsys.readouterr().out

    refused = srv.base_url
    srv.stop()  # same model name, nothing listening: the cache of a live server must not answer for it
    rc = generate_main(["--num", "3", "--endpoint", refused.replace("/v1", "/v2"), "--model", MODEL, "--no-progress",
                        "--output", str(tmp_path / "d.jsonl"), "--item-timeout", "1"])
    assert rc == 1 and "failed with API errors" in capsys.readouterr().err
