"""The journal of a generation run: the source of truth from which its output and rejects are rebuilt.

One JSONL file beside the output (`X.jsonl.journal.jsonl`), appended one finished item at a time: a
header line {journal, version, output, seed, recipe, and a distill run's candidates and opener}, a {model}
line, plan lines {plan: [start, stop]} for every range of indices asked, and one entry per finished index
{index, status: accepted|rejected, record|reject}; the last entry of an index wins. A kill can only cut
the last line short, and loading drops that fragment (its item was not finished).
kit.generation.generate writes it; reports read it with `journal_entries`; kit.quality.judge keeps its
own kind (a subclass: another command, other entries) under the same rules.

Whose it is. The header names the command and the output's file name, so a command never appends to a
journal another command (or another output) began: `owner_problem` says so before anything is read
or written. Every line is checked for its shape where it is read: a hand-edited line that is not one
is a ValueError naming the file and line, never a KeyError deep inside a run.

Durability by group commit. Each line is handed to the operating system (written and flushed) before
`add` returns, so a killed process (SIGKILL, OOM, Ctrl-C) loses nothing: the page cache outlives it.
The fsync that puts lines on the disk runs in a thread of its own, one at a time, covering every line
written before it began; lines finished while one runs share the next. An fsync per line in the event
loop took ~3 ms each and capped a run's rate at what the disk could sync one by one. What a power cut
or an OS crash can lose is the last few milliseconds of lines (one fsync's worth), always the end of the
file: the next run asks for those items again. `sync()` waits until everything written is on disk, and
`close()` does so before it returns.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kit import paths
from kit.records import decode_line, dumps_record, iter_lines, load_json
from kit.secrets import scrub_text, secret_values

JOURNAL_VERSION = 1
API_ERROR = "api_error"  # the rule of an item that failed only because the API did: asked again next run
SUFFIX = ".journal.jsonl"
# The most indices one output may plan. A run holds its planned indices as a set and a work list in
# memory (~100 bytes each) and every finished one as a journal entry (~2 KB on disk, more in memory),
# so a million is already gigabytes, and days of requests; nanochat's identity set is a thousand.
# A plan past it was once recorded and then ran every later run on the output out of memory.
MAX_PLANNED = 1_000_000


def journal_path(output: Path) -> Path:
    """Where the journal of `output` lives: beside it, OUTPUT.journal.jsonl (every command's kind)."""
    return output.with_name(output.name + SUFFIX)


def file_paths(output: str | Path) -> dict[str, Path]:
    """The files of a run, named from its output path."""
    out = paths.resolve(output)
    return {"output": out,
            "journal": journal_path(out),
            "rejects": out.with_name(out.stem + ".rejects.jsonl"),
            "manifest": out.with_name(out.stem + ".manifest.json")}


def planned_count(plans: list[tuple[int, int]]) -> int:
    """How many indices the ranges cover together (overlaps counted once), without listing them."""
    total, reached = 0, None
    for start, stop in sorted(plans):
        start = start if reached is None else max(start, reached)
        if stop > start:
            total += stop - start
            reached = stop
    return total


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def first_line(path: Path) -> Any:
    """The first line of a file as JSON: None for a missing or empty file (or only a fragment a kill
    cut short), the string "not JSON" for anything unreadable. Reads one line, never the file."""
    if not path.exists():
        return None
    try:
        with open(path, "rb") as fh:
            for _, raw in iter_lines(fh):
                if raw is None:
                    return "not JSON"
                if not raw.strip():
                    continue
                if not raw.endswith(b"\n"):
                    return None
                return load_json(decode_line(raw))
    except (OSError, ValueError):
        return "not JSON"
    return None


class Journal:
    """Append-only JSONL: a header {journal, output, seed, recipe}, plan lines {plan: [start, stop]}, and
    one entry per finished index {index, status: accepted|rejected, record|reject}. The last entry of an
    index wins. A subclass sets COMMAND and the checks of its own header and entries."""

    COMMAND = "kit.generation.generate"
    REPAIR = "fix or delete the line, or start over with --fresh"
    HEADER_REQUIRED = True  # a generation journal always began with its header

    def __init__(self, path: Path):
        self.path = path
        self.header: dict | None = None
        self.model: str | None = None
        self.plans: list[tuple[int, int]] = []
        self.entries: dict[int, dict] = {}
        self._fh = None
        self._secrets: list[str] = []  # looked up once, when the file is opened (100 us a look-up)
        self._syncs: ThreadPoolExecutor | None = None  # one thread: the fsyncs, in order
        self._lock = threading.Lock()
        self._sync_queued = False  # an fsync is submitted and has not begun
        self._sync_error: OSError | None = None

    @property
    def output_name(self) -> str:
        return self.path.name.removesuffix(SUFFIX)

    # ---- whose it is, and what its lines may hold ---------------------------------------------

    def owner_problem(self) -> str | None:
        """Why this file is not this command's journal of its output, or None (it is, or it holds
        nothing yet). Reads the first line only."""
        first = first_line(self.path)
        if first is None:
            return None
        shown = paths.display_path(self.path)
        if isinstance(first, dict) and "journal" in first:
            if first["journal"] != self.COMMAND:
                return f"{shown} is a journal of {first['journal']}, not of {self.COMMAND}"
            if first.get("output", self.output_name) != self.output_name:
                return f"{shown} is the journal of {first['output']}, not of {self.output_name}"
            return None
        if self.headerless(first):
            return None
        return f"{shown} is not a journal of {self.COMMAND} ({paths.describe(self.path)})"

    def headerless(self, first: Any) -> bool:
        """Whether a journal without a header, opening with `first`, is still this command's (a kind
        whose older journals had none)."""
        return False

    def header_problem(self, obj: dict) -> str | None:
        if obj["journal"] != self.COMMAND:
            return f"a header of {obj['journal']!r}, not of {self.COMMAND}"
        if not isinstance(obj.get("output", ""), str):
            return "the header's output is not a file name"
        if not _whole(obj.get("seed")) or not isinstance(obj.get("recipe"), str):
            return "the header lacks a whole-number seed or a recipe name"
        if not _whole(obj.get("candidates", 1)) or not isinstance(obj.get("opener", ""), str):
            return "the header's candidates or opener is of the wrong type"
        return None

    def entry_problem(self, obj: dict) -> str | None:
        index, status = obj["index"], obj.get("status")
        if not _whole(index) or index < 0:
            return f"index {json.dumps(index)} is not a whole number >= 0"
        if status == "accepted":
            record = obj.get("record")
            if not isinstance(record, dict):
                return f"index {index}: an accepted entry without its record"
            if not (isinstance(record.get("id"), str) and isinstance(record.get("messages"), list)
                    and isinstance(record.get("meta"), dict)):
                return f"index {index}: its record lacks an id, a messages list or a meta object"
            if not isinstance(obj.get("line", ""), str):
                return f"index {index}: its line is not text"
        elif status == "rejected":
            reject = obj.get("reject")
            if not isinstance(reject, dict):
                return f"index {index}: a rejected entry without its reject"
            if not _strings(reject.get("rules")) or not _strings(reject.get("reasons", [])):
                return f"index {index}: its reject lacks a list of rules (or its reasons are not a list of text)"
            if not isinstance(reject.get("meta", {}), dict):
                return f"index {index}: its reject's meta is not an object"
        else:
            return f"index {index}: status {json.dumps(status)}, expected \"accepted\" or \"rejected\""
        return None

    def _take(self, obj: Any) -> str | None:
        """Hold one line's content, or say why it is not a line of this journal."""
        if not isinstance(obj, dict):
            return f"a JSON {type(obj).__name__}, not an object"
        if "journal" in obj:
            if problem := self.header_problem(obj):
                return problem
            self.header = obj
        elif "plan" in obj:
            plan = obj["plan"]
            if not (isinstance(plan, list) and len(plan) == 2 and all(_whole(v) for v in plan)
                    and 0 <= plan[0] <= plan[1]):
                return f"plan {json.dumps(plan)} is not [start, stop] with 0 <= start <= stop"
            if planned_count([*self.plans, tuple(plan)]) > MAX_PLANNED:
                return f"plan {json.dumps(plan)} takes the output past the {MAX_PLANNED:,} indices it may plan"
            self.plans.append(tuple(plan))
        elif "index" in obj:
            if problem := self.entry_problem(obj):
                return problem
            self.entries[obj["index"]] = obj
        elif "model" in obj:
            if not isinstance(obj["model"], str):
                return "the model is not a name"
            self.model = obj["model"]
        else:
            return "neither a header, a model, a plan nor an entry"
        return None

    def load(self, truncate: bool = True) -> "Journal":
        """Read the file. A line cut short by a kill is dropped (its item was not finished), and with
        `truncate` cut off the file too; a reader that is not the run's writer passes False. A line
        that is not one of this journal's is a ValueError naming file and line."""
        if not self.path.exists():
            return self
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if truncate and end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        shown = paths.display_path(self.path)
        for lineno, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                problem = self._take(load_json(decode_line(line)))
            except ValueError as exc:
                problem = str(exc)
            if problem:
                raise ValueError(f"{shown}:{lineno}: unreadable journal line ({problem}); {self.REPAIR}")
        if self.header is None and (self.plans or self.entries) and self.HEADER_REQUIRED:
            raise ValueError(f"{shown}:1: no header line naming {self.COMMAND}; {self.REPAIR}")
        return self

    def planned(self) -> set[int]:
        return {i for start, stop in self.plans for i in range(start, stop)}

    def plan_problem(self, plan: tuple[int, int]) -> str | None:
        """Why `plan` must not be recorded (the output would plan more than MAX_PLANNED indices), or None."""
        total = planned_count([*self.plans, plan])
        if total <= MAX_PLANNED:
            return None
        return (f"{self.output_name} would plan {total:,} indices, more than the {MAX_PLANNED:,} one output "
                f"may (kit.generation.journal.MAX_PLANNED); ask for fewer, or split them across outputs")

    def next_index(self) -> int:
        ends = [stop for _, stop in self.plans] + [i + 1 for i in self.entries]
        return max(ends, default=0)

    # ---- writing ----------------------------------------------------------------------------

    def _write(self, obj: dict) -> None:
        try:
            if self._sync_error is not None:
                raise self._sync_error
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")
                self._secrets = secret_values()
                self._syncs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-fsync")
            self._fh.write(scrub_text(json.dumps(obj, ensure_ascii=False), self._secrets) + "\n")
            self._fh.flush()
        except OSError as exc:  # a full disk: the entries before this one are whole, a cut line is dropped on load
            raise paths.write_error(exc, self.path) from None
        with self._lock:
            if not self._sync_queued:  # else the queued fsync has not begun, and will cover this line too
                self._sync_queued = True
                self._syncs.submit(self._fsync, self._fh.fileno())

    def _fsync(self, fd: int) -> None:
        """In the fsync thread: covers every line written before it begins."""
        with self._lock:
            self._sync_queued = False
        try:
            os.fsync(fd)
        except OSError as exc:  # raised to the writer by its next add(), sync() or close()
            self._sync_error = exc

    def sync(self) -> None:
        """Block until every line written so far is on disk."""
        if self._fh is None:
            return
        self._syncs.submit(self._fsync, self._fh.fileno()).result()  # after any queued: covers all written
        if self._sync_error is not None:
            raise paths.write_error(self._sync_error, self.path)

    def claim(self, **fields: Any) -> None:
        """Write the header naming this command and output (with `fields`), unless the journal has one
        or already holds lines (a kind whose older journals had none)."""
        if self.header is None and not self.entries and not self.plans:
            self.header = {"journal": self.COMMAND, "version": JOURNAL_VERSION, "output": self.output_name,
                           **fields}
            self._write(self.header)

    def bind_model(self, model: str) -> None:
        """Record the model this journal's replies come from; refuse to mix in another model's."""
        if self.model is None:
            self.model = model
            self._write({"model": model})
        elif self.model != model:
            raise ValueError(f"{self.path.name} holds replies of model {self.model!r}, not {model!r}; use that "
                             f"model, another output, or --fresh to start over")

    def start(self, seed: int, recipe: str, plan: tuple[int, int], settings: dict | None = None) -> None:
        self.claim(seed=seed, recipe=recipe, **(settings or {}))
        if plan[1] > plan[0] and plan not in self.plans:
            self.plans.append(plan)
            self._write({"plan": list(plan)})

    def add(self, entry: dict) -> None:
        self._write(entry)
        self.entries[entry["index"]] = entry

    def close(self) -> None:
        """Sync (see `sync`) and close the file."""
        if self._fh is None:
            return
        try:
            self.sync()
        finally:
            self._syncs.shutdown()
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError as exc:
                raise paths.write_error(exc, self.path) from None

    def accepted(self) -> list[dict]:
        return [e["record"] for _, e in sorted(self.entries.items()) if e["status"] == "accepted"]

    def output_lines(self, save_metadata: bool = True) -> Iterator[str]:
        """The output file's lines, secrets cut out: a record taken in from a user's file (`line`: its
        line as it was, kit.generation.ownership.adopt) as it was, every other one in the kit's format,
        its meta left out without `save_metadata`."""
        secrets = secret_values()
        for _, entry in sorted(self.entries.items()):
            if entry["status"] != "accepted":
                continue
            if "line" in entry:
                yield scrub_text(entry["line"], secrets)
            else:
                record = entry["record"]
                yield dumps_record(record if save_metadata else {**record, "meta": {}}, secrets)

    def api_failed(self, entry: dict) -> bool:
        """Whether a finished entry failed only because the API did (worth another try)."""
        return entry["status"] == "rejected" and entry["reject"]["rules"] == [API_ERROR]

    def rejected(self) -> list[dict]:
        return [e["reject"] for _, e in sorted(self.entries.items()) if e["status"] == "rejected"]


def journal_entries(output: str | Path) -> list[dict]:
    """Every finished item of a run, in index order, as its journal holds it (for reports such as
    kit.generation.distill.funnel). Read only: a line a running writer has not finished is left alone."""
    journal = Journal(file_paths(output)["journal"]).load(truncate=False)
    return [journal.entries[i] for i in sorted(journal.entries)]
