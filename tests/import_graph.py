"""The import graph of topicli's own modules, as import-linter's grimp builds it: cycles and the longest chain.

    python -m tests.import_graph      # prints the longest chains of imports and any cycle

A chain is a path of direct imports between topicli modules (`a` imports `b`, `b` imports `c`, ...),
counted in modules. Its length is how many floors a change at the bottom can travel up, and how much
importing the module at the top loads. Two graphs: the imports a module runs when it is imported
(module level, the floors), and all of them, including those inside functions (the CLI imports the
library inside its commands, on purpose, for startup). Imports under `if TYPE_CHECKING:` are left
out, as in the contracts.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import grimp

PACKAGE = "topicli"


def build() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=True)


def source(module: str) -> Path:
    """The file of a topicli module, found without importing it."""
    root = Path(__file__).resolve().parents[1]
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def deferred_lines(module: str) -> set[int]:
    """The lines of the import statements inside functions: they run when called, not when imported."""
    tree = ast.parse(source(module).read_text(encoding="utf-8"))
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    return {
        inner.lineno
        for function in functions
        for inner in ast.walk(function)
        if isinstance(inner, ast.Import | ast.ImportFrom)
    }


def edges(graph: grimp.ImportGraph, *, at_import: bool) -> dict[str, set[str]]:
    """Each topicli module and the topicli modules it imports directly (only at module level if `at_import`)."""
    imports = {module: set(graph.find_modules_directly_imported_by(module)) for module in sorted(graph.modules)}
    if at_import:
        for module, targets in imports.items():
            deferred = deferred_lines(module)
            imports[module] = {
                target
                for target in targets
                if any(
                    detail["line_number"] not in deferred
                    for detail in graph.get_import_details(importer=module, imported=target)
                )
            }
    return imports


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself), Tarjan's way."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(imports[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in imports[module]:
                found.append(sorted(component))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return found


def longest_chain(imports: dict[str, set[str]]) -> list[str]:
    """The longest path of direct imports, as its modules. The graph must have no cycle (see `cycles`)."""

    @cache
    def from_(module: str) -> tuple[str, ...]:
        tails = [from_(target) for target in sorted(imports[module])]
        return (module, *max(tails, key=len, default=()))

    return list(max((from_(module) for module in sorted(imports)), key=len))


def main() -> None:
    graph = build()
    for at_import, what in ((True, "at import (module level)"), (False, "all imports, inside functions too")):
        imports = edges(graph, at_import=at_import)
        print(f"{what}: {len(imports)} modules, {sum(map(len, imports.values()))} imports between them")
        found = cycles(imports)
        for component in found:
            print("  cycle:", " <-> ".join(component))
        if not found:
            chain = longest_chain(imports)
            print(f"  longest chain: {len(chain)} modules")
            print("\n".join(f"    {module}" for module in chain))


if __name__ == "__main__":
    main()
