"""StyleGAN2 adversarial losses: non-saturating logistic loss, R1 and path-length regularisation.

The functions return unweighted batch means; the caller applies the weights and the lazy-regularisation
factor (StyleGAN2: ``gamma / 2 * r1_interval * r1_penalty(...)`` every ``r1_interval`` steps, and
``pl_weight * pl_interval * penalty`` every ``pl_interval`` steps).
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``mean(softplus(-D(G(z))))`` = ``-mean(log sigmoid(D(G(z))))``."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss ``mean(softplus(D(fake))) + mean(softplus(-D(real)))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1: ``mean over the batch of |d sum(D(x)) / d x_b|^2``; differentiable (create_graph=True).

    ``real_images`` must have had ``requires_grad_(True)`` before the discriminator ran on them.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images.requires_grad_(True) set before computing real_logits")
    (grads,) = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_images], create_graph=True)
    return grads.square().flatten(1).sum(dim=1).mean()


def path_length_penalty(
    images: torch.Tensor,  # G(ws): [B, C, H, W], still attached to the graph of ws.
    ws: torch.Tensor,  # The latents that produced the images: [B, num_ws, w_dim], requires_grad.
    pl_mean: Union[torch.Tensor, float],  # Running mean of the path lengths (0 at the start of training).
    decay: float = 0.01,  # EMA rate of pl_mean, StyleGAN2's pl_decay.
) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regulariser -> ``(penalty, new_pl_mean)``.

    ``penalty`` = mean over the batch of ``(|J^T y| - a)^2``, y a random image scaled by 1/sqrt(H*W), J the
    Jacobian d images / d ws, a the updated running mean; ``new_pl_mean`` is detached: keep it for the next call.
    """
    if ws.ndim != 3 or ws.shape[0] != images.shape[0]:
        raise ValueError(f"ws must be [B, num_ws, w_dim] with the batch of images {list(images.shape)}, "
                         f"got {list(ws.shape)}")
    if not ws.requires_grad:
        raise ValueError("path_length_penalty needs ws.requires_grad_(True) set before generating the images")
    # Dividing by sqrt(H*W) makes the expected length independent of the resolution.
    pl_noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grads,) = torch.autograd.grad(outputs=[(images * pl_noise).sum()], inputs=[ws], create_graph=True)
    lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()  # [B]
    pl_mean = torch.as_tensor(pl_mean, dtype=lengths.dtype, device=lengths.device)
    # As StyleGAN2, the penalty uses the updated mean, gradient included.
    new_mean = pl_mean.lerp(lengths.mean(), decay)
    penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean.detach()
