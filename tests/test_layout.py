"""The layout ARCHITECTURE.md describes holds: every path it lists exists, and the import rules it
marks as checked hold, read from the source with `ast` (no module is imported).

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
# source folder -> the package it is installed as
INSTALLED_AS = {"moebench": "moebench", "kernels": "moebench.kernels", "export": "moebench.export"}

PROBLEM = {
    "moebench.activations",
    "moebench.dtypes",
    "moebench.errors",
    "moebench.hf",
    "moebench.hf.common",
    "moebench.hf.experts",
    "moebench.hf.quantized",
    "moebench.hf.routers",
    "moebench.hf.shared",
    "moebench.layer_options",
    "moebench.presets",
    # the weight formats: pure torch, read by the spec (quant), weights (quantised experts) and the reference
    "moebench.quant",
    "moebench.quant.blocks",
    "moebench.quant.experts",
    "moebench.quant.formats",
    "moebench.quant.fp8",
    "moebench.quant.intq",
    "moebench.quant.mxfp4",
    "moebench.reference",
    "moebench.routing",
    "moebench.spec",
    "moebench.stats",
    "moebench.tolerances",
    "moebench.validate",
    "moebench.weight_layout",
    "moebench.weights",
}
# what launchers must not import: the measuring, tuning and reporting tools, and the CLI
TOOLS = (
    "moebench.bench",
    "moebench.ceilings",
    "moebench.cli",
    "moebench.compile_check",
    "moebench.gradparity",
    "moebench.parity",
    "moebench.regression",
    "moebench.report",
    "moebench.results",
    "moebench.timing",
    "moebench.tuning.",  # the tuning API is moebench.tuning itself; its submodules are the tuner
)


def module_name(path: Path) -> str:
    top, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [*INSTALLED_AS[top].split("."), *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for top in INSTALLED_AS for p in sorted((ROOT / top).rglob("*.py"))}


MODULES = source_modules()


def imports_of(path: Path, modules: dict[str, Path] = MODULES) -> set[str]:
    """The moebench modules `path` imports (`from a import b` counts as a.b when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {name for name in found if name == "moebench" or name.startswith("moebench.")}


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(selected, allowed) -> list[str]:
    """'module -> import' for every import of a selected module that `allowed(import)` refuses."""
    return [
        f"{name} -> {imported}"
        for name, path in MODULES.items()
        if selected(name)
        for imported in sorted(imports_of(path))
        if not allowed(imported)
    ]


# -- (a) the map -----------------------------------------------------------------------------------


def listed_paths(text: str) -> list[str]:
    """Every `backticked` token of the map that names a file or folder (has a slash or ends in .py/.md)."""
    tokens = re.findall(r"`([^`\s]+)`", text)
    return [t for t in tokens if ("/" in t or t.endswith((".py", ".md"))) and not t.startswith("moebench.")]


def test_every_path_the_map_lists_exists():
    paths = listed_paths(ARCHITECTURE.read_text())
    assert len(paths) > 40, "the map lists each implementation's files"
    folders = [p for p in paths if p.endswith("/")]
    missing = []
    for path in paths:
        # a bare file name stands beside its folder in the map: it must be in one of the listed folders
        candidates = [ROOT / path] if "/" in path else [ROOT / folder / path for folder in folders]
        if not any(c.exists() for c in candidates):
            missing.append(path)
    assert not missing, f"ARCHITECTURE.md lists paths that do not exist: {missing}"


@pytest.mark.parametrize("impl", ["triton_grouped", "block_sparse"])
def test_an_implementation_is_found_by_its_name(impl):
    """Registration, host code, kernels, space and tests of a Triton implementation sit in folders
    named after it, and the map's row for it names them."""
    for path in (
        f"moebench/impls/{impl}/__init__.py",
        f"kernels/{impl}/space.py",
        f"tests/{impl}/test_{impl}.py",
    ):
        assert (ROOT / path).is_file(), path
    row = next(line for line in ARCHITECTURE.read_text().splitlines() if line.startswith(f"| `{impl}` |"))
    for folder in (f"moebench/impls/{impl}/", f"kernels/{impl}/", f"tests/{impl}/"):
        assert folder in row, (impl, folder)


def test_the_map_says_which_path_fails_when_one_is_missing():
    assert listed_paths("see `kernels/nowhere.py` and `moebench.spec`") == ["kernels/nowhere.py"]
    assert not (ROOT / "kernels/nowhere.py").exists()


# -- (b) import rules --------------------------------------------------------------------------------


def test_problem_layer_imports_only_the_problem_layer():
    found = violations(lambda m: m in PROBLEM, lambda i: i in PROBLEM)
    assert not found, found


def test_kernels_import_only_kernels_and_the_spec():
    found = violations(
        lambda m: in_package(m, "moebench.kernels"), lambda i: in_package(i, "moebench.kernels") or i == "moebench.spec"
    )
    assert not found, found


def test_only_kernels_define_triton_kernels():
    defined = []
    for name, path in MODULES.items():
        if in_package(name, "moebench.kernels"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for dec in node.decorator_list:
                    target = dec.func if isinstance(dec, ast.Call) else dec
                    if ast.unparse(target) in ("triton.jit", "jit", "triton.autotune"):
                        defined.append(f"{name}.{node.name}")
    assert not defined, f"@triton.jit outside kernels/: {defined}"


def _launcher_may_import(imported: str, importer: str) -> bool:
    if in_package(imported, "moebench.export"):
        return importer == "moebench.impls.onnx_runtime"  # the deployed runtimes run the exported layer
    return not any(imported == t or imported.startswith(t if t.endswith(".") else t + ".") for t in TOOLS)


def test_launchers_import_no_tool():
    found = [
        f"{name} -> {imported}"
        for name, path in MODULES.items()
        if in_package(name, "moebench.impls")
        for imported in sorted(imports_of(path))
        if not _launcher_may_import(imported, name)
    ]
    assert not found, found


def test_registry_imports_no_implementation():
    registry = {"moebench.registry", "moebench.requirements"}  # the list, and what each entry needs of the machine
    allowed = PROBLEM | registry | {"moebench.kernels.common.interpreter"}
    found = violations(lambda m: m in registry, lambda i: i in allowed)
    assert not found, found


def test_nothing_in_the_library_imports_the_cli():
    found = violations(
        lambda m: not in_package(m, "moebench.cli") and m != "moebench.__main__",
        lambda i: not in_package(i, "moebench.cli"),
    )
    assert not found, found


# -- (c) no import cycle in moebench/tuning ----------------------------------------------------------


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (as the list of its nodes, first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycle_in_tuning():
    tuning = {name: path for name, path in MODULES.items() if in_package(name, "moebench.tuning")}
    graph = {name: {i for i in imports_of(path) if i in tuning and i != name} for name, path in tuning.items()}
    assert len(graph) > 10
    assert find_cycle(graph) is None, find_cycle(graph)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


# -- the checks can fail ------------------------------------------------------------------------------


def test_imports_are_read_from_source_including_lazy_ones(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from moebench.tuning import cache\n"
        "def f():\n"
        "    from moebench.cli import main\n"
        "    import moebench.impls.triton_grouped.op\n"
    )
    assert imports_of(planted) == {"moebench.tuning.cache", "moebench.cli", "moebench.impls.triton_grouped.op"}
