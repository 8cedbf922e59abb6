"""A class-incremental Avalanche benchmark from any real dataset, and the item structure its streams and memories share.

Every item is (normalised image, label, task label 0); the stored images (uint8 or float in [0, 1])
stay reachable through the `raw` transform group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
from avalanche.benchmarks.utils import DataAttribute, make_avalanche_dataset
from avalanche.benchmarks.utils.transform_groups import TransformGroups
from torch.utils.data import TensorDataset

from condense.data import RealData, normalise
from condense.errors import UserError

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
