"""Continual learning with condensed sets, through Avalanche 0.6 (REFERENCE.md §3).

- `condensed_benchmark`: a class-incremental Avalanche benchmark from any real dataset (class order
  from a seed or given, class names kept); every item is (normalised image, label, task label 0).
- Replay memories, all `ExemplarsBuffer`s usable as `ReplayPlugin(mem_size, storage_policy=...)`:
  `RandomMemory`, `HerdingMemory` (by the current model's features), `CondensedMemory` (a
  precomputed condensed set, sliced by the classes of each experience) and `CondensingMemory`
  (condense-as-you-go: NCFM on each experience's classes, matchers pretrained on the data seen so far).
  Budget: `max_size` items in all, so a class holds `min(max_per_class, max_size // classes seen)`;
  the share shrinks as classes arrive. A condensed class counts its stored canvases by default
  (`count="stored"`: a multi-formation canvas is one image of storage and decodes to factor² images),
  or its decoded images (`count="decoded"`).
- `FreshModelPlugin`: the DM protocol (GDumb style): after each experience, a freshly initialised
  network is trained from scratch on the memory of all seen classes by `condense.train.train` (the one
  training loop) and handed to the strategy, whose evaluation then tests it on the seen classes.
- `run_continual` / `run_comparison`: the whole protocol for several memories and seeds, with
  Avalanche's own metrics; `format_table`, `save_plot`.

Avalanche is imported inside the functions and classes that need it (the classes are built on first
use: `from downstream.continual import RandomMemory` imports Avalanche, `import downstream.continual`
does not).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from condense.data import RealData, normalise
from condense.errors import UserError
from condense.runtime import preset_copy
from condense.train import TrainConfig, train

from .load import load_condensed

TASK_LABEL = 0


class ToInput:
    """Stream transform: a uint8 (or [0, 1] float) image [C,H,W] -> float32, normalised by mean/std."""

    def __init__(self, mean, std):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        return normalise(image[None], self.mean, self.std)[0]


def stream_dataset(images: torch.Tensor, labels: torch.Tensor, mean, std, source_index: Sequence[int] | None = None):
    """An AvalancheDataset of (normalised image, label, task label) items, the structure of every stream and memory.

    `images` are uint8 or float in [0, 1] [N,C,H,W]; the `raw` transform group gives them back as
    stored (`raw_tensors`). `source_index` (row of each image in its source split) is kept as a data
    attribute, not in the items.
    """
    from avalanche.benchmarks.utils import DataAttribute, make_avalanche_dataset
    from avalanche.benchmarks.utils.transform_groups import TransformGroups
    from torch.utils.data import TensorDataset

    to_input = ToInput(mean, std)
    attributes = [
        DataAttribute(labels.tolist(), "targets"),
        DataAttribute([TASK_LABEL] * len(labels), "targets_task_labels", use_in_getitem=True),
    ]
    if source_index is not None:
        attributes.append(DataAttribute(list(source_index), "source_index"))
    return make_avalanche_dataset(
        TensorDataset(images, labels.to(torch.int64)),
        data_attributes=attributes,
        transform_groups=TransformGroups({"train": to_input, "eval": to_input, "raw": None}),
    )


def raw_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored images (uint8 or float in [0, 1]) and labels of a `stream_dataset` (or its subsets and concatenations)."""
    raw = dataset.with_transforms("raw")
    items = [raw[i] for i in range(len(raw))]
    if not items:
        raise UserError("the memory is empty; nothing to train on")
    return torch.stack([item[0] for item in items]), torch.stack([torch.as_tensor(item[1]) for item in items])


def class_order(num_classes: int, seed: int) -> list[int]:
    """The class order of a seed (a local generator: the global RNG is left alone)."""
    return torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()


