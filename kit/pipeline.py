"""The batch pipeline: `python -m kit run` (kit.commands.run) executes notebooks/NN_*.ipynb in order with papermill.

Every run gets its own folder, runs/<run-id>/, holding the executed notebooks, everything they wrote
and one manifest.json. Each notebook is handed its `run_dir` plus the parameters its `parameters` cell
declares, layered from low to high precedence:

    preset (kit/presets/<name>.yaml)  <  -f params.yaml files, in order  <  -p NAME=VALUE

A preset or params file is YAML: a key `NN` or `NN_name` holds that notebook's own parameters; any
other key applies to every notebook that declares it (so `seed: 7` reaches them all). -p does the same.
A name no notebook declares is an error listing the valid names, so a typo never runs silently.

Re-running a run id resumes: a notebook that already succeeded there with the same parameters, the
same notebook file and the same kit/knowledge sources is reused, not re-executed; once one notebook
re-executes, every later one does too (its inputs may have changed; `--only` marks the later ones it
leaves out as stale). Generation is cached by the kit, so re-executed notebooks pay nothing twice.
A resume with other options (preset, -f, -p) says what changed, and the manifest keeps every
invocation; every hint to resume repeats the whole command line.

Everything is checked before the run folder is made: the run id (a whole-string match: no newline),
the preset (a name from kit/presets/, never a path), each parameter's type against its notebook's
default (text stays text; `endpoint` is a URL or a list of them), and the endpoints themselves.

`--in-place` re-executes notebooks/ itself with its default parameters (`make notebooks`), so the
outputs committed with the notebooks stay in step with the code.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from kit.locking import exclusive
from kit.manifest import now_iso, read_manifest, write_manifest
from kit.secrets import scrub_text, secret_values
from kit.paths import (PACKAGE_DIR, BoundedLoader, TooDeep, atomic_write, display_path, knowledge_dir, project_root,
                       runs_dir)
from kit.progress import no_progress_bars

PRESETS_DIR = PACKAGE_DIR / "presets"
KERNEL = "python3"  # jupyter_client launches a "python3" spec with the current interpreter
# what the committed notebooks name: the kernel `make lab` installs, so JupyterLab opens them with the venv
COMMITTED_KERNELSPEC = {"name": "kit", "display_name": "Python (kit)", "language": "python"}
# The kernel's own log goes to this terminal: its warning about unencrypted TCP (it listens on loopback
# only) would print once per notebook, and after Ctrl-C it logs tracebacks about the sockets being closed
# under it. Errors in cells are reported from the notebook itself, a dying kernel by nbclient.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
MANIFEST = "manifest.json"
INTERACTIVE_RUN_ID = "interactive"  # the notebooks' default run_dir is runs/interactive
EMBEDDED = "embedded llama.cpp server on loopback"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: `$` would let a trailing newline through
_NOTEBOOK_KEY = re.compile(r"\d\d(_\w+)?")
_URL_LISTS = {"endpoint"}  # text parameters that may also be a list of texts (endpoints used round-robin)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Types papermill can write into a parameters cell as Python literals.
_LITERAL_TYPES = (str, int, float, bool, type(None), list, dict)


class _Loader(BoundedLoader):
    """YAML as people write it for ML: PyYAML (YAML 1.1) reads 1e-3 as a string; this reads a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


class PipelineError(Exception):
    """Bad input to the pipeline (parameters, presets, run id): the message says what and where."""


@dataclass
class NotebookFailed(Exception):
    """A notebook raised: which one, which cell, what, and where the partly executed copy is."""

    notebook: str
    output: Path
    cell: str
    error: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.notebook} failed at {self.cell}: {self.error}"


@dataclass
class Notebook:
    name: str  # file stem, e.g. "03_data_quality"
    path: Path
    declared: dict[str, Any]  # parameter name -> default value, from the `parameters` cell

    @property
    def number(self) -> str:
        return self.name[:2]


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str  # "ok" or "failed"
    steps: list[dict]
    manifest_path: Path
    failure: NotebookFailed | None = None
    secret_hits: list[str] = field(default_factory=list)
    command: str = ""  # the command line that resumes this run

    @property
    def resume(self) -> str:
        return self.command or f"python -m kit run --run-id {self.run_id}"


