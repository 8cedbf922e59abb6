"""NCFM distillation: the min-max loop over synthetic canvases and the frequency sampler ψ.

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
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import DSA, MATCHING_STRATEGY
from .data import RealData, normalise, source_identity
from .distributed import World
from .errors import UserError
from .evaluate import EVAL_PRESETS
from .formation import DEFAULT_RESIZE, INIT_IMAGES, RESIZE_MODES, decode, decoded_labels, init_canvases
from .ncfd import PHASES, ncfd
from .pool import POOL_TRAINING, Pool, PoolSpec
from .runtime import preset_copy
from .sampler import GaussianSampler, ScaleMixtureSampler, mixture_components
from .synthetic import SyntheticSet
from .train import make_optimizer


@dataclass
class DistillConfig:
    """Every setting of a distillation run (presets fill it; any field can be overridden)."""

    data: str = "uoft-cs/cifar10"
    data_config: str | None = None
    revision: str | None = None
    label_column: str | None = None
    image_column: str | None = None
    image_size: int | None = None
    split: str = "train"
    test_split: str = "test"
    memory_mapped: bool = False
    stream_per_class: int | None = None
    ipc: int = 10
    factor: int = 2
    init_images: str = "random"
    init_resize: str = DEFAULT_RESIZE

    net: str = "convnet"
    depth: int | None = None
    width: int = 128
    norm: str = "instance"
    act: str = "relu"
    pool: str = "avg"
    pool_size: int = 20
    pool_epochs: int = 60
    pool_folder: str | None = None
    pool_dsa: str = POOL_TRAINING.dsa
    pool_dsa_mode: str = POOL_TRAINING.dsa_mode
    batched_pool: bool = False  # measured slower on CPU; unmeasured on CUDA (benchmarks/paper_gpu.py turns it on)

    real_batch: int = 1024
    frequencies: int = 4096
    alpha: float = 0.5
    loss_scale: float = 300.0
    dsa: str = MATCHING_STRATEGY
    dsa_mode: str = "one"
    sampler: str = "learned"
    sampler_lr: float = 1e-3
    sigma_min: float = 0.1
    sigma_max: float = 10.0
    sigma_penalty: float = 0.0
    psi_objective: str = "ncfd"
    phase: str = "coupled"
    calibration_weight: float = 1.0

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.5
    iterations: int = 20000
    plateau_patience: int = 500

    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    soft_labels: str = "none"
    eval_preset: str = "paper"
    eval_runs: int | None = None
    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        """Refuse an impossible setting at once, before any data is loaded (from the command line or Python)."""
        for name, least in AT_LEAST.items():
            value = getattr(self, name)
            if value is not None and value < least:
                raise UserError(f"{flag(name)} must be at least {least}, got {value}")
        for name in POSITIVE + NOT_NEGATIVE:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (value == 0 and name in POSITIVE):
                raise UserError(f"{flag(name)} must be a finite number {'above' if name in POSITIVE else 'of at least'} 0, got {value}")
        if not 0 <= self.alpha <= 1:
            raise UserError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if self.init_images not in INIT_IMAGES or self.init_resize not in RESIZE_MODES:
            raise UserError(f"--init-images takes {' or '.join(INIT_IMAGES)} and --init-resize {', '.join(RESIZE_MODES)}; "
                            f"got {self.init_images!r} and {self.init_resize!r}")
        if self.sampler not in ("learned", "gaussian"):
            raise UserError(f"unknown sampler {self.sampler!r}; use learned or gaussian")
        DSA(self.dsa, mode=self.dsa_mode)  # unknown operations or modes: refused here, before any data is loaded
        if self.pool_dsa:
            DSA(self.pool_dsa, mode=self.pool_dsa_mode)
        if self.phase not in PHASES:
            raise UserError(f"--phase must be {' or '.join(PHASES)}, got {self.phase!r}")
        if self.psi_objective not in PSI_OBJECTIVES:
            raise UserError(f"--psi-objective must be {' or '.join(PSI_OBJECTIVES)}, got {self.psi_objective!r}")
        if self.sampler == "gaussian" and (self.sigma_penalty or self.psi_objective != "ncfd"):
            raise UserError("--sigma-penalty and --psi-objective shape what psi ascends; use them with --sampler learned")
        if self.psi_objective == "normalised" and self.real_batch < 2:
            raise UserError("--psi-objective normalised splits the real batch into two halves; use --real-batch 2 or more")
        if self.sampler == "learned":
            mixture_components(self.frequencies)
            if not self.sigma_min < 1 < self.sigma_max:
                raise UserError(f"psi starts at scale 1: --sigma-min ({self.sigma_min}) must be below 1 and --sigma-max ({self.sigma_max}) above 1")

    def net_options(self) -> dict:
        options = {"depth": self.depth, "width": self.width, "norm": self.norm, "act": self.act, "pool": self.pool}
        return {k: v for k, v in options.items() if v is not None} if self.net == "convnet" else {"norm": self.norm}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The smallest value of every counted setting (None, where a setting allows it, means its default).
AT_LEAST = {"ipc": 1, "factor": 1, "depth": 1, "width": 1, "image_size": 1, "stream_per_class": 1, "pool_size": 1, "pool_epochs": 1,
            "real_batch": 1, "frequencies": 1, "iterations": 0, "plateau_patience": 0, "checkpoint_every": 1, "log_every": 1, "eval_runs": 0}
POSITIVE = ("lr", "sampler_lr", "sigma_min", "sigma_max", "loss_scale")
NOT_NEGATIVE = ("weight_decay", "momentum", "calibration_weight", "sigma_penalty")
PSI_OBJECTIVES = {
    "ncfd": "the matching loss itself (the paper's min-max)",
    "normalised": "per class, NCFD(real, synthetic) / NCFD(two disjoint halves of the real batch): psi cannot win by chasing sampling noise",
}


def flag(name: str) -> str:
    """The command-line flag of a DistillConfig field."""
    return "--" + name.replace("_", "-")


# One line of `condense distill --help` per setting (a test checks that every field has one).
SETTING_HELP = {
    "data": "Hub id (uoft-cs/cifar10) or local folder in Hub layout",
    "data_config": "the dataset's config name, if it has several",
    "revision": "Hub revision (branch, tag or commit) of the dataset; recorded in the set",
    "label_column": "class-label column (default: the only ClassLabel column)",
    "image_column": "image column (default: the only Image column)",
    "image_size": "resize images to N x N (needed when sizes differ)",
    "split": "split to condense",
    "test_split": "split to evaluate on",
    "memory_mapped": "leave the decoded train split in the Arrow cache on disk; batches read only their rows",
    "stream_per_class": "stream the splits (nothing downloaded or cached in full) and keep N random train images per class",
    "ipc": "stored images (canvases) per class",
    "factor": "multi-formation: each canvas decodes into factor x factor images",
    "init_images": "real images that initialise the canvases: random or first (each class's first, as the published code)",
    "init_resize": "how a real image is downsized into its canvas tile: " + ", ".join(RESIZE_MODES) + " (as the published code: nearest)",
    "net": "matcher network: convnet, alexnet, vgg11 or resnet18",
    "depth": "ConvNet depth (default: 3 at 32 px, 4 at 64, 5 at 128)",
    "width": "ConvNet width",
    "norm": "normalisation: none, batch, layer, instance or group",
    "act": "ConvNet activation: sigmoid, relu or leakyrelu",
    "pool": "ConvNet pooling: none, max or avg",
    "pool_size": "pretrained matchers in the pool",
    "pool_epochs": "epochs of each matcher's pretraining",
    "pool_folder": "where the pool is kept and reused (default pools/<data>-<net>-<size>x<epochs>ep-<hash>)",
    "pool_dsa": "per-sample DSA operations joined by _ in the pool's pretraining",
    "pool_dsa_mode": "DSA mode of the pool's pretraining: one (one random operation per image) or all (every operation)",
    "batched_pool": "train the pool's missing members at once (stacked weights, one vectorised forward); the same members to floating-point tolerance",
    "real_batch": "real images per class drawn every iteration (at most the smallest class; CIFAR-100 presets: 500, the whole class)",
    "frequencies": "frequencies of the characteristic functions per iteration",
    "alpha": "NCFD weights: alpha on the amplitude term, 1 - alpha on the phase term",
    "loss_scale": "factor on the matching loss",
    "dsa": "DSA operations joined by _ applied to real and synthetic images alike",
    "dsa_mode": "one (one random operation per class and iteration, DSA's convention) or all (every operation, as the published code's matching)",
    "sampler": "frequency sampler: learned (psi, trained by ascent) or gaussian",
    "sampler_lr": "learning rate of psi",
    "sigma_min": "smallest scale of psi's mixture",
    "sigma_max": "largest scale of psi's mixture",
    "sigma_penalty": "weight of a penalty on psi's scales, mean (log sigma)^2: psi ascends its objective minus it",
    "psi_objective": "what psi ascends: " + "; ".join(f"{k}: {v}" for k, v in PSI_OBJECTIVES.items()),
    "phase": "NCFD phase term: coupled (the paper's, weighted by the two moduli) or decoupled (unit phasors: phase errors count where the CFs are small)",
    "calibration_weight": "weight of the trained matcher's cross-entropy on the synthetic images",
    "optimizer": "optimiser of the images: adamw or sgd",
    "lr": "learning rate of the images (1e-2 is better than the preset's 1e-3 on CIFAR-10 CPU; see README)",
    "weight_decay": "weight decay of the images' optimiser",
    "momentum": "momentum (sgd)",
    "iterations": "iterations in all (a resumed run continues up to this)",
    "plateau_patience": "iterations without a lower loss before the image learning rate is halved",
    "seed": "seed of every random draw",
    "checkpoint_every": "iterations between checkpoints (what --resume continues from)",
    "log_every": "iterations between lines of log.jsonl",
    "soft_labels": "none, pool (the first trained pool member), ensemble (all the pool's trained members) or a network file of any pool: the teacher",
    "eval_preset": "evaluation protocol after distillation: " + ", ".join(EVAL_PRESETS) + " (BENCHMARKS.md)",
    "eval_runs": "evaluation runs (0: no evaluation; default: the preset's)",
    "amp": "bf16 autocast for the real-image forward passes (GPU)",
    "channels_last": "channels-last memory format (GPU)",
    "compile": "torch.compile the matcher's feature extractor (GPU)",
}


# BENCHMARKS.md: the CPU presets match with 1024 Gaussian frequencies (the paper presets with ψ).
_CPU = {"width": 64, "pool_size": 2, "pool_epochs": 1, "real_batch": 128, "frequencies": 1024, "sampler": "gaussian", "iterations": 200,
        "eval_preset": "cpu", "checkpoint_every": 50}
PRESETS: dict[str, DistillConfig] = {
    "cifar10-ipc10-cpu": DistillConfig(data="uoft-cs/cifar10", ipc=10, **_CPU),
    "mnist-ipc10-cpu": DistillConfig(data="ylecun/mnist", ipc=10, **_CPU),
    **{f"cifar10-ipc{ipc}": DistillConfig(data="uoft-cs/cifar10", ipc=ipc) for ipc in (1, 10, 50)},
    **{
        # a CIFAR-100 class has 500 training images: the real side is all of them, as in the published code
        f"cifar100-ipc{ipc}": DistillConfig(
            data="uoft-cs/cifar100", label_column="fine_label", ipc=ipc, real_batch=500,
            **({"optimizer": "sgd", "lr": 0.01, "momentum": 0.5} if ipc == 10 else {}),
        )
        for ipc in (1, 10, 50)
    },
}


def preset(name: str) -> DistillConfig:
    return preset_copy(PRESETS, name, "distillation")


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
        """One min-max iteration; returns the logged figures."""
        config, real, generator = self.config, self.real, self.generator
        # every draw covers all classes (the same on every rank); the computation covers this rank's classes
        classes, own = len(self.classes), len(self.own)
        member, blend = self.pool.draw(generator)
        frequencies = self.sampler(generator, self.device)
        real_indices = real.balanced_indices(config.real_batch, generator, self.classes)
        own_indices = real_indices.view(classes, config.real_batch)[self.own].flatten()
        real_images = normalise(real.floats(own_indices).to(self.device), real.mean, real.std)
        synthetic = normalise(decode(self.canvases[self.own_rows], config.factor), real.mean, real.std)
        per_class = len(synthetic) // own
        draw = self.augment.draw(classes, *real_images.shape[2:], generator)
        real_groups = torch.tensor(self.own).repeat_interleave(config.real_batch)
        synthetic = self.augment.apply(synthetic, draw, self.label_groups)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=config.amp):
            real_features = torch.cat([  # class by class: activations of one class's batch at a time
                self._forward_features(self.augment.apply(images, draw, groups))
                for images, groups in zip(real_images.split(config.real_batch), real_groups.split(config.real_batch))
            ])
        self.optimizer.zero_grad(set_to_none=True)
        if self.sampler_optimizer is not None:
            self.sampler_optimizer.zero_grad(set_to_none=True)
        # The matching and calibration networks each backpropagate into a detached copy of the augmented
        # images and free their graph at once; one backward then carries the summed gradient through
        # DSA and decoding into the canvases (peak memory: one network's graph, not two).
        augmented = synthetic.detach().requires_grad_(True)
        synthetic_features = self._forward_features(augmented)
        real_sets = real_features.view(own, config.real_batch, -1)
        matching = config.loss_scale * ncfd(real_sets, synthetic_features.view(own, per_class, -1), frequencies, config.alpha, config.phase)
        matching_total = matching.sum()
        psi_gradients = self._psi_gradients(matching, real_sets, frequencies)
        matching_total.backward()
        calibration = torch.zeros((), device=self.device)
        if config.calibration_weight > 0:
            per_sample = F.cross_entropy(self.pool.trained_net(augmented), self.labels, reduction="none")
            calibration = per_sample.view(own, per_class).mean(1).sum()
            (config.calibration_weight * calibration).backward()
        synthetic.backward(augmented.grad)
        self.optimizer.step()
        with torch.no_grad():
            self.canvases.clamp_(0, 1)
        broken_pixels = (~torch.isfinite(self.canvases[self.own_rows])).sum().float()
        matching_total, calibration, broken_pixels = self.world.all_reduce_sum(
            torch.stack([matching_total.detach(), calibration.detach(), broken_pixels]))
        loss = matching_total + config.calibration_weight * calibration
        if self.sampler_optimizer is not None:
            for parameter, gradient in zip(self.sampler.parameters(), psi_gradients or ()):
                parameter.grad = gradient  # psi ascends its own objective instead of the images' loss
            for parameter in self.sampler.parameters():
                if parameter.grad is not None:
                    self.world.all_reduce_sum(parameter.grad)
            self.sampler.ascend()
            self.sampler_optimizer.param_groups[0]["lr"] = sampler_lr = self.sampler_lr()
            self.sampler_optimizer.step()
        value, matching_value, calibration_value, broken = torch.stack([loss, matching_total, calibration, broken_pixels]).tolist()  # one host sync
        if not math.isfinite(value) or broken:
            raise UserError(f"the run diverged at iteration {self.iteration + 1} (the loss or the images are no longer finite); "
                            f"lower --lr (now {config.lr:g}) and start again")
        self.plateau.step(value)
        self.iteration += 1
        return {
            "iteration": self.iteration, "loss": value, "matching": matching_value, "calibration": calibration_value,
            "lr": self.optimizer.param_groups[0]["lr"], "member": member, "blend": blend,
            "real_indices": real_indices, **self.sampler.stats(),
            **({"sampler_lr": sampler_lr} if self.sampler_optimizer is not None else {}),
        }

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
        method="ncfm", source_dataset=real.source, source_revision=real.revision, ipc=config.ipc,
        factor=config.factor, config={**config.to_dict(), "iterations_done": iterations_done},
    )


def initial_set(config: DistillConfig, real: RealData) -> SyntheticSet:
    """The set a run of `config` starts from (its 0-iteration set), without building a pool."""
    canvases, labels = init_canvases(real, config.ipc, config.factor, torch.Generator().manual_seed(config.seed),
                                     resize=config.init_resize, images=config.init_images)
    return canvas_set(config, real, canvases, labels, 0)


def pool_spec(config: DistillConfig, real: RealData) -> PoolSpec:
    training = dataclasses.replace(POOL_TRAINING, epochs=config.pool_epochs, dsa=config.pool_dsa, dsa_mode=config.pool_dsa_mode).to_dict()
    dataset = real.source if real.revision is None else f"{real.source}@{real.revision}"  # another revision, other data
    return PoolSpec(dataset, real.split, real.num_classes, real.channels, real.image_size, config.net, config.net_options(), training, config.seed)


@torch.no_grad()
def teacher_soft_labels(teacher: torch.nn.Module, images: torch.Tensor, mean, std, device, batch_size: int = 500) -> torch.Tensor:
    """Teacher probabilities on the decoded images (float32 [N,K])."""
    teacher.eval()
    chunks = [torch.softmax(teacher(normalise(images[i : i + batch_size].to(device), mean, std)).float(), 1).cpu()
              for i in range(0, len(images), batch_size)]
    probabilities = torch.cat(chunks)
    if not torch.isfinite(probabilities).all():
        raise UserError("the teacher's outputs are not finite (NaN or inf): its weights are broken; pass another --soft-labels file or pool")
    return probabilities


def check_teacher(path: str, real: RealData, device: torch.device) -> None:
    """A --soft-labels file fits the data (classes, channels, image size) and gives finite outputs on real images."""
    from .pool import load_member, member_spec

    spec = member_spec(path)
    theirs, ours = (spec.num_classes, spec.channels, tuple(spec.image_size)), (real.num_classes, real.channels, real.image_size)
    if theirs != ours:
        describe = "{} classes, {} channels, {}x{} images".format
        raise UserError(f"--soft-labels {path}: the teacher is for {describe(*theirs[:2], *theirs[2])} ({spec.dataset}), "
                        f"but {real.source} has {describe(*ours[:2], *ours[2])}; pass a member file of a pool trained on this data")
    teacher_soft_labels(load_member(path, device), real.floats(torch.arange(min(len(real), 64))), real.mean, real.std, device)


def read_log(path: Path) -> list[dict]:
    """The records of a log.jsonl; a torn last line (what a kill during a write leaves, past the checkpoint) is dropped."""
    problem = f"{path} is damaged; delete it to resume without the earlier log lines, or start the run again"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{problem} (not UTF-8: {exc})") from exc
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise UserError(f"{problem} (line {number} is not JSON)") from None
        if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
            raise UserError(f"{problem} (line {number} has no iteration)")
        records.append(record)
    return records


class RunLog:
    """The JSONL log of a run; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int):
        self.path = path
        records = read_log(path) if path.exists() and keep_until > 0 else []
        kept = [json.dumps(record) for record in records if record["iteration"] <= keep_until]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def run_distillation(distiller: Distiller, out: Path, progress: bool = True) -> list[float]:
    """Iterate to `config.iterations`, logging, checkpointing atomically; returns seconds per iteration.

    Every rank steps and gathers the checkpoint state; only rank 0 writes the log and the checkpoint.
    """
    config, main = distiller.config, distiller.world.is_main
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / "log.jsonl", distiller.iteration) if main else None
    seconds = []
    bar = tqdm(total=config.iterations, initial=distiller.iteration, desc="distilling", disable=not (progress and main), unit="it")
    while distiller.iteration < config.iterations:
        start = time.perf_counter()
        record = distiller.step()
        seconds.append(time.perf_counter() - start)
        record.pop("real_indices")
        if main and (distiller.iteration % config.log_every == 0 or distiller.iteration == config.iterations):
            log.write({**record, "seconds": seconds[-1]})
        bar.set_postfix(loss=f"{record['loss']:.2f}", calib=f"{record['calibration']:.2f}")
        bar.update(1)
        if distiller.iteration % config.checkpoint_every == 0 or distiller.iteration == config.iterations:
            save_checkpoint(distiller, out / "checkpoint.pt")  # collective under torchrun: every rank gathers
    bar.close()
    return seconds


