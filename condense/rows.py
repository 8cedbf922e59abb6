"""The parquet rows of one exported config: one row per decoded training image, bit-exact with the safetensors file.

The rows are what `datasets.load_dataset(folder, config)` reads; the set's metadata rides in the parquet
schema, so a folder whose safetensors file is missing still loads (`read_rows`), and `check_agreement`
refuses rows that differ from the exact tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import UserError
from .synthetic import SyntheticSet

ROWS = "train-00000-of-00001.parquet"
SET_FILE = "synthetic.safetensors"
ROWS_METADATA_KEY = b"condensed_set"  # the set's string metadata, kept in the parquet schema for the fallback path


def row_features(synthetic: SyntheticSet):
    """The `datasets` features of the rows: PNG preview, exact float32 pixels, class label, soft label."""
    from datasets import Array3D, ClassLabel, Features, Image, List, Value

    features = {
        "image": Image(),
        "pixel_values": Array3D(shape=tuple(synthetic.images.shape[1:]), dtype="float32"),
        "label": ClassLabel(names=list(synthetic.class_names)),
    }
    if synthetic.soft_labels is not None:
        features["soft_label"] = List(Value("float32"), length=synthetic.num_classes)
    return Features(features)


def write_rows(synthetic: SyntheticSet, path: Path) -> None:
    """The parquet rows of the decoded images, with the set's metadata in the schema for `read_rows`."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from torchvision.transforms.functional import to_pil_image

    columns = {
        # the PNG preview clamps to [0, 1]; pixel_values keep the exact values (an imported set's may overshoot it)
        "image": [to_pil_image(image) for image in synthetic.images.mul(255).round().clamp(0, 255).to(torch.uint8)],
        "pixel_values": synthetic.images.numpy(),
        "label": synthetic.labels.numpy(),
    }
    if synthetic.soft_labels is not None:
        columns["soft_label"] = synthetic.soft_labels.numpy()
    table = Dataset.from_dict(columns, features=row_features(synthetic)).data.table
    schema_metadata = {**(table.schema.metadata or {}), ROWS_METADATA_KEY: json.dumps(synthetic.metadata()).encode()}
    pq.write_table(table.replace_schema_metadata(schema_metadata), path)


def read_rows(paths: list[Path], origin: str) -> SyntheticSet:
    """A set rebuilt from parquet rows written by `write_rows` (exact pixels; no canvases)."""
    import pyarrow as pa
    from datasets import Dataset

    tables = [read_parquet(path) for path in sorted(paths)]
    raw = (tables[0].schema.metadata or {}).get(ROWS_METADATA_KEY)
    if raw is None:
        raise UserError(f"{origin}: the parquet rows carry no condensed-set metadata; they were not written by `condense export`")
    rows = Dataset(pa.concat_tables(tables))
    columns = [name for name in ("pixel_values", "label", "soft_label") if name in rows.column_names]
    values = rows.with_format("torch", columns=columns)[:]
    tensors = {"images": values["pixel_values"].float(), "labels": values["label"].long()}
    if "soft_label" in values:
        tensors["soft_labels"] = values["soft_label"].float()
    try:
        metadata = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # json.loads recurses once per level: a deeply nested value exhausts the stack
        raise UserError(f"{origin}: the parquet rows' condensed-set metadata is not readable JSON ({str(exc)[:200]}); export the set again") from exc
    synthetic = SyntheticSet.from_parts(tensors, metadata, origin=origin)
    if rows.features["label"].names != synthetic.class_names:
        raise UserError(f"{origin}: the label column's class names differ from the set's metadata")
    return synthetic


def read_parquet(path: Path):
    """A parquet file as an Arrow table; an unreadable one is a UserError that names it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path} is not a readable parquet file ({exc}); export that config again") from exc


def check_agreement(exact: SyntheticSet, rows: SyntheticSet, origin: str) -> None:
    """Raise unless the parquet rows hold exactly the safetensors tensors (bit for bit)."""
    pairs = {"images": (exact.images, rows.images), "labels": (exact.labels, rows.labels), "soft labels": (exact.soft_labels, rows.soft_labels)}
    differ = [name for name, (a, b) in pairs.items() if (a is None) != (b is None) or (a is not None and not torch.equal(a, b))]
    if exact.class_names != rows.class_names:
        differ.append("class names")
    if differ:
        raise UserError(f"{origin}: the parquet rows and {SET_FILE} disagree on {', '.join(differ)}; export the folder again")
