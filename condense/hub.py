"""Hub folders of condensed sets: export (rows, safetensors, preview, card), check, push, read back.

One folder = one Hub dataset repo (DESIGN.md, "The condensed-set format"):
    README.md                              card: YAML `configs:` + `dataset_info:` and a body from cards/
    <config>/train-00000-of-00001.parquet  one row per decoded training image
    <config>/synthetic.safetensors         the exact tensors and metadata
    <config>/preview.png                   one row per class
`datasets.load_dataset(folder, config)` and `load_dataset("owner/name", config)` give the same rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .card import CARD, RESERVED_NAMES, card_configs, is_config_name, read_card, render_card
from .errors import UserError
from .rows import ROWS, SET_FILE, check_agreement, read_rows, write_rows
from .runtime import write_json
from .synthetic import SyntheticSet

__all__ = ["CARD", "ROWS", "SET_FILE", "export", "folder_problems", "load_hub_folder", "load_set_source", "push", "read_card"]

ROWS_GLOB = "train-*.parquet"  # what `datasets` reads as the split; nothing else may match it
PREVIEW = "preview.png"
CONFIG_FILES = (ROWS, SET_FILE, PREVIEW)
STAGING_PREFIX = ".export-"  # an export's staging folder inside the Hub folder: .export-<pid>-<random>
STAGING_NAME = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)-\w+")
PLAN = "plan.json"  # in a staging folder: which config it replaces (written before anything moves)
PREVIOUS = "previous"  # in a staging folder: the config folder it moved out of the way
EXPORT_LOCK = ".export.lock"  # held by an export for its whole run, so two exports into one folder take turns


def load_set_source(path: str | Path, config: str | None = None) -> SyntheticSet:
    """The set of a run folder, a .safetensors file or a Hub folder (`config` of it), with its evaluation (stored, or
    the eval JSON beside a run's set)."""
    from .evaluate import evaluation_summary
    from .runtime import read_json

    path = Path(path)
    if path.is_dir() and (path / CARD).is_file():
        return load_hub_folder(path, config)
    if path.is_dir():
        if not (path / SET_FILE).is_file():
            raise UserError(f"{path} has no {SET_FILE}; pass a run folder of `condense distill` or a .safetensors set")
        set_file, eval_file = path / SET_FILE, path / "eval.json"
    else:
        set_file, eval_file = path, path.with_suffix(".eval.json")
    synthetic = SyntheticSet.load(set_file)
    if set_file.name == SET_FILE and (set_file.parent / "config.json").is_file():  # a run folder knows where its data lies here
        recorded = read_json(set_file.parent / "config.json", "run config")
        synthetic.local_source = recorded.get("resolved_data") if isinstance(recorded, dict) else None
    if not synthetic.evaluation and eval_file.is_file():
        result = read_json(eval_file, "result of `condense eval`")
        try:
            synthetic.evaluation = evaluation_summary(result)
            synthetic.check()  # the evaluation is part of the set's metadata, checked as a whole
        except (KeyError, TypeError, UserError) as exc:  # a JSON list, a dict of other things, or figures of the wrong type
            raise UserError(f"{eval_file} is not a result of `condense eval` ({type(exc).__name__}: {str(exc)[:200]}); "
                            "delete it, or write it again with `condense eval`") from exc
    return synthetic


def load_hub_folder(folder: Path, config: str | None = None) -> SyntheticSet:
    """One config of a folder written by `condense export`: its safetensors file, checked against its parquet rows
    (the rows alone when the file is missing); `config` may be omitted when the folder has one."""
    settle_exports(folder)  # a killed export's half swap is undone before anything is read
    card = read_card(folder)
    if card is None:
        raise UserError(f"{folder} has neither {CARD} nor {SET_FILE}; pass a folder written by `condense export` or `condense distill`")
    configs = card_configs(card)
    if config is None:
        if len(configs) != 1:
            raise UserError(f"{folder} holds configs {', '.join(configs)}; name one (e.g. load_condensed(..., {configs[0]!r}))")
        config = configs[0]
    if config not in configs:
        raise UserError(f"{folder} has no config {config!r}; it has {', '.join(configs)}")
    set_file, rows = folder / config / SET_FILE, sorted((folder / config).glob(ROWS_GLOB))
    origin = f"{folder} config {config!r}"
    if not set_file.is_file() and not rows:
        raise UserError(f"{origin} has neither {SET_FILE} nor parquet rows")
    if not set_file.is_file():
        return read_rows(rows, origin)
    synthetic = SyntheticSet.load(set_file)
    if rows:
        check_agreement(synthetic, read_rows(rows, origin), origin)
    return synthetic


def export(source: str | Path, out: str | Path, config: str | None = None, *, repo_id: str | None = None,
           source_id: str | None = None, license: str | None = None, pretty_name: str | None = None) -> Path:
    """Write (or add) one config of `source` into the Hub folder `out`, with a card that describes it.

    The config and the card are staged together in a hidden folder, then swapped in; the card's
    rename is the commit point. A failure before it undoes the swap, and a kill before it is undone
    by the next export, load or push (`settle_exports`), so the folder holds the old config and card
    or the new ones, never one of each. Other configs are kept untouched.
    """
    synthetic = load_set_source(source)
    config = config or f"ipc{synthetic.ipc}"
    if not is_config_name(config):
        raise UserError(f"invalid config name {config!r}: use letters, digits, '-', '_' or '.' (e.g. ipc10), not {' or '.join(RESERVED_NAMES)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder; export into a new folder or one written by `condense export`")
    if out.is_dir() and read_card(out) is None and any(not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"{out} is not empty and has no {CARD}; export into a new folder or one written by `condense export`")
    out.mkdir(parents=True, exist_ok=True)
    with export_lock(out, timeout=EXPORT_WAIT):
        _settle_all(out)
        return _export_locked(synthetic, out, config, repo_id=repo_id, source_id=source_id, license=license, pretty_name=pretty_name)


def _export_locked(synthetic: SyntheticSet, out: Path, config: str, **options) -> Path:
    """`export`'s work once it holds the folder's lock: the card read here is the one it replaces."""
    card = read_card(out)
    previous = card.data.to_dict() if card else {}
    options = {
        "repo_id": options["repo_id"] or previous.get("condense_repo_id") or f"OWNER/{out.resolve().name}",
        "source_id": options["source_id"] or (previous.get("source_datasets") or [None])[0] or _hub_id(synthetic.source_dataset),
        "license": options["license"] or previous.get("license") or "other",
        "pretty_name": options["pretty_name"] or previous.get("pretty_name") or f"{Path(synthetic.source_dataset.rstrip('/')).name} condensed with {synthetic.method.upper()}",
    }
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        write_json(staging / PLAN, {"config": config})
        staged = staging / config
        staged.mkdir(mode=0o755)  # the config folder is meant to be published
        write_rows(synthetic, staged / ROWS)
        synthetic.save(staged / SET_FILE)
        synthetic.save_preview(staged / PREVIEW)
        folders = {name: out / name for name in card_configs(card)} if card else {}
        folders[config] = staged
        staged_card = render_card(dict(sorted(folders.items())), **options)
        staged_card.save(staging / CARD)  # last: a staged card means a complete staging folder
        target = out / config
        if target.exists():
            target.rename(staging / PREVIOUS)
        staged.rename(target)
        os.replace(staging / CARD, out / CARD)  # the commit point
    finally:
        _settle(staging)
    return out / config


def _settle(staging: Path) -> None:
    """Finish with an export's staging folder: while its card is still staged (the swap did not commit), move
    the new config out and the previous one back; then remove the staging folder."""
    plan = staging / PLAN
    config = _staged_swap(staging)
    if config is not None:
        target, staged, previous = staging.parent / config, staging / config, staging / PREVIOUS
        if not staged.exists() and target.exists():
            target.rename(staged)
        if previous.exists():
            previous.rename(target)
    plan.unlink(missing_ok=True)  # first: a staging folder half removed must never be undone again
    shutil.rmtree(staging, ignore_errors=True)


def _staged_swap(staging: Path) -> str | None:
    """The config whose swap `staging` may have begun (None when its card was never staged, so nothing moved), after
    checking that it has exactly the shape `export` writes; anything else is refused before anything moves, since
    a folder from someone else could carry a staging folder crafted to move files outside it."""
    def refuse(why: str) -> UserError:
        return UserError(f"{staging} is not a staging folder `condense export` writes ({why}); nothing was changed: "
                         "remove that hidden folder if you trust the rest of the folder, or get the folder again from its source")

    if staging.is_symlink() or not staging.is_dir() or staging.resolve().parent != staging.parent.resolve():
        raise refuse("it is a link, or not a folder inside the Hub folder")
    if not os.path.lexists(staging / CARD):
        return None  # killed before its card was staged: nothing of the folder was moved, and the staging folder only goes
    plan = staging / PLAN
    if plan.is_symlink() or not plan.is_file() or (staging / CARD).is_symlink():
        raise refuse(f"its card is staged but {PLAN} is missing, or a link")
    try:
        config = json.loads(plan.read_text(encoding="utf-8")).get("config")
    except (UnicodeDecodeError, ValueError, AttributeError):
        raise refuse(f"{PLAN} is not a JSON object with a config name") from None
    if not is_config_name(config):
        raise refuse(f"{PLAN} names {config!r}, not a plain config name")
    unexpected = sorted({entry.name for entry in staging.iterdir()} - {PLAN, CARD, config, PREVIOUS})
    if unexpected:
        raise refuse(f"it holds {', '.join(unexpected)}")
    for moved in (staging / config, staging / PREVIOUS, staging.parent / config):
        if moved.is_symlink() or (moved.exists() and not moved.is_dir()):
            raise refuse(f"{moved.name} is a link or a file where a config folder belongs")
    return config


def settle_exports(folder: Path) -> None:
    """Undo what killed exports left in `folder` (see `export`); refuse while another export into it runs."""
    if not any(STAGING_NAME.fullmatch(p.name) for p in folder.glob(f"{STAGING_PREFIX}*")):
        return  # nothing to undo: a reader of a read-only folder takes no lock
    with export_lock(folder, timeout=0):
        _settle_all(folder)


def _settle_all(folder: Path) -> None:
    """`settle_exports` under the folder's lock, which the caller holds."""
    stagings = [p for p in sorted(folder.glob(f"{STAGING_PREFIX}*")) if STAGING_NAME.fullmatch(p.name)]
    for staging in stagings:  # every one checked before any is undone
        pid = int(STAGING_NAME.fullmatch(staging.name).group(1))
        if _running(pid) and pid != os.getpid():
            raise UserError(f"an export into {folder} is running (process {pid}); try again when it has finished")
        _staged_swap(staging)
    for staging in stagings:
        try:
            _settle(staging)
        except OSError as exc:
            raise UserError(f"could not undo the interrupted export in {folder} ({exc}); make the folder writable and retry") from exc


EXPORT_WAIT = 600.0  # seconds an export waits for another export into the same folder to finish


@contextmanager
def export_lock(folder: Path, timeout: float):
    """Hold `folder`'s export lock: exports into one folder take turns (each renders the card from what the other
    wrote), and undoing a killed export never races a running one. The lock dies with its process."""
    from filelock import FileLock, Timeout

    lock = FileLock(folder / EXPORT_LOCK, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"an export into {folder} is running (it holds {folder / EXPORT_LOCK}); try again when it has finished") from None
    except OSError as exc:
        raise UserError(f"could not lock {folder} for an export ({exc}); make the folder writable and retry") from exc
    try:
        yield
    finally:
        lock.release()


def _running(pid: int) -> bool:
    """Whether process `pid` (this one included) is alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _hub_id(source: str) -> str | None:
    """`source` when it names a Hub dataset rather than a local folder."""
    return None if Path(source).exists() or source.count("/") != 1 else source


def folder_problems(folder: Path) -> list[str]:
    """Everything that keeps `folder` from being a complete Hub folder of condensed sets (empty when valid)."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    try:
        card = read_card(folder)
    except UserError as exc:
        return [str(exc)]
    if card is None:
        return [f"no {CARD} (dataset card); run `condense export` into this folder"]
    yaml = card.data.to_dict()
    problems = [f"{CARD} YAML lacks '{key}'" for key in ("configs", "dataset_info") if not yaml.get(key)]
    try:
        names = card_configs(card)
    except UserError as exc:
        return [*problems, str(exc)] if yaml.get("configs") else problems
    for name in names:
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
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    if folder.is_dir():
        settle_exports(folder)
    problems = folder_problems(folder)
    if problems:
        raise UserError(f"{folder} is not a valid condensed-set folder:\n  - " + "\n  - ".join(problems))
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise UserError(f"invalid repo id {repo_id!r}; use OWNER/NAME")
    token = get_token()
    if token is None:
        raise UserError("no Hugging Face token found: run `hf auth login` or set HF_TOKEN, then push again")
    if not token.isascii() or not token.isprintable():
        raise UserError("the Hugging Face token is malformed (it holds characters a token never has); "
                        "copy it again from https://huggingface.co/settings/tokens into HF_TOKEN or `hf auth login`")
    api = HfApi(token=token)
    configs = card_configs(read_card(folder))
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, repo_type="dataset", revision=revision,
            commit_message=f"Upload condensed set ({', '.join(configs)})",
            allow_patterns=[CARD, *(f"{name}/*" for name in configs)],  # what the card lists, nothing else
            ignore_patterns=[".*", "**/.*"], delete_patterns=[f"{name}/*" for name in configs],
        )
    except HfHubHTTPError as exc:
        raise UserError(f"the Hub refused the upload to {repo_id}: {exc}") from exc
    except connection_errors() as exc:
        raise UserError(f"could not reach the Hub at {constants.ENDPOINT} to upload to {repo_id} ({exc}); "
                        "check the connection (and HF_ENDPOINT), then push again") from exc
    return commit.commit_url


def connection_errors() -> tuple[type[Exception], ...]:
    """What a failed connection to the Hub raises: the HTTP library's base error (the class `HfHubHTTPError`
    derives from: httpx in recent huggingface_hub, requests before) and OSError (requests' connection errors)."""
    from huggingface_hub.errors import HfHubHTTPError

    return (*HfHubHTTPError.__bases__, OSError)
