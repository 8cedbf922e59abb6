"""NCFM (Wang et al., CVPR 2025): match the characteristic functions of real and synthetic features (REFERENCE.md §1).

Per iteration, on top of `Method.step`: the pool's blended matcher; K frequencies (Gaussian, or ψ's scale
mixture); per class the NCFD between L2-normalised features (×`loss_scale`) plus calibration. ψ, the "max" of
the min-max, ascends (its gradients of the loss, or of its own objective, negated) after the images' step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..flags import check_numbers, flag, setting
from ..ncfd import PHASES, ncfd
from ..sampler import GaussianSampler, ScaleMixtureSampler, mixture_components
from . import register_method
from .base import PoolMatcher

PSI_OBJECTIVES = {
    "ncfd": "the matching loss itself (the paper's min-max)",
    "normalised": "per class, NCFD(real, synthetic) / NCFD(two disjoint halves of the real batch): psi cannot win by chasing sampling noise",
}
# Settings of psi alone: refused with the Gaussian sampler unless left at their defaults.
PSI_SHAPING = ("sigma_min", "sigma_max", "sigma_penalty", "psi_objective")


@dataclass
class NCFMSettings:
    """NCFM's own settings."""

    frequencies: int = setting(4096, "frequencies of the characteristic functions per iteration")
    alpha: float = setting(0.5, "NCFD weights: alpha on the amplitude term, 1 - alpha on the phase term")
    loss_scale: float = setting(300.0, "factor on the matching loss")
    # gaussian for every preset: no variant of psi beat it at CPU scale (README, issue 15's min-max study)
    sampler: str = setting("gaussian", "frequency sampler: gaussian (every preset) or learned (psi, the paper's min-max, trained by ascent)")
    sampler_lr: float = setting(1e-3, "learning rate of psi")
    sigma_min: float = setting(0.1, "smallest scale of psi's mixture")
    sigma_max: float = setting(10.0, "largest scale of psi's mixture")
    sigma_penalty: float = setting(0.0, "weight of a penalty on psi's scales, mean (log sigma)^2: psi ascends its objective minus it")
    psi_objective: str = setting("ncfd", "what psi ascends: " + "; ".join(f"{k}: {v}" for k, v in PSI_OBJECTIVES.items()))
    phase: str = setting("coupled", "NCFD phase term: coupled (the paper's, weighted by the two moduli) or decoupled "
                                    "(unit phasors: phase errors count where the CFs are small)")
    calibration_weight: float = setting(1.0, "weight of the trained matcher's cross-entropy on the synthetic images")

    def __post_init__(self) -> None:
        check_numbers(self, {"frequencies": 1}, ("sampler_lr", "sigma_min", "sigma_max", "loss_scale"),
                      ("calibration_weight", "sigma_penalty"), fractions=("alpha",))
        if self.sampler not in ("learned", "gaussian"):
            raise UserError(f"unknown sampler {self.sampler!r}; use learned or gaussian")
        if self.phase not in PHASES:
            raise UserError(f"--phase must be {' or '.join(PHASES)}, got {self.phase!r}")
        if self.psi_objective not in PSI_OBJECTIVES:
            raise UserError(f"--psi-objective must be {' or '.join(PSI_OBJECTIVES)}, got {self.psi_objective!r}")
        shaping = [flag(name) for name in PSI_SHAPING if getattr(self, name) != NCFMSettings.__dataclass_fields__[name].default]
        if self.sampler == "gaussian" and shaping:
            raise UserError(f"{', '.join(shaping)} shape psi, the learned sampler, which the Gaussian sampler does not use; "
                            "use them with --sampler learned or drop them")
        if self.sampler == "learned":
            mixture_components(self.frequencies)
            if not self.sigma_min < 1 < self.sigma_max:
                raise UserError(f"psi starts at scale 1: --sigma-min ({self.sigma_min}) must be below 1 and --sigma-max ({self.sigma_max}) above 1")


