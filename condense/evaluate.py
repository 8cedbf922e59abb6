"""Train on the small set, test on the real test split: the number the field reports.

A protocol (`PROTOCOLS`: `cpu`, this project's CPU yardstick; `ncfm`, the published NCFM evaluation; `dc`, the
DC/DM authors' `evaluate_synset`) fixes the optimiser, schedule, augmentation and CutMix; a scale (`SCALES`: `cpu`
or `paper`) fixes width, epochs and runs; any protocol runs at any scale (BENCHMARKS.md). `paper` as a name is
`ncfm` at paper scale, the paper presets' evaluation. Every protocol trains a fresh network per run and reports
the test accuracy at the **final epoch** (never the best over checkpoints), mean and population std (as numpy's
`std`) over runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from .data import RealData
from .distributed import World
from .errors import UserError
from .nets import seeded_net
from .runtime import preset_copy
from .synthetic import SyntheticSet
from .train import Objective, TrainConfig, accuracy, train


@dataclass
class EvalConfig:
    """Which network, how to train it, how many runs."""

    net: str = "convnet"
    net_options: dict = field(default_factory=lambda: {"width": 64, "norm": "instance", "act": "relu", "pooling": "avg"})
    train: TrainConfig = field(default_factory=TrainConfig)
    runs: int = 2
    seed: int = 0
    labels: str = "hard"  # hard | stored (the set's soft labels, as stored); a teacher replaces either
    teacher: str | None = None  # a pool member file, or several / a pool folder (an ensemble): KD targets on each augmented batch
    name: str = "custom"  # the protocol's name in PROTOCOLS (with what was changed from it), for the JSON result
    scale: str = "custom"  # the scale's name in SCALES (width, epochs and runs), for the JSON result

    def to_dict(self) -> dict:
        return {"name": self.name, "scale": self.scale, "net": self.net, "net_options": dict(self.net_options), "train": self.train.to_dict(),
                "runs": self.runs, "seed": self.seed, "labels": self.labels, "teacher": self.teacher}


# How each protocol trains, at any scale (the epochs are the scale's). `cpu`: the evaluation of the cifar10-ipc10-cpu
# preset (one DSA operation per image); `ncfm`: the published NCFM evaluation (flip + colour on every image, one of
# crop/scale/rotate per batch); `dc`: the DC/DM authors' evaluate_synset (SGD, lr x0.1 at half the epochs with the
# optimiser made anew there, one DSA operation per batch, no CutMix). Their loop runs `range(epochs + 1)`, one epoch
# more than it names (301, 1001), with the decay after epoch epochs // 2 + 2: not copied, so that a scale's epochs
# (and --epochs) mean the same count under every protocol.
PROTOCOLS = {
    "cpu": TrainConfig(),
    "ncfm": TrainConfig(dsa="color_crop_flip_scale_rotate", dsa_mode="batch-geometry"),
    "dc": TrainConfig(batch_size=256, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, lr_decay_at=(0.5,), lr_gamma=0.1,
                      reset_at_decay=True, dsa="color_crop_cutout_flip_scale_rotate", dsa_mode="batch", cutmix_p=0.0),
}
# How big and how long: the ConvNet's width, the runs, and the epochs of each protocol (at paper scale each protocol's
# published count: NCFM trains 2000 epochs, DC/DM 1000).
SCALES = {
    "cpu": {"width": 64, "runs": 2, "epochs": {"cpu": 300, "ncfm": 300, "dc": 300}},
    "paper": {"width": 128, "runs": 10, "epochs": {"cpu": 2000, "ncfm": 2000, "dc": 1000}},
}


def scaled(protocol: str, scale: str) -> EvalConfig:
    """`protocol`'s training at `scale`'s width, epochs and runs."""
    size = SCALES[scale]
    return EvalConfig(net_options={**EvalConfig().net_options, "width": size["width"]}, runs=size["runs"], name=protocol, scale=scale,
                      train=replace(PROTOCOLS[protocol], epochs=size["epochs"][protocol]))


# The evaluations by name: each protocol at CPU scale, and `paper`, the paper presets' evaluation: `ncfm` at paper scale.
EVAL_PRESETS = {**{name: scaled(name, "cpu") for name in PROTOCOLS}, "paper": scaled("ncfm", "paper")}


def eval_preset(name: str, scale: str | None = None) -> EvalConfig:
    """The evaluation `name` at `scale` (default: its own, `paper` for `paper`, `cpu` for the others)."""
    config = preset_copy(EVAL_PRESETS, name, "evaluation")
    if scale is None or scale == config.scale:
        return config
    if scale not in SCALES:
        raise UserError(f"unknown evaluation scale {scale!r}; choose one of {', '.join(SCALES)}")
    if name not in PROTOCOLS:
        raise UserError(f"{name} is {config.name} at {config.scale} scale; for {scale} scale name the protocol: "
                        f"--protocol {config.name} --scale {scale}")
    return scaled(name, scale)


# What each label protocol is, for the printed result and the JSON ("labels" is the short name).
LABEL_PROTOCOLS = {
    "hard": "the class labels",
    "stored soft": "the soft labels stored in the set, fixed per image: not recomputed for the augmented views the student sees",
    "teacher soft": "the teacher's temperature-scaled probabilities of every augmented batch the student sees",
}


def use_learned_lr(config: EvalConfig, learned_lr: float | None, lr_given: bool) -> dict | None:
    """Train with the lr a method learned with its images (MTT, DATM: for SGD) where the protocol trains with SGD and no
    --lr was given; what was done, for the JSON. Under AdamW an SGD lr means nothing, so the protocol keeps its own."""
    if learned_lr is None:
        return None
    if lr_given:
        return {"value": learned_lr, "used": False, "why": "--lr was given"}
    if config.train.optimizer != "sgd":
        return {"value": learned_lr, "used": False, "why": f"learned for SGD; the protocol trains with {config.train.optimizer} at its own lr"}
    config.train = replace(config.train, lr=learned_lr)
    config.name = f"{config.name} with the set's learned lr"
    return {"value": learned_lr, "used": True, "why": "the protocol trains with SGD, as the method that learned it"}


def training_targets(train_set: SyntheticSet | RealData, labels: str) -> tuple[torch.Tensor, str]:
    """What to train on, and its name in LABEL_PROTOCOLS: the class labels ("hard") or the set's soft labels ("stored")."""
    if labels not in ("hard", "stored"):
        raise UserError(f"labels must be hard (the class labels) or stored (the set's soft labels), got {labels!r}")
    soft = getattr(train_set, "soft_labels", None)  # real data has none
    if labels == "stored" and soft is None:
        raise UserError("--labels stored asked for, but this training set has no soft labels; use --labels hard")
    if labels == "stored":
        return soft, "stored soft"
    return train_set.labels, "hard"


