"""Where things live: the project root, the knowledge folder, run folders; and how a file is
written so that no reader ever sees half of it.

Two rules for a relative path, one per audience. A path typed on a command line is the shell's: it is
taken from the working directory, once, by `argument` (every command's path options go through it), and
is absolute from then on. A path a notebook writes in its own cells or parameters (`run_dir =
"runs/interactive"`) is taken from the project root by `resolve`: notebooks run with their own folder as
working directory (JupyterLab, nbval, the pipeline), and the project root makes them agree.

Outputs: `output_problem` refuses an output that is one of the command's inputs (or a folder holding
one) and an existing one the kit did not make (unless forced); `switch_folder` puts a folder built
beside its destination in place whole.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

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
    """A path a notebook names: absolute stays absolute, relative is taken from the project root (the
    notebook's own folder is the working directory in JupyterLab, so the cwd would differ by runner)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def argument(path: str | os.PathLike) -> Path:
    """A path typed on a command line (argparse `type=`): taken from the working directory, as the shell
    and every other tool read it, and made absolute here, once, so that no later rule reads it again."""
    return Path(os.path.abspath(Path(path).expanduser()))


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
        fsync_file(tmp)  # on disk before the rename, or a power cut could leave `path` empty
        os.replace(tmp, path)
        fsync_file(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(exc, path) from None
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and os_errno(exc) is not None:  # a writer's own error for a full disk
            raise write_error(exc, path) from None
        raise


def save_figure(fig, path: str | os.PathLike, **options) -> Path:
    """A matplotlib Figure written to `path` through `atomic_write` (folders made as needed) at 110 dpi, in
    the format the suffix names (PNG without one); `options` go on to `savefig` (e.g. bbox_inches)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, **{"dpi": 110, "format": path.suffix[1:].lower() or "png", **options})
    return path


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file (or a folder's entries) to disk; a path that is gone was written by no one to wait for."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # no room left on the disk, or none left in the user's quota
_OS_ERROR = re.compile(r"\bos error (\d+)\b")  # how Rust libraries (safetensors, tokenizers) word an I/O error


class DiskFullError(OSError):
    """A write that found no room (ENOSPC, EDQUOT). Its line says so in words, names the file and what to do:
    "disk full: no room to write runs/x/c.jsonl ([Errno 28] No space left on device); free some space and
    run the same command again"."""

    def __str__(self) -> str:
        return (f"disk full: no room to write {self.filename} ([Errno {self.errno}] {self.strerror}); "
                f"free some space and run the same command again")


def os_errno(exc: BaseException) -> int | None:
    """The errno behind `exc`: an OSError's own, or the "os error N" a library that is not Python (safetensors'
    SafetensorError) writes into its message; None when there is none."""
    if isinstance(exc, OSError):
        return exc.errno
    found = _OS_ERROR.search(str(exc))
    return int(found.group(1)) if found else None


def write_error(exc: BaseException, path: str | os.PathLike) -> OSError:
    """`exc` as one line naming the file the kit meant to write ("[Errno 13] Permission denied:
    'runs/x/data/conversations.jsonl'"): a write into a temporary file or an open handle names nothing.
    No room on the disk is a DiskFullError, which says so in words. `exc` may be another library's error
    for a failed write (safetensors' SafetensorError "... (os error 28)"): it becomes an OSError too."""
    code, shown = os_errno(exc), display_path(path)
    if code in NO_SPACE:
        strerror = exc.strerror if isinstance(exc, OSError) and exc.strerror else os.strerror(code)
        return DiskFullError(code, strerror, shown)
    if code is None:
        return OSError(f"{shown}: {exc}")
    if isinstance(exc, OSError):
        return type(exc)(code, exc.strerror or str(exc), shown)
    return OSError(code, os.strerror(code), shown)


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


# ---- outputs -------------------------------------------------------------------------------------

TEMP_NAME = re.compile(r"\.[^/]+\.[0-9a-f]{12}\.tmp|\.staging-[0-9a-f]{8}")  # atomic_write's and save_model's


class OutputError(ValueError):
    """An output the kit will not write: one of the command's inputs, or something the kit did not make."""


YAML_MAX_DEPTH = 64  # as kit.records.MAX_DEPTH for JSON: no data file the kit reads nests deeper


class TooDeep(ValueError):
    """YAML nested deeper than YAML_MAX_DEPTH: bad input, not a string that merely fails to parse."""


class BoundedLoader(yaml.SafeLoader):
    """safe_load with its nesting bounded: PyYAML builds nodes recursively, so `[[[...]]]` 1,000 deep (a
    parameter, a rules file) would end in a RecursionError instead of a line naming the file."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > YAML_MAX_DEPTH:
                raise TooDeep(f"nested more than {YAML_MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: str | os.PathLike, what: str):
    """A YAML data file parsed (safe, nesting bounded); a missing file says `what` it should hold, a
    malformed one is a ValueError naming the file (knowledge files are data a person edits)."""
    try:
        return yaml.load(read_utf8(path), Loader=BoundedLoader)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} is missing") from None
    except (yaml.YAMLError, TooDeep) as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None


def clashing_input(output: str | os.PathLike, inputs) -> Path | None:
    """The first of `inputs` that writing `output` would destroy: the same file (links followed) or a
    file inside the output folder. None when there is none."""
    out = Path(output).resolve()
    for given in inputs:
        if given is None:
            continue
        p = Path(given).resolve()
        if p == out or out in p.parents:
            return Path(given)
        try:
            if out.exists() and p.exists() and os.path.samefile(p, out):
                return Path(given)
        except OSError:
            continue
    return None


def describe(path: str | os.PathLike, shown: int = 4) -> str:
    """What is at `path`, in a few words, for a message that refuses to replace it."""
    p = Path(path)
    if p.is_dir():
        names = sorted(c.name + ("/" if c.is_dir() else "") for c in p.iterdir())
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return f"a folder holding {', '.join(names[:shown])}{more}" if names else "an empty folder"
    with open(p, "rb") as fh:
        head = fh.read(4096)
    size = p.stat().st_size
    try:
        first = head.split(b"\n", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        first = None
    if first is None or "\x00" in first:
        return f"a binary file of {size:,} bytes"
    return f"a file of {size:,} bytes" + (f" starting {first[:60]!r}" if first.strip() else "")


def output_problem(output: str | os.PathLike, inputs=(), *, force: bool = False, ours=None,
                   option: str = "--out") -> str | None:
    """Why `output` must not be written, or None. Never when it is one of `inputs` (or a folder holding
    one): that is refused whatever `force` says. An existing output counts as the kit's when `ours(path)`
    says so (its manifest or journal of the same command); anything else is replaced only with `force`,
    and the message says what is there."""
    if clash := clashing_input(output, inputs):
        return (f"{option} {display_path(output)} is also an input ({display_path(clash)}); writing it would "
                f"destroy what the command reads: choose another path")
    p = Path(output)
    if force or not p.exists() or (p.is_dir() and not any(p.iterdir())) or (ours is not None and ours(p)):
        return None
    return (f"{option} {display_path(output)} exists and is not this command's output ({describe(p)}); "
            f"choose another path, or add --force to replace it")


def check_output(output, inputs=(), *, force: bool = False, ours=None, option: str = "--out") -> None:
    """`output_problem` as an OutputError."""
    if problem := output_problem(output, inputs, force=force, ours=ours, option=option):
        raise OutputError(problem)


# ---- a folder built beside its destination, put in place whole ---------------------------------------


def staging_path(dest: str | os.PathLike) -> Path:
    """Where the next version of the folder `dest` is built: hidden, beside it (same filesystem)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.partial")


def old_path(dest: Path) -> Path:
    """Where switch_folder keeps the previous folder while a two-rename swap is halfway (`.NAME.old`)."""
    return dest.with_name(f".{dest.name}.old")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # this filesystem or kernel cannot swap
        return False
    raise OSError(code, os.strerror(code), str(b))


def switch_folder(staging: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put the finished folder `staging` in place of `dest`, whole: a reader (or a kill) sees the old
    complete folder or the new one. Where the system cannot swap in one step, `dest` moves aside to
    `.NAME.old` first and `recover_folder` completes a switch cut short between the two renames."""
    staging, dest = Path(staging), Path(dest)
    for file in staging.rglob("*"):
        if file.is_file():
            fsync_file(file)
    if dest.exists() and _exchange(staging, dest):
        shutil.rmtree(staging)  # the old folder, now under the staging name
    else:
        old = old_path(dest)
        if dest.exists():
            os.replace(dest, old)
        os.replace(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
    fsync_file(dest.parent)
    return dest


def recover_folder(dest: str | os.PathLike, complete) -> None:
    """Finish or undo a `switch_folder` that a kill cut short: with `dest` gone, the staging folder goes in
    if `complete(staging)` (it was finished), else the old folder comes back; a leftover old one goes."""
    dest = Path(dest)
    old, staging = old_path(dest), staging_path(dest)
    if old.exists() and not dest.exists():
        os.replace(staging if staging.is_dir() and complete(staging) else old, dest)
    shutil.rmtree(old, ignore_errors=True)
