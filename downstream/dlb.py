"""DLB: self-distillation from the last mini-batch (Shen et al., CVPR 2022).

Every step also trains on the samples of the previous step and pulls their current prediction
towards the one they got a step earlier: loss = one mean cross-entropy over all the step's samples
(new and repeated, as the official code) + alpha * tau^2 * KL(softmax(previous logits / tau) ||
softmax(current logits / tau)) on the repeated samples, where the previous logits are **detached**
(a target, never trained through). The cache of the last
batch persists across epoch boundaries (the first step of an epoch repeats the last batch of the
one before); only the very first step of a training run, with nothing cached, is plain
cross-entropy. Defaults tau = 3, alpha = 1.

Three ways to use it:

- `LastBatchDistillation`: the whole step loss in a hand-written loop (the official mechanics below);
- `DLB`: the objective `condense.train.train(objective=...)` accepts, with both batch schemes;
- `DLBPlugin`: an Avalanche 0.6 `SupervisedPlugin`, in `downstream.dlb_plugin` (which imports
  Avalanche; this module does not).

Batch schemes (`DLB(scheme=...)`):

- `official` (a): each step forwards a new batch of n and, as a separate forward, the previous
  step's new samples under a second, independent augmentation; loss = one mean CE over the 2n
  samples + the KL term on the repeated samples. An epoch forwards every sample twice (about 2x the time of
  plain training per epoch).
- `paper` (b): a fixed batch of n whose first n/2 samples repeat the previous batch's last n/2 (its
  new half, re-augmented) and whose last n/2 are new; one forward, loss = CE over the n + the KL
  term on the first n/2. Each sample is new exactly once per epoch, so an epoch has twice as many
  steps of the same size as plain training: the same cost per step, about 2x per epoch.

BatchNorm: with `official`, the new and the repeated samples go through the network in two
forwards, so BatchNorm normalises (and updates its running statistics with) each half alone, as
the official code does; with `paper` it sees the whole batch of n. Normalisations without batch
statistics (instance, layer, group norm) are unaffected.

Second view: the official code draws both views of a repeated sample from its source image (the
previous batch's images are loaded and augmented afresh). `train` does the same: a step holds the
samples' indices, and every part is augmented from the stored images (the config's DSA).
`LastBatchDistillation` and `DLBPlugin` keep the previous batch's **source** (un-augmented) inputs
and re-forward `augment(source)`, a fresh view, never a view of the view the network saw.
`augment` is the loop's own augmentation, applied to the new batch too: `LastBatchDistillation`
needs the `source` of each batch it is given with an `augment`; `DLBPlugin` augments the
strategy's mini-batch itself. `crop_flip` is the CIFAR convention of the official code (a random
crop with 4-pixel padding at 32 px, a shift of up to 1/8 of the size each way, zero fill, and a
horizontal flip with probability 0.5, per sample, from torch's global RNG; inputs other than image
batches as they are). `augment=None` (the default): no augmentation, the cached inputs are
re-forwarded as they were.

With other targets: KD from a teacher composes as it is (`train(teacher=..., objective=DLB())`,
`condense eval --teacher T --objective dlb`): every part, new or repeated, is trained towards the
teacher's probabilities of that very augmented view, and the KL term to the previous step's logits
is added. With CutMix (`official` only; `train` with cutmix_p > 0): a mixed batch's logits are a
target for no single sample, so CutMix mixes only the new part of a step (with probability
cutmix_p, its CE then on the mixed targets), the repeated part is never mixed, and the KL term is
taken only when the cached logits came from an un-mixed new part (on about 1 - cutmix_p of the
steps). The `paper` scheme's single part holds new and repeated samples together, so it refuses CutMix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from condense.augment import DSA
from condense.errors import UserError

SCHEMES = ("official", "paper")
CROP_AND_FLIP = DSA("crop_flip", mode="all")  # DSA's default strengths: shifts up to size // 8 (4 px at 32), flip p = 0.5


def crop_flip(inputs: torch.Tensor) -> torch.Tensor:
    """The official code's CIFAR augmentation: per-sample crop (4-px padding at 32 px) and flip of image batches.

    Image batches are 4-D float tensors [N,C,H,W]; anything else is returned as it is (module docstring).
    """
    if inputs.dim() == 4 and inputs.is_floating_point():
        return CROP_AND_FLIP(inputs)
    return inputs


def distillation_term(logits: torch.Tensor, previous_logits: torch.Tensor, tau: float = 3.0) -> torch.Tensor:
    """tau^2 * KL(softmax(previous / tau) || softmax(logits / tau)), mean over samples.

    `previous_logits` are detached here: the gradient flows only into `logits`.
    """
    target = F.log_softmax(previous_logits.detach().float() / tau, dim=1)
    return F.kl_div(F.log_softmax(logits.float() / tau, dim=1), target, reduction="batchmean", log_target=True) * tau**2


def _check(tau: float, alpha: float) -> None:
    """Infinite or nan settings make every loss nan: refused here, so no divergence message blames the learning rate."""
    if not (math.isfinite(tau) and tau > 0):
        raise UserError(f"DLB temperature --tau must be a finite number above 0, got {tau}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise UserError(f"DLB weight --alpha must be a finite number of at least 0, got {alpha}")


class LastBatchDistillation:
    """DLB for a hand-written loop (the official mechanics): the whole loss of every step.

    ```
    dlb = LastBatchDistillation()
    for x, y in loader:
        loss = dlb.step_loss(model, x, y, model(x))  # instead of F.cross_entropy(model(x), y)
        ...backward, step...
    ```
    `step_loss` is the official loss: one mean cross-entropy over this batch and a second view of
    the previous one, + alpha * tau^2 * KL(previous logits detached || logits of the second view) on
    the repeated samples; at the first call (nothing cached) the mean CE of this batch alone. It
    caches this batch's source, targets and detached logits for the next call. With an `augment`
    (the loop's augmentation, e.g. `crop_flip`), pass each batch's un-augmented `source`
    (`x = augment(source)`): the second view is `augment(previous source)`, drawn from the source
    as the official code; without one (the default) the cached inputs are re-forwarded as they
    were. The repeated samples are a separate forward (BatchNorm sees them alone).
    The cache lives until `reset()`.
    """

    def __init__(self, tau: float = 3.0, alpha: float = 1.0, augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        _check(tau, alpha)
        self.tau, self.alpha, self.augment = tau, alpha, augment
        self.reset()

    def reset(self) -> None:
        """Forget the cached batch (the next call is plain CE again)."""
        self.previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def step_loss(self, model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
                  logits: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """The step's loss from this batch (`inputs`, `targets`, `logits` = model(inputs)) and the cached one.

        `source`: the un-augmented batch `inputs` was drawn from (needed with an `augment`: a view of
        `inputs` would be a view of a view).
        """
        if self.augment is not None and source is None:
            raise UserError("LastBatchDistillation with an augment draws the repeated samples' view from their source: "
                            "pass step_loss(..., source=BATCH) with the un-augmented batch")
        cached = inputs if source is None else source
        previous, self.previous = self.previous, (cached.detach(), targets.detach(), logits.detach())
        if previous is None:
            return F.cross_entropy(logits, targets)
        x, y, previous_logits = previous
        now = model(self.augment(x) if self.augment is not None else x)
        cross_entropy = F.cross_entropy(torch.cat([logits, now]), torch.cat([targets, y]))
        return cross_entropy + self.alpha * distillation_term(now, previous_logits, self.tau)


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

    @classmethod
    def from_settings(cls, tau: float = 3.0, alpha: float = 1.0, scheme: str = "official", **_other) -> DLB:
        """Built from the command line's objective flags (`condense.objectives`); flags of other objectives are ignored."""
        return cls(tau, alpha, scheme)

    def __repr__(self) -> str:
        return f"DLB(tau={self.tau}, alpha={self.alpha}, scheme={self.scheme!r})"

    def to_dict(self) -> dict:
        return {"objective": "dlb", "tau": self.tau, "alpha": self.alpha, "scheme": self.scheme}

    @property
    def mixable_parts(self) -> tuple[int, ...]:
        """CutMix may mix the new part of an `official` step (module docstring); `paper` steps have none apart."""
        return (0,) if self.scheme == "official" else ()

    def start(self) -> None:
        self.pending: torch.Tensor | None = None  # the previous step's new samples, repeated next
        self.repeated = 0  # how many samples of the current step are repeats
        self.previous_logits: torch.Tensor | None = None
        self.previous_mixed = False  # whether CutMix mixed the cached logits' inputs

    def new_per_step(self, batch_size: int) -> int:
        """How many new samples a step of `batch_size` takes: all (`official`) or half (`paper`)."""
        if self.scheme == "paper" and batch_size < 2:
            raise UserError(f"the paper DLB scheme needs a batch of at least 2 (half new, half repeated), got {batch_size}")
        return batch_size if self.scheme == "official" else batch_size // 2

    def steps_per_epoch(self, count: int, batch_size: int) -> int:
        return math.ceil(count / self.new_per_step(batch_size))

    def steps(self, order: torch.Tensor, batch_size: int) -> Iterator[list[torch.Tensor]]:
        """Each step's parts: `official` [new, previous new] (two forwards); `paper` [previous new + new]."""
        for new in order.split(self.new_per_step(batch_size)):
            repeated, self.pending = self.pending, new
            self.repeated = 0 if repeated is None else len(repeated)
            if repeated is None:
                yield [new]
            elif self.scheme == "official":
                yield [new, repeated]
            else:
                yield [torch.cat([repeated, new])]

    def extra_loss(self, logits: list[torch.Tensor], mixed: list[bool]) -> torch.Tensor:
        """alpha * tau^2 * KL on the repeated samples; caches the new samples' logits and whether CutMix mixed them.

        The term is 0 when no sample repeats, or when the cached logits came from a mixed batch.
        """
        if self.scheme == "official":
            new, repeated = logits[0], (logits[1] if self.repeated else None)
        else:
            new, repeated = logits[0][self.repeated :], (logits[0][: self.repeated] if self.repeated else None)
        if repeated is None or self.previous_mixed:
            term = torch.zeros((), device=new.device)
        else:
            term = self.alpha * distillation_term(repeated, self.previous_logits, self.tau)
        self.previous_logits, self.previous_mixed = new.detach(), bool(mixed[0])
        return term

