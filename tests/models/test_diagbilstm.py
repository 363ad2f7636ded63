"""Diagonal BiLSTM: skew/unskew, causality of each stream (incl. the reverse stream's shift), full coverage."""
import numpy as np
import pytest
import torch

from pixelrt.models.causality import allowed_pairs, audit, audit_model
from pixelrt.models.diagbilstm import DiagBiLSTM, DiagBiLSTMConfig, DiagBiLSTMLayer
from pixelrt.models.lstm_layers import skew, unskew
from pixelrt.models.reference import TorchRowRunner, TorchStepRunner, naive_sample
from pixelrt.bundle import ImageSpec
from pixelrt.runtime.sampler import make_noise, step_loop


def tiny_diagbilstm(channels: int, levels: int, seed: int = 0, **kw) -> DiagBiLSTM:
    torch.manual_seed(seed)
    cfg = dict(channels=channels, levels=levels, hidden=4 * channels, state=2 * channels, layers=2,
               head_hidden=4 * channels)
    return DiagBiLSTM(DiagBiLSTMConfig(**{**cfg, **kw})).eval()


def test_skew_moves_row_i_right_by_i_and_unskew_inverts_it():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4) + 1
    s = skew(x)
    assert s.shape == (1, 2, 3, 6)
    for i in range(3):
        assert torch.equal(s[0, :, i, i:i + 4], x[0, :, i])
        assert float(s[0, :, i, :i].abs().sum()) == 0 and float(s[0, :, i, i + 4:].abs().sum()) == 0
    assert torch.equal(unskew(s, 4), x)


@pytest.mark.parametrize("channels", [1, 3])
def test_each_stream_is_causal_and_the_reverse_stream_sees_only_rows_above(channels):
    torch.manual_seed(0)
    layer = DiagBiLSTMLayer(4 * channels, 2 * channels, channels).eval()
    x = torch.randn(1, 4 * channels, 4, 5)
    fwd = audit(lambda t: layer.forward_stream(t), x, channels, strict=False)
    assert fwd.violations == 0
    # The forward stream's field: everything above-left and to the left (up and left neighbours).
    deps = fwd.dependencies[0, 3, 2, 0]
    assert deps[0, 0] and deps[3, 0] and not deps[0, 3]

    def shifted_reverse(t):
        return torch.nn.functional.pad(layer.reverse_features(t), (0, 0, 1, 0))[:, :, :-1]

    rev = audit(shifted_reverse, x, channels, strict=True)
    assert rev.violations == 0
    deps = rev.dependencies[0, 2, 1, 0]
    assert deps[1, 4] and deps[0, 1] and not deps[2, 0] and not deps[1, 0]  # rows above, from column j rightwards
    # Without the shift the reverse stream reads the right of its own row: the audit must catch that.
    assert audit(lambda t: layer.reverse_features(t), x, channels, strict=True).violations > 0
    assert audit(lambda t: layer(t) - t, x, channels, strict=False).violations == 0


@pytest.mark.parametrize("channels", [1, 3])
def test_model_is_causal_and_reaches_the_whole_past(channels):
    # Wider head than the other tests: with 1-2 ReLU units per colour group a unit can be dead at a
    # position by chance, which zeroes a Jacobian entry without any blind spot.
    model = tiny_diagbilstm(channels, levels=5, hidden=8 * channels, head_hidden=8 * channels)
    report = audit_model(model, (channels, 4, 6))
    assert report.violations == 0
    assert report.coverage == 1.0


def test_without_the_row_pixels_the_last_pixel_of_the_row_above_is_missed():
    """The paper-literal layer: no feature of row i-1 holds pixel (i-1, W-1) (Mask A), so (i, 0) misses it
    once it is beyond the 7x7 input conv's reach (3 columns)."""
    model = tiny_diagbilstm(1, levels=5, reverse_sees_row=False)
    H, W = 4, 6
    report = audit_model(model, (1, H, W))
    assert report.violations == 0
    missed = allowed_pairs(1, H, W, True) & ~report.dependencies
    assert {tuple(m) for m in np.argwhere(missed)} == {(0, i, 0, 0, i - 1, W - 1) for i in range(1, H)} | \
        {(0, i, 1, 0, i - 1, W - 1) for i in range(1, H)}
    assert report.coverage < 1.0


def test_audit_catches_a_reverse_stream_without_the_shift():
    model = tiny_diagbilstm(1, levels=5)
    layer = model.layers[0]
    layer.forward = lambda x, image=None: x + layer.project(layer.forward_stream(x) + layer.reverse_features(x, image))
    assert audit_model(model, (1, 4, 5)).violations > 0


@pytest.mark.parametrize("channels", [1, 3])
def test_step_and_row_graph_conditionals_equal_full_conditionals(channels):
    model = tiny_diagbilstm(channels, levels=6)
    image = ImageSpec(channels, 4, 5, 6)
    x = np.random.default_rng(0).integers(0, 6, (3, *image.shape)).astype(np.uint8)
    runner = TorchStepRunner(model, image)
    res = step_loop(runner, image, runner.step.states, make_noise(3, image, 0), force=x,
                    row_runner=TorchRowRunner(model, image))
    with torch.no_grad():
        full = model.log_prob(torch.from_numpy(x)).numpy()
    assert np.array_equal(res.images, x)
    assert np.abs(res.logp - full).max() < 1e-4


def test_step_sampler_matches_naive_oracle_and_full_likelihood():
    model = tiny_diagbilstm(3, levels=6, seed=3)
    image = ImageSpec(3, 3, 4, 6)
    noise = make_noise(2, image, seed=7)
    runner = TorchStepRunner(model, image)
    res = step_loop(runner, image, runner.step.states, noise, row_runner=TorchRowRunner(model, image))
    naive_images, naive_logp = naive_sample(model, noise, image.levels)
    assert np.array_equal(res.images, naive_images)
    assert np.abs(res.logp - naive_logp).max() < 1e-4
    with torch.no_grad():
        full_ll = model(torch.from_numpy(res.images)).double().numpy()
    assert np.abs(res.loglik - full_ll).max() < 1e-4 * image.dims


@pytest.mark.parametrize("reverse_sees_row", [True, False])
def test_fused_stream_loop_equals_two_separate_streams(reverse_sees_row):
    torch.manual_seed(1)
    layer = DiagBiLSTMLayer(12, 6, 3, 3 if reverse_sees_row else 0).eval()
    x, image = torch.randn(2, 12, 4, 5), torch.randn(2, 3, 4, 5)
    with torch.no_grad():
        assert torch.allclose(layer(x, image), layer.forward_unfused(x, image), atol=1e-6, rtol=0)
