"""The journal of a generation run: the source of truth from which its output and rejects are rebuilt.

One JSONL file beside the output (`X.jsonl.journal.jsonl`), appended one finished item at a time: a
header line {journal, version, seed, recipe, and a distill run's candidates and opener}, a {model} line,
plan lines {plan: [start, stop]} for every range of indices asked, and one entry per finished index
{index, status: accepted|rejected, record|reject}; the last entry of an index wins. A kill can only cut
the last line short, and loading drops that fragment (its item was not finished).
kit.generation.generate writes it; reports read it with `journal_entries`.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit import paths
from kit.secrets import scrub_text, secret_values

JOURNAL_VERSION = 1


def file_paths(output: str | Path) -> dict[str, Path]:
    """The files of a run, named from its output path."""
    out = paths.resolve(output)
    return {"output": out,
            "journal": out.with_name(out.name + ".journal.jsonl"),
            "rejects": out.with_name(out.stem + ".rejects.jsonl"),
            "manifest": out.with_name(out.stem + ".manifest.json")}



class Journal:
    """Append-only JSONL: a header {seed, recipe}, plan lines {plan: [start, stop]}, and one entry per
    finished index {index, status: accepted|rejected, record|reject}. The last entry of an index wins."""

    def __init__(self, path: Path):
        self.path = path
        self.header: dict | None = None
        self.plans: list[tuple[int, int]] = []
        self.entries: dict[int, dict] = {}
        self._fh = None
        self._secrets: list[str] = []  # looked up once, when the file is opened (100 us a look-up)
        self._syncs: ThreadPoolExecutor | None = None  # one thread: the fsyncs, in order
        self._lock = threading.Lock()
        self._sync_queued = False  # an fsync is submitted and has not begun
        self._sync_error: OSError | None = None

    def load(self, truncate: bool = True) -> "Journal":
        """Read the file. A line cut short by a kill is dropped (its item was not finished), and with
        `truncate` cut off the file too; a reader that is not the run's writer passes False."""
        if not self.path.exists():
            return self
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if truncate and end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        for lineno, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if "journal" in obj:
                    self.header = obj
                elif "model" in obj and "index" not in obj:
                    self.header = {**(self.header or {}), "model": obj["model"]}
                elif "plan" in obj:
                    self.plans.append(tuple(obj["plan"]))
                else:
                    self.entries[int(obj["index"])] = obj
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{self.path}:{lineno}: unreadable journal line ({exc}); "
                                 f"fix or delete the line, or start over with --fresh") from None
        return self

    def planned(self) -> set[int]:
        return {i for start, stop in self.plans for i in range(start, stop)}

    def next_index(self) -> int:
        ends = [stop for _, stop in self.plans] + [i + 1 for i in self.entries]
        return max(ends, default=0)

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

    def bind_model(self, model: str) -> None:
        """Record the model this journal's replies come from; refuse to mix in another model's."""
        recorded = (self.header or {}).get("model")
        if recorded is None:
            self.header = {**(self.header or {}), "model": model}
            self._write({"model": model})
        elif recorded != model:
            raise ValueError(f"{self.path.name} holds replies of model {recorded!r}, not {model!r}; use that "
                             f"model, another output, or --fresh to start over")

    def start(self, seed: int, recipe: str, plan: tuple[int, int], settings: dict | None = None) -> None:
        if self.header is None:
            self.header = {"journal": "kit.generation.generate", "version": JOURNAL_VERSION, "seed": seed, "recipe": recipe,
                           **(settings or {})}
            self._write(self.header)
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

    def rejected(self) -> list[dict]:
        return [e["reject"] for _, e in sorted(self.entries.items()) if e["status"] == "rejected"]


def journal_entries(output: str | Path) -> list[dict]:
    """Every finished item of a run, in index order, as its journal holds it (for reports such as
    kit.generation.distill.funnel). Read only: a line a running writer has not finished is left alone."""
    journal = Journal(file_paths(output)["journal"]).load(truncate=False)
    return [journal.entries[i] for i in sorted(journal.entries)]
