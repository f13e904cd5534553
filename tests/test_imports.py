"""The import graph of `kit/` matches the map in docs/ARCHITECTURE.md: no circle between modules, and no
arrow from a lower pipeline stage to a higher one.

The stages and the modules in each are read from the picture at the top of ARCHITECTURE.md (one line per
stage, lowest first), so the picture is checked against the code: a module missing from the picture, a
name in the picture with no module, or an import that runs against the stage order fails here.
Every import counts, also one inside a function: an import moved into a function still ties the two
modules together, so it cannot hide a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path


from kit.paths import project_root

ROOT = project_root()
KIT = ROOT / "kit"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
# The dispatcher imports commands by name (importlib), never by an import statement: it sits above all.
TOP = {"kit.__main__"}


def module_files(kit: Path = KIT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file in the package (a package is its __init__)."""
    mods = {}
    for path in sorted(kit.rglob("*.py")):
        parts = path.relative_to(kit.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module an imported dotted name lives in (`kit.a.b.func` -> `kit.a.b`), or None outside kit."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The kit modules `module` imports anywhere in its file (module level or inside functions)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from kit.training import tasks` imports the module kit.training.tasks
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for name in names:
            owner = _owner(name, mods)
            if owner and owner != module and owner.startswith("kit"):
                found.add(owner)
    return found


def import_graph(kit: Path = KIT) -> dict[str, set[str]]:
    mods = module_files(kit)
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def stages_from_doc(doc: Path = DOC) -> list[tuple[str, set[str]]]:
    """The picture's stages, lowest first: [(stage, {module, ...})].

    The picture is the first ``` block of the page that starts with `kit/`. `kit/  a, b   (notes)` lists
    the foundations; `  pkg/  a, b   (notes)` (indented by two) a package's modules, and a deeper-indented
    line under it more of them; `  name  prose` a top-level module that is a stage of its own (lines under
    it are prose). Notes in parentheses after two spaces are not module names.
    """
    block = re.search(r"```\n(kit/.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert block, f"{doc}: no picture (a ``` block starting with kit/) found"
    stages: list[tuple[str, set[str]]] = []
    package: str | None = None  # the package a continuation line adds to; None after a top-level module
    for line in block.group(1).splitlines():
        listed = re.split(r"\s{2,}\(", line, maxsplit=1)[0]
        if head := re.match(r"kit/\s+(.*)", listed):
            package = "kit"
            stages.append(("foundations", set()))
            rest = head.group(1)
        elif head := re.match(r"  ([a-z_]+)/(?:\s+(.*))?$", listed):
            package = f"kit.{head.group(1)}"
            stages.append((head.group(1), {package}))
            rest = head.group(2) or ""
        elif head := re.match(r"  ([a-z_]+)(?:\s|$)", listed):
            package = None
            stages.append((head.group(1), {f"kit.{head.group(1)}"}))
            continue
        elif package is not None and line.strip():
            rest = listed
        else:
            continue
        stages[-1][1].update(f"{package}.{word}" for word in re.findall(r"[a-z_]+", rest))
    return stages


def stage_of(stages: list[tuple[str, set[str]]]) -> dict[str, int]:
    rank = {m: i for i, (_, mods) in enumerate(stages) for m in mods}
    rank["kit"] = 0
    rank.update((m, len(stages)) for m in TOP)
    return rank


def upward_arrows(graph: dict[str, set[str]], rank: dict[str, int]) -> set[tuple[str, str]]:
    """Imports from a module to one of a later stage (modules not in the picture fail their own test)."""
    return {(a, b) for a, deps in graph.items() for b in deps if a in rank and b in rank and rank[a] < rank[b]}


GRAPH = import_graph()
STAGES = stages_from_doc()
RANK = stage_of(STAGES)


def test_the_picture_lists_every_module_and_only_real_ones():
    in_code = set(GRAPH)
    unlisted = sorted(in_code - set(RANK))
    ghosts = sorted(set(RANK) - in_code)
    assert not unlisted, f"modules missing from the picture in {DOC.name}: {unlisted}"
    assert not ghosts, f"names in the picture of {DOC.name} with no module in kit/: {ghosts}"


def test_the_stage_order_is_the_documented_one():
    assert [s for s, _ in STAGES] == ["foundations", "llm", "generation", "tokens", "quality", "training",
                                      "memory", "figures", "doctor", "pipeline", "commands"]


def test_no_circle_between_modules():
    assert circles(GRAPH) == []


def test_no_arrow_from_a_lower_stage_to_a_higher_one():
    names = [s for s, _ in STAGES] + ["top"]
    upward = upward_arrows(GRAPH, RANK)
    assert not upward, "imports against the stage order: " + "; ".join(
        f"{a} ({names[RANK[a]]}) imports {b} ({names[RANK[b]]})" for a, b in sorted(upward))


def test_foundations_import_only_foundations():
    foundations = STAGES[0][1]
    assert "kit.facts" in foundations
    for module in sorted(foundations):
        assert GRAPH[module] <= foundations, f"{module} imports {sorted(GRAPH[module] - foundations)}"


# ---------------------------------------------------------------- the checker itself

def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "kit"


def test_the_checker_sees_a_circle_hidden_in_a_function(tmp_path):
    kit = _write(tmp_path, {
        "kit/__init__.py": "", "kit/a/__init__.py": "", "kit/b/__init__.py": "",
        "kit/a/x.py": "from kit.b.y import f\n",
        "kit/b/y.py": "def f():\n    from kit.a import x\n    return x\n",
    })
    graph = import_graph(kit)
    assert graph["kit.a.x"] == {"kit.b.y"} and graph["kit.b.y"] == {"kit.a.x"}
    assert circles(graph) == [["kit.a.x", "kit.b.y"]]


def test_the_checker_sees_an_upward_arrow_and_relative_imports(tmp_path):
    kit = _write(tmp_path, {
        "kit/__init__.py": "", "kit/paths.py": "", "kit/low/__init__.py": "", "kit/high/__init__.py": "",
        "kit/low/a.py": "from ..high import b\n", "kit/high/b.py": "from . import c\nimport kit.paths\n",
        "kit/high/c.py": "",
    })
    graph = import_graph(kit)
    assert graph["kit.low.a"] == {"kit.high.b"} and graph["kit.high.b"] == {"kit.high.c", "kit.paths"}
    doc = tmp_path / "ARCH.md"
    doc.write_text("# x\n\n```\nkit/  paths   (foundations)\n  low/   a\n  high/  b,\n         c\n```\n")
    stages = stages_from_doc(doc)
    assert stages == [("foundations", {"kit.paths"}), ("low", {"kit.low", "kit.low.a"}),
                      ("high", {"kit.high", "kit.high.b", "kit.high.c"})]
    assert upward_arrows(graph, stage_of(stages)) == {("kit.low.a", "kit.high.b")}


def test_the_python_floor_is_the_one_the_code_needs():
    """kit.llm.client bounds a whole exchange with asyncio.timeout, new in Python 3.11: pyproject and the
    README promise that floor, not an older one."""
    import tomllib

    floor = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert floor == ">=3.11"
    assert "Needs Python 3.11+" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "asyncio.timeout(" in (KIT / "llm" / "client.py").read_text(encoding="utf-8")
