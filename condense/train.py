"""The one training loop: train a network on a set of images (hard or soft targets), and test it.

Evaluation, pool pretraining and the downstream trainers all call `train`; what differs is the
`TrainConfig` (optimiser, schedule, augmentation, CutMix, temperature), where each batch's targets come
from (`FixedTargets`: the stored labels or soft labels; `TeacherTargets`: KD from a teacher on the
augmented batch), and an optional `Objective` that chooses each step's samples and adds a loss term
(DLB in `downstream.dlb` is one). Targets and objective compose: KD and DLB together is one call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import DSA, TRAINING_STRATEGY, cutmix
from .batched import StackedNets
from .data import RealData, normalise
from .errors import UserError
from .flags import check_numbers, setting


@dataclass
class TrainConfig:
    """How to train. Defaults: the evaluation protocol of BENCHMARKS.md (300 epochs for the CPU preset)."""

    epochs: int = setting(300, "epochs")
    batch_size: int = setting(128, "batch size")
    optimizer: str = setting("adamw", "adamw or sgd")
    lr: float = setting(1e-3, "learning rate")
    weight_decay: float = setting(0.01, "weight decay")
    momentum: float = setting(0.9, "momentum (sgd)")
    lr_decay_at: tuple[float, ...] = setting((0.2, 0.4, 0.6, 0.8), "fractions of the training steps where the lr is multiplied by lr_gamma")
    lr_gamma: float = setting(0.5, "factor on the lr at each decay")
    reset_at_decay: bool = setting(False, "re-create the optimiser at each lr decay (its momentum forgotten), as DC/DM's evaluate_synset does")
    dsa: str = setting(TRAINING_STRATEGY, "per-sample DSA operations joined by _ ('' for none)")
    dsa_mode: str = setting("one", "one (one random DSA operation per image, the DSA convention), all, batch or batch-geometry")
    cutmix_p: float = setting(0.5, "probability that a batch is CutMix-ed")
    temperature: float = setting(1.0, "KD temperature for soft labels or a teacher: softmax(log p / T); loss T^2 * CE(logits / T, targets)")

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse a value that trains nothing or diverges at once, naming its flag (run at construction and again by `train`,
        since callers set fields after construction), so a divergence message is left for real divergence."""
        check_numbers(self, {"epochs": 1, "batch_size": 1}, positive=("lr", "lr_gamma", "temperature"),
                      not_negative=("weight_decay", "momentum"), fractions=("cutmix_p",))
        if not all(0 <= at <= 1 for at in self.lr_decay_at):
            raise UserError(f"lr_decay_at holds fractions of the training steps, between 0 and 1; got {list(self.lr_decay_at)}")

    def to_dict(self) -> dict:
        return asdict(self)


class Objective(Protocol):
    """What `train(objective=...)` accepts: the samples of each step, and a term added to the loss.

    Each step is a list of index tensors ("parts"). Every part is augmented and forwarded on its own
    (so BatchNorm sees each part alone); the step's loss is one mean cross-entropy over all the
    step's samples (each part's mean weighted by its share of the samples, as DLB's official code
    takes one CE over new and repeated samples) plus `extra_loss` of the parts' raw logits (before
    any temperature). Objectives compare per-sample predictions, so CutMix (`cutmix_p` > 0) may mix
    only the parts at `mixable_parts` (each with probability cutmix_p, as a plain batch), and
    `extra_loss` is told which parts it mixed; an objective with no mixable part refuses CutMix.
    """

    mixable_parts: tuple[int, ...]  # positions of a step's parts that CutMix may mix; () refuses CutMix

    def start(self) -> None:
        """Forget any state from an earlier training run (called once, before the first epoch)."""

    def steps_per_epoch(self, count: int, batch_size: int) -> int:
        """How many steps `steps` yields per epoch of `count` samples (the lr schedule counts steps)."""

    def steps(self, order: torch.Tensor, batch_size: int) -> Iterable[list[torch.Tensor]]:
        """The parts of every step of one epoch, given the epoch's random permutation `order`."""

    def extra_loss(self, logits: list[torch.Tensor], mixed: list[bool]) -> torch.Tensor:
        """The term added to the step's cross-entropy, from the raw logits of each part and whether CutMix mixed it."""