@register_method("ncfm")
class NCFM(PoolMatcher):
    """NCFM with Gaussian frequencies or the learned sampler ψ."""

    Settings = NCFMSettings

    @classmethod
    def preset_settings(cls, preset: str) -> NCFMSettings:
        """BENCHMARKS.md: the CPU presets match with 1024 Gaussian frequencies, the paper presets with 4096."""
        return NCFMSettings(frequencies=1024) if preset.endswith("-cpu") else NCFMSettings()

    @classmethod
    def check(cls, config) -> None:
        if config.method_settings.psi_objective == "normalised" and config.real_batch < 2:
            raise UserError("--psi-objective normalised splits the real batch into two halves; use --real-batch 2 or more")

    def setup(self) -> None:
        super().setup()
        config, settings = self.config, self.settings
        dim = self.pool.matcher.feature_dim
        if settings.sampler == "learned":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.sampler = ScaleMixtureSampler(dim, settings.frequencies, sigma_min=settings.sigma_min, sigma_max=settings.sigma_max)
            self.sampler.to(self.device)
            self.sampler_optimizer = torch.optim.Adam(self.sampler.parameters(), lr=settings.sampler_lr)
        else:
            self.sampler, self.sampler_optimizer = GaussianSampler(dim, settings.frequencies), None

    def draw(self, generator: torch.Generator) -> dict:
        drawn = super().draw(generator)
        self.frequencies = self.sampler(generator, self.device)
        if self.sampler_optimizer is not None:
            self.sampler_optimizer.zero_grad(set_to_none=True)
        return drawn

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.network_features(x), dim=1)

    def matching_loss(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        return self.settings.loss_scale * ncfd(real, synthetic, self.frequencies, self.settings.alpha, self.settings.phase)

    def sampler_lr(self) -> float:
        """ψ's cosine-annealed lr at this iteration, from the run's total (so a resume with more iterations continues it)."""
        return self.settings.sampler_lr * (1 + math.cos(math.pi * self.iteration / max(1, self.config.iterations))) / 2

    def before_backward(self, matching: torch.Tensor, real: torch.Tensor) -> None:
        """ψ's gradients of its own objective (`PSI_OBJECTIVES`, minus the σ penalty), or None where ψ ascends the matching loss."""
        settings = self.settings
        self.psi_gradients = None
        if self.sampler_optimizer is None or (settings.psi_objective == "ncfd" and settings.sigma_penalty == 0):
            return
        objective = matching.sum()
        if settings.psi_objective == "normalised":
            half = self.config.real_batch // 2
            noise = ncfd(real[:, :half], real[:, half : 2 * half], self.frequencies, settings.alpha, settings.phase)
            objective = (matching / (settings.loss_scale * noise)).sum()
        objective = objective - settings.sigma_penalty * self.sampler.log_scale_penalty() / self.world.size  # ranks sum ψ's gradients
        self.psi_gradients = torch.autograd.grad(objective, list(self.sampler.parameters()), retain_graph=True)

    def after_step(self) -> dict:
        """ψ's step: ascent on the matching loss (its gradients negated) or on its own objective; its lr and scales for the log."""
        if self.sampler_optimizer is None:
            return self.sampler.stats()
        for parameter, gradient in zip(self.sampler.parameters(), self.psi_gradients or ()):
            parameter.grad = gradient  # psi ascends its own objective instead of the images' loss
        for parameter in self.sampler.parameters():
            if parameter.grad is not None:
                self.world.all_reduce_sum(parameter.grad)
        self.sampler.ascend()
        self.sampler_optimizer.param_groups[0]["lr"] = sampler_lr = self.sampler_lr()
        self.sampler_optimizer.step()
        return {**self.sampler.stats(), "sampler_lr": sampler_lr}

    def extra_state(self) -> dict:
        if self.sampler_optimizer is None:
            return {}
        return {"sampler": self.sampler.state_dict(), "sampler_optimizer": self.sampler_optimizer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if self.sampler_optimizer is not None:
            self.sampler.load_state_dict(state["sampler"])
            self.sampler_optimizer.load_state_dict(state["sampler_optimizer"])
