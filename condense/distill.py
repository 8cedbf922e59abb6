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
   decoding); ψ's gradients are negated (ascent); one optimiser step for the images (so no class's
   step leaks momentum or weight decay into another's), one for ψ; clamp to [0, 1].
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import DSA, MATCHING_STRATEGY
from .data import RealData, normalise
from .distributed import World
from .errors import UserError
from .formation import decode, decoded_labels, init_canvases
from .ncfd import ncfd
from .pool import POOL_TRAINING, Pool, PoolSpec
from .runtime import preset_copy
from .sampler import GaussianSampler, ScaleMixtureSampler
from .synthetic import SyntheticSet
from .train import make_optimizer


@dataclass
class DistillConfig:
    """Every setting of a distillation run (presets fill it; any field can be overridden)."""

    data: str = "uoft-cs/cifar10"
    data_config: str | None = None
    label_column: str | None = None
    image_column: str | None = None
    image_size: int | None = None
    split: str = "train"
    test_split: str = "test"
    memory_mapped: bool = False
    stream_per_class: int | None = None
    ipc: int = 10
    factor: int = 2

    net: str = "convnet"
    depth: int | None = None
    width: int = 128
    norm: str = "instance"
    act: str = "relu"
    pool: str = "avg"
    pool_size: int = 20
    pool_epochs: int = 60
    pool_folder: str | None = None

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

    def net_options(self) -> dict:
        options = {"depth": self.depth, "width": self.width, "norm": self.norm, "act": self.act, "pool": self.pool}
        return {k: v for k, v in options.items() if v is not None} if self.net == "convnet" else {"norm": self.norm}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# One line of `condense distill --help` per setting (a test checks that every field has one).
