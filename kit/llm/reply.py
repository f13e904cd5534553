"""A server's reply and what the kit makes of it, apart from how it was asked for (kit.llm.client).

Everything here reads text a server sent, and a server may send anything: a body that is not a chat
completion, a `usage` of NaN, a megabyte of `[`, an error page. So each reader is a pure function that
never raises on a reply: `completion_problem` says why a decoded body is not a completion the kit can
read, `token_count` keeps a bad count from becoming a bill, `server_message` / `fatal_message` say what
an error response means, `retry_delay` reads `Retry-After`, and `parse_json_reply` finds the JSON in a
model's text (bounded, then repaired). Kept apart from the client so the client holds only the asking:
endpoints, concurrency, retries, deadlines, the cache; and so these checks are read and tested alone.
`Completion` is the reply as every caller receives it.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

import json_repair

from kit.llm.endpoints import Endpoint
from kit.records import MAX_DEPTH, deeper_than, load_json

MAX_REPLY_CHARS = 2**20  # a chat reply is a few thousand tokens; beyond this it is a runaway
MAX_REPAIR_CHARS = 2**16  # almost-JSON worth repairing is a reply of a few thousand tokens
MAX_TOKEN_COUNT = 2**40  # a count in a reply's usage beyond this is garbage, not a bill
_BRACKET_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str
    endpoint: str
    retries: int = 0
    latency_s: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class JsonReply:
    value: Any
    error: str | None
    repaired: bool


def parse_json_reply(text: str | None) -> JsonReply:
    """The JSON value in a model's reply. Small models often emit almost-JSON (a trailing comma, a
    missing brace, a code fence): json-repair fixes those; `repaired` says it had to. Never raises:
    a degenerate reply (1,200 `[` from a model looping to its token limit, megabytes of text) is an
    error like any other (kit.records.load_json's limits)."""
    if text is None or not text.strip():
        return JsonReply(None, "empty reply", False)
    if len(text) > MAX_REPLY_CHARS:
        return JsonReply(None, f"{len(text):,} characters long (more than {MAX_REPLY_CHARS:,})", False)
    try:
        return JsonReply(load_json(text), None, False)
    except json.JSONDecodeError as exc:
        first_error = f"not valid JSON ({exc})"
    except ValueError as exc:  # too deep, a lone surrogate: repairing would not make it sane
        return JsonReply(None, f"not usable JSON ({exc})", False)
    # json-repair takes seconds to minutes on long or deeply bracketed garbage (100,000 `{`: 25 s), and
    # an almost-JSON reply worth repairing is neither
    if len(text) > MAX_REPAIR_CHARS or _bracket_depth(text) > MAX_DEPTH:
        return JsonReply(None, first_error, False)
    try:
        value = json_repair.loads(text)
    except (RecursionError, MemoryError, ValueError):
        return JsonReply(None, first_error, False)
    if not isinstance(value, (dict, list)) or not value or deeper_than(value, MAX_DEPTH):
        return JsonReply(None, first_error, False)
    return JsonReply(value, None, True)


def _bracket_depth(text: str) -> int:
    """The deepest nesting of brackets outside JSON strings (a loop over the brackets only)."""
    depth = deepest = 0
    for match in _BRACKET_OR_STRING.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest



def completion_problem(data: Any) -> str | None:
    """Why a decoded reply body is not a chat completion the kit can read, or None. Only what a
    Completion takes is checked; a bad `usage` is no reason to ask again (`token_count`)."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "no choices[0] object"
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return f"choices[0].message is {json_kind(message)}, not an object"
    if not isinstance(message.get("content"), (str, type(None))):
        return f"message content is {json_kind(message['content'])}, not a string"
    if not isinstance(choices[0].get("finish_reason"), (str, type(None))):
        return f"finish_reason is {json_kind(choices[0]['finish_reason'])}, not a string"
    return None


def json_kind(value: Any) -> str:
    """A JSON value's type as a reply's reader would say it ("an array", "missing")."""
    if value is None:
        return "missing"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def token_count(usage: Any, name: str) -> int:
    """A token count from a reply's `usage`; 0 when it is not a count (a string, NaN, 1e999, a negative):
    the reply's text is good, only the accounting is lost."""
    value = usage.get(name) if isinstance(usage, dict) else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if type(value) is int and 0 <= value < MAX_TOKEN_COUNT else 0


def retry_delay(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if given."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def decode_body(raw: bytes, charset: str | None) -> str:
    """A response body as text: its declared charset, else UTF-8; undecodable bytes replaced."""
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def server_message(text: str) -> str:
    """What an error response says: the JSON body's message (under "error" where it is nested there,
    as OpenAI nests it), else the first 300 characters of the body."""
    try:
        body = load_json(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        body = body.get("error", body)
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("detail")
        if message:
            return str(message)
    return text[:300]


def fatal_message(status: int, text: str, ep: Endpoint) -> str:
    detail = server_message(text)
    if status == 401:
        return (f"401 Unauthorized: bad or missing API key for {ep.base_url} "
                f"(set OPENAI_API_KEY or OPENROUTER_API_KEY in the environment or .env): {detail}")
    if status == 403:
        return f"403 Forbidden: the API key for {ep.base_url} may not use model '{ep.model}': {detail}"
    if status == 404:
        return (f"404: unknown model '{ep.model}' at {ep.base_url} (or no chat API there; "
                f"does the URL end in /v1?): {detail}")
    if status == 400:
        return f"400 bad request: {detail}"
    return f"{status} from {ep.base_url}: {detail}"
