"""Triton model configs (``config.pbtxt``) written from a bundle's manifest, and checked against Triton's schema.

Nothing here is typed by hand per bundle: names, data types and dims come from the manifest's graph and
conditioning records, so a config cannot drift from the graph it serves. Each text is parsed with protobuf's
text format into ``tritonclient``'s ``model_config_pb2.ModelConfig`` (the schema Triton itself loads), so a
misspelt field or a wrong enum fails here, at write time, not when a server in a container loads it.

Two models per bundle:

* ``{name}_loglik``: the full graph, per-image ``loglik`` and ``logp``. ``platform: "onnxruntime_onnx"`` for
  NVIDIA's containers (optionally the TensorRT accelerator on GPU instances), or the Python backend running the
  same graph in pixelrt's ORT runtime (``pixelrt serve``: the ``nvidia-pytriton`` server has no ORT backend).
* ``{name}_sample``: the Python backend running pixelrt's step loop; the batch axis is images, so Triton's
  ``max_batch_size`` bounds the images in one loop and rejects an oversized request itself. Decoupled
  (``--decoupled``), it streams one response per finished raster row (``row``, ``row_images``, ``row_logp``)
  before the final one (``images``, ``logp``, ``loglik``).
"""
from __future__ import annotations

import json

from pixelrt.errors import PixelrtError

# manifest dtype -> Triton data type (model_config.proto DataType)
DTYPES = {"uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "float16": "TYPE_FP16",
          "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bool": "TYPE_BOOL"}
# How long the dynamic batcher may hold a sampling request to fill a batch: long enough for closed-loop clients
# whose answers just came back to ask again (5 ms gave mean batches of ~35 of 64 clients on this loaded box, 50 ms
# ~53; docs/serving.md), small next to one ref28 step loop (~50 ms at batch 1 idle, ~200 ms at 64); a lone client
# pays it once per request.
QUEUE_DELAY_US = 20000
LOGLIK_QUEUE_DELAY_US = 2000  # one full-graph call takes milliseconds: a short wait is all a batch is worth


def _io(name: str, dtype: str, dims, scalar: bool = False) -> str:
    """One input/output entry; a per-image scalar is dims [1] reshaped to [] (Triton's form for shape [batch])."""
    if dtype not in DTYPES:
        raise PixelrtError(f"tensor {name!r} has dtype {dtype!r}, which Triton cannot carry; "
                           f"supported: {', '.join(DTYPES)}")
    dims = [1] if scalar else [int(d) for d in dims]
    reshape = " reshape: { shape: [ ] }" if scalar else ""
    return f'  {{ name: "{name}" data_type: {DTYPES[dtype]} dims: [ {", ".join(map(str, dims))} ]{reshape} }}'


