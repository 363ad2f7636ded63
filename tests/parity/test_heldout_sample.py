"""Parity compares a seeded random sample of the whole held-out split, never its first N images: on
class-sorted data those are all one class. Labels (conditioning inputs) are taken at the same indices."""
import numpy as np
import pytest

from pixelrt.bundle import ImageSpec
from pixelrt.data import load_dataset, split
from pixelrt.errors import PixelrtError
from pixelrt.parity.options import ParityOptions, heldout_sample, sample_indices

NUM = 8


@pytest.fixture
def sorted_split(tmp_path):
    """The held-out split of a class-sorted labelled .npz (30 images per class, in class order)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    x = rng.integers(0, 4, (len(labels), 1, 4, 4)).astype(np.uint8)
    x[:, 0, 0, 0] = labels  # the label shows in the first pixel
    np.savez(tmp_path / "sorted.npz", x=x, labels=labels, levels=np.array(4))
    _, test = split(load_dataset(str(tmp_path / "sorted.npz")), 0.5, 0)
    assert len(set(test.labels[:NUM].tolist())) == 1  # the first N held-out images: one class (the old sample)
    return test


def test_parity_sample_covers_more_than_one_class(sorted_split):
    test = sorted_split
    held, idx = heldout_sample(test, NUM, seed=0)
    assert len(set(held.labels.tolist())) > 1
    assert len(idx) == NUM and len(set(idx.tolist())) == NUM and (np.diff(idx) > 0).all()  # distinct, sorted
    assert np.array_equal(held.x, test.x[idx]) and np.array_equal(held.labels, test.labels[idx])
    again, idx2 = heldout_sample(test, NUM, seed=0)
    assert np.array_equal(idx, idx2) and np.array_equal(again.x, held.x)  # the seed names the images
    assert not np.array_equal(sample_indices(len(test), NUM, 1), idx)
    assert np.array_equal(sample_indices(len(test), 10 * len(test), 3), np.arange(len(test)))  # all of a small split
    with pytest.raises(PixelrtError, match="-n must be at least 1"):
        sample_indices(len(test), 0, 0)


def test_autoregressive_parity_runs_on_the_sample_with_its_labels(sorted_split, monkeypatch):
    """The PARITY entry feeds run_parity the sampled images and their labels (same indices), exporting the
    bundle from the sample too; a label-conditional Gated PixelCNN with random weights passes every budget."""
    import torch

    import pixelrt.parity.autoregressive as ar
    from pixelrt.models import get_model
    from pixelrt.parity.table import PARITY

    test = sorted_split
    seen = {}
    real = ar.run_parity

    def spy(model, bundle, x, **kw):
        seen.update(x=x, context=kw["context"])
        return real(model, bundle, x, **kw)

    monkeypatch.setattr(ar, "run_parity", spy)
    torch.manual_seed(0)
    entry = get_model("gated")
    model = entry.build(entry.make_config(channels=1, levels=4, hidden=4, layers=2, head_hidden=4, input_kernel=3,
                                          num_classes=3)).eval()
    opts = ParityOptions(num=NUM, samples=3, teacher=2, seed=0, image=ImageSpec(1, 4, 4, 4), log=lambda s: None)
    report = PARITY["autoregressive"](model, None, test, opts)
    assert report.ok, report.table()
    _, idx = heldout_sample(test, NUM, seed=0)
    assert np.array_equal(report.artifacts["heldout_indices"], idx)
    assert np.array_equal(seen["x"], test.x[idx]) and np.array_equal(seen["context"]["label"], test.labels[idx])
    assert len(set(seen["context"]["label"].tolist())) > 1
    assert report.summary["held-out images compared"].startswith(f"{NUM} of {len(test)}, a random sample")
