"""Maximum-likelihood training: Adam on bits/dim, held-out bits/dim each epoch, best checkpoint kept.

Held-out evaluation uses the same full path the exporter traces, so the number
printed here is the number ``pixelrt eval`` reproduces from the bundle. Each checkpoint holds
``training.png``, its training curve (``pixelrt.plots``); a latent-variable model's held-out KL is
recorded per epoch and a collapsed posterior is warned about (``pixelrt.diagnostics``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pixelrt.atomic import atomic_write_bytes
from pixelrt.data import Dataset, batches
from pixelrt.diagnostics import warn_kl_collapse
from pixelrt.models.checkpoint import save_checkpoint
from pixelrt.plots import training_curve_png

CURVE = "training.png"  # beside every checkpoint's weights


@dataclass
class TrainConfig:
    epochs: int = 15                  # passes over the training split (cosine schedule spans them)
    time_budget: float | None = None  # seconds; stop after the batch that crosses it
    batch_size: int = 64
    lr: float = 2e-3
    grad_clip: float = 1.0            # max global gradient norm
    weight_decay: float = 0.1         # AdamW decoupled weight decay (digits is small: it overfits)
    seed: int = 0                     # init, shuffling
    eval_batch_size: int = 256


@dataclass
class TrainResult:
    best_bits_per_dim: float
    best_epoch: int
    history: list = field(default_factory=list)  # one dict per epoch
    seconds: float = 0.0


def checkpoint_meta(train_set: Dataset, test_set: Dataset, data_record: dict) -> dict:
    """What a checkpoint records about its data: image geometry, and the data set and split
    (``data_record``: spec, levels, test_fraction, split_seed) so eval can reproduce the held-out set."""
    C, H, W = train_set.shape
    return {"image": {"channels": C, "height": H, "width": W, "levels": train_set.levels},
            "data": {**data_record, "train_images": len(train_set), "test_images": len(test_set)}}


def dataset_context(model: torch.nn.Module, ds: Dataset) -> dict[str, np.ndarray]:
    """Per-image conditioning a model takes (its step protocol's ``conditioning`` records), read from the data set."""
    from pixelrt.data import data_context
    from pixelrt.models.contract import conditioning

    return data_context([c.name for c in conditioning(model)], ds)


def _context_batches(x: np.ndarray, context: dict, batch_size: int, shuffle: bool = False, seed: int = 0):
    """(uint8 images, {name: tensor}) batches in the order ``batches`` would give."""
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    for lo in range(0, len(x), batch_size):
        idx = order[lo:lo + batch_size]
        yield x[idx], {k: torch.from_numpy(np.asarray(v)[idx]) for k, v in context.items()}


def bits_per_dim(model: torch.nn.Module, x: np.ndarray, batch_size: int = 256, context: dict | None = None) -> float:
    """Mean bits per sub-pixel of ``x`` under ``model`` (full path, exact); ``context`` per image."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        if context:
            for xb, ctx in _context_batches(x, context, batch_size):
                total += float(model(torch.from_numpy(xb), **ctx).double().sum())
        else:
            for xb in batches(x, batch_size):
                total += float(model(torch.from_numpy(xb)).double().sum())
    return -total / (x.size * math.log(2.0))


def held_out_kl(model: torch.nn.Module, x: np.ndarray, batch_size: int = 256) -> float | None:
    """Mean KL(q(z|x) || p(z)) per image of ``x`` in nats, for a model with ``posterior_kl`` (VAE,
    PixelVAE); None for models without a latent."""
    kl = getattr(model, "posterior_kl", None)
    if kl is None:
        return None
    model.eval()
    with torch.inference_mode():
        total = sum(float(kl(torch.from_numpy(xb)).double().sum()) for xb in batches(x, batch_size))
    return total / len(x)


def train(model: torch.nn.Module, train_set: Dataset, test_set: Dataset, cfg: TrainConfig,
          out: str | Path, meta: dict, progress: bool = True, log=print) -> TrainResult:
    """Train ``model`` and keep the checkpoint with the best held-out bits/dim at ``out``."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch, eta_min=cfg.lr * 0.05)
    dims = int(np.prod(train_set.shape))
    train_ctx, test_ctx = dataset_context(model, train_set), dataset_context(model, test_set)
    result = TrainResult(best_bits_per_dim=math.inf, best_epoch=-1)
    metric = getattr(model, "metric", "bits/dim")
    start = time.perf_counter()
    out_of_time = False
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        bar = tqdm(_context_batches(train_set.x, train_ctx, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch),
                   total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not progress)
        train_bpd = []
        for xb, ctx in bar:
            loss = -model(torch.from_numpy(xb), **ctx).mean() / (dims * math.log(2.0))  # bits/dim
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            train_bpd.append(float(loss.detach()))
            bar.set_postfix(bpd=f"{train_bpd[-1]:.3f}")
            if cfg.time_budget is not None and time.perf_counter() - start > cfg.time_budget:
                out_of_time = True
                break
        bar.close()
        test_bpd = bits_per_dim(model, test_set.x, cfg.eval_batch_size, test_ctx)
        improved = test_bpd < result.best_bits_per_dim
        row = {"epoch": epoch, "train_bits_per_dim": float(np.mean(train_bpd)), "test_bits_per_dim": test_bpd,
               "seconds": round(time.perf_counter() - start, 2)}
        kl = held_out_kl(model, test_set.x, cfg.eval_batch_size)
        if kl is not None:
            row["test_kl_nats"] = kl
        result.history.append(row)
        log(f"epoch {epoch:3d}  train {row['train_bits_per_dim']:.4f}  held-out {test_bpd:.4f} {metric}"
            + (f"  KL {kl:.2f} nats" if kl is not None else "") + ("  (best, saved)" if improved else ""))
        if improved:
            result.best_bits_per_dim, result.best_epoch = test_bpd, epoch
            save_checkpoint(model, out, {**meta, "training": {
                "config": asdict(cfg), "epoch": epoch, "test_bits_per_dim": test_bpd, "history": result.history}},
                extra_files={CURVE: training_curve_png(result.history, metric, epoch)})
        if out_of_time:
            log(f"time budget of {cfg.time_budget:.0f} s reached after epoch {epoch}")
            break
    result.seconds = time.perf_counter() - start
    if 0 < result.best_epoch < len(result.history):
        # later epochs did not improve: the checkpoint stays the best epoch's, its curve gains the rest
        atomic_write_bytes(Path(out) / CURVE, training_curve_png(result.history, metric, result.best_epoch))
    best = result.history[result.best_epoch - 1] if result.best_epoch > 0 else {}
    if "test_kl_nats" in best:
        warn_kl_collapse(best["test_kl_nats"], getattr(model, "family", "vae"),
                         where=f"the held-out split (epoch {result.best_epoch}, the checkpoint)")
    return result
