"""Checkpoints round-trip exactly, and a bad one is one CheckpointError; loading never unpickles."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelrt.errors import CheckpointError, PixelrtError
from pixelrt.models import PixelCNN, PixelCNNConfig
from pixelrt.models.checkpoint import CONFIG, WEIGHTS, load_checkpoint, read_checkpoint_meta, save_checkpoint
from pixelrt.bundle import sha256_file

META = {"image": {"channels": 1, "height": 5, "width": 6, "levels": 7}, "data": {"spec": "test"}}


def _model(seed: int = 0, **overrides) -> PixelCNN:
    torch.manual_seed(seed)
    cfg = {"channels": 1, "levels": 7, "hidden": 6, "blocks": 2, "head_hidden": 4, **overrides}
    return PixelCNN(PixelCNNConfig(**cfg)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, path) of one saved checkpoint; tests copy the folder before damaging it."""
    model = _model()
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "ckpt", META)
    return model, path


@pytest.fixture
def ckpt(saved, tmp_path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(saved[1], dst)
    return dst


def _doc(path: Path) -> dict:
    return json.loads((path / CONFIG).read_text())


def _write_doc(path: Path, doc: dict) -> None:
    (path / CONFIG).write_text(json.dumps(doc, indent=2))


# ---------------------------------------------------------------- round trip

def test_round_trip_is_exact(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == [CONFIG, WEIGHTS]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # atomic: no temp left
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    assert type(loaded) is PixelCNN and loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 7, (4, 1, 5, 6)))
    with torch.inference_mode():
        assert torch.equal(model.log_prob(x), loaded.log_prob(x))
        assert torch.equal(model(x), loaded(x))
    assert meta["image"] == META["image"] and meta["data"] == META["data"]
    assert meta["family"] == "pixelcnn" and meta["weights"]["sha256"] == sha256_file(path / WEIGHTS)


def test_save_refuses_existing_without_overwrite(saved, ckpt):
    before = (ckpt / WEIGHTS).read_bytes()
    with pytest.raises(PixelrtError, match=r"already exists"):
        save_checkpoint(_model(seed=1), ckpt, META, overwrite=False)
    assert (ckpt / WEIGHTS).read_bytes() == before


def test_save_overwrite_replaces(ckpt):
    other = _model(seed=1)
    save_checkpoint(other, ckpt, META)
    loaded, _ = load_checkpoint(ckpt)
    for k, v in other.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


# ---------------------------------------------------------------- not a checkpoint

def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not a pixelrt checkpoint \(expected a folder with checkpoint\.json "
                                              r"and weights\.safetensors\); create one with `pixelrt train"):
        load_checkpoint(tmp_path / "nope")


def test_empty_dir_and_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not a pixelrt checkpoint"):
        load_checkpoint(tmp_path)
    f = tmp_path / "model.pt"
    f.write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match=r"model\.pt is not a pixelrt checkpoint"):
        load_checkpoint(f)


def test_wrong_format(ckpt):
    doc = _doc(ckpt)
    doc["format"] = "something-else"
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError,
                       match=r"is not a pixelrt checkpoint config \(format is not 'pixelrt-checkpoint'\)"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("content", ["truncate", "", "\x00\xff"], ids=["truncated", "empty", "binary"])
