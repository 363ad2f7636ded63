"""Layer level: causality of Mask A / Mask B convs, and step path == full path at every position."""
import pytest
import torch

from pixelrt.models.causality import audit
from pixelrt.models.layers import ConvWindowStack, MaskedConv2d


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("groups,cin,cout", [(1, 2, 3), (3, 3, 6), (3, 6, 6)])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_masked_conv_is_causal(mask_type, groups, cin, cout, kernel):
    torch.manual_seed(0)
    conv = MaskedConv2d(cin, cout, kernel, mask_type, groups)
    x = torch.randn(1, cin, 5, 6)
    report = audit(conv, x, groups, strict=(mask_type == "A"))
    assert report.violations == 0
    if mask_type == "A" and kernel == 1 and groups == 1:
        assert not report.dependencies.any()  # a 1x1 Mask-A conv on one group reads nothing at all
    # the mask must not over-block either: within the kernel's reach, every allowed input is read
    if kernel > 1:
        assert report.dependencies[0, 2, 3, 0, 1, 3]  # the pixel straight above
        assert report.dependencies[groups - 1, 2, 3, groups - 1, 2, 2]  # the pixel to the left
        assert report.dependencies[groups - 1, 2, 3, 0, 2, 3] == (groups > 1 or mask_type == "B")  # own pixel, earlier group


def test_mask_a_conv_breaks_if_mask_is_removed():
    """The audit can fail: an unmasked kernel is caught."""
    conv = MaskedConv2d(1, 2, 3, "A", 1)
    conv.mask.fill_(1.0)
    report = audit(conv, torch.randn(1, 1, 4, 4), 1, strict=True)
    assert report.violations > 0


@pytest.mark.parametrize("groups,cin,cout,kernel", [(1, 2, 4, 3), (3, 3, 6, 7), (3, 6, 9, 3)])
def test_step_path_reproduces_full_path_at_every_position(groups, cin, cout, kernel):
    """Feed the ring cache row by row as the sampler does; every step output equals forward()."""
    torch.manual_seed(1)
    convs = [MaskedConv2d(cin, cout, kernel, "B", groups) for _ in range(2)]
    H, W = 5, 6
    xs = [torch.randn(2, cin, H, W) for _ in convs]
    with torch.no_grad():
        full = [c(x) for c, x in zip(convs, xs)]
        stack = ConvWindowStack(convs)
        centres = [c.stepper() for c in convs]
        spec = stack.spec
        cache = torch.zeros(2, *spec.shape(W, layers=len(convs)))
        worst = 0.0
        for i in range(H):
            for j in range(W):
                windows = stack(cache, torch.tensor(i), torch.tensor(j))
                for k, (c, x) in enumerate(zip(centres, xs)):
                    out = c(x[:, :, i, j]) + windows[k]
                    worst = max(worst, float((out - full[k][:, :, i, j]).abs().max()))
                    cache[:, k, spec.slot(i), j + spec.pad] = x[:, :, i, j]
    assert worst < 1e-5


def test_window_stack_refuses_mixed_geometries():
    with pytest.raises(ValueError, match="share one"):
        ConvWindowStack([MaskedConv2d(2, 2, 3, "B"), MaskedConv2d(2, 2, 5, "B")])
