"""The package's layers, read from its imports: core (math) <- stages (I/O) <- workflow; module size;
the study's shape (cell paths, per-cell file names) spelled in reglens.layout and reglens.analyses only."""
import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src" / "reglens"
BASE = {"reglens", "reglens.io", "reglens.device", "reglens.layout"}
REPORTING = {"reglens.aggregate", "reglens.analyses", "reglens.report", "reglens.report_trust", "reglens.readme"}
TOP = {"reglens.config", "reglens.configdoc", "reglens.__main__", "reglens.cli", "reglens.plan", "reglens.status",
       "reglens.cluster"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(module-level imports, imports inside functions) of reglens modules, as module names."""
    tree = ast.parse(path.read_text())
    top, nested = set(), set()

    def names(node):
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            base = node.module
            return [base] + [f"{base}.{a.name}" for a in node.names]
        return []

    def visit(node, inside):
        for child in ast.iter_child_nodes(node):
            found = [n for n in names(child) if n == "reglens" or n.startswith("reglens.")]
            (nested if inside else top).update(found)
            visit(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, nested


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def resolve(name):
    """An imported name -> the module it belongs to (from x import y: y may be a module or an attribute)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def layer(name):
    if name in BASE:
        return "base"
    if name.startswith("reglens.stages"):
        return "stages"
    if name in REPORTING or name == "reglens.plots" or name.startswith("reglens.plots."):
        return "reporting"
    if name in TOP:
        return "top"
    return "core"


GRAPH = {name: {resolve(n) for n in imports(path)[0]} - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_level_imports_of_reglens(name):
    assert not imports(MODULES[name])[1], f"{name} imports reglens inside a function: {imports(MODULES[name])[1]}"


def test_imports_point_down_the_layers():
    allowed = {"base": {"base"}, "core": {"base", "core"}, "reporting": {"base", "core", "reporting"},
               "stages": {"base", "core", "reporting", "stages"}, "top": {"base", "core", "stages", "reporting", "top"}}
    wrong = [(a, b) for a, deps in GRAPH.items() for b in deps if layer(b) not in allowed[layer(a)]]
    assert not wrong, wrong
    # the pure core never touches files, except the data package, whose subject is on-disk formats
    io_users = sorted(a for a, deps in GRAPH.items()
                      if layer(a) == "core" and "reglens.io" in deps and not a.startswith("reglens.data"))
    assert not io_users, io_users


def test_no_import_cycles():
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in GRAPH.get(node, ()):
            if state.get(dep) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_workflow_scripts_call_stages_only():
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        top, nested = imports(script)
        modules = {resolve(n) for n in top | nested}
        assert modules and all(layer(m) == "stages" for m in modules), (script.name, modules)


def test_modules_stay_small_and_never_import_test_code():
    too_long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 500}
    assert not too_long, too_long
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        found = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        found |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in found if m.split(".")[0] in ("tests", "references", "conftest", "broden_fixtures")}, name


def test_the_cell_path_is_spelled_in_one_module():
    """`seed{...}` (the cell folder's last part) and the per-cell file names appear only in
    reglens.layout and reglens.analyses, not in other modules or the workflow."""
    from reglens import analyses, layout

    # an output's path under the cell folder (a name without a folder: where no table has that name)
    tables = {f"{name}.csv" for name in analyses.stacked_tables()} | {"metrics.csv", "summary.csv"}
    names = {name for a in layout.REGISTRY.values()
             for name in [*a.outputs.values(), *a.point_outputs.values(), *a.intermediate.values()]} - tables
    allowed = {SRC / "layout.py", SRC / "analyses.py"}
    places = [p for p in SRC.rglob("*.py") if p not in allowed] + list((REPO / "workflow").rglob("*.smk")) + [
        REPO / "workflow" / "Snakefile"] + list((REPO / "workflow" / "scripts").glob("*.py"))
    for path in places:
        text = path.read_text()
        assert not re.search(r"/seed\{", text), f"{path} spells the cell path"
        spelled = {n for n in names if f'"{n}"' in text or f"/{n}\"" in text or f"'{n}'" in text}
        assert not spelled, f"{path} spells per-cell files {spelled}"


def test_the_readme_is_short_and_the_repository_speaks_of_the_project_only():
    assert len((REPO / "README.md").read_bytes()) <= 8000
    files = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "config").rglob("*.*"),
             *(REPO / "benchmarks").rglob("*.py"), *SRC.rglob("*.py")]
    words = re.compile(r"\bsessions?\b|\blent\b|\bthis machine\b", re.I)
    found = [f"{path.relative_to(REPO)}: {m.group(0)}" for path in files if path.suffix in (".md", ".py", ".yaml")
             for m in [words.search(path.read_text())] if m]
    assert not found, found


def test_every_module_is_in_the_test_map():
    """docs/testing.md maps each module to its tests: a file is listed by name, a package by its folder."""
    table = (REPO / "docs" / "testing.md").read_text().split("## Where each module is tested", 1)[1]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| `")]
    listed = {name.strip("` ").removeprefix("reglens/") for cell, _ in rows for name in cell.split(",")}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        assert str(rel) in listed or f"{rel.parts[0]}/" in listed, f"{rel} is not in docs/testing.md's test map"
    for _, tests in rows:
        for name in tests.split(","):
            assert (REPO / "tests" / name.strip()).is_file(), name


def test_tests_mirror_the_package():
    """tests/<path>/test_<module>[_<aspect>].py for src/reglens/<path>/<module>.py (or the package's own
    name); tests/workflow/ holds the Snakemake runs; test file names are unique (pytest imports by name)."""
    tests = REPO / "tests"
    files = [p for p in tests.rglob("test_*.py") if "references" not in p.parts]
    assert len({p.name for p in files}) == len(files), sorted(p.name for p in files)
    for path in files:
        folder = path.parent.relative_to(tests)
        if folder.parts[:1] == ("workflow",):
            continue
        package = SRC / folder
        assert package.is_dir(), f"{path.relative_to(REPO)}: no package src/reglens/{folder}"
        names = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")} | {package.name}
        stem = path.stem.removeprefix("test_")
        assert any(stem == n or stem.startswith(n + "_") for n in names), (
            f"{path.relative_to(REPO)} names no module of src/reglens/{folder}")
