"""Hub folders of condensed sets: export (rows, safetensors, preview, card), check, push, read back.

One folder = one Hub dataset repo (DESIGN.md, "The condensed-set format"):
    README.md                              card: YAML `configs:` + `dataset_info:` and a body from cards/
    <config>/train-00000-of-00001.parquet  one row per decoded training image
    <config>/synthetic.safetensors         the exact tensors and metadata
    <config>/preview.png                   one row per class
`datasets.load_dataset(folder, config)` and `load_dataset("owner/name", config)` give the same rows.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import UserError
from .synthetic import SyntheticSet

CARD = "README.md"
ROWS = "train-00000-of-00001.parquet"
ROWS_GLOB = "train-*.parquet"  # what `datasets` reads as the split; nothing else may match it
SET_FILE = "synthetic.safetensors"
PREVIEW = "preview.png"
CONFIG_FILES = (ROWS, SET_FILE, PREVIEW)
ROWS_METADATA_KEY = b"condensed_set"  # the set's string metadata, kept in the parquet schema for the fallback path
CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
CARD_TEMPLATE = "dataset_card.md"
TAGS = ["dataset-condensation", "dataset-distillation", "synthetic", "image-classification"]
CITATIONS = {
    "ncfm": (
        "@inproceedings{ncfm2025,\n"
        "  title     = {Dataset Distillation with Neural Characteristic Function: A Minmax Perspective},\n"
        "  author    = {Wang, Shaobo and others},\n"
        "  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
        "  year      = {2025}\n}"
    ),
}


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
        "image": [to_pil_image(image) for image in synthetic.images.mul(255).round().to(torch.uint8)],
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
    import pyarrow.parquet as pq
    from datasets import Dataset

    tables = [pq.read_table(path) for path in sorted(paths)]
    raw = (tables[0].schema.metadata or {}).get(ROWS_METADATA_KEY)
    if raw is None:
        raise UserError(f"{origin}: the parquet rows carry no condensed-set metadata; they were not written by `condense export`")
    rows = Dataset(pa.concat_tables(tables))
    columns = [name for name in ("pixel_values", "label", "soft_label") if name in rows.column_names]
    values = rows.with_format("torch", columns=columns)[:]
    tensors = {"images": values["pixel_values"].float(), "labels": values["label"].long()}
    if "soft_label" in values:
        tensors["soft_labels"] = values["soft_label"].float()
    metadata = json.loads(raw)
    if rows.features["label"].names != json.loads(metadata["class_names"]):
        raise UserError(f"{origin}: the label column's class names differ from the set's metadata")
    return SyntheticSet.from_parts(tensors, metadata, origin=origin)


def check_agreement(exact: SyntheticSet, rows: SyntheticSet, origin: str) -> None:
    """Raise unless the parquet rows hold exactly the safetensors tensors (bit for bit)."""
    pairs = {"images": (exact.images, rows.images), "labels": (exact.labels, rows.labels), "soft labels": (exact.soft_labels, rows.soft_labels)}
    differ = [name for name, (a, b) in pairs.items() if (a is None) != (b is None) or (a is not None and not torch.equal(a, b))]
    if exact.class_names != rows.class_names:
        differ.append("class names")
    if differ:
        raise UserError(f"{origin}: the parquet rows and {SET_FILE} disagree on {', '.join(differ)}; export the folder again")


def load_set_source(path: str | Path) -> SyntheticSet:
    """The set of a run folder or a .safetensors file, with its evaluation (stored, or the eval JSON beside it)."""
    from .evaluate import evaluation_summary

    path = Path(path)
    if path.is_dir():
        if not (path / SET_FILE).is_file():
            raise UserError(f"{path} has no {SET_FILE}; pass a run folder of `condense distill` or a .safetensors set")
        set_file, eval_file = path / SET_FILE, path / "eval.json"
    else:
        set_file, eval_file = path, path.with_suffix(".eval.json")
    synthetic = SyntheticSet.load(set_file)
    if not synthetic.evaluation and eval_file.is_file():
        synthetic.evaluation = evaluation_summary(json.loads(eval_file.read_text()))
    return synthetic


def read_card(folder: Path):
    """The folder's `DatasetCard`, or None when it has none."""
    from huggingface_hub import DatasetCard

    path = folder / CARD
    return DatasetCard.load(path) if path.is_file() else None


