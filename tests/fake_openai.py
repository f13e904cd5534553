"""A real OpenAI-compatible HTTP server on loopback whose every reply a test scripts.

The client's retry, back-off and concurrency logic can only be trusted if it is exercised over real
sockets, with real status codes, headers and delays. `FakeOpenAI(responder)` serves
`POST /v1/chat/completions` and `GET /v1/models` from a thread; the `responder` decides each reply:

    def responder(request: dict, n_seen: int) -> Reply:   # n_seen: earlier requests with the same prompt
        return Reply(status=429, headers={"Retry-After": "1"}) if n_seen == 0 else Reply(content="{}")

    with FakeOpenAI(responder) as srv:
        srv.base_url            # "http://127.0.0.1:PORT/v1"
        srv.requests            # every request seen: Seen(path, json, headers, at), a snapshot
        srv.max_in_flight       # the most chat requests handled at once

Each connection gets its own thread, so a slow reply never holds up another. Replies go out in one
write with TCP_NODELAY set: a server that writes headers and body separately meets Nagle's algorithm
and the peer's delayed ACK, and every reply then pays ~40 ms that is no fault of the client.

Hostile servers, for the reliability tests: `hang_responder` accepts and never answers,
`trickle_responder` sends a valid reply one byte every 2 s, `html_responder` answers 200 with a web
page, `brackets_responder` replies with 1,200 `[` (a small model looping to its token limit), and
`echo_key_responder(status)` fails with an error message that quotes the caller's API key (some
gateways do).

`python tests/fake_openai.py --latency 0.2` serves fixed-latency replies from its own process (the
throughput benchmarks run the server there so that it does not share the client's interpreter);
`--reply conversation` answers every request with a hand-written conversation from
knowledge/reference/ that passes generate's checks (`conversation_responder`), so a benchmark can drive
`kit generate` with every item accepted at the first ask. `GET /v1/fake/arrivals` lists the arrival
times (time.monotonic(), one clock for every process on the machine) of the chat requests seen, so
another process can time a run from its first request. `--crash-after N` makes the process kill itself
with SIGSEGV when its Nth chat request arrives (a crashing llama.cpp build, tests/test_server_death.py),
and it announces itself the way uvicorn does, so kit.llm.local_server takes it for a started server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import zlib
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

MODEL = "fake-model"


@dataclass
class Reply:
    """One scripted reply. `body` (raw bytes or str) replaces the generated JSON body entirely."""

    status: int = 200
    content: str | None = "ok"
    finish_reason: str = "stop"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | None = None
    usage: tuple[int, int] = (10, 5)
    role: str = "assistant"
    hang: bool = False  # accept the request and never answer (until the server stops)
    trickle_s: float = 0.0  # send the reply one byte at a time, this long apart
    content_type: str = "application/json"
    echo_key: bool = False  # the error message quotes the request's bearer token


@dataclass(frozen=True)
class Seen:
    path: str
    json: dict | None
    headers: dict[str, str]  # names lower-cased
    at: float  # time.monotonic() on arrival


Responder = Callable[[dict, int], Reply]


def echo_responder(request: dict, n_seen: int) -> Reply:
    """Default: answer with the last user message, so tests can tell replies apart."""
    return Reply(content=f"echo: {prompt_key(request)}")


def prompt_key(request: dict) -> str:
    """The text that identifies a request's prompt: its last message's content."""
    messages = request.get("messages") or [{}]
    content = messages[-1].get("content", "")
    return content if isinstance(content, str) else json.dumps(content, sort_keys=True)


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def hang_responder(request: dict, n_seen: int) -> Reply:
    return Reply(hang=True)


def trickle_responder(request: dict, n_seen: int) -> Reply:
    return Reply(content='{"messages": []}', trickle_s=2.0)


HTML_PAGE = "<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"


def html_responder(request: dict, n_seen: int) -> Reply:
    return Reply(body=HTML_PAGE, content_type="text/html")


def brackets_responder(request: dict, n_seen: int) -> Reply:
    return Reply(content="[" * 1200, finish_reason="length")


def conversation_responder(delay: float = 0.0) -> Responder:
    """Each prompt answered with one of the reference identity conversations as `{"messages": [...]}`
    (chosen by the prompt, so a repeated request gets the same one): replies of a real size that pass
    generate's structure and content rules."""
    path = Path(__file__).resolve().parents[1] / "knowledge" / "reference" / "identity.jsonl"
    replies = [json.dumps({"messages": json.loads(line)["messages"]}, ensure_ascii=False)
               for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def respond(request: dict, n_seen: int) -> Reply:
        return Reply(content=replies[zlib.crc32(prompt_key(request).encode()) % len(replies)], delay=delay)
    return respond


def echo_key_responder(status: int = 500) -> Responder:
    return lambda request, n_seen: Reply(status=status, echo_key=True)


def _error_body(status: int) -> dict:
    messages = {400: "bad request: invalid field", 401: "Incorrect API key provided", 403: "forbidden",
                404: f"The model '{MODEL}' does not exist", 429: "rate limited"}
    return {"error": {"message": messages.get(status, f"server error {status}"), "type": "fake", "code": status}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # quiet: tests read srv.requests instead
        pass

    def do_GET(self) -> None:
        self.server.fake._record(self.path, None, _lower(self.headers))
        if self.path.rstrip("/").endswith("/fake/arrivals"):
            self._send(200, {"monotonic": [r.at for r in self.server.fake.chat_requests]})
        elif self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model",
                                                          "owned_by": self.server.fake.owned_by}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        fake = self.server.fake
        n_seen = fake._record(self.path, request, _lower(self.headers))
        fake._enter()
        try:
            reply = fake.responder(request, n_seen)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.hang:
                fake._stopped.wait()
                self.close_connection = True
                return
        finally:
            fake._leave()
        if reply.body is not None:
            self._send(reply.status, reply.body, reply.headers, reply.content_type)
        elif reply.status != 200:
            body = _error_body(reply.status)
            if reply.echo_key:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                body["error"]["message"] = f"Incorrect API key provided: {token}. You can find your key at ..."
            self._send(reply.status, body, reply.headers)
        else:
            self._send(200, _completion(request, reply), reply.headers, trickle_s=reply.trickle_s)

    def _send(self, status: int, body: dict | bytes | str, headers: dict[str, str] | None = None,
              content_type: str = "application/json", trickle_s: float = 0.0) -> None:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                f"Content-Type: {content_type}", f"Content-Length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
        try:
            if not trickle_s:
                self.wfile.write(message)
                return
            for i in range(len(message)):  # headers and body, a byte at a time, until the client gives up
                self.wfile.write(message[i:i + 1])
                self.wfile.flush()
                if self.server.fake._stopped.wait(trickle_s):
                    break
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True


def _completion(request: dict, reply: Reply) -> dict:
    prompt_tokens, completion_tokens = reply.usage
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
        "model": request.get("model", MODEL),
        "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                     "message": {"role": reply.role, "content": reply.content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 refuses a burst of 64 new connections
    fake: "FakeOpenAI"

    def handle_error(self, request, client_address):
        # A client that stops early (a fatal error cancels its other requests) resets the connection while
        # we still write; that is the client's right, not a fault worth a traceback on the test's stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeOpenAI:
    """A scripted OpenAI-compatible server on 127.0.0.1 (a free port), running while the context is open."""

    def __init__(self, responder: Responder = echo_responder, port: int = 0):
        self.responder = responder
        self.owned_by = "fake"  # what GET /models reports; llama-cpp-python's server says "llamacpp"
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[Seen] = []
        self._per_prompt: Counter[str] = Counter()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()  # ends hanging and trickling replies when the server stops

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.json is not None]

    def count(self, prompt: str) -> int:
        """How many chat requests carried this prompt (last message content)."""
        with self._lock:
            return self._per_prompt[prompt]

    def _record(self, path: str, request: dict | None, headers: dict[str, str]) -> int:
        with self._lock:
            self._requests.append(Seen(path, request, headers, time.monotonic()))
            if request is None:
                return 0
            key = prompt_key(request)
            n_seen = self._per_prompt[key]
            self._per_prompt[key] += 1
            return n_seen

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def start(self) -> "FakeOpenAI":
        self._stopped.clear()
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="serve fixed-latency fake chat completions until killed")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds each reply waits")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", choices=("answer", "conversation"), default="answer",
                        help='answer: {"answer": 42}; conversation: a reference conversation (conversation_responder)')
    parser.add_argument("--crash-after", type=int, default=0, help="die by SIGSEGV at the Nth chat request (0: never)")
    args = parser.parse_args()
    respond = conversation_responder(args.latency) if args.reply == "conversation" else \
        (lambda request, n_seen: Reply(content='{"answer": 42}', delay=args.latency))
    seen = iter(range(1, 2**62))

    def responder(request: dict, n_seen: int) -> Reply:
        if next(seen) == args.crash_after:
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(60)  # the signal may reach another thread a moment later: never answer this request
        return respond(request, n_seen)

    with FakeOpenAI(responder, port=args.port) as srv:
        print(srv.base_url, flush=True)
        print(f"INFO:     Uvicorn running on {srv.base_url.removesuffix('/v1')}", file=sys.stderr, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
