"""Readers for the public sets nanochat mixed into midtraining, and for the memory-benchmark dialogues,
and the `Task` protocol they share with the built-in tasks (kit.training.tasks builds on this module,
never the other way).

Each reader takes files in the set's *published* format, as a user gets them from the Hugging Face
hub or the original release, and yields conversation records like the built-in tasks:

- SmolTalk (general chat): parquet or JSONL rows with a `messages` list (optional system message,
  then user/assistant turns).
- MMLU (multiple choice): the hub's parquet/JSONL columns `question, subject, choices, answer` (answer an
  index), or the original headerless CSVs `question, A, B, C, D, answer-letter` named `<subject>_<split>.csv`.
  Rendered as nanochat does: "Multiple Choice question: ...", one "- choice=letter" line per choice, and
  the assistant answers with the letter alone.
- GSM8K (grade-school math): JSONL or parquet with `question, answer`; the answer's `<<expr=result>>`
  calculator annotations become python / python_output parts, the rest stays text (the "#### N" line too).
- Memory-benchmark dialogues (`kit.memory` output): each chunk, one session of `[date] User said, "..."`
  lines, becomes one conversation.

Nothing is downloaded here: a path is a file or a folder of files. A row that does not fit the format
raises DatasetError naming the file and the row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

from kit.records import BOM, LINE_TOO_LONG, decode_line, iter_lines, load_json

# ---------------------------------------------------------------------------------------------------
# The task protocol: kit.training.tasks builds on it, so it lives here, below both

class Task(Sequence):
    """A sized, indexable collection of conversation records."""

    name: str = "task"

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, index: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range (size {len(self)})")
        return self.get(index % len(self))

    def __iter__(self) -> Iterator[dict]:
        return (self.get(i) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, size={len(self)})"


def record(task: str, index: int, messages: list[dict], **meta) -> dict:
    """A conversation record whose id and meta name the task it came from."""
    return {"id": f"{task}:{index}", "messages": messages, "meta": {"task": task, **meta}}


# ---------------------------------------------------------------------------------------------------
# Readers

_ROW_FILES = (".parquet", ".jsonl", ".json", ".csv")


class DatasetError(ValueError):
    """A row that does not fit the set's format: says which file, which row, and why."""

    def __init__(self, path: str | os.PathLike, row: int | str | None, reason: str):
        self.path, self.row, self.reason = str(path), row, reason
        super().__init__(f"{self.path}: {reason}" if row is None else f"{self.path}: row {row}: {reason}")


def data_files(path: str | os.PathLike) -> list[Path]:
    """The file itself, or a folder's row files in name order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in _ROW_FILES)
        if not files:
            raise FileNotFoundError(f"{path}: no {', '.join(_ROW_FILES)} files in the folder")
        return files
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix not in _ROW_FILES:
        raise ValueError(f"{path}: unsupported file type (expected {', '.join(_ROW_FILES)})")
    return [path]


def read_rows(path: Path) -> Iterator[tuple[int, dict | list]]:
    """(row number from 1, row) for one file: dicts from parquet/JSONL/JSON, lists from CSV."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row
    elif path.suffix == ".jsonl":
        with open(path, "rb") as fh:
            for i, line in iter_lines(fh):
                if line is None:
                    raise DatasetError(path, i, LINE_TOO_LONG)
                if line.strip():
                    try:
                        yield i, load_json(decode_line(line))
                    except json.JSONDecodeError as exc:
                        raise DatasetError(path, i, f"invalid JSON: {exc.msg}") from None
                    except ValueError as exc:
                        raise DatasetError(path, i, str(exc)) from None
    elif path.suffix == ".json":
        rows = _json(path)
        yield from enumerate(rows if isinstance(rows, list) else [rows], start=1)
    else:
        yield from enumerate(csv.reader(io.StringIO(_text(path), newline="")), start=1)


