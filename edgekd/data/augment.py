"""Batch augmentation on tensors, per sample and seeded: random crop after zero padding, random horizontal flip,
random erasing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Random erasing's ranges, the paper's defaults (Zhong et al., AAAI 2020): erased area
# S_e / S ~ U(s_l, s_h), aspect ratio r_e ~ U(r_1, 1 / r_1).
ERASE_AREA = (0.02, 0.4)
ERASE_MIN_ASPECT = 0.3
ERASE_ATTEMPTS = 10


def augment_batch(
    x: torch.Tensor, *, generator: torch.Generator, crop_padding: int = 0, hflip: bool = False, erase_prob: float = 0.0
) -> torch.Tensor:
    """Randomly crop, flip and erase every image of an NCHW batch, independently, drawing only from ``generator``.

    The crop is the standard CIFAR recipe (He et al., Deep Residual Learning for Image Recognition, CVPR 2016, §4.2):
    pad ``crop_padding`` zeros on each side, then cut an ``H x W`` window at offsets ``(dy, dx)`` drawn uniformly in
    ``[0, 2 * crop_padding]``, so the content moves by at most ``crop_padding`` pixels each way. The flip mirrors
    the width axis with probability 1/2. Random erasing (``erase_prob`` > 0) then follows :func:`random_erase`.
    Draws, in order: ``dy``, ``dx``, flip decisions, erasing — the same generator state gives the same batch, and a
    batch without erasing draws what it drew before erasing existed. Fully vectorised, works on any device.

    Returns:
        A new tensor; ``x`` itself, with nothing drawn, when no augmentation is asked for.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects an NCHW batch, got shape {tuple(x.shape)}")
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
    if not 0.0 <= erase_prob <= 1.0:
        raise ValueError(f"erase_prob must lie in [0, 1], got {erase_prob}")
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
    if erase_prob:
        x = random_erase(x, generator=generator, prob=erase_prob)
    return x


def random_erase(x: torch.Tensor, *, generator: torch.Generator, prob: float) -> torch.Tensor:
    """Random Erasing (Zhong et al., Random Erasing Data Augmentation, AAAI 2020, Alg. 1) of an NCHW batch in [0, 1].

    Each image is erased with probability ``prob``: a rectangle of area ``S_e = S * U(0.02, 0.4)`` and aspect ratio
    ``r_e = U(0.3, 1 / 0.3)``, so ``H_e = round(sqrt(S_e * r_e))`` and ``W_e = round(sqrt(S_e / r_e))``, placed
    uniformly where it fits inside the image, gets independent uniform values in [0, 1] (the paper's random values in
    [0, 255]) in every channel. A size that fits nowhere is redrawn, up to ``ERASE_ATTEMPTS`` times (the paper's
    loop, bounded); an image whose draws all fail stays as it is.

    Draws, in order: the erase decisions ``(N,)``, areas and aspect ratios ``(N, ERASE_ATTEMPTS)`` each, the top-left
    corners ``(N,)`` twice, the fill ``(N, C, H, W)``.
    """
    n, channels, height, width = x.shape
    device = generator.device
    erase = torch.rand(n, generator=generator, device=device) < prob
    area = height * width * torch.empty(n, ERASE_ATTEMPTS, device=device).uniform_(*ERASE_AREA, generator=generator)
    aspect = torch.empty(n, ERASE_ATTEMPTS, device=device).uniform_(
        ERASE_MIN_ASPECT, 1.0 / ERASE_MIN_ASPECT, generator=generator
    )
    tall = torch.sqrt(area * aspect).round().long()
    wide = torch.sqrt(area / aspect).round().long()
    fits = (tall >= 1) & (wide >= 1) & (tall <= height) & (wide <= width)
    first = fits.int().argmax(dim=1, keepdim=True)  # the first attempt that fits
    erase &= fits.any(dim=1)
    tall, wide = tall.gather(1, first).squeeze(1), wide.gather(1, first).squeeze(1)
    top = (torch.rand(n, generator=generator, device=device) * (height - tall + 1)).long()
    left = (torch.rand(n, generator=generator, device=device) * (width - wide + 1)).long()
    fill = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + tall)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + wide)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]).to(x.device)
    return torch.where(mask[:, None], fill, x)
