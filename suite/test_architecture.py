"""The shape of the library: imports run one way (no cycle, none hidden inside functions),
registries refuse a duplicate name, and the code hash covers what shapes an artifact."""

import ast
import re
from pathlib import Path

import pytest

from r8.backends import unique
from r8.core.cache import PRESENTATION, shaping_modules

R8 = Path(__file__).resolve().parent.parent / "r8"


def import_graph(root: Path = R8) -> dict[str, set[str]]:
    """module -> the r8 modules it imports (dotted, below ``r8``; a package by its own name), at
    module level and inside functions, except inside ``registry()`` (the one place allowed to
    import every backend module)."""
    modules = {f.relative_to(root).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__"): f
               for f in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree, edges = ast.parse(path.read_text()), set()

        def visit(node, in_registry=False):
            in_registry = in_registry or (isinstance(node, ast.FunctionDef) and node.name == "registry")
            if not in_registry:
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "r8":
                    sub = node.module.removeprefix("r8").lstrip(".")
                    for a in node.names:  # `from r8.pkg import module` imports the module
                        target = f"{sub}.{a.name}".lstrip(".")
                        edges.add(target if target in modules else sub)
                elif isinstance(node, ast.Import):
                    edges.update(a.name.removeprefix("r8.") for a in node.names if a.name.removeprefix("r8.") in modules)
            for child in ast.iter_child_nodes(node):
                visit(child, in_registry)
        visit(tree)
        graph[name] = edges & modules.keys() - {name, "__init__"}
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
    assert {"backends", "backends.ort", "artifacts", "jobs.quantize", "cli"} <= graph.keys()
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    assert not graph["backends"] & {"backends.ort", "backends.pytorch", "backends.tflite"}  # only registry() imports them


# Bottom to top; a module imports only from its own layer or the layers below it.
LAYERS = [
    ("core", {"core"}),
    ("frontends", {"frontends"}),
    ("values", {"model", "data", "calibration", "metrics", "rows", "thresholds", "results", "artifacts"}),
    ("runtimes", {"runtimes"}),
    ("backends", {"backends"}),
    ("report", {"report"}),
    ("jobs", {"jobs"}),
    ("entry points", {"cli", "__main__", "pytest_plugin", "gates"}),
]


def layer(module: str) -> int:
    """The rank of ``module`` in LAYERS (a subpackage's modules rank with it)."""
    for rank, (_, members) in enumerate(LAYERS):
        if module.split(".")[0] in members:
            return rank
    raise AssertionError(f"r8.{module} is in no layer of LAYERS: add it where it belongs")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer(m)][0]}) -> {t} ({LAYERS[layer(t)][0]})"
                  for m, targets in graph.items() for t in targets if layer(t) > layer(m))


def test_imports_run_one_way():
    """Core values, front-ends, runtimes, backends, reports, jobs, entry points: never upwards."""
    graph = {m: t for m, t in import_graph().items() if m != "__init__"}
    assert {layer(m) for m in graph} == set(range(len(LAYERS)))  # every layer has its modules
    assert upward_imports(graph) == []
    assert upward_imports({"report.study": {"jobs.quantize"}}) == ["report.study (report) -> jobs.quantize (jobs)"]


def test_cycle_finder_finds_one():
    """The check can fail: a cycle hidden inside a function is seen."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_registries_refuse_a_duplicate_name():
    from r8.backends import registry
    from r8.frontends.keras.layers import converter
    from r8.frontends.tflite.ops import op

    with pytest.raises(ValueError, match="registered twice"):
        unique([*registry().values(), registry()["ort"]], "backend")
    with pytest.raises(ValueError, match="Keras layer type 'Conv2D' has a converter already"):
        converter("Conv2D")(lambda layer, shapes: [])
    with pytest.raises(ValueError, match="TFLite op 'CONV_2D' has a converter already"):
        op("CONV_2D")(lambda node, shapes: [])


def test_code_hash_covers_shaping_modules_only(tmp_path):
    found = {f.relative_to(R8).as_posix() for f in shaping_modules()}
    assert {"frontends/convert.py", "frontends/keras/layers/conv.py", "backends/ort.py", "backends/pytorch.py",
            "backends/tflite.py", "calibration.py", "runtimes/mcu.py"} <= found
    assert not found & PRESENTATION  # editing a report, a job or the CLI rebuilds no int8 model
    assert not {f for f in found if f.startswith(("report/", "jobs/"))}
    (tmp_path / "sub").mkdir()  # a module moved into a subpackage still counts
    (tmp_path / "sub" / "quant_new.py").write_text("")
    (tmp_path / "report").mkdir()  # nor does a new report module
    (tmp_path / "report" / "page.py").write_text("")
    (tmp_path / "cli.py").write_text("")
    assert [f.relative_to(tmp_path).as_posix() for f in shaping_modules(tmp_path)] == ["sub/quant_new.py"]


def test_the_plugin_keeps_no_state_between_runs():
    """What a pytest run measures lives on its config: no module-level dict, list or set and no
    cached function in the plugin, whose module outlives a run (pytest.main called twice)."""
    tree = ast.parse((R8 / "pytest_plugin.py").read_text())
    mutable = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
               and isinstance(n.value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.Call))]
    cached = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)
              for d in f.decorator_list if "cache" in ast.unparse(d)]
    assert mutable == [] and cached == []


# ---- the size and shape of each module
MAX_FUNCTION_LINES, MAX_MODULE_LINES, MAX_FLAT_MODULES = 60, 400, 12
LONG_MODULES: dict[str, str] = {}  # module -> why it may be longer (a converter table)


def modules(root: Path = R8) -> dict[str, ast.Module]:
    return {f.relative_to(root).as_posix(): ast.parse(f.read_text()) for f in sorted(root.rglob("*.py"))}


def long_functions(trees: dict[str, ast.Module], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    return sorted(f"{name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for name, tree in trees.items()
                  for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.end_lineno - n.lineno + 1 > limit)


def private_imports(trees: dict[str, ast.Module]) -> list[str]:
    """``from r8.x import _name``: a module reaching into another's private names."""
    return sorted(f"{name}: {n.module}.{a.name}" for name, tree in trees.items() for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "r8"
                  for a in n.names if a.name.startswith("_"))


