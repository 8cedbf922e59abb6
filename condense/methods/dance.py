"""DANCE (Zhang et al., IJCAI 2024): NCFM's pipeline with the mean of the features matched instead of their
characteristic function: the same blended pool, calibration and multi-formation.

Per class: ||mean_i f(x_real_i) − mean_j f(x_syn_j)||², f the blended matcher's features (not normalised, as DM and
DANCE match them), times `loss_scale`; plus the trained member's cross-entropy on the synthetic images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..flags import check_numbers, setting
from . import register_method
from .base import PoolMatcher


def mean_distance(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """Per class, the squared distance of the mean real and mean synthetic features ([classes, B, d], [classes, n, d] -> [classes])."""
    return (real.float().mean(1) - synthetic.float().mean(1)).square().sum(1)


@dataclass
class DANCESettings:
    """DANCE's own settings."""

    loss_scale: float = setting(1.0, "factor on the matching loss")
    calibration_weight: float = setting(1.0, "weight of the trained matcher's cross-entropy on the synthetic images")

    def __post_init__(self) -> None:
        check_numbers(self, {}, ("loss_scale",), ("calibration_weight",))


@register_method("dance")
class DANCE(PoolMatcher):
    """Mean-feature matching through the blended pool, with calibration."""

    Settings = DANCESettings

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.network_features(x)

    def matching_loss(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        return self.settings.loss_scale * mean_distance(real, synthetic)
