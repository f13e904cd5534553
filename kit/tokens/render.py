"""A conversation becomes token ids and a loss mask (1 = the model is trained to produce this token).

One set of region rules serves every chat format; a `ChatFormat` only says which tokens surround
each region. The rules (nanochat's, seed 003):

    start of conversation                           0
    system text                                     0   (merged into the first user message, or its own turn)
    user turn: header, text, end                    0
    assistant header                                0   (given: the model never has to predict it)
    assistant text                                  1
    tool call: python start, code, python end       1   (the model writes the tool call ...)
    tool output: start, output, end                 0   (... but not the tool's answer)
    assistant end-of-turn token                     1   (the model must learn to stop)
    separator after the end-of-turn token           0   (written by the template, not the model)

Two formats exist:

- nanochat's special tokens (`nanochat_format(tok)`, what `render_conversation(tok, conv)` uses for a
  kit.tokens.tokenizer.Tokenizer): <|bos|>, <|user_start|> ... <|user_end|>, <|assistant_start|> ...
  <|assistant_end|>, tool parts between <|python_start|>/<|python_end|> and <|output_start|>/<|output_end|>;
  a leading system message is merged into the first user message (joined by a blank line, as nanochat does).
- ChatML, the chat template of SmolLM2 and many other chat models (`chatml_format(...)`, used through
  kit.training.base_model's tokenizer): `<|im_start|>role\\n text <|im_end|>\\n` per message, nothing at the start.
  The system message is its own turn; a conversation without one gets the template's default system
  text, exactly as the model's own template does. The `\\n` after <|im_end|> is not supervised: the
  model stops at <|im_end|> (its end-of-sequence token) and the template writes the newline before
  the next turn. ChatML has no tool tokens, so tool parts are refused (rule `no-tool-tokens`) rather
  than flattened into text the model was never shown.

Each piece of text is encoded on its own, so a region never shares a token with its neighbour, and a
special-token string inside content stays ordinary text.

Training pairs position t with target t+1: the mask that matters for the loss is the mask of the
*target*, i.e. mask[1:]. `token_table` spells that out per position.
"""

from __future__ import annotations

import gc
import os
import weakref
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

PART_TYPES = ("text", "python", "python_output")


class RenderError(ValueError):
    """A conversation whose structure breaks a rendering rule; names the message and the rule, and,
    from `render_batch`, the conversation's position in the input."""

    def __init__(self, message_index: int | None, rule: str, detail: str, conversation: int | None = None):
        self.message_index, self.rule, self.detail, self.conversation = message_index, rule, detail, conversation
        where = [] if conversation is None else [f"conversation {conversation}"]
        where += [] if message_index is None else [f"message {message_index}"]
        super().__init__(f"{', '.join(where) or 'conversation'}: {detail} [rule: {rule}]")

    def __reduce__(self):  # so the error survives the trip back from a worker process
        return (RenderError, (self.message_index, self.rule, self.detail, self.conversation))


class Marker(NamedTuple):
    """A run of format tokens that starts with a special id. `role` None keeps the current role;
    `opens` starts the next message; `part` is what the text after it is."""

    ids: tuple[int, ...]
    role: str | None
    opens: bool
    part: str


@dataclass(frozen=True, eq=False)
class ChatFormat:
    """The tokens around each region (tuples of ids) and how to encode text; the rules are `_render`'s.

    system_head None: a system message is merged into the first user message (nanochat); else it is its
    own turn (system_head, text, user_end), and `default_system` (if any) stands in when a
    conversation has none. python/output None: the format has no tool tokens. `markers` and
    `separator` let `Rendered.spans` find the regions again from the ids alone."""

    name: str
    encode: Callable[[str], list[int]]
    start: tuple[int, ...]
    user_head: tuple[int, ...]
    user_end: tuple[int, ...]
    assistant_head: tuple[int, ...]
    assistant_end: tuple[int, ...]
    separator: tuple[int, ...]
    system_head: tuple[int, ...] | None
    default_system: str | None
    python: tuple[tuple[int, ...], tuple[int, ...]] | None
    output: tuple[tuple[int, ...], tuple[int, ...]] | None
    markers: dict[int, tuple[Marker, ...]]  # first id -> markers starting with it, longest first