def card_configs(card) -> list[str]:
    """The config names in a card's YAML `configs:` list."""
    return [entry.get("config_name", "default") for entry in (card.data.to_dict().get("configs") or [])]


def export(source: str | Path, out: str | Path, config: str | None = None, *, repo_id: str | None = None,
           source_id: str | None = None, license: str | None = None, pretty_name: str | None = None) -> Path:
    """Write (or add) one config of `source` into the Hub folder `out`, then re-render its card.

    The config is staged in a hidden folder and renamed into place, so a failure leaves the folder
    as it was; other configs are kept untouched.
    """
    synthetic = load_set_source(source)
    config = config or f"ipc{synthetic.ipc}"
    if not CONFIG_NAME.fullmatch(config) or config == "data":
        raise UserError(f"invalid config name {config!r}: use letters, digits, '-', '_' or '.' (e.g. ipc10)")
    out = Path(out)
    card = read_card(out) if out.is_dir() else None
    if out.is_dir() and card is None and any(not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"{out} is not empty and has no {CARD}; export into a new folder or one written by `condense export`")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config}.staging-", dir=out))
    staging.chmod(0o755)  # mkdtemp makes it private; the config folder is meant to be published
    try:
        write_rows(synthetic, staging / ROWS)
        synthetic.save(staging / SET_FILE)
        synthetic.save_preview(staging / PREVIEW)
        target = out / config
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{config}.old-", dir=out))
            target.rename(retired / config)
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    configs = sorted(set(card_configs(card) if card else []) | {config})
    previous = card.data.to_dict() if card else {}
    options = {
        "repo_id": repo_id or previous.get("condense_repo_id") or f"OWNER/{out.resolve().name}",
        "source_id": source_id or previous.get("source_datasets", [None])[0] or _hub_id(synthetic.source_dataset),
        "license": license or previous.get("license") or "other",
        "pretty_name": pretty_name or previous.get("pretty_name") or f"{Path(synthetic.source_dataset.rstrip('/')).name} condensed with {synthetic.method.upper()}",
    }
    write_card(out, configs, **options)
    return out / config


def _hub_id(source: str) -> str | None:
    """`source` when it names a Hub dataset rather than a local folder."""
    return None if Path(source).exists() or source.count("/") != 1 else source


def config_info(folder: Path, config: str):
    """`datasets.DatasetInfo` of one exported config, computed from its files."""
    import pyarrow.parquet as pq
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo

    rows = folder / config / ROWS
    table = pq.read_table(rows)
    splits = SplitDict()
    splits.add(SplitInfo(name="train", num_bytes=table.nbytes, num_examples=table.num_rows))
    size = rows.stat().st_size
    return DatasetInfo(config_name=config, features=Features.from_arrow_schema(table.schema), splits=splits,
                       download_size=size, dataset_size=table.nbytes)


