"""The "Export your own model" page runs as written: its Python blocks (training shortened to one epoch),
then the page's `pixelrt sample` on the bundle it wrote."""
import re
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "export-your-model.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_export_your_own_model_page_runs(tmp_path, monkeypatch, capsys):
    from pixelrt.cli import main

    blocks = _python_blocks(DOC.read_text())
    assert len(blocks) == 3  # the model and training loop + export, sampling, the registration snippet
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(blocks[0].replace("EPOCHS = 3", "EPOCHS = 1"), scope)  # noqa: S102 - our own documentation
    result = scope["result"]
    assert result.report.ok and (tmp_path / "bundles" / "gated-residual" / "manifest.json").is_file()
    assert result.bundle.family == "causal-sequential" and len(result.bundle.state) == 3  # 5x5 A, 3x3 B, 5x5 B
    exec(blocks[1], scope)  # noqa: S102
    assert scope["samples"].images.shape == (16, 1, 8, 8)
    assert np.isfinite(scope["samples"].bits_per_dim).all()
    assert main(["sample", "bundles/gated-residual", "-n", "4", "-o", "samples.png", "--no-progress"]) == 0
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert "sampled 4 images" in capsys.readouterr().out
