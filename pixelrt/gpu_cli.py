"""`pixelrt doctor` and `pixelrt build-engine`: the GPU-side commands, registered by pixelrt.cli.

Both run on any machine up to the point where a GPU is really needed: doctor never needs one
(it reads the graphs with `onnx`), build-engine prints the memory estimate and then names what is
missing (TensorRT, cuda-python, a CUDA device) in one error line.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util

from pixelrt.argtypes import int_range
from pixelrt.errors import PixelrtError

TARGETS = ("tensorrt",)


def environment() -> list[tuple[str, str]]:
    """(component, status) for everything the GPU runtimes need; imports nothing heavy."""
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    rows = []
    trt = version("tensorrt") or (version("tensorrt-cu12") or version("tensorrt-cu13") or
                                  ("found (JetPack)" if importlib.util.find_spec("tensorrt") else None))
    rows.append(("tensorrt", trt or "missing: pip install tensorrt (Jetson: comes with JetPack)"))
    rows.append(("cuda-python", version("cuda-python") or version("cuda-bindings") or "missing: pip install cuda-python"))
    ort_gpu = version("onnxruntime-gpu")
    providers = "?"
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime

        providers = ", ".join(p.replace("ExecutionProvider", "") for p in onnxruntime.get_available_providers())
    rows.append(("onnxruntime-gpu", f"{ort_gpu} (providers: {providers})" if ort_gpu else
                 f"missing (onnxruntime {version('onnxruntime') or '-'}, providers: {providers})"))
    rows.append(("onnx", version("onnx") or "missing: pip install onnx (needed by doctor and the memory estimate)"))
    return rows


def add_commands(sub) -> None:
    from pixelrt.runtime.trt_profiles import PROFILES

    p = sub.add_parser("doctor", help="check a bundle's graphs against a deployment target (TensorRT)",
                       description="Lists every op, data type and dynamic-shape pattern of the bundle's graphs that "
                                   "TensorRT's ONNX parser does not support (from its published operator matrix), "
                                   "with node names, reports the GPU environment, and prints the memory estimate of "
                                   "a build profile. Needs no GPU. Exits 1 when a graph would not build.")
    p.add_argument("bundle", help="bundle folder written by `pixelrt export` or `pixelrt calibrate`")
    p.add_argument("--target", choices=TARGETS, default="tensorrt", help="deployment target (default: %(default)s)")
    p.add_argument("--profile", choices=list(PROFILES), default="server",
                   help="build profile for the memory estimate (default: %(default)s)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("build-engine", help="build (or reuse) cached TensorRT engines for a bundle's graphs",
                       description="Like trtexec, per bundle graph and cached: the engine is keyed by the ONNX "
                                   "sha256, GPU, compute capability, TensorRT version and these options, built once "
                                   "under a file lock, and rebuilt (never loaded) on another GPU or TensorRT. "
                                   "Precision comes from the graph: build the FP16/INT8 bundle of `pixelrt calibrate`.")
    p.add_argument("bundle", help="bundle folder written by `pixelrt export` or `pixelrt calibrate`")
    p.add_argument("--profile", choices=list(PROFILES), default="server",
                   help="; ".join(f"{k}: {v.note}" for k, v in PROFILES.items()) + " (default: %(default)s)")
    p.add_argument("--dla-core", type=int_range(0, 1), default=None, metavar="N",
                   help="DLA core for the full graph, with GPU fallback (jetson-agx-orin: 0 or 1; default: the "
                        "profile's)")
    p.add_argument("--no-dla", action="store_true", help="build every graph for the GPU only")
    p.add_argument("--max-batch", type=int_range(1, 65536), default=None, help="largest batch the engines accept (default: the profile's)")
    p.add_argument("--workspace-mib", type=int_range(16, 1 << 20), default=None, help="builder workspace pool (default: the profile's)")
    p.add_argument("--no-tf32", action="store_true", help="disable TF32 in FP32 layers (parity runs)")
    p.add_argument("--graphs", default=None,
                   help="comma-separated bundle graphs to build (default: every graph TensorRT runs: full, step and "
                        "its per-row graph if it has one; a wavefront graph runs on ONNX Runtime only)")
    p.add_argument("--cache", default=None, help="engine cache folder (default: $PIXELRT_ENGINE_CACHE or ~/.cache/pixelrt/engines)")
    p.set_defaults(func=cmd_build_engine)


def _profile(args):
    from pixelrt.runtime.trt_profiles import get_profile

    dla = getattr(args, "dla_core", None)
    dla = None if getattr(args, "no_dla", False) else -1 if dla is None else dla  # -1: the profile's
    return get_profile(args.profile).with_options(
        batch_max=getattr(args, "max_batch", None), dla_core=dla,
        tf32=False if getattr(args, "no_tf32", False) else None, workspace_mib=getattr(args, "workspace_mib", None))


def cmd_doctor(args: argparse.Namespace) -> int:
    from pixelrt.bundle import load_bundle, sub_bundles
    from pixelrt.runtime.graph_check import check_bundle_graphs
    from pixelrt.runtime.trt_profiles import estimate_memory, precision_advice
    from pixelrt.runtime.trt_support import check_bundle, format_checks

    bundle = load_bundle(args.bundle)  # the manifest, containment and checksums, as every command
    parts = [("", bundle)] + [(d + "/", b) for d, b in sub_bundles(bundle)]  # composite bundles: every part
    checks = []
    for prefix, part in parts:
        for c in check_bundle(part):
            c.graph, c.file = prefix + c.graph, prefix + c.file
            checks.append(c)
    print(format_checks(checks))
    print("environment:")
    for name, status in environment():
        print(f"  {name:16s} {status}")
    profile = _profile(args)
    for prefix, part in parts:
        print(estimate_memory(part, profile).table(profile.name + (f", {prefix[:-1]}/" if prefix else "")))
    advice = precision_advice(profile, bundle.precision)
    if advice:
        print(f"note: {advice}")
    bad = [c for c in checks if c.errors]
    if bad:
        print(f"TensorRT would reject {', '.join(c.file for c in bad)}; fix the nodes above and re-export")
    check_bundle_graphs(bundle)  # every graph against the manifest (names, types, dims, identity): exit 2 on a miss
    if bad:
        return 1
    print(f"all {len(checks)} graphs pass the TensorRT parser check")
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    from pixelrt.bundle import load_bundle, sub_bundles
    from pixelrt.runtime.trt_profiles import estimate_memory, precision_advice

    bundle = load_bundle(args.bundle)
    profile = _profile(args)
    parts = {"": bundle, **{d + "/": b for d, b in sub_bundles(bundle)}}  # composite bundles: every part
    from pixelrt.runtime.trt_support import trt_graphs

    every = [prefix + g for prefix, part in parts.items() for g in trt_graphs(part)]  # a wavefront graph is ORT's
    graphs = every if args.graphs is None else [g.strip() for g in args.graphs.split(",") if g.strip()]
    targets = []
    for g in graphs:
        prefix, _, name = g.rpartition("/")
        part = parts.get(prefix + "/" if prefix else "")
        if part is None or name not in trt_graphs(part):
            raise PixelrtError(f"--graphs: {bundle.root} has no graph {g!r}; it has: {', '.join(every)}")
        targets.append((g, part, name))
    from pixelrt.runtime.graph_check import check_graph_file

    for _, part, name in targets:  # every graph to build, against the manifest, before any engine is built
        check_graph_file(part.graph_path(name))
    for prefix, part in parts.items():
        print(estimate_memory(part, profile).table(profile.name + (f", {prefix[:-1]}/" if prefix else "")))
    advice = precision_advice(profile, bundle.precision)
    if advice:
        print(f"note: {advice}")
    print(f"engines to build: {', '.join(graphs)}")
    from pixelrt.runtime.cuda_runtime import modules
    from pixelrt.runtime.engine_cache import EngineCache
    from pixelrt.runtime.trt_backend import build_serialized, current_device, import_tensorrt

    import_tensorrt()
    modules()
    device = current_device()
    cache = EngineCache(device, args.cache)
    print(f"building for {device.gpu} (sm {device.compute_capability}), TensorRT {device.tensorrt}, cache {cache.root}")
    for label, part, g in targets:
        options = profile.options(g)
        data = cache.get_or_build(part.graph_path(g), options, lambda p, o: build_serialized(p, o, {}))
        print(f"  {label}: {len(data) / 2**20:.1f} MiB engine, batch {options['batch'][0]}..{options['batch'][2]}, "
              f"DLA {options['dla_core'] if options['dla_core'] is not None else 'off'}, TF32 {'on' if options['tf32'] else 'off'}")
    return 0
