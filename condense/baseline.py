"""Baseline sets that every condensed set is compared with."""

from __future__ import annotations

import torch

from .data import RealData
from .errors import UserError
from .synthetic import SyntheticSet, published_source


def random_subset(data: RealData, ipc: int, seed: int = 0) -> SyntheticSet:
    """`ipc` random real images of every class (seeded), as a `SyntheticSet` with method `random`."""
    if ipc < 1:
        raise UserError(f"--ipc must be at least 1, got {ipc}")
    indices = data.balanced_indices(ipc, torch.Generator().manual_seed(seed))
    return SyntheticSet(
        images=data.floats(indices),
        labels=data.labels[indices].clone(),
        class_names=list(data.class_names),
        mean=data.mean,
        std=data.std,
        method="random",
        **published_source(data),
        ipc=ipc,
        config={"baseline": "random", "ipc": ipc, "seed": seed, "split": data.split, "indices": indices.tolist()},
    )
