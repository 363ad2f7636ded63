"""Weights of the most-used public PyTorch PixelCNN++ (github.com/pclucas14/pixel-cnn-pp) in pixelrt's own
PixelCNN++ (models/pixelcnnpp.py), with its multi-rate cached step graphs.

    model = import_pclucas("models/pcnn_lr.0.00040_nr-resnet5_nr-filters160_889.pth")
    pixelrt.export_model(model, image=(3, 32, 32, 256), out="bundles/pp", data="cifar.bin")

That implementation and pixelrt's are the same network (Salimans et al.'s: u / ul streams, three resolutions,
concat-ELU gated resnets, the same shifts and paddings), so importing is a renaming, checked key by key and
shape by shape, plus three conversions:

* weight normalisation is folded: w = g * v / ||v||, the norm over every axis where g has size 1 (its
  ConvTranspose2d layers normalise per input channel, its Conv2d and Linear per output channel);
* its ``nin`` layers are Linear over channels: (out, in) becomes a 1x1 conv (out, in, 1, 1);
* its output layer orders each pixel's mixture parameters ``logits | per channel c: means, log-scales,
  coefficients`` where pixelrt's head reads ``logits | means (C, K) | log-scales (C, K) | coefficients``;
  the output rows are permuted once (its coefficient slot c is pixelrt's coefficient row c).

Nothing is unpickled: a ``.pth`` / ``.pt`` file is read with ``torch.load(..., weights_only=True)`` (tensors
only), a ``.safetensors`` file with safetensors. Its ``nr_resnet``, ``nr_filters``, ``nr_logistic_mix`` and
``input_channels`` are read off the tensor shapes; it always has three resolutions.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from pixelrt.errors import CheckpointError
from pixelrt.models.pixelcnnpp import PixelCNNPP
from pixelrt.models.pixelcnnpp_layers import PixelCNNPPConfig

SOURCE = "github.com/pclucas14/pixel-cnn-pp"
RESOLUTIONS = 3


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved state_dict, never unpickling code; a ``module.`` (DataParallel) prefix is dropped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; pass the .pth the PixelCNN++ implementation saved "
                              f"(torch.save(model.state_dict(), ...))")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a pickle with code, a truncated file: one message either way
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{path} is not a tensors-only state_dict ({detail}); pixelrt never unpickles code: "
                              "save the weights with torch.save(model.state_dict(), path)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors; save it with "
                              "torch.save(model.state_dict(), path)")
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def infer_config(state: dict) -> PixelCNNPPConfig:
    """nr_filters, input_channels, nr_resnet and nr_logistic_mix from the tensor shapes."""
    need = ("u_init.conv.weight_v", "nin_out.lin_a.weight_v")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"the state_dict has no {', '.join(missing)}: it is not a {SOURCE} PixelCNN "
                              "(saved with weight normalisation, its default)")
    filters, cin = state["u_init.conv.weight_v"].shape[:2]
    channels = int(cin) - 1
    if channels not in (1, 3):
        raise CheckpointError(f"u_init.conv reads {cin} channels: {SOURCE} models take 1 or 3 image channels "
                              "plus one padding channel")
    resnet = sum(1 for k in state if re.fullmatch(r"up_layers\.0\.u_stream\.\d+\.conv_out\.conv\.bias", k))
    per_mix = 3 if channels == 1 else 10
    out = int(state["nin_out.lin_a.weight_v"].shape[0])
    if out % per_mix:
        raise CheckpointError(f"nin_out has {out} outputs, not a multiple of {per_mix} (parameters per mixture "
                              f"component for {channels}-channel images)")
    return PixelCNNPPConfig(channels=channels, levels=256, filters=int(filters), resnets=max(resnet, 1),
                            resolutions=RESOLUTIONS, mixtures=out // per_mix)


def key_map(cfg: PixelCNNPPConfig) -> dict[str, str]:
    """pixelrt parameter prefix -> the reference's (weight-normalised) layer prefix."""
    R, n = cfg.resolutions, cfg.resnets
    m = {"u_in.conv": "u_init.conv", "ul_in_up.conv": "ul_init.0.conv", "ul_in_left.conv": "ul_init.1.conv",
         "out": "nin_out.lin_a"}
    for r in range(R):
        for j in range(n):  # encoder = its up pass, resolution r = its up_layers[r]
            src = f"up_layers.{r}"
            m[f"u_enc.{r}.{j}.conv1.conv"] = f"{src}.u_stream.{j}.conv_input.conv"
            m[f"u_enc.{r}.{j}.conv2.conv"] = f"{src}.u_stream.{j}.conv_out.conv"
            m[f"ul_enc.{r}.{j}.conv1.conv"] = f"{src}.ul_stream.{j}.conv_input.conv"
            m[f"ul_enc.{r}.{j}.nin"] = f"{src}.ul_stream.{j}.nin_skip.lin_a"
            m[f"ul_enc.{r}.{j}.conv2.conv"] = f"{src}.ul_stream.{j}.conv_out.conv"
        i = R - 1 - r  # decoder = its down pass, coarsest first: resolution r = its down_layers[R-1-r]
        for j in range(n if r == R - 1 else n + 1):
            src = f"down_layers.{i}"
            for stream in ("u", "ul"):
                m[f"{stream}_dec.{r}.{j}.conv1.conv"] = f"{src}.{stream}_stream.{j}.conv_input.conv"
                m[f"{stream}_dec.{r}.{j}.nin"] = f"{src}.{stream}_stream.{j}.nin_skip.lin_a"
                m[f"{stream}_dec.{r}.{j}.conv2.conv"] = f"{src}.{stream}_stream.{j}.conv_out.conv"
    for k in range(R - 1):
        m[f"u_down.{k}.conv"] = f"downsize_u_stream.{k}.conv"
        m[f"ul_down.{k}.conv"] = f"downsize_ul_stream.{k}.conv"
        m[f"u_up.{R - 2 - k}.deconv"] = f"upsize_u_stream.{k}.deconv"  # its upsize[k] follows down_layers[k]
        m[f"ul_up.{R - 2 - k}.deconv"] = f"upsize_ul_stream.{k}.deconv"
    return m


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """w = g * v / ||v||, the norm over the axes where g has size 1 (torch.nn.utils.weight_norm), in float64."""
    axes = [d for d in range(v.dim()) if g.dim() <= d or g.shape[d] == 1]
    v64 = v.double()
    return (g.double() * v64 / v64.pow(2).sum(dim=axes, keepdim=True).sqrt()).float()