def test_config_not_json(ckpt, content):
    p = ckpt / CONFIG
    text = p.read_text()
    if content == "truncate":
        p.write_text(text[: len(text) // 2])
    else:
        p.write_bytes(content.encode("latin-1"))
    with pytest.raises(CheckpointError, match=r"checkpoint\.json is corrupt \(not valid JSON.*re-run `pixelrt train`"):
        read_checkpoint_meta(ckpt)
    with pytest.raises(CheckpointError, match=r"checkpoint\.json is corrupt"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("key", ["config", "weights", "family"])
def test_config_missing_key(ckpt, key):
    doc = _doc(ckpt)
    del doc[key]
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError, match=rf"checkpoint\.json has a missing or malformed entry .*{key}"):
        load_checkpoint(ckpt)


def test_config_invalid_values(ckpt):
    doc = _doc(ckpt)
    doc["config"]["hidden"] = 5  # not divisible by 2*channels
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError, match=r"missing or malformed entry .*hidden=5 must be divisible"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("edit", ["family", "config_key"])
def test_config_unknown_family_or_field(ckpt, edit):
    doc = _doc(ckpt)
    if edit == "family":
        doc["family"] = "wavenet"
    else:
        doc["config"]["dropout"] = 0.1
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError, match=r"checkpoint\.json"):
        load_checkpoint(ckpt)


# ---------------------------------------------------------------- weights

def test_missing_weights(ckpt):
    (ckpt / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is missing; the checkpoint is incomplete, "
                                              r"re-run `pixelrt train`"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("where", ["header", "middle", "end"])
def test_flipped_byte_in_weights(ckpt, where):
    p = ckpt / WEIGHTS
    data = bytearray(p.read_bytes())
    data[{"header": 3, "middle": len(data) // 2, "end": len(data) - 1}[where]] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: sha256 does not match checkpoint\.json; "
                                              r"the file was changed or truncated"):
        load_checkpoint(ckpt)


def test_truncated_weights(ckpt):
    p = ckpt / WEIGHTS
    p.write_bytes(p.read_bytes()[:-64])
    with pytest.raises(CheckpointError, match=r"sha256 does not match"):
        load_checkpoint(ckpt)


def test_weights_from_a_different_config(ckpt):
    doc = _doc(ckpt)
    doc["config"]["hidden"] = 12  # valid, but the stored tensors are for hidden=6
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError, match=r"(?s)weights\.safetensors does not fit the model in checkpoint\.json "
                                              r"\(.*size mismatch for input_conv\.weight"):
        load_checkpoint(ckpt)


def test_mismatch_message_is_one_line_with_a_fix(ckpt):
    doc = _doc(ckpt)
    doc["config"]["hidden"] = 12
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt)
    msg = str(info.value)
    assert "\n" not in msg and "\t" not in msg, msg
    assert "pixelrt train" in msg, msg


def test_weights_of_another_model_with_matching_sha(ckpt, tmp_path):
    """A valid safetensors file from a bigger model, hash updated: caught by the strict state_dict load."""
    other = save_checkpoint(_model(blocks=3), tmp_path / "other", META)
    shutil.copy(other / WEIGHTS, ckpt / WEIGHTS)
    doc = _doc(ckpt)
    doc["weights"]["sha256"] = sha256_file(ckpt / WEIGHTS)
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError, match=r"(?s)does not fit the model in checkpoint\.json \(.*Unexpected key"):
        load_checkpoint(ckpt)


def test_garbage_weights_with_matching_sha(ckpt):
    (ckpt / WEIGHTS).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    doc = _doc(ckpt)
    doc["weights"]["sha256"] = sha256_file(ckpt / WEIGHTS)
    _write_doc(ckpt, doc)
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is not a readable safetensors file"):
        load_checkpoint(ckpt)


class _Bomb:
    """Unpickling this calls ``open(marker, "w")``: the marker file proves code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("zipfile", [True, False], ids=["torch-zip", "raw-pickle"])
def test_pickle_bomb_never_runs(ckpt, tmp_path, zipfile):
    marker = tmp_path / "pwned"
    state = dict(_model().state_dict())
    state["bomb"] = _Bomb(marker)
    torch.save(state, ckpt / WEIGHTS, _use_new_zipfile_serialization=zipfile)
    doc = _doc(ckpt)
    doc["weights"]["sha256"] = sha256_file(ckpt / WEIGHTS)  # the checksum passes: only the format protects
    _write_doc(ckpt, doc)

    # the bomb is live: an unpickling loader would run it
    bait = tmp_path / "bait.pt"
    shutil.copy(ckpt / WEIGHTS, bait)
    torch.load(bait, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError, match=r"weights\.safetensors is not a readable safetensors file"):
        load_checkpoint(ckpt)
    assert not marker.exists(), "load_checkpoint executed code from the weights file"