def condensed_benchmark(train: RealData, test: RealData, steps: int, *, order: Sequence[int] | None = None, seed: int = 0):
    """A class-incremental Avalanche benchmark (`CLScenario` with `train_stream` and `test_stream`).

    Classes arrive in `order` (default: `class_order(classes, seed)`), split into `steps` equal groups.
    The benchmark also carries `class_names`, `class_order`, `experience_classes` (the classes of every
    experience, in arrival order), `mean`, `std`, `source`, `channels` and `image_size`.
    """
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark

    if train.class_names != test.class_names:
        raise UserError(f"the train and test splits of {train.source} have different classes; use one dataset")
    classes = train.num_classes
    if steps < 1 or classes % steps:
        raise UserError(f"{classes} classes cannot be split into {steps} equal steps; choose a divisor of {classes}")
    order = class_order(classes, seed) if order is None else [int(c) for c in order]
    if sorted(order) != list(range(classes)):
        raise UserError(f"a class order must list each of the {classes} classes once, got {order}")
    for split in (train, test):
        empty = [train.class_names[c] for c in range(classes) if len(split.by_class[c]) == 0]
        if empty:
            raise UserError(f"{split.source} [{split.split}] has no images of {', '.join(empty)}; every class needs some")
    datasets = {
        name: stream_dataset(split.images, split.labels, train.mean, train.std, range(len(split)))
        for name, split in (("train", train), ("test", test))
    }
    benchmark = class_incremental_benchmark(datasets, class_order=order, num_experiences=steps)
    per_step = classes // steps
    benchmark.class_names = list(train.class_names)
    benchmark.class_order = order
    benchmark.experience_classes = [order[k * per_step : (k + 1) * per_step] for k in range(steps)]
    benchmark.mean, benchmark.std, benchmark.source = train.mean, train.std, train.source
    benchmark.channels, benchmark.image_size = train.channels, train.image_size
    return benchmark


def layer_features(model: nn.Module, layer_name: str, data, batch_size: int, device) -> torch.Tensor:
    """The flattened output of `model`'s module `layer_name` on every item of `data`, in eval mode (CPU tensor)."""
    from torch.utils.data import DataLoader

    layer = dict(model.named_modules()).get(layer_name)
    if layer is None:
        raise UserError(f"herding needs the model's feature layer {layer_name!r}; the model has no such module")
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().flatten(1).cpu()))
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, *_ in DataLoader(data, batch_size=batch_size, collate_fn=getattr(data, "collate_fn", None)):
                model(x.to(device))
    finally:
        handle.remove()
        model.train(training)
    return torch.cat(captured)


def herding_order(features: torch.Tensor, count: int) -> list[int]:
    """Greedy herding (iCaRL): `count` picks, each making the mean of the picked the closest to the mean of all.

    Avalanche's `HerdingSelectionStrategy` ranks all N (N steps over all N features: 5000 steps over
    5000 x 1024 values per CIFAR-10 class); a memory needs only its first picks, which are the same.
    """
    center = features.mean(0)
    total = torch.zeros_like(center)
    taken = torch.zeros(len(features), dtype=torch.bool)
    picks: list[int] = []
    for step in range(min(count, len(features))):
        distances = ((total + features) / (step + 1) - center).square().sum(1)
        distances[taken] = math.inf
        pick = int(distances.argmin())
        picks.append(pick)
        taken[pick] = True
        total += features[pick]
    return picks


def _checked_count(count: str) -> str:
    if count not in ("stored", "decoded"):
        raise UserError(f"a condensed class's budget counts stored canvases or decoded images: use stored or decoded, not {count!r}")
    return count


