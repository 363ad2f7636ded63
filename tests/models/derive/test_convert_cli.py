"""`pixelrt convert FILE.py:CLASS`: the user's own file and weights into a validated bundle, or one clear error."""
import json
from pathlib import Path

import torch

from pixelrt.bundle import load_bundle
from pixelrt.cli import main

PLAIN = Path(__file__).with_name("plain_models.py")
ADAPTER = json.dumps({"channels": 1, "levels": 17, "output": "channels*levels"})


def test_convert_exports_a_plain_module_with_its_weights(tmp_path, capsys):
    from safetensors.torch import save_file

    from tests.models.derive.plain_models import PixelCNN

    torch.manual_seed(3)
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in PixelCNN(1, 17, 8, 1).state_dict().items()}, str(weights))
    code = main(["convert", f"{PLAIN}:PixelCNN", "--init", '{"colours": 1, "levels": 17, "hidden": 8, "blocks": 1}',
                 "--weights", str(weights), "--adapter", ADAPTER, "--image", "1x6x6", "-o", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    assert code == 0, err
    bundle = load_bundle(tmp_path / "b")
    assert bundle.image.shape == (1, 6, 6) and bundle.image.levels == 17
    assert "step graph derived from PixelCNN" in out
    assert main(["verify", str(tmp_path / "b")]) == 0


def test_convert_refuses_bad_init_and_weights_that_do_not_fit(tmp_path, capsys):
    from safetensors.torch import save_file

    argv = ["convert", f"{PLAIN}:PixelCNN", "--adapter", ADAPTER, "--image", "1x6x6", "-o", str(tmp_path / "b")]
    assert main(argv + ["--init", '{"nope": 1}']) == 2
    assert "PixelCNN(**--init) failed" in capsys.readouterr().err
    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    assert main(argv + ["--weights", str(tmp_path / "w.safetensors")]) == 2
    assert "does not fit PixelCNN" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
