"""The import contract: the core never imports Textual or Rich, the UI side never imports
llama.cpp, and no module imports another that imports it back (Harlequin checks the same with
a subprocess that reads ``sys.modules``)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "tui_llm"
# The Textual-free core: every module under these packages, and these modules.
CORE_PACKAGES = ("engine", "catalog", "fit", "gpu", "store")
CORE_MODULES = (
    "config",
    "session",
    "conversation",
    "textsafe",
    "markdown_code",
    "paths",
    "sampling_ranges",
    "tomlfile",
    "placement",
)
UI_LIBRARIES = ("textual", "rich")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> list[str]:
    names = []
    for package in CORE_PACKAGES:
        names += [module_name(p) for p in sorted((PACKAGE / package).rglob("*.py"))]
    return names + [f"tui_llm.{name}" for name in CORE_MODULES]


def loaded_after_import(modules: list[str]) -> list[str]:
    """Top-level packages in ``sys.modules`` after importing ``modules`` in a fresh process."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, f"{modules}: {result.stderr}"
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def offenders(modules: list[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Which of ``modules`` import a ``forbidden`` package: one process for all of them, and
    one per module only when something is found (to name the culprit)."""
    if not set(forbidden) & set(loaded_after_import(modules)):
        return {}
    found = {}
    for module in modules:
        bad = [name for name in forbidden if name in loaded_after_import([module])]
        if bad:
            found[module] = bad
    return found


def test_the_core_imports_neither_textual_nor_rich() -> None:
    modules = core_modules()
    assert "tui_llm.session" in modules and "tui_llm.engine.client" in modules
    assert offenders(modules, UI_LIBRARIES) == {}


def test_llama_cpp_is_imported_only_in_the_engine_child() -> None:
    """The UI, the CLI and the core load llama.cpp nowhere: it lives in the engine process."""
    modules = [m for m in core_modules() if m != "tui_llm.engine.worker"]
    assert offenders([*modules, "tui_llm.app", "tui_llm.cli"], ("llama_cpp",)) == {}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, at any depth (functions too), TYPE_CHECKING aside.
    The package uses absolute imports only."""
    own = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in modules and name != own}


def test_no_import_cycles() -> None:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imports_of(path, set(paths)) for name, path in paths.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []
