"""How close step sampling is to what the CPU can do: the matmul peak at a thread count, ONNX Runtime's
per-call floor for a graph of a given node count, and a step graph's node count before and after ORT's
optimiser (issue 17; docs/architecture.md, "Step-loop speed").

* The peak is a float32 1024^3 numpy matmul with OpenBLAS limited to ``threads`` (threadpoolctl), so the
  peak fraction of an ORT run at ``--threads 1`` compares one core with one core.
* ONNX Runtime's own peak is the same product as one MatMul node through ORT (MLAS) at ``threads``
  intra-op threads. Where numpy's OpenBLAS runs an older kernel than the CPU has (here: its Haswell AVX2
  kernel on an AVX-512 core) this peak is the higher one, and the bench reports step loops against both.
* The floor is a chain of ``nodes`` Add nodes on a (1, 64) tensor, run through the same call path as the
  step loop (inputs and outputs bound once, ``run_with_iobinding``): what ORT costs per call and per node
  with no arithmetic to speak of. A step graph's batch-1 time is compared with the floor of a graph with
  its optimised node count.
"""
from __future__ import annotations

import collections
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np


def _threads_limited(threads: int | None):
    """Limit BLAS threads for a block (threadpoolctl), or a no-op where threads is None / it is missing."""
    if not threads:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn, an export dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def peak_gflops(threads: int | None = None, n: int = 1024, repeats: int = 10) -> float:
    """float32 n x n @ n x n numpy matmul on ``threads`` BLAS threads (None: BLAS's default), best of
    ``repeats`` after a warm-up: GFLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    with _threads_limited(threads):
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def ort_peak_gflops(threads: int | None = None, n: int = 1024, repeats: int = 10) -> float:
    """float32 n x n @ n x n as one ONNX Runtime MatMul node (MLAS) on ``threads`` intra-op threads (None:
    ORT's default), inputs and output bound once, best of ``repeats`` after a warm-up: GFLOP/s."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    info = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in ("a", "b", "c")]
    model = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                                                info[:2], info[2:]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = _session(model.SerializeToString(), threads)
    rng = np.random.default_rng(0)
    a, b, c = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32), np.empty((n, n), np.float32)
    binding = sess.io_binding()
    binding.bind_cpu_input("a", a)
    binding.bind_cpu_input("b", b)
    binding.bind_ortvalue_output("c", ort.OrtValue.ortvalue_from_numpy(c))
    sess.run_with_iobinding(binding)
    best = min(_timed(lambda: sess.run_with_iobinding(binding)) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _session(model_bytes_or_path, threads: int | None, optimized: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if optimized:
        opts.optimized_model_filepath = optimized
    src = str(model_bytes_or_path) if isinstance(model_bytes_or_path, Path) else model_bytes_or_path
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def add_chain(nodes: int) -> bytes:
    """An ONNX model of ``nodes`` chained Add nodes on a (1, 64) float tensor."""
    from onnx import TensorProto, helper

    names = ["x"] + [f"t{k}" for k in range(1, nodes)] + ["y"]
    graph = helper.make_graph(
        [helper.make_node("Add", [names[k], "one"], [names[k + 1]]) for k in range(nodes)], "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def floor_us(nodes: int, threads: int | None = None, calls: int = 2000) -> float:
    """Microseconds per call of an ``nodes``-node Add chain, bound once and run with ``run_with_iobinding``
    (the step loop's call path), best of 5 blocks after a warm-up."""
    import onnxruntime as ort

    sess = _session(add_chain(max(1, nodes)), threads)
    x, y = np.zeros((1, 64), np.float32), np.zeros((1, 64), np.float32)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(y))
    for _ in range(200):
        sess.run_with_iobinding(binding)
    block = max(1, calls // 5)

    def run_block():
        for _ in range(block):
            sess.run_with_iobinding(binding)

    return min(_timed(run_block) for _ in range(5)) / block * 1e6


def count_nodes(path) -> int:
    """Nodes of an ONNX file, those inside control-flow subgraphs (If, Loop) included."""
    import onnx

    def walk(graph) -> int:
        return sum(1 + sum(walk(a.g) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH)
                   + sum(walk(g) for a in node.attribute for g in a.graphs) for node in graph.node)

    return walk(onnx.load(str(path)).graph)


def node_counts(path, threads: int | None = None) -> dict:
    """The graph's node count as exported and after ORT's optimiser (``optimized_model_filepath``), with
    the optimised graph's op histogram."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="pixelrt-nodes-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        _session(Path(path), threads, optimized=str(out))
        ops = collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node)
        return {"exported": count_nodes(path), "optimized": count_nodes(out), "optimized_ops": dict(ops.most_common())}


def state_bytes_per_image(states) -> int:
    """Bytes of the loop's state tensors for one image (every state's shape without the batch axis)."""
    return int(sum(np.prod(s.shape[1:]) * np.dtype(s.dtype).itemsize for s in states))


def step_speed_report(graphs: dict[str, Path], threads: int | None, log) -> dict:
    """Node counts of each graph and the bound-call floor at the step graph's optimised node count."""
    out = {"graphs": {name: node_counts(p, threads) for name, p in graphs.items()}}
    n = out["graphs"]["step"]["optimized"]
    out["floor_1_node_us"] = floor_us(1, threads)
    out["floor_us"] = floor_us(n, threads)
    if "wave" in out["graphs"]:  # a wavefront call is compared with the floor at its own node count
        out["wave_floor_us"] = floor_us(out["graphs"]["wave"]["optimized"], threads)
    for name, c in out["graphs"].items():
        log(f"{name} graph: {c['exported']} nodes exported, {c['optimized']} after ORT's optimiser")
    log(f"ORT per-call floor (bound, {threads or 'default'} threads): 1 node {out['floor_1_node_us']:.1f} us, "
        f"{n} Add nodes {out['floor_us']:.1f} us" + (f", {out['graphs']['wave']['optimized']} Add nodes "
                                                     f"{out['wave_floor_us']:.1f} us" if "wave" in out["graphs"] else ""))
    return out
