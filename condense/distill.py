"""NCFM distillation, the algorithm: `Distiller.step` is one min-max iteration over the canvases and the sampler ψ.

One iteration, for all classes at once (REFERENCE.md §1, with the published code's faults fixed):
1. draw a pool member and a blend l; the frozen matcher gets l·θ_init + (1 − l)·θ_trained;
2. draw K frequencies (Gaussian, or ψ's scale mixture);
3. draw a fresh random batch of real images of every class;
4. decode the canvases (multi-formation); one DSA draw per class, shared by that class's real and
   synthetic images;
5. per class: NCFD between L2-normalised matcher features of real and synthetic images (×300);
   plus calibration: cross-entropy of the trained member on the augmented synthetic images;
6. backward of the summed loss (each network into the augmented images, then once through DSA and
   decoding); ψ's gradients (of that loss, or of ψ's own objective) are negated (ascent); one optimiser
   step for the images (so no class's step leaks momentum or weight decay into another's), one for ψ;
   clamp to [0, 1].

The settings and presets are in `condense.config`; the job around the algorithm (data, pool, the loop,
soft labels, evaluation, the run folder) in `condense.run`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .augment import DSA
from .config import PRESETS, DistillConfig, preset
from .data import RealData, normalise
from .distributed import World
from .errors import UserError
from .formation import decode, decoded_labels, init_canvases
from .ncfd import ncfd
from .pool import Pool
from .sampler import GaussianSampler, ScaleMixtureSampler
from .synthetic import SyntheticSet, published_source
from .train import make_optimizer

__all__ = ["PRESETS", "DistillConfig", "Distiller", "canvas_set", "check_class_sizes", "initial_set", "preset"]


def check_class_sizes(config: DistillConfig, real: RealData, classes=None) -> None:
    """Every class to distil has the real images that initialisation and one real batch take."""
    smallest = min(len(real.by_class[c]) for c in (range(real.num_classes) if classes is None else classes))
    needed = config.ipc * config.factor**2
    if needed > smallest:
        raise UserError(
            f"IPC {config.ipc} with factor {config.factor} needs {needed} real images per class to initialise, "
            f"but the smallest class of {real.source} has {smallest}; lower --ipc or --factor"
        )
    if config.real_batch > smallest:
        raise UserError(f"--real-batch {config.real_batch} is larger than the smallest class ({smallest} images); lower it")


class Distiller:
    """The state of one distillation run and its `step()`; `state_dict()` makes it resumable."""

    def __init__(self, config: DistillConfig, real: RealData, pool: Pool, device: torch.device, classes=None, world: World | None = None):
        """Distil every class of `real`, or only `classes` (the others are never read).

        Under torchrun (`world`), every rank draws for all classes but computes only its shard.
        """
        self.config, self.real, self.pool, self.device, self.world = config, real, pool, device, world or World()
        self.classes = list(range(real.num_classes)) if classes is None else [int(c) for c in classes]
        if not self.classes or min(self.classes) < 0 or max(self.classes) >= real.num_classes:
            raise UserError(f"classes to distil must be among 0..{real.num_classes - 1}, got {self.classes}")
        if self.world.size > len(self.classes):
            raise UserError(f"{self.world.size} processes for {len(self.classes)} classes: start at most one process per class")
        check_class_sizes(config, real, self.classes)
        self.generator = torch.Generator().manual_seed(config.seed)
        canvases, self.canvas_labels = init_canvases(real, config.ipc, config.factor, self.generator, self.classes,
                                                     config.init_resize, config.init_images)
        self.canvases = canvases.to(device).requires_grad_(True)
        self.own = self.world.shard(len(self.classes))  # positions (in self.classes) this process matches and updates
        self.own_rows = torch.cat([torch.arange(p * config.ipc, (p + 1) * config.ipc) for p in self.own])
        self.label_groups = decoded_labels(torch.tensor(self.own).repeat_interleave(config.ipc), config.factor)  # CPU: DSA draw index per own image
        self.labels = decoded_labels(self.canvas_labels[self.own_rows], config.factor).to(device)
        self.augment = DSA(config.dsa, mode=config.dsa_mode)
        dim = pool.matcher.feature_dim
        if config.sampler == "learned":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.sampler = ScaleMixtureSampler(dim, config.frequencies, sigma_min=config.sigma_min, sigma_max=config.sigma_max)
            self.sampler.to(device)
            self.sampler_optimizer = torch.optim.Adam(self.sampler.parameters(), lr=config.sampler_lr)
        else:
            self.sampler, self.sampler_optimizer = GaussianSampler(dim, config.frequencies), None
        self.optimizer = make_optimizer([self.canvases], config.optimizer, config.lr, config.weight_decay, config.momentum)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="min", factor=0.5, patience=config.plateau_patience)
        self.iteration = 0
        if config.channels_last:
            pool.matcher.to(memory_format=torch.channels_last)
            pool.trained_net.to(memory_format=torch.channels_last)
        self.features = torch.compile(pool.matcher.features) if config.compile else pool.matcher.features

    def all_canvases(self) -> torch.Tensor:
        """The canvases of all classes (ordered by class), each class's taken from the rank that owns it."""
        return self.world.merge_rows(self.canvases.detach(), len(self.classes))

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.features(x).float(), dim=1)

    def sampler_lr(self) -> float:
        """ψ's cosine-annealed lr at this iteration, from the run's total (so a resume with more iterations continues it)."""
        return self.config.sampler_lr * (1 + math.cos(math.pi * self.iteration / max(1, self.config.iterations))) / 2

    def _psi_gradients(self, matching: torch.Tensor, real_sets: torch.Tensor, frequencies: torch.Tensor) -> tuple | None:
        """The gradients of ψ's own objective (`PSI_OBJECTIVES`, minus the σ penalty), or None where ψ ascends the matching loss."""
        config = self.config
        if self.sampler_optimizer is None or (config.psi_objective == "ncfd" and config.sigma_penalty == 0):
            return None
        objective = matching.sum()
        if config.psi_objective == "normalised":
            half = config.real_batch // 2
            noise = ncfd(real_sets[:, :half], real_sets[:, half : 2 * half], frequencies, config.alpha, config.phase)
            objective = (matching / (config.loss_scale * noise)).sum()
        objective = objective - config.sigma_penalty * self.sampler.log_scale_penalty() / self.world.size  # ranks sum ψ's gradients
        return torch.autograd.grad(objective, list(self.sampler.parameters()), retain_graph=True)

    def step(self) -> dict:
        """One min-max iteration, steps 1-6 of the module docstring; returns the logged figures.

        Every draw covers all classes (the same on every rank); the computation covers this rank's classes.
        """
        config, generator = self.config, self.generator
        member, blend = self.pool.draw(generator)  # 1
        frequencies = self.sampler(generator, self.device)  # 2
        real_indices = self.real.balanced_indices(config.real_batch, generator, self.classes)  # 3
        own_indices = real_indices.view(len(self.classes), config.real_batch)[self.own].flatten()
        real_images = normalise(self.real.floats(own_indices).to(self.device), self.real.mean, self.real.std)
        synthetic = normalise(decode(self.canvases[self.own_rows], config.factor), self.real.mean, self.real.std)  # 4
        draw = self.augment.draw(len(self.classes), *real_images.shape[2:], generator)
        synthetic = self.augment.apply(synthetic, draw, self.label_groups)
        real_sets = self._real_features(real_images, draw)
        self.optimizer.zero_grad(set_to_none=True)
        if self.sampler_optimizer is not None:
            self.sampler_optimizer.zero_grad(set_to_none=True)
        matching, calibration, psi_gradients = self._backward(synthetic, real_sets, frequencies)  # 5, and 6's backward
        self.optimizer.step()
        with torch.no_grad():
            self.canvases.clamp_(0, 1)
        broken_pixels = (~torch.isfinite(self.canvases[self.own_rows])).sum().float()
        matching, calibration, broken_pixels = self.world.all_reduce_sum(torch.stack([matching, calibration, broken_pixels]))
        loss = matching + config.calibration_weight * calibration
        psi_figures = self._ascend(psi_gradients)
        value, matching_value, calibration_value, broken = torch.stack([loss, matching, calibration, broken_pixels]).tolist()  # one host sync
        if not math.isfinite(value) or broken:
            raise UserError(f"the run diverged at iteration {self.iteration + 1} (the loss or the images are no longer finite); "
                            f"lower --lr (now {config.lr:g}) and start again")
        self.plateau.step(value)
        self.iteration += 1
        return {
            "iteration": self.iteration, "loss": value, "matching": matching_value, "calibration": calibration_value,
            "lr": self.optimizer.param_groups[0]["lr"], "member": member, "blend": blend,
            "real_indices": real_indices, **self.sampler.stats(), **psi_figures,
        }

    def _real_features(self, real_images: torch.Tensor, draw) -> torch.Tensor:
        """The matcher's features of the augmented real batches [own classes, real batch, d], one class's batch at a time."""
        batch = self.config.real_batch
        groups = torch.tensor(self.own).repeat_interleave(batch)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            features = torch.cat([self._forward_features(self.augment.apply(images, draw, group))
                                  for images, group in zip(real_images.split(batch), groups.split(batch))])
        return features.view(len(self.own), batch, -1)

    def _backward(self, synthetic: torch.Tensor, real_sets: torch.Tensor, frequencies: torch.Tensor) -> tuple:
        """Matching and calibration losses (summed over own classes), backpropagated into the canvases; and ψ's gradients.

        The two networks each backpropagate into a detached copy of the augmented images and free their graph at once;
        one backward then carries the summed gradient through DSA and decoding (peak memory: one network's graph, not two).
        """
        config, own = self.config, len(self.own)
        augmented = synthetic.detach().requires_grad_(True)
        synthetic_features = self._forward_features(augmented)
        matching = config.loss_scale * ncfd(real_sets, synthetic_features.view(own, -1, synthetic_features.shape[1]), frequencies,
                                            config.alpha, config.phase)
        psi_gradients = self._psi_gradients(matching, real_sets, frequencies)
        matching = matching.sum()
        matching.backward()
        calibration = torch.zeros((), device=self.device)
        if config.calibration_weight > 0:
            logits = self.pool.trained_net.grouped_logits(augmented, own)  # a class's logits as in one process (bit for bit)
            per_sample = F.cross_entropy(logits, self.labels, reduction="none")
            calibration = per_sample.view(own, -1).mean(1).sum()
            (config.calibration_weight * calibration).backward()
        synthetic.backward(augmented.grad)
        return matching.detach(), calibration.detach(), psi_gradients

    def _ascend(self, psi_gradients: tuple | None) -> dict:
        """ψ's step: ascent on the matching loss (its gradients negated) or on its own objective; its lr for the log."""
        if self.sampler_optimizer is None:
            return {}
        for parameter, gradient in zip(self.sampler.parameters(), psi_gradients or ()):
            parameter.grad = gradient  # psi ascends its own objective instead of the images' loss
        for parameter in self.sampler.parameters():
            if parameter.grad is not None:
                self.world.all_reduce_sum(parameter.grad)
        self.sampler.ascend()
        self.sampler_optimizer.param_groups[0]["lr"] = sampler_lr = self.sampler_lr()
        self.sampler_optimizer.step()
        return {"sampler_lr": sampler_lr}

    def state_dict(self) -> dict:
        """The resumable state, with every class's canvases and optimiser moments taken from the rank that owns it."""
        optimizer = self.optimizer.state_dict()
        for key, value in optimizer["state"].get(0, {}).items():
            if torch.is_tensor(value) and value.shape == self.canvases.shape:
                optimizer["state"][0][key] = self.world.merge_rows(value, len(self.classes))
        state = {
            "iteration": self.iteration, "canvases": self.all_canvases().cpu(), "optimizer": optimizer,
            "plateau": self.plateau.state_dict(), "generator": self.generator.get_state(),
        }
        if self.sampler_optimizer is not None:
            state.update(sampler=self.sampler.state_dict(), sampler_optimizer=self.sampler_optimizer.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.iteration = state["iteration"]
        with torch.no_grad():
            self.canvases.copy_(state["canvases"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.plateau.load_state_dict(state["plateau"])
        self.generator.set_state(state["generator"])
        if self.sampler_optimizer is not None:
            self.sampler.load_state_dict(state["sampler"])
            self.sampler_optimizer.load_state_dict(state["sampler_optimizer"])

    def synthetic_set(self) -> SyntheticSet:
        """The set as it stands (collective under torchrun: every rank gathers the canvases)."""
        return canvas_set(self.config, self.real, self.all_canvases().cpu(), self.canvas_labels, self.iteration)


def canvas_set(config: DistillConfig, real: RealData, canvases: torch.Tensor, canvas_labels: torch.Tensor, iterations_done: int) -> SyntheticSet:
    """The SyntheticSet of canvases distilled from `real` under `config`."""
    return SyntheticSet(
        images=decode(canvases, config.factor), labels=decoded_labels(canvas_labels, config.factor),
        canvases=canvases, class_names=list(real.class_names), mean=real.mean, std=real.std,
        method="ncfm", **published_source(real), ipc=config.ipc, factor=config.factor,
        config={**published_settings(config, real), "iterations_done": iterations_done},
    )


def published_settings(config: DistillConfig, real: RealData) -> dict:
    """`config` as a published set records it: the data, the pool folder and a teacher file by name, not by this machine's path."""
    settings = config.to_dict()
    named = {key: Path(settings[key]).name for key in ("pool_folder", "soft_labels") if settings[key] and ("/" in settings[key] or Path(settings[key]).exists())}
    return {**settings, **named, "data": real.name}


def initial_set(config: DistillConfig, real: RealData) -> SyntheticSet:
    """The set a run of `config` starts from (its 0-iteration set), without building a pool."""
    canvases, labels = init_canvases(real, config.ipc, config.factor, torch.Generator().manual_seed(config.seed),
                                     resize=config.init_resize, images=config.init_images)
    return canvas_set(config, real, canvases, labels, 0)
