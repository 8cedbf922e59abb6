"""Several processes through `torch.distributed` (launched by `torchrun`); one process needs none of it.

Distillation shards classes across ranks: every rank makes the same random draws (matcher,
frequencies, real indices, DSA) for all classes, so a class's images follow exactly the path they
would in one process, but a rank forwards, matches and updates only its own classes. The learned
sampler's gradients are summed across ranks; rank 0 gathers the canvases and writes the outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, count: int) -> list[int]:
        """The positions (of `count` classes) this rank owns: round-robin, so shards differ by at most one."""
        return list(range(self.rank, count, self.size))

    def owner(self, position: int) -> int:
        return position % self.size

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of `tensor` over ranks, in place (no-op in one process)."""
        if self.size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def merge_rows(self, tensor: torch.Tensor, groups: int) -> torch.Tensor:
        """`tensor` (rows in `groups` equal blocks, one per class position) with every block taken from its owner."""
        if self.size == 1:
            return tensor
        gathered = [torch.empty_like(tensor) for _ in range(self.size)]
        torch.distributed.all_gather(gathered, tensor.contiguous())
        merged = tensor.clone().view(groups, -1, *tensor.shape[1:])
        for position in range(groups):
            merged[position] = gathered[self.owner(position)].view(groups, -1, *tensor.shape[1:])[position]
        return merged.view_as(tensor)

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


def init_world(device: torch.device) -> World:
    """The `torchrun` world (NCCL on GPUs, gloo on CPUs), or one process when not launched by it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not torch.distributed.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run without torchrun")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        index = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device