def _marker_table(markers: Iterable[Marker]) -> dict[int, tuple[Marker, ...]]:
    table: dict[int, list[Marker]] = {}
    for m in markers:
        table.setdefault(m.ids[0], []).append(m)
    return {k: tuple(sorted(v, key=lambda m: -len(m.ids))) for k, v in table.items()}


_NANOCHAT: "weakref.WeakKeyDictionary[Any, ChatFormat]" = weakref.WeakKeyDictionary()


def nanochat_format(tokenizer) -> ChatFormat:
    """nanochat's special tokens for a kit.tokens.tokenizer.Tokenizer (made once per tokenizer)."""
    fmt = _NANOCHAT.get(tokenizer)
    if fmt is None:
        (bos, user_start, user_end, assistant_start, assistant_end,
         python_start, python_end, output_start, output_end) = tokenizer.special_id_list
        markers = [Marker((bos,), "bos", False, ""), Marker((user_start,), "user", True, "text"),
                   Marker((user_end,), "user", False, "text"), Marker((assistant_start,), "assistant", True, "text"),
                   Marker((assistant_end,), "assistant", False, "text"),
                   Marker((python_start,), "assistant", False, "python"), Marker((python_end,), "assistant", False, "text"),
                   Marker((output_start,), "assistant", False, "python_output"),
                   Marker((output_end,), "assistant", False, "text")]
        fmt = ChatFormat("nanochat", tokenizer.encoding.encode_ordinary, (bos,), (user_start,), (user_end,),
                         (assistant_start,), (assistant_end,), (), None, None,
                         ((python_start,), (python_end,)), ((output_start,), (output_end,)),
                         _marker_table(markers))
        _NANOCHAT[tokenizer] = fmt
    return fmt


def chatml_format(encode: Callable[[str], list[int]], im_start: int, im_end: int,
                  default_system: str | None) -> ChatFormat:
    """ChatML (`<|im_start|>role\\n text <|im_end|>\\n`) for a tokenizer whose `encode` turns text into ids
    without recognising special strings. `default_system` is what the template puts first when a
    conversation has no system message (None: nothing)."""
    heads = {role: (im_start, *encode(f"{role}\n")) for role in ("system", "user", "assistant")}
    newline = tuple(encode("\n"))
    markers = [Marker(head, role, True, "text") for role, head in heads.items()] + [Marker((im_end,), None, False, "text")]
    return ChatFormat("chatml", encode, (), heads["user"], (im_end, *newline), heads["assistant"], (im_end,),
                      newline, heads["system"], default_system, None, None, _marker_table(markers))


def format_of(tokenizer) -> ChatFormat:
    """The tokenizer's chat format: its own `chat_format` (kit.training.base_model's tokenizer), else nanochat's."""
    fmt = _NANOCHAT.get(tokenizer)  # first: the hot path renders with one kit Tokenizer many times
    if fmt is None:
        fmt = getattr(tokenizer, "chat_format", None) or nanochat_format(tokenizer)
    return fmt


class Span(NamedTuple):
    """Tokens [start, end) of one message. part is "special" for format tokens, else the part type
    ("text" for plain content); the start of the conversation has message_index None and role "bos".
    A merged system message is part of the first user message's text; a default system turn that the
    template added has message_index None."""

    start: int
    end: int
    message_index: int | None
    role: str
    part: str