def _param(key: str, value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return f"parameters {{ key: {json.dumps(key)} value: {{ string_value: {json.dumps(text)} }} }}"


def _section(title: str, entries: list[str]) -> str:
    return f"{title} [\n" + ",\n".join(entries) + "\n]"


def context_records(bundle) -> list[dict]:
    """The conditioning inputs as plain data (name, dtype, per-image shape, kind, classes) for configs and clients."""
    recs = {r.name: r for r in bundle.manifest.conditioning}
    out = []
    for name in bundle.context:
        r = recs.get(name)
        if r is None:
            raise PixelrtError(f"{bundle.root}: the schedule names the input {name!r} but the manifest has no "
                               "conditioning record for it; re-export the bundle")
        out.append({"name": r.name, "dtype": r.dtype, "shape": list(r.shape), "kind": r.kind, "classes": r.classes})
    return out


def _context_io(bundle) -> list[str]:
    return [_io(c["name"], c["dtype"], c["shape"], scalar=not c["shape"]) for c in context_records(bundle)]


def _common_params(bundle, role: str) -> list[str]:
    img = bundle.image
    return [_param("pixelrt_role", role),
            _param("pixelrt_image", [img.channels, img.height, img.width, img.levels]),
            _param("pixelrt_family", bundle.family),
            _param("pixelrt_context", context_records(bundle))]


def _instances(gpu: bool, count: int) -> str:
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    return f"instance_group [ {{ kind: {kind} count: {int(count)} }} ]"


def sample_config(bundle, name: str, max_batch: int, runtime: str = "ort", gpu: bool = False, instances: int = 1,
                  merge: bool = True, decoupled: bool = False, queue_delay_us: int = QUEUE_DELAY_US) -> str:
    """The Python-backend sampling model: one row per image (``seed`` repeated, context per image)."""
    C, H, W = bundle.image.shape
    inputs = [_io("seed", "int64", [1])] + _context_io(bundle)
    outputs = [_io("images", "uint8", [C, H, W]), _io("logp", "float32", [C, H, W]), _io("loglik", "float64", [1])]
    if decoupled:  # streamed responses, one per finished raster row, before the final one with the three above
        outputs += [_io("row", "int64", [1]), _io("row_images", "uint8", [C, W]), _io("row_logp", "float32", [C, W])]
    parts = [f'name: "{name}"', 'backend: "python"', f"max_batch_size: {int(max_batch)}",
             _section("input", inputs), _section("output", outputs),
             f"dynamic_batching {{ max_queue_delay_microseconds: {int(queue_delay_us)} }}",
             _instances(gpu, instances),
             *_common_params(bundle, "sample"),
             _param("pixelrt_runtime", runtime),
             _param("pixelrt_merge", "true" if merge else "false")]
    if decoupled:
        parts.append("model_transaction_policy { decoupled: true }")
    return "\n".join(parts) + "\n"


def loglik_config(bundle, name: str, max_batch: int, backend: str = "onnxruntime", gpu: bool = False,
                  tensorrt: bool = False, instances: int = 1, runtime: str = "ort") -> str:
    """The likelihood model: the full graph's inputs and outputs, as the manifest records them."""
    full = bundle.graphs["full"]
    x = full.input("x")
    if x is None or full.output("loglik") is None or full.output("logp") is None:
        raise PixelrtError(f"{bundle.root}: the full graph lacks x / loglik / logp; only autoregressive bundles serve")
    inputs = [_io("x", x.dtype, x.shape[1:])] + _context_io(bundle)
    logp = full.output("logp")
    outputs = [_io("loglik", full.output("loglik").dtype, [], scalar=True), _io("logp", logp.dtype, logp.shape[1:])]
    if backend == "onnxruntime":
        head = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', 'default_model_filename: "model.onnx"']
    elif backend == "python":
        head = [f'name: "{name}"', 'backend: "python"']
    else:
        raise PixelrtError(f"unknown likelihood backend {backend!r}; choose onnxruntime or python")
    if tensorrt and not (gpu and backend == "onnxruntime"):
        raise PixelrtError("the TensorRT accelerator runs inside the ORT backend on GPU instances; "
                           "pass --gpu with --likelihood-backend onnxruntime")
    parts = [*head, f"max_batch_size: {int(max_batch)}", _section("input", inputs), _section("output", outputs),
             f"dynamic_batching {{ max_queue_delay_microseconds: {LOGLIK_QUEUE_DELAY_US} }}",
             _instances(gpu, instances),
             *_common_params(bundle, "loglik")]
    if backend == "python":
        parts.append(_param("pixelrt_runtime", runtime))
    if tensorrt:
        parts.append('optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" '
                     'parameters { key: "precision_mode" value: "FP32" } '
                     'parameters { key: "max_workspace_size_bytes" value: "2147483648" } } ] } }')
    return "\n".join(parts) + "\n"


def parse_config(text: str, where: str = "config.pbtxt"):
    """Parse a config.pbtxt into Triton's ModelConfig message (tritonclient's model_config_pb2).

    Raises PixelrtError naming the file and protobuf's message when the text does not fit the schema, and when
    it fits but breaks a rule Triton checks at load time (dynamic batching needs max_batch_size > 0; names unique)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise PixelrtError(f"checking Triton configs needs tritonclient[grpc] ({e.name} is missing); "
                           "pip install 'pixelrt[serve]'") from None
    msg = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        raise PixelrtError(f"{where} does not fit Triton's model-config schema: {e}") from None
    if msg.HasField("dynamic_batching") and msg.max_batch_size < 1:
        raise PixelrtError(f"{where}: dynamic batching needs max_batch_size >= 1")
    names = [t.name for t in msg.input] + [t.name for t in msg.output]
    if len(set(names)) != len(names) or not msg.input or not msg.output:
        raise PixelrtError(f"{where}: inputs and outputs must be present and uniquely named, got {names}")
    for t in [*msg.input, *msg.output]:
        if not t.dims or any(d < 1 for d in t.dims):
            raise PixelrtError(f"{where}: tensor {t.name!r} has dims {list(t.dims)}; every dim must be >= 1")
    return msg


def parameters(msg) -> dict:
    """A parsed config's ``parameters`` as {key: string}."""
    return {k: v.string_value for k, v in msg.parameters.items()}
