"""The discretized logistic alone as ONNX graphs: ONNX Runtime equals PyTorch per sub-pixel far into the tails,
for PixelCNN++'s mixture and the VAE's single component (one bin log-prob, no branch on the bin's
probability: the reference's log(sigmoid(a) - sigmoid(b)) cancels there and two runtimes part by ~1e-3 nats)."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from pixelrt.export.trace import _export
from pixelrt.models import logistic


class MixtureLogp(nn.Module):
    def __init__(self, channels, mixtures, levels):
        super().__init__()
        self.args = (channels, mixtures, levels)

    def forward(self, v, params):
        return logistic.subpixel_logp(v, params, *self.args)


class SingleLogp(nn.Module):
    def __init__(self, levels):
        super().__init__()
        self.levels = levels

    def forward(self, v, mean, log_scale):
        return logistic.discretized_logistic_logp(v, mean, log_scale, self.levels)


def _ort(module, feeds, path):
    """Export ``module`` with a dynamic batch and run it in ORT on ``feeds`` (name -> tensor)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    _export(module, tuple(t[:2] for t in feeds.values()), path, list(feeds), ["logp"],
            tuple({0: batch} for _ in feeds))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: t.numpy() for k, t in feeds.items()})[0]


def _check(got, want):
    """The project's 1e-4 nats per sub-pixel, growing by 1e-6 |log p| far out (float32 arguments). Measured:
    grey 1.5e-5, colour 2.4e-4 at log p -1012 and 8.6e-5 above -20 (tanh coupling's last-bit differences
    times 1/s up to e^7), single 1.2e-4 at log p -1372; the reference's form: 2e-2 (grey) and 0.16 nats (colour)."""
    want = want.double().numpy()
    err = np.abs(got.astype(np.float64) - want)
    assert (err <= 1e-4 + 1e-6 * np.abs(want)).all(), err.max()
    assert (want < -50).sum() > 100  # tails were compared


@pytest.mark.parametrize("channels,levels", [(1, 256), (3, 17)])
def test_mixture_log_probs_agree_in_ort_and_pytorch_far_into_the_tails(tmp_path, channels, levels):
    K, n = 5, 4096
    g = torch.Generator().manual_seed(channels)
    params = torch.randn(n, logistic.n_params(channels, K), generator=g) * 1.5
    params[:, K + channels * K:K + 2 * channels * K] = torch.rand(n, channels * K, generator=g) * 5.0 - 7.0
    v = torch.randint(0, levels, (n, channels), generator=g)
    got = _ort(MixtureLogp(channels, K, levels), {"v": v, "params": params}, tmp_path / "mix.onnx")
    _check(got, logistic.subpixel_logp(v, params, channels, K, levels))


def test_single_component_log_probs_agree_in_ort_and_pytorch_far_into_the_tails(tmp_path):
    levels, n = 256, 4096
    g = torch.Generator().manual_seed(7)
    mean = torch.rand(n, generator=g) * 3.2 - 1.6
    log_scale = torch.rand(n, generator=g) * 9.0 - 7.0
    v = torch.randint(0, levels, (n,), generator=g)
    got = _ort(SingleLogp(levels), {"v": v, "mean": mean, "log_scale": log_scale}, tmp_path / "single.onnx")
    _check(got, logistic.discretized_logistic_logp(v, mean, log_scale, levels))
