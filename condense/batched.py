"""Several networks of one architecture trained as one: stacked weights and one vectorised forward.

`train` uses it to serve P networks at once (pool members, evaluation runs): the P weight sets are
stacked along a new first dimension (`torch.func.stack_module_state`) and one `vmap` of
`functional_call` forwards every network on its own batch, so a GPU runs P small networks in the
kernels of one. AdamW and SGD update each element on its own, so one optimiser over the stacked
tensors is P separate optimisers; each network's loss depends only on its own weights, so the
summed loss gives every network its own gradient.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import UserError


class StackedNets:
    """`StackedNets(nets)([x_0, ..., x_P-1])` is `[nets[0](x_0), ...]`, computed in one vectorised call.

    Training updates the stacked tensors (`parameters()`); `write_back()` copies them into the networks.
    """

    def __init__(self, nets: list[nn.Module]):
        shapes = {name: value.shape for name, value in nets[0].state_dict().items()}
        if any({name: value.shape for name, value in net.state_dict().items()} != shapes for net in nets[1:]):
            raise UserError("networks trained at once must share one architecture (the same weight names and shapes); train them one by one")
        self.nets = nets
        self.params, self.buffers = torch.func.stack_module_state(nets)  # copies; buffers (batch-norm statistics) update in place
        self.skeleton = copy.deepcopy(nets[0]).to("meta")  # the architecture without weights of its own

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.skeleton, (params, buffers), (x,))

    def __call__(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(torch.func.vmap(self._one)(self.params, self.buffers, torch.stack(batches)).unbind(0))

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked weights and buffers into the networks (they stay where they are)."""
        stacked = {**self.params, **self.buffers}
        for index, net in enumerate(self.nets):
            for name, value in net.state_dict().items():
                value.copy_(stacked[name][index])
