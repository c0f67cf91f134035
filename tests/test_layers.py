"""The import graph points one way: core, then zoo, then backends, then the applications, then the CLIs.

Read from the source with an AST walk (every import statement, function-level ones too, since
those are imports all the same when the function runs), so a cycle cannot hide behind a late
import. Nothing here imports the project.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each top-level package and the layer it sits on; a file may import its own package and lower layers.
LAYERS: dict[str, int] = {
    "kws": 0,  # audio, frontends, labels, data, paths, metrics
    "zoo": 1,  # models, checkpoints
    "backends": 2,  # runtimes, export, quantization
    "training": 3, "inference": 3, "realtime": 3,  # what is built on a model and a runtime
    "bench": 4, "fuzz": 4,  # measures all of the above
    "cli": 5,  # the command lines
}
SCRIPTS = ("train.py", "export.py", "live.py", "predict.py")  # the checkout's entry points: above everything


def project_files() -> list[Path]:
    files = [p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py")]
    return sorted(files + [ROOT / s for s in SCRIPTS] + sorted((ROOT / "scripts").glob("*.py")))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str], name: str | None = None) -> set[str]:
    """The project modules `path` (module `name`) imports: the longest known module name of each import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path) if name is None else name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import mod` imports the module; `from mod import name` imports mod
            names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    out = set()
    for n in names:
        while n and n not in known:
            n = n.rpartition(".")[0]
        if n:
            out.add(n)
    out.discard(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = project_files()
    known = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, known) for p in files}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a path that returns to its start; None when there is none."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (c := visit(n)):
            return c
    return None


def package_of(module: str) -> str:
    return module.split(".")[0]


def test_no_import_cycle_between_files(graph):
    # a package's __init__ re-exports its own modules: that is the package, not a cycle of files
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges) or [])}"


def test_no_import_cycle_between_packages(graph):
    edges: dict[str, set[str]] = {}
    for m, deps in graph.items():
        edges.setdefault(package_of(m), set()).update(package_of(d) for d in deps if package_of(d) != package_of(m))
    assert find_cycle(edges) is None, f"package cycle: {' -> '.join(find_cycle(edges) or [])}"


def test_nothing_imports_upward(graph):
    upward = [f"{m} -> {d}" for m, deps in graph.items() if package_of(m) in LAYERS for d in deps
              if package_of(d) in LAYERS and LAYERS[package_of(d)] > LAYERS[package_of(m)]]
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_every_package_has_a_layer():
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name not in ("tests",)}
    assert found <= set(LAYERS), f"packages without a layer in LAYERS: {sorted(found - set(LAYERS))}"


def test_the_checker_sees_cycles_and_upward_imports(tmp_path):
    # the checks above must be able to fail: a cycle, a late import and a relative one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from backends.export import x\n")
    assert imports_of(src, {"backends", "backends.export"}, "mod") == {"backends.export"}
    src.write_text("from .export import x\n")
    assert imports_of(src, {"backends", "backends.export"}, "backends.mod") == {"backends.export"}
