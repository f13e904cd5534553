"""One client for every OpenAI-compatible endpoint: bounded, adaptive concurrency, retries, accounting.

Bulk generation sends thousands of small requests, so this module makes each one cheap and safe:

- Requests go round-robin over one or more endpoints (scale-out over several vLLM servers).
- At most `concurrency` requests are in flight. A 429 halves that limit; it grows back by one after
  each window of successes (AIMD, as TCP does), so a rate-limited provider is not hammered.
- Retries with exponential back-off and jitter on 429, 408, 409, 5xx, timeouts and dropped connections,
  honouring `Retry-After`; a bad key, unknown model or bad request fails at once with `FatalAPIError`.
- Token counts per completion and in total (`client.stats`), and dollar cost when prices are given.
- A content-addressed reply cache (kit.llm.cache): a repeated request costs nothing. It is keyed
  by model and servers, and keeps a JSON request's reply only when it parses.
- Deadlines: `timeout` per request, its body included (a trickling server hits it too), and
  `item_timeout` for all attempts at one request, so a server that never answers costs minutes.
- Error text is scrubbed of secrets where it is made (kit.secrets): some gateways echo the key.

The HTTP is aiohttp's, posted directly: the JSON body out, the JSON reply read ourselves. The
`openai` package's client (typed request, httpx request model, typed response, even over its aiohttp
transport) cost more CPU per request than the rest of a request together, and CPU per request is what
caps a generation run at high concurrency (tests/bench/test_bench_generate.py); a generator only
needs the text, finish reason and usage. It is sent as the openai package sends it (POST
`{base_url}/chat/completions`, `Authorization: Bearer <key>`, redirects followed, `timeout` for
connecting and for each read, no proxy from the environment), and its failures are sorted the same way:
a status that may pass (408, 409, 429, 5xx), a dropped or refused connection, a timeout and a body
that is not a chat completion are retried, any other status is fatal.

`run_sync(coro)` runs a coroutine from sync code, also inside Jupyter's running event loop, and
`connect()` yields a ready client, starting the embedded model when no endpoint is configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import weakref
from collections import deque
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp
import httpx

from kit.llm.endpoints import Endpoint, endpoints_from_env
from kit.paths import cache_dir
from kit.records import load_json
from kit.llm.cache import ResponseCache, cache_key
from kit.llm.reply import (Completion, completion_problem, decode_body, fatal_message, parse_json_reply, retry_delay,
                           server_message, token_count)
from kit.secrets import scrub_text, secret_values

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 429})
DEFAULT_TIMEOUT_S = 120.0  # one request, body included
DEFAULT_ITEM_TIMEOUT_S = 600.0  # one complete() call: every attempt and back-off together


class LLMError(Exception):
    """Base of the errors this client raises."""


class FatalAPIError(LLMError):
    """A request the server will never accept as sent (bad key, unknown model, bad request): no retry."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(scrub_text(message))  # some gateways echo the key in their error text
        self.status = status


class ServerGone(FatalAPIError):
    """The server the kit started for this run has exited (a crashed engine): nothing can answer, and no
    item is to blame. The run stops; its finished work is kept and a re-run asks the rest again."""


class RetriesExhausted(LLMError):
    """Every attempt failed with a retryable error; `last_error` says what the last one was."""

    def __init__(self, attempts: int, last_error: str, why: str = ""):
        last_error = scrub_text(last_error)
        super().__init__(f"gave up after {attempts} attempts{why}; last error: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


@dataclass
class Stats:
    """Running totals. Cached completions count as cache_hits only: they cost no tokens."""

    requests: int = 0  # HTTP requests sent, retries included
    completions: int = 0
    retries: int = 0
    rate_limited: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)



def response_format(schema: dict, name: str, style: str) -> dict:
    """The `response_format` that asks `style`'s servers for JSON matching `schema`."""
    if style == "llamacpp":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


