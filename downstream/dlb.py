"""DLB: self-distillation from the last mini-batch (Shen et al., CVPR 2022).

Every step also trains on the samples of the previous step and pulls their current prediction
towards the one they got a step earlier: loss = cross-entropy + alpha * tau^2 *
KL(softmax(previous logits / tau) || softmax(current logits / tau)) on the repeated samples, where
the previous logits are **detached** (a target, never trained through). The cache of the last
batch persists across epoch boundaries (the first step of an epoch repeats the last batch of the
one before); only the very first step of a training run, with nothing cached, is plain
cross-entropy. Defaults tau = 3, alpha = 1.

Three ways to use it:

- `LastBatchDistillation`: one extra line in a hand-written loop (the official mechanics below);
- `DLB`: the objective `condense.train.train(objective=...)` accepts, with both batch schemes;
- `DLBPlugin`: an Avalanche 0.6 `SupervisedPlugin` (imported lazily: `from downstream.dlb import
  DLBPlugin` loads Avalanche, `import downstream.dlb` does not).

Batch schemes (`DLB(scheme=...)`):

- `official` (a): each step forwards a new batch of n and, as a separate forward, the previous
  step's new samples under a second, independent augmentation; loss = CE(new) + CE(repeated) +
  the KL term on the repeated samples. An epoch forwards every sample twice (about 2x the time of
  plain training per epoch).
- `paper` (b): a fixed batch of n whose first n/2 samples repeat the previous batch's last n/2 (its
  new half, re-augmented) and whose last n/2 are new; one forward, loss = CE over the n + the KL
  term on the first n/2. Each sample is new exactly once per epoch, so an epoch has twice as many
  steps of the same size as plain training: the same cost per step, about 2x per epoch.

BatchNorm: with `official`, the new and the repeated samples go through the network in two
forwards, so BatchNorm normalises (and updates its running statistics with) each half alone, as
the official code does; with `paper` it sees the whole batch of n. Normalisations without batch
statistics (instance, layer, group norm) are unaffected. Augmentation: every forward draws a fresh
per-sample augmentation, so a repeated sample is always seen under a second view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache

import torch
import torch.nn.functional as F

from condense.errors import UserError

SCHEMES = ("official", "paper")


def distillation_term(logits: torch.Tensor, previous_logits: torch.Tensor, tau: float = 3.0) -> torch.Tensor:
    """tau^2 * KL(softmax(previous / tau) || softmax(logits / tau)), mean over samples.

    `previous_logits` are detached here: the gradient flows only into `logits`.
    """
    target = F.log_softmax(previous_logits.detach().float() / tau, dim=1)
    return F.kl_div(F.log_softmax(logits.float() / tau, dim=1), target, reduction="batchmean", log_target=True) * tau**2


def _check(tau: float, alpha: float) -> None:
    if not tau > 0:
        raise UserError(f"DLB temperature tau must be positive, got {tau}")
    if not alpha >= 0:
        raise UserError(f"DLB weight alpha must be non-negative, got {alpha}")


class LastBatchDistillation:
    """DLB for a hand-written loop (the official mechanics), one call per step.

    ```
    dlb = LastBatchDistillation()
    for x, y in loader:
        logits = model(x)
        loss = F.cross_entropy(logits, y) + dlb(model, x, y, logits)
        ...backward, step...
    ```
    A call returns CE(model(second view of the previous batch), its targets) + alpha * tau^2 * KL
    (previous logits detached || those new logits), or 0 at the first call, and caches this
    batch's inputs, targets and detached logits for the next call. The second view is
    `augment(previous inputs)` (default: the inputs as cached, i.e. the same view; pass the
    augmentation your loader uses to get an independent second one). The repeated samples are a
    separate forward (BatchNorm sees them alone). The cache lives until `reset()`.
    """

    def __init__(self, tau: float = 3.0, alpha: float = 1.0, augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        _check(tau, alpha)
        self.tau, self.alpha, self.augment = tau, alpha, augment
        self.reset()

    def reset(self) -> None:
        """Forget the cached batch (the next call is plain CE again)."""
        self.previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        previous, self.previous = self.previous, (inputs.detach(), targets.detach(), logits.detach())
        if previous is None:
            return torch.zeros((), device=logits.device)
        x, y, previous_logits = previous
        now = model(self.augment(x) if self.augment is not None else x)
        return F.cross_entropy(now, y) + self.alpha * distillation_term(now, previous_logits, self.tau)


class DLB:
    """DLB as the objective of `condense.train.train(net, ..., objective=DLB())`.

    `scheme` is `official` (a) or `paper` (b) (module docstring). With `paper`, a batch of n holds
    n // 2 new samples (n >= 2). `train` calls `start()`, so one object can serve several runs.
    """

    def __init__(self, tau: float = 3.0, alpha: float = 1.0, scheme: str = "official"):
        _check(tau, alpha)
        if scheme not in SCHEMES:
            raise UserError(f"unknown DLB scheme {scheme!r}; use official (new batch + previous batch) or paper (half-overlapping batches)")
        self.tau, self.alpha, self.scheme = tau, alpha, scheme
        self.start()

    def __repr__(self) -> str:
        return f"DLB(tau={self.tau}, alpha={self.alpha}, scheme={self.scheme!r})"

    def to_dict(self) -> dict:
        return {"objective": "dlb", "tau": self.tau, "alpha": self.alpha, "scheme": self.scheme}

    def start(self) -> None:
        self.pending: torch.Tensor | None = None  # the previous step's new samples, repeated next
        self.repeated = 0  # how many samples of the current step are repeats
        self.previous_logits: torch.Tensor | None = None

    def steps(self, order: torch.Tensor, batch_size: int) -> Iterator[list[torch.Tensor]]:
        """Each step's parts: `official` [new, previous new] (two forwards); `paper` [previous new + new]."""
        if self.scheme == "paper" and batch_size < 2:
            raise UserError(f"the paper DLB scheme needs a batch of at least 2 (half new, half repeated), got {batch_size}")
        size = batch_size if self.scheme == "official" else batch_size // 2
        for new in order.split(size):
            repeated, self.pending = self.pending, new
            self.repeated = 0 if repeated is None else len(repeated)
            if repeated is None:
                yield [new]
            elif self.scheme == "official":
                yield [new, repeated]
            else:
                yield [torch.cat([repeated, new])]

    def extra_loss(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """alpha * tau^2 * KL on the repeated samples (0 when none); caches the new samples' logits."""
        if self.scheme == "official":
            new, repeated = logits[0], (logits[1] if self.repeated else None)
        else:
            new, repeated = logits[0][self.repeated :], (logits[0][: self.repeated] if self.repeated else None)
        term = torch.zeros((), device=new.device) if repeated is None else self.alpha * distillation_term(repeated, self.previous_logits, self.tau)
        self.previous_logits = new.detach()
        return term


@cache
def _plugin_class() -> type:
    """Build `DLBPlugin` on first use (importing Avalanche takes seconds)."""
    from avalanche.core import SupervisedPlugin
    from avalanche.models.utils import avalanche_forward

    class DLBPlugin(SupervisedPlugin):
        """DLB for any Avalanche 0.6 supervised strategy (Naive, Replay, ...).

        In `before_backward` it adds `LastBatchDistillation`'s term for the previous mini-batch
        (the official mechanics: CE of the previous mini-batch re-forwarded + alpha * tau^2 * KL to
        its detached logits of a step ago) to `strategy.loss`. The cache persists across epochs and
        is cleared at the start of every training experience (the model and its heads may change
        between experiences). `augment` optionally re-augments the cached inputs.
        """

        def __init__(self, tau: float = 3.0, alpha: float = 1.0, augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
            super().__init__()
            self.distillation = LastBatchDistillation(tau, alpha, augment)
            self.previous_tasks: torch.Tensor | None = None

        def before_training_exp(self, strategy, *args, **kwargs):
            self.distillation.reset()

        def before_backward(self, strategy, *args, **kwargs):
            tasks, self.previous_tasks = self.previous_tasks, strategy.mb_task_id

            def forward(x: torch.Tensor) -> torch.Tensor:
                return avalanche_forward(strategy.model, x, tasks)

            strategy.loss += self.distillation(forward, strategy.mb_x, strategy.mb_y, strategy.mb_output)

    DLBPlugin.__module__ = __name__
    DLBPlugin.__qualname__ = "DLBPlugin"
    return DLBPlugin


def __getattr__(name: str):
    if name == "DLBPlugin":
        return _plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
