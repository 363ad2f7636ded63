"""Sample and score through a Triton server exactly as from a local bundle (KServe v2, HTTP or gRPC).

    import pixelrt
    c = pixelrt.connect("http://127.0.0.1:8000")      # or "grpc://127.0.0.1:8001"; model found by its suffix
    s = c.sample(16, seed=0)                          # Samples: the images pixelrt.sample(bundle, 16, seed=0) gives
    scores = c.evaluate(s.images)                     # Scores: nats, bits_per_dim, logp per image

The image geometry, levels and conditioning inputs come from the served model's config (``pixelrt_*``
parameters written by ``pixelrt triton``), so the client needs no bundle. A request asks for at most the model's
``max_batch_size`` images: the server draws them as ``make_noise(n, seed)``, so a larger n cannot be split into
requests and still give the local images; it is refused here with the limit.
"""
from __future__ import annotations

import json
import time

import numpy as np

from pixelrt.errors import PixelrtError


def _protocol(url: str) -> tuple[str, str]:
    for scheme in ("grpc", "http"):
        if url.startswith(scheme + "://"):
            return scheme, url[len(scheme) + 3:].rstrip("/")
    if "://" in url:
        raise PixelrtError(f"--url {url!r}: use http://HOST:PORT or grpc://HOST:PORT")
    return "http", url.rstrip("/")


