"""Differentiable siamese augmentation (DSA) and CutMix, seeded by a `torch.Generator`.

DSA (Zhao & Bilen, 2021) applies random colour, crop (translation), cutout, flip, scale and
rotation that stay differentiable with respect to the input images. Two modes:

- siamese: one random draw shared by every image of the batch (used in matching, where the real
  and synthetic images are concatenated and must see the same transformation);
- per sample: an independent draw for each image (used in training).

Which operations of the strategy a draw applies (`MODES`): `one` picks one at random per draw (DSA's
convention: with "color_crop_cutout" a draw is a colour change, a translation or a cutout); `all`
applies every one; `batch` picks one per call, shared by the whole batch, with each image's own
parameters (the DC/DM authors' evaluation, DSA's "single" mode); `batch-geometry` applies flip, colour
and cutout to every image plus one of crop/scale/rotate picked per call (the published NCFM evaluation).

Flip, scale, rotation and translation are composed into one affine warp per image (one bilinear
resampling instead of three, so less blur). Random numbers come from the given CPU generator, so
results do not depend on the device. An operation whose strength is 0 is skipped: exact identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import UserError

MATCHING_STRATEGY = "color_crop_cutout"
TRAINING_STRATEGY = "color_crop_flip_scale_rotate"  # the NCFM evaluation (BENCHMARKS.md): no cutout
OPERATIONS = ("color", "crop", "cutout", "flip", "scale", "rotate")
GEOMETRY = ("crop", "scale", "rotate")  # of which mode batch-geometry picks one per call
MODES = {
    "one": "one random operation per draw (DSA's convention)",
    "all": "every operation",
    "batch": "one random operation per call, shared by the batch, parameters per image (DSA's single mode, DC/DM evaluation)",
    "batch-geometry": "flip, colour and cutout on every image, plus one of crop/scale/rotate per call (published NCFM evaluation)",
}


@dataclass(frozen=True)
class DSAStrengths:
    """How strong each random transformation is; 0 turns it off. Defaults are DSA's."""

    brightness: float = 1.0  # add U(-b/2, b/2)
    saturation: float = 1.0  # scale the distance to the grey value by U(1-s, 1+s)
    contrast: float = 0.5  # scale the distance to the image mean by U(1-c, 1+c)
    crop: float = 0.125  # translate by a whole number of pixels up to this fraction of the size, zero fill
    cutout: float = 0.5  # erase a square of this fraction of the size at a random centre
    flip: float = 0.5  # probability of a horizontal flip
    scale: float = 0.2  # scale each axis by U(1/(1+s), 1+s)
    rotate: float = 15.0  # rotate by U(-r, r) degrees