class Ensemble(torch.nn.Module):
    """Several frozen networks as one teacher: its logits are the log of the members' mean probabilities."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(member(x).float(), 1) for member in self.members]).mean(0).log()


def teacher_files(teacher: str) -> list[str]:
    """The member files a teacher names: one file, several joined by commas, or every trained member of a pool folder."""
    from pathlib import Path

    if Path(teacher).is_dir():
        files = sorted(str(path) for path in Path(teacher).glob("member-*-trained.safetensors"))
        if not files:
            raise UserError(f"teacher folder {teacher} holds no member-XXX-trained.safetensors; pass a pool folder of `condense pretrain`")
        return files
    files = [name for name in teacher.split(",") if name]
    if not files:
        raise UserError(f"--teacher {teacher!r} names no file; pass a member-XXX-trained.safetensors file, several joined by commas, "
                        "or a pool folder")
    return files


def load_teacher(teacher: str, device: torch.device, student: SyntheticSet | RealData | None = None) -> torch.nn.Module:
    """A frozen teacher: one pool member, or the ensemble of several (see `teacher_files`); with `student` (what it
    teaches), every member must have been trained for its classes and image shape, or its targets mean nothing."""
    from .pool import load_member, member_spec

    files = teacher_files(teacher)
    if student is not None:
        expected = (len(student.class_names), *student.images.shape[1:])
        for path in files:
            spec = member_spec(path)
            if (spec.num_classes, spec.channels, *spec.image_size) != expected:
                raise UserError(f"teacher {path} was trained for {spec.num_classes} classes of {spec.channels}x{'x'.join(map(str, spec.image_size))} "
                                f"images ({spec.dataset}), but the set has {expected[0]} classes of {'x'.join(map(str, expected[1:]))}; "
                                "pass a pool member trained on the set's dataset")
    members = [load_member(path, device) for path in files]
    return members[0] if len(members) == 1 else Ensemble(members).to(device).eval()


def check_compatible(synthetic: SyntheticSet, test: RealData) -> None:
    """The set and the test split must agree on channels, image size and classes."""
    if tuple(synthetic.images.shape[1:]) != (test.channels, *test.image_size):
        raise UserError(
            f"the set's images are {list(synthetic.images.shape[1:])} but {test.source} [{test.split}] has "
            f"{[test.channels, *test.image_size]}; evaluate against the dataset the set was made from (or pass --image-size)"
        )
    if synthetic.class_names != test.class_names:
        raise UserError(f"the set has classes {synthetic.class_names[:5]}... but {test.source} has {test.class_names[:5]}...; use the matching dataset")


def train_runs(make_net: Callable[[int], torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, config: TrainConfig,
               seeds: list[int], device: torch.device, *, mean, std, test: RealData | None = None, teacher=None,
               objective: Objective | None = None, run_targets=None, desc: str | None = None, progress: bool = True,
               test_transform=None) -> list[dict]:
    """The per-run trainer: a fresh network per seed (`make_net(seed)`, e.g. `functools.partial(seeded_net, ...)`),
    trained (at once when several), tested at the final epoch when `test` is given.

    Each run draws its order and augmentation from a generator seeded by its seed, so a run's figures do not depend
    on which runs share its call or process. `run_targets(targets, generator)` gives a run its own targets (label
    noise, drawn from the run's generator before training); such runs train one at a time. Returns one dict per seed:
    seed, accuracy (None without `test`), loss, seconds, images per second, and the trained network ("net").
    `test_transform` replaces the test images' normalisation (`accuracy`).
    """
    if run_targets is not None and len(seeds) > 1:
        return [run for seed in seeds for run in train_runs(make_net, images, targets, config, [seed], device, mean=mean, std=std, test=test,
                                                            teacher=teacher, objective=objective, run_targets=run_targets, desc=desc,
                                                            progress=progress, test_transform=test_transform)]
    nets = [make_net(seed) for seed in seeds]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    if run_targets is not None:
        targets = run_targets(targets, generators[0])
    stats = train(nets, images, targets, config, mean=mean, std=std, generator=generators, device=device, desc=desc, progress=progress,
                  teacher=teacher, objective=objective)
    return [{"seed": seed, "accuracy": accuracy(net, test, mean, std, device, transform=test_transform) if test is not None else None,
             **figures, "net": net}
            for seed, net, figures in zip(seeds, nets, stats)]


def evaluate_set(synthetic: SyntheticSet | RealData, test: RealData, config: EvalConfig, device: torch.device, progress: bool = True,
                 world: World | None = None, batched: bool = False, objective: Objective | None = None, run_targets=None,
                 test_transform=None) -> dict:
    """Train a fresh network per run on `synthetic` (or on real data), report final-epoch accuracy on `test`.

    The targets are the class labels unless `config.teacher` is given (KD on every augmented batch)
    or `config.labels` is "stored" (the set's soft labels, which do not follow the augmentation);
    the result names the protocol ("labels", "label_protocol").
    `objective` (e.g. `downstream.dlb.DLB`) replaces plain cross-entropy (`train(objective=...)`; one network at a time);
    `run_targets` gives each run its own targets (see `train_runs`); `test_transform` replaces the test images' normalisation
    (a ZCA set's whitening).
    Under torchrun (`world`) the runs are shared across ranks; each run is seeded by its index, so
    the figures are those of one process, and every rank gets all of them. `batched` trains each
    rank's runs at once (`train` on a list of networks): the same draws, other rounding (`train`), so figures within
    about 0.1 point at the cpu protocol, not the same bits.
    """
    check_compatible(synthetic, test)
    if config.runs < 1:
        raise UserError(f"runs must be at least 1, got {config.runs}")
    if config.teacher and config.labels != "hard":
        raise UserError(f"--teacher and --labels {config.labels} are two sources of soft labels; drop one")
    targets, kind = training_targets(synthetic, config.labels)
    teacher = None
    if config.teacher:
        teacher, kind = load_teacher(config.teacher, device, synthetic), "teacher soft"
    world = world or World()
    make_net = partial(seeded_net, config.net, synthetic.images.shape[1], len(synthetic.class_names), synthetic.images.shape[2:], **config.net_options)

    def some_runs(runs: list[int]) -> list[dict]:
        desc = f"run{'s' if len(runs) > 1 else ''} {', '.join(str(run + 1) for run in runs)}/{config.runs}"
        done = train_runs(make_net, synthetic.images, targets, config.train, [config.seed + run for run in runs], device, mean=synthetic.mean,
                          std=synthetic.std, test=test, teacher=teacher, objective=objective, run_targets=run_targets, desc=desc, progress=progress,
                          test_transform=test_transform)
        return [{k: v for k, v in run.items() if k != "net"} for run in done]

    groups = world.groups(list(range(config.runs)), batched)
    runs = [run for group in world.map_in_rounds(groups, some_runs, desc="eval runs", unit="group" if batched else "run", progress=progress) for run in group]
    accuracies = [r["accuracy"] for r in runs]
    return {
        "accuracy_mean": statistics.fmean(accuracies),
        "accuracy_std": statistics.pstdev(accuracies),
        "runs": runs,
        "labels": kind,
        "label_protocol": LABEL_PROTOCOLS[kind],
        "set": describe(synthetic),
        "test": f"{test.name} [{test.split}], {len(test)} images",
        "evaluated_on": "validation" if test.held_out else "test",  # validation: images held out of the train split (`--holdout`)
        "device": str(device),
        "batched_runs": batched,  # how the runs were trained (batched rounds otherwise: figures within about 0.1 point)
        "protocol": config.to_dict(),
        "objective": objective.to_dict() if objective is not None else {"objective": "ce"},
        "train_images_per_second": statistics.fmean(r["images_per_second"] for r in runs),
    }


def describe(train_set: SyntheticSet | RealData) -> str:
    """A set's summary, or a real split's name and size."""
    if isinstance(train_set, SyntheticSet):
        return train_set.summary()
    return f"{train_set.name} [{train_set.split}], {len(train_set)} images"


def evaluation_summary(result: dict) -> dict:
    """What a set carries of an `evaluate_set` result: the figures, each run's accuracy, the test split and the protocol."""
    return {
        "accuracy_mean": result["accuracy_mean"],
        "accuracy_std": result["accuracy_std"],
        "run_accuracies": [run["accuracy"] for run in result["runs"]],
        "labels": result["labels"],
        "label_protocol": result["label_protocol"],
        "test": result["test"],
        "evaluated_on": result.get("evaluated_on", "test"),  # results written before the key were all on a test split
        "protocol": {**result["protocol"], "teacher": published_teacher(result["protocol"].get("teacher"))},
    }


def published_teacher(teacher: str | None) -> str | None:
    """A teacher as a set records it: its files' names (`a,b` for an ensemble), not their paths on this machine."""
    return teacher and ",".join(Path(part).name for part in teacher.split(","))


def format_result(result: dict) -> str:
    """A plain-text table of an `evaluate_set` result."""
    protocol = result["protocol"]
    lines = [f"{'run':>4}  {'seed':>5}  {'final-epoch ' + result['evaluated_on'] + ' acc':>20}  {'train img/s':>11}"]
    for index, run in enumerate(result["runs"]):
        lines.append(f"{index:>4}  {run['seed']:>5}  {run['accuracy']:>19.2f}%  {run['images_per_second']:>11.0f}")
    options = ", ".join(f"{k}={v}" for k, v in protocol["net_options"].items())
    lines.append(
        f"mean ± std: {result['accuracy_mean']:.2f} ± {result['accuracy_std']:.2f} %  "
        f"(protocol {protocol.get('name', 'custom')} at {protocol.get('scale', 'custom')} scale: {protocol['net']}({options}), "
        f"{protocol['train']['epochs']} epochs, {result['labels']} labels, "
        f"{len(result['runs'])} runs; {result['test']})"
    )
    lines.append(f"trained on {result['labels']} labels: {result['label_protocol']}")
    if result["evaluated_on"] == "validation":
        lines.append(f"tested on images held out of the training split (a validation split), not on the test split: {result['test']}")
    return "\n".join(lines)
