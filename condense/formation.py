"""Multi-formation: each canvas holds factor x factor small images, decoded by bilinear upsampling.

With factor f, a canvas [C,H,W] is cut into f*f crops of (H/f, W/f) (row-major), and each crop is
upsampled back to H x W. IPC k therefore gives k*f*f training images per class. Initialisation tiles
f*f random real images of the class, downsized by f x f box averaging, into each canvas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import RealData
from .errors import UserError


def _check(height: int, width: int, factor: int) -> None:
    if factor < 1 or height % factor or width % factor:
        raise UserError(f"multi-formation factor {factor} must divide the image size {height}x{width}")


def decode(canvases: torch.Tensor, factor: int) -> torch.Tensor:
    """[M,C,H,W] canvases -> [M*f*f,C,H,W] images (canvas-major, crops row-major); differentiable."""
    if factor == 1:
        return canvases
    m, c, h, w = canvases.shape
    _check(h, w, factor)
    crops = canvases.reshape(m, c, factor, h // factor, factor, w // factor).permute(0, 2, 4, 1, 3, 5)
    crops = crops.reshape(m * factor * factor, c, h // factor, w // factor)
    return F.interpolate(crops, size=(h, w), mode="bilinear", align_corners=False)


def decoded_labels(canvas_labels: torch.Tensor, factor: int) -> torch.Tensor:
    """The label of every decoded image: each canvas label repeated f*f times."""
    return canvas_labels.repeat_interleave(factor * factor)


def tile(images: torch.Tensor, factor: int) -> torch.Tensor:
    """[M*f*f,C,H,W] images -> [M,C,H,W] canvases of f x f downsized images (inverse order of `decode`)."""
    if factor == 1:
        return images
    n, c, h, w = images.shape
    _check(h, w, factor)
    small = F.interpolate(images, size=(h // factor, w // factor), mode="area")  # exact f x f box average
    small = small.reshape(n // factor**2, factor, factor, c, h // factor, w // factor).permute(0, 3, 1, 4, 2, 5)
    return small.reshape(n // factor**2, c, h, w).clamp(0, 1)


def init_canvases(data: RealData, ipc: int, factor: int, generator: torch.Generator, classes=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Canvases [classes*ipc,C,H,W] tiled from distinct random real images of each class, and their labels."""
    classes = list(range(data.num_classes)) if classes is None else list(classes)
    per_class = ipc * factor * factor
    indices = data.balanced_indices(per_class, generator, classes)
    canvases = tile(data.floats(indices), factor)
    labels = torch.tensor(classes).repeat_interleave(ipc)
    return canvases, labels