# ---------------------------------------------------------------- notebooks and parameters

def find_notebooks(notebooks_dir: Path) -> list[Notebook]:
    """The ordered notebooks of a folder and the parameters each declares."""
    import papermill

    paths = sorted(Path(notebooks_dir).glob(NOTEBOOK_GLOB))
    if not paths:
        raise PipelineError(f"no notebooks matching {NOTEBOOK_GLOB} in {notebooks_dir}")
    notebooks = []
    for path in paths:
        declared = {name: _literal(info.get("default")) for name, info in papermill.inspect_notebook(str(path)).items()}
        if "run_dir" not in declared:
            raise PipelineError(f"{path}: the cell tagged `parameters` must define run_dir")
        notebooks.append(Notebook(path.stem, path, declared))
    return notebooks


def _literal(source: str | None) -> Any:
    """A default as papermill reports it (the source text, e.g. '""') as its Python value."""
    try:
        return ast.literal_eval(source) if source is not None else None
    except (ValueError, SyntaxError):
        return source  # an expression, not a literal: keep its text for display


def parse_value(text: str) -> Any:
    """A -p value as a YAML scalar: 3 -> int, 0.5 -> float, true -> bool, null -> None, else the string."""
    if text == "":
        return ""  # `-p endpoint=` means "empty", i.e. the embedded model
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    except TooDeep as exc:
        raise PipelineError(str(exc)) from None
    return value if isinstance(value, _LITERAL_TYPES) else text  # e.g. dates stay strings


def parse_assignments(items: list[str]) -> dict[str, Any]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise PipelineError(f"-p {item!r}: expected NAME=VALUE, e.g. -p num=20")
        try:
            params[name] = parse_value(value)
        except PipelineError as exc:
            raise PipelineError(f"-p {name}: {exc}") from None
    return params


def load_yaml_params(path: Path) -> dict:
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not a text file (byte 0x{exc.object[exc.start]:02x} is not UTF-8)") from None
    except (yaml.YAMLError, TooDeep) as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping of parameters, got {type(data).__name__}")
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict:
    """A preset by name; a path is no name (a params file goes with -f), so no YAML elsewhere is read."""
    if name not in preset_names():
        raise PipelineError(f"unknown preset {name!r}; presets: {', '.join(preset_names())} "
                            f"(a file of parameters goes with -f)")
    return load_yaml_params(PRESETS_DIR / f"{name}.yaml")


def parameter_layers(preset: str | None, params_files=(), overrides: dict | None = None) -> list[tuple[str, dict]]:
    """(source, mapping) pairs in increasing precedence: preset, each -f file, then -p."""
    layers = [(f"preset {preset!r}", load_preset(preset))] if preset else []
    layers += [(str(f), load_yaml_params(Path(f))) for f in params_files]
    return layers + [("-p", overrides or {})]


def _notebook_for(key: str, notebooks: list[Notebook], source: str) -> Notebook:
    key = str(key)
    for nb in notebooks:
        if key in (nb.number, nb.name):
            return nb
    names = ", ".join(nb.name for nb in notebooks)
    raise PipelineError(f"{source}: section {key!r} names no notebook; notebooks: {names}")


def _check_type(nb: Notebook, name: str, value: Any, source: str) -> None:
    """A number, flag or list parameter must get one, before any notebook spends time (or API calls)."""
    default = nb.declared[name]
    if default is None or value is None:
        return  # no default to compare with, or null ("not set", e.g. cpu_threads: chosen at run time)
    if isinstance(default, str):
        if isinstance(value, str) or (name in _URL_LISTS and isinstance(value, list) and value
                                      and all(isinstance(v, str) for v in value)):
            return
        expected = "text or a list of texts" if name in _URL_LISTS else "text"
        raise PipelineError(f"{source}: {name}={value!r} for {nb.name}: expected {expected} like its default "
                            f"{default!r} (YAML read a {type(value).__name__}; quote it to pass text)")
    kinds = (int, float) if type(default) is float else (type(default),)
    if type(value) not in kinds:
        raise PipelineError(f"{source}: {name}={value!r} for {nb.name}: expected {type(default).__name__} "
                            f"like its default {default!r}")