def output_permutation(channels: int, mixtures: int) -> torch.Tensor:
    """Row i of pixelrt's output layer = row perm[i] of the reference's nin_out."""
    C, K = channels, mixtures
    per = 2 if C == 1 else 3  # the reference's per-channel block: means, log-scales[, coefficients]
    perm = list(range(K))
    for part in range(per):  # pixelrt: means (C, K), then log-scales (C, K), then coefficient rows (C, K)
        for c in range(C):
            perm += [K + c * per * K + part * K + k for k in range(K)]
    return torch.tensor(perm)


def convert(state: dict, cfg: PixelCNNPPConfig | None = None) -> tuple[PixelCNNPP, list[str]]:
    """pixelrt's PixelCNN++ with the reference's weights, and the list of mismatches (empty when it fits)."""
    cfg = cfg or infer_config(state)
    model = PixelCNNPP(cfg).eval()
    target = model.state_dict()
    problems, used, out = [], set(), {}
    for dst, src in key_map(cfg).items():
        for kind in ("weight", "bias"):
            want = target[f"{dst}.{kind}"]
            keys = (f"{src}.weight_g", f"{src}.weight_v") if kind == "weight" else (f"{src}.bias",)
            absent = [k for k in keys if k not in state]
            if absent:
                problems.append(f"missing {', '.join(absent)} (for pixelrt's {dst}.{kind}, shape {tuple(want.shape)})")
                continue
            used.update(keys)
            t = fold_weight_norm(state[keys[0]], state[keys[1]]) if kind == "weight" else state[keys[0]].float()
            if kind == "weight" and t.dim() == 2 and want.dim() == 4:  # nin: Linear -> 1x1 conv
                t = t[:, :, None, None]
            if tuple(t.shape) != tuple(want.shape):
                problems.append(f"{keys[-1]} has shape {tuple(state[keys[-1]].shape)}, pixelrt's {dst}.{kind} needs "
                                f"{tuple(want.shape)}")
                continue
            out[f"{dst}.{kind}"] = t
    problems += [f"unexpected {k} (shape {tuple(state[k].shape)}): not part of a {SOURCE} PixelCNN with "
                 f"nr_resnet={cfg.resnets}" for k in sorted(set(state) - used)]
    if not problems:
        perm = output_permutation(cfg.channels, cfg.mixtures)
        out["out.weight"], out["out.bias"] = out["out.weight"][perm], out["out.bias"][perm]
        model.load_state_dict(out, strict=True)
    return model, problems


def import_pclucas(path: str | Path) -> PixelCNNPP:
    """pixelrt's PixelCNN++ (eval mode, 256 levels: the reference's bins) with the weights of a state_dict the
    reference implementation saved."""
    state = read_state_dict(path)
    cfg = infer_config(state)
    model, problems = convert(state, cfg)
    if problems:
        lines = "\n  ".join(problems)
        raise CheckpointError(f"{path} does not fit a {SOURCE} PixelCNN with nr_resnet={cfg.resnets}, nr_filters="
                              f"{cfg.filters}, nr_logistic_mix={cfg.mixtures}, input_channels={cfg.channels} "
                              f"({len(problems)} mismatches):\n  {lines}")
    return model
