"""Hand generated conversations to other tools: nanochat's CustomJSON lines, or parquet.

    python -m kit export runs/x/data/conversations.jsonl --format customjson --output identity_conversations.jsonl
    python -m kit export runs/x/data/conversations.jsonl --format parquet --output conversations.parquet

CustomJSON is what nanochat's `CustomJSON` task reads: one bare JSON array of messages per line.
Parquet has the columns `id`, `messages` (a list of {role, content}, the layout Hugging Face chat
datasets use) and `meta` (JSON text, since its keys vary between runs). Both are written atomically.
An input line that is not a record stops the export with its file and line: nothing is left out silently.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterable

from kit.paths import atomic_write
from kit.records import file_problem, read_records, to_customjson_line

FORMATS = ("customjson", "parquet")


def to_customjson(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write one messages array per line; returns the number written."""
    n = 0
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(to_customjson_line(record) + "\n")
            n += 1
    return n


def to_parquet(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write id / messages / meta columns; returns the number of rows. Text content only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"id": [], "messages": [], "meta": []}
    for record in records:
        for i, message in enumerate(record["messages"]):
            if not isinstance(message.get("content"), str):
                raise ValueError(f"record {record['id']}: message {i} has content parts; parquet export "
                                 f"takes text content only (use --format customjson)")
        rows["id"].append(str(record["id"]))
        rows["messages"].append([{"role": m["role"], "content": m["content"]} for m in record["messages"]])
        rows["meta"].append(json.dumps(record.get("meta", {}), ensure_ascii=False))
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([("id", pa.string()), ("messages", pa.list_(message)), ("meta", pa.string())])
    table = pa.Table.from_pydict(rows, schema=schema)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit export",
                                     description="Convert a conversation file to CustomJSON lines or parquet.")
    parser.add_argument("input", help="conversation file (JSONL in any format kit.records reads)")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--output", required=True, help="file to write")
    args = parser.parse_args(argv)
    source = Path(args.input)
    if problem := file_problem(source):
        print(f"kit export: {problem}", file=sys.stderr)
        return 2
    result = read_records(source, strict=False)
    if result.errors:
        for err in result.errors:
            print(f"kit export: {err}", file=sys.stderr)
        print(f"kit export: {len(result.errors)} unreadable lines; nothing written", file=sys.stderr)
        return 1
    writer = to_customjson if args.format == "customjson" else to_parquet
    try:
        n = writer(result.records, args.output)
    except (OSError, ValueError) as exc:
        print(f"kit export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {n} conversations to {args.output} ({args.format})")
    return 0
