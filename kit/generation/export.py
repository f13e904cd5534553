"""Hand generated conversations to other tools: nanochat's CustomJSON lines, or parquet.

    python -m kit export runs/x/data/conversations.jsonl --format customjson --output identity_conversations.jsonl
    python -m kit export runs/x/data/conversations.jsonl --format parquet --output conversations.parquet

CustomJSON is what nanochat's `CustomJSON` task reads: one bare JSON array of messages per line.
Parquet has the columns `id`, `messages` (a list of {role, content}, the layout Hugging Face chat
datasets use) and `meta` (JSON text, since its keys vary between runs). Both are written atomically.
An input line that is not a record stops the export with its file and line: nothing is left out silently.
Neither is a conversation that `kit validate` calls an error (structure: roles, alternation, empty
content, text content for parquet): the export refuses the file, naming each, or with `--skip-invalid`
leaves them out and says how many. `--output` may not be the input (that would strip its ids and meta
for good), and an existing file there is replaced only with `--force`: an export has no manifest, so
the kit cannot tell its own earlier export from the user's file.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from kit.paths import atomic_write
from kit.records import to_customjson_line, write_lines
from kit.secrets import scrub_text, secret_values
from kit.rules import errors, validate_messages

FORMATS = ("customjson", "parquet")


def to_customjson(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write one messages array per line; returns the number written."""
    secrets = secret_values()
    return write_lines(path, (to_customjson_line(record, secrets) for record in records))


def to_parquet(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write id / messages / meta columns; returns the number of rows. Text content only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    secrets = secret_values()  # looked up once: a lookup reads the environment and .env
    rows = {"id": [], "messages": [], "meta": []}
    for record in records:
        for i, message in enumerate(record["messages"]):
            content = message.get("content")
            if not isinstance(content, str):
                kind = "content parts" if isinstance(content, list) else f"{type(content).__name__} content"
                raise ValueError(f"record {record['id']}: message {i} has {kind}; parquet export "
                                 f"takes text content only (use --format customjson)")
        rows["id"].append(str(record["id"]))
        rows["messages"].append([{"role": m["role"], "content": scrub_text(m["content"], secrets)}
                                 for m in record["messages"]])
        rows["meta"].append(scrub_text(json.dumps(record.get("meta", {}), ensure_ascii=False), secrets))
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([("id", pa.string()), ("messages", pa.list_(message)), ("meta", pa.string())])
    table = pa.Table.from_pydict(rows, schema=schema)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows


def invalid_problems(record: dict, text_only: bool = False) -> list[str]:
    """What `kit validate` calls errors in the record's structure (and, for parquet, content that is
    not text), so that an export never hands a trainer what the kit's own check refuses."""
    meta = record.get("meta")
    finish = meta.get("finish_reason") if isinstance(meta, dict) else None
    problems = [str(p) for p in errors(validate_messages(record["messages"], finish))]
    if text_only:
        problems += [f"message {i} has {type(m['content']).__name__} content, not text"
                     for i, m in enumerate(record["messages"]) if not isinstance(m["content"], str)]
    return problems