CHECKPOINT_KEYS = {"iteration", "canvases", "optimizer", "plateau", "generator"}


def save_checkpoint(distiller: Distiller, path: Path) -> None:
    state = distiller.state_dict()
    if distiller.world.is_main:
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        tmp.replace(path)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's state, read without unpickling anything but tensors and plain values."""
    import pickle

    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}; start without --resume")
    refusal = f"--resume: cannot resume from {path}: {{}}; delete it to start the run again without --resume"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(refusal.format("it holds something other than tensors and plain values, which is never loaded")) from exc
    except Exception as exc:  # a truncated or damaged file: torch raises RuntimeError, EOFError and others
        first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UserError(refusal.format(f"it is damaged ({type(exc).__name__}: {first_line})")) from exc
    if not (isinstance(state, dict) and set(state) >= CHECKPOINT_KEYS):
        raise UserError(refusal.format("it is not a checkpoint of `condense distill`"))
    return state


def load_checkpoint(distiller: Distiller, path: Path, state: dict | None = None) -> None:
    """Continue from the checkpoint at `path` (`state`: its content, if already read by `read_checkpoint`)."""
    try:
        distiller.load_state_dict(read_checkpoint(path) if state is None else state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # tensors or optimiser state of another run's shape
        raise UserError(f"--resume: {path} does not fit this run ({type(exc).__name__}: {str(exc)[:200]}); "
                        "delete it to start the run again without --resume") from exc


def pool_folder_for(config: DistillConfig, spec: PoolSpec) -> Path:
    if config.pool_folder:
        return Path(config.pool_folder)
    import hashlib

    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    name = Path(spec.dataset.rstrip("/")).name
    return Path("pools") / f"{name}-{spec.net}-{config.pool_size}x{config.pool_epochs}ep-{digest}"


# A resume may change these: run longer, hold the data another way, fix the teacher of the soft labels, train the
# pool's missing members at once or one by one (the same weights to float tolerance).
RESUMABLE_CHANGES = ("iterations", "memory_mapped", "soft_labels", "batched_pool")
RUN_LOCK = ".lock"


def _check_run_folder(out: Path, config: DistillConfig, resume: bool) -> None:
    saved = out / "config.json"
    if resume:
        if not saved.is_file():
            raise UserError(f"--resume: {out} holds no run (no config.json); start without --resume")
        try:
            previous = json.loads(saved.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"--resume: {saved} is damaged ({exc}); restore it, or start the run again in another --out") from exc
        if not isinstance(previous, dict):
            raise UserError(f"--resume: {saved} is not the settings of a run; restore it, or start the run again in another --out")
        now = {**config.to_dict(), "data": source_identity(config.data)}  # ../data and /abs/data are one folder
        previous = {**previous, "data": previous.get("resolved_data", previous.get("data"))}
        defaults = {f.name: f.default for f in dataclasses.fields(DistillConfig)}  # a setting added since the run: its default then
        changed = sorted(k for k, v in now.items() if previous.get(k, defaults[k]) != v and k not in RESUMABLE_CHANGES)
        if changed:
            raise UserError(f"--resume: settings differ from the run in {out} ({', '.join(changed)}); resume with the same settings")
    elif (out / "checkpoint.pt").exists() or (out / "synthetic.safetensors").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


@contextmanager
def claim_run_folder(out: Path, world: World):
    """Hold an exclusive lock on the run folder for the whole run (rank 0 holds it under torchrun).

    A second run into the same folder is refused at once; the lock dies with its process, so a killed run can be resumed.
    """
    from filelock import FileLock, Timeout

    lock = None
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(out / RUN_LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            lock = None
    if not world.gather_json(lock is not None)[0]:  # every rank learns whether rank 0 holds it
        raise UserError(f"another run is writing into {out} (it holds {out / RUN_LOCK}); wait for it to end or choose another --out")
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def prepare(config: DistillConfig, device: torch.device, progress: bool = True, world: World | None = None,
            check_data=None) -> tuple[RealData, RealData, Pool, Path]:
    """Load the train and test splits and build (or reuse) the extractor pool.

    `check_data(real)` runs between the two, so that a run that cannot start trains no pool.
    Under torchrun rank 0 loads first (it fills `datasets`' cache the others then read) and the
    ranks train the pool's missing members together.
    """
    from .pool import build_or_load_pool

    world = world or World()
    real, test = world.main_first(lambda: load_splits(config))
    if check_data is not None:
        check_data(real)
    spec = pool_spec(config, real)
    folder = pool_folder_for(config, spec)
    return real, test, build_or_load_pool(folder, spec, config.pool_size, real, test, device, progress and world.is_main, world,
                                         batched=config.batched_pool), folder


def load_splits(config: DistillConfig) -> tuple[RealData, RealData]:
    """The train split (memory-mapped, or streamed into per-class reservoirs, as the config says) and the test split
    (streamed whole when the train split is streamed)."""
    from .cli import load_data

    test_options = {"data_config": config.data_config, "revision": config.revision, "image_column": config.image_column, "label_column": config.label_column,
                    "image_size": config.image_size, "streaming": config.stream_per_class is not None}
    train_options = {**test_options, "memory_mapped": config.memory_mapped, "per_class": config.stream_per_class, "seed": config.seed}
    return load_data(config.data, config.split, train_options), load_data(config.data, config.test_split, test_options)


def distill(config: DistillConfig, out: str | Path, device: torch.device, resume: bool = False, progress: bool = True) -> dict:
    """The whole job: data, pool, min-max loop, soft labels, evaluation; writes the run folder.

    Folder: config.json (resolved settings), log.jsonl, checkpoint.pt, synthetic.safetensors,
    preview.png and eval.json. The set file appears only once everything before it succeeded.
    Under torchrun the classes are sharded across ranks (see `condense.distributed`), the ranks
    train the pool's missing members and the evaluation runs together, and rank 0 alone writes.
    """
    from .distributed import init_world, local_device
    from .evaluate import eval_preset, evaluate_set, evaluation_summary, load_teacher
    from .pool import member_spec
    from .runtime import write_json

    out = Path(out)
    teacher_file = config.soft_labels not in ("none", "pool", "ensemble")
    if teacher_file:
        member_spec(config.soft_labels)  # readable, and a pool member: checked before anything is loaded
    eval_config = eval_preset(config.eval_preset)
    device = local_device(device)
    world = init_world(device)
    with claim_run_folder(out, world):
        _check_run_folder(out, config, resume)
        checkpoint = read_checkpoint(out / "checkpoint.pt") if resume else None
        world.barrier()  # every rank has seen the folder as it was before rank 0 writes into it

        def check_data(real: RealData) -> None:
            check_class_sizes(config, real)
            if teacher_file:
                check_teacher(config.soft_labels, real, device)

        real, test, pool, pool_folder = prepare(config, device, progress, world, check_data)
        distiller = Distiller(config, real, pool, device, world=world)
        if resume:
            load_checkpoint(distiller, out / "checkpoint.pt", checkpoint)
        if world.is_main:
            write_json(out / "config.json", {**config.to_dict(), "resolved_data": real.source, "resolved_pool_folder": str(pool_folder)})
        seconds = run_distillation(distiller, out, progress)
        synthetic = distiller.synthetic_set()  # collective under torchrun: gathers every rank's classes
        if config.soft_labels != "none":  # stored for users of the file; evaluation asks the teacher on each augmented batch
            eval_config.teacher = {"pool": str(pool_folder / "member-000-trained.safetensors"), "ensemble": str(pool_folder)}.get(
                config.soft_labels, config.soft_labels)
            synthetic.soft_labels = teacher_soft_labels(load_teacher(eval_config.teacher, device), synthetic.images, real.mean, real.std, device)
        evaluation = {}
        if config.eval_runs != 0:
            if config.eval_runs is not None:
                eval_config.runs = config.eval_runs
            evaluation = evaluate_set(synthetic, test, eval_config, device, progress and world.is_main, world)
            synthetic.evaluation = evaluation_summary(evaluation)
        if world.is_main:  # the set first: a run folder with eval.json or preview.png also has its set
            synthetic.save(out / "synthetic.safetensors")
            synthetic.save_preview(out / "preview.png")
            if evaluation:
                write_json(out / "eval.json", evaluation)
        return {"set": synthetic, "seconds_per_iteration": seconds, "evaluation": evaluation, "out": out}