def keeps_cutmix(objective: Objective | None) -> bool:
    """Whether training with `objective` keeps a protocol's CutMix: plain CE does, an objective only if it can mix a part."""
    return objective is None or bool(objective.mixable_parts)


def make_optimizer(params, name: str, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum (for networks here, and for the synthetic images in distillation)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}; use adamw or sgd")


def soft_targets(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature-scaled teacher probabilities: softmax(log p / T) (= softmax(teacher logits / T))."""
    return torch.softmax(probabilities.clamp_min(1e-12).log() / temperature, dim=1)


class FixedTargets:
    """The targets stored with the images: class indices (cross-entropy) or probabilities (KD at the temperature)."""

    mixes = True  # CutMix mixes the two images' targets

    def __init__(self, targets: torch.Tensor, temperature: float):
        self.values = soft_targets(targets, temperature) if targets.is_floating_point() else targets

    def to(self, device: torch.device) -> FixedTargets:
        self.values = self.values.to(device)
        return self

    def __call__(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return self.values[batch]


class TeacherTargets:
    """KD from a frozen teacher: its temperature-scaled probabilities of the very batch the student sees (after DSA and CutMix)."""

    mixes = False  # the teacher saw the mixed image: its probabilities are the mixed image's targets

    def __init__(self, teacher: nn.Module, temperature: float):
        self.teacher, self.temperature = teacher, temperature

    def to(self, device: torch.device) -> TeacherTargets:
        self.teacher.to(device).eval().requires_grad_(False)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.teacher(x).float() / self.temperature, dim=1)


def train(
    net: nn.Module | list[nn.Module],
    images: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    *,
    mean,
    std,
    generator: torch.Generator | list[torch.Generator],
    device: torch.device,
    desc: str | None = None,
    progress: bool = True,
    teacher: nn.Module | None = None,
    objective: Objective | None = None,
    state: dict | None = None,
    after_epoch: Callable[[int, Callable[[], dict]], None] | None = None,
) -> dict | list[dict]:
    """Train `net` in place on `images` (uint8 or float in [0, 1], [N,C,H,W]; memory-mapped ones stay on disk).

    `targets` are class indices [N] (cross-entropy) or probabilities [N,K] (knowledge distillation
    at `config.temperature`). With a `teacher`, the targets of every batch are instead the teacher's
    temperature-scaled probabilities on the very batch the student sees (`TeacherTargets`).
    An `objective` (see `Objective`) chooses the samples of each step and adds a loss term; without
    one, every epoch is a random permutation cut into batches of `config.batch_size`.
    All randomness (order, DSA, CutMix) comes from `generator`.
    Returns the last epoch's mean step loss, the wall time and images forwarded per second.

    A list of networks (one architecture) with one generator each trains them at once (`StackedNets`):
    each network draws from its own generator exactly what it would draw alone, but the stacked forward
    rounds otherwise and training amplifies that: after 3 steps weights agree to 5e-8, after one epoch of the
    cifar10-ipc10-cpu pool they differ by up to 0.036 and members' accuracies by up to 0.7 points, after the cpu
    protocol's 300 epochs runs' accuracies by up to 0.1 (benchmarks/batched_cpu.py, results of 2026-12-07).
    One result per network, sharing the wall time.
    Objectives train one network at a time.

    `after_epoch(epochs_done, state)` runs after every epoch; `state()` is what `state=` continues from in a later call
    (weights, optimiser, schedule, random streams; not an objective's own state), so a long training can be saved and resumed.
    """
    nets = list(net) if isinstance(net, (list, tuple)) else [net]
    generators = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    _check(nets, generators, images, targets, config, objective)
    temperature = config.temperature if teacher is not None or targets.is_floating_point() else 1.0
    source = (TeacherTargets(teacher, temperature) if teacher is not None else FixedTargets(targets, temperature)).to(device)
    training = _Training(nets, generators, images, source, temperature, config, mean, std, device, objective, state)
    epochs = tqdm(range(training.epochs_done, config.epochs), desc=desc or "train", disable=not progress, leave=False, unit="ep")
    start, forwarded = time.perf_counter(), 0
    for epoch in epochs:
        epoch_losses, samples = training.epoch()
        forwarded += samples
        if not all(math.isfinite(value) for value in epoch_losses):
            raise UserError(f"training diverged (loss {max(epoch_losses)}) at epoch {epoch + 1}; lower the learning rate")
        epochs.set_postfix(loss=f"{sum(epoch_losses) / len(nets):.3f}")
        if after_epoch is not None:
            after_epoch(training.epochs_done, training.state_dict)
    seconds = time.perf_counter() - start
    if training.stacked:
        training.stacked.write_back()
    results = [{"loss": value, "seconds": seconds, "images_per_second": forwarded / seconds} for value in epoch_losses]
    return results if isinstance(net, (list, tuple)) else results[0]


def _check(nets, generators, images, targets, config: TrainConfig, objective: Objective | None) -> None:
    if len(generators) != len(nets):
        raise UserError(f"{len(nets)} networks need one generator each, got {len(generators)}")
    if objective is not None and len(nets) > 1:
        raise UserError(f"{type(objective).__name__} trains one network at a time; train the networks one by one (no batching)")
    if len(images) != len(targets) or len(images) == 0:
        raise UserError(f"cannot train on {len(images)} images with {len(targets)} targets")
    config.check()
    if objective is not None and config.cutmix_p > 0 and not objective.mixable_parts:
        raise UserError(f"{objective!r} compares per-sample predictions in every part of its steps, which CutMix would mix; "
                        "set cutmix_p to 0")


class _Training:
    """The state of one call of `train`: networks (stacked when several), optimiser, schedule, and how a step is made."""

    def __init__(self, nets, generators, images, source, temperature: float, config: TrainConfig, mean, std, device, objective, state=None):
        self.nets, self.generators, self.source, self.temperature, self.config = nets, generators, source, temperature, config
        self.mean, self.std, self.device, self.objective = mean, std, device, objective
        self.images = images.to(device) if isinstance(images, torch.Tensor) else images  # memory-mapped images are read batch by batch
        self.augment = DSA(config.dsa, mode=config.dsa_mode) if config.dsa else None
        for index, each in enumerate(nets):
            if state is not None:
                each.load_state_dict(state["nets"][index])
            each.to(device).train()
        self.stacked = StackedNets(nets) if len(nets) > 1 else None
        self.forward = self.stacked or (lambda batches: [nets[0](batches[0])])
        parameters = self.stacked.parameters() if self.stacked else nets[0].parameters()
        self.optimizer = make_optimizer(parameters, config.optimizer, config.lr, config.weight_decay, config.momentum)
        self.count = len(images)
        per_epoch = math.ceil(self.count / config.batch_size) if objective is None else objective.steps_per_epoch(self.count, config.batch_size)
        # by step, so that short runs get every decay; repeated milestones decay once each (MultiStepLR counts them)
        milestones = [max(1, round(f * config.epochs * per_epoch)) for f in config.lr_decay_at]
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, gamma=config.lr_gamma)
        self.epochs_done = 0
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            for generator, generator_state in zip(generators, state["generators"]):
                generator.set_state(generator_state)
            self.epochs_done = state["epochs_done"]
        if objective is not None:
            objective.start()

    def state_dict(self) -> dict:
        """The state a later `train(..., state=...)` continues from (`after_epoch`)."""
        if self.stacked:
            self.stacked.write_back()
        return {"epochs_done": self.epochs_done, "nets": [net.state_dict() for net in self.nets], "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "generators": [generator.get_state() for generator in self.generators]}

    def epoch(self) -> tuple[list[float], int]:
        """One epoch: each network's mean step loss, and how many samples each step forwarded in all."""
        batch_size, count = self.config.batch_size, self.count
        orders = [torch.randperm(count, generator=g).to(self.device) for g in self.generators]
        if self.objective is None:  # every step: each network's parts (one batch each)
            steps = ([[order[first : first + batch_size]] for order in orders] for first in range(0, count, batch_size))
        else:
            steps = ([parts] for parts in self.objective.steps(orders[0], batch_size))
        loss_sum, step_samples = torch.zeros(len(self.nets), device=self.device), 0
        for member_parts in steps:
            samples = sum(len(batch) for batch in member_parts[0])
            losses = self.step(member_parts, samples)
            loss_sum += torch.stack(losses).detach() * samples
            step_samples += samples
        self.epochs_done += 1
        return [total / step_samples for total in loss_sum.tolist()], step_samples

    def step(self, member_parts: list[list[torch.Tensor]], samples: int) -> list[torch.Tensor]:
        """One optimiser step over each network's parts; the step's loss of each network."""
        part_losses, part_logits, mixed = [[] for _ in self.nets], [[] for _ in self.nets], []
        for position in range(len(member_parts[0])):
            may_mix = self.objective is None or position in self.objective.mixable_parts
            inputs, mixes = zip(*(self._input(parts[position], g, may_mix) for parts, g in zip(member_parts, self.generators)))
            for member, (raw, x, parts, mix) in enumerate(zip(self.forward(list(inputs)), inputs, member_parts, mixes)):
                part_losses[member].append(self._loss(raw, x, parts[position], mix) * (self.temperature**2 * (len(x) / samples)))
                part_logits[member].append(raw)
            mixed.append(mixes[0] is not None)
        losses = [sum(member_losses) for member_losses in part_losses]
        if self.objective is not None:
            losses[0] = losses[0] + self.objective.extra_loss(part_logits[0], mixed)
        self.optimizer.zero_grad(set_to_none=True)
        sum(losses).backward()
        self.optimizer.step()
        self.schedule.step()
        if self.config.reset_at_decay and self.schedule.last_epoch in self.schedule.milestones:
            self.optimizer.state.clear()  # all a freshly made optimiser at the decayed lr would differ in
        return losses

    def _input(self, batch: torch.Tensor, generator: torch.Generator, may_mix: bool = True) -> tuple[torch.Tensor, tuple | None]:
        """A batch normalised, augmented and (with probability cutmix_p, if `may_mix`) CutMix-ed; the mix's permutation and share.

        The CutMix coin is drawn either way, so every part keeps the random stream it had before objectives could mix.
        """
        x = self.images[batch].to(self.device)  # no copy for resident images: already there
        x = normalise(x.float() / 255 if x.dtype == torch.uint8 else x, self.mean, self.std)
        if self.augment is not None:
            x = self.augment(x, generator)
        if torch.rand(1, generator=generator).item() < self.config.cutmix_p and may_mix:
            x, perm, lam = cutmix(x, generator)
            return x, (perm.to(self.device), lam)
        return x, None

    def _loss(self, raw: torch.Tensor, x: torch.Tensor, batch: torch.Tensor, mix: tuple | None) -> torch.Tensor:
        logits, y = raw / self.temperature, self.source(x, batch)
        loss = F.cross_entropy(logits, y)
        if mix is not None and self.source.mixes:
            perm, lam = mix
            loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y[perm])
        return loss


@torch.no_grad()
def accuracy(net: nn.Module, data: RealData, mean, std, device: torch.device, batch_size: int = 1000, transform=None) -> float:
    """Top-1 accuracy (%) of `net` on every image of `data`; `transform` of the [0, 1] pixels (on the CPU) instead of
    normalising with mean/std (a ZCA set's whitening)."""
    net.to(device).eval()
    correct = 0
    for first in range(0, len(data), batch_size):
        if transform is not None:
            x = transform(data.images[first : first + batch_size].float() / 255).to(device)
        else:
            x = normalise(data.images[first : first + batch_size].to(device).float() / 255, mean, std)
        correct += (net(x).argmax(1).cpu() == data.labels[first : first + batch_size]).sum().item()
    return 100.0 * correct / len(data)
