"""Gated PixelCNN, PyTorch side: layer and model causality in every conditioning mode, the receptive
field against PixelCNN's blind spot, conditioning errors, and the row module's vertical stack."""
import numpy as np
import pytest
import torch

from pixelrt.errors import PixelrtError
from pixelrt.models.causality import audit, audit_model
from pixelrt.models.gated import GatedPixelCNN, GatedPixelCNNConfig
from pixelrt.models.gated_layers import HorizontalConv, VerticalConv, gate, shift_down
from tests.conftest import tiny_pixelcnn

MODES = ["none", "label", "cond", "both"]


def tiny_gated(channels: int, levels: int = 5, mode: str = "none", shape=(5, 6), seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = GatedPixelCNNConfig(channels=channels, levels=levels, hidden=4 * channels, layers=3,
                              head_hidden=8 * channels, num_classes=4 if mode in ("label", "both") else 0,
                              cond_shape=[2, *shape] if mode in ("cond", "both") else None, **kw)
    return GatedPixelCNN(cfg).eval()


def context(model, batch: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    cfg, out = model.config, {}
    if cfg.num_classes:
        out["label"] = torch.randint(0, cfg.num_classes, (batch,), generator=g)
    if cfg.cond_shape:
        out["cond"] = torch.randn(batch, *cfg.cond_shape, generator=g)
    return out


def model_audit(model, shape, seed=0, upto=None):
    """Audit logits (or the horizontal stack after ``upto`` layers) with the model's context fixed."""
    C, H, W = shape
    ctx = context(model, 1, seed)
    x = torch.rand(1, C, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    if upto is not None:
        return audit(lambda xf: model.features(xf, upto=upto, **ctx), x, C, strict=True)
    return audit(lambda xf: model.logits_from_float(xf, **ctx).reshape(1, -1, H, W), x, C, strict=True)


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("groups,cin,cout", [(1, 2, 4), (3, 3, 6), (3, 6, 12)])
@pytest.mark.parametrize("kernel", [3, 5])
def test_horizontal_conv_is_causal_and_reads_its_row_to_the_left(mask_type, groups, cin, cout, kernel):
    torch.manual_seed(0)
    conv = HorizontalConv(cin, cout, kernel, mask_type, groups)
    report = audit(conv, torch.randn(1, cin, 4, 6), groups, strict=(mask_type == "A"))
    assert report.violations == 0
    deps = report.dependencies
    p = kernel // 2
    assert deps[groups - 1, 2, 4, 0, 2, 4 - p] and not deps[groups - 1, 2, 4, 0, 2, 4 - p - 1]  # reach p to the left
    assert not deps[0, 2, 4, 0, 1, 4]  # never the row above (that is the vertical stack's job)
    assert deps[groups - 1, 2, 4, 0, 2, 4] == (groups > 1 or mask_type == "B")  # centre: earlier groups only


def test_vertical_stack_is_causal_only_once_shifted_down():
    torch.manual_seed(0)
    conv = VerticalConv(2, 4, 3)
    x = torch.randn(1, 2, 5, 6)
    shifted = audit(lambda t: shift_down(conv(t)), x, 1, strict=True)
    assert shifted.violations == 0
    assert shifted.dependencies[0, 3, 2, 0, 2, 3]  # the row above, one column to the right: no blind spot
    assert audit(conv, x, 1, strict=True).violations > 0  # unshifted it reads the current row: the audit sees it


def test_gate_keeps_colour_groups_apart():
    """Output group g of the gate depends on input group g only (tanh and sigmoid halves of that group)."""
    x = torch.randn(1, 12, 1, 1, requires_grad=True)
    y = gate(x, groups=3)  # (1, 6, 1, 1): 2 channels per group
    for g in range(3):
        (grad,) = torch.autograd.grad(y[0, 2 * g:2 * g + 2].sum(), x, retain_graph=True)
        assert torch.equal(grad[0, :, 0, 0] != 0, torch.arange(12) // 4 == g)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_layer_and_the_model_are_causal_in_every_conditioning_mode(channels, mode):
    model = tiny_gated(channels, mode=mode)
    shape = (channels, 5, 6)
    for upto in range(1, model.config.layers + 1):  # the horizontal stack after each layer
        assert model_audit(model, shape, upto=upto).violations == 0
    report = model_audit(model, shape)
    assert report.violations == 0
    assert report.checked == channels * 30


@pytest.mark.parametrize("channels", [1, 3])
def test_audit_catches_a_leaking_horizontal_mask(channels):
    model = tiny_gated(channels)
    model.layers[0].hconv.mask.fill_(1.0)  # Mask A removed from the first horizontal conv
    assert model_audit(model, (channels, 4, 4)).violations > 0


def test_audit_catches_a_missing_shift_in_the_link(monkeypatch):
    import pixelrt.models.gated as gated

    monkeypatch.setattr(gated, "shift_down", lambda v: v)  # link the vertical stack of the same row
    assert model_audit(tiny_gated(1), (1, 4, 4)).violations > 0


def test_receptive_field_gated_covers_the_whole_past_pixelcnn_has_a_blind_spot():
    """Measured by autograd on the digits shape 1x8x8 with both families' default configs, random weights."""
    from pixelrt.models import PixelCNN, PixelCNNConfig

    torch.manual_seed(0)
    pixelcnn = audit_model(PixelCNN(PixelCNNConfig(channels=1, levels=17)), (1, 8, 8))
    gated = audit_model(GatedPixelCNN(GatedPixelCNNConfig(channels=1, levels=17)), (1, 8, 8))
    assert gated.violations == pixelcnn.violations == 0
    assert gated.coverage == 1.0
    assert pixelcnn.coverage == pytest.approx(0.938, abs=5e-4)
    # the blind spot: the bottom-left output never sees the upper-right pixels of its past
    seen = pixelcnn.dependencies[0, 7, 0, 0]
    assert not seen[6, 7] and not seen[5, 7] and seen[6, 0]
    assert gated.dependencies[0, 7, 0, 0, 6, 7] and gated.dependencies[0, 7, 0, 0, 5, 7]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", ["label", "cond"])
def test_gated_conditioning_changes_the_conditionals(channels, mode):
    model = tiny_gated(channels, mode=mode)
    x = torch.randint(0, 5, (2, channels, 5, 6))
    a, b = context(model, 2, seed=0), context(model, 2, seed=1)
    if mode == "label":
        b["label"] = (a["label"] + 1) % 4
    with torch.no_grad():
        diff = (model.log_prob(x, **a) - model.log_prob(x, **b)).abs()
    assert (diff > 0).double().mean() > 0.9  # nearly every sub-pixel (a tiny head may have dead ReLUs)
    assert (diff[:, :, 0, 0] > 0).any()  # including the first pixel, which has no past at all


@pytest.mark.parametrize("kwargs,match", [
    ({}, "label-conditional"),
    ({"label": torch.tensor([0, 4])}, "0..3"),
    ({"label": torch.tensor([-1, 0])}, "0..3"),
    ({"label": torch.tensor([0])}, "shape"),
    ({"label": torch.tensor([0, 1]), "cond": torch.zeros(2, 2, 5, 6)}, "no conditioning map"),
])
def test_conditioning_misuse_is_one_clear_error(kwargs, match):
    model = tiny_gated(1, mode="label")
    with pytest.raises(PixelrtError, match=match):
        model.log_prob(torch.zeros(2, 1, 5, 6, dtype=torch.long), **kwargs)


def test_conditioning_map_shape_and_values_are_checked():
    model = tiny_gated(1, mode="cond")
    x = torch.zeros(2, 1, 5, 6, dtype=torch.long)
    with pytest.raises(PixelrtError, match="conditioned on a"):
        model.log_prob(x)
    with pytest.raises(PixelrtError, match="shape"):
        model.log_prob(x, cond=torch.zeros(2, 3, 5, 6))
    with pytest.raises(PixelrtError, match="NaN"):
        model.log_prob(x, cond=torch.full((2, 2, 5, 6), float("nan")))
    with pytest.raises(PixelrtError, match="not label-conditional"):
        model.log_prob(x, label=torch.zeros(2, dtype=torch.long), cond=torch.zeros(2, 2, 5, 6))


def test_config_is_checked():
    with pytest.raises(ValueError, match="odd"):
        GatedPixelCNN(GatedPixelCNNConfig(kernel=4))
    with pytest.raises(ValueError, match="multiple of channels"):
        GatedPixelCNN(GatedPixelCNNConfig(channels=3, hidden=10))
    with pytest.raises(ValueError, match="at least 2"):
        GatedPixelCNN(GatedPixelCNNConfig(layers=1))
    rgb = GatedPixelCNNConfig(channels=3)
    assert rgb.hidden % 3 == 0 and rgb.head_hidden % 3 == 0


@pytest.mark.parametrize("mode", MODES)
def test_row_module_reproduces_the_full_vertical_stack(mode):
    """Run row by row as the sampler does: each row's link equals the full path's shifted link."""
    model = tiny_gated(3, mode=mode)
    from pixelrt.bundle import ImageSpec

    B, (C, H, W) = 2, (3, 5, 6)
    image = ImageSpec(C, H, W, model.config.levels)
    rows = model.row_module(image).eval()
    x = torch.randint(0, 5, (B, C, H, W))
    ctx = context(model, B)
    shapes = {s.name: s.shape[1:] for s in model.step_module(image).states}
    v0, v1 = torch.zeros(B, *shapes["vrows_0"]), torch.zeros(B, *shapes["vrows_1"])
    with torch.no_grad():
        cv = model.cond_v.full(ctx.get("label"), ctx.get("cond"), H, W)
        v, links = model.normalize(x), []
        for k, layer in enumerate(model.layers):
            a = layer.vconv(v)
            v = gate(a if cv is None else a + cv[:, k])
            links.append(layer.link(v))  # unshifted: row r's link is used by row r+1
        worst = 0.0
        for i in range(H):
            v0, v1, link = rows(x[:, :, i], torch.tensor(i), *[ctx[k] for k in model.context_names], v0, v1)
            for k in range(model.config.layers):
                worst = max(worst, float((link[:, k] - links[k][:, :, i].transpose(1, 2)).abs().max()))
    assert worst < 1e-5


def loop_parts(model, image):
    """(step runner, row runner, states, schedule) the way a bundle drives them."""
    from pixelrt.models.reference import TorchRowRunner, TorchStepRunner

    step, row = TorchStepRunner(model, image), TorchRowRunner(model, image)
    return step, row, step.step.states, step.step.schedule


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [1, 3])
def test_step_conditionals_equal_full_conditionals(channels, mode):
    from pixelrt.bundle import ImageSpec
    from pixelrt.runtime.sampler import make_noise, step_loop

    model = tiny_gated(channels, levels=6, mode=mode, shape=(4, 5))
    image = ImageSpec(channels, 4, 5, 6)
    x = np.random.default_rng(0).integers(0, 6, (3, *image.shape)).astype(np.uint8)
    ctx = context(model, 3)
    step, row, states, sched = loop_parts(model, image)
    res = step_loop(step, image, states, make_noise(3, image, 0), force=x, schedule=sched, row_runner=row,
                    context={k: v.numpy() for k, v in ctx.items()}, batch_size=2)
    with torch.no_grad():
        full = model.log_prob(torch.from_numpy(x), **ctx).numpy()
    assert np.array_equal(res.images, x)
    assert np.abs(res.logp - full).max() < 1e-4


@pytest.mark.parametrize("mode", ["none", "both"])
@pytest.mark.parametrize("channels", [1, 3])
def test_step_sampler_matches_naive_oracle_and_full_likelihood(channels, mode):
    from pixelrt.models.reference import naive_sample
    from pixelrt.bundle import ImageSpec
    from pixelrt.runtime.sampler import make_noise, step_loop

    model = tiny_gated(channels, levels=6, mode=mode, shape=(3, 4), seed=3)
    image = ImageSpec(channels, 3, 4, 6)
    noise = make_noise(3, image, seed=7)
    ctx = {k: v.numpy() for k, v in context(model, 3, seed=2).items()}
    step, row, states, sched = loop_parts(model, image)
    res = step_loop(step, image, states, noise, schedule=sched, row_runner=row, context=ctx)
    naive_images, naive_logp = naive_sample(model, noise, image.levels, context=ctx)
    assert np.array_equal(res.images, naive_images)
    assert np.abs(res.logp - naive_logp).max() < 1e-4
    with torch.no_grad():
        full_ll = model(torch.from_numpy(res.images), **{k: torch.from_numpy(v) for k, v in ctx.items()}).double()
    bits = 1.0 / (image.dims * np.log(2.0))
    assert np.abs(res.loglik - full_ll.numpy()).max() * bits < 1e-5  # summed sample log p == full, bits/dim


def test_label_steers_the_samples():
    """Same noise, different labels: different images (the label reaches the step and row graphs)."""
    from pixelrt.bundle import ImageSpec
    from pixelrt.runtime.sampler import make_noise, step_loop

    model = tiny_gated(1, levels=6, mode="label", shape=(4, 4))
    with torch.no_grad():  # make the label matter a lot
        model.cond_h.label.weight.mul_(20.0)
    image = ImageSpec(1, 4, 4, 6)
    step, row, states, sched = loop_parts(model, image)
    noise = np.repeat(make_noise(1, image, seed=1), 4, axis=0)
    res = step_loop(step, image, states, noise, schedule=sched, row_runner=row,
                    context={"label": np.arange(4, dtype=np.int64)})
    assert len({r.tobytes() for r in res.images}) == 4
