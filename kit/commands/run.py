"""`python -m kit run`: execute the notebooks in order with papermill into runs/<run-id>/ (kit.pipeline),
or re-execute notebooks/ in place (`--in-place`, `make notebooks`), or list what each would get (`--list`).
Every hint it prints repeats the whole command line, so a run is resumed as it was started."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys

from kit.locking import LockedError
from kit.paths import argument, display_path, project_root, runs_dir
from kit.pipeline import (INTERACTIVE_RUN_ID, Notebook, PipelineError, failure_message, find_notebooks, new_run_id,
                          parameter_layers, parse_assignments, preset_names, refresh_in_place, resolve_parameters,
                          run_pipeline, select)
from kit.commands.exits import fail


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kit run",
        description="Execute notebooks/NN_*.ipynb in order with papermill into runs/<run-id>/.",
        epilog="Precedence: preset < -f files < -p. Re-running a --run-id resumes: notebooks already done "
               "with the same parameters and code are reused.")
    p.add_argument("--preset", default="smoke", help=f"parameter preset (default: smoke; have: "
                                                     f"{', '.join(preset_names())})")
    p.add_argument("-p", dest="params", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter in every notebook that declares it (value read as YAML: 3, 0.5, true)")
    p.add_argument("-f", dest="files", action="append", default=[], type=argument, metavar="PARAMS.yaml",
                   help="YAML file of parameters, same shape as a preset")
    p.add_argument("--run-id", help="run folder name under runs/ (default: a timestamp); an existing one resumes")
    p.add_argument("--only", nargs="+", action="extend", metavar="NN", help="execute only these notebooks (e.g. --only 03 04)")
    p.add_argument("--list", action="store_true", help="show the notebooks and the parameters they would get")
    p.add_argument("--in-place", action="store_true",
                   help="re-execute notebooks/ in place with their default parameters, from an empty runs/interactive "
                        "(`make notebooks`)")
    return p


def _print_list(notebooks: list[Notebook], params: dict[str, dict]) -> None:
    for nb in notebooks:
        print(nb.name)
        for name, default in nb.declared.items():
            if name == "run_dir":
                continue
            if name in params[nb.name]:
                print(f"    {name} = {params[nb.name][name]!r}   (notebook default: {default!r})")
            else:
                print(f"    {name} = {default!r}")


def command_line(argv: list[str], run_id: str) -> str:
    """The whole command line that repeats (resumes) this run: the user's own, with the run id."""
    given = any(a == "--run-id" or a.startswith("--run-id=") for a in argv)
    return shlex.join(["python", "-m", "kit", "run", *argv, *([] if given else ["--run-id", run_id])])


def _without_only(argv: list[str]) -> list[str]:
    """argv less its --only selections (the command that runs every notebook, reusing finished ones)."""
    kept, skipping = [], False
    for arg in argv:
        if arg == "--only":
            skipping = True
            continue
        if skipping and not arg.startswith("-"):
            continue
        skipping = False
        if not arg.startswith("--only="):
            kept.append(arg)
    return kept


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    run_id = args.run_id or new_run_id()
    command = command_line(argv, run_id)
    try:
        if args.in_place:
            if not args.only:
                # The stored outputs should show a first run as a reader would see it (e.g. 02 generating,
                # then resuming), not a re-run over old results; runs/.cache keeps the LLM replies cheap.
                shutil.rmtree(runs_dir() / INTERACTIVE_RUN_ID, ignore_errors=True)
            return 1 if refresh_in_place(only=args.only) else 0
        overrides = parse_assignments(args.params)
        if args.list:
            notebooks = find_notebooks(project_root() / "notebooks")
            layers = parameter_layers(args.preset, args.files, overrides)
            _print_list(select(notebooks, args.only), resolve_parameters(notebooks, layers))
            return 0
        result = run_pipeline(preset=args.preset, params_files=args.files, overrides=overrides,
                              run_id=run_id, only=args.only, command=command)
    except (PipelineError, LockedError) as exc:
        return fail("run", str(exc), 2)
    except KeyboardInterrupt:
        print(f"\nkit run: interrupted; resume with `{command}`.", file=sys.stderr)
        return 130
    where = display_path(result.run_dir)
    if result.status != "ok":
        print(f"\n{failure_message(result)}", file=sys.stderr)
        return 1
    print(f"\nDone. Results are in {where}/ (manifest.json lists every file, parameters and timings).")
    unfinished = [f"{s['notebook']} ({s['status']})" for s in result.steps if s["status"] not in ("ok", "reused")]
    if unfinished:
        finish = command_line([a for a in _without_only(argv)], run_id)
        print(f"Not complete: {', '.join(unfinished)}; `{finish}` finishes it.")
    print(f"Open the executed notebooks in JupyterLab:  make lab OPEN={where}/notebooks")
    return 0
