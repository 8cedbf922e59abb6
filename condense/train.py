"""The one training loop: train a network on a set of images (hard or soft targets), and test it.

Evaluation, pool pretraining and the downstream trainers all call `train`; what differs is the
`TrainConfig` (optimiser, schedule, augmentation, CutMix, temperature), the targets, and an optional
`Objective` that chooses each step's samples and adds a loss term (DLB in `downstream.dlb` is one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
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


@dataclass
class TrainConfig:
    """How to train. Defaults: the evaluation protocol of BENCHMARKS.md (300 epochs for the CPU preset)."""

    epochs: int = 300
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    lr_decay_at: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)  # fractions of the training steps where the lr is multiplied by lr_gamma
    lr_gamma: float = 0.5
    dsa: str = TRAINING_STRATEGY  # per-sample DSA operations; "" for none
    dsa_mode: str = "one"  # one random operation per image (DSA's convention) | all of them
    cutmix_p: float = 0.5  # probability that a batch is CutMix-ed
    temperature: float = 1.0  # soft targets: softmax(log p / T); loss T^2 * CE(logits / T, targets)

    def to_dict(self) -> dict:
        return asdict(self)


class Objective(Protocol):
    """What `train(objective=...)` accepts: the samples of each step, and a term added to the loss.

    Each step is a list of index tensors ("parts"). Every part is augmented and forwarded on its own
    (so BatchNorm sees each part alone); the step's loss is one mean cross-entropy over all the
    step's samples (each part's mean weighted by its share of the samples, as DLB's official code
    takes one CE over new and repeated samples) plus `extra_loss` of the parts' raw logits (before
    any temperature). Objectives compare per-sample predictions, so `train` refuses CutMix together
    with an objective.
    """

    def start(self) -> None:
        """Forget any state from an earlier training run (called once, before the first epoch)."""

    def steps_per_epoch(self, count: int, batch_size: int) -> int:
        """How many steps `steps` yields per epoch of `count` samples (the lr schedule counts steps)."""

    def steps(self, order: torch.Tensor, batch_size: int) -> Iterable[list[torch.Tensor]]:
        """The parts of every step of one epoch, given the epoch's random permutation `order`."""

    def extra_loss(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """The term added to the step's cross-entropy, from the raw logits of each part."""


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
) -> dict | list[dict]:
    """Train `net` in place on `images` (uint8 or float in [0, 1], [N,C,H,W]; memory-mapped ones stay on disk).

    `targets` are class indices [N] (cross-entropy) or probabilities [N,K] (knowledge distillation
    at `config.temperature`). With a `teacher`, the targets of every batch are instead the teacher's
    temperature-scaled probabilities on the very batch the student sees (after DSA and CutMix).
    An `objective` (see `Objective`) chooses the samples of each step and adds a loss term; without
    one, every epoch is a random permutation cut into batches of `config.batch_size`.
    All randomness (order, DSA, CutMix) comes from `generator`.
    Returns the last epoch's mean step loss, the wall time and images forwarded per second.

    A list of networks (one architecture) with one generator each trains them at once (`StackedNets`):
    each network draws from its own generator exactly what it would draw alone, so each ends as it
    would alone (to floating-point tolerance); one result per network, sharing the wall time.
    Objectives train one network at a time.
    """
    nets = list(net) if isinstance(net, (list, tuple)) else [net]
    generators = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    if len(generators) != len(nets):
        raise UserError(f"{len(nets)} networks need one generator each, got {len(generators)}")
    if objective is not None and len(nets) > 1:
        raise UserError(f"{type(objective).__name__} trains one network at a time; train the networks one by one (no batching)")
    if len(images) != len(targets) or len(images) == 0:
        raise UserError(f"cannot train on {len(images)} images with {len(targets)} targets")
    if config.epochs < 1 or config.batch_size < 1:
        raise UserError(f"epochs and batch size must be at least 1, got {config.epochs} and {config.batch_size}")
    if objective is not None and config.cutmix_p > 0:
        raise UserError(f"{type(objective).__name__} compares per-sample predictions, which CutMix mixes; set cutmix_p to 0")
    distilling = teacher is not None or targets.is_floating_point()
    temperature = config.temperature if distilling else 1.0
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
    elif targets.is_floating_point():
        targets = soft_targets(targets, temperature)
    resident = isinstance(images, torch.Tensor)  # memory-mapped images (`ArrowImages`) are read batch by batch
    images, targets = (images.to(device) if resident else images), targets.to(device)
    augment = DSA(config.dsa, mode=config.dsa_mode) if config.dsa else None
    for each in nets:
        each.to(device).train()
    stacked = StackedNets(nets) if len(nets) > 1 else None
    forward = stacked or (lambda batches: [nets[0](batches[0])])
    parameters = stacked.parameters() if stacked else nets[0].parameters()
    optimizer = make_optimizer(parameters, config.optimizer, config.lr, config.weight_decay, config.momentum)
    count = len(images)
    per_epoch = math.ceil(count / config.batch_size) if objective is None else objective.steps_per_epoch(count, config.batch_size)
    # by step, so that short runs get every decay; repeated milestones decay once each (MultiStepLR counts them)
    milestones = [max(1, round(f * config.epochs * per_epoch)) for f in config.lr_decay_at]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=config.lr_gamma)
    if objective is not None:
        objective.start()
    epochs = tqdm(range(config.epochs), desc=desc or "train", disable=not progress, leave=False, unit="ep")
    start, forwarded = time.perf_counter(), 0
    for epoch in epochs:
        orders = [torch.randperm(count, generator=g).to(device) for g in generators]
        if objective is None:  # every step: each network's parts (one batch each)
            steps = ([[order[first : first + config.batch_size]] for order in orders] for first in range(0, count, config.batch_size))
        else:
            steps = ([parts] for parts in objective.steps(orders[0], config.batch_size))
        loss_sum, step_samples = torch.zeros(len(nets), device=device), 0
        for member_parts in steps:
            samples = sum(len(batch) for batch in member_parts[0])
            part_losses, part_logits = [[] for _ in nets], [[] for _ in nets]
            for position in range(len(member_parts[0])):
                inputs, labels, mixes = [], [], []
                for parts, g in zip(member_parts, generators):
                    batch = parts[position]
                    x = images[batch].to(device)  # no copy for resident images: already there
                    x = normalise(x.float() / 255 if x.dtype == torch.uint8 else x, mean, std)
                    if augment is not None:
                        x = augment(x, g)
                    mix = torch.rand(1, generator=g).item() < config.cutmix_p
                    if mix:
                        x, perm, lam = cutmix(x, g)
                    inputs.append(x)
                    labels.append(targets[batch])
                    mixes.append((perm.to(device), lam) if mix else None)
                for member, (raw, x, y, mix) in enumerate(zip(forward(inputs), inputs, labels, mixes)):
                    logits = raw / temperature
                    if teacher is not None:
                        with torch.no_grad():
                            y, mix = torch.softmax(teacher(x).float() / temperature, dim=1), None
                    loss = F.cross_entropy(logits, y)
                    if mix is not None:
                        perm, lam = mix
                        loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y[perm])
                    part_losses[member].append(loss * (temperature**2 * (len(x) / samples)))
                    part_logits[member].append(raw)
            losses = [sum(member_losses) for member_losses in part_losses]
            if objective is not None:
                losses[0] = losses[0] + objective.extra_loss(part_logits[0])
            optimizer.zero_grad(set_to_none=True)
            sum(losses).backward()
            optimizer.step()
            schedule.step()
            loss_sum += torch.stack(losses).detach() * samples
            step_samples += samples
        forwarded += step_samples
        epoch_losses = [total / step_samples for total in loss_sum.tolist()]
        if not all(math.isfinite(value) for value in epoch_losses):
            raise UserError(f"training diverged (loss {max(epoch_losses)}) at epoch {epoch + 1}; lower the learning rate")
        epochs.set_postfix(loss=f"{sum(epoch_losses) / len(nets):.3f}")
    seconds = time.perf_counter() - start
    if stacked:
        stacked.write_back()
    results = [{"loss": value, "seconds": seconds, "images_per_second": forwarded / seconds} for value in epoch_losses]
    return results if isinstance(net, (list, tuple)) else results[0]


@torch.no_grad()
def accuracy(net: nn.Module, data: RealData, mean, std, device: torch.device, batch_size: int = 1000) -> float:
    """Top-1 accuracy (%) of `net` on every image of `data`."""
    net.to(device).eval()
    correct = 0
    for first in range(0, len(data), batch_size):
        x = normalise(data.images[first : first + batch_size].to(device).float() / 255, mean, std)
        correct += (net(x).argmax(1).cpu() == data.labels[first : first + batch_size]).sum().item()
    return 100.0 * correct / len(data)
