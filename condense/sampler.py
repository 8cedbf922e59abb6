"""Frequency samplers for the characteristic functions: fixed Gaussian, and the learnable ψ.

ψ is the "max" of NCFM's min-max: a scale mixture t_k = σ_ψ(z_m(k)) ⊙ ε_k with ε ~ N(0, I_D),
z_m ~ N(0, I), M = K/16 components, σ bounded in [σ_min, σ_max] (log-sigmoid output, starting at
σ ≈ 1, i.e. at the Gaussian sampler). ψ **ascends** the loss the images descend: after the shared
backward pass, `ascend()` negates ψ's gradients before its optimiser steps (the published code
adds a second backward of the negated loss, which cancels the gradient exactly; ψ never learns).
ψ may instead ascend an objective of its own (a normalised discrepancy, a penalty on its scales: see
`condense.distill`), whose gradients then replace the shared ones before `ascend()`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import UserError


def mixture_components(num_frequencies: int, components: int | None = None) -> int:
    """ψ's mixture components (K/16 unless given), which must split the K frequencies equally."""
    components = components or max(1, num_frequencies // 16)
    if num_frequencies % components:
        raise UserError(f"--frequencies {num_frequencies} does not split into psi's {components} mixture components "
                        "(one per 16 frequencies); use a multiple of 16, or --sampler gaussian")
    return components


class GaussianSampler(nn.Module):
    """t ~ N(0, I_D), redrawn every call."""

    def __init__(self, dim: int, num_frequencies: int):
        super().__init__()
        self.dim, self.num_frequencies = dim, num_frequencies

    def forward(self, generator: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
        return torch.randn(self.num_frequencies, self.dim, generator=generator).to(device)

    def stats(self) -> dict:
        return {}


class ScaleMixtureSampler(nn.Module):
    """Learnable ψ: a small MLP maps z_m ~ N(0, I) to per-dimension scales σ_m in [σ_min, σ_max]."""

    def __init__(self, dim: int, num_frequencies: int, components: int | None = None, noise_dim: int = 64,
                 hidden: int = 256, sigma_min: float = 0.1, sigma_max: float = 10.0):
        super().__init__()
        self.dim, self.num_frequencies = dim, num_frequencies
        self.components = mixture_components(num_frequencies, components)
        self.noise_dim = noise_dim
        self.log_min, self.log_max = math.log(sigma_min), math.log(sigma_max)
        self.net = nn.Sequential(nn.Linear(noise_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        nn.init.normal_(self.net[-1].weight, std=1e-3)
        nn.init.constant_(self.net[-1].bias, self._logit_of_unit_sigma())
        self._last_sigma: torch.Tensor | None = None
        self._last_log_sigma: torch.Tensor | None = None  # with its graph, for `log_scale_penalty`

    def _logit_of_unit_sigma(self) -> float:
        share = -self.log_min / (self.log_max - self.log_min)  # where log σ = 0
        return math.log(share / (1 - share))

    def sigma(self, z: torch.Tensor) -> torch.Tensor:
        """Bounded scales [M, D] for mixture noise z [M, noise_dim]."""
        return torch.exp(self.log_sigma(z))

    def log_sigma(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_min + (self.log_max - self.log_min) * torch.sigmoid(self.net(z))

    def forward(self, generator: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
        z = torch.randn(self.components, self.noise_dim, generator=generator).to(device)
        eps = torch.randn(self.num_frequencies, self.dim, generator=generator).to(device)
        self._last_log_sigma = self.log_sigma(z)
        sigma = self._last_log_sigma.exp()
        self._last_sigma = sigma.detach()
        return sigma.repeat_interleave(self.num_frequencies // self.components, dim=0) * eps

    def log_scale_penalty(self) -> torch.Tensor:
        """mean (log σ)² of the last draw (0 at the Gaussian sampler's σ = 1), differentiable in ψ."""
        return self._last_log_sigma.square().mean()

    def ascend(self) -> None:
        """Turn the gradients of the shared (descended) loss, or of ψ's own objective, into ascent directions for ψ."""
        for parameter in self.parameters():
            if parameter.grad is not None:
                parameter.grad.neg_()

    def stats(self) -> dict:
        """σ statistics of the last draw (for the log)."""
        if self._last_sigma is None:
            return {}
        s = self._last_sigma
        return {"sigma_mean": s.mean().item(), "sigma_std": s.std().item(), "sigma_min": s.min().item(), "sigma_max": s.max().item()}