def _check_declared(names, declared: set[str], source: str, where: str) -> None:
    for name in names:
        if name == "run_dir":
            raise PipelineError(f"{source}: run_dir is set by the pipeline (choose it with --run-id)")
        if name not in declared:
            raise PipelineError(f"{source}: unknown parameter {name!r} {where}; "
                                f"valid: {', '.join(sorted(declared - {'run_dir'}))}")


def resolve_parameters(notebooks: list[Notebook], layers: list[tuple[str, dict]]) -> dict[str, dict]:
    """Per notebook, the parameters to hand it (run_dir excluded), from layers of increasing precedence.

    Each layer is (source name for errors, mapping); see the module docstring for the mapping's shape.
    Only parameters a notebook declares reach it; a name that no notebook declares is an error."""
    declared_anywhere = {name for nb in notebooks for name in nb.declared}
    params: dict[str, dict] = {nb.name: {} for nb in notebooks}
    for source, layer in layers:
        # YAML reads a section key `05` as the number 5
        layer = {(f"{k:02d}" if isinstance(k, int) and not isinstance(k, bool) else k): v for k, v in layer.items()}
        common = {k: v for k, v in layer.items() if not _NOTEBOOK_KEY.fullmatch(str(k))}
        _check_declared(common, declared_anywhere, source, "(declared by no notebook)")
        for nb in notebooks:
            mine = {k: v for k, v in common.items() if k in nb.declared}
            for name, value in mine.items():
                _check_type(nb, name, value, source)
            params[nb.name].update(mine)
        for key, section in layer.items():
            if not _NOTEBOOK_KEY.fullmatch(str(key)):
                continue
            nb = _notebook_for(key, notebooks, source)
            if not isinstance(section, dict):
                raise PipelineError(f"{source}: section {key!r} must be a mapping of parameters")
            _check_declared(section, set(nb.declared), source, f"for {nb.name}")
            for name, value in section.items():
                _check_type(nb, name, value, source)
            params[nb.name].update(section)
    return params


def select(notebooks: list[Notebook], only: list[str] | None) -> list[Notebook]:
    if not only:
        return notebooks
    return [_notebook_for(key, notebooks, "--only") for key in dict.fromkeys(k.zfill(2) if k.isdigit() else k
                                                                             for k in only)]


# ---------------------------------------------------------------- run folder bookkeeping

