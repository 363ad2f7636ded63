"""`pixelrt triton`, `pixelrt triton-check`, `pixelrt serve` and `pixelrt sample --url`: serving on Triton
Inference Server (docs/serving.md), registered by pixelrt.cli. Torch-free except `serve --bench` without a
bundle, which builds the ref28 bench model (export extra).
"""
from __future__ import annotations

import signal
import time


from pixelrt.argtypes import int_range, nonnegative, positive
from pixelrt.errors import PixelrtError

PORT = int_range(1, 65535, "a TCP port")


def add_commands(sub) -> None:
    p = sub.add_parser("triton", help="write a Triton Inference Server model repository for a bundle",
                       description="Two models per bundle, their config.pbtxt written from the manifest and parsed "
                                   "against Triton's model-config schema: NAME_loglik (full.onnx on the ONNX Runtime "
                                   "backend, or the Python backend) and NAME_sample (the Python backend running "
                                   "pixelrt's step loop; concurrent requests merged into one loop). The server's "
                                   "Python needs pixelrt[runtime]. See docs/serving.md for NVIDIA's containers and "
                                   "Jetson.")
    p.add_argument("bundle", help="an autoregressive bundle written by `pixelrt export`")
    p.add_argument("-o", "--out", required=True, help="repository folder to write")
    p.add_argument("--name", default=None, help="model name prefix (default: the bundle folder's name)")
    p.add_argument("--likelihood-backend", choices=["onnxruntime", "python"], default="onnxruntime",
                   help="onnxruntime: Triton's ORT backend runs full.onnx (NVIDIA's containers); python: pixelrt's "
                        "ORT runtime inside the Python backend (what `pixelrt serve` uses) (default: %(default)s)")
    p.add_argument("--gpu", action="store_true", help="KIND_GPU instances (with --runtime ort-cuda or trt for sampling)")
    p.add_argument("--tensorrt", action="store_true", help="TensorRT accelerator for the ORT-backend likelihood model")
    p.add_argument("--runtime", default="ort", help="pixelrt runtime of the Python-backend models (default: %(default)s)")
    p.add_argument("--instances", type=positive, default=1, help="model instances per device (default: %(default)s)")
    p.add_argument("--max-batch", type=positive, default=64, help="images in one sampling loop (default: %(default)s)")
    p.add_argument("--max-loglik-batch", type=positive, default=256, help="images per likelihood call (default: %(default)s)")
    p.add_argument("--exact", action="store_true",
                   help="run each sampling request in its own loop: log-probs bit-identical to local sampling "
                        "whatever else is queued, at the cost of batching (docs/serving.md)")
    p.add_argument("--queue-delay-us", type=nonnegative, default=20000,
                   help="how long the batcher may hold a sampling request to fill a loop (default: %(default)s)")
    p.add_argument("--decoupled", action="store_true",
                   help="decoupled sampling model: one streamed response per finished raster row, then the images "
                        "(gRPC clients; pixelrt.connect(...).sample(..., on_row=...))")
    p.add_argument("--force", action="store_true", help="replace a repository pixelrt wrote at -o")
    p.set_defaults(func=cmd_triton)

    p = sub.add_parser("triton-check", help="parse every config.pbtxt of a model repository against Triton's schema")
    p.add_argument("repository", help="a Triton model repository folder (one sub-folder with config.pbtxt per model)")
    p.set_defaults(func=cmd_triton_check)

    p = sub.add_parser("serve", help="start a Triton Inference Server on this machine for a bundle",
                       description="Writes a Python-backend repository for the bundle (nvidia-pytriton's tritonserver "
                                   "carries only the Python backend) and runs the server until interrupted. "
                                   "Clients: `pixelrt sample --url URL`, pixelrt.connect(URL). With --bench: times "
                                   "1, 8 and 64 concurrent clients against the in-process step loop and exits.")
    p.add_argument("bundle", nargs="?", default=None, help="bundle to serve (with --bench: default the ref28 model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)")
    p.add_argument("--http-port", type=PORT, default=8000, help="KServe v2 HTTP port (default: %(default)s)")
    p.add_argument("--grpc-port", type=PORT, default=8001, help="KServe v2 gRPC port (default: %(default)s)")
    p.add_argument("--work", default=None,
                   help="folder for the repository and the server log, kept (default: a temporary one, removed)")
    p.add_argument("--max-batch", type=positive, default=64, help="images in one sampling loop (default: %(default)s)")
    p.add_argument("--exact", action="store_true", help="one loop per request (see `pixelrt triton --exact`)")
    p.add_argument("--queue-delay-us", type=nonnegative, default=20000,
                   help="how long the batcher may hold a sampling request to fill a loop (default: %(default)s)")
    p.add_argument("--bench", action="store_true", help="run the serving benchmark and exit")
    p.add_argument("--clients", default="1,8,64", help="--bench: concurrent clients (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=8.0, help="--bench: seconds per point (default: %(default)s)")
    p.add_argument("--json", default=None, help="--bench: write the records here")
    p.set_defaults(func=cmd_serve)


def cmd_triton(args) -> int:
    from pixelrt.serving.repository import write_repository

    repo = write_repository(args.bundle, args.out, args.name, likelihood_backend=args.likelihood_backend,
                            gpu=args.gpu, tensorrt=args.tensorrt, runtime=args.runtime, instances=args.instances,
                            max_batch=args.max_batch, max_loglik_batch=args.max_loglik_batch, merge=not args.exact,
                            queue_delay_us=args.queue_delay_us, decoupled=args.decoupled, overwrite=args.force)
    print(repo.describe())
    return 0


def cmd_triton_check(args) -> int:
    from pixelrt.serving.repository import validate_repository

    for name, cfg in validate_repository(args.repository).items():
        print(f"{name}: {cfg.platform or cfg.backend}, max_batch_size {cfg.max_batch_size}: fits Triton's schema")
    return 0


def cmd_serve(args) -> int:
    import tempfile
    from pathlib import Path

    if args.bench:
        return _bench(args)
    if args.bundle is None:
        raise PixelrtError("name the bundle to serve: pixelrt serve BUNDLE")
    temporary = args.work is None
    work = Path(tempfile.mkdtemp(prefix="pixelrt-serve-")) if temporary else Path(args.work)
    try:
        return _serve(args, work)
    finally:
        if temporary:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def _serve(args, work) -> int:
    from pixelrt.serving.server import serve_bundle

    log = None if args.work is None else work / "tritonserver.log"  # kept in the user's --work folder
    repo, server = serve_bundle(args.bundle, work, max_batch=args.max_batch, merge=not args.exact,
                                queue_delay_us=args.queue_delay_us, host=args.host, log=log,
                                http_port=args.http_port, grpc_port=args.grpc_port)
    print(repo.describe())
    stop = []  # SIGTERM (docker stop, systemd) stops the server like Ctrl-C does, and exits 0
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        with server:
            print(f"serving {repo.sample_model} and {repo.loglik_model}: {server.http_url} (HTTP), {server.grpc_url} "
                  f"(gRPC); log {server.log_path}", flush=True)
            print(f"try: pixelrt sample --url {server.http_url} -n 16 --seed 0 -o samples.png   (Ctrl-C stops)",
                  flush=True)
            while not stop and server.process is not None and server.process.poll() is None:
                time.sleep(0.25)
            if not stop and server.process is not None:
                raise PixelrtError(f"tritonserver exited with status {server.process.returncode}:\n"
                                   f"{server.log_tail()}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("server stopped")
    return 0


def _bench(args) -> int:
    from pixelrt.bench.serving import run_serving_bench

    try:
        clients = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        raise PixelrtError(f"--clients {args.clients!r}: expected comma-separated integers, e.g. 1,8,64") from None
    run_serving_bench(args.bundle, clients, seconds=args.seconds, json_path=args.json, max_batch=args.max_batch,
                      queue_delay_us=args.queue_delay_us)
    return 0


def cmd_remote_sample(args) -> int:
    """`pixelrt sample --url URL`: the same grid and .npz as sampling the bundle locally."""
    from pixelrt import console
    from pixelrt.outputs import check_outputs, write_npz
    from pixelrt.runtime.grid import save_grid
    from pixelrt.serving.client import connect

    if args.bundle is not None:
        raise PixelrtError("give a bundle or --url, not both (the server holds the bundle)")
    if args.mean:
        raise PixelrtError("--mean applies to VAE bundles; a served pixelrt model is autoregressive")
    check_outputs([args.out, args.npz, args.json])  # before asking the server for anything
    with connect(args.url, args.model) as client:
        res = client.sample(args.num, args.seed, label=args.label)
    blocks = len(set(res.extra["label"])) if "label" in res.extra else 1
    save_grid(res.images, client.image.levels, args.out, columns=args.num // blocks if blocks > 1 else None)
    if args.npz:
        write_npz(args.npz, **res.arrays(), seed=args.seed)
    print(f"{res.summary()}; grid: {args.out}")
    console.emit_json(args.json, {"command": "sample", "url": args.url, "images": len(res.images), "seed": args.seed,
                                  "grid": str(args.out), "npz": args.npz})
    return 0
