"""Several processes through `torch.distributed` (launched by `torchrun`); one process needs none of it.

Distillation shards classes across ranks: every rank makes the same random draws (matcher,
frequencies, real indices, DSA) for all classes, so a class's images follow exactly the path they
would in one process, but a rank forwards, matches and updates only its own classes. The learned
sampler's gradients are summed across ranks; rank 0 gathers the canvases and writes the outputs.

Independent jobs (pool members, evaluation runs, NAS candidates) go through `World.map_in_rounds`:
each round gives every rank one job, and every rank receives every result (as JSON, never pickled).
Each job is seeded by itself, so its result is the one it has in a single process. Networks trained
at once (batched pool, batched evaluation runs) make one job of each rank's group (`World.groups`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives run (CUDA under NCCL)
    local_rank: int = 0  # rank among the processes of this machine

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

    def main_first(self, work: Callable):
        """`work()` on the first process of every machine, then on the others (the first fills a machine's
        cache, such as `datasets`', that the others then read)."""
        if self.local_rank == 0:
            result = work()
        self.barrier()
        if self.local_rank != 0:
            result = work()
        return result

    def gather_json(self, value) -> list:
        """`value` (JSON-shaped) of every rank, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        payload = torch.tensor(list(json.dumps(value).encode()), dtype=torch.uint8, device=self.device)
        lengths = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.size)]
        torch.distributed.all_gather(lengths, torch.tensor([len(payload)], device=self.device))
        longest = max(int(length) for length in lengths)
        padded = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        padded[: len(payload)] = payload
        gathered = [torch.empty_like(padded) for _ in range(self.size)]
        torch.distributed.all_gather(gathered, padded)
        return [json.loads(bytes(data[: int(length)].tolist())) for data, length in zip(gathered, lengths)]

    def groups(self, jobs: list, together: bool) -> list[list]:
        """`jobs` one at a time, or (`together`, e.g. networks trained at once) in one contiguous group per rank."""
        if not together:
            return [[job] for job in jobs]
        per_rank = max(1, -(-len(jobs) // self.size))
        return [jobs[first : first + per_rank] for first in range(0, len(jobs), per_rank)]

    def map_in_rounds(self, jobs: list, work: Callable, after_round: Callable[[list, list], None] | None = None, *,
                      desc: str = "jobs", unit: str = "job", progress: bool = False) -> list:
        """`work(job)` (JSON-shaped result) for every job, in rounds of one job per rank; all results, in job order.

        `after_round(jobs, results)` runs on every rank after each round (e.g. rank 0 saves progress);
        with `progress`, rank 0 shows a bar of the jobs done.
        """
        results = []
        with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not (progress and self.is_main)) as bar:
            for start in range(0, len(jobs), self.size):
                round_jobs = jobs[start : start + self.size]
                mine = work(round_jobs[self.rank]) if self.rank < len(round_jobs) else None
                round_results = self.gather_json(mine)[: len(round_jobs)]
                results.extend(round_results)
                if after_round is not None:
                    after_round(round_jobs, round_results)
                bar.update(len(round_jobs))
        return results


def init_world(device: torch.device) -> World:
    """The `torchrun` world (NCCL on GPUs, gloo on CPUs), or one process when not launched by it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not torch.distributed.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run without torchrun")
    if not torch.distributed.is_initialized():
        store, rank, size = next(torch.distributed.rendezvous("env://"))
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's agent keeps this store across the restarts of --max-restarts: a restarted group that read the keys of
            # the killed one would connect to dead processes (and hang or fail), so each attempt keeps its keys apart. (With
            # several machines the agents may count restarts differently: there TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 gives
            # every attempt a fresh store instead, and this branch is not taken.)
            store = torch.distributed.PrefixStore(f"condense-attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", store=store, rank=rank, world_size=size)
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size(), device, int(os.environ.get("LOCAL_RANK", "0")))


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        index = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


@contextmanager
def torchrun_world(device: torch.device) -> Iterator[tuple[World, torch.device]]:
    """For a command: this process's world and device; the process group is closed when the command ends."""
    device = local_device(device)
    world = init_world(device)
    try:
        yield world, device
        world.barrier()  # no rank tears its connections down while another still works (gloo can abort then)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