def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _sources_digest() -> str:
    """What the notebooks' results depend on besides their own file and parameters: kit and knowledge/."""
    h = hashlib.sha256()
    for root, pattern in ((PACKAGE_DIR, "*.py"), (knowledge_dir(), "*")):
        for path in sorted(p for p in root.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def fingerprint(nb: Notebook, params: dict, sources: str) -> str:
    h = hashlib.sha256(nb.path.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(sources.encode())
    return h.hexdigest()[:16]


def _with_llm(nb: Notebook, params: dict[str, dict]) -> dict:
    """A notebook's parameters plus, for one that talks to an LLM, which server and model (set in the
    environment, not as parameters): resuming after pointing the kit at another model redoes its work."""
    llm = describe_llm([nb], params)
    return {**params[nb.name], "(llm)": llm} if llm else params[nb.name]


def list_artifacts(run_dir: Path) -> list[dict]:
    return [{"path": p.relative_to(run_dir).as_posix(), "bytes": p.stat().st_size}
            for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != MANIFEST]


def find_secrets(run_dir: Path, secrets: list[str]) -> list[str]:
    """Relative paths of files under run_dir containing any of the secret values."""
    needles = [s.encode() for s in secrets if s]
    return [p.relative_to(run_dir).as_posix() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and needles and any(n in p.read_bytes() for n in needles)]


def describe_llm(notebooks: list[Notebook], params: dict[str, dict]) -> list[dict]:
    """Which server(s) and model the LLM notebooks (those declaring endpoint/model) talk to; never the key."""
    from kit.llm.endpoints import endpoints_from_env

    described: list[dict] = []
    for nb in notebooks:
        if "endpoint" not in nb.declared and "model" not in nb.declared:
            continue
        effective = {**nb.declared, **params[nb.name]}
        try:
            eps = endpoints_from_env(effective.get("endpoint") or None, effective.get("model") or None)
        except ValueError as exc:  # a URL that is not one: refused before any notebook runs
            raise PipelineError(f"{nb.name}: {exc}") from None
        for entry in ([{"base_url": e.base_url, "model": e.model or "(the server's only model)"} for e in eps]
                      or [{"base_url": EMBEDDED, "model": "SmolLM2-135M-Instruct"}]):
            if entry not in described:
                described.append(entry)
    return described


# ---------------------------------------------------------------- execution

def _cell_label(exec_count: int | None, index: int, source: str) -> str:
    """How a user finds a cell in JupyterLab: its In [n] count (else its position) and its first line."""
    first_line = next((line for line in source.splitlines() if line.strip()), "")
    return f"{f'In [{exec_count}]' if exec_count else f'cell #{index + 1}'} `{first_line[:80]}`"


def _cell_running_when_stopped(output: Path) -> str:
    """For a kernel that died or a cell that timed out: the last cell papermill started."""
    import nbformat

    try:
        nb = nbformat.read(output, as_version=4)
    except (OSError, ValueError):
        return "an unknown cell"
    started = [(i, c) for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return "an unknown cell"
    index, cell = started[-1]
    return _cell_label(cell.get("execution_count"), index, cell.source)


def _failure_from(exc: BaseException, nb: Notebook, output: Path) -> NotebookFailed:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        traceback = _ANSI.sub("", "\n".join(exc.traceback))
        return NotebookFailed(nb.name, output, _cell_label(exc.exec_count, exc.cell_index, exc.source),
                              f"{exc.ename}: {exc.evalue}", traceback)
    # the kernel died, a cell timed out, no kernel could start: no error output in a cell
    return NotebookFailed(nb.name, output, _cell_running_when_stopped(output), f"{type(exc).__name__}: {exc}")


def execute(nb: Notebook, output: Path, parameters: dict) -> None:
    """Run one notebook into `output`; its outputs are scrubbed of secrets afterwards, whatever happened
    (a cell's error text may quote a server's reply that echoed the key)."""
    import papermill

    try:
        with no_progress_bars():
            papermill.execute_notebook(
                str(nb.path), str(output), parameters=parameters, kernel_name=KERNEL,
                cwd=str(nb.path.parent),  # as in JupyterLab and nbval; kit.paths.resolve makes paths agree
                progress_bar=False, log_output=False, request_save_on_cell_execute=True,
                extra_arguments=KERNEL_ARGS,
            )
    finally:
        scrub_file(output)


def scrub_file(path: Path) -> None:
    """Rewrite a text file without the secrets in it (kit.secrets), atomically; untouched when clean."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    clean = scrub_text(text)
    if clean != text:
        with atomic_write(path) as tmp:
            tmp.write_text(clean, encoding="utf-8")


def run_pipeline(*, preset: str | None = "smoke", params_files: list[Path] = (), overrides: dict | None = None,
                 run_id: str | None = None, only: list[str] | None = None,
                 notebooks_dir: Path | None = None, runs_root: Path | None = None, echo=print,
                 command: str | None = None) -> RunResult:
    """Execute the notebooks into runs_root/run_id and write its manifest. Raises PipelineError on bad
    input before anything runs (and before the run folder is made); a failing notebook is reported in
    the result, not raised. `command` is the command line that repeats this run (for resume hints)."""
    notebooks_dir = Path(notebooks_dir or project_root() / "notebooks")
    run_id = run_id or new_run_id()
    if not _RUN_ID.fullmatch(run_id):
        raise PipelineError(f"--run-id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    notebooks = find_notebooks(notebooks_dir)
    layers = parameter_layers(preset, params_files, overrides)
    selected = select(notebooks, only)
    params = resolve_parameters(notebooks, layers)  # checked against all, so presets work with --only
    llm = describe_llm(selected, params)  # a bad endpoint is refused here, before the run folder exists

    run_dir = Path(runs_root or runs_dir()).resolve() / run_id
    options = {"preset": preset, "params_files": [str(f) for f in params_files], "overrides": overrides or {},
               "only": [nb.name for nb in selected] if only else None,
               "command": command or f"python -m kit run --run-id {run_id}"}
    with exclusive(run_dir):  # one pipeline per run folder
        return _run_locked(run_dir, run_id, options, notebooks_dir, notebooks, selected, params, llm, echo)


def option_changes(before: dict, options: dict) -> list[str]:
    """What differs between the options a run folder's manifest records and this invocation's."""
    if not before:
        return []
    changes = []
    if before.get("preset") != options["preset"]:
        changes.append(f"preset {before.get('preset')!r} -> {options['preset']!r}")
    if before.get("params_files", []) != options["params_files"]:
        changes.append(f"-f {before.get('params_files', [])} -> {options['params_files']}")
    old, new = before.get("overrides") or {}, options["overrides"]
    for name in sorted(set(old) | set(new)):
        if old.get(name, "(unset)") != new.get(name, "(unset)"):
            changes.append(f"-p {name}: {old.get(name, '(unset)')!r} -> {new.get(name, '(unset)')!r}")
    return changes


def _run_locked(run_dir: Path, run_id: str, options: dict, notebooks_dir: Path, notebooks: list[Notebook],
                selected: list[Notebook], params: dict[str, dict], llm: list[dict], echo) -> RunResult:
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = run_dir / MANIFEST
    before_run = read_manifest(manifest_path) if manifest_path.exists() else {}
    previous = {s["notebook"]: s for s in before_run.get("steps", [])}
    if changes := option_changes(before_run, options):
        echo(f"run {run_id} was last run with other options: {'; '.join(changes)}. Notebooks whose parameters "
             f"changed run again; manifest.json keeps every invocation.")
    sources = _sources_digest()
    started = now_iso()
    manifest = {
        "kind": "kit pipeline run",
        "run_id": run_id,
        "run_dir": str(run_dir),
        **options,
        "notebooks_dir": str(notebooks_dir),
        # every parameter each notebook ran with, its own defaults included (kept for notebooks --only leaves out)
        "parameters": {**before_run.get("parameters", {}),
                       **{nb.name: {**nb.declared, "run_dir": str(run_dir), **params[nb.name]} for nb in selected}},
        "llm": llm,
        "invocations": [*before_run.get("invocations", []), {"started_at": started, **options}],
        "status": "running",
        "started_at": started,
        "steps": [],
    }
    steps = {nb.name: previous.get(nb.name, {"notebook": nb.name, "status": "not selected"}) for nb in notebooks}
    for nb in selected:
        steps[nb.name] = {"notebook": nb.name, "output": f"notebooks/{nb.name}.ipynb", "status": "pending",
                          "fingerprint": fingerprint(nb, _with_llm(nb, params), sources)}

    def save(status: str) -> None:
        manifest.update(status=status, steps=list(steps.values()), artifacts=list_artifacts(run_dir))
        if status != "running":
            manifest["finished_at"] = now_iso()
        write_manifest(manifest_path, manifest)

    save("running")
    failure = None
    rerun_from_here = bool(options["only"])  # --only means "execute these", never reuse
    t_run = time.monotonic()
    for i, nb in enumerate(selected, 1):
        step, output = steps[nb.name], out_dir / f"{nb.name}.ipynb"
        before = previous.get(nb.name, {})
        label = f"[{i}/{len(selected)}] {nb.name}"
        if (not rerun_from_here and before.get("status") in ("ok", "reused")
                and before.get("fingerprint") == step["fingerprint"] and output.exists()):
            step.update(status="reused", duration_s=before.get("duration_s"), started_at=before.get("started_at"))
            echo(f"{label:<40} reused (already done with these parameters)")
            save("running")
            continue
        rerun_from_here = True
        step.update(status="running", started_at=now_iso())
        save("running")
        echo(f"{label:<40} running ...", end="", flush=True)
        t0 = time.monotonic()
        try:
            execute(nb, output, {"run_dir": str(run_dir), **params[nb.name]})
        except KeyboardInterrupt:
            step.update(status="interrupted", duration_s=round(time.monotonic() - t0, 2))
            save("interrupted")
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then reported
            failure = _failure_from(exc, nb, output)
            step.update(status="failed", duration_s=round(time.monotonic() - t0, 2),
                        error={"cell": failure.cell, "error": failure.error})
            echo(f" failed after {step['duration_s']:.1f} s")
            break
        step.update(status="ok", duration_s=round(time.monotonic() - t0, 2))
        for later in notebooks[notebooks.index(nb) + 1:]:  # --only may skip notebooks that read our output
            if later not in selected and steps[later.name]["status"] in ("ok", "reused"):
                steps[later.name]["status"] = "stale"
        echo(f" ok {step['duration_s']:.1f} s")
    manifest["duration_s"] = round(time.monotonic() - t_run, 2)

    secret_hits = find_secrets(run_dir, secret_values())
    if secret_hits:
        manifest["secret_check"] = {"status": "failed", "files": secret_hits}
    save("failed" if failure or secret_hits else "ok")
    return RunResult(run_id, run_dir, "failed" if failure or secret_hits else "ok",
                     list(steps.values()), manifest_path, failure, secret_hits, options["command"])


def refresh_in_place(notebooks_dir: Path | None = None, only: list[str] | None = None, echo=print) -> int:
    """Re-execute notebooks/ in place with their defaults, so the committed outputs match the code.
    A notebook that fails is left as it was (its committed outputs stay readable); returns #failures."""
    import nbclient
    import nbformat

    notebooks_dir = Path(notebooks_dir or project_root() / "notebooks")
    failures = 0
    for nb in select(find_notebooks(notebooks_dir), only):
        echo(f"{nb.name:<32} running ...", end="", flush=True)
        t0 = time.monotonic()
        doc = nbformat.read(nb.path, as_version=4)
        doc.metadata.pop("widgets", None)  # widget state of an earlier run; this run stores its own, if any
        client = nbclient.NotebookClient(doc, kernel_name=KERNEL, record_timing=False, extra_arguments=KERNEL_ARGS,
                                         resources={"metadata": {"path": str(notebooks_dir)}})
        try:
            with no_progress_bars():
                client.execute()
        except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
            failures += 1
            echo(f" FAILED, left unchanged: {_ANSI.sub('', str(exc)).strip().splitlines()[-1]}")
            continue
        doc.metadata["kernelspec"] = dict(COMMITTED_KERNELSPEC)
        nbformat.write(doc, nb.path)
        echo(f" ok {time.monotonic() - t0:.1f} s")
    return failures


# ---------------------------------------------------------------- what a run reports

def failure_message(result: RunResult) -> str:
    """One paragraph per problem: what failed, where the evidence is, how to go on; a leak notice is
    never hidden behind a notebook failure. Secrets are cut out of the notebook's error text."""
    where = display_path(result.run_dir)
    parts = []
    if result.failure:
        f = result.failure
        parts.append(f"kit run: notebook {f.notebook} failed at {f.cell} with {scrub_text(f.error)}. The partly "
                     f"executed notebook is kept at {display_path(f.output)}; "
                     f"later notebooks were not run and {where}/{MANIFEST} records the status. Fix the cause and "
                     f"resume with `{result.resume}` (finished notebooks are reused).")
    if result.secret_hits:
        parts.append(f"kit run: SECRET LEAK: an API key from the environment appears in "
                     f"{', '.join(result.secret_hits)} under {where}/. Delete those files before sharing the run, "
                     f"and report this as a bug: no key may ever be written to a run folder.")
    return "\n".join(parts)
