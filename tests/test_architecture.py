"""The layout shows the architecture (docs/architecture.md): who may import whom, and no import circles.

Every import counts, at module level or inside a function (a function-level import that exists to hold a
circle open is still a circle); only ``if TYPE_CHECKING:`` imports are annotations, not dependencies.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"pixelrt": "pixelrt", "bundle": "pixelrt.bundle", "models": "pixelrt.models",
            "export": "pixelrt.export", "runtime": "pixelrt.runtime", "calibration": "pixelrt.calibration",
            "bench": "pixelrt.bench", "parity": "pixelrt.parity", "serving": "pixelrt.serving"}
# layer -> packages it must never import (the CLI and the demo in pixelrt/ wire everything together)
FORBIDDEN = {
    "pixelrt.models": ("pixelrt.runtime", "pixelrt.export", "pixelrt.calibration", "pixelrt.bench",
                       "pixelrt.parity", "onnxruntime", "onnx"),
    "pixelrt.export": ("pixelrt.calibration", "pixelrt.bench", "pixelrt.parity"),
    "pixelrt.runtime": ("pixelrt.models", "pixelrt.export", "pixelrt.calibration", "pixelrt.bench",
                        "pixelrt.parity", "torch"),
    "pixelrt.calibration": ("pixelrt.models", "pixelrt.export", "pixelrt.bench", "pixelrt.parity", "torch"),
    "pixelrt.serving": ("pixelrt.models", "pixelrt.export", "pixelrt.calibration", "pixelrt.bench", "pixelrt.parity",
                        "torch"),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([package, *parts])] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def _imports(path: Path, mods: dict) -> set[str]:
    """Absolute names imported; ``from pkg import sub`` names the submodule when it is one."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
            out.update(subs if len(subs) == len(node.names) else [node.module, *subs])
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(p, mods) if i in mods and i != m} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_layer_imports_only_what_it_may():
    mods = _modules()
    bad = {}
    for name, path in mods.items():
        for layer, never in FORBIDDEN.items():
            if name == layer or name.startswith(layer + "."):
                hits = sorted(i for i in _imports(path, mods) if any(i == n or i.startswith(n + ".") for n in never))
                if hits:
                    bad[name] = hits
    assert bad == {}


def test_export_holds_only_the_exporter():
    """Bench and torch-side parity live in their own packages; export/ is the exporter, trace, validator, kinds."""
    assert sorted(p.name for p in (ROOT / "export").glob("*.py")) == [
        "__init__.py", "api.py", "exporter.py", "kinds.py", "trace.py", "validator.py"]
