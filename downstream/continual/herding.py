"""Herding (iCaRL) for the replay memories: a model's features of a dataset; the greedy order is `condense.baseline.herding_order`."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from condense.baseline import herding_order
from condense.errors import UserError

__all__ = ["herding_order", "layer_features"]


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
