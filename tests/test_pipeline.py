"""The papermill pipeline (`python -m kit run`): parameters, presets, resume, failures, secrets, and an
end-to-end smoke run over the real notebooks on the embedded model.

Most tests run tiny notebooks written into tmp_path, so they exercise real kernels and real papermill
in a few seconds; the end-to-end test runs notebooks/ itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ctrl_c import default_sigint

from kit import pipeline
from kit.commands import run as run_command
from kit.paths import project_root
from kit.pipeline import Notebook, PipelineError, parse_assignments, parse_value, resolve_parameters

NOTEBOOKS = project_root() / "notebooks"


# ---------------------------------------------------------------- parameters and presets

@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0.5", 0.5), ("1e-3", 0.001), ("-2E5", -200000.0), ("1.0e-3", 0.001), ("true", True), ("False", False),
    ("null", None), ("", ""), ("hello", "hello"), ("'07'", "07"), ("[1, 2]", [1, 2]),
    ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"), ("2024-01-02", "2024-01-02"), ("a: b: c", "a: b: c"),
])
def test_parse_value_reads_yaml_scalars(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_parse_assignments_keeps_everything_after_the_first_equals():
    assert parse_assignments(["num=20", "endpoint=", "expr=a=b"]) == {"num": 20, "endpoint": "", "expr": "a=b"}


@pytest.mark.parametrize("item", ["num", "=3", "not a name=3"])
def test_parse_assignments_rejects_malformed_items(item):
    with pytest.raises(PipelineError, match="NAME=VALUE"):
        parse_assignments([item])


def _nb(name: str, **declared) -> Notebook:
    return Notebook(name, Path(f"/nowhere/{name}.ipynb"), {"run_dir": "runs/interactive", **declared})


FAKE = [_nb("01_gen", num=4, seed=0, endpoint=""), _nb("02_train", steps=10, seed=0), _nb("03_plot")]


def test_layers_apply_in_order_and_only_to_declaring_notebooks():
    layers = [("preset", {"seed": 1, "02_train": {"steps": 100}}),
              ("params.yaml", {"num": 50, "02": {"steps": 200, "seed": 5}}),
              ("-p", {"seed": 9})]
    assert resolve_parameters(FAKE, layers) == {
        "01_gen": {"seed": 9, "num": 50}, "02_train": {"steps": 200, "seed": 9}, "03_plot": {}}


def test_a_later_common_value_beats_an_earlier_section():
    layers = [("preset", {"02_train": {"steps": 100}}), ("-p", {"steps": 3})]
    assert resolve_parameters(FAKE, layers)["02_train"] == {"steps": 3}


@pytest.mark.parametrize("layer, message", [
    ({"nmu": 3}, r"-p: unknown parameter 'nmu' \(declared by no notebook\); valid: endpoint, num, seed, steps$"),
    ({"02_train": {"num": 3}}, r"unknown parameter 'num' for 02_train; valid: seed, steps$"),
    ({"07": {"num": 3}}, r"section '07' names no notebook; notebooks: 01_gen, 02_train, 03_plot"),
    ({"02_train": 3}, r"section '02_train' must be a mapping"),
    ({"run_dir": "/tmp/x"}, r"run_dir is set by the pipeline \(choose it with --run-id\)"),
])
def test_bad_parameters_are_named_with_the_valid_choices(layer, message):
    with pytest.raises(PipelineError, match=message):
        resolve_parameters(FAKE, [("-p", layer)])


def test_a_params_file_may_name_sections_by_number(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seed: 3\n02:\n  steps: 1000\n1: {num: 8}\n")
    layer = pipeline.load_yaml_params(f)
    assert resolve_parameters(FAKE, [(str(f), layer)]) == {
        "01_gen": {"seed": 3, "num": 8}, "02_train": {"seed": 3, "steps": 1000}, "03_plot": {}}


@pytest.mark.parametrize("layer, message", [
    ({"seed": "notanumber"}, r"-p: seed='notanumber' for 01_gen: expected int like its default 0$"),
    ({"02": {"steps": 1e3}}, r"-p: steps=1000.0 for 02_train: expected int like its default 10$"),
    ({"num": True}, r"num=True for 01_gen: expected int"),  # a bool is not a count
])
def test_a_value_of_the_wrong_type_is_refused_before_anything_runs(layer, message):
    with pytest.raises(PipelineError, match=message):
        resolve_parameters(FAKE, [("-p", layer)])
    # a float takes an int, null means "not set", and an endpoint may be a list of URLs
    nbs = [_nb("01_gen", endpoint="", rate=0.5, limit=4)]
    assert resolve_parameters(nbs, [("-p", {"endpoint": ["http://a/v1", "http://b/v1"], "rate": 1, "limit": None})])[
        "01_gen"] == {"endpoint": ["http://a/v1", "http://b/v1"], "rate": 1, "limit": None}


@pytest.mark.parametrize("value", [8080, [1, 2], {"a": 1}, [], 0.5, True])
def test_text_parameters_take_text_only_and_endpoint_a_list_of_urls(value):
    """Issue 21 (5): `-p endpoint=8080` (YAML reads a number) or `-p endpoint=[1, 2]` ran and failed deep in
    the endpoint code with a TypeError, after the run folder was made; now refused with the parameter named."""
    nbs = [_nb("01_gen", endpoint="", recipe="v2")]
    with pytest.raises(PipelineError, match=r"endpoint=.* for 01_gen: expected text or a list of texts .*quote it"):
        resolve_parameters(nbs, [("-p", {"endpoint": value})])
    with pytest.raises(PipelineError, match=r"recipe=.* for 01_gen: expected text like its default 'v2'"):
        resolve_parameters(nbs, [("-p", {"recipe": value})])


def test_params_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("num: [1, 2\n")
    with pytest.raises(PipelineError, match=r"bad.yaml: not valid YAML"):
        pipeline.load_yaml_params(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(PipelineError, match=r"bad.yaml: expected a mapping of parameters, got list"):
        pipeline.load_yaml_params(bad)
    with pytest.raises(PipelineError, match=r"missing.yaml: cannot read"):
        pipeline.load_yaml_params(tmp_path / "missing.yaml")
    bad.write_bytes(b"\x00\x01\xff\xfe")
    with pytest.raises(PipelineError, match=r"bad.yaml: not a text file \(byte 0xff is not UTF-8\)"):
        pipeline.load_yaml_params(bad)


def test_the_manifest_names_the_llm_server_but_never_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-to-be-shown-0123456789")
    for name in ("OPENAI_BASE_URL", "OPENROUTER_API_KEY", "OPENAI_MODEL", "KIT_MODEL"):
        monkeypatch.setenv(name, "")
    params = {"01_gen": {"endpoint": "http://127.0.0.1:9/v1", "model": "m"}, "02_train": {}, "03_plot": {}}
    assert pipeline.describe_llm(FAKE, params) == [{"base_url": "http://127.0.0.1:9/v1", "model": "m"}]
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert pipeline.describe_llm(FAKE, {n: {} for n in params}) == [
        {"base_url": pipeline.EMBEDDED, "model": "SmolLM2-135M-Instruct"}]


def test_unknown_preset_lists_the_presets():
    with pytest.raises(PipelineError, match=r"unknown preset 'tiny'; presets: full, smoke"):
        pipeline.load_preset("tiny")


def test_only_selects_by_number_or_name():
    assert [nb.name for nb in pipeline.select(FAKE, ["3", "01_gen"])] == ["03_plot", "01_gen"]
    assert run_command.parser().parse_args(["--only", "02", "--only", "03", "04"]).only == ["02", "03", "04"]
    with pytest.raises(PipelineError, match="--only: section '09'"):
        pipeline.select(FAKE, ["9"])


@pytest.mark.parametrize("preset", ["smoke", "full"])
def test_presets_fit_the_real_notebooks(preset):
    """Every parameter a preset sets is declared by the notebook it targets (catches drift early)."""
    notebooks = pipeline.find_notebooks(NOTEBOOKS)
    params = resolve_parameters(notebooks, [(preset, pipeline.load_preset(preset))])
    assert set(params) == {nb.name for nb in notebooks}


def test_the_params_file_example_in_the_readme_is_valid():
    import re

    import yaml

    text = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```yaml\n(.*?)```", text, re.S)
    params = resolve_parameters(pipeline.find_notebooks(NOTEBOOKS), [("README", yaml.safe_load(example))])
    assert params["05_midtrain_smoke"]["steps"] == 300


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob(pipeline.NOTEBOOK_GLOB)), ids=lambda p: p.stem)
def test_committed_notebooks_are_executed_and_follow_the_conventions(path):
    """nbval only compares cells that were run when the notebook was saved: an unexecuted notebook
    would pass while checking nothing (`make notebooks` stores fresh outputs)."""
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec == pipeline.COMMITTED_KERNELSPEC  # the kernel `make lab` installs
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.metadata.get("tags", []).count("parameters") for c in code[:1]] == [1], "cell 2 is `parameters`"
    assert 'run_dir = "runs/interactive"' in code[0].source
    unrun = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None]
    assert unrun == [], f"cells {unrun} have no stored outputs: run `make notebooks`"
    assert not any("asyncio.run(" in c.source for c in code), "use kit's sync entry points (run_sync)"
    blind = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs
             if "<Figure size" in str(o.get("data", {}).get("text/plain", "")) and "image/png" not in o.get("data", {})]
    assert blind == [], f"cells {blind} show a figure as text, not an image (is `%matplotlib inline` on?)"
    frozen = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs
              if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert frozen == [] and "widgets" not in nb.metadata, \
        f"cells {frozen} store a progress widget, which shows 0% forever (see kit.progress)"


def test_progress_bars_are_off_in_kernels_the_pipeline_starts(monkeypatch):
    from kit.progress import QUIET_ENV, no_progress_bars, progress_bar

    monkeypatch.delenv(QUIET_ENV, raising=False)
    assert not progress_bar(total=1).disable
    with no_progress_bars():
        assert os.environ[QUIET_ENV] == "1" and progress_bar(total=1).disable
    assert QUIET_ENV not in os.environ


def test_cli_rejects_an_unknown_parameter_before_running_anything(capsys):
    assert run_command.main(["-p", "no_such_parameter=1", "--run-id", "never-made"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kit run: -p: unknown parameter 'no_such_parameter'") and "valid: " in err
    assert "Traceback" not in err and not (project_root() / "runs" / "never-made").exists()


# ---------------------------------------------------------------- tiny notebooks, real kernels

def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


SETUP = "import json, os, sys, kit.paths\nrun_dir = kit.paths.resolve(run_dir)\nrun_dir.mkdir(parents=True, exist_ok=True)"


@pytest.fixture
def tiny(tmp_path):
    """Two chained notebooks: 01 writes made.json, 02 reads it and doubles n in async code via run_sync."""
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_make.ipynb", 'run_dir = "runs/interactive"\nn = 2\nlabel = "tiny"\n', SETUP,
                   '(run_dir / "made.json").write_text(json.dumps({"n": n, "python": sys.executable}))')
    write_notebook(folder / "02_use.ipynb", 'run_dir = "runs/interactive"\n', SETUP,
                   "import asyncio\nfrom kit.llm.client import run_sync\n"
                   "async def double(x):\n    await asyncio.sleep(0.01)\n    return 2 * x",
                   'made = json.loads((run_dir / "made.json").read_text())\n'
                   '(run_dir / "used.json").write_text(json.dumps({"doubled": run_sync(double(made["n"]))}))')
    return folder


def run(folder, tmp_path, **kw):
    lines = []
    result = pipeline.run_pipeline(preset=None, notebooks_dir=folder, runs_root=tmp_path / "runs",
                                   run_id="r1", echo=lambda *a, **k: lines.append(" ".join(map(str, a))), **kw)
    return result, json.loads(result.manifest_path.read_text())


def test_a_run_executes_in_order_records_everything_and_resumes(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "_sources_digest", lambda: "pinned")  # others may edit kit/ meanwhile
    result, manifest = run(tiny, tmp_path, overrides={"n": 5})
    assert result.status == "ok" and manifest["status"] == "ok"
    run_dir = tmp_path / "runs" / "r1"
    made = json.loads((run_dir / "made.json").read_text())
    assert made["n"] == 5
    assert os.path.realpath(made["python"]) == os.path.realpath(sys.executable)  # the kernel is this venv's
    assert json.loads((run_dir / "used.json").read_text()) == {"doubled": 10}  # async code without asyncio.run
    assert manifest["parameters"]["01_make"] == {"run_dir": str(run_dir), "n": 5, "label": "tiny"}  # defaults too
    assert manifest["parameters"]["02_use"] == {"run_dir": str(run_dir)}  # n is not declared there
    assert [(s["notebook"], s["status"]) for s in manifest["steps"]] == [("01_make", "ok"), ("02_use", "ok")]
    artifacts = {a["path"]: a["bytes"] for a in manifest["artifacts"]}
    assert {"made.json", "used.json", "notebooks/01_make.ipynb", "notebooks/02_use.ipynb"} <= set(artifacts)
    assert all((run_dir / p).stat().st_size == size for p, size in artifacts.items())
    assert "git_commit" in manifest["environment"] and manifest["run_id"] == "r1"
    executed = nbformat.read(run_dir / "notebooks" / "01_make.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

    # resume: same parameters and code -> nothing executes
    _, manifest = run(tiny, tmp_path, overrides={"n": 5})
    assert [s["status"] for s in manifest["steps"]] == ["reused", "reused"]
    # 01 changes, so 02 must run again too (its input changed)
    _, manifest = run(tiny, tmp_path, overrides={"n": 7})
    assert [s["status"] for s in manifest["steps"]] == ["ok", "ok"]
    assert json.loads((run_dir / "used.json").read_text()) == {"doubled": 14}
    # --only always executes what it names, and marks the later notebooks it left out as stale ...
    used_before = (run_dir / "used.json").stat().st_mtime_ns
    _, manifest = run(tiny, tmp_path, overrides={"n": 7}, only=["1"])
    assert manifest["only"] == ["01_make"] and (run_dir / "used.json").stat().st_mtime_ns == used_before
    assert [s["status"] for s in manifest["steps"]] == ["ok", "stale"]
    assert set(manifest["parameters"]) == {"01_make", "02_use"}
    # ... so the next full run reuses 01 but re-executes 02
    _, manifest = run(tiny, tmp_path, overrides={"n": 7})
    assert [s["status"] for s in manifest["steps"]] == ["reused", "ok"]


def test_the_fingerprint_covers_notebook_parameters_and_sources(tmp_path):
    nb = Notebook("01_x", write_notebook(tmp_path / "01_x.ipynb", 'run_dir = "x"'), {"run_dir": "x"})
    base = pipeline.fingerprint(nb, {"n": 1}, "src")
    assert base == pipeline.fingerprint(nb, {"n": 1}, "src")
    assert base != pipeline.fingerprint(nb, {"n": 2}, "src") != pipeline.fingerprint(nb, {"n": 1}, "src2")
    write_notebook(nb.path, 'run_dir = "x"', "print(1)")
    assert base != pipeline.fingerprint(nb, {"n": 1}, "src")


def test_resuming_after_pointing_at_another_model_redoes_the_llm_notebooks(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "_sources_digest", lambda: "pinned")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gpu1:8000/v1")
    monkeypatch.setenv("OPENAI_MODEL", "small")
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_ask.ipynb", 'run_dir = "x"\nendpoint = ""', SETUP)
    write_notebook(folder / "02_after.ipynb", 'run_dir = "x"', SETUP)
    assert [s["status"] for s in run(folder, tmp_path)[1]["steps"]] == ["ok", "ok"]
    assert [s["status"] for s in run(folder, tmp_path)[1]["steps"]] == ["reused", "reused"]
    monkeypatch.setenv("OPENAI_MODEL", "large")
    _, manifest = run(folder, tmp_path)
    assert [s["status"] for s in manifest["steps"]] == ["ok", "ok"]  # 02 reads what 01 made with the new model
    assert manifest["llm"] == [{"base_url": "http://gpu1:8000/v1", "model": "large"}]


def test_a_failing_notebook_stops_the_run_names_the_cell_and_keeps_the_partial_notebook(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_ok.ipynb", 'run_dir = "x"', SETUP)
    write_notebook(folder / "02_fail.ipynb", 'run_dir = "x"\nlimit = 3', SETUP, 'print("before the error")',
                   'if limit < 5:\n    raise ValueError(f"limit {limit} is below 5")', 'print("never")')
    write_notebook(folder / "03_never.ipynb", 'run_dir = "x"', SETUP)
    result, manifest = run(folder, tmp_path)
    f = result.failure
    assert result.status == "failed" and manifest["status"] == "failed"
    assert (f.notebook, f.error) == ("02_fail", "ValueError: limit 3 is below 5")
    # In [5]: papermill adds a cell after `parameters`, and the kept notebook shows these counts
    assert f.cell == "In [5] `if limit < 5:`" and "ValueError" in f.traceback
    assert [s["status"] for s in manifest["steps"]] == ["ok", "failed", "pending"]
    assert manifest["steps"][1]["error"] == {"cell": f.cell, "error": f.error}
    partial = nbformat.read(f.output, as_version=4)
    texts = [o.get("text", "") for c in partial.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert "before the error\n" in texts and "never\n" not in texts
    assert not (tmp_path / "runs/r1/notebooks/03_never.ipynb").exists()
    message = pipeline.failure_message(result)
    assert "02_fail failed at In [5] `if limit < 5:` with ValueError: limit 3 is below 5" in message
    assert "--run-id r1" in message and "02_fail.ipynb" in message


def test_a_dying_kernel_is_reported_with_the_cell_it_was_running(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_die.ipynb", 'run_dir = "x"', 'print("alive")', "import os\nos._exit(3)")
    result, manifest = run(folder, tmp_path)
    # "In [4] `import os`", or "cell #5 `import os`" when the kernel died before it numbered the cell
    assert result.failure.cell in ("In [4] `import os`", "cell #5 `import os`")
    assert "DeadKernelError" in result.failure.error
    assert manifest["steps"][0]["status"] == "failed" and result.failure.output.exists()


INTERRUPTED_RUN = """
import sys
from pathlib import Path
from kit import pipeline
try:
    pipeline.run_pipeline(preset=None, notebooks_dir=Path(sys.argv[1]), runs_root=Path(sys.argv[2]), run_id="r1")
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""


