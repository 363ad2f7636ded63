"""pixelrt's models for Triton's Python backend (``TritonPythonModel``): sampling and likelihood.

Triton's dynamic batcher hands ``execute`` every request that queued while the previous batch ran (up to
``max_batch_size`` images); the models check each request on its own, answer a bad one with an error response
(the rest of the batch is still served, the server goes on), and run the good ones through one step loop or one
full-graph call (``serving/batching.py``). The bundle is the verified copy in the model version's ``bundle/``
folder; the backends stay open for the model's lifetime. ``triton_python_backend_utils`` exists only inside
Triton's stub process, so it is imported in ``initialize``.
"""
from __future__ import annotations

import json
import os
from contextlib import ExitStack

import numpy as np

from pixelrt.errors import PixelrtError


class _Base:
    role = ""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        from pixelrt.bundle import load_bundle
        from pixelrt.serving.repository import check_servable

        self.pb = pb_utils
        self.config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in self.config.get("parameters", {}).items()}
        self.runtime = params.get("pixelrt_runtime", "ort")
        self.merge = params.get("pixelrt_merge", "true") == "true"
        self.max_batch = int(self.config.get("max_batch_size", 0))
        self.decoupled = bool(self.config.get("model_transaction_policy", {}).get("decoupled", False))
        root = os.path.join(args["model_repository"], args["model_version"], "bundle")
        self.bundle = load_bundle(root)
        check_servable(self.bundle)
        self.context_names = tuple(self.bundle.context)
        self.stack = ExitStack()
        self.open()

    def finalize(self):
        self.stack.close()

    def _error(self, message: str):
        return self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(message))

    def _inputs(self, request, names):
        out = {}
        for name in names:
            t = self.pb.get_input_tensor_by_name(request, name)
            if t is None:
                raise PixelrtError(f"missing input {name!r}; this model takes {', '.join(names)}")
            out[name] = t.as_numpy()
        return out

    def execute(self, requests):
        if self.decoupled:
            return self._execute_decoupled(requests)
        parsed, responses = [], [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                parsed.append((i, self.parse(request)))
            except PixelrtError as e:
                responses[i] = self._error(f"pixelrt {self.role}: {e}")
        if parsed:
            results = self._run_all([p for _, p in parsed])
            for (i, _), res in zip(parsed, results):
                responses[i] = self._error(f"pixelrt {self.role}: {res}") if isinstance(res, Exception) \
                    else self.pb.InferenceResponse(output_tensors=self._tensors(res))
        return responses

    def _tensors(self, arrays: dict) -> list:
        return [self.pb.Tensor(k, np.ascontiguousarray(v)) for k, v in arrays.items()]

    def _run_all(self, reqs, **kw) -> list:
        """The batch's results, or one error for each request when the batch fails as a whole (a graph that samples
        outside its levels, a runtime error): those requests get an error response and the model keeps serving."""
        try:
            return self.run(reqs, **kw)
        except PixelrtError as e:
            return [e] * len(reqs)
        except Exception as e:  # noqa: BLE001: never let one batch take the model down
            return [PixelrtError(f"internal error ({type(e).__name__}: {e})")] * len(reqs)

    def _execute_decoupled(self, requests):
        """Decoupled: each request answered through its response sender (rows as they finish, then the final)."""
        final = self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        senders = [r.get_response_sender() for r in requests]
        parsed = []
        for sender, request in zip(senders, requests):
            try:
                parsed.append((sender, self.parse(request)))
            except PixelrtError as e:
                sender.send(self._error(f"pixelrt {self.role}: {e}"), flags=final)
        if not parsed:
            return None

        def on_row(k, i, values, logp):
            rows = np.full((len(values), 1), i, np.int64)
            parsed[k][0].send(self.pb.InferenceResponse(output_tensors=self._tensors(
                {"row": rows, "row_images": values, "row_logp": logp})))

        results = self._run_all([p for _, p in parsed], on_row=on_row)
        for (sender, _), res in zip(parsed, results):
            sender.send(self._error(f"pixelrt {self.role}: {res}") if isinstance(res, Exception) else
                        self.pb.InferenceResponse(output_tensors=self._tensors(res)),
                        flags=final)
        return None


class SampleModel(_Base):
    """``seed`` (n, 1) + context -> ``images`` (n, C, H, W) uint8, ``logp`` float32, ``loglik`` (n, 1) float64."""

    role = "sample"

    def open(self):
        from pixelrt.runtime.backends import step_backends

        self.step, self.row = self.stack.enter_context(step_backends(self.runtime, self.bundle))

    def parse(self, request):
        from pixelrt.serving.batching import parse_request

        t = self._inputs(request, ("seed", *self.context_names))
        return parse_request(self.bundle, t.pop("seed"), t)

    def run(self, reqs, on_row=None):
        from pixelrt.serving.batching import sample_merged

        replies = sample_merged(self.bundle, self.step, self.row, reqs, merge=self.merge, on_row=on_row)
        return [{"images": r.images, "logp": r.logp, "loglik": r.loglik.reshape(-1, 1)} for r in replies]


class LikelihoodModel(_Base):
    """``x`` (n, C, H, W) uint8 + context -> ``loglik`` (n,) float32 nats, ``logp`` (n, C, H, W) float32 (as full.onnx)."""

    role = "loglik"

    def open(self):
        from pixelrt.runtime.backends import open_backend

        self.full = self.stack.enter_context(open_backend(self.runtime, self.bundle.graph_path("full")))

    def parse(self, request):
        from pixelrt.runtime.evaluate import check_bundle_images
        from pixelrt.serving.batching import per_image

        t = self._inputs(request, ("x", *self.context_names))
        x = check_bundle_images(self.bundle, t.pop("x"), "x")
        return x, per_image(self.bundle, t, len(x))

    def run(self, reqs, **_):
        from pixelrt.serving.batching import score_merged

        groups = [reqs] if self.merge else [[r] for r in reqs]
        out = []
        for g in groups:
            for loglik, logp in score_merged(self.bundle, self.full, [x for x, _ in g], [c for _, c in g]):
                out.append({"loglik": loglik, "logp": logp})
        return out