@cache
def _memory_classes() -> dict[str, type]:
    """The memory classes, built on first use so that importing this module does not import Avalanche."""
    from avalanche.benchmarks.utils.utils import concat_datasets
    from avalanche.training.storage_policy import ExemplarsBuffer

    class ClassMemory(ExemplarsBuffer):
        """Per-class replay memory: `max_size` items in all, `min(max_per_class, max_size // seen classes)` per class.

        Each class keeps a ranked dataset (best first) and a unit (items per stored image: factor²
        for condensed canvases counted as stored, else 1); shrinking keeps the best prefix.
        `post_adapt` is idempotent per experience, so the same memory can serve a `ReplayPlugin`
        and a `FreshModelPlugin` at once.
        """

        uses_model = False  # whether the selection reads the strategy's model (then the stream is trained on)

        def __init__(self, max_size: int, max_per_class: int | None = None):
            if max_size < 1 or (max_per_class is not None and max_per_class < 1):
                raise UserError(f"a memory needs a positive size, got max_size {max_size}, max_per_class {max_per_class}")
            super().__init__(max_size)
            self.max_per_class = max_per_class
            self.ranked: dict[int, tuple[object, int]] = {}  # class -> (ranked dataset, items per stored image)
            self.absorbed: list[int] = []  # experiences already taken in

        def class_budget(self, classes: int | None = None) -> int:
            """Stored images per class now (or once `classes` classes are in)."""
            share = self.max_size // max(1, len(self.ranked) if classes is None else classes)
            return share if self.max_per_class is None else min(share, self.max_per_class)

        def post_adapt(self, agent, exp) -> None:
            if exp.current_experience in self.absorbed:
                return
            classes = sorted(int(c) for c in exp.classes_in_this_experience)
            budget = self.class_budget(len(self.ranked.keys() | set(classes)))
            self.ranked.update(self.rank_experience(agent, exp, classes, budget))
            self.absorbed.append(exp.current_experience)
            self.resize(agent, self.max_size)

        def update(self, strategy, **kwargs) -> None:
            """What `ReplayPlugin` calls in Avalanche 0.6 (the base class's is deprecated and warns)."""
            self.post_adapt(strategy, strategy.experience)

        def resize(self, agent, new_size: int) -> None:
            self.max_size = new_size
            budget = self.class_budget()
            kept = [data.subset(range(min(len(data), budget * unit))) for data, unit in self.ranked.values()]
            self.buffer = concat_datasets(kept)

        def stored_per_class(self) -> dict[int, int]:
            """Stored images (canvases for a condensed class counted as stored) of every class in the buffer."""
            budget = self.class_budget()
            return {c: min(math.ceil(len(data) / unit), budget) for c, (data, unit) in self.ranked.items()}

        def rank_experience(self, agent, exp, classes: list[int], count: int) -> dict[int, tuple[object, int]]:
            """Each class's ranked dataset (at least `count` stored images where it has them) and its unit."""
            return {c: self.rank_class(agent, exp, c, count) for c in classes}

        def rank_class(self, agent, exp, cls: int, count: int) -> tuple[object, int]:
            raise NotImplementedError

    def _class_data(exp, cls: int):
        return exp.dataset.subset(exp.dataset.targets.val_to_idx[cls])

    class RandomMemory(ClassMemory):
        """Random real images of each class (seeded per class, so independent of the class order)."""

        def __init__(self, max_size: int, max_per_class: int | None = None, seed: int = 0):
            super().__init__(max_size, max_per_class)
            self.seed = seed

        def rank_class(self, agent, exp, cls, count):
            data = _class_data(exp, cls)
            generator = torch.Generator().manual_seed(self.seed * 100_003 + cls)
            return data.subset(torch.randperm(len(data), generator=generator).tolist()), 1

    class HerdingMemory(ClassMemory):
        """Herding (iCaRL) on the current model's features: `herding_order` of each class's images.

        `layer_name` names the module whose output is the feature vector (`body`, the penultimate
        layer of the networks of `condense.nets`). Greedy, so every prefix is the herding choice of
        its size; each class is ranked as far as its budget when it arrives (the largest it gets).
        """

        uses_model = True

        def __init__(self, max_size: int, max_per_class: int | None = None, layer_name: str = "body"):
            super().__init__(max_size, max_per_class)
            self.layer_name = layer_name

        def rank_class(self, agent, exp, cls, count):
            data = _class_data(exp, cls).eval()
            features = layer_features(agent.model, self.layer_name, data, agent.eval_mb_size, agent.device)
            return data.subset(herding_order(features, count)), 1

    class CondensedMemory(ClassMemory):
        """A precomputed condensed set, sliced by the classes of each experience.

        With `count="stored"` a class's budget counts canvases (each decodes to factor² training
        images, in canvas order), with `count="decoded"` it counts decoded images. Items are built
        with the set's normalisation, which must be the stream's.
        """

        def __init__(self, max_size: int, synthetic, max_per_class: int | None = None, count: str = "stored"):
            super().__init__(max_size, max_per_class)
            self.synthetic, self.count = synthetic, _checked_count(count)

        def rank_class(self, agent, exp, cls, count):
            synthetic = self.synthetic
            mask = synthetic.labels == cls
            if not mask.any():
                raise UserError(f"the condensed set has no images of class {cls} ({synthetic.class_names[cls]!r})")
            data = stream_dataset(synthetic.images[mask], synthetic.labels[mask], synthetic.mean, synthetic.std)
            return data, synthetic.factor**2 if self.count == "stored" else 1

    class CondensingMemory(ClassMemory):
        """Condense-as-you-go: at the end of each experience, NCFM on that experience's classes only.

        The matchers are pretrained (in memory) on the images of the experiences seen so far, the
        distillation reads only the current experience's images; both come from the stream's items.
        `reads` records, per experience, the source rows the pool and the distillation were given
        and the rows every distillation step drew.
        """

        def __init__(self, max_size: int, benchmark, config, device: torch.device, max_per_class: int | None = None,
                     count: str = "stored", progress: bool = True):
            super().__init__(max_size, max_per_class)
            self.benchmark, self.config, self.device, self.progress = benchmark, config, device, progress
            self.count = _checked_count(count)
            self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
            self.reads: list[dict] = []

        def rank_experience(self, agent, exp, classes, count):
            from condense.distill import Distiller, pool_spec
            from condense.pool import pretrain_pool

            bench, k = self.benchmark, exp.current_experience
            images, labels = raw_tensors(exp.dataset)
            source = torch.as_tensor(list(exp.dataset.source_index))
            self.seen.append((images, labels, source))

            def real(parts) -> RealData:
                return RealData(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), list(bench.class_names),
                                tuple(bench.mean), tuple(bench.std), f"{bench.source} (seen classes)", "train")

            config = replace(self.config, seed=self.config.seed * 1000 + k)
            seen_real, current = real(self.seen), real(self.seen[-1:])
            pool = pretrain_pool(pool_spec(config, seen_real), config.pool_size, seen_real, self.device, self.progress,
                                    batched=config.batched_pool)
            distiller = Distiller(config, current, pool, self.device, classes=classes)
            drawn = []
            for _ in tqdm(range(config.iterations), desc=f"condensing experience {k}", disable=not self.progress, leave=False, unit="it"):
                drawn.append(distiller.step()["real_indices"])
            self.reads.append({
                "experience": k, "classes": classes,
                "pool_rows": torch.cat([p[2] for p in self.seen]), "distill_rows": source,
                "step_rows": source[torch.cat(drawn).unique()] if drawn else source[:0],
            })
            synthetic = distiller.synthetic_set()
            unit = config.factor**2 if self.count == "stored" else 1
            return {c: (stream_dataset(synthetic.images[synthetic.labels == c], synthetic.labels[synthetic.labels == c],
                                       bench.mean, bench.std), unit) for c in classes}

    classes = (ClassMemory, RandomMemory, HerdingMemory, CondensedMemory, CondensingMemory)
    for cls in classes:
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {cls.__name__: cls for cls in classes}


