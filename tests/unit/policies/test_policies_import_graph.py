"""The `policies` modules import one another without a cycle.

The graph is built with grimp (the library import-linter runs on) from every import statement, including those
inside functions and under ``TYPE_CHECKING``, so an import moved out of sight to dodge a cycle still counts.
The agreement modules in particular form a chain (document ← record ← lifecycle) below and above the decision
table and the budget ledger: ``policies.decision`` names agreements, and only the lifecycle decides and charges.
"""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Every strongly connected set of more than one module (or a module importing itself), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in sorted(graph.find_modules_directly_imported_by(m) & modules):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            part = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                part.append(n)
                if n == m:
                    break
            if len(part) > 1 or m in graph.find_modules_directly_imported_by(m):
                found.append(sorted(part))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return sorted(found)


def test_policies_modules_import_without_cycles() -> None:
    """No two policies modules import each other, directly or through others."""
    graph = grimp.build_graph("policies", include_external_packages=False, exclude_type_checking_imports=False)
    modules = set(graph.modules)
    assert {"policies.decision", "policies.ledger", "policies.agreements.lifecycle"} <= modules
    cycles = _cycles(graph, modules)
    assert cycles == [], "import cycles among policies modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_sees_a_cycle() -> None:
    """The cycle finder reports a two-module cycle and nothing else."""
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph, {"p", "p.a", "p.b", "p.c"}) == [["p.a", "p.b"]]
