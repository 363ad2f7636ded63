"""Regenerate tests/fixtures/pixelcnnpp_pclucas/ from the public PixelCNN++ implementation.

    git clone https://github.com/pclucas14/pixel-cnn-pp /tmp/pixel-cnn-pp
    .venv/bin/python scripts/make_pclucas_fixture.py /tmp/pixel-cnn-pp

A development-time script: it imports that repository's model.py / layers.py / utils.py from a scratch
copy (never from pixelrt), after the edits it needs on a CPU build of torch and Python 3: its unconditional
``.cuda()`` on the loss's zeros, one Python 2 ``print e``, and the dtype of its ones padding (so that it
runs in float64). Its code
does not go into pixelrt; only its outputs are stored, as data:

* ``grey.safetensors`` / ``rgb.safetensors``: the random-init state_dict of ``PixelCNN(nr_resnet=1,
  nr_filters=16, nr_logistic_mix=3, input_channels=C)`` under ``torch.manual_seed(SEED)``, unchanged
  (weight-normalised ``weight_g`` / ``weight_v`` pairs, the implementation's own key names);
* ``grey.npz`` / ``rgb.npz``: a fixed uint8 batch ``x`` (N, C, 8, 8) and ``loglik``, each image's
  log-likelihood in nats from the implementation's own ``discretized_mix_logistic_loss(_1d)``, computed
  in float64 (weights loaded from the float32 file).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

SEED = 0
CONFIG = {"nr_resnet": 1, "nr_filters": 16, "nr_logistic_mix": 3}
SIDE, IMAGES = 8, 4
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pixelcnnpp_pclucas"
EDITS = {
    "utils.py": [("Variable(torch.zeros(xs + [nr_mix]).cuda(), requires_grad=False)",
                  "torch.zeros(xs + [nr_mix], dtype=x.dtype)"), ("print e", "print(e)")],
    "model.py": [("padding = Variable(torch.ones(xs[0], 1, xs[2], xs[3]), requires_grad=False)",
                  "padding = torch.ones(xs[0], 1, xs[2], xs[3], dtype=x.dtype)")],
}


def scratch_copy(repo: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="pclucas-"))
    for name in ("model.py", "layers.py", "utils.py"):
        text = (repo / name).read_text()
        for old, new in EDITS.get(name, []):
            if old not in text:
                sys.exit(f"{repo / name} does not contain {old!r}: another revision of the repository?")
            text = text.replace(old, new)
        (tmp / name).write_text(text)
    return tmp


def main(repo: Path) -> None:
    tmp = scratch_copy(repo)
    sys.path.insert(0, str(tmp))
    try:
        import model as pclucas_model  # noqa: the scratch copy
        import utils as pclucas_utils
    finally:
        sys.path.pop(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, channels in (("grey", 1), ("rgb", 3)):
        torch.manual_seed(SEED)
        net = pclucas_model.PixelCNN(input_channels=channels, **CONFIG).eval()
        state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(OUT / f"{name}.safetensors"))
        x = np.random.default_rng(SEED + channels).integers(0, 256, (IMAGES, channels, SIDE, SIDE)).astype(np.uint8)
        ref = pclucas_model.PixelCNN(input_channels=channels, **CONFIG).double().eval()
        ref.load_state_dict({k: v.double() for k, v in state.items()})
        loss = pclucas_utils.discretized_mix_logistic_loss_1d if channels == 1 else \
            pclucas_utils.discretized_mix_logistic_loss
        loglik = []
        with torch.no_grad():
            for img in x:  # the loss sums over its batch: one image at a time gives per-image values
                xf = torch.from_numpy(img[None].astype(np.float64)) / 255.0 * 2.0 - 1.0  # its rescaling
                loglik.append(-float(loss(xf, ref(xf, sample=True))))
        np.savez(OUT / f"{name}.npz", x=x, loglik=np.array(loglik, np.float64))
        print(f"{name}: {len(state)} tensors, loglik {np.round(loglik, 4).tolist()}")
    (OUT / "config.json").write_text(json.dumps({"seed": SEED, **CONFIG, "side": SIDE,
                                                 "source": "github.com/pclucas14/pixel-cnn-pp"}, indent=1) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
