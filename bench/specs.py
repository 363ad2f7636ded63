"""The benchmark table: every `pixelrt bench --model NAME` is one row of data.

A row names the registered model family, its config (random weights from ``seed``), the image, the
default ``--batches`` and which measurement times it (``bench/run.py``: MEASUREMENTS):

* ``step-loop``: autoregressive sampling, naive full-path re-runs (PyTorch) vs the cached step loop in
  PyTorch and ONNX Runtime, with FLOPs and the share of this CPU's matmul peak where the family's FLOPs
  are counted (``bench/autoregressive.py``);
* ``naive-graph``: the same comparison with the naive sampler as an ONNX graph, both in ORT (PixelCNN++,
  whose head is a logistic mixture, beside the published Fast PixelCNN++ speed-ups);
* ``decoder``: a VAE decoder's images per second, ORT vs PyTorch (``bench/decoder.py``);
* ``composite``: sampling through a composite bundle (multi-scale, PixelVAE), naive PyTorch vs the whole
  bundle in ORT (``bench/composite.py``).

Torch-free: the model is built only by :meth:`BenchSpec.build`, so the CLI can read the table cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pixelrt.bundle import ImageSpec
from pixelrt.errors import PixelrtError

STEP_LOOP, NAIVE_GRAPH, DECODER, COMPOSITE = "step-loop", "naive-graph", "decoder", "composite"


@dataclass(frozen=True)
class BenchSpec:
    """A benchmark model: registered family, config kwargs, image geometry, weight seed and how it is timed."""

    name: str                    # the model name in records and tables
    config: dict = field(hash=False)
    image: ImageSpec
    seed: int = 0
    family: str = "pixelcnn"     # registered model name
    measure: str = STEP_LOOP     # key of bench.run.MEASUREMENTS
    batches: str = "1,64"        # default --batches
    rows: int | None = None      # default --rows (cached rows timed; None: all)
    reduced_precision: bool = True  # FP16 / INT8 step rows (`pixelrt calibrate` copies of the bench bundle)
    gpu: bool = False            # `pixelrt bench --runtime ...` times it on GPU runtimes
    scaling: tuple = ()          # step-loop rows: image sizes of the cost-vs-size table (same layer stack)

    def build(self):
        import torch

        from pixelrt.models import get_model

        torch.manual_seed(self.seed)
        entry = get_model(self.family)
        return entry.build(entry.make_config(**self.config)).eval()


def rnn_spec(name: str, family: str, config: dict, image: ImageSpec = ImageSpec(1, 16, 16, 256),
             seed: int = 0) -> BenchSpec:
    """A PixelRNN row of the step-loop bench (FP32 only)."""
    return BenchSpec(name, config, image, seed, family, reduced_precision=False)


def vae_spec(name: str, config: dict, seed: int = 0) -> BenchSpec:
    """A VAE decoder row: the image is the one the config's dense layers are built for."""
    image = ImageSpec(config["channels"], config["height"], config["width"], config["levels"])
    return BenchSpec(name, config, image, seed, "vae", DECODER, batches="1,64,1024")


def pixelvae_spec(name: str, image: ImageSpec, overrides: dict | None = None, seed: int = 0) -> BenchSpec:
    """A PixelVAE sampling row (latent 16 and the family's default widths unless overridden)."""
    C, H, W = image.shape
    config = dict(channels=C, levels=image.levels, height=H, width=W, **{"latent": 16, **(overrides or {})})
    return BenchSpec(name, config, image, seed, "pixelvae", COMPOSITE)


def multiscale_spec(name: str, image: ImageSpec, config: dict | None = None, seed: int = 0) -> BenchSpec:
    """A Multi-Scale PixelRNN sampling row (default widths unless ``config`` is given)."""
    return BenchSpec(name, config or dict(channels=image.channels, levels=image.levels), image, seed, "multiscale",
                     COMPOSITE)


# ref28 is the reference: the number in an issue ("ORT cached 42x naive") always means this network.
REF28 = BenchSpec("ref28", dict(channels=1, levels=256, hidden=64, blocks=8, head_hidden=64), ImageSpec(1, 28, 28, 256),
                  gpu=True, scaling=(28, 56, 112))
GATED28 = BenchSpec("gated28", dict(channels=1, levels=256, hidden=32, layers=8, head_hidden=64),
                    ImageSpec(1, 28, 28, 256), family="gated", reduced_precision=False, gpu=True)
PP32 = BenchSpec("pp32", dict(channels=3, levels=256, filters=64, resnets=2, resolutions=3, mixtures=5, dropout=0.0),
                 ImageSpec(3, 32, 32, 256), family="pixelcnnpp", measure=NAIVE_GRAPH, batches="1,4,16,64", rows=4)
VAE28 = vae_spec("vae28", dict(channels=1, levels=256, height=28, width=28, latent=16, hidden=32, downsample=2,
                               dense=256, likelihood="logistic"))
PVAE28 = pixelvae_spec("pvae28", ImageSpec(1, 28, 28, 256))
MULTISCALE16 = multiscale_spec("multiscale16", ImageSpec(1, 16, 16, 256))


# a plain-PyTorch PixelCNN of ref28's shape (models/derive/examples.py), its step graphs derived (docs/convert.md)
class DerivedBenchSpec(BenchSpec):
    def build(self):
        from pixelrt.models.derive.examples import build_bench_model

        return build_bench_model(self)


PLAIN28 = DerivedBenchSpec("plain28", dict(levels=256, hidden=64, blocks=8, head_hidden=64), ImageSpec(1, 28, 28, 256),
                           family="derived", reduced_precision=False)

# PixelRNNs at their default widths (2h = 64, state 32, 2 layers), 256 levels, a small 16x16 image for a CPU
ROWLSTM16 = rnn_spec("rowlstm16", "rowlstm", dict(channels=1, levels=256))
DIAGBILSTM16 = rnn_spec("diagbilstm16", "diagbilstm", dict(channels=1, levels=256))

# `pixelrt bench --model NAME` -> its row
BENCHES: dict[str, BenchSpec] = {
    "ref28": REF28,
    "gated28": GATED28,
    "pp32": PP32,
    "vae28": VAE28,
    "pvae28": PVAE28,
    "multiscale": MULTISCALE16,
    "rowlstm": ROWLSTM16,
    "diagbilstm": DIAGBILSTM16,
    "plain28": PLAIN28,  # a plain-PyTorch module, its step graphs derived (not a registered family)
}


def bench_spec(name: str, measure: str | None = None, what: str = "bench model") -> BenchSpec:
    """The row ``name`` (of those timed by ``measure``, if given), or one error naming the known ones."""
    known = {n: s for n, s in BENCHES.items() if measure is None or s.measure == measure}
    if name not in known:
        raise PixelrtError(f"unknown {what} {name!r}; choose one of {', '.join(known)}")
    return known[name]


def parse_batches(text: str) -> list[int]:
    """``--batches`` "1,64" -> [1, 64]; every size a positive integer."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise PixelrtError(f"--batches takes comma-separated integers, e.g. 1,64; got {text!r}") from None
    if not batches or min(batches) < 1:
        raise PixelrtError(f"batch sizes must be positive integers, got {batches}")
    return batches