@cache
def _plugin_class() -> type:
    from avalanche.core import SupervisedPlugin

    class FreshModelPlugin(SupervisedPlugin):
        """The DM protocol (GDumb style) as an Avalanche plugin.

        After each training experience: update `memory` with it, build a fresh network (`make_net()`
        under the seed `seed * 1000 + experience`, so no weight survives from an earlier experience),
        train it from scratch on the whole memory with `condense.train.train` (`config`, optional
        `objective`, e.g. DLB), and load it into the strategy's model, so that `strategy.eval` tests
        it. `history` keeps the figures of every experience.
        """

        def __init__(self, memory, make_net: Callable[[], nn.Module], config: TrainConfig, mean, std, *, seed: int = 0,
                     objective=None, progress: bool = True):
            super().__init__()
            self.memory, self.make_net, self.config = memory, make_net, config
            self.mean, self.std, self.seed, self.objective, self.progress = tuple(mean), tuple(std), seed, objective, progress
            self.history: list[dict] = []

        def after_training_exp(self, strategy, **kwargs):
            experience = strategy.experience.current_experience
            self.memory.post_adapt(strategy, strategy.experience)
            images, labels = raw_tensors(self.memory.buffer)
            seed = self.seed * 1000 + experience
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = self.make_net()
            stats = train(net, images, labels, self.config, mean=self.mean, std=self.std, generator=torch.Generator().manual_seed(seed),
                          device=strategy.device, desc=f"fresh model, experience {experience}", progress=self.progress,
                          objective=self.objective)
            strategy.model.load_state_dict(net.state_dict())
            self.history.append({"experience": experience, "seed": seed, "memory_images": len(labels),
                                 "stored_per_class": self.memory.stored_per_class(), **stats})

    FreshModelPlugin.__module__, FreshModelPlugin.__qualname__ = __name__, "FreshModelPlugin"
    return FreshModelPlugin


