"""PixelCNN++ weights from github.com/pclucas14/pixel-cnn-pp: the fixture (tests/fixtures/pixelcnnpp_pclucas/,
made by scripts/make_pclucas_fixture.py from that implementation, random-init weights and its own
log-likelihoods of a fixed batch in float64) against pixelrt's PixelCNN++ with the imported weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pixelrt.errors import CheckpointError
from pixelrt.models.pclucas import import_pclucas, output_permutation

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pixelcnnpp_pclucas"
BPD = 1e-5


def _delta_bpd(model, name):
    ref = np.load(FIXTURE / f"{name}.npz")
    with torch.no_grad():
        got = model(torch.from_numpy(ref["x"])).double().numpy()
    dims = np.prod(ref["x"].shape[1:])
    return np.abs(got - ref["loglik"]).max() / (dims * np.log(2)), ref


@pytest.mark.parametrize("name", ["grey", "rgb"])
def test_imported_loglik_matches_the_reference_implementation(name, tmp_path):
    state = load_file(str(FIXTURE / f"{name}.safetensors"))
    assert len(state) == 171 and any(k.endswith("weight_g") for k in state)
    torch.save(state, tmp_path / "model.pth")  # what its main.py writes: read back with weights_only=True
    model = import_pclucas(tmp_path / "model.pth")
    delta, ref = _delta_bpd(model, name)
    assert delta <= BPD, delta
    assert model.config.channels == ref["x"].shape[1] and model.config.filters == 16
    assert model.config.resnets == 1 and model.config.mixtures == 3
    # the comparison can fail: unpermuted output rows (RGB) or unfolded weight norm give other numbers
    if name == "rgb":
        model.out.weight.data = model.out.weight.data[torch.argsort(output_permutation(3, 3))]
        assert _delta_bpd(model, name)[0] > 1e-3


def test_every_mismatch_is_named(tmp_path):
    state = load_file(str(FIXTURE / "grey.safetensors"))
    del state["down_layers.1.ul_stream.0.nin_skip.lin_a.bias"]
    state["u_init.conv.bias"] = torch.zeros(15)
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        import_pclucas(tmp_path / "bad.pth")
    msg = str(e.value)
    assert "3 mismatches" in msg
    assert "missing down_layers.1.ul_stream.0.nin_skip.lin_a.bias" in msg
    assert "u_init.conv.bias has shape (15,), pixelrt's u_in.conv.bias needs (16,)" in msg
    assert "unexpected extra.weight" in msg


def test_a_pickle_with_code_is_refused(tmp_path):
    torch.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")  # a module object: needs unpickling code
    with pytest.raises(CheckpointError, match="not a tensors-only state_dict"):
        import_pclucas(tmp_path / "module.pth")


def test_cli_import_writes_a_checkpoint_pixelrt_loads(tmp_path, capsys):
    from pixelrt.cli import main
    from pixelrt.models.checkpoint import load_checkpoint

    assert main(["import-pclucas", str(FIXTURE / "rgb.safetensors"), "-o", str(tmp_path / "ckpt"),
                 "--image", "3x8x8"]) == 0
    model, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta["image"] == {"channels": 3, "height": 8, "width": 8, "levels": 256}
    assert _delta_bpd(model, "rgb")[0] <= BPD
    assert main(["import-pclucas", str(FIXTURE / "rgb.safetensors"), "-o", str(tmp_path / "c2"),
                 "--image", "3x6x6"]) == 2  # 6 is not divisible by 4 (three resolutions)
    assert "divisible by 4" in capsys.readouterr().err