class Client:
    """One server, one pixelrt model pair (``{model}_sample``, ``{model}_loglik``)."""

    def __init__(self, url: str, model: str | None = None, timeout: float = 300.0):
        self.url = url
        self.protocol, address = _protocol(url)
        try:
            if self.protocol == "grpc":
                import tritonclient.grpc as tc
            else:
                import tritonclient.http as tc
            from tritonclient.utils import InferenceServerException
        except ImportError as e:
            raise PixelrtError(f"talking to a Triton server needs tritonclient ({e.name} is missing); "
                               "pip install 'pixelrt[serve]'") from None
        self.tc, self._exc, self.timeout = tc, InferenceServerException, timeout
        kw = {"network_timeout": timeout, "connection_timeout": timeout} if self.protocol == "http" else {}
        self.client = tc.InferenceServerClient(address, **kw)
        try:
            live = self.client.is_server_live()
        except Exception as e:  # noqa: BLE001: connection refused and friends, in either protocol's types
            raise PixelrtError(f"no Triton server at {url} ({type(e).__name__}: {e}); start one with "
                               "`pixelrt serve BUNDLE`") from None
        if not live:
            raise PixelrtError(f"the Triton server at {url} is not live")
        self.model = model or self._discover()
        self.sample_model, self.loglik_model = f"{self.model}_sample", f"{self.model}_loglik"
        self.sample_config = self._config(self.sample_model)
        p = self._params(self.sample_config)
        from pixelrt.bundle import ImageSpec

        self.image = ImageSpec(*json.loads(p["pixelrt_image"]))
        self.context = {c["name"]: c for c in json.loads(p.get("pixelrt_context", "[]"))}
        self.max_batch = int(self.sample_config.get("max_batch_size", 0))
        self.decoupled = bool(self.sample_config.get("model_transaction_policy", {}).get("decoupled", False))
        self._loglik_batch = None

    # -- discovery

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._exc as e:
            raise PixelrtError(f"server {self.url}: {e.message() if hasattr(e, 'message') else e}") from None

    def _discover(self) -> str:
        index = self._call(self.client.get_model_repository_index)
        if self.protocol == "grpc":
            index = [{"name": m.name, "state": m.state} for m in index.models]
        names = sorted(m["name"][:-len("_sample")] for m in index
                       if m["name"].endswith("_sample") and m.get("state", "READY") == "READY")
        if len(names) != 1:
            raise PixelrtError(f"the server at {self.url} serves {len(names)} pixelrt models ({', '.join(names) or 'none'})"
                               "; name one with --model NAME (the part before _sample)")
        return names[0]

    def _config(self, name: str) -> dict:
        cfg = self._call(self.client.get_model_config, name, **({"as_json": True} if self.protocol == "grpc" else {}))
        cfg = cfg.get("config", cfg)
        if "max_batch_size" in cfg:
            cfg["max_batch_size"] = int(cfg["max_batch_size"])
        return cfg

    @staticmethod
    def _params(cfg: dict) -> dict:
        p = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        if "pixelrt_image" not in p:
            raise PixelrtError(f"model {cfg.get('name')!r} was not written by `pixelrt triton` (no pixelrt_image)")
        return p

    # -- requests

    def _input(self, name: str, array: np.ndarray):
        from tritonclient.utils import np_to_triton_dtype

        t = self.tc.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        t.set_data_from_numpy(array)
        return t

    def _infer(self, model: str, inputs: dict, outputs: tuple) -> dict:
        req = [self._input(k, v) for k, v in inputs.items()]
        outs = [self.tc.InferRequestedOutput(o) for o in outputs]
        kw = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        res = self._call(self.client.infer, model, req, outputs=outs, **kw)
        return {o: res.as_numpy(o) for o in outputs}

    def _context(self, label, context, n: int) -> dict:
        context = dict(context or {})
        if label is not None:
            if "label" not in self.context:
                raise PixelrtError(f"label=: the served model {self.model} is not label-conditional; drop it")
            if isinstance(label, str):
                from pixelrt.runtime.conditioning import parse_labels

                context["label"] = parse_labels(label, n)
            else:
                arr = np.asarray(label)
                if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1:
                    raise PixelrtError(f"label= must be a class index, {n} class indices or text like '0-9', "
                                       f"got {arr.dtype} of shape {arr.shape}")
                context["label"] = np.full(n, int(arr), np.int64) if arr.ndim == 0 else arr.astype(np.int64)
        missing = [k for k in self.context if k not in context]
        if missing:
            raise PixelrtError(f"the served model {self.model} is conditional: pass {', '.join(missing)} "
                               "(e.g. --label 3)")
        unknown = [k for k in context if k not in self.context]
        if unknown:
            raise PixelrtError(f"the served model {self.model} takes no {', '.join(unknown)}")
        out = {}
        for k, rec in self.context.items():
            v = np.asarray(context[k])
            if rec["kind"] == "class" and (v.dtype == bool or not np.issubdtype(v.dtype, np.integer)):
                raise PixelrtError(f"{k} must be integer class indices, got {v.dtype}")
            if v.size != n * int(np.prod(rec["shape"], dtype=np.int64)):
                raise PixelrtError(f"{k} must have one entry per image ({n}) of shape {rec['shape']}, got {v.shape}")
            out[k] = np.ascontiguousarray(v.astype(rec["dtype"]).reshape(n, *(rec["shape"] or [1])))
        return out

    def _stream(self, inputs: dict, on_row) -> dict:
        """A decoupled model over a gRPC stream: row responses to ``on_row(i, values, logp)``, then the final one."""
        import queue

        if self.protocol != "grpc":
            raise PixelrtError(f"{self.sample_model} is decoupled (it streams rows): connect with grpc://HOST:PORT")
        answers: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            self.client.async_stream_infer(self.sample_model, [self._input(k, v) for k, v in inputs.items()])
            while True:
                result, error = answers.get(timeout=self.timeout)
                if error is not None:
                    raise PixelrtError(f"server {self.url}: {error.message() if hasattr(error, 'message') else error}")
                if result.as_numpy("images") is not None:
                    return {o: result.as_numpy(o) for o in ("images", "logp")}
                if on_row is not None:
                    on_row(int(result.as_numpy("row")[0, 0]), result.as_numpy("row_images"),
                           result.as_numpy("row_logp"))
        except queue.Empty:
            raise PixelrtError(f"server {self.url}: no answer from {self.sample_model} in {self.timeout:.0f} s") from None
        finally:
            self.client.stop_stream()

    def sample(self, n: int, seed: int = 0, label=None, context: dict | None = None, on_row=None):
        """``n`` images from ``seed``: :class:`pixelrt.Samples`, the same arrays as ``pixelrt.sample``.

        ``on_row(i, values (n, C, W) uint8, logp (n, C, W))``: with a decoupled model (``pixelrt triton
        --decoupled``, over gRPC), called as each raster row arrives, before the whole images return."""
        from pixelrt.runtime.pipelines import Samples

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise PixelrtError(f"number of images must be a positive integer, got {n!r}")
        if n > self.max_batch:
            raise PixelrtError(f"{n} images exceed the server's max_batch_size {self.max_batch} for one request; ask "
                               f"for at most {self.max_batch} (a seed's images cannot be split across requests)")
        ctx = self._context(label, context, int(n))
        t0 = time.perf_counter()
        inputs = {"seed": np.full((n, 1), int(seed), np.int64), **ctx}
        if self.decoupled:
            out = self._stream(inputs, on_row)
        else:
            if on_row is not None:
                raise PixelrtError(f"{self.sample_model} is not decoupled: it sends whole images only; write the "
                                   "repository with `pixelrt triton --decoupled` to stream rows")
            out = self._infer(self.sample_model, inputs, ("images", "logp"))
        seconds = time.perf_counter() - t0
        images, logp = out["images"], out["logp"]
        loglik = logp.astype(np.float64).reshape(len(logp), -1).sum(1)
        extra = {k: v.reshape(n, *self.context[k]["shape"]) for k, v in ctx.items()}
        s = Samples(images, logp, loglik, self.image.bits_per_dim(loglik), extra, seed=int(seed),
                    runtime=f"triton {self.url}", seconds=seconds)
        s.description = (f"sampled {n} images through {self.sample_model} at {self.url} in {seconds:.2f} s "
                         f"({1e3 * seconds / n:.1f} ms/image); their bits/dim under the model: mean "
                         f"{s.bits_per_dim.mean():.4f}")
        return s

    def evaluate(self, x, label=None, context: dict | None = None):
        """Per-image nats and bits/dim of uint8 ``x`` through the served full graph: :class:`pixelrt.Scores`."""
        from pixelrt.runtime.pipelines import Scores

        x = self.image.check_images(np.asarray(x), "images", "images are {got} (C x H x W) but the served model "
                                    "takes {want}")
        if self._loglik_batch is None:
            self._loglik_batch = int(self._config(self.loglik_model).get("max_batch_size", 1))
        ctx = self._context(label, context, len(x))
        t0 = time.perf_counter()
        nats, logps = [], []
        for lo in range(0, len(x), self._loglik_batch):
            sl = slice(lo, lo + self._loglik_batch)
            feeds = {"x": np.ascontiguousarray(x[sl]),
                     **{k: np.ascontiguousarray(v[sl]) for k, v in ctx.items()}}
            out = self._infer(self.loglik_model, feeds, ("loglik", "logp"))
            nats.append(out["loglik"].reshape(-1).astype(np.float64))
            logps.append(out["logp"])
        nats = np.concatenate(nats)
        s = Scores(self.image, nats, self.image.bits_per_dim(nats), logp=np.concatenate(logps),
                   runtime=f"triton {self.url}", seconds=time.perf_counter() - t0)
        s.lines = (f"images: {len(s)} images, {s.mean_bits_per_dim:.4f} bits/dim (triton {self.url})",)
        return s

    def statistics(self, which: str = "sample") -> dict:
        """The server's statistics for one model: execution and inference counts, and {batch size: executions}."""
        name = self.sample_model if which == "sample" else self.loglik_model
        stats = self._call(self.client.get_inference_statistics, name,
                           **({"as_json": True} if self.protocol == "grpc" else {}))
        m = stats["model_stats"][0]
        batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in m.get("batch_stats", [])}
        return {"executions": int(m.get("execution_count", 0)), "inferences": int(m.get("inference_count", 0)),
                "batches": batches}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(url: str, model: str | None = None, timeout: float = 300.0) -> Client:
    """A :class:`Client` for the pixelrt models served at ``url`` (http://HOST:PORT or grpc://HOST:PORT)."""
    return Client(url, model, timeout)
