"""Neural characteristic-function discrepancy (NCFD), as pure functions.

Φ_X(t) = mean_i exp(j tᵀ x_i). For real and synthetic features and K frequencies:
amp_k = (|Φ_r| − |Φ_s|)², pha_k = 2|Φ_r||Φ_s|(1 − cos(θ_r − θ_s)),
NCFD = mean_k sqrt(α·amp_k + (1 − α)·pha_k).

Since amp_k + pha_k = |Φ_r − Φ_s|², the weighted sum equals (1 − α)|Φ_r − Φ_s|² + (2α − 1)·amp_k,
which is what `ncfd` computes: no 1 − cos of nearly equal angles, so no false floor in fp32.

`phase="decoupled"` drops the moduli from the phase term: pha_k = 2(1 − cos(θ_r − θ_s)) = |Φ_r/|Φ_r| − Φ_s/|Φ_s||²,
so a phase error costs as much where the characteristic functions are small (high frequencies) as where
they are large; the paper's coupled term, weighted by |Φ_r||Φ_s|, gives such phases a vanishing gradient.
Everything here runs in fp32 with TF32 matmuls off, whatever the caller's autocast says.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError

SQRT_EPS = 1e-12  # keeps the square root's gradient finite where the two sets agree
PHASE_MODULUS_FLOOR = 1e-3  # decoupled phase: moduli below this are taken as this (the phase of ~0 is noise)
PHASES = ("coupled", "decoupled")


@contextlib.contextmanager
def exact_fp32(device_type: str):
    """fp32 matmuls without TF32 and without autocast on `device_type`, restored afterwards."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def characteristic_function(features: torch.Tensor, frequencies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of the empirical CF.

    features [..., N, D] (groups of N samples), frequencies [K, D] -> two tensors [..., K].
    """
    with exact_fp32(features.device.type):
        dtype = torch.promote_types(features.dtype, torch.float32)  # fp32 at least (bf16 features come back up)
        projection = features.to(dtype) @ frequencies.to(dtype).transpose(0, 1)
        return projection.cos().mean(-2), projection.sin().mean(-2)


def amplitude_phase(real_cf, synthetic_cf) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's amplitude and phase terms per frequency (for inspection; unstable in fp32 near 0)."""
    (rr, ri), (sr, si) = real_cf, synthetic_cf
    real_modulus, synthetic_modulus = torch.hypot(rr, ri), torch.hypot(sr, si)
    angle = torch.atan2(ri, rr) - torch.atan2(si, sr)
    amplitude = (real_modulus - synthetic_modulus).square()
    phase = 2 * real_modulus * synthetic_modulus * (1 - torch.cos(angle))
    return amplitude, phase


def discrepancy_from_cf(real_cf, synthetic_cf, alpha: float = 0.5, phase: str = "coupled") -> torch.Tensor:
    """mean_k sqrt(α·amp_k + (1 − α)·pha_k), computed from the complex difference (`phase`: see the module). Shape [...]."""
    (rr, ri), (sr, si) = real_cf, synthetic_cf
    if phase == "decoupled":
        real_modulus, synthetic_modulus = torch.hypot(rr, ri), torch.hypot(sr, si)
        real_unit = real_modulus.clamp_min(PHASE_MODULUS_FLOOR)
        synthetic_unit = synthetic_modulus.clamp_min(PHASE_MODULUS_FLOOR)
        unit_difference = (rr / real_unit - sr / synthetic_unit).square() + (ri / real_unit - si / synthetic_unit).square()
        weighted = alpha * (real_modulus - synthetic_modulus).square() + (1 - alpha) * unit_difference
    elif phase == "coupled":
        difference = (rr - sr).square() + (ri - si).square()
        weighted = (1 - alpha) * difference
        if alpha != 0.5:
            weighted = weighted + (2 * alpha - 1) * (torch.hypot(rr, ri) - torch.hypot(sr, si)).square()
    else:
        raise UserError(f"unknown phase term {phase!r}; use {' or '.join(PHASES)}")
    return (weighted.clamp_min(0) + SQRT_EPS).sqrt().mean(-1)


def ncfd(real_features, synthetic_features, frequencies, alpha: float = 0.5, phase: str = "coupled") -> torch.Tensor:
    """NCFD between feature sets [..., N, D] and [..., M, D] at frequencies [K, D]; one value per group."""
    return discrepancy_from_cf(
        characteristic_function(real_features, frequencies),
        characteristic_function(synthetic_features, frequencies),
        alpha,
        phase,
    )