def __getattr__(name: str):
    if name == "FreshModelPlugin":
        return _plugin_class()
    if name in ("ClassMemory", "RandomMemory", "HerdingMemory", "CondensedMemory", "CondensingMemory"):
        return _memory_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# The protocol end to end: presets, memories by name, runs, table, plot.


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
    net_options: dict = field(default_factory=lambda: {"width": 64, "norm": "instance", "act": "relu", "pool": "avg"})
    train: TrainConfig = field(default_factory=TrainConfig)  # the fresh model on the memory
    stream_epochs: int = 1  # the continual model on the stream (herding reads its features)
    stream_lr: float = 0.01
    stream_batch: int = 128
    eval_batch: int = 500
    condensed_count: str = "stored"  # how a condensed class's budget counts: stored canvases | decoded images
    condense_preset: str = "cifar10-ipc10-cpu"  # condense-as-you-go: distillation settings (ipc from `ipc`)
    condense: dict = field(default_factory=dict)  # condense-as-you-go: DistillConfig fields over the preset's (iterations, pool_size, ...)

    def to_dict(self) -> dict:
        return asdict(self)


CL_PRESETS: dict[str, CLConfig] = {
    # CPU: CIFAR-10 in 5 steps of 2 classes, 10 images per class; the fresh model trains with the
    # evaluation protocol of the cifar10-ipc10-cpu preset (300 epochs, AdamW, DSA, CutMix).
    "cifar10-cpu": CLConfig(),
    # GPU: the published protocol (DM): CIFAR-100 in 5 or 10 steps, 20 images per class, 5 class orders,
    # ConvNet width 128, SGD lr 0.01 momentum 0.9 wd 5e-4, 1000 epochs, lr x0.1 at half, batch 256, DSA.
    **{
        f"cifar100-{steps}steps": CLConfig(
            data="uoft-cs/cifar100", label_column="fine_label", steps=steps, ipc=20, seeds=(0, 1, 2, 3, 4),
            net_options={"width": 128, "norm": "instance", "act": "relu", "pool": "avg"},
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


def _check_set(synthetic, benchmark) -> None:
    """A condensed set fits a benchmark: same classes, image shape and normalisation."""
    if synthetic.class_names != benchmark.class_names:
        raise UserError(f"the condensed set has classes {synthetic.class_names[:5]}... but {benchmark.source} has "
                        f"{benchmark.class_names[:5]}...; use a set made from this dataset")
    if tuple(synthetic.images.shape[1:]) != (benchmark.channels, *benchmark.image_size):
        raise UserError(f"the condensed set's images are {list(synthetic.images.shape[1:])} but the stream's are "
                        f"{[benchmark.channels, *benchmark.image_size]}; use a set made from this dataset")
    if not torch.allclose(torch.tensor(synthetic.mean + synthetic.std), torch.tensor(tuple(benchmark.mean) + tuple(benchmark.std)), atol=1e-4):
        raise UserError(f"the condensed set is normalised with mean {synthetic.mean}, std {synthetic.std} but the stream with "
                        f"{benchmark.mean}, {benchmark.std}; use a set made from this dataset")
    missing = sorted(set(range(len(benchmark.class_names))) - set(synthetic.labels.tolist()))
    if missing:
        raise UserError(f"the condensed set has no images of class {', '.join(f'{c} ({benchmark.class_names[c]!r})' for c in missing)}; "
                        "use a set with images of every class")


def make_memory(spec: MemorySpec, benchmark, config: CLConfig, seed: int, device: torch.device, progress: bool = True, loaded: dict | None = None):
    """The `ExemplarsBuffer` of a spec for one run."""
    classes = _memory_classes()
    mem_size = config.mem_size or config.ipc * len(benchmark.class_names)
    count = spec.count or config.condensed_count
    if spec.kind == "random":
        return classes["RandomMemory"](mem_size, config.ipc, seed=seed)
    if spec.kind == "herding":
        return classes["HerdingMemory"](mem_size, config.ipc)
    if spec.path is not None:
        synthetic = (loaded or {}).get(spec.path) or load_condensed(spec.path)
        _check_set(synthetic, benchmark)
        return classes["CondensedMemory"](mem_size, synthetic, config.ipc, count=count)
    from condense.distill import DistillConfig, preset

    unknown = set(config.condense) - set(DistillConfig.__dataclass_fields__)
    if unknown:
        raise UserError(f"condense-as-you-go has no setting {', '.join(sorted(unknown))}; see `condense distill -h`")
    condense = replace(preset(config.condense_preset), **{**config.condense, "ipc": config.ipc, "seed": seed})
    return classes["CondensingMemory"](mem_size, benchmark, condense, device, config.ipc, count=count, progress=progress)


def _plain(value):
    """Avalanche metric values (floats, tensors, dicts) as JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def run_continual(benchmark, memory, config: CLConfig, seed: int, device: torch.device, *,
                  plugins: Sequence = (), objective=None, progress: bool = True) -> dict:
    """One run of the DM protocol with one memory: Naive on the stream + ReplayPlugin(memory) + FreshModelPlugin.

    The continual model is trained on the stream (mini-batches of `stream_batch` new images plus a
    quarter as many replayed) only when the memory reads it (herding); the fresh model, trained on
    the memory, is the one tested after every experience.
    Returns per step the accuracy (%) on the test images of all seen classes (Avalanche's accuracy on
    trained experiences), the memory, and all of Avalanche's metrics (per-experience accuracy, forgetting).
    """
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.supervised import Naive

    from condense.nets import build_net

    def make_net() -> nn.Module:
        return build_net("convnet", benchmark.channels, len(benchmark.class_names), benchmark.image_size, **config.net_options)

    torch.manual_seed(seed)  # Avalanche's data loaders shuffle with the global generator
    model = make_net()
    fresh = _plugin_class()(memory, make_net, config.train, benchmark.mean, benchmark.std, seed=seed, objective=objective, progress=progress)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")  # the figures are returned, not logged
        evaluator = EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True, trained_experience=True), forgetting_metrics(experience=True, stream=True),
            loggers=[],
        )
    strategy = Naive(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=config.stream_lr, momentum=0.9, weight_decay=5e-4),
        train_mb_size=config.stream_batch, train_epochs=config.stream_epochs if memory.uses_model else 0,
        eval_mb_size=config.eval_batch, device=device, evaluator=evaluator,
        plugins=[ReplayPlugin(memory.max_size, batch_size_mem=max(1, config.stream_batch // 4), storage_policy=memory), fresh, *plugins],
    )
    steps = []
    for k, experience in enumerate(benchmark.train_stream):
        strategy.train(experience, eval_streams=[])
        metrics = strategy.eval(benchmark.test_stream[: k + 1])
        steps.append({
            "step": k, "classes_seen": sum(len(group) for group in benchmark.experience_classes[: k + 1]),
            "accuracy": 100 * metrics["Accuracy_On_Trained_Experiences/eval_phase/test_stream"],
            **{key: fresh.history[-1][key] for key in ("memory_images", "stored_per_class", "seconds", "images_per_second")},
        })
    return {"seed": seed, "class_order": benchmark.class_order, "steps": steps, "avalanche": _plain(evaluator.get_all_metrics())}


def run_comparison(train_data: RealData, test: RealData, memories: Sequence[MemorySpec], config: CLConfig, device: torch.device,
                   objective=None, progress: bool = True) -> dict:
    """Every memory under every seed (class order from the seed unless `config.order`); mean ± std per step.

    `objective` (e.g. `downstream.dlb.DLB`) trains the fresh model instead of plain cross-entropy.
    """
    if config.ipc < 1:
        raise UserError(f"--ipc must be at least 1, got {config.ipc}")
    if not config.seeds:
        raise UserError("no seeds given; name at least one, e.g. --seeds 0")
    loaded = {spec.path: load_condensed(spec.path) for spec in memories if spec.path is not None}
    results: dict[str, dict] = {spec.label: {"spec": asdict(spec), "runs": []} for spec in memories}
    if len(results) != len(memories):
        raise UserError("a memory is listed twice; list each once")
    runs = [(seed, spec) for seed in config.seeds for spec in memories]
    first = config.seeds[0]
    benchmarks = {first: condensed_benchmark(train_data, test, config.steps, order=config.order, seed=first)}  # one per seed, shared by the memories (they only read it)
    for spec in memories:  # every memory is built once before any training, so a bad set or setting stops the comparison at once
        make_memory(spec, benchmarks[first], config, first, device, progress, loaded)
    for seed, spec in tqdm(runs, desc="continual runs", disable=not progress, unit="run"):
        if seed not in benchmarks:
            benchmarks = {seed: condensed_benchmark(train_data, test, config.steps, order=config.order, seed=seed)}
        benchmark = benchmarks[seed]
        memory = make_memory(spec, benchmark, config, seed, device, progress, loaded)
        run = run_continual(benchmark, memory, config, seed, device, objective=objective, progress=progress)
        if hasattr(memory, "reads"):
            run["condensed_as_you_go"] = [{"experience": r["experience"], "classes": r["classes"], "pool_images": len(r["pool_rows"]),
                                           "distill_images": len(r["distill_rows"])} for r in memory.reads]
        results[spec.label]["runs"].append(run)
    for entry in results.values():
        summarise(entry)
    return {"config": config.to_dict(), "objective": objective.to_dict() if objective is not None else {"objective": "ce"},
            "device": str(device), "data": train_data.source, "memories": results, "classes_per_step": train_data.num_classes // config.steps}


def summarise(entry: dict) -> dict:
    """Set a memory's `accuracy_mean` and `accuracy_std` per step (population std) from its `runs`."""
    per_step = list(zip(*[[s["accuracy"] for s in run["steps"]] for run in entry["runs"]]))
    entry["accuracy_mean"] = [statistics.fmean(v) for v in per_step]
    entry["accuracy_std"] = [statistics.pstdev(v) for v in per_step]
    return entry


def format_table(result: dict) -> str:
    """Accuracy (%) on all seen classes after every step, mean ± std over seeds, one column per memory."""
    memories = result["memories"]
    labels = list(memories)
    widths = [max(15, len(label)) for label in labels]
    lines = ["step  classes  " + "  ".join(f"{label:>{w}}" for label, w in zip(labels, widths))]
    steps = len(next(iter(memories.values()))["accuracy_mean"])
    for k in range(steps):
        cells = [f"{m['accuracy_mean'][k]:6.2f} ± {m['accuracy_std'][k]:5.2f}" for m in memories.values()]
        lines.append(f"{k:>4}  {(k + 1) * result['classes_per_step']:>7}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    config, objective = result["config"], result["objective"]
    lines.append(f"accuracy (%) on the test images of all classes seen so far, mean ± std over seeds {list(config['seeds'])}; "
                 f"memory {config['ipc']} stored images per class; fresh model {config['train']['epochs']} epochs per step, "
                 + ("cross-entropy" if objective["objective"] == "ce" else
                    f"DLB (scheme {objective['scheme']}, tau {objective['tau']}, alpha {objective['alpha']})"))
    return "\n".join(lines)


def save_plot(result: dict, path: str | Path) -> Path:
    """Accuracy on seen classes against step, one line per memory (mean, ± std band); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 4))
    per_step = result["classes_per_step"]
    for label, memory in result["memories"].items():
        x = [(k + 1) * per_step for k in range(len(memory["accuracy_mean"]))]
        mean, std = memory["accuracy_mean"], memory["accuracy_std"]
        axis.plot(x, mean, marker="o", label=label)
        axis.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    axis.set_xlabel("classes seen")
    axis.set_ylabel("test accuracy on seen classes (%)")
    config = result["config"]
    axis.set_title(f"{Path(result['data'].rstrip('/')).name}, {config['steps']} steps: memory of {config['ipc']} stored images per class")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    tmp.replace(path)
    return path