def import_time_effects(trees: dict[str, ast.Module]) -> list[str]:
    """A ``global`` statement anywhere, and module-level code (outside functions and classes) that
    reads the environment or probes a device: importing r8 changes and asks nothing."""
    found = [f"{name}:{n.lineno} global" for name, tree in trees.items() for n in ast.walk(tree) if isinstance(n, ast.Global)]
    for name, tree in trees.items():
        for statement in tree.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            text = ast.unparse(statement)
            found += [f"{name}:{statement.lineno} {probe}" for probe in ("os.environ", "os.getenv", "cuda.is_available")
                      if probe in text]
    return found


def test_functions_and_modules_are_short():
    trees = modules()
    assert long_functions(trees) == []
    lines = {name: len((R8 / name).read_text().splitlines()) for name in trees}
    assert {n: count for n, count in lines.items() if count > MAX_MODULE_LINES and n not in LONG_MODULES} == {}
    flat = [n for n in trees if "/" not in n and n not in ("__init__.py", "__main__.py")]
    assert len(flat) <= MAX_FLAT_MODULES, flat


def test_no_module_imports_another_modules_private_name():
    assert private_imports(modules()) == []


def test_importing_r8_has_no_side_effects():
    assert import_time_effects(modules()) == []


def test_the_shape_checks_can_fail():
    bad = {"a.py": ast.parse("import os\nfrom r8.b import _hidden\nTHREADS = os.environ.get('X')\n"
                             "def f():\n    global y\n" + "    y = 1\n" * 60)}
    assert long_functions(bad) == ["a.py:f (62 lines)"]
    assert private_imports(bad) == ["a.py: r8.b._hidden"]
    assert import_time_effects(bad) == ["a.py:5 global", "a.py:3 os.environ"]


# ---- one home per concept: a second one fails here
DROP_KEY = re.compile(r"(\.drop_pp|\[.drop_pp.\])$")  # a row's drop from fp32 (not a search step's validation drop)


def calls_with_drop_key(tree: ast.Module) -> list[int]:
    """Lines that choose among rows by their drop: min / max / sorted keyed on a row's ``drop_pp``."""
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") in ("min", "max", "sorted")
            and any(k.arg == "key" and isinstance(k.value, ast.Lambda) and DROP_KEY.search(ast.unparse(k.value.body))
                    for k in n.keywords)]


def constructed(tree: ast.Module, cls: str) -> list[int]:
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == cls]


def defined(tree: ast.Module, names: set[str]) -> list[str]:
    return [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]


def test_each_concept_has_one_home():
    """"Best" is chosen in rows.py, gates are built in thresholds.py, model folders and descriptions
    live in model.py, and the CLI runs no job logic (no report written, no subprocess started)."""
    trees = modules()
    assert {n: calls_with_drop_key(t) for n, t in trees.items() if calls_with_drop_key(t) and n != "rows.py"} == {}
    assert {n: constructed(t, "Gate") for n, t in trees.items() if constructed(t, "Gate") and n != "thresholds.py"} == {}
    homes = {"describe", "report_dir", "model_dir"}
    assert {n: defined(t, homes) for n, t in trees.items() if defined(t, homes) and n != "model.py"} == {}
    cli_names = {a.name for node in ast.walk(trees["cli.py"]) if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    assert not {n for n in cli_names if n.startswith("write") or n == "subprocess"}


def test_the_concept_checks_can_fail():
    second = ast.parse("best = min(rows, key=lambda r: r.drop_pp)\ng = Gate('x', 1, 2, False)\ndef describe(): pass\n"
                       "worst = max(rows, key=lambda r: r['drop_pp'])\nstep = min(steps, key=lambda s: s.validation_drop_pp)\n")
    assert calls_with_drop_key(second) == [1, 4] and constructed(second, "Gate") == [2] and defined(second, {"describe"}) == ["describe"]


def test_the_public_api_is_exported_from_r8():
    """``r8.convert``, ``r8.load_model``, the jobs and the row types are the objects their modules
    define, and an unknown name is an AttributeError."""
    import importlib

    import r8

    assert {"convert", "load_model", "quantize_job", "search_job", "study_job", "benchmark_job", "Int8Row",
            "best_row", "Gate"} <= set(r8.__all__)
    for name, module in r8.API.items():
        assert getattr(r8, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        r8.nothing  # noqa: B018
