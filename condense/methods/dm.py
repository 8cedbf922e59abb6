"""DM (Zhao & Bilen, WACV 2023): match the mean features of real and synthetic images through a freshly initialised
network every iteration; no pool, no calibration; siamese DSA (one draw per class for both sides, as every method here).

The network of iteration i is the ConvNet of the run's `net` settings, seeded `init_seed("matcher", seed, i)`: a
resumed run draws the same networks, and none starts where a pool member or an evaluation network does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..flags import check_numbers, setting
from ..nets import seeded_net
from . import register_method
from .base import Method
from .dance import mean_distance


@dataclass
class DMSettings:
    """DM's own settings."""

    loss_scale: float = setting(1.0, "factor on the matching loss")

    def __post_init__(self) -> None:
        check_numbers(self, {}, ("loss_scale",))


@register_method("dm")
class DM(Method):
    """Mean-feature matching through a fresh random network each iteration."""

    Settings = DMSettings
    uses_pool = False

    def draw(self, generator: torch.Generator) -> dict:
        config, real = self.config, self.real
        self.network = seeded_net(config.net, real.channels, real.num_classes, real.image_size, config.seed, stream="matcher",
                                  index=self.iteration, **config.net_options()).to(self.device)
        self.network.requires_grad_(False)
        return {}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x).float()

    def matching_loss(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        return self.settings.loss_scale * mean_distance(real, synthetic)
