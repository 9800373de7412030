"""The project's modules import each other in one direction: no import circle, not even through a lazy import.

The graph is read from the source (every ``import``, at module level or inside a function), so a circle kept
alive by a function-level import is found too. tests/integration/test_imports_alone.py imports each module
alone in a fresh interpreter.
"""

import ast
from pathlib import Path

from tests.support.project import ROOT, project_modules

# The layers, innermost first: a module may import its own layer and the ones before it, never a later one.
LAYERS = (
    ("speech2face",),
    ("demo_corpus",),
    ("telemetry",),
    ("pipelines", "trainer"),
    ("tuning", "serving"),
    ("demo",),
    ("s2f", "benchmarks"),
)


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, wherever in the file the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `from a.b import c`: module a.b.c, or else a name in a.b
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_circle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    source = "import os\nfrom speech2face import storage\n\ndef f():\n    from speech2face.embedders import base\n"
    path = ROOT / "build" / "example_module.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    try:
        assert imports_of(path, project_modules()) == {"speech2face.storage", "speech2face.embedders.base"}
    finally:
        path.unlink()


def test_no_import_circle_in_the_project():
    graph = import_graph()
    assert len(graph) > 80 and graph["speech2face.embedders.vggface"]  # the walk found the project
    assert circles(graph) == []


def test_layers_import_only_inward():
    """The core imports no other layer; no layer imports a later one (a command module is never a library)."""
    rank = {package: position for position, layer in enumerate(LAYERS) for package in layer}
    backwards = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if rank[target.split(".")[0]] > rank[module.split(".")[0]]
    )
    assert backwards == []


def test_no_library_imports_a_command_module():
    """Commands (``python -m`` entry points) import libraries; only the s2f dispatcher imports commands."""
    commands = {
        "trainer.train",
        "trainer.evaluate",
        "trainer.predict",
        "trainer.train_decoder",
        "trainer.evaluate_decoder",
        "tuning.sweep",
        "serving.app",
        "serving.check_config",
        "demo.run",
        "pipelines.preprocess.run",
        "demo_corpus.__main__",
        "pipelines.preprocess.__main__",
    }
    users = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target in commands and not module.startswith(("s2f", "benchmarks", "pipelines.preprocess"))
    )
    assert users == []
