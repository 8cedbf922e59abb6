"""Multi-formation: each canvas holds factor x factor small images, decoded by bilinear upsampling.

With factor f, a canvas [C,H,W] is cut into f*f crops of (H/f, W/f) (row-major), and each crop is
upsampled back to H x W. IPC k therefore gives k*f*f training images per class. Initialisation tiles
f*f real images of the class (random ones, or the class's first ones as the published code takes), each
downsized by f, into each canvas; `RESIZE_MODES` are the ways to downsize (the published code: nearest).
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


# How `tile` downsizes a real image by f: area = the mean of each f x f block; nearest = one pixel of each block
# (its top-left); bilinear = interpolation between the 2 x 2 pixels nearest each output centre (at f = 2 the same
# as area); bilinear-antialias = a triangle filter f pixels wide (PIL's bilinear resize, smoother than area).
RESIZE_MODES = {
    "area": {"mode": "area"},
    "nearest": {"mode": "nearest"},
    "bilinear": {"mode": "bilinear", "align_corners": False, "antialias": False},
    "bilinear-antialias": {"mode": "bilinear", "align_corners": False, "antialias": True},
}
INIT_IMAGES = ("random", "first")  # which real images of a class initialise its canvases
# area (exact box average) stays the default: nearest measured better initial sets (cifar10-ipc10-cpu, `cpu`
# protocol, one set each: +0.40 points with random images, +0.88 with the first ones; benchmarks/results/
# cpu-2026-12-01/x-init-study.json), but as the default it broke the bit-for-bit equality of a 2-process and a
# 1-process distillation (tests/test_distributed.py), a cause not yet found.
DEFAULT_RESIZE = "area"


def tile(images: torch.Tensor, factor: int, resize: str = DEFAULT_RESIZE) -> torch.Tensor:
    """[M*f*f,C,H,W] images -> [M,C,H,W] canvases of f x f images downsized by `resize` (inverse order of `decode`)."""
    if resize not in RESIZE_MODES:
        raise UserError(f"unknown resize {resize!r}; use {', '.join(RESIZE_MODES)}")
    if factor == 1:
        return images
    n, c, h, w = images.shape
    _check(h, w, factor)
    small = F.interpolate(images, size=(h // factor, w // factor), **RESIZE_MODES[resize])
    small = small.reshape(n // factor**2, factor, factor, c, h // factor, w // factor).permute(0, 3, 1, 4, 2, 5)
    return small.reshape(n // factor**2, c, h, w).clamp(0, 1)


def init_canvases(data: RealData, ipc: int, factor: int, generator: torch.Generator, classes=None, resize: str = DEFAULT_RESIZE,
                  images: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """Canvases [classes*ipc,C,H,W] tiled from distinct real images of each class (`images`: random, or the
    class's first in dataset order), downsized by `resize`, and their labels."""
    if images not in INIT_IMAGES:
        raise UserError(f"unknown initial images {images!r}; use {' or '.join(INIT_IMAGES)}")
    classes = list(range(data.num_classes)) if classes is None else list(classes)
    per_class = ipc * factor * factor
    if images == "first":
        short = [c for c in classes if len(data.by_class[c]) < per_class]
        if short:
            raise UserError(f"class {short[0]} has {len(data.by_class[short[0]])} images, fewer than the {per_class} "
                            "(IPC x factor²) that initialisation takes; lower --ipc or --factor")
        indices = torch.cat([data.by_class[c][:per_class] for c in classes])
    else:
        indices = data.balanced_indices(per_class, generator, classes)
    canvases = tile(data.floats(indices), factor, resize)
    labels = torch.tensor(classes).repeat_interleave(ipc)
    return canvases, labels
