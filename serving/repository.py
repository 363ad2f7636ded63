"""``pixelrt triton BUNDLE -o REPO``: a Triton model repository for one bundle, written atomically.

Layout (``name`` defaults to the bundle folder's name)::

    REPO/{name}_sample/config.pbtxt       Python backend: pixelrt's step loop, concurrent requests merged
    REPO/{name}_sample/1/model.py         two lines: imports pixelrt.serving.triton_models.SampleModel
    REPO/{name}_sample/1/bundle/          a verified copy of the bundle (manifest, graphs, reference)
    REPO/{name}_loglik/config.pbtxt       onnxruntime_onnx (containers) or Python backend (pixelrt serve)
    REPO/{name}_loglik/1/model.onnx       the bundle's full.onnx (ORT backend), or model.py + bundle/ (Python)

The bundle is copied, not linked: a repository is what gets shipped into a container or onto a Jetson, and each
model directory must stand alone. Every config is parsed against Triton's schema before the repository moves into
place (``config.parse_config``).
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pixelrt.errors import PixelrtError
from pixelrt.serving.config import QUEUE_DELAY_US, loglik_config, parse_config, sample_config

MODEL_PY = '''"""Written by `pixelrt triton` for the bundle in ./bundle: pixelrt's {role} model on Triton's Python backend.
Needs `pip install pixelrt[runtime]` in the server's Python environment (docs/serving.md)."""
from pixelrt.serving.triton_models import {cls} as TritonPythonModel  # noqa: F401
'''
MAX_SAMPLE_BATCH = 64    # images in one step loop: ref28 reaches ~3 ms/image at 64 on one core
MAX_LOGLIK_BATCH = 256   # images per full-graph call (pixelrt eval's default batch)


@dataclass
class Repository:
    root: Path
    sample_model: str
    loglik_model: str
    configs: dict          # model name -> parsed ModelConfig

    def describe(self) -> str:
        rows = [f"{self.root}: Triton model repository"]
        for name, cfg in self.configs.items():
            kind = cfg.platform or f"{cfg.backend} backend"
            extra = " (decoupled)" if cfg.model_transaction_policy.decoupled else ""
            rows.append(f"  {name}: {kind}, max_batch_size {cfg.max_batch_size}, inputs "
                        f"{', '.join(t.name for t in cfg.input)} -> {', '.join(t.name for t in cfg.output)}{extra}")
        rows.append("  configs parsed against Triton's model_config schema (tritonclient model_config_pb2)")
        return "\n".join(rows)


def model_name(bundle, name: str | None) -> str:
    base = name or bundle.root.name
    base = re.sub(r"[^A-Za-z0-9_-]", "_", base).strip("_") or "pixelrt"
    return base


def check_servable(bundle) -> None:
    if bundle.kind != "autoregressive":
        raise PixelrtError(f"{bundle.root} is a {bundle.kind} bundle; pixelrt serves autoregressive bundles "
                           "(one step loop whose batch merges requests). Sample it locally with `pixelrt sample`")


def _copy_bundle(bundle, dest: Path) -> None:
    """The manifest and every file it lists (already verified by load_bundle), nothing else."""
    dest.mkdir(parents=True)
    shutil.copy2(bundle.root / "manifest.json", dest / "manifest.json")
    for rel in bundle.manifest.files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle.root / rel, dest / rel)


def write_repository(bundle, out, name: str | None = None, *, likelihood_backend: str = "onnxruntime",
                     gpu: bool = False, tensorrt: bool = False, runtime: str = "ort", instances: int = 1,
                     max_batch: int = MAX_SAMPLE_BATCH, max_loglik_batch: int = MAX_LOGLIK_BATCH,
                     merge: bool = True, decoupled: bool = False, queue_delay_us: int = QUEUE_DELAY_US,
                     overwrite: bool = False) -> Repository:
    """Write the repository for ``bundle`` (a Bundle or path) at ``out``; returns what was written."""
    from pixelrt.atomic import atomic_directory
    from pixelrt.bundle import Bundle, load_bundle

    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    check_servable(bundle)
    for what, v in (("max batch", max_batch), ("max likelihood batch", max_loglik_batch), ("instances", instances),
                    ("queue delay", queue_delay_us + 1)):
        if not isinstance(v, int) or v < 1:
            raise PixelrtError(f"{what} must be a positive integer, got {v!r}")
    base = model_name(bundle, name)
    names = {"sample": f"{base}_sample", "loglik": f"{base}_loglik"}
    texts = {
        names["sample"]: sample_config(bundle, names["sample"], max_batch, runtime=runtime, gpu=gpu,
                                       instances=instances, merge=merge, decoupled=decoupled,
                                       queue_delay_us=queue_delay_us),
        names["loglik"]: loglik_config(bundle, names["loglik"], max_loglik_batch, backend=likelihood_backend,
                                       gpu=gpu, tensorrt=tensorrt, instances=instances, runtime=runtime),
    }
    configs = {n: parse_config(t, f"{n}/config.pbtxt") for n, t in texts.items()}
    with atomic_directory(out, overwrite=overwrite, protect=(bundle.root,), accept=is_repository,
                          what="Triton model repository") as tmp:
        for model, text in texts.items():
            (tmp / model / "1").mkdir(parents=True)
            (tmp / model / "config.pbtxt").write_text(text)
        sample_dir = tmp / names["sample"] / "1"
        (sample_dir / "model.py").write_text(MODEL_PY.format(role="sampling", cls="SampleModel"))
        _copy_bundle(bundle, sample_dir / "bundle")
        loglik_dir = tmp / names["loglik"] / "1"
        if likelihood_backend == "onnxruntime":
            shutil.copy2(bundle.graph_path("full"), loglik_dir / "model.onnx")
        else:
            (loglik_dir / "model.py").write_text(MODEL_PY.format(role="likelihood", cls="LikelihoodModel"))
            _copy_bundle(bundle, loglik_dir / "bundle")
    return Repository(Path(out), names["sample"], names["loglik"], configs)


def is_repository(root) -> bool:
    """True for a folder ``pixelrt triton`` wrote (every model config carries a ``pixelrt_role`` parameter):
    what ``--force`` may replace."""
    configs = list(Path(root).glob("*/config.pbtxt"))
    return bool(configs) and all("pixelrt_role" in p.read_text(errors="replace") for p in configs)


def validate_repository(root) -> dict:
    """Parse every ``*/config.pbtxt`` under ``root`` against Triton's schema: {model: ModelConfig}."""
    root = Path(root)
    found = sorted(root.glob("*/config.pbtxt"))
    if not found:
        raise PixelrtError(f"{root} holds no */config.pbtxt: not a Triton model repository; write one with "
                           "`pixelrt triton BUNDLE -o REPO`")
    out = {}
    for path in found:
        msg = parse_config(path.read_text(), str(path))
        if msg.name and msg.name != path.parent.name:
            raise PixelrtError(f"{path}: name {msg.name!r} differs from its folder {path.parent.name!r}")
        out[path.parent.name] = msg
    return out