@dataclass(slots=True)
class Rendered:
    """ids and mask have the same length. `spans` says where each token came from."""

    ids: list[int]
    mask: list[int]
    truncated: bool = False
    n_truncated: int = 0
    all_masked: bool = False
    first_message: int = field(default=0, repr=False)  # index of the first format turn (see _render)
    chat_format: ChatFormat | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_supervised(self) -> int:
        return sum(self.mask)

    @property
    def spans(self) -> list[Span]:
        """Runs of tokens from one piece of one message, in order, covering every position.

        Worked out from the ids when asked for (content never encodes to a special id, so the
        format's markers are found at every special id); the hot loop does not pay for it. Adjacent
        text parts of a message form one run, and an empty part has none."""
        fmt = self.chat_format
        if fmt is None:
            raise ValueError("spans need the chat format: make Rendered with render_conversation")
        ids, markers, separator = self.ids, fmt.markers, fmt.separator
        spans: list[Span] = []
        message, role, part, run_start = self.first_message - 1, "bos", "", None
        t, n = 0, len(ids)
        while t < n:
            choices = markers.get(ids[t])
            if choices is None:
                if run_start is None:
                    run_start = t
                t += 1
                continue
            if run_start is not None:
                spans.append(Span(run_start, t, _index(message, role), role, part))
                run_start = None
            marker = next((m for m in choices if tuple(ids[t:t + len(m.ids)]) == m.ids), choices[-1])
            end = min(t + len(marker.ids), n)
            if marker.opens:
                message += 1
            role = marker.role or role
            spans.append(Span(t, end, _index(message, role), role, "special"))
            part = marker.part
            t = end
            if separator and marker.ids == fmt.assistant_end and tuple(ids[t:t + len(separator)]) == separator:
                spans.append(Span(t, t + len(separator), _index(message, role), role, "special"))
                t += len(separator)
        if run_start is not None:
            spans.append(Span(run_start, n, _index(message, role), role, part))
        return spans


def _index(message: int, role: str) -> int | None:
    return None if role == "bos" or message < 0 else message


def messages_of(conversation: Any) -> list:
    """A record dict with "messages", or a bare messages list."""
    if isinstance(conversation, dict):
        if "messages" not in conversation:
            raise RenderError(None, "conversation-shape", "a conversation record needs a 'messages' list")
        conversation = conversation["messages"]
    if not isinstance(conversation, list):
        raise RenderError(None, "conversation-shape", f"expected a list of messages, got {type(conversation).__name__}")
    if not conversation:
        raise RenderError(None, "not-empty", "a conversation needs at least one message")
    return conversation


def _check_max_tokens(max_tokens: int | None) -> None:
    if max_tokens is not None and max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0 (or None for no limit), got {max_tokens}")


def render_conversation(tokenizer, conversation: Any, max_tokens: int | None = None) -> Rendered:
    """ids and mask of one conversation in the tokenizer's chat format (see the module docstring)."""
    _check_max_tokens(max_tokens)
    fmt = format_of(tokenizer)
    ids: list[int] = []
    runs: list[int] = []
    first = _render(fmt, messages_of(conversation), ids, runs)
    n_truncated, all_masked = _cut(ids, runs, 0, 0, max_tokens)
    mask = [0] * len(ids)
    for k in range(0, len(runs), 2):
        start, end = runs[k], runs[k + 1]
        mask[start:end] = [1] * (end - start)
    return Rendered(ids, mask, n_truncated > 0, n_truncated, all_masked, first, fmt)


def _cut(ids: list[int], runs: list[int], start: int, n_runs: int, max_tokens: int | None) -> tuple[int, bool]:
    """Truncate the conversation that starts at ids[start] (its supervised runs from runs[n_runs]) to
    max_tokens, clipping its runs; returns (tokens cut, whether nothing of it is supervised)."""
    length = len(ids) - start
    if max_tokens is None or length <= max_tokens:
        return 0, len(runs) == n_runs  # every assistant message has a run (its end token at least)
    end = start + max_tokens
    del ids[end:]
    runs[n_runs:] = [min(bound, end) for bound in runs[n_runs:]]
    return length - max_tokens, not any(runs[k] < runs[k + 1] for k in range(n_runs, len(runs), 2))


def render_for_completion(tokenizer, conversation: Any) -> list[int]:
    """The prompt for sampling the next assistant reply: the conversation up to its last user
    message (a final assistant message, e.g. a reference answer, is dropped), then the assistant header."""
    fmt = format_of(tokenizer)
    messages = messages_of(conversation)
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        raise RenderError(len(messages) - 1 if messages else None, "completion-after-user", "a prompt for completion must end with a user message")
    ids: list[int] = []
    _render(fmt, messages, ids, runs=[])
    ids += fmt.assistant_head
    return ids