SETTING_HELP = {
    "data": "Hub id (uoft-cs/cifar10) or local folder in Hub layout",
    "data_config": "the dataset's config name, if it has several",
    "label_column": "class-label column (default: the only ClassLabel column)",
    "image_column": "image column (default: the only Image column)",
    "image_size": "resize images to N x N (needed when sizes differ)",
    "split": "split to condense",
    "test_split": "split to evaluate on",
    "memory_mapped": "leave the decoded train split in the Arrow cache on disk; batches read only their rows",
    "stream_per_class": "stream the splits (nothing downloaded or cached in full) and keep N random train images per class",
    "ipc": "stored images (canvases) per class",
    "factor": "multi-formation: each canvas decodes into factor x factor images",
    "net": "matcher network: convnet, alexnet, vgg11 or resnet18",
    "depth": "ConvNet depth (default: 3 at 32 px, 4 at 64, 5 at 128)",
    "width": "ConvNet width",
    "norm": "normalisation: none, batch, layer, instance or group",
    "act": "ConvNet activation: sigmoid, relu or leakyrelu",
    "pool": "ConvNet pooling: none, max or avg",
    "pool_size": "pretrained matchers in the pool",
    "pool_epochs": "epochs of each matcher's pretraining",
    "pool_folder": "where the pool is kept and reused (default pools/<data>-<net>-<size>x<epochs>ep-<hash>)",
    "real_batch": "real images per class drawn every iteration (at most the smallest class; CIFAR-100 presets: 500, the whole class)",
    "frequencies": "frequencies of the characteristic functions per iteration",
    "alpha": "NCFD weights: alpha on the amplitude term, 1 - alpha on the phase term",
    "loss_scale": "factor on the matching loss",
    "dsa": "DSA operations joined by _ applied to real and synthetic images alike",
    "dsa_mode": "one (one random operation per class and iteration, DSA's convention) or all",
    "sampler": "frequency sampler: learned (psi, trained by ascent) or gaussian",
    "sampler_lr": "learning rate of psi",
    "sigma_min": "smallest scale of psi's mixture",
    "sigma_max": "largest scale of psi's mixture",
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
    "soft_labels": "none, pool (the first trained pool member) or a network file of any pool: the teacher",
    "eval_preset": "evaluation protocol after distillation: cpu or paper",
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
        needed = config.ipc * config.factor**2
        smallest = min(len(real.by_class[c]) for c in self.classes)
        if needed > smallest:
            raise UserError(
                f"IPC {config.ipc} with factor {config.factor} needs {needed} real images per class to initialise, "
                f"but the smallest class of {real.source} has {smallest}; lower --ipc or --factor"
            )
        if config.real_batch > smallest:
            raise UserError(f"--real-batch {config.real_batch} is larger than the smallest class ({smallest} images); lower it")
        self.generator = torch.Generator().manual_seed(config.seed)
        canvases, self.canvas_labels = init_canvases(real, config.ipc, config.factor, self.generator, self.classes)
        self.canvases = canvases.to(device).requires_grad_(True)
        self.own = self.world.shard(len(self.classes))  # positions (in self.classes) this process matches and updates
        self.own_rows = torch.cat([torch.arange(p * config.ipc, (p + 1) * config.ipc) for p in self.own])
        self.label_groups = decoded_labels(torch.tensor(self.own).repeat_interleave(config.ipc), config.factor)  # CPU: DSA draw index per own image
        self.image_labels = decoded_labels(self.canvas_labels, config.factor)  # CPU: class of every decoded image
        self.labels = decoded_labels(self.canvas_labels[self.own_rows], config.factor).to(device)
        self.augment = DSA(config.dsa, mode=config.dsa_mode)
        dim = pool.matcher.feature_dim
        if config.sampler == "learned":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.sampler = ScaleMixtureSampler(dim, config.frequencies, sigma_min=config.sigma_min, sigma_max=config.sigma_max)
            self.sampler.to(device)
            self.sampler_optimizer = torch.optim.Adam(self.sampler.parameters(), lr=config.sampler_lr)
        elif config.sampler == "gaussian":
            self.sampler, self.sampler_optimizer = GaussianSampler(dim, config.frequencies), None
        else:
            raise UserError(f"unknown sampler {config.sampler!r}; use learned or gaussian")
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
        matching = config.loss_scale * ncfd(
            real_features.view(own, config.real_batch, -1), synthetic_features.view(own, per_class, -1), frequencies, config.alpha
        )
        matching_total = matching.sum()
        matching_total.backward()
        calibration = torch.zeros((), device=self.device)
        if config.calibration_weight > 0:
            per_sample = F.cross_entropy(self.pool.trained_net(augmented), self.labels, reduction="none")
            calibration = per_sample.view(own, per_class).mean(1).sum()
            (config.calibration_weight * calibration).backward()
        synthetic.backward(augmented.grad)
        matching_total, calibration = self.world.all_reduce_sum(torch.stack([matching_total.detach(), calibration.detach()]))
        loss = matching_total + config.calibration_weight * calibration
        self.optimizer.step()
        if self.sampler_optimizer is not None:
            for parameter in self.sampler.parameters():
                if parameter.grad is not None:
                    self.world.all_reduce_sum(parameter.grad)
            self.sampler.ascend()
            self.sampler_optimizer.param_groups[0]["lr"] = sampler_lr = self.sampler_lr()
            self.sampler_optimizer.step()
        with torch.no_grad():
            self.canvases.clamp_(0, 1)
        value = loss.item()
        if math.isnan(value):
            raise UserError(f"the loss became NaN at iteration {self.iteration + 1}; lower --lr or check the data")
        self.plateau.step(value)
        self.iteration += 1
        return {
            "iteration": self.iteration, "loss": value, "matching": matching_total.item(), "calibration": calibration.item(),
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
        real, canvases = self.real, self.all_canvases().cpu()
        return SyntheticSet(
            images=decode(canvases, self.config.factor), labels=self.image_labels.clone(),
            canvases=canvases, class_names=list(real.class_names), mean=real.mean, std=real.std,
            method="ncfm", source_dataset=real.source, source_revision=real.revision, ipc=self.config.ipc,
            factor=self.config.factor, config={**self.config.to_dict(), "iterations_done": self.iteration},
        )


def pool_spec(config: DistillConfig, real: RealData) -> PoolSpec:
    training = dataclasses.replace(POOL_TRAINING, epochs=config.pool_epochs).to_dict()
    return PoolSpec(real.source, real.split, real.num_classes, real.channels, real.image_size, config.net, config.net_options(), training, config.seed)


@torch.no_grad()
def teacher_soft_labels(teacher: torch.nn.Module, images: torch.Tensor, mean, std, device, batch_size: int = 500) -> torch.Tensor:
    """Teacher probabilities on the decoded images (float32 [N,K])."""
    teacher.eval()
    chunks = [torch.softmax(teacher(normalise(images[i : i + batch_size].to(device), mean, std)).float(), 1).cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


class RunLog:
    """The JSONL log of a run; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int):
        self.path = path
        lines = path.read_text().splitlines() if path.exists() and keep_until > 0 else []
        kept = [line for line in lines if json.loads(line)["iteration"] <= keep_until]
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


def save_checkpoint(distiller: Distiller, path: Path) -> None:
    state = distiller.state_dict()
    if distiller.world.is_main:
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        tmp.replace(path)


def load_checkpoint(distiller: Distiller, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}; start without --resume")
    distiller.load_state_dict(torch.load(path, weights_only=True))


def pool_folder_for(config: DistillConfig, spec: PoolSpec) -> Path:
    if config.pool_folder:
        return Path(config.pool_folder)
    import hashlib

    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    name = Path(spec.dataset.rstrip("/")).name
    return Path("pools") / f"{name}-{spec.net}-{config.pool_size}x{config.pool_epochs}ep-{digest}"


def _check_run_folder(out: Path, config: DistillConfig, resume: bool) -> None:
    saved = out / "config.json"
    if resume:
        if not saved.is_file():
            raise UserError(f"--resume: {out} holds no run (no config.json); start without --resume")
        previous = json.loads(saved.read_text())
        changed = sorted(k for k, v in config.to_dict().items() if previous.get(k) != v and k not in ("iterations", "memory_mapped"))
        if changed:
            raise UserError(f"--resume: settings differ from the run in {out} ({', '.join(changed)}); resume with the same settings")
    elif (out / "checkpoint.pt").exists() or (out / "synthetic.safetensors").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def prepare(config: DistillConfig, device: torch.device, progress: bool = True, world: World | None = None) -> tuple[RealData, RealData, Pool, Path]:
    """Load the train and test splits and build (or reuse) the extractor pool.

    Under torchrun rank 0 loads first (it fills `datasets`' cache the others then read) and the
    ranks train the pool's missing members together.
    """
    from .pool import build_or_load_pool

    world = world or World()
    real, test = world.main_first(lambda: load_splits(config))
    spec = pool_spec(config, real)
    folder = pool_folder_for(config, spec)
    return real, test, build_or_load_pool(folder, spec, config.pool_size, real, test, device, progress and world.is_main, world), folder


def load_splits(config: DistillConfig) -> tuple[RealData, RealData]:
    """The train split (memory-mapped, or streamed into per-class reservoirs, as the config says) and the test split
    (streamed whole when the train split is streamed)."""
    from .cli import load_data

    test_options = {"data_config": config.data_config, "image_column": config.image_column, "label_column": config.label_column,
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
    from .evaluate import eval_preset, evaluate_set, evaluation_summary
    from .pool import load_member
    from .runtime import write_json

    out = Path(out)
    if config.soft_labels not in ("none", "pool") and not Path(config.soft_labels).is_file():
        raise UserError(f"--soft-labels {config.soft_labels!r} is neither none, pool nor a network file (member-XXX-trained.safetensors)")
    eval_config = eval_preset(config.eval_preset)
    device = local_device(device)
    world = init_world(device)
    _check_run_folder(out, config, resume)
    world.barrier()  # every rank has seen the folder as it was before rank 0 writes into it
    real, test, pool, pool_folder = prepare(config, device, progress, world)
    distiller = Distiller(config, real, pool, device, world=world)
    if world.is_main:
        write_json(out / "config.json", {**config.to_dict(), "resolved_pool_folder": str(pool_folder)})
    if resume:
        load_checkpoint(distiller, out / "checkpoint.pt")
    seconds = run_distillation(distiller, out, progress)
    synthetic = distiller.synthetic_set()  # collective under torchrun: gathers every rank's classes
    if config.soft_labels != "none":  # stored for users of the file; evaluation asks the teacher on each augmented batch
        eval_config.teacher = str(pool_folder / "member-000-trained.safetensors") if config.soft_labels == "pool" else config.soft_labels
        synthetic.soft_labels = teacher_soft_labels(load_member(eval_config.teacher, device), synthetic.images, real.mean, real.std, device)
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
