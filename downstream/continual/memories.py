"""Per-class replay memories, all Avalanche `ExemplarsBuffer`s usable as `ReplayPlugin(mem_size, storage_policy=...)`.

`RandomMemory`, `HerdingMemory` (by the current model's features), `CondensedMemory` (a precomputed
condensed set, sliced by the classes of each experience) and `CondensingMemory` (condense-as-you-go:
a distillation method (NCFM by default) on each experience's classes, its pool pretrained on the data seen so far).
Budget: `max_size` items in all, so a class holds `min(max_per_class, max_size // classes seen)`;
the share shrinks as classes arrive. A condensed class counts its stored canvases by default
(`count="stored"`: a multi-formation canvas is one image of storage and decodes to factor² images),
or its decoded images (`count="decoded"`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.distributed import DistributedHelper
from avalanche.training.storage_policy import ExemplarsBuffer

from condense.data import RealData
from condense.distill import make_method
from condense.errors import UserError
from condense.loop import Callback, ProgressBar, iterate
from condense.methods import method_class
from condense.pool import pretrain_pool
from condense.run import pool_spec

from .benchmark import raw_tensors, stream_dataset
from .herding import herding_order, layer_features


def _checked_count(count: str) -> str:
    if count not in ("stored", "decoded"):
        raise UserError(f"a condensed class's budget counts stored canvases or decoded images: use stored or decoded, not {count!r}")
    return count


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
        model = DistributedHelper.unwrap_model(agent.model)  # the layer's name inside DistributedDataParallel's wrapper
        features = layer_features(model, self.layer_name, data, agent.eval_mb_size, agent.device)
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


class _DrawnRows(Callback):
    """The rows (of the distiller's real data) every distillation step drew."""

    def __init__(self):
        self.rows: list[torch.Tensor] = []

    def on_step(self, distiller, record: dict) -> None:
        self.rows.append(record["real_indices"])


class CondensingMemory(ClassMemory):
    """Condense-as-you-go: at the end of each experience, the config's method (NCFM by default) on that experience's classes only.

    The matchers of a method with a pool are pretrained (in memory) on the images of the experiences seen so far, the
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
                             batched=config.batched_pool) if method_class(config.method).uses_pool else None
        distiller = make_method(config, current, pool, self.device, classes=classes)
        drawn = _DrawnRows()
        iterate(distiller, [ProgressBar(distiller, self.progress, desc=f"condensing experience {k}", leave=False), drawn])
        self.reads.append({
            "experience": k, "classes": classes,
            "pool_rows": torch.cat([p[2] for p in self.seen]) if pool is not None else source[:0], "distill_rows": source,
            "step_rows": source[torch.cat(drawn.rows).unique()] if drawn.rows else source[:0],
        })
        synthetic = distiller.synthetic_set()
        unit = config.factor**2 if self.count == "stored" else 1
        return {c: (stream_dataset(synthetic.images[synthetic.labels == c], synthetic.labels[synthetic.labels == c],
                                   bench.mean, bench.std), unit) for c in classes}

