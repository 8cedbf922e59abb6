"""Herding (iCaRL): a model's features of a dataset, and the greedy order that matches their mean."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader

from condense.errors import UserError


def layer_features(model: nn.Module, layer_name: str, data, batch_size: int, device) -> torch.Tensor:
    """The flattened output of `model`'s module `layer_name` on every item of `data`, in eval mode (CPU tensor)."""
    layer = dict(model.named_modules()).get(layer_name)
    if layer is None:
        raise UserError(f"herding needs the model's feature layer {layer_name!r}; the model has no such module")
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().flatten(1).cpu()))
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, *_ in DataLoader(data, batch_size=batch_size, collate_fn=getattr(data, "collate_fn", None)):
                model(x.to(device))
    finally:
        handle.remove()
        model.train(training)
    return torch.cat(captured)


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
