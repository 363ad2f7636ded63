"""Row LSTM: causality and its triangular receptive field, step == full, naive oracle == step sampler."""
import numpy as np
import pytest
import torch

from pixelrt.models.causality import audit, audit_model
from pixelrt.models.reference import TorchStepRunner, naive_sample
from pixelrt.models.rowlstm import RowLSTM, RowLSTMConfig, RowLSTMLayer
from pixelrt.bundle import ImageSpec
from pixelrt.runtime.sampler import make_noise, step_loop


def tiny_rowlstm(channels: int, levels: int, seed: int = 0, **kw) -> RowLSTM:
    torch.manual_seed(seed)
    cfg = dict(channels=channels, levels=levels, hidden=4 * channels, state=2 * channels, layers=2,
               head_hidden=4 * channels)
    return RowLSTM(RowLSTMConfig(**{**cfg, **kw})).eval()


@pytest.mark.parametrize("channels", [1, 3])
def test_row_lstm_layer_is_causal(channels):
    torch.manual_seed(0)
    layer = RowLSTMLayer(4 * channels, 2 * channels, 3, channels).eval()
    x = torch.randn(1, 4 * channels, 5, 6)
    report = audit(lambda t: layer(t) - t, x, channels, strict=False)  # the LSTM branch, Mask B at the centre
    assert report.violations == 0


@pytest.mark.parametrize("channels", [1, 3])
def test_model_is_causal_with_the_triangular_blind_spot(channels):
    model = tiny_rowlstm(channels, levels=5)
    H, W = 4, 12
    report = audit_model(model, (channels, H, W))
    assert report.violations == 0
    assert report.checked == channels * H * W
    # The last pixel (3, 11) reaches left 3 columns through the 7x7 input conv, 1 more per layer through the
    # 1 x 3 input-to-state, and 1 more per row up through the state-to-state: columns >= 6 on its own row
    # and >= 3 on the top row. Everything further left is the seed's blind spot.
    deps = report.dependencies[0, H - 1, W - 1, 0]  # output group 0 at the last pixel, input group 0
    assert deps[H - 2, W - 1] and deps[H - 1, W - 2] and deps[0, W - 1]  # above, left, top row
    assert deps[H - 1, 6] and not deps[H - 1, 5]  # the current row: 3 + 2 columns
    assert deps[0, 3] and not deps[0, 2]  # the triangle widens by one column per row up
    assert 0.3 < report.coverage < 1.0


def test_audit_catches_a_leak_in_the_input_to_state_mask():
    model = tiny_rowlstm(1, levels=5)
    model.layers[0].input_to_state.mask.fill_(1.0)  # right-hand taps leak the next pixel
    assert audit_model(model, (1, 4, 5)).violations > 0


@pytest.mark.parametrize("channels", [1, 3])
def test_step_conditionals_equal_full_conditionals(channels):
    model = tiny_rowlstm(channels, levels=6)
    image = ImageSpec(channels, 4, 5, 6)
    x = np.random.default_rng(0).integers(0, 6, (3, *image.shape)).astype(np.uint8)
    runner = TorchStepRunner(model, image)
    res = step_loop(runner, image, runner.step.states, make_noise(3, image, 0), force=x)
    with torch.no_grad():
        full = model.log_prob(torch.from_numpy(x)).numpy()
    assert np.array_equal(res.images, x)
    assert np.abs(res.logp - full).max() < 1e-4


@pytest.mark.parametrize("channels", [1, 3])
def test_step_sampler_matches_naive_oracle_and_full_likelihood(channels):
    model = tiny_rowlstm(channels, levels=6, seed=3, row_kernel=5)
    image = ImageSpec(channels, 4, 4, 6)
    noise = make_noise(4, image, seed=7)
    runner = TorchStepRunner(model, image)
    res = step_loop(runner, image, runner.step.states, noise)
    naive_images, naive_logp = naive_sample(model, noise, image.levels)
    assert np.array_equal(res.images, naive_images)
    assert np.abs(res.logp - naive_logp).max() < 1e-4
    with torch.no_grad():
        full_ll = model(torch.from_numpy(res.images)).double().numpy()
    assert np.abs(res.loglik - full_ll).max() < 1e-4 * image.dims


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="row_kernel"):
        RowLSTMConfig(row_kernel=4).validate()
    with pytest.raises(ValueError, match="state"):
        RowLSTMConfig(channels=3, state=4).validate()
