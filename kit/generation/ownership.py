"""Whose files lie beside a generation output: what `kit generate` may write into, or delete, before a run.

A run on X.jsonl writes X.jsonl.journal.jsonl, X.rejects.jsonl and X.manifest.json beside it
(kit.generation.journal.file_paths). It writes into one only when that file names this command and this
output: the journal by its header (kit.generation.journal.Journal.owner_problem), the manifest by its
kind and its files.output, the rejects file by either of those (its lines have no room to say). Anything
else there is someone else's and is replaced only with `force`. Two outputs whose rejects and manifest
would be one file (x.jsonl and x.json) are refused whatever `force` says: their histories would mix.

`check_start` decides before the first byte is written (and so before the lock file or a folder is
made): a run that is refused, or whose user file has a broken line, leaves everything as it was.
`adopt` reads a user's file that `--append` keeps, line by line as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit import paths
from kit.generation.journal import SUFFIX, Journal, first_line
from kit.records import BOM, load_json, read_records


@dataclass
class Start:
    """What a run may do first: `replace` the files it deletes (its own with fresh, another's with force),
    `adopted` the journal entries of the records of a user's file that append keeps."""

    replace: list[Path] = field(default_factory=list)
    adopted: list[dict] = field(default_factory=list)


def manifest_is_ours(manifest: Path, output: Path) -> bool:
    """Whether `manifest` is kit generate's for `output` (named by file name: a moved folder stays ours)."""
    try:
        data = load_json(paths.read_utf8(manifest))
    except (OSError, ValueError):
        return False
    files = data.get("files") if isinstance(data, dict) else None
    return (data.get("kind") == "generation" and isinstance(files, dict) and isinstance(files.get("output"), str)
            and Path(files["output"]).name == output.name)


def sharing_output(output: Path) -> str | None:
    """Another generation output beside `output` whose rejects and manifest files are `output`'s too (the
    same stem, x.jsonl beside x.json), known by its journal; None when there is none."""
    try:
        names = [p.name for p in output.parent.iterdir()]
    except OSError:
        return None
    for name in names:
        other = name.removesuffix(SUFFIX)
        if name.endswith(SUFFIX) and other != output.name and Path(other).stem == output.stem:
            header = first_line(output.parent / name)
            if isinstance(header, dict) and header.get("journal") == Journal.COMMAND:
                return other
    return None


def check_start(files: dict[str, Path], *, append: bool, fresh: bool, force: bool) -> Start:
    """What a run on `files` may do, or an OutputError / FileExistsError (one line: what, and where)
    for one it must not start. Reads only."""
    out, journal, rejects, manifest = files["output"], files["journal"], files["rejects"], files["manifest"]
    if out.is_dir():
        raise paths.OutputError(f"--output {paths.display_path(out)} is a folder; give a file path, such as "
                                f"{paths.display_path(out / 'conversations.jsonl')}")
    if other := sharing_output(out):
        raise paths.OutputError(
            f"--output {out.name} would share {rejects.name} and {manifest.name} with {other}, kit generate's "
            f"output beside it in {paths.display_path(out.parent)}; give this one another name")
    journal_ours = Journal(journal).owner_problem() is None
    has_journal = journal_ours and isinstance(first_line(journal), dict)
    manifest_ours = manifest_is_ours(manifest, out)
    ours = {journal: journal_ours, rejects: has_journal or manifest_ours, manifest: manifest_ours}
    if fresh and not force:
        for path in ([] if has_journal else [out]) + [p for p in ours if not ours[p]]:
            if path.exists():
                raise FileExistsError(
                    f"--fresh would delete {paths.display_path(path)} ({paths.describe(path)}), which kit generate "
                    f"did not write for {out.name} (no journal {journal.name} of its own); choose another "
                    f"--output, or add --force to delete it")
    if fresh:
        return Start(replace=[out, journal, rejects, manifest])
    what = {journal: "its journal", rejects: "its rejects file", manifest: "its manifest"}
    for path, mine in ours.items():
        paths.check_output(path, force=force, ours=lambda _: mine, option=f"--output {out.name}: {what[path]}")
    replace = [p for p in ours if p.exists() and not ours[p]]
    if has_journal or not out.exists():
        return Start(replace=replace)
    if not append:
        raise FileExistsError(f"{out} exists but has no journal ({journal.name}): pass --append to keep its records "
                              f"and add more, or --fresh to replace it")
    return Start(replace=replace, adopted=adopt(out))


def adopt(output: Path) -> list[dict]:
    """Journal entries for the records of a file the kit did not write, which `--append` keeps: each holds
    the record as read and its line exactly as it was (with the blank lines before it), and the output is
    rebuilt from those lines, so extra fields, a bare CustomJSON array and the file's own spacing stay
    byte for byte. The first line that is not a record is a RecordError, raised before anything is written."""
    records = read_records(output).records
    lines = output.read_bytes().split(b"\n")
    if lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    chunks: list[bytes] = []
    pending: list[bytes] = []
    for lineno, line in enumerate(lines):
        pending.append(line)
        body = line[len(BOM):] if lineno == 0 and line.startswith(BOM) else line
        if body.strip():  # a record's line, as kit.records.iter_records counts them
            chunks.append(b"\n".join(pending))
            pending = []
    if pending and chunks:  # blank lines after the last record stay after it
        chunks[-1] = b"\n".join([chunks[-1], *pending])
    return [{"index": i, "status": "accepted", "record": record, "line": chunk.decode("utf-8")}
            for i, (record, chunk) in enumerate(zip(records, chunks))]