def test_ctrl_c_stops_the_run_with_one_line_and_records_it(tmp_path):
    """The kernel shares this terminal: its complaints about sockets closed under it must not reach it."""
    import signal
    import time

    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_wait.ipynb", 'run_dir = "x"', SETUP,
                   '(run_dir / "started").write_text("")\nimport time\ntime.sleep(60)')
    script = tmp_path / "run.py"
    script.write_text(INTERRUPTED_RUN)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(tmp_path / "runs")], stderr=subprocess.PIPE,
                            cwd=project_root(), preexec_fn=default_sigint)
    started = tmp_path / "runs" / "r1" / "started"
    for _ in range(600):  # the kernel reaches the sleeping cell within seconds
        if started.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.decode() == "interrupted\n"
    manifest = json.loads((tmp_path / "runs" / "r1" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["steps"][0]["status"] == "interrupted"


def test_a_secret_written_into_the_run_folder_fails_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_API_KEY", "sk-canary-0123456789abcdef")
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_leak.ipynb", 'run_dir = "x"', SETUP,
                   '(run_dir / "oops.txt").write_text(os.environ["KIT_API_KEY"])')
    result, manifest = run(folder, tmp_path)
    assert result.status == "failed" and result.failure is None
    assert result.secret_hits == ["oops.txt"] and manifest["secret_check"]["files"] == ["oops.txt"]
    assert "sk-canary" not in result.manifest_path.read_text()


def test_in_place_refresh_stores_fresh_outputs_and_leaves_a_failing_notebook_untouched(tmp_path):
    ok = write_notebook(tmp_path / "01_ok.ipynb", 'run_dir = "x"', "print(6 * 7)")
    bad = write_notebook(tmp_path / "02_bad.ipynb", 'run_dir = "x"', "1 / 0")
    bad_before = bad.read_bytes()
    assert pipeline.refresh_in_place(tmp_path, echo=lambda *a, **k: None) == 1
    outputs = [o for c in nbformat.read(ok, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    assert [o.get("text") for o in outputs] == ["42\n"]
    assert bad.read_bytes() == bad_before


# ---------------------------------------------------------------- end to end over notebooks/

CANARY = "sk-canary-e2e-5f2b9c1d7a3e4f60"


@pytest.mark.embedded
@pytest.mark.slow
def test_smoke_pipeline_end_to_end(tmp_path, monkeypatch):
    """The README's main command, in a temp folder: all notebooks run, the manifest lists real files,
    and a key in the environment never reaches the run folder."""
    # A canary key the kit must never write. Not OPENAI_API_KEY: alone it selects api.openai.com
    # (kit.llm.endpoints), and this test must use the embedded model.
    monkeypatch.setenv("KIT_API_KEY", CANARY)
    monkeypatch.setenv("HF_TOKEN", CANARY[::-1])
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(name, "")  # set but empty: a .env file cannot fill them in
    # The LLM reply cache stays the shared default (runs/.cache, as for nbval): on a cold cache this run
    # pays the embedded model's calls and nbval, which runs the same notebooks next, gets them free.
    monkeypatch.delenv("KIT_CACHE_DIR")
    # The LLM notebooks run with the smoke values (their replies are then cached for nbval); the two that
    # train run shorter here: nbval runs them in full next, and this test is about the plumbing.
    short = {"05_midtrain_smoke": {"steps": 5},
             "07_identity_finetune": {"identity_examples": 4, "steps": 4, "probe_limit": 7, "held_out": 4}}
    result = pipeline.run_pipeline(preset="smoke", overrides=short, runs_root=tmp_path / "runs", run_id="e2e")
    failure = result.failure
    assert failure is None, f"{failure}\n{failure.traceback}"
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["status"] == "ok"
    names = sorted(p.stem for p in NOTEBOOKS.glob(pipeline.NOTEBOOK_GLOB))
    assert [(s["notebook"], s["status"]) for s in manifest["steps"]] == [(n, "ok") for n in names]
    assert manifest["llm"] == [{"base_url": pipeline.EMBEDDED, "model": "SmolLM2-135M-Instruct"}]
    for artifact in manifest["artifacts"]:
        assert (result.run_dir / artifact["path"]).stat().st_size == artifact["bytes"]
    leaked = [p for p in result.run_dir.rglob("*") if p.is_file()
              and (CANARY.encode() in p.read_bytes() or CANARY[::-1].encode() in p.read_bytes())]
    assert leaked == [] and result.secret_hits == []


def test_a_reader_that_stops_early_gets_no_traceback():
    """`python -m kit run --list | head -1`: the closed pipe ends the command quietly. (The reader here
    is gone before the command writes anything, so the write always meets the closed pipe.)"""
    proc = subprocess.Popen([sys.executable, "-m", "kit", "run", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=project_root())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and err == ""
