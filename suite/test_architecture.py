"""The shape of the library: imports run one way (no cycle, none hidden inside functions),
registries refuse a duplicate name, and the code hash covers what shapes an artifact."""

import ast
from pathlib import Path

import pytest

from r8.backends import unique
from r8.cache import PRESENTATION, shaping_modules

R8 = Path(__file__).resolve().parent.parent / "r8"


def import_graph(root: Path = R8) -> dict[str, set[str]]:
    """module -> the r8 modules it imports, at module level and inside functions, except inside
    ``registry()`` (the one place allowed to import every backend module)."""
    modules = {f.relative_to(root).with_suffix("").as_posix().replace("/", "."): f for f in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree, edges = ast.parse(path.read_text()), set()

        def visit(node, in_registry=False):
            in_registry = in_registry or (isinstance(node, ast.FunctionDef) and node.name == "registry")
            if not in_registry:
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "r8":
                    sub = node.module.removeprefix("r8").lstrip(".")
                    targets = [sub] if sub else [a.name for a in node.names]
                    edges.update(t for t in targets if t in modules)
                elif isinstance(node, ast.Import):
                    edges.update(a.name.removeprefix("r8.") for a in node.names if a.name.removeprefix("r8.") in modules)
            for child in ast.iter_child_nodes(node):
                visit(child, in_registry)
        visit(tree)
        graph[name] = edges - {name, "__init__"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def dfs(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None
    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_no_import_cycle():
    graph = import_graph()
    assert {"backends", "quant_ort", "artifacts", "jobs", "cli"} <= graph.keys()
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    assert not graph["backends"] & {"quant_ort", "quant_torch", "quant_tflite"}  # only registry() imports them


def test_cycle_finder_finds_one():
    """The check can fail: a cycle hidden inside a function is seen."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_registries_refuse_a_duplicate_name():
    from r8.backends import registry
    from r8.layers import converter
    from r8.tflite_ops import op

    with pytest.raises(ValueError, match="registered twice"):
        unique([*registry().values(), registry()["ort"]], "backend")
    with pytest.raises(ValueError, match="Keras layer type 'Conv2D' has a converter already"):
        converter("Conv2D")(lambda layer, shapes: [])
    with pytest.raises(ValueError, match="TFLite op 'CONV_2D' has a converter already"):
        op("CONV_2D")(lambda node, shapes: [])


def test_code_hash_covers_shaping_modules_only(tmp_path):
    found = {f.relative_to(R8).as_posix() for f in shaping_modules()}
    assert {"convert.py", "layers.py", "quant_ort.py", "quant_torch.py", "quant_tflite.py", "calibration.py"} <= found
    assert not found & PRESENTATION  # editing a report rebuilds no int8 model
    (tmp_path / "sub").mkdir()  # a module moved into a subpackage still counts
    (tmp_path / "sub" / "quant_new.py").write_text("")
    (tmp_path / "report.py").write_text("")
    assert [f.relative_to(tmp_path).as_posix() for f in shaping_modules(tmp_path)] == ["sub/quant_new.py"]
