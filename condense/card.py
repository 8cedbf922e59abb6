"""The dataset card of a Hub folder of condensed sets: read safely, its config names checked, rendered at export.

The YAML (`configs:`, `dataset_info:`) comes from `datasets`' own card writers and the body from
cards/dataset_card.md; config names read from a card are plain folder names, since every reader and
`push` join them to the folder (a card from someone else could name `../x`).
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

from .errors import UserError
from .rows import ROWS, SET_FILE, read_parquet
from .synthetic import IMAGE_SPACES, SyntheticSet

CARD = "README.md"
CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # one plain name inside the folder: no '/', not '..', not hidden
RESERVED_NAMES = ("data", CARD)  # `data`: what `datasets` reads as a split folder; the card: the folder's own file
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
    "dance": (
        "@inproceedings{dance2024,\n"
        "  title     = {{DANCE}: Dual-View Distribution Alignment for Dataset Condensation},\n"
        "  author    = {Zhang, Hansong and Li, Shikun and Lin, Fanzhao and Wang, Weiping and Qian, Zhenxing and Ge, Shiming},\n"
        "  booktitle = {Proceedings of the International Joint Conference on Artificial Intelligence (IJCAI)},\n"
        "  year      = {2024}\n}"
    ),
    "dm": (
        "@inproceedings{dm2023,\n"
        "  title     = {Dataset Condensation with Distribution Matching},\n"
        "  author    = {Zhao, Bo and Bilen, Hakan},\n"
        "  booktitle = {Proceedings of the IEEE/CVF Winter Conference on Applications of Computer Vision (WACV)},\n"
        "  year      = {2023}\n}"
    ),
    "herding": (
        "@inproceedings{icarl2017,\n"
        "  title     = {{iCaRL}: Incremental Classifier and Representation Learning},\n"
        "  author    = {Rebuffi, Sylvestre-Alvise and Kolesnikov, Alexander and Sperl, Georg and Lampert, Christoph H.},\n"
        "  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
        "  year      = {2017}\n}"
    ),
    "kcenter": (
        "@inproceedings{coreset2018,\n"
        "  title     = {Active Learning for Convolutional Neural Networks: A Core-Set Approach},\n"
        "  author    = {Sener, Ozan and Savarese, Silvio},\n"
        "  booktitle = {International Conference on Learning Representations (ICLR)},\n"
        "  year      = {2018}\n}"
    ),
}


# The arXiv id of each method's paper (a set's method, or the layout it was imported from), for the card's links.
ARXIV = {"ncfm": "2502.20653", "dance": "2406.01063", "dm": "2110.04181", "herding": "1611.07725", "kcenter": "1708.00489",
         "dc": "2006.05929", "datadam": "2310.00093", "idc": "2205.14959", "mtt": "2203.11932", "datm": "2310.05773"}


def read_card(folder: Path):
    """The folder's `DatasetCard`, or None when it has none; YAML is read safely (no tags that build objects)."""
    import yaml
    from huggingface_hub import DatasetCard

    path = folder / CARD
    if not path.is_file():
        return None
    try:
        return DatasetCard.load(path)
    except (ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: the card's YAML does not parse ({str(exc).splitlines()[0]}); "
                        "restore the card written by `condense export`, or export into a new folder") from exc


def card_configs(card) -> list[str]:
    """The config names in a card's YAML `configs:` list, each a plain name inside the folder (a crafted card could
    name `../x`, and every reader and `push` join these names to the folder)."""
    entries = card.data.to_dict().get("configs")
    if not entries:
        raise UserError(f"{CARD} lists no configs in its YAML front matter; pass a folder written by `condense export`")
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise UserError(f"{CARD}: the YAML's `configs` is not a list of config entries; restore the card written by `condense export`")
    names = [entry.get("config_name", "default") for entry in entries]
    for name in names:
        if not is_config_name(name):
            raise UserError(f"{CARD}: the YAML names a config {name!r} that is not a plain folder name; "
                            "restore the card written by `condense export`, and do not trust the folder it came with")
    return names


def is_config_name(name) -> bool:
    """Whether `name` can be a config folder of a Hub folder: a plain name (letters, digits, '-', '_', '.'), not reserved."""
    return isinstance(name, str) and CONFIG_NAME.fullmatch(name) is not None and name not in RESERVED_NAMES


def config_info(config_folder: Path, config: str):
    """`datasets.DatasetInfo` of one exported config, computed from its files."""
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo

    rows = config_folder / ROWS
    table = read_parquet(rows)
    splits = SplitDict()
    splits.add(SplitInfo(name="train", num_bytes=table.nbytes, num_examples=table.num_rows))
    size = rows.stat().st_size
    return DatasetInfo(config_name=config, features=Features.from_arrow_schema(table.schema), splits=splits,
                       download_size=size, dataset_size=table.nbytes)


def render_card(config_folders: dict[str, Path], *, repo_id: str, source_id: str | None, license: str, pretty_name: str):
    """The card of configs read from `config_folders` (name -> folder, staged or in place): YAML from `datasets`'
    own card writers, body from cards/dataset_card.md; the YAML's data paths are `<name>/train-*`."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    sets = {name: SyntheticSet.load(folder / SET_FILE) for name, folder in config_folders.items()}
    count = max(len(s) for s in sets.values())
    data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        task_categories=["image-classification"],
        tags=sorted(set(TAGS) | {s.method for s in sets.values()} | {f"ipc-{s.ipc}" for s in sets.values()}),
        annotations_creators=["machine-generated"],
        size_categories=["n<1K" if count < 1000 else "1K<n<10K" if count < 10_000 else "10K<n<100K"],
        condense_repo_id=repo_id,
    )
    if source_id:
        data.source_datasets = [source_id]
    DatasetInfosDict({name: config_info(folder, name) for name, folder in config_folders.items()}).to_dataset_card_data(data)
    MetadataConfigs({name: {"data_files": [{"split": "train", "path": f"{name}/train-*"}]} for name in config_folders}).to_dataset_card_data(data)
    return DatasetCard.from_template(
        data,
        template_path=str(template_path()),
        pretty_name=pretty_name,
        repo_id=repo_id,
        source_id=source_id,
        configs=[_card_context(name, s) for name, s in sets.items()],
        citations=[CITATIONS[m] for m in sorted({s.method for s in sets.values()}) if m in CITATIONS],
    )


def _card_context(name: str, synthetic: SyntheticSet) -> dict:
    """What the card template shows of one config."""
    recorded = dict(synthetic.config)
    own = recorded.pop("method_settings", None)  # a method's own settings, shown beside the shared ones
    own = own if isinstance(own, dict) else {}
    settings = {k: v for k, v in {**recorded, **own}.items() if k not in ("data", "pool_folder")}
    evaluation = synthetic.evaluation
    protocol = evaluation.get("protocol", {})
    return {
        "name": name,
        "summary": synthetic.summary(),
        "method": synthetic.method,
        "arxiv": ARXIV.get(synthetic.method),
        "ipc": synthetic.ipc,
        "factor": synthetic.factor,
        "images": len(synthetic),
        "shape": "x".join(map(str, synthetic.images.shape[1:])),
        "soft_labels": synthetic.soft_labels is not None,
        "image_space": IMAGE_SPACES[synthetic.image_space],
        "imported": synthetic.config.get("import"),
        "learned_lr": synthetic.learned_lr,
        "source": synthetic.source_dataset + (f" (a local folder; split {synthetic.source_fingerprint})" if synthetic.source_fingerprint else ""),
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