def write_card(folder: Path, configs: list[str], *, repo_id: str, source_id: str | None, license: str, pretty_name: str) -> None:
    """Render README.md: YAML from `datasets`' own card writers, body from cards/dataset_card.md."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    sets = {name: SyntheticSet.load(folder / name / SET_FILE) for name in configs}
    count = max(len(s) for s in sets.values())
    data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        task_categories=["image-classification"],
        tags=sorted(set(TAGS) | {s.method for s in sets.values()}),
        size_categories=["n<1K" if count < 1000 else "1K<n<10K" if count < 10_000 else "10K<n<100K"],
        condense_repo_id=repo_id,
    )
    if source_id:
        data.source_datasets = [source_id]
    DatasetInfosDict({name: config_info(folder, name) for name in configs}).to_dataset_card_data(data)
    MetadataConfigs({name: {"data_files": [{"split": "train", "path": f"{name}/train-*"}]} for name in configs}).to_dataset_card_data(data)
    card = DatasetCard.from_template(
        data,
        template_path=str(template_path()),
        pretty_name=pretty_name,
        repo_id=repo_id,
        source_id=source_id,
        configs=[_card_context(name, s) for name, s in sets.items()],
        citations=[CITATIONS[m] for m in sorted({s.method for s in sets.values()}) if m in CITATIONS],
    )
    tmp = folder / f".{CARD}.tmp"
    card.save(tmp)
    tmp.replace(folder / CARD)


def _card_context(name: str, synthetic: SyntheticSet) -> dict:
    """What the card template shows of one config."""
    settings = {k: v for k, v in synthetic.config.items() if k not in ("data", "pool_folder")}
    evaluation = synthetic.evaluation
    protocol = evaluation.get("protocol", {})
    return {
        "name": name,
        "summary": synthetic.summary(),
        "method": synthetic.method,
        "ipc": synthetic.ipc,
        "factor": synthetic.factor,
        "images": len(synthetic),
        "shape": "x".join(map(str, synthetic.images.shape[1:])),
        "soft_labels": synthetic.soft_labels is not None,
        "source": synthetic.source_dataset,
        "mean": list(synthetic.mean),
        "std": list(synthetic.std),
        "settings": settings,
        "evaluation": evaluation,
        "protocol_net": f"{protocol.get('net', '?')}({', '.join(f'{k}={v}' for k, v in protocol.get('net_options', {}).items())})",
        "protocol_train": protocol.get("train", {}),
    }


def template_path() -> Path:
    """The card template: cards/ is installed as the package `condense.cards` (pyproject.toml), in editable installs and wheels alike."""
    return Path(str(importlib.resources.files("condense.cards") / CARD_TEMPLATE))


def folder_problems(folder: Path) -> list[str]:
    """Everything that keeps `folder` from being a complete Hub folder of condensed sets (empty when valid)."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    import yaml

    try:
        card = read_card(folder)
    except (ValueError, yaml.YAMLError) as exc:
        return [f"{CARD} does not parse ({exc})"]
    if card is None:
        return [f"no {CARD} (dataset card); run `condense export` into this folder"]
    yaml = card.data.to_dict()
    problems = [f"{CARD} YAML lacks '{key}'" for key in ("configs", "dataset_info") if not yaml.get(key)]
    for name in card_configs(card):
        missing = [file for file in CONFIG_FILES if not (folder / name / file).is_file()]
        if missing:
            problems.append(f"config {name!r} lacks {', '.join(missing)}")
            continue
        try:
            check_agreement(SyntheticSet.load(folder / name / SET_FILE), read_rows([folder / name / ROWS], f"{folder / name}"), f"config {name!r}")
        except UserError as exc:
            problems.append(str(exc))
    return problems


def push(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None) -> str:
    """Create the dataset repo if needed and upload the folder in one commit; returns the commit URL.

    The token comes from the usual places (HF_TOKEN, `hf auth login`) and is never printed.
    One commit means a failed upload leaves the repo as it was, never half a set.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    problems = folder_problems(folder)
    if problems:
        raise UserError(f"{folder} is not a valid condensed-set folder:\n  - " + "\n  - ".join(problems))
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise UserError(f"invalid repo id {repo_id!r}; use OWNER/NAME")
    token = get_token()
    if token is None:
        raise UserError("no Hugging Face token found: run `hf auth login` or set HF_TOKEN, then push again")
    api = HfApi(token=token)
    configs = card_configs(read_card(folder))
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, repo_type="dataset", revision=revision,
            commit_message=f"Upload condensed set ({', '.join(configs)})",
            ignore_patterns=[".*", "**/.*"], delete_patterns=[f"{name}/*" for name in configs],
        )
    except HfHubHTTPError as exc:
        raise UserError(f"the Hub refused the upload to {repo_id}: {exc}") from exc
    return commit.commit_url
