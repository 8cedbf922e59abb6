"""What a distillation method provides (`Method`), and the canvas machinery every method here shares.

A method owns learnable canvases (multi-formation: each decodes into factor x factor images), initialised
from random real images of each class. One `step()`:
1. the method's own draws (`draw`: a pool member and blend, frequencies, a fresh network; in this order, from the
   run's one generator, so a run is one seed's function);
2. a fresh random batch of real images of every class;
3. decode the canvases; one DSA draw per class, shared by that class's real and synthetic images (siamese);
4. per class, the method's `matching_loss` between the real and synthetic features of its `embed` network, plus,
   where the method has a `calibration_weight` and a pool, the trained member's cross-entropy on the synthetic images;
5. one backward of the summed loss, one optimiser step for all images (no class's step leaks momentum or weight
   decay into another's), clamp to [0, 1].

A subclass sets `Settings` (a dataclass of its own settings, each field made with `condense.flags.setting`, so
`condense distill --method NAME --help` lists them) and `uses_pool`, and implements `embed` and `matching_loss`;
it may extend `setup`, `draw`, `before_backward`, `after_step` and the state. Register it with
`condense.methods.register_method`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..augment import DSA
from ..data import RealData, normalise
from ..distributed import World
from ..errors import UserError
from ..formation import decode, decoded_labels, init_canvases
from ..synthetic import SyntheticSet, published_source
from ..train import make_optimizer


@dataclass
class NoSettings:
    """A method without settings of its own."""


class Method:
    """The state of one distillation run and its `step()`; `state_dict()` makes it resumable."""

    name = "method"  # set by register_method
    Settings: type = NoSettings
    uses_pool = True  # whether the run builds (or reuses) a pool of pretrained networks for it

    @classmethod
    def preset_settings(cls, preset: str):
        """The method's settings in the preset `preset` (the shared settings are the preset's): its defaults unless it says otherwise."""
        return cls.Settings()

    @classmethod
    def check(cls, config) -> None:
        """Refuse a combination of the shared settings and the method's own that cannot run (before any data is loaded)."""

    def __init__(self, config, real: RealData, pool, device: torch.device, classes=None, world: World | None = None):
        """Distil every class of `real`, or only `classes` (the others are never read).

        Under torchrun (`world`), every rank draws for all classes but computes only its shard.
        """
        if self.uses_pool and pool is None:
            raise ValueError(f"method {self.name} matches through a pool; pass one")
        self.config, self.settings, self.real, self.pool, self.device = config, config.method_settings, real, pool, device
        self.world = world or World()
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
        self.setup()
        self.optimizer = make_optimizer([self.canvases], config.optimizer, config.lr, config.weight_decay, config.momentum)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="min", factor=0.5, patience=config.plateau_patience)
        self.iteration = 0

    # What a method adds --------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """The method's own state, made once before the image optimiser."""

    def draw(self, generator: torch.Generator) -> dict:
        """This iteration's draws before the real batch (they load the `embed` network); returns figures to log."""
        return {}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features [N, d] that the method matches, of normalised images."""
        raise NotImplementedError

    def matching_loss(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        """Per class, the discrepancy of real features [classes, B, d] and synthetic features [classes, n, d]: [classes]."""
        raise NotImplementedError

    def before_backward(self, matching: torch.Tensor, real: torch.Tensor) -> None:
        """Called with the per-class matching loss before its backward (its graph is still there)."""

    def after_step(self) -> dict:
        """Called after the images' step (collective under torchrun); returns figures to log."""
        return {}

    def extra_state(self) -> dict:
        """The method's own resumable state."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # The shared machinery ------------------------------------------------------------------------------------------

    @property
    def calibration_weight(self) -> float:
        """The weight of the trained pool member's cross-entropy on the synthetic images (0 for a method without one)."""
        return getattr(self.settings, "calibration_weight", 0.0) if self.pool is not None else 0.0

    def start_from(self, canvases: torch.Tensor) -> None:
        """Start from these canvases of all classes (class-major, `ipc` per class) instead of the real images."""
        rows = torch.cat([torch.arange(c * self.config.ipc, (c + 1) * self.config.ipc) for c in self.classes])
        with torch.no_grad():
            self.canvases.copy_(canvases[rows].to(self.device))

    def all_canvases(self) -> torch.Tensor:
        """The canvases of all classes (ordered by class), each class's taken from the rank that owns it."""
        return self.world.merge_rows(self.canvases.detach(), len(self.classes))

    def step(self) -> dict:
        """One iteration, steps 1-5 of the module docstring; returns the logged figures.

        Every draw covers all classes (the same on every rank); the computation covers this rank's classes.
        """
        config, generator = self.config, self.generator
        drawn = self.draw(generator)  # 1
        real_indices = self.real.balanced_indices(config.real_batch, generator, self.classes)  # 2
        own_indices = real_indices.view(len(self.classes), config.real_batch)[self.own].flatten()
        real_images = normalise(self.real.floats(own_indices).to(self.device), self.real.mean, self.real.std)
        synthetic = normalise(decode(self.canvases[self.own_rows], config.factor), self.real.mean, self.real.std)  # 3
        draw = self.augment.draw(len(self.classes), *real_images.shape[2:], generator)
        synthetic = self.augment.apply(synthetic, draw, self.label_groups)
        real_sets = self._real_features(real_images, draw)
        self.optimizer.zero_grad(set_to_none=True)
        matching, calibration = self._backward(synthetic, real_sets)  # 4, and 5's backward
        self.optimizer.step()
        with torch.no_grad():
            self.canvases.clamp_(0, 1)
        broken_pixels = (~torch.isfinite(self.canvases[self.own_rows])).sum().float()
        matching, calibration, broken_pixels = self.world.all_reduce_sum(torch.stack([matching, calibration, broken_pixels]))
        loss = matching + self.calibration_weight * calibration
        figures = self.after_step()
        value, matching_value, calibration_value, broken = torch.stack([loss, matching, calibration, broken_pixels]).tolist()  # one host sync
        if not math.isfinite(value) or broken:
            raise UserError(f"the run diverged at iteration {self.iteration + 1} (the loss or the images are no longer finite); "
                            f"lower --lr (now {config.lr:g}) and start again")
        self.plateau.step(value)
        self.iteration += 1
        return {"iteration": self.iteration, "loss": value, "matching": matching_value, "calibration": calibration_value,
                "lr": self.optimizer.param_groups[0]["lr"], **drawn, "real_indices": real_indices, **figures}

    def _real_features(self, real_images: torch.Tensor, draw) -> torch.Tensor:
        """The embedding of the augmented real batches [own classes, real batch, d], one class's batch at a time."""
        batch = self.config.real_batch
        groups = torch.tensor(self.own).repeat_interleave(batch)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            features = torch.cat([self.embed(self.augment.apply(images, draw, group))
                                  for images, group in zip(real_images.split(batch), groups.split(batch))])
        return features.view(len(self.own), batch, -1)

    def _backward(self, synthetic: torch.Tensor, real_sets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Matching and calibration losses (summed over own classes), backpropagated into the canvases.

        The two networks each backpropagate into a detached copy of the augmented images and free their graph at once;
        one backward then carries the summed gradient through DSA and decoding (peak memory: one network's graph, not two).
        """
        own = len(self.own)
        augmented = synthetic.detach().requires_grad_(True)
        synthetic_features = self.embed(augmented)
        matching = self.matching_loss(real_sets, synthetic_features.view(own, -1, synthetic_features.shape[1]))
        self.before_backward(matching, real_sets)
        matching = matching.sum()
        matching.backward()
        calibration = torch.zeros((), device=self.device)
        if self.calibration_weight > 0:
            logits = self.pool.trained_net.grouped_logits(augmented, own)  # a class's logits as in one process (bit for bit)
            per_sample = F.cross_entropy(logits, self.labels, reduction="none")
            calibration = per_sample.view(own, -1).mean(1).sum()
            (self.calibration_weight * calibration).backward()
        synthetic.backward(augmented.grad)
        return matching.detach(), calibration.detach()

    def state_dict(self) -> dict:
        """The resumable state, with every class's canvases and optimiser moments taken from the rank that owns it."""
        optimizer = self.optimizer.state_dict()
        for key, value in optimizer["state"].get(0, {}).items():
            if torch.is_tensor(value) and value.shape == self.canvases.shape:
                optimizer["state"][0][key] = self.world.merge_rows(value, len(self.classes))
        return {"iteration": self.iteration, "canvases": self.all_canvases().cpu(), "optimizer": optimizer,
                "plateau": self.plateau.state_dict(), "generator": self.generator.get_state(), **self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = state["iteration"]
        with torch.no_grad():
            self.canvases.copy_(state["canvases"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.plateau.load_state_dict(state["plateau"])
        self.generator.set_state(state["generator"])
        self.load_extra_state(state)

    def synthetic_set(self):
        """The set as it stands (collective under torchrun: every rank gathers the canvases)."""
        return canvas_set(self.config, self.real, self.all_canvases().cpu(), self.canvas_labels, self.iteration)


class PoolMatcher(Method):
    """A method that matches through the pool: each iteration a member and a blend l·θ_init + (1 − l)·θ_trained (NCFM, DANCE)."""

    def setup(self) -> None:
        config, pool = self.config, self.pool
        if config.channels_last:
            pool.matcher.to(memory_format=torch.channels_last)
            pool.trained_net.to(memory_format=torch.channels_last)
        self.features = torch.compile(pool.matcher.features) if config.compile else pool.matcher.features

    def draw(self, generator: torch.Generator) -> dict:
        member, blend = self.pool.draw(generator)
        return {"member": member, "blend": blend}

    def network_features(self, x: torch.Tensor) -> torch.Tensor:
        """The blended matcher's features in float32 (channels-last if asked)."""
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.features(x).float()


def check_class_sizes(config, real: RealData, classes=None) -> None:
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


def canvas_set(config, real: RealData, canvases: torch.Tensor, canvas_labels: torch.Tensor, iterations_done: int) -> SyntheticSet:
    """The SyntheticSet of canvases distilled from `real` under `config`."""
    return SyntheticSet(
        images=decode(canvases, config.factor), labels=decoded_labels(canvas_labels, config.factor),
        canvases=canvases, class_names=list(real.class_names), mean=real.mean, std=real.std,
        method=config.method, **published_source(real), ipc=config.ipc, factor=config.factor,
        config={**published_settings(config, real), "iterations_done": iterations_done},
    )


def published_settings(config, real: RealData) -> dict:
    """`config` as a published set records it: the data, the pool folder, a teacher file and the set it started from by name,
    not by this machine's path."""
    settings = config.to_dict()
    named = {key: Path(settings[key]).name for key in ("pool_folder", "soft_labels", "init_from") if settings[key] and ("/" in settings[key] or Path(settings[key]).exists())}
    return {**settings, **named, "data": real.name}
