"""`load_condensed`: a condensed set from a file, a run folder, a Hub folder or a Hub repo id."""

from __future__ import annotations

import re
from pathlib import Path

from condense.errors import UserError
from condense.hub import CARD, SET_FILE, connection_errors, load_hub_folder
from condense.synthetic import SyntheticSet


def load_condensed(source: str | Path, config: str | None = None, revision: str | None = None) -> SyntheticSet:
    """The set (images, labels, soft labels, class names, mean/std, metadata) named by `source`.

    `source` is a .safetensors file, a `condense distill` run folder, a folder written by
    `condense export`, or a Hub dataset repo id (downloaded through `huggingface_hub`, cached).
    In a Hub folder or repo the safetensors file is preferred and the parquet rows are the
    fallback; when both exist they must agree bit for bit. `config` may be omitted when there is one.
    """
    synthetic = _load(source, config, revision)
    synthetic.require_pixels("downstream training")
    return synthetic


def _load(source: str | Path, config: str | None, revision: str | None) -> SyntheticSet:
    path = Path(source)
    if path.is_file():
        return SyntheticSet.load(path)
    if path.is_dir():
        if not (path / CARD).is_file() and (path / SET_FILE).is_file():
            return SyntheticSet.load(path / SET_FILE)
        return load_hub_folder(path, config)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)):
        return load_hub_folder(_download(str(source), config, revision), config)
    raise UserError(f"{source} is neither a file, a folder nor a Hub repo id (OWNER/NAME)")


def _download(repo_id: str, config: str | None, revision: str | None) -> Path:
    """A local snapshot of the card and the config's files of a Hub dataset repo."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = [CARD, f"{config}/*"] if config else [CARD, "*/" + SET_FILE, "*/train-*"]
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=patterns))
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise UserError(f"no dataset repo {repo_id!r}{f' at revision {revision!r}' if revision else ''} on the Hub (or no access: log in with `hf auth login`)") from exc
    except HfHubHTTPError as exc:
        raise UserError(f"could not download {repo_id!r} from the Hub: {exc}") from exc
    except connection_errors() as exc:  # offline and not in the local cache
        raise UserError(f"could not reach the Hub at {constants.ENDPOINT} to download {repo_id!r}, and it is not in the local cache "
                        f"({str(exc).splitlines()[0]}); check the connection (and HF_ENDPOINT), then try again") from exc
