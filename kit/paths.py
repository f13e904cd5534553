"""Where things live: the project root, the knowledge folder, run folders; and how a file is
written so that no reader ever sees half of it.

Notebooks run with their own folder as working directory (JupyterLab, nbval) or the project root
(papermill from the pipeline); resolving relative paths against the project root makes both agree.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout the package was installed from (editable install), else the working directory."""
    env = os.environ.get("KIT_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd().resolve()


def resolve(path: str | os.PathLike) -> Path:
    """A user-given path: absolute stays absolute, relative is taken from the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def knowledge_dir() -> Path:
    return project_root() / "knowledge"


def runs_dir() -> Path:
    return project_root() / "runs"


def cache_dir() -> Path:
    """The shared LLM response cache; KIT_CACHE_DIR overrides it (tests point it at a temp folder)."""
    env = os.environ.get("KIT_CACHE_DIR")
    return Path(env).resolve() if env else runs_dir() / ".cache" / "llm"


def display_path(path: str | os.PathLike) -> str:
    """A path as the user should type it: relative to the project root when inside it, else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(project_root()).as_posix()
    except ValueError:
        return str(p)


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be an output folder (it is an existing file), or None. Checked before a long
    job, so that the job does not fail only when it comes to save."""
    return f"{path} is a file; give a folder" if Path(path).exists() and not Path(path).is_dir() else None


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it becomes `path` only when the block ends
    without an error, and is removed otherwise (a failed write leaves neither half a file nor litter).
    The temporary name is hidden and unique, so two processes writing one path (runs sharing the
    reply cache) never write into each other's file: the last complete one wins. A failed write (a full
    disk) raises an OSError that names `path`."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(exc, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_error(exc: OSError, path: str | os.PathLike) -> OSError:
    """`exc` as one line naming the file the kit meant to write ("[Errno 28] No space left on device:
    'runs/x/data/conversations.jsonl'"): a write into a temporary file or an open handle names nothing."""
    if exc.errno is None:
        return OSError(f"{display_path(path)}: {exc}")
    return type(exc)(exc.errno, exc.strerror or str(exc), display_path(path))


def read_utf8(path: str | os.PathLike) -> str:
    """A text file's content; a UTF-8 byte order mark at its start is dropped, and a byte that is not
    UTF-8 is a ValueError naming the file, line and byte (not a bare UnicodeDecodeError)."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{display_path(path)}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); "
                         f"save the file as UTF-8") from None
