"""The deployed runtime never needs torch.

Dynamic checks run a fresh interpreter in which ``import torch`` fails (as on a
``pip install pixelrt[runtime]`` device) and sample, evaluate and run the CLI
there; the static check walks the torch-free packages' source with ``ast``.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Installed into a fresh interpreter: ``import torch`` (and any torch.*) raises
# ModuleNotFoundError, exactly as on a runtime-only install; at exit the
# interpreter reports which modules it loaded so the parent test can assert on them.
BLOCKER = textwrap.dedent('''
    import atexit, json, os, sys

    class _NoTorch:
        """Meta-path finder: torch is not installed here."""
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the no-torch test)", name=name)
            return None

    sys.meta_path.insert(0, _NoTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        _blocked = True
    else:
        _blocked = False

    def _report():
        out = os.environ.get("PIXELRT_MODULES_OUT")
        if out:
            with open(out, "w") as f:
                json.dump({"blocked": _blocked, "modules": sorted(sys.modules)}, f)

    atexit.register(_report)
''')

FORBIDDEN = ("torch", "pixelrt.models", "pixelrt.export", "pixelrt.parity", "pixelrt.bench")


def _forbidden(modules) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def _env(tmp_path: Path, sitecustomize: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIXELRT_MODULES_OUT"] = str(tmp_path / "modules.json")
    if sitecustomize:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(BLOCKER)
        env["PYTHONPATH"] = str(site)
    return env


def _modules(tmp_path: Path) -> dict:
    report = json.loads((tmp_path / "modules.json").read_text())
    assert report["blocked"], "the torch blocker was not active: the test proves nothing"
    return report


SAMPLE_AND_EVAL = BLOCKER + textwrap.dedent('''
    import json, sys
    import numpy as np
    from pixelrt.bundle import load_bundle
    from pixelrt.runtime.evaluate import evaluate
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.sampler import make_noise, step_loop

    bundle = load_bundle(sys.argv[1])
    noise = make_noise(2, bundle.image, 0)
    with OrtBackend(bundle.graph_path("step")) as step:
        res = step_loop(step, bundle.image, bundle.state, noise)
    ref = bundle.reference()
    with OrtBackend(bundle.graph_path("full")) as full:
        ev = evaluate(full, bundle, ref["x"])
        again = evaluate(full, bundle, res.images)
    print(json.dumps({
        "shape": list(res.images.shape), "dtype": str(res.images.dtype),
        "min": int(res.images.min()), "max": int(res.images.max()),
        "step_loglik": res.loglik.tolist(), "full_loglik_of_samples": again.loglik.tolist(),
        "ref_loglik": ev.loglik.tolist(), "manifest_loglik": list(bundle.manifest.reference.loglik_nats),
    }))
''')


def test_sample_and_evaluate_without_torch(grey_bundle, tmp_path):
    root = grey_bundle[1].root
    proc = subprocess.run([sys.executable, "-c", SAMPLE_AND_EVAL, str(root)], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["shape"] == [2, 1, 5, 6] and r["dtype"] == "uint8"
    assert 0 <= r["min"] and r["max"] <= 6
    # the reference batch gives the log-likelihood measured by PyTorch at export time
    assert len(r["ref_loglik"]) == len(r["manifest_loglik"]) == 5
    for got, want in zip(r["ref_loglik"], r["manifest_loglik"]):
        assert abs(got - want) < 1e-4, (r["ref_loglik"], r["manifest_loglik"])
    # the step loop's summed log-probs of its own samples agree with the full graph
    for got, want in zip(r["step_loglik"], r["full_loglik_of_samples"]):
        assert abs(got - want) < 1e-4
    report = _modules(tmp_path)
    assert _forbidden(report["modules"]) == []
    assert "onnxruntime" in report["modules"] and "pixelrt.runtime.sampler" in report["modules"]


def test_cli_sample_and_info_without_torch(grey_bundle, tmp_path):
    root = grey_bundle[1].root
    png = tmp_path / "out" / "grid.png"
    env = _env(tmp_path, sitecustomize=True)

    proc = subprocess.run([sys.executable, "-m", "pixelrt.cli", "sample", str(root), "-n", "2", "-o", str(png),
                           "--no-progress"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sampled 2 images" in proc.stdout
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob(".*.tmp"))  # the grid is written atomically
    report = _modules(tmp_path)
    assert _forbidden(report["modules"]) == []

    (tmp_path / "modules.json").unlink()
    proc = subprocess.run([sys.executable, "-m", "pixelrt.cli", "info", str(root)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "checksums verified" in proc.stdout
    assert _forbidden(_modules(tmp_path)["modules"]) == []


def test_cli_error_without_torch(tmp_path):
    """A user error on a torch-free install is still one line and exit 2, not an ImportError."""
    env = _env(tmp_path, sitecustomize=True)
    proc = subprocess.run([sys.executable, "-m", "pixelrt.cli", "sample", str(tmp_path / "missing"), "-n", "1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixelrt sample: error: ") and "does not exist" in lines[0]
    assert _forbidden(_modules(tmp_path)["modules"]) == []


PYTHON_API = BLOCKER + textwrap.dedent('''
    import json, sys
    import pixelrt

    out = {}
    for root in sys.argv[1:]:
        b = pixelrt.load(root)
        s = pixelrt.sample(b, 2, seed=0)
        scores = pixelrt.evaluate(b, b.reference()["x"], iwae=4 if b.manifest.latent else None)
        ref = pixelrt.check_reference(b)
        out[b.kind] = {"shape": list(s.images.shape), "dtype": str(s.images.dtype), "scored": len(scores.nats),
                       "drift": ref.drift, "budget": ref.budget}
    print(json.dumps(out))
''')


def test_python_api_on_every_kind_without_torch(grey_bundle, vae_grey_bundle, multiscale_bundle, pixelvae_bundle,
                                                 tmp_path):
    """pixelrt.sample / evaluate / check_reference (runtime/pipelines/) for each bundle kind, torch blocked."""
    bundles = [f[1] for f in (grey_bundle, vae_grey_bundle, multiscale_bundle, pixelvae_bundle)]
    proc = subprocess.run([sys.executable, "-c", PYTHON_API, *(str(b.root) for b in bundles)], capture_output=True,
                          text=True, env=_env(tmp_path), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(r) == ["autoregressive", "multiscale", "pixelvae", "vae"]
    for b in bundles:
        got = r[b.kind]
        assert got["shape"] == [2, *b.image.shape] and got["dtype"] == "uint8"
        assert got["scored"] == b.manifest.reference.images and got["drift"] <= got["budget"]
    report = _modules(tmp_path)
    assert _forbidden(report["modules"]) == []
    assert "pixelrt.runtime.pipelines" in report["modules"] and "onnxruntime" in report["modules"]


# ---------------------------------------------------------------- static check

# Folders whose every module must import without torch, and the package each maps to (setup.py package_dir).
TORCH_FREE = {"pixelrt": "pixelrt", "bundle": "pixelrt.bundle", "runtime": "pixelrt.runtime",
              "calibration": "pixelrt.calibration", "serving": "pixelrt.serving"}

# The CLI is shared by runtime and export installs: these commands need the export extra and import
# torch-side modules lazily inside the function. Everything else (parser, main, sample, eval, info,
# every module's top level) must stay torch-free. Extend this only for a command that trains or exports.
LAZY_EXPORT_COMMANDS = {
    "pixelrt/cli_model.py": {"cmd_train", "cmd_export", "cmd_parity", "_receptive_field", "_precision_parity",
                             "cmd_bench", "cmd_demo"},
    "pixelrt/demo.py": {"run_demo"},
    "pixelrt/serve_cli.py": {"_bench"},  # `pixelrt serve --bench` without a bundle builds the ref28 model
    "pixelrt/convert_cli.py": {"cmd_convert", "cmd_import_pclucas", "load_module_class"},  # PyTorch models in
}


def _imported_names(node: ast.AST, package: str) -> list[str]:
    """Absolute module names an import node (or __import__/import_module call) may load."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            mod = f"{base}.{node.module}" if node.module else base
        else:
            mod = node.module or ""
        return [mod] + [f"{mod}.{a.name}" for a in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in ("__import__", "import_module"):
            return [node.args[0].value]
    return []


def _violations() -> list[str]:
    found = []
    for folder, package in TORCH_FREE.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            tree = ast.parse(path.read_text(), filename=rel)
            allowed = LAZY_EXPORT_COMMANDS.get(rel, set())

            def visit(node, func_stack):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    func_stack = func_stack + [node.name]
                bad = _forbidden(_imported_names(node, package))
                if bad and not (set(func_stack) & allowed):
                    where = ".".join(func_stack) or "<module>"
                    found.append(f"{rel}:{node.lineno} ({where}) imports {', '.join(bad)}")
                for child in ast.iter_child_nodes(node):
                    visit(child, func_stack)

            visit(tree, [])
    return found


def test_runtime_sources_never_import_torch():
    assert _violations() == []


def test_static_check_covers_the_pipelines():
    """runtime/pipelines/ (the kind table behind pixelrt.sample / evaluate) is walked like the rest of runtime/."""
    scanned = {p.relative_to(REPO).as_posix() for p in (REPO / "runtime").rglob("*.py")}
    assert {"runtime/pipelines/__init__.py", "runtime/pipelines/base.py"} <= scanned


def test_static_check_sees_nested_and_relative_imports(tmp_path):
    """The checker itself: a nested, a relative and a dynamic import are all caught."""
    src = textwrap.dedent('''
        import numpy
        def f():
            if True:
                from ..models import pixelcnn
        class C:
            def g(self):
                import torch.nn as nn
        __import__("pixelrt.export.bundle_writer")
        from pixelrt import export
    ''')
    tree = ast.parse(src)
    hits = [(getattr(n, "lineno", 0), _forbidden(_imported_names(n, "pixelrt.runtime"))) for n in ast.walk(tree)]
    hits = sorted((line, bad) for line, bad in hits if bad)
    assert hits == [(5, ["pixelrt.models", "pixelrt.models.pixelcnn"]), (8, ["torch.nn"]),
                    (9, ["pixelrt.export.bundle_writer"]), (10, ["pixelrt.export"])]


@pytest.mark.parametrize("folder", sorted(TORCH_FREE))
def test_torch_free_folders_exist(folder):
    assert (REPO / folder / "__init__.py").is_file()
