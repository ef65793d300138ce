"""Batch augmentation on tensors: random crop after zero padding, random horizontal flip (per sample, seeded)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor, *, generator: torch.Generator, crop_padding: int = 0, hflip: bool = False
) -> torch.Tensor:
    """Randomly crop and flip every image of an NCHW batch, independently, drawing only from ``generator``.

    The crop is the standard CIFAR recipe (He et al., Deep Residual Learning for Image Recognition, CVPR 2016, §4.2):
    pad ``crop_padding`` zeros on each side, then cut an ``H x W`` window at offsets ``(dy, dx)`` drawn uniformly in
    ``[0, 2 * crop_padding]``, so the content moves by at most ``crop_padding`` pixels each way. The flip mirrors
    the width axis with probability 1/2. Draws, in order: ``dy``, ``dx``, flip decisions — the same generator state
    gives the same batch. Fully vectorised (one gather), works on any device.

    Returns:
        A new tensor; ``x`` itself when neither augmentation is asked for.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects an NCHW batch, got shape {tuple(x.shape)}")
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
    n, channels, height, width = x.shape
    device = generator.device
    if crop_padding:
        span = 2 * crop_padding + 1
        dy = torch.randint(0, span, (n,), generator=generator, device=device).to(x.device)
        dx = torch.randint(0, span, (n,), generator=generator, device=device).to(x.device)
        padded = F.pad(x, (crop_padding,) * 4)
        rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(channels, device=x.device)[None, :, None, None]
        x = padded[batch, channel, rows, cols]
    if hflip:
        flip = (torch.rand(n, generator=generator, device=device) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x