def _render(fmt: ChatFormat, messages: list, ids: list[int], runs: list[int]) -> int:
    """Append the conversation's ids, and to `runs` the bounds of its supervised runs (flat:
    start, end, start, end, ... with end exclusive); returns the message index of the first turn the
    format draws (1 when a system message was merged into the user message after it, -1 when the
    format added a default system turn, else 0), which is what `Rendered.spans` counts from.

    Supervised is, per assistant message, everything after the assistant header through its end
    token except tool outputs; everything else is not. Recording those runs and filling the mask
    once afterwards costs less than extending a mask token by token. This is the hot loop of data
    preparation: local names, list extends and one encode call per piece of text keep it close to
    raw tiktoken (tests/bench/test_bench_render.py). One call per conversation, with the special
    strings allowed, would save tiktoken's ~0.7 us per call, but its scan for special tokens costs
    more than that, and content that merely contains a special string must stay text.
    Spans are not recorded here; Rendered.spans works them out from the ids when a viewer asks."""
    encode = fmt.encode
    user_head, user_end, assistant_head, assistant_end, separator = (
        fmt.user_head, fmt.user_end, fmt.assistant_head, fmt.assistant_end, fmt.separator)

    start = 0
    system_text = None
    head = messages[0]
    if isinstance(head, dict) and head.get("role") == "system":
        system_text = _string_content(head, 0)
        if len(messages) < 2 or not isinstance(messages[1], dict) or messages[1].get("role") != "user":
            raise RenderError(0, "system-then-user", "a system message must be followed by a user message to merge into")
        start = 1

    ids += fmt.start
    first = start
    if fmt.system_head is not None:  # the system text is a turn of its own, not merged
        first = 0
        if system_text is None and fmt.default_system is not None:
            system_text, first = fmt.default_system, -1
        if system_text is not None:
            ids += fmt.system_head
            ids += encode(system_text)
            ids += user_end
        system_text = None
    expected = "user"
    for i in range(start, len(messages)):
        message = messages[i]
        if not isinstance(message, dict):
            raise RenderError(i, "message-shape", f"a message must be an object, got {type(message).__name__}")
        role = message.get("role")
        if role != expected:
            if role == "system":
                raise RenderError(i, "system-first", "a system message may only come first")
            if role not in ("user", "assistant"):
                raise RenderError(i, "role", f"unknown role {role!r} (use system, user or assistant)")
            raise RenderError(i, "alternation", f"expected a {expected} message here, got {role} (roles must alternate user/assistant)")
        if role == "user":
            expected = "assistant"
            text = message.get("content")
            if type(text) is not str:
                text = _string_content(message, i)  # raises with the reason
            if system_text is not None and i == 1:
                text = system_text + "\n\n" + text
            ids += user_head
            ids += encode(text)
            ids += user_end
            continue

        expected = "user"
        ids += assistant_head
        runs.append(len(ids))
        content = message.get("content")
        if isinstance(content, str):
            ids += encode(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or not isinstance(part.get("text"), str):
                    raise RenderError(i, "part-shape", 'each part must be an object {"type": ..., "text": str}')
                kind = part.get("type")
                if kind == "text":
                    ids += encode(part["text"])
                elif kind in ("python", "python_output"):
                    if fmt.python is None:
                        raise RenderError(i, "no-tool-tokens", f"the {fmt.name} format has no tool tokens; "
                                          f"leave conversations with {kind} parts out of this data")
                    if kind == "python":
                        ids += fmt.python[0]
                        ids += encode(part["text"])
                        ids += fmt.python[1]
                    else:
                        runs.append(len(ids))
                        ids += fmt.output[0]
                        ids += encode(part["text"])
                        ids += fmt.output[1]
                        runs.append(len(ids))
                else:
                    raise RenderError(i, "part-type", f"unknown part type {kind!r} (use {', '.join(PART_TYPES)})")
        else:
            raise RenderError(i, "content-type", f"assistant content must be a string or a list of parts, got {type(content).__name__}")
        ids += assistant_end
        runs.append(len(ids))
        ids += separator
    return first


def _string_content(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        raise RenderError(index, "parts-only-assistant", f"{message.get('role')} content must be a string; parts appear only in assistant messages")
    raise RenderError(index, "content-type", f"content must be a string, got {type(content).__name__}")


# ---- the off-by-one, spelled out ---------------------------------------------------------------


def token_roles(rendered: Rendered) -> tuple[list, list, list]:
    """Per position: message index, role and part, expanded from the spans."""
    n = len(rendered.ids)
    index: list = [None] * n
    role: list = [""] * n
    part: list = [""] * n
    for start, end, i, r, p in rendered.spans:
        for t in range(start, end):
            index[t], role[t], part[t] = i, r, p
    return index, role, part


def token_table(tokenizer, rendered: Rendered) -> list[dict]:
    """One row per input position t: the token there, and the target it is trained to predict
    (token t+1) with that target's mask. The last position has no target."""
    ids, mask = rendered.ids, rendered.mask
    _, role, part = token_roles(rendered)
    texts = [tokenizer.token_text(i) for i in ids]
    rows = []
    for t, token_id in enumerate(ids):
        has_target = t + 1 < len(ids)
        rows.append(
            {
                "idx": t,
                "token": texts[t],
                "id": token_id,
                "mask": mask[t],
                "role": role[t],
                "part": part[t],
                "target_id": ids[t + 1] if has_target else None,
                "target": texts[t + 1] if has_target else None,
                "target_mask": mask[t + 1] if has_target else None,
            }
        )
    return rows


# ---- whole files -------------------------------------------------------------------------------

MIN_PER_WORKER = 200
_inherited: tuple | None = None  # (chat format, conversations, max_tokens), read by forked workers


class RenderedBatch(Sequence):
    """Many rendered conversations, stored as flat arrays: what a data loader or packer wants, and
    cheap to move between processes. Conversation k is ids[offsets[k]:offsets[k+1]]; indexing or
    iterating gives `Rendered` objects (made on demand), equal to `render_conversation`'s."""

    def __init__(self, ids: np.ndarray, mask: np.ndarray, offsets: np.ndarray, n_truncated: np.ndarray,
                 all_masked: np.ndarray, first_message: np.ndarray, chat_format: ChatFormat):
        self.ids, self.mask, self.offsets = ids, mask, offsets
        self.n_truncated, self.all_masked, self.first_message = n_truncated, all_masked, first_message
        self.chat_format = chat_format

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"conversation {k} of {len(self)}")
        a, b = self.offsets[k], self.offsets[k + 1]
        n_truncated = int(self.n_truncated[k])
        return Rendered(self.ids[a:b].tolist(), self.mask[a:b].tolist(), n_truncated > 0, n_truncated,
                        bool(self.all_masked[k]), int(self.first_message[k]), self.chat_format)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def supervised(self) -> np.ndarray:
        """mask==1 tokens per conversation."""
        running = np.concatenate(([0], np.cumsum(self.mask, dtype=np.int64)))
        return running[self.offsets[1:]] - running[self.offsets[:-1]]


def render_batch(tokenizer, conversations: Iterable, max_tokens: int | None = None,
                 workers: int | None = None) -> RenderedBatch:
    """Render many conversations on every core; conversation k equals `render_conversation`'s.

    `workers` counts this process: it renders the first share itself while forked worker processes
    render the rest. The workers inherit the tokenizer and the conversations (they are sent only
    index ranges) and send each range back as a few flat byte strings; the result stays flat (numpy)
    rather than millions of small Python ints, which would cost this process about as much to build
    as the rendering itself (tests/bench/test_bench_render.py measures it). Small batches, one core,
    or a platform without fork render here alone. A RenderError names the conversation's position
    in the input (`.conversation`).
    """
    global _inherited
    import multiprocessing as mp

    _check_max_tokens(max_tokens)
    fmt = format_of(tokenizer)

    conversations = conversations if isinstance(conversations, list) else list(conversations)
    workers = min(workers or available_cores(), len(conversations) // MIN_PER_WORKER)
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        return _to_batch([_render_range_with(fmt, conversations, max_tokens, (0, len(conversations)))], fmt)

    # Equal shares: the workers' start-up and this process's joining cost about the same.
    own = len(conversations) // workers
    step = -(-(len(conversations) - own) // (workers - 1))
    ranges = [(n, min(n + step, len(conversations))) for n in range(own, len(conversations), step)]
    _inherited = (fmt, conversations, max_tokens)
    gc.freeze()  # keep the workers' garbage collector off the inherited objects (no copy-on-write storm)
    context, started = mp.get_context("fork"), []
    try:
        for bounds in ranges:
            receive, send = context.Pipe(duplex=False)
            worker = context.Process(target=_render_to_pipe, args=(send, bounds), daemon=True)
            worker.start()
            send.close()
            started.append((worker, receive))
        chunks = [_render_range_with(fmt, conversations, max_tokens, (0, own))]
        for (worker, receive), bounds in zip(started, ranges):
            chunks.append(_receive(receive, worker, bounds))
        return _to_batch(chunks, fmt)
    finally:
        for worker, receive in started:
            receive.close()
            worker.join(timeout=5)
            if worker.is_alive():  # only after an error here: nobody reads its result any more
                worker.kill()
                worker.join()
        gc.unfreeze()
        _inherited = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _render_to_pipe(send, bounds: tuple[int, int]) -> None:
    """A forked worker: its range's bytes, or the RenderError, through the pipe (plain process exit:
    a Pool's bookkeeping threads cost more than rendering a few thousand conversations)."""
    try:
        send.send(("ok", _render_range_with(*_inherited, bounds)))
    except RenderError as exc:
        send.send(("error", exc))
    finally:
        send.close()


def _receive(receive, worker, bounds: tuple[int, int]) -> tuple[bytes, ...]:
    try:
        status, payload = receive.recv()
    except EOFError:
        worker.join()
        raise RuntimeError(f"render worker for conversations {bounds[0]}..{bounds[1] - 1} died "
                           f"(exit code {worker.exitcode})") from None
    if status == "error":
        raise payload
    return payload


def _render_range_with(fmt: ChatFormat, conversations: list, max_tokens: int | None, bounds: tuple[int, int]) -> tuple[bytes, ...]:
    """Conversations [start, end) as flat bytes: ids (int32), mask, lengths (int64), n_truncated
    (int32), all_masked, first_message. The same rules (`_render`, `_cut`) as `render_conversation`, but
    every conversation of the range goes into one ids list and the mask is filled once at the end: no
    per-conversation lists or objects."""
    ids: list[int] = []
    runs: list[int] = []  # supervised [start, end) bounds, absolute in ids
    lengths, n_truncated, all_masked, first_message = array("q"), array("i"), bytearray(), array("b")
    for n in range(*bounds):
        start, n_runs = len(ids), len(runs)
        try:
            messages = messages_of(conversations[n])
            first = _render(fmt, messages, ids, runs)
        except RenderError as exc:
            raise RenderError(exc.message_index, exc.rule, exc.detail, conversation=n) from None
        cut, nothing_supervised = _cut(ids, runs, start, n_runs, max_tokens)
        n_truncated.append(cut)
        all_masked.append(nothing_supervised)
        lengths.append(len(ids) - start)
        first_message.append(first)
    mask = bytearray(len(ids))
    for k in range(0, len(runs), 2):
        mask[runs[k]:runs[k + 1]] = b"\x01" * (runs[k + 1] - runs[k])
    return (array("i", ids).tobytes(), bytes(mask), lengths.tobytes(), n_truncated.tobytes(), bytes(all_masked),
            first_message.tobytes())


def _to_batch(chunks: list[tuple[bytes, ...]], chat_format: ChatFormat) -> RenderedBatch:
    def joined(k: int, dtype) -> np.ndarray:
        return np.concatenate([np.frombuffer(chunk[k], dtype=dtype) for chunk in chunks])

    offsets = np.concatenate(([0], np.cumsum(joined(2, np.int64))))
    return RenderedBatch(joined(0, np.int32), joined(1, np.uint8), offsets, joined(3, np.int32),
                         joined(4, np.bool_), joined(5, np.int8), chat_format)
