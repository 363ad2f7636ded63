"""The bundle contract is the bottom layer: models, export, calibration and the runtime import it, it imports
none of them, nor torch or onnxruntime; only its writer (used by export and calibration) imports onnx."""
import ast
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
NEVER = ("torch", "onnxruntime", "pixelrt.runtime", "pixelrt.export", "pixelrt.models", "pixelrt.calibration")


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_bundle_package_imports_no_higher_layer():
    files = sorted(BUNDLE.glob("*.py"))
    assert len(files) >= 7
    bad = {p.name: sorted(m for m in _imports(p) if any(m == n or m.startswith(n + ".") for n in NEVER))
           for p in files}
    assert {k: v for k, v in bad.items() if v} == {}
    onnx_users = sorted(p.name for p in files if any(m == "onnx" or m.startswith("onnx.") for m in _imports(p)))
    assert onnx_users == ["writer.py"]