class AdaptiveLimiter:
    """At most `limit` holders at once. A rate-limit signal halves the limit (once per window: holders
    that started before the cut do not cut again); `limit` successes in a row raise it by one, up to
    `maximum`. One event loop at a time."""

    def __init__(self, maximum: int):
        if maximum < 1:
            raise ValueError(f"concurrency must be at least 1, got {maximum}")
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._successes = 0
        self._epoch = 0

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to hand back to `release`."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return self._epoch
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `_wake` counted us in before resolving the future
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1
                self._wake()
            else:
                self._waiters.remove(waiter)
            raise
        return self._epoch

    def release(self, epoch: int, rate_limited: bool = False, success: bool = False) -> None:
        self.in_flight -= 1
        if rate_limited and epoch == self._epoch:
            self.limit = max(1, self.limit // 2)
            self._epoch += 1
            self._successes = 0
        elif success and self.limit < self.maximum:
            self._successes += 1
            if self._successes >= self.limit:
                self.limit += 1
                self._successes = 0
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None, rate_limited: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


_live_clients: "weakref.WeakSet[LLMClient]" = weakref.WeakSet()


class LLMClient:
    """Chat completions against one or more endpoints. Create it once; `await complete(...)` from many tasks."""

    def __init__(self, endpoints: list[Endpoint] | Endpoint, concurrency: int = 8, max_retries: int = 6,
                 timeout: float = DEFAULT_TIMEOUT_S, prices: tuple[float, float] | None = None,
                 cache_dir: str | None = None, backoff_base: float = 0.5, backoff_max: float = 60.0,
                 item_timeout: float = DEFAULT_ITEM_TIMEOUT_S):
        self.endpoints = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
        if not self.endpoints:
            raise ValueError("LLMClient needs at least one endpoint (kit.llm.client.connect() starts the embedded one)")
        for ep in self.endpoints:
            if not ep.model:
                raise ValueError(f"no model given for {ep.base_url}: pass model= or set OPENAI_MODEL")
        for name, value in (("timeout", timeout), ("item_timeout", item_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value}")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.item_timeout = item_timeout
        self.prices = prices
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.limiter = AdaptiveLimiter(concurrency)
        self.stats = Stats()
        self._next_endpoint = 0
        self._in_flight = [0] * len(self.endpoints)
        # The HTTP sessions' connections belong to the event loop that opened them (Jupyter's run_sync
        # uses a fresh loop per call), so each loop gets its own set.
        self._sessions: dict[asyncio.AbstractEventLoop, list[aiohttp.ClientSession]] = {}
        self._tls = None  # the certificate store, loaded once, for https endpoints only
        _live_clients.add(self)

    def __repr__(self) -> str:
        return f"LLMClient({[str(ep) for ep in self.endpoints]}, concurrency={self.concurrency})"

    def _http_clients(self) -> list[aiohttp.ClientSession]:
        loop = asyncio.get_running_loop()
        clients = self._sessions.get(loop)
        if clients is None:
            for old in [lp for lp in self._sessions if lp.is_closed()]:
                del self._sessions[old]
            clients = self._sessions[loop] = [self._open(ep) for ep in self.endpoints]
        return clients

    def _open(self, ep: Endpoint) -> aiohttp.ClientSession:
        # aiohttp: its C-accelerated HTTP handling costs a fraction of the CPU per request of the httpx
        # stack, whose connection pool also re-checks every idle connection on every request (the
        # openai package's own defaults: at most 1000 connections, idle ones kept 5 s).
        # A plain-http endpoint (vLLM, llama.cpp on loopback) never uses TLS: skipping the certificate
        # store saves ~100 ms, and Jupyter's run_sync makes a session per call.
        if ep.base_url.startswith("http://"):
            tls = False
        else:
            if self._tls is None:  # what the openai package (and httpx, for discover) verify with
                self._tls = httpx.create_ssl_context()
            tls = self._tls
        connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=5.0, ssl=tls)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_connect=self.timeout,
                                        sock_read=self.timeout)
        headers = {"Authorization": f"Bearer {ep.api_key}", "Content-Type": "application/json",
                   "Accept": "application/json", "User-Agent": f"kit (aiohttp/{aiohttp.__version__})"}
        return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers)

    async def _close_session(self, loop: asyncio.AbstractEventLoop) -> None:
        for session in self._sessions.pop(loop, []):
            await session.close()
        if self.cache is not None:  # the replies of this loop's requests, on disk before run_sync returns
            self.cache.flush()

    async def aclose(self) -> None:
        await self._close_session(asyncio.get_running_loop())

    async def complete(self, messages: list[dict], schema: dict | None = None, schema_name: str = "reply",
                       temperature: float | None = None, max_tokens: int | None = None,
                       seed: int | None = None, stream: int | None = None) -> Completion:
        """One chat completion. Raises FatalAPIError (no retry) or RetriesExhausted. Requests of one
        `stream` go to the same endpoint while it is no busier than the others, so a server's prompt
        cache still holds what the stream's previous request shared with this one.

        Each request, its body included, must finish within `timeout` seconds (a server that trickles
        its reply a byte at a time hits it too), and all attempts with their back-off within
        `item_timeout` seconds from the first request (time waiting for a concurrency slot before it
        does not count)."""
        params = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens), ("seed", seed))
                  if v is not None}
        # A sampled reply without a seed is not repeatable, so it is not served from the cache.
        cacheable = self.cache is not None and (seed is not None or temperature == 0)
        if cacheable:
            key = self.cache_key(messages, params, schema, schema_name)
            hit = self._cached(key, json_wanted=schema is not None)
            if hit is not None:
                self.stats.cache_hits += 1
                return hit

        clients = self._http_clients()
        last_error = ""
        deadline: float | None = None
        for attempt in range(self.max_retries + 1):
            epoch = await self.limiter.acquire()
            index = self._pick_endpoint(None if attempt else stream)
            ep = self.endpoints[index]
            if ep.gone is not None and (why := ep.gone(0.0)):
                self.limiter.release(epoch)
                raise ServerGone(why)
            body = {"model": ep.model, "messages": messages, **params}
            if messages and messages[-1].get("role") == "assistant":  # continue it (vLLM's spelling; llama.cpp does so anyway)
                body.update(continue_final_message=True, add_generation_prompt=False)
            if schema is not None:
                body["response_format"] = response_format(schema, schema_name, ep.schema_style)
            started = time.perf_counter()
            deadline = deadline or time.monotonic() + self.item_timeout
            self._in_flight[index] += 1
            allotted = min(self.timeout, deadline - time.monotonic())
            try:
                data = await self._post_within(clients[index], ep, body, allotted)
            except _Retry as exc:
                failure = exc
                self.limiter.release(epoch, rate_limited=exc.rate_limited)
            except BaseException:  # fatal error or cancellation: free the slot, teach the limiter nothing
                self.limiter.release(epoch)
                raise
            else:
                failure = None
                self.limiter.release(epoch, success=True)
            finally:
                self._in_flight[index] -= 1
                self.stats.requests += 1
            if failure is None:
                completion = self._completion(data, ep, attempt, time.perf_counter() - started)
                # a JSON request is cached only when its reply parses: a degenerate reply is asked again
                # on the next run (a fresh seed or a repaired server may answer), never replayed
                if cacheable and (schema is None or parse_json_reply(completion.text).error is None):
                    self.cache.put(key, {**asdict(completion), "cached": False})
                return completion
            if allotted < self.timeout and last_error:
                # the item deadline, not the server, cut this attempt short: the error worth telling is
                # the last attempt that had its full time
                raise RetriesExhausted(attempt + 1, last_error, f" within the {self.item_timeout:g} s item deadline")
            last_error = str(failure)
            if ep.gone is not None and (why := await asyncio.to_thread(ep.gone, 1.0)):
                raise ServerGone(why)
            self.stats.rate_limited += failure.rate_limited
            if attempt == self.max_retries:
                break
            pause = self._backoff(attempt, failure.retry_after)
            if time.monotonic() + pause >= deadline:
                raise RetriesExhausted(attempt + 1, last_error, f" within the {self.item_timeout:g} s item deadline")
            self.stats.retries += 1
            await asyncio.sleep(pause)
        raise RetriesExhausted(self.max_retries + 1, last_error)

    def _pick_endpoint(self, stream: int | None = None) -> int:
        """The endpoint with the fewest requests in flight, round-robin among equals: several local model
        servers each answer one request at a time, so a long reply on one must not hold the next request
        while another idles. A retry moves on to the next endpoint, as plain round-robin did."""
        n = len(self.endpoints)
        if stream is not None and self._in_flight[stream % n] == min(self._in_flight):
            return stream % n
        start = self._next_endpoint
        offset = min(range(n), key=lambda k: self._in_flight[(start + k) % n])
        self._next_endpoint = start + offset + 1
        return (start + offset) % n

    def cache_key(self, messages: list[dict], params: dict, schema: dict | None, schema_name: str) -> str:
        """The reply cache's key: the request and where it goes. The servers are the sorted set of all
        endpoint URLs, so replicas used round-robin share their entries, while a run pointed at another
        server (or at one that is down) never completes from this one's replies. A server the kit
        started itself is named by its model file instead (its port changes every run)."""
        servers = sorted({ep.cache_name or ep.base_url for ep in self.endpoints})
        return cache_key({"model": self.endpoints[0].model, "servers": servers,
                          "messages": messages, "params": params, "schema": schema,
                          "schema_name": schema_name if schema else None})

    def _cached(self, key: str, json_wanted: bool) -> Completion | None:
        entry = self.cache.get(key)
        try:
            hit = Completion(**{**entry, "cost_usd": 0.0, "retries": 0, "latency_s": 0.0, "cached": True})
        except TypeError:  # no entry, or one written by another version of the kit: ask again
            return None
        if json_wanted and parse_json_reply(hit.text).error is not None:
            return None  # cached by an older kit before replies were checked: ask again
        return hit

    async def _post_within(self, session: aiohttp.ClientSession, ep: Endpoint, body: dict, seconds: float) -> dict:
        """`_post` under a deadline for the whole exchange: the HTTP library's own timeout is per read,
        so a body arriving a byte at a time would never trip it."""
        try:
            async with asyncio.timeout(max(seconds, 0.001)):
                return await self._post(session, ep, body)
        except TimeoutError:
            raise _Retry(f"timed out after {seconds:.3g} s at {ep.base_url} (no complete reply)") from None

    async def _post(self, session: aiohttp.ClientSession, ep: Endpoint, body: dict) -> dict:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        try:
            async with session.post(f"{ep.base_url.rstrip('/')}/chat/completions", data=payload) as response:
                raw = await response.read()
                status, headers, charset = response.status, response.headers, response.charset
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:  # timeouts included
            # a refused connection or an unknown host is an OSError among the causes; a timeout is one
            # too (TimeoutError is an OSError), so it is told apart
            causes = _causes(exc)
            failed = any(isinstance(c, OSError) and not isinstance(c, TimeoutError) for c in causes)
            if isinstance(exc, asyncio.TimeoutError) and not failed:
                raise _Retry(f"timed out after {self.timeout:g} s at {ep.base_url}") from None
            raise _Retry(f"connection to {ep.base_url} failed: {causes[-1]}") from None
        text = decode_body(raw, charset)
        if status >= 400:
            if status in RETRYABLE_STATUS or status >= 500:
                raise _Retry(f"{status} from {ep.base_url}: {server_message(text)}",
                             retry_delay(headers), rate_limited=status == 429) from None
            raise FatalAPIError(fatal_message(status, text, ep), status) from None
        try:
            data = load_json(text)
        except ValueError as exc:
            problem = f"not JSON: {exc}"
        else:
            problem = completion_problem(data)
        if problem is not None:
            raise _Retry(f"malformed response from {ep.base_url} (not an OpenAI chat completion: {problem}): "
                         f"{' '.join(text[:200].split())!r}") from None
        return data

    @cached_property
    def _secrets(self) -> list[str]:
        return secret_values()  # once per client: a look-up costs ~100 us, a reply would pay it twice

    def _completion(self, data: dict, ep: Endpoint, attempt: int, latency: float) -> Completion:
        """A reply `_post` has checked, as a Completion. Its text and model name are scrubbed here, where
        they enter the kit: a server may echo the key, and every file and stream downstream gets them."""
        choice = data["choices"][0]
        prompt_tokens = token_count(data.get("usage"), "prompt_tokens")
        completion_tokens = token_count(data.get("usage"), "completion_tokens")
        cost = 0.0
        if self.prices:
            cost = (prompt_tokens * self.prices[0] + completion_tokens * self.prices[1]) / 1e6
        self.stats.completions += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.cost_usd += cost
        model = data.get("model")
        return Completion(text=scrub_text(choice["message"].get("content") or "", self._secrets),
                          finish_reason=choice.get("finish_reason"), prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, cost_usd=cost,
                          model=scrub_text(model, self._secrets) if isinstance(model, str) and model else ep.model,
                          endpoint=ep.base_url, retries=attempt, latency_s=latency)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads out clients that failed together


