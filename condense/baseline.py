"""Baseline sets that every condensed set is compared with: a random real subset, and the coresets herding and
k-center greedy, which choose real images by a network's features (a trained pool member's)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import RealData, normalise
from .errors import UserError
from .synthetic import SyntheticSet, published_source

CORESETS = ("herding", "kcenter")


def herding_order(features: torch.Tensor, count: int) -> list[int]:
    """Greedy herding (iCaRL): `count` picks, each making the mean of the picked the closest to the mean of all.

    Avalanche's `HerdingSelectionStrategy` ranks all N (N steps over all N features: 5000 steps over
    5000 x 1024 values per CIFAR-10 class); a memory needs only its first picks, which are the same.
    """
    center = features.mean(0)
    total = torch.zeros_like(center)
    taken = torch.zeros(len(features), dtype=torch.bool)
    picks: list[int] = []
    for step in range(min(count, len(features))):
        distances = ((total + features) / (step + 1) - center).square().sum(1)
        distances[taken] = math.inf
        pick = int(distances.argmin())
        picks.append(pick)
        taken[pick] = True
        total += features[pick]
    return picks


def kcenter_order(features: torch.Tensor, count: int) -> list[int]:
    """Greedy k-center (Sener & Savarese, 2018): start at the image nearest the mean, then each pick is the image
    farthest from all picked so far (the greedy 2-approximation of the k-center cover)."""
    picks = [int((features - features.mean(0)).square().sum(1).argmin())]
    nearest = (features - features[picks[0]]).square().sum(1)
    for _ in range(min(count, len(features)) - 1):
        pick = int(nearest.argmax())
        picks.append(pick)
        nearest = torch.minimum(nearest, (features - features[pick]).square().sum(1))
    return picks


ORDERS = {"herding": herding_order, "kcenter": kcenter_order}


def _subset(data: RealData, indices: torch.Tensor, ipc: int, method: str, settings: dict) -> SyntheticSet:
    return SyntheticSet(
        images=data.floats(indices), labels=data.labels[indices].clone(), class_names=list(data.class_names), mean=data.mean, std=data.std,
        method=method, **published_source(data), ipc=ipc,
        config={"baseline": method, "ipc": ipc, **settings, "split": data.split, "indices": indices.tolist()},
    )


def random_subset(data: RealData, ipc: int, seed: int = 0) -> SyntheticSet:
    """`ipc` random real images of every class (seeded), as a `SyntheticSet` with method `random`."""
    if ipc < 1:
        raise UserError(f"--ipc must be at least 1, got {ipc}")
    return _subset(data, data.balanced_indices(ipc, torch.Generator().manual_seed(seed)), ipc, "random", {"seed": seed})


@torch.no_grad()
def coreset(data: RealData, ipc: int, kind: str, network: torch.nn.Module, device: torch.device, network_name: str = "",
            batch_size: int = 1000) -> SyntheticSet:
    """`ipc` real images of every class chosen by `kind` (herding or kcenter) on `network`'s L2-normalised features (as
    iCaRL's herding) of the class's un-augmented images, as a `SyntheticSet` with method `kind`."""
    if kind not in ORDERS:
        raise UserError(f"unknown coreset {kind!r}; use {' or '.join(ORDERS)}")
    if ipc < 1:
        raise UserError(f"--ipc must be at least 1, got {ipc}")
    smallest = min(len(members) for members in data.by_class)
    if ipc > smallest:
        raise UserError(f"--ipc {ipc} is more than the smallest class of {data.source} holds ({smallest} images); lower it")
    network.eval()
    chosen = []
    for members in data.by_class:
        features = torch.cat([F.normalize(network.features(normalise(data.floats(chunk).to(device), data.mean, data.std)).float(), dim=1).cpu()
                              for chunk in members.split(batch_size)])
        chosen.append(members[ORDERS[kind](features, ipc)])
    return _subset(data, torch.cat(chosen), ipc, kind, {"network": network_name})
