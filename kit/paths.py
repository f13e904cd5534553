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
    reply cache) never write into each other's file: the last complete one wins."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