def _causes(exc: BaseException) -> list[BaseException]:
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    return chain




async def close_loop_clients() -> None:
    """Close every client's connections that belong to the running loop (run_sync calls this last)."""
    loop = asyncio.get_running_loop()
    for client in list(_live_clients):
        await client._close_session(loop)


async def run_workers(items: list, workers: int, handle: Callable[[Any], Awaitable[None]]) -> None:
    """`handle(item)` for every item, `workers` at a time. The workers share one iterator, so each item is
    handled exactly once whatever finishes first; when one fails, the others are cancelled before the
    error goes on (no request is left running behind a failed run)."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await handle(item)

    tasks = [asyncio.create_task(worker()) for _ in range(min(workers, len(items)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion from sync code. Inside a running loop (Jupyter, papermill) it runs
    in a worker thread with a loop of its own; Ctrl-C cancels it there and waits for it to wind down."""

    async def main() -> T:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        try:
            return await coro
        finally:
            await close_loop_clients()

    box: dict[str, Any] = {}
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())

    def worker() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=worker, name="kit-run-sync", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        if "task" in box:
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def discover(ep: Endpoint) -> Endpoint:
    """`ep` completed from the server's `GET /models`: the model when none is given and the server has
    exactly one, and the schema style when it is "auto" (a llama.cpp server says so in owned_by)."""
    if ep.model and ep.schema_style != "auto":
        return ep
    try:
        response = httpx.get(f"{ep.base_url}/models", headers={"Authorization": f"Bearer {ep.api_key}"},
                             timeout=10)
        response.raise_for_status()
        listed = response.json().get("data", [])
        models = [m["id"] for m in listed]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if ep.model:  # some gateways do not list models; the style then stays the common one
            return replace(ep, schema_style="openai")
        raise FatalAPIError(f"no model given and {ep.base_url}/models could not list them ({exc}); "
                            f"pass model= or set OPENAI_MODEL") from None
    model = ep.model
    if not model:
        if len(models) != 1:
            shown = ", ".join(models[:10]) + (" ..." if len(models) > 10 else "")
            raise FatalAPIError(f"no model given and {ep.base_url} serves {len(models)} models ({shown}); "
                                f"pass model= or set OPENAI_MODEL")
        model = models[0]
    style = ep.schema_style
    if style == "auto":
        # llama.cpp's own server says "llamacpp"; llama-cpp-python's (what `kit serve` runs) says "me"
        owners = {str(m.get("owned_by", "")).lower() for m in listed if isinstance(m, dict)}
        style = "llamacpp" if owners and owners <= {"llamacpp", "me"} else "openai"
    return replace(ep, model=model, schema_style=style)


