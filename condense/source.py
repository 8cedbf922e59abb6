"""The typed data source: where real images come from and how to read them (in the spirit of `datasets`' BuilderConfig).

The command lines build one from their flags, `DistillConfig.source` from its settings, and a set
file from what it recorded (`SyntheticSet.data_source`), so every reader of real data takes the same
object instead of a dict of options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import UserError
from .runtime import is_local

# Old names of the source's settings, still read from set files and run folders written before the rename.
RENAMED_SOURCE_SETTINGS = {"data_config": "dataset_config"}


@dataclass(frozen=True)
class DataSource:
    """A Hub id or a local folder in Hub layout, with the dataset config, revision, columns and image size to read it with."""

    path: str = field(metadata={"help": "Hub id (uoft-cs/cifar10) or local folder in Hub layout (../shared/data/cifar10)"})
    dataset_config: str | None = field(default=None, metadata={"help": "the dataset's config name, if it has several"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) of the dataset; recorded in the set"})
    image_column: str | None = field(default=None, metadata={"help": "image column (default: the only Image column)"})
    label_column: str | None = field(default=None, metadata={"help": "class-label column (default: the only ClassLabel column)"})
    image_size: int | None = field(default=None, metadata={"help": "resize images to N x N (needed when sizes differ)"})

    def __post_init__(self) -> None:
        check_revision(self.path, self.revision)

    def load(self, split: str, *, memory_mapped: bool = False, streaming: bool = False, per_class: int | None = None, seed: int = 0):
        """One split as `RealData`: in memory (default), memory-mapped, or streamed (`per_class` random images per class)."""
        from .data import load_real

        return load_real(self.path, split, config=self.dataset_config, revision=self.revision, image_column=self.image_column,
                         label_column=self.label_column, image_size=self.image_size, memory_mapped=memory_mapped,
                         streaming=streaming, per_class=per_class, seed=seed)

    def options(self) -> dict:
        """The settings other than the path that are set, by name (what a set records besides its source)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)[1:] if getattr(self, f.name) is not None}

    def replace(self, **changes) -> DataSource:
        """A copy with `changes` applied where they are not None (flags left out keep the recorded value)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_record(cls, path: str, record: dict) -> DataSource:
        """The source `record` (a run's settings or a set's config, old names included) describes for `path`."""
        record = {RENAMED_SOURCE_SETTINGS.get(k, k): v for k, v in record.items()}
        if is_local(path):  # sets and runs made before the check recorded an ignored revision with a local folder
            record.pop("revision", None)
        names = [f.name for f in dataclasses.fields(cls)[1:]]
        return cls(path, **{name: record[name] for name in names if record.get(name) is not None})


def check_revision(path: str, revision: str | None) -> None:
    """A revision is the Hub's: refused for a local folder, where it would be ignored yet recorded (and name a pool folder)."""
    if revision is not None and is_local(path):
        raise UserError(f"--revision {revision!r} names a Hub revision, but {path} is a local folder, which has none; "
                        "drop --revision (or pass the Hub id)")


SOURCE_SETTINGS = tuple(f.name for f in dataclasses.fields(DataSource)[1:])
