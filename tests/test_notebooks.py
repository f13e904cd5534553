"""The notebooks as a course: every concept's picture is stored as a PNG in the cell that shows it,
each lesson states objectives, ends with a recap and offers at least two "try it" cells, no seed
names leak into what a reader sees, and the committed outputs come from the same defaults as
`make run`'s smoke preset.

Figure cells carry a metadata tag `figure:<concept>`. The committed notebooks are refreshed by the
lead (`make notebooks`); to check executed copies elsewhere (papermill output), point
KIT_EXECUTED_NOTEBOOKS at their folder (files named like the notebooks): the tags are then read from
the sources in notebooks/ and the images from the copies.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from kit import pipeline
from kit.paths import project_root

NOTEBOOKS = project_root() / "notebooks"
# Which notebook teaches which concept with a picture.
FIGURES = {
    "01_prompt_design": {"figure:planned-coverage"},
    "02_bulk_generation": {"figure:funnel"},
    "03_data_quality": {"figure:planned-coverage", "figure:reference-comparison"},
    "04_tokens_and_masks": {"figure:token-mask", "figure:loss-mask", "figure:packing-toy", "figure:packing-rows"},
    "05_midtrain_smoke": {"figure:task-mixture", "figure:loss", "figure:probes"},
    "06_memory_benchmark": {"figure:memory-timeline", "figure:memory-recall", "figure:memory-accuracy"},
    "07_identity_finetune": {"figure:finetune-loss", "figure:loss-mask", "figure:forgetting"},
}
LESSONS = sorted(FIGURES)
SEED_NAME = re.compile(r"\bseed[ _-]?0\d\d\b", re.I)


def executed(stem: str) -> Path:
    folder = os.environ.get("KIT_EXECUTED_NOTEBOOKS")
    return Path(folder) / f"{stem}.ipynb" if folder else NOTEBOOKS / f"{stem}.ipynb"


def tagged(nb) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for i, cell in enumerate(nb.cells):
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("figure:"):
                found.setdefault(tag, []).append(i)
    return found


def images(cell) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


@pytest.mark.parametrize("stem", LESSONS)
def test_every_concept_has_a_png_in_the_cell_that_shows_it(stem):
    source = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    tags = tagged(source)
    assert FIGURES[stem] <= set(tags), f"{stem}: no cell tagged {sorted(FIGURES[stem] - set(tags))}"
    run = nbformat.read(executed(stem), as_version=4)
    by_source = {c.source: c for c in run.cells if c.cell_type == "code"}  # papermill adds a cell: match by source
    for tag, positions in sorted(tags.items()):
        for i in positions:
            cell = by_source.get(source.cells[i].source)
            assert cell is not None, f"{executed(stem)}: the cell tagged {tag} differs from notebooks/{stem}.ipynb"
            as_text = [o for o in cell.get("outputs", []) if "image/png" not in o.get("data", {})
                       and "<Figure size" in str(o.get("data", {}).get("text/plain", ""))]
            assert images(cell) >= 1 and not as_text, \
                f"{executed(stem)}: cell {i} ({tag}) stores no image/png (missing, or stored as text)"


@pytest.mark.parametrize("stem", LESSONS)
def test_each_lesson_states_objectives_offers_two_try_its_and_ends_with_a_recap(stem):
    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "**Objectives.**" in markdown[0], f"{stem}: the first cell states no objectives"
    assert any(m.lstrip().startswith("## Recap") for m in markdown[-2:]), f"{stem}: no recap at the end"
    tries = sum(len(re.findall(r"\*\*Try it\b|## Try it\b", m)) for m in markdown)
    assert tries >= 2, f"{stem}: {tries} 'try it' cells, want at least 2"
    for m in markdown:
        for block in re.split(r"(?=\*\*Try it\b|## Try it\b)", m)[1:]:
            assert re.search(r"\bexpect", block, re.I), f"{stem}: a try-it says no expected result: {block[:60]!r}"
            assert re.search(r"second|minute|instant|2 cores", block), \
                f"{stem}: a try-it says not how long it takes: {block[:60]!r}"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob(pipeline.NOTEBOOK_GLOB)), ids=lambda p: p.stem)
def test_no_seed_names_in_what_a_reader_sees(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        assert not SEED_NAME.search(cell.source), f"{path.name}: cell {i} names a seed document"
        for o in cell.get("outputs", []):
            data = {k: v for k, v in o.get("data", {}).items() if k != "image/png"}
            text = "".join(o.get("text", "")) + "".join(str(v) for v in data.values())
            assert not SEED_NAME.search(text), f"{path.name}: cell {i}'s output names a seed document"


def test_the_smoke_preset_and_the_notebook_defaults_are_one_set():
    """`make notebooks` (defaults) and `make run` (smoke preset) must make the same outputs."""
    notebooks = pipeline.find_notebooks(NOTEBOOKS)
    params = pipeline.resolve_parameters(notebooks, [("smoke", pipeline.load_preset("smoke"))])
    declared = {nb.name: nb.declared for nb in notebooks}
    differ = {f"{name}.{key}": (value, declared[name][key]) for name, given in params.items()
              for key, value in given.items() if declared[name][key] != value}
    assert differ == {}, f"smoke preset vs notebook default: {differ}"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob(pipeline.NOTEBOOK_GLOB)), ids=lambda p: p.stem)
def test_committed_notebooks_open_on_the_kernel_make_lab_installs(path):
    spec = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
    makefile = (NOTEBOOKS.parent / "Makefile").read_text(encoding="utf-8")
    assert spec == pipeline.COMMITTED_KERNELSPEC, f"{path.name} opens on {spec.get('display_name')!r}"
    assert f"--name {spec['name']} --display-name \"{spec['display_name']}\"" in makefile


# ---------------------------------------------------------------- rejects of every kind, through the notebooks

def _failing_some(state: dict):
    """A loopback endpoint for notebooks 01 and 02: v2 prompts get a hand-written reference conversation,
    distill prompts a short grounded answer, and while state["failing"] the second distinct prompt of each
    recipe fails every time (503, retried at once until the client gives up): an item the endpoint never
    answers, rejected before its first answer, with no `turns` in its meta."""
    import threading

    from fake_openai import Reply, conversation_responder, prompt_key

    conversation, seen, lock = conversation_responder(), {"v2": [], "distill": []}, threading.Lock()

    def respond(request: dict, n_seen: int) -> Reply:
        messages = request.get("messages") or [{}]
        first = messages[0].get("content") or ""
        kind = "distill" if messages[0].get("role") == "system" and "described below" in first else "v2"
        key = prompt_key(request)
        with lock:
            if key not in seen[kind]:
                seen[kind].append(key)
            position = seen[kind].index(key)
        if state["failing"] and position == 1:
            return Reply(status=503, headers={"Retry-After": "0"}, content=None)
        if kind == "v2":
            return conversation(request, n_seen)
        return Reply(content="My code is open source under the MIT license, and Andrej Karpathy built me in 2025.")
    return respond


def _execute(stem: str, out: Path, parameters: dict) -> None:
    import papermill

    papermill.execute_notebook(str(NOTEBOOKS / f"{stem}.ipynb"), str(out), parameters=parameters,
                               kernel_name=pipeline.KERNEL, cwd=str(NOTEBOOKS), progress_bar=False,
                               log_output=False, extra_arguments=pipeline.KERNEL_ARGS)


@pytest.mark.slow
def test_notebooks_01_and_02_read_rejects_made_before_any_answer(tmp_path, fake_openai):
    """Issue 26: notebook 01 stopped with KeyError: 'turns' on an item rejected for an API error. Against an
    endpoint that never answers some items, 01 runs to the end and shows those rejects; 02 stops at its run
    cell saying so (a run with API errors is not done), and the same notebook against the healed endpoint
    asks those items again and finishes."""
    import papermill

    state = {"failing": True}
    srv = fake_openai(_failing_some(state))
    common = {"run_dir": str(tmp_path / "run"), "endpoint": srv.base_url, "model": "fake-model"}
    out01 = tmp_path / "01.ipynb"
    _execute("01_prompt_design", out01, {**common, "live_generations": 2, "distill_items": 2, "candidates": 2})
    nb = nbformat.read(out01, as_version=4)
    printed = "\n".join("".join(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "distill item 1: rejected" in printed and "rejected before its first answer" in printed
    assert "api_error" in printed  # the v2 reject table lists the item the endpoint never answered

    out02 = tmp_path / "02.ipynb"
    parameters02 = {**common, "num": 3, "workers": 1, "candidates": 2}
    with pytest.raises(papermill.PapermillExecutionError) as stopped:
        _execute("02_bulk_generation", out02, parameters02)
    assert "API errors" in str(stopped.value) and "KeyError" not in str(stopped.value)
    state["failing"] = False
    _execute("02_bulk_generation", out02, parameters02)
    rejects = tmp_path / "run" / "data" / "conversations.rejects.jsonl"
    assert not rejects.exists() or "api_error" not in rejects.read_text()