class connect:
    """`with connect() as client:` (or `async with`): an LLMClient for the configured endpoint(s), or for
    the embedded model, started here and stopped on exit, when none is configured.

    endpoint: URL or comma-separated URLs (None: environment / .env); model: the model name there
    (None: OPENAI_MODEL, else the server's only model); other keyword arguments go to LLMClient
    (concurrency, timeout, prices, ...). Replies are cached in kit.paths.cache_dir() unless
    cache_dir=None is passed. gguf: serve this model file on loopback instead (a finetuned model).
    """

    def __init__(self, endpoint: str | list[str] | None = None, model: str | None = None,
                 schema_style: str | None = None, *, gguf: str | os.PathLike | None = None, **client_kwargs: Any):
        if gguf is not None and (endpoint or model):
            raise ValueError("give either a GGUF to serve or an endpoint/model, not both")
        self._args = (endpoint, model, schema_style)
        self._gguf = gguf
        self._client_kwargs = client_kwargs
        self._server = None
        self.client: LLMClient | None = None

    def _open(self) -> LLMClient:
        self._client_kwargs.setdefault("cache_dir", cache_dir())
        endpoints = [] if self._gguf is not None else endpoints_from_env(*self._args)
        if not endpoints:
            from kit.llm.local_server import local_servers

            self._server = local_servers(gguf=self._gguf)
            endpoints = self._server.__enter__()
            # llama.cpp's Python server answers one request at a time: more in flight than servers would
            # only wait in their queues, run into the client's timeout there and be computed twice. The
            # caller's concurrency is meant for remote endpoints, so it is overridden here.
            self._client_kwargs["concurrency"] = len(endpoints)
        try:
            self.client = LLMClient([discover(ep) for ep in endpoints], **self._client_kwargs)
        except BaseException:
            self._stop_server()
            raise
        return self.client

    def _stop_server(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.__exit__(None, None, None)

    def __enter__(self) -> LLMClient:
        return self._open()

    def __exit__(self, *exc: Any) -> None:
        self._stop_server()

    async def __aenter__(self) -> LLMClient:
        return await asyncio.to_thread(self._open)

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self.client is not None:
                await self.client.aclose()
        finally:
            await asyncio.to_thread(self._stop_server)
