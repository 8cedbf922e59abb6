"""`FreshModelPlugin`: the DM protocol (GDumb style) as an Avalanche plugin.

After each experience a freshly initialised network is trained from scratch on the memory of all
seen classes by `condense.evaluate.train_runs` (the per-run trainer over the one training loop) and handed to the strategy, whose
evaluation then tests it on the seen classes.
"""

from __future__ import annotations

from collections.abc import Callable

from avalanche.core import SupervisedPlugin
from avalanche.distributed import DistributedHelper
from torch import nn

from condense.evaluate import train_runs
from condense.train import TrainConfig

from .benchmark import raw_tensors


class FreshModelPlugin(SupervisedPlugin, supports_distributed=True):
    """The DM protocol (GDumb style) as an Avalanche plugin.

    After each training experience: update `memory` with it, build a fresh network `make_net(seed)`
    for the seed `seed * 1000 + experience` (its weights from that seed alone, e.g.
    `functools.partial(condense.nets.seeded_net, "convnet", channels, classes, image_size, stream="fresh")`, so no
    weight survives from an earlier experience and none starts where a pool member did), train it from scratch on the whole memory with
    `condense.evaluate.train_runs` (`config`, optional `objective`, e.g. DLB), and load it into the
    strategy's model, so that `strategy.eval` tests it. `history` keeps the figures of every experience.

    Distributed (Avalanche's `DistributedHelper`, the model wrapped in DistributedDataParallel or not):
    every rank holds the same memory (the whole experience is read, not a rank's share) and trains the
    same fresh model; rank 0's weights are broadcast, so all ranks test one model even where the
    device's arithmetic is not deterministic.
    """

    def __init__(self, memory, make_net: Callable[[int], nn.Module], config: TrainConfig, mean, std, *, seed: int = 0,
                 objective=None, progress: bool = True):
        super().__init__()
        self.memory, self.make_net, self.config = memory, make_net, config
        self.mean, self.std, self.seed, self.objective, self.progress = tuple(mean), tuple(std), seed, objective, progress
        self.history: list[dict] = []

    def after_training_exp(self, strategy, **kwargs):
        experience = strategy.experience.current_experience
        self.memory.post_adapt(strategy, strategy.experience)
        images, labels = raw_tensors(self.memory.buffer)
        seed = self.seed * 1000 + experience
        (run,) = train_runs(self.make_net, images, labels, self.config, [seed], strategy.device, mean=self.mean, std=self.std,
                            objective=self.objective, desc=f"fresh model, experience {experience}", progress=self.progress)
        state = {name: DistributedHelper.broadcast(tensor) for name, tensor in run["net"].state_dict().items()}  # no-op in one process
        DistributedHelper.unwrap_model(strategy.model).load_state_dict(state)
        self.history.append({"experience": experience, "seed": seed, "memory_images": len(labels),
                             "stored_per_class": self.memory.stored_per_class(), **{k: run[k] for k in ("loss", "seconds", "images_per_second")}})
