"""``pixelrt.check_parity``: a PyTorch model against its bundle, from Python, for any kind.

    report = pixelrt.check_parity(model, "bundles/mine", data="digits")
    print(report.table())        # every row against its budget
    report.raise_on_miss()       # ParityError on a miss

The model may be a registry family or your own (``docs/export-your-model.md``): the table is keyed by
the model's kind. Without a bundle, one is exported to a temporary folder first.
"""
from __future__ import annotations

import numpy as np

from pixelrt.bundle import Bundle, ImageSpec, load_bundle
from pixelrt.data import Dataset
from pixelrt.errors import PixelrtError
from pixelrt.parity.options import ParityOptions
from pixelrt.parity.table import PARITY, kind_of, lookup
from pixelrt.runtime.parity import ParityReport


def check_parity(model, bundle=None, data=None, *, image: ImageSpec | None = None, num: int = 64,
                 samples: int = 8, teacher: int = 8, seed: int = 0, runtime: str = "ort", iwae: int | None = None,
                 log=print) -> ParityReport:
    """The kind's parity report (bits/dim PyTorch vs the runtime, step vs full, sampled log p vs full,
    samples vs the naive oracle or the latent bounds) on a seeded sample of ``data``'s held-out split.

    bundle: a Bundle or its folder (None: export one to a temporary folder, which needs ``image``).
    data: a Dataset, a uint8 array (N, C, H, W) used as the held-out images, or a data spec
    (``"digits"``, a path) whose held-out split is sampled.
    """
    bundle = load_bundle(bundle) if bundle is not None and not isinstance(bundle, Bundle) else bundle
    image = image or (bundle.image if bundle is not None else None)
    held = _held_out(data, image)
    opts = ParityOptions(num=num, samples=samples, teacher=teacher, seed=seed, runtime=runtime, iwae=iwae,
                         image=image, source={"api": "pixelrt.check_parity"}, log=log)
    return lookup(PARITY, kind_of(model), "pixelrt.check_parity")(model, bundle, held, opts)


def _held_out(data, image: ImageSpec | None) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray):
        if image is None:
            raise PixelrtError("check_parity on an array of images needs the bundle or image= for its levels")
        return Dataset(data, image.levels, "array")
    if data is None:
        raise PixelrtError("check_parity needs data: a Dataset, a uint8 array, or a data spec such as 'digits'")
    from pixelrt.data import load_dataset, split

    return split(load_dataset(str(data), levels=None if image is None else image.levels))[1]
