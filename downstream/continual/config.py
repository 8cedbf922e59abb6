"""What a continual-learning comparison is: its settings (`CLConfig`), the presets, and the memories it compares, by name."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from condense.errors import UserError
from condense.runtime import preset_copy
from condense.train import TrainConfig

STRATEGIES = ("fresh", "replay")  # CLConfig.strategy: the DM protocol | experience replay


@dataclass
class CLConfig:
    """One continual-learning comparison (the DM protocol); presets fill it, flags override it."""

    data: str = "uoft-cs/cifar10"
    label_column: str | None = None
    steps: int = 5
    ipc: int = 10  # stored images per class of every memory
    mem_size: int | None = None  # items in all (default ipc x classes: ipc per class throughout)
    seeds: tuple[int, ...] = (0, 1)
    order: tuple[int, ...] | None = None  # a fixed class order for every seed (default: from each seed)
    net_options: dict = field(default_factory=lambda: {"width": 64, "norm": "instance", "act": "relu", "pooling": "avg"})
    train: TrainConfig = field(default_factory=TrainConfig)  # the fresh model on the memory
    strategy: str = "fresh"  # fresh: the DM protocol (a fresh model trained on the memory is tested); replay: experience replay
    stream_epochs: int = 1  # the continual model on the stream (herding reads its features; replay trains and tests it)
    stream_lr: float = 0.01
    stream_batch: int = 128
    eval_batch: int = 500
    condensed_count: str = "stored"  # how a condensed class's budget counts: stored canvases | decoded images
    condense_preset: str = "cifar10-ipc10-cpu"  # condense-as-you-go: distillation settings (ipc from `ipc`)
    condense: dict = field(default_factory=dict)  # condense-as-you-go: settings over the preset's (iterations, pool_size, method, frequencies, ...)

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self, train_data=None) -> None:
        """Refuse settings that train nothing or leave a memory empty, before any training; with the training split
        (`RealData`) also a memory larger than a class or too small to keep one image of every class."""
        self.train.check()  # the command line sets its fields after construction
        for name, least in {"steps": 1, "ipc": 1, "mem_size": 1, "stream_epochs": 0}.items():
            if getattr(self, name) is not None and getattr(self, name) < least:
                raise UserError(f"--{name.replace('_', '-')} must be at least {least}, got {getattr(self, name)}")
        if self.strategy == "replay" and self.stream_epochs < 1:
            raise UserError("the replay strategy trains and tests the continual model on the stream: use --stream-epochs 1 or more")
        if not self.seeds:
            raise UserError("no seeds given; name at least one, e.g. --seeds 0")
        if train_data is None:
            return
        classes, smallest = train_data.num_classes, min(len(indices) for indices in train_data.by_class)
        if self.ipc > smallest:
            raise UserError(f"--ipc {self.ipc} is more than the {smallest} images of the smallest class of {train_data.source}, "
                            f"so every memory would keep whole classes; use at most {smallest}")
        if self.mem_size is not None and self.mem_size < classes:
            raise UserError(f"--mem-size {self.mem_size} keeps no image of a class once all {classes} classes are seen "
                            f"(each keeps min(ipc, mem-size // classes seen)); use at least {classes}")


CL_PRESETS: dict[str, CLConfig] = {
    # CPU: CIFAR-10 in 5 steps of 2 classes, 10 images per class; the fresh model trains with the
    # evaluation protocol of the cifar10-ipc10-cpu preset (300 epochs, AdamW, DSA, CutMix).
    "cifar10-cpu": CLConfig(),
    # GPU: the published protocol (DM): CIFAR-100 in 5 or 10 steps, 20 images per class, 5 class orders,
    # ConvNet width 128, SGD lr 0.01 momentum 0.9 wd 5e-4, 1000 epochs, lr x0.1 at half, batch 256, DSA.
    **{
        f"cifar100-{steps}steps": CLConfig(
            data="uoft-cs/cifar100", label_column="fine_label", steps=steps, ipc=20, seeds=(0, 1, 2, 3, 4),
            net_options={"width": 128, "norm": "instance", "act": "relu", "pooling": "avg"},
            train=TrainConfig(epochs=1000, batch_size=256, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                              lr_decay_at=(0.5,), lr_gamma=0.1, cutmix_p=0.0),
            condense_preset="cifar100-ipc10",
        )
        for steps in (5, 10)
    },
}


def cl_preset(name: str) -> CLConfig:
    return preset_copy(CL_PRESETS, name, "continual-learning")


@dataclass
class MemorySpec:
    """A memory by name: random | herding | condensed:PATH (a precomputed set) | condensed (condense-as-you-go)."""

    kind: str
    path: str | None = None
    count: str | None = None  # condensed only: stored | decoded (default: the config's)

    @property
    def label(self) -> str:
        if self.kind == "condensed" and self.path is None:
            return "condensed as you go"
        name = self.kind if self.path is None else f"{self.kind}:{_short(self.path)}"
        return name + (f" ({self.count} count)" if self.count else "")


def _short(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.suffix == ".safetensors" and p.parent.name else p.name or path


def parse_memories(text: str) -> list[MemorySpec]:
    """`random,herding,condensed:PATH,condensed` -> specs (a path may not contain a comma)."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, path = item.partition(":")
        if kind not in ("random", "herding", "condensed") or (path and kind != "condensed"):
            raise UserError(f"unknown memory {item!r}; use random, herding, condensed (condense as you go) or condensed:PATH")
        specs.append(MemorySpec(kind, path or None))
    if not specs:
        raise UserError("--memory lists no memory; use e.g. random,herding,condensed:PATH")
    return specs
