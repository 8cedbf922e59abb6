"""`DLBPlugin`: DLB (`downstream.dlb`) as an Avalanche 0.6 plugin, for any supervised strategy."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward

from .dlb import LastBatchDistillation


class DLBPlugin(SupervisedPlugin, supports_distributed=True):
    """DLB for any Avalanche 0.6 supervised strategy (Naive, Replay, ...).

    In `before_backward`, `strategy.loss` holds the strategy's mean cross-entropy of the new
    mini-batch (Avalanche's default criterion; the plugin assumes it). The plugin adds
    `LastBatchDistillation.step_loss` minus that CE, so the total is the official loss (one mean
    CE over the new and the re-forwarded previous mini-batch + alpha * tau^2 * KL to the previous
    one's detached logits of a step ago) and terms other plugins added stay as they are. The
    cache persists across epochs and is cleared at the start of every training experience (the
    model and its heads may change between experiences). `augment` (e.g. `downstream.dlb.crop_flip`):
    the plugin augments every mini-batch itself before the strategy's forward, and the repeat a step
    later is a fresh `augment` of the same un-augmented mini-batch, both views from the source as the
    official code (give the benchmark no augmenting transform then). None (the default): no
    augmentation here; the cached mini-batch is re-forwarded as the strategy's loader gave it.

    Distributed: each rank caches and re-forwards its own share of the mini-batch and adds its own
    term, as the strategy's CE; DistributedDataParallel averages the gradients over ranks.
    """

    def __init__(self, tau: float = 3.0, alpha: float = 1.0, augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.distillation = LastBatchDistillation(tau, alpha, augment)
        self.previous_tasks: torch.Tensor | None = None
        self.source: torch.Tensor | None = None  # the current mini-batch before `augment`

    def before_training_exp(self, strategy, *args, **kwargs):
        self.distillation.reset()

    def before_forward(self, strategy, *args, **kwargs):
        self.source = strategy.mb_x
        if self.distillation.augment is not None:
            strategy.mbatch[0] = self.distillation.augment(self.source)

    def before_backward(self, strategy, *args, **kwargs):
        tasks, self.previous_tasks = self.previous_tasks, strategy.mb_task_id

        def forward(x: torch.Tensor) -> torch.Tensor:
            return avalanche_forward(strategy.model, x, tasks)

        new_cross_entropy = F.cross_entropy(strategy.mb_output, strategy.mb_y)
        strategy.loss += (self.distillation.step_loss(forward, strategy.mb_x, strategy.mb_y, strategy.mb_output, self.source)
                          - new_cross_entropy)