def _uniform(n: int, low: float, high: float, generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


class DSA:
    """`DSA("color_crop_cutout")(images, generator, siamese=True)`; images are [N,C,H,W] floats."""

    def __init__(self, strategy: str = TRAINING_STRATEGY, strengths: DSAStrengths = DSAStrengths(), mode: str = "one"):
        names = [name for name in strategy.split("_") if name]
        unknown = [name for name in names if name not in OPERATIONS]
        if unknown:
            raise UserError(f"unknown DSA operation(s) {', '.join(unknown)} in {strategy!r}; use {', '.join(OPERATIONS)}")
        if mode not in MODES:
            raise UserError(f"DSA mode must be one of {', '.join(MODES)} ({'; '.join(f'{k}: {v}' for k, v in MODES.items())}), got {mode!r}")
        self.strategy, self.strengths, self.mode = strategy, strengths, mode
        self.names = list(dict.fromkeys(names))

    def __repr__(self) -> str:
        return f"DSA({self.strategy!r}, {self.strengths}, mode={self.mode!r})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None, siamese: bool = False) -> torch.Tensor:
        """Augment [N,C,H,W] images: one draw for all (`siamese`) or one per image."""
        draw = self.draw(1 if siamese else images.shape[0], images.shape[2], images.shape[3], generator)
        return self.apply(images, draw)

    def draw(self, count: int, height: int, width: int, generator: torch.Generator | None = None) -> dict:
        """`count` random draws (on the CPU), to be applied with `apply`.

        Which operations each draw uses follows the mode (`MODES`); they apply in the order colour, warp, cutout.
        """
        s = self.strengths
        active = self._active(count, generator)
        off = torch.zeros(count, dtype=torch.bool)
        draw: dict[str, torch.Tensor] = {}
        color = active.get("color", off)
        if color.any():
            if s.brightness > 0:
                draw["brightness"] = _uniform(count, -s.brightness / 2, s.brightness / 2, generator) * color
            if s.saturation > 0:
                draw["saturation"] = torch.where(color, _uniform(count, 1 - s.saturation, 1 + s.saturation, generator), 1.0)
            if s.contrast > 0:
                draw["contrast"] = torch.where(color, _uniform(count, 1 - s.contrast, 1 + s.contrast, generator), 1.0)
        theta = self._draw_warp(count, height, width, generator, {name: active.get(name, off) for name in ("flip", "scale", "rotate", "crop")})
        if theta is not None:
            draw["theta"] = theta
        cutout = active.get("cutout", off)
        if cutout.any() and s.cutout > 0:
            draw["keep"] = torch.where(cutout.view(-1, 1, 1), self._draw_cutout(count, height, width, generator), 1.0)
        return draw

    def _active(self, count: int, generator) -> dict[str, torch.Tensor]:
        """For every operation of the strategy, which of the `count` draws apply it."""
        def chosen_among(names: list[str], per_draw: int) -> dict[str, torch.Tensor]:
            chosen = torch.randint(len(names), (per_draw,), generator=generator).expand(count)
            return {name: chosen == index for index, name in enumerate(names)}

        if self.mode == "one":
            return chosen_among(self.names, count)
        if self.mode == "batch":
            return chosen_among(self.names, 1)
        every = {name: torch.ones(count, dtype=torch.bool) for name in self.names}
        if self.mode == "all":
            return every
        geometry = [name for name in self.names if name in GEOMETRY]
        return {**every, **(chosen_among(geometry, 1) if geometry else {})}

    def apply(self, images: torch.Tensor, draw: dict, index: torch.Tensor | None = None) -> torch.Tensor:
        """Apply a draw; image i uses draw row `index[i]` (default: row i, or row 0 for a single draw)."""

        def rows(name: str) -> torch.Tensor:
            values = draw[name] if index is None else draw[name][index]
            return values.to(images.device, images.dtype)

        def per_image(name: str) -> torch.Tensor:
            return rows(name).view(-1, 1, 1, 1)

        x = images
        if "brightness" in draw:
            x = x + per_image("brightness")
        if "saturation" in draw:
            grey = x.mean(dim=1, keepdim=True)
            x = (x - grey) * per_image("saturation") + grey
        if "contrast" in draw:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * per_image("contrast") + mean
        if "theta" in draw:
            theta = rows("theta").expand(x.shape[0], 2, 3)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if "keep" in draw:
            x = x * rows("keep").unsqueeze(1)
        return x

    def _draw_warp(self, count: int, height: int, width: int, generator, active: dict) -> torch.Tensor | None:
        """Flip, scale, rotation and translation of the active draws as one affine map (output -> input coordinates)."""
        s = self.strengths
        theta = torch.eye(2, 3).repeat(count, 1, 1)
        changed = False
        if active["flip"].any() and s.flip > 0:
            theta[:, 0, 0] = torch.where(active["flip"] & (torch.rand(count, generator=generator) < s.flip), -1.0, 1.0)
            changed = True
        if active["scale"].any() and s.scale > 0:
            factors = _uniform(2 * count, 1 / (1 + s.scale), 1 + s.scale, generator).view(count, 2)
            factors = torch.where(active["scale"].view(-1, 1), factors, 1.0).view(count, 1, 2)
            theta[:, :, :2] = theta[:, :, :2] * factors
            changed = True
        if active["rotate"].any() and s.rotate > 0:
            angle = _uniform(count, -s.rotate, s.rotate, generator) * (math.pi / 180) * active["rotate"]
            cos, sin = torch.cos(angle), torch.sin(angle)
            rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
            theta[:, :, :2] = rotation @ theta[:, :, :2]
            changed = True
        if active["crop"].any() and s.crop > 0:
            for axis, size in ((0, width), (1, height)):
                reach = int(size * s.crop)
                shift = torch.randint(-reach, reach + 1, (count,), generator=generator).float() * active["crop"]
                theta[:, axis, 2] = 2 * shift / size  # whole pixels in normalised coordinates
            changed = True
        return theta if changed else None

    def _draw_cutout(self, count: int, height: int, width: int, generator) -> torch.Tensor:
        """Masks [count,H,W]: 0 inside a square of `cutout` x the size at a random centre, 1 elsewhere."""
        cut_h, cut_w = int(height * self.strengths.cutout + 0.5), int(width * self.strengths.cutout + 0.5)
        top = torch.randint(0, height, (count,), generator=generator).view(-1, 1, 1) - cut_h // 2
        left = torch.randint(0, width, (count,), generator=generator).view(-1, 1, 1) - cut_w // 2
        rows = torch.arange(height).view(1, -1, 1)
        cols = torch.arange(width).view(1, 1, -1)
        inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
        return (~inside).float()


def cutmix(images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al., 2019) with a Beta(1, 1) mixing ratio, seeded by `generator`.

    Pastes a random box from a shuffled copy of the batch into every image. Returns the mixed
    images, the permutation that supplied the boxes and the kept fraction `lam` (by exact box
    area), so targets mix as `lam * y + (1 - lam) * y[perm]`. Written here rather than taken from
    torchvision because torchvision's draws from the global RNG and only mixes hard labels.
    """
    n, _, height, width = images.shape
    perm = torch.randperm(n, generator=generator)
    ratio = math.sqrt(1.0 - torch.rand(1, generator=generator).item())
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = torch.randint(0, height, (1,), generator=generator).item()
    cx = torch.randint(0, width, (1,), generator=generator).item()
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[perm.to(images.device), :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, perm, lam