def _json(path: Path):
    """A whole .json file, bounded (kit.records.load_json): a hostile file is a DatasetError, not a crash."""
    try:
        return load_json(_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(path, None, f"line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise DatasetError(path, None, str(exc)) from None


def _text(path: Path) -> str:
    """A whole file as UTF-8 (a BOM at its start dropped); a bad byte is reported by its line (a
    whole-file format has no rows yet)."""
    raw = path.read_bytes().removeprefix(BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(path, None, f"line {line}: not valid UTF-8: byte 0x{raw[exc.start]:02x}") from None


class _FileTask(Task):
    """Reads every file once at construction and keeps the records (the sets are small enough)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: list[dict] = []
        for file in data_files(self.path):
            for row_number, row in read_rows(file):
                try:
                    messages, meta = self.convert(row, file)
                except DatasetError:
                    raise
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                    raise DatasetError(file, row_number, f"{type(exc).__name__}: {exc}") from None
                if isinstance(messages, str):
                    raise DatasetError(file, row_number, messages)
                index = len(self.records)
                self.records.append(record(self.name, index, messages, source=f"{file.name}:{row_number}", **meta))
        if not self.records:
            raise ValueError(f"{self.path}: no rows")

    def convert(self, row, file: Path) -> tuple[list[dict] | str, dict]:
        """(messages, meta) for one row, or (reason string, {}) when the row does not fit."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> dict:
        return self.records[index]


class SmolTalk(_FileTask):
    name = "smoltalk"

    def convert(self, row, file):
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
        if len(turns) < 2:
            return "needs at least one user and one assistant message", {}
        for i, message in enumerate(turns):
            expected = "user" if i % 2 == 0 else "assistant"
            if message["role"] != expected or not isinstance(message["content"], str):
                return f"message {i + len(messages) - len(turns)}: expected a {expected} message with text", {}
        return messages, {}


LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")


def render_multiple_choice(question: str, choices: list[str], letters=LETTERS) -> str:
    """nanochat's multiple-choice prompt: each choice is followed by its letter."""
    lines = "".join(f"- {choice}={letter}\n" for letter, choice in zip(letters, choices))
    return f"Multiple Choice question: {question}\n{lines}\nRespond only with the letter of the correct answer."


class MMLU(_FileTask):
    name = "mmlu"

    def convert(self, row, file):
        if isinstance(row, list):  # original release: question, A, B, C, D, letter; subject in the file name
            if len(row) != 6:
                return f"expected 6 CSV columns (question, A, B, C, D, answer), got {len(row)}", {}
            question, choices, letter = row[0], row[1:5], row[5].strip()
            if letter not in LETTERS[:4]:
                return f"answer must be one of A-D, got {letter!r}", {}
            answer = LETTERS.index(letter)
            subject = re.sub(r"_(test|val|dev|train|auxiliary_train)$", "", file.stem)
        else:
            question, choices, answer, subject = row["question"], list(row["choices"]), row["answer"], row.get("subject", "")
            if not isinstance(answer, int) or not 0 <= answer < len(choices):
                return f"answer must be an index into the {len(choices)} choices, got {answer!r}", {}
        if not 2 <= len(choices) <= len(LETTERS):
            return f"expected 2-{len(LETTERS)} choices, got {len(choices)}", {}
        letters = list(LETTERS[:len(choices)])
        messages = [
            {"role": "user", "content": render_multiple_choice(question, [str(c) for c in choices], letters)},
            {"role": "assistant", "content": letters[answer]},
        ]
        return messages, {"subject": subject, "letters": letters, "answer": letters[answer]}


_ANNOTATION = re.compile(r"(<<[^<>]*>>)")


def gsm8k_parts(answer: str) -> list[dict]:
    """Split a GSM8K answer into text / python / python_output parts at its <<expr=result>> annotations.

    Text around an annotation is kept as written (GSM8K repeats the result right after it), so the
    parts joined back give the original answer's text and nothing is lost.
    """
    parts = []
    for piece in _ANNOTATION.split(answer):
        if piece.startswith("<<") and piece.endswith(">>"):
            expression, sep, result = piece[2:-2].rpartition("=")
            if not sep or not expression.strip():
                raise ValueError(f"calculator annotation {piece!r} is not <<expression=result>>")
            parts += [{"type": "python", "text": expression}, {"type": "python_output", "text": result}]
        elif piece:
            parts.append({"type": "text", "text": piece})
    return parts


class GSM8K(_FileTask):
    name = "gsm8k"

    def convert(self, row, file):
        answer = row["answer"]
        final = re.search(r"####\s*(.+?)\s*$", answer)
        if not final:
            return "answer has no '#### N' final line", {}
        messages = [{"role": "user", "content": row["question"]},
                    {"role": "assistant", "content": gsm8k_parts(answer)}]
        return messages, {"answer": final.group(1)}


_SAID = re.compile(r'^\[(?P<date>[^\]]+)\]\s+(?P<role>User|Assistant) said,\s*"(?P<text>.*)"\s*$', re.S)


class MemoryDialogues(Task):
    """Sessions of the memory benchmark (kit.memory's JSON: one object, or a list, with "chunks").

    The questions are not used: they are the benchmark, and training on them would leak the answers.
    """

    name = "memory"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records = []
        data = _json(self.path)
        for item_number, item in enumerate(data if isinstance(data, list) else [data], start=1):
            if not isinstance(item, dict) or not isinstance(item.get("chunks"), list):
                raise DatasetError(self.path, item_number, "expected an object with a 'chunks' list")
            for chunk_number, chunk in enumerate(item["chunks"], start=1):
                where = f"{item_number} chunk {chunk_number}"
                messages, date = self._session(chunk, where)
                index = len(self.records)
                self.records.append(record(self.name, index, messages, task_id=item.get("task_id"),
                                           chunk=chunk_number - 1, date=date))
        if not self.records:
            raise ValueError(f"{self.path}: no chunks")

    def _session(self, chunk, where: str) -> tuple[list[dict], str]:
        lines = chunk if isinstance(chunk, list) else str(chunk).splitlines()
        messages: list[dict] = []
        date = ""
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            match = _SAID.match(line.strip())
            if not match:
                raise DatasetError(self.path, f"{where} line {line_number}",
                                   f'expected \'[date] User said, "..."\', got {line[:60]!r}')
            role, text = match["role"].lower(), match["text"]
            date = date or match["date"]
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"] += "\n" + text
            else:
                messages.append({"role": role, "content": text})
        if not messages or messages[0]["role"] != "user":
            raise DatasetError(self.path, where, "a session must start with a User line")
        return messages, date

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> dict:
        return self.records[index]
