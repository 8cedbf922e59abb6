"""`DLBPlugin`: DLB (`downstream.dlb`) as an Avalanche 0.6 plugin, for any supervised strategy."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward

from .dlb import LastBatchDistillation, second_view


class DLBPlugin(SupervisedPlugin):
    """DLB for any Avalanche 0.6 supervised strategy (Naive, Replay, ...).

    In `before_backward`, `strategy.loss` holds the strategy's mean cross-entropy of the new
    mini-batch (Avalanche's default criterion; the plugin assumes it). The plugin adds
    `LastBatchDistillation.step_loss` minus that CE, so the total is the official loss (one mean
    CE over the new and the re-forwarded previous mini-batch + alpha * tau^2 * KL to the previous
    one's detached logits of a step ago) and terms other plugins added stay as they are. The
    cache persists across epochs and is cleared at the start of every training experience (the
    model and its heads may change between experiences). `augment`: the second view of the
    cached inputs, `second_view` by default, None for none (`downstream.dlb`'s docstring).
    """

    def __init__(self, tau: float = 3.0, alpha: float = 1.0, augment: Callable[[torch.Tensor], torch.Tensor] | None = second_view):
        super().__init__()
        self.distillation = LastBatchDistillation(tau, alpha, augment)
        self.previous_tasks: torch.Tensor | None = None

    def before_training_exp(self, strategy, *args, **kwargs):
        self.distillation.reset()

    def before_backward(self, strategy, *args, **kwargs):
        tasks, self.previous_tasks = self.previous_tasks, strategy.mb_task_id

        def forward(x: torch.Tensor) -> torch.Tensor:
            return avalanche_forward(strategy.model, x, tasks)

        new_cross_entropy = F.cross_entropy(strategy.mb_output, strategy.mb_y)
        strategy.loss += self.distillation.step_loss(forward, strategy.mb_x, strategy.mb_y, strategy.mb_output) - new_cross_entropy
