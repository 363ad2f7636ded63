"""Warnings about a trained model that its headline number hides, shared by the trainer and `pixelrt eval`
(torch-free). Warnings go to the ``pixelrt`` logger, so they reach stderr (Python's last-resort handler)
unless the application configures logging; stdout keeps the report.

Posterior collapse: a latent-variable model's mean KL(q(z|x) || p(z)) over the data is an upper bound
on the information z carries about x (E_x KL = I_q(x; z) + KL(q(z) || p(z)) >= I_q(x; z)). Below
``KL_COLLAPSE_NATS`` per image (0.01 nats, 0.014 bits, against the tens to hundreds of nats of an
image) z tells the decoder nothing: the decoder models x alone and ignores z. The floor is per image
(the whole latent), not per dimension: single dimensions switched off are normal in a VAE (it uses the
dimensions it needs); every dimension switched off is the collapse.
"""
from __future__ import annotations

import logging

LOG = logging.getLogger("pixelrt")
KL_COLLAPSE_NATS = 0.01  # nats per image

FIXES = {
    "vae": "train longer (--epochs) or with a lower --lr, or use a larger latent (--set latent=16)",
    "pixelvae": "raise the free-bits floor (--set free_bits=0.5), weaken p(x|z) so z must carry the global "
                "structure (--set pixel_layers=2 --set input_kernel=3) or use a larger latent (--set latent=16)",
}


def kl_collapse_message(kl_nats: float, family: str, where: str = "the held-out split") -> str | None:
    """One line saying what a mean KL below :data:`KL_COLLAPSE_NATS` means and what to do; None above it."""
    if not kl_nats < KL_COLLAPSE_NATS:  # NaN is the trainer's or the runtime's own error, not a collapse
        return None
    fix = FIXES.get(family, FIXES["vae"])
    return (f"warning: posterior collapse: KL(q(z|x) || p(z)) on {where} averages {kl_nats:.4f} nats per image "
            f"(< {KL_COLLAPSE_NATS}), so z carries almost nothing about the image and the decoder ignores it; "
            f"retrain: {fix} (KL warm-up is general advice, pixelrt's trainer has none)")


def warn_kl_collapse(kl_nats: float, family: str, where: str = "the held-out split") -> str | None:
    """Log :func:`kl_collapse_message` as a warning of the ``pixelrt`` logger; returns it (None: no collapse)."""
    message = kl_collapse_message(kl_nats, family, where)
    if message:
        LOG.warning(message)
    return message
