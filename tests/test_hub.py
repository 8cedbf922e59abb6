"""Hub folders: export, card, load back (folder and repo id), push through a Hub stand-in on loopback."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from condense.errors import UserError
from condense.hub import (
    ROWS,
    SET_FILE,
    export,
    folder_problems,
    push,
    read_card,
    write_rows,
)
from condense.synthetic import SyntheticSet
from downstream import load_condensed

sys.path.insert(0, str(Path(__file__).parent))
from conftest import assert_one_error, write_image_folder
from hub_standin import HubStandIn


def saved(tmp_path: Path, synthetic: SyntheticSet, name: str) -> Path:
    return synthetic.save(tmp_path / f"{name}.safetensors")


@pytest.fixture
def hub_folder(tmp_path, tiny_set):
    """A Hub folder with config `ipc6` of the tiny set, which carries an evaluation result."""
    tiny_set.evaluation = {"accuracy_mean": 61.5, "accuracy_std": 0.5, "run_accuracies": [61.0, 62.0], "labels": "soft",
                           "test": "tiny [test], 12 images", "protocol": {"net": "convnet", "net_options": {"width": 8}, "train": {"epochs": 3}}}
    folder = tmp_path / "hub"
    export(saved(tmp_path, tiny_set, "tiny"), folder, source_id="owner/tiny", repo_id="tester/tiny-ncfm")
    return folder


def test_rows_equal_the_safetensors_tensors_bit_for_bit(hub_folder, tiny_set):
    from datasets import load_dataset

    rows = load_dataset(str(hub_folder), "ipc6", split="train").with_format("torch")
    batch = rows[:]
    assert batch["pixel_values"].dtype == torch.float32 and batch["pixel_values"].shape == (12, 3, 8, 8)
    stored = SyntheticSet.load(hub_folder / "ipc6" / SET_FILE)
    assert torch.equal(batch["pixel_values"].view(torch.int32), stored.images.view(torch.int32))
    assert torch.equal(batch["pixel_values"], tiny_set.images)
    assert torch.equal(batch["label"], tiny_set.labels)
    assert torch.equal(batch["soft_label"], tiny_set.soft_labels)
    assert rows.features["label"].names == ["blue", "red"]
    preview = rows[0]["image"]  # the lossy PNG column: the 8-bit quantisation of the exact pixels
    assert torch.equal(preview, tiny_set.images[0].mul(255).round().to(torch.uint8))


def test_card_yaml_parses_and_names_every_config(hub_folder, tmp_path, tiny_set):
    from huggingface_hub import DatasetCard

    second = dataclasses.replace(tiny_set, images=tiny_set.images.flip(0), soft_labels=None, ipc=3, evaluation={})
    before = {p.name: p.read_bytes() for p in (hub_folder / "ipc6").iterdir()}
    export(saved(tmp_path, second, "second"), hub_folder)
    assert {p.name: p.read_bytes() for p in (hub_folder / "ipc6").iterdir()} == before  # the first config is intact
    card = DatasetCard.load(hub_folder / "README.md")
    yaml = card.data.to_dict()
    assert [c["config_name"] for c in yaml["configs"]] == ["ipc3", "ipc6"]
    assert [c["data_files"][0]["path"] for c in yaml["configs"]] == ["ipc3/train-*", "ipc6/train-*"]
    assert sorted(info["config_name"] for info in yaml["dataset_info"]) == ["ipc3", "ipc6"]
    assert yaml["source_datasets"] == ["owner/tiny"] and yaml["task_categories"] == ["image-classification"]
    assert yaml["license"] and yaml["pretty_name"] and "dataset-condensation" in yaml["tags"]
    assert "![preview of ipc6](ipc6/preview.png)" in card.text
    assert "61.50 ± 0.50 %" in card.text and "final epoch" in card.text  # the figures with their protocol
    assert 'load_dataset("tester/tiny-ncfm", "ipc3"' in card.text  # the repo id is kept across exports
    assert load_condensed(hub_folder, "ipc3").ipc == 3 and load_condensed(hub_folder, "ipc6").ipc == 6


def test_load_condensed_prefers_safetensors_and_falls_back_to_rows(hub_folder, tiny_set, capsys):
    from downstream.cli import main

    assert main(["info", str(hub_folder)]) == 0 and "per class: blue 6, red 6" in capsys.readouterr().out
    exact = load_condensed(hub_folder)
    assert torch.equal(exact.images, tiny_set.images) and exact.evaluation["accuracy_mean"] == 61.5
    (hub_folder / "ipc6" / SET_FILE).unlink()
    rows = load_condensed(hub_folder, "ipc6")
    assert torch.equal(rows.images, tiny_set.images) and torch.equal(rows.soft_labels, tiny_set.soft_labels)
    assert (rows.class_names, rows.mean, rows.method, rows.ipc) == (tiny_set.class_names, tiny_set.mean, "test", 6)


def test_load_condensed_refuses_rows_that_disagree_with_the_tensors(hub_folder, tiny_set):
    tampered = dataclasses.replace(tiny_set, images=tiny_set.images.clone())
    tampered.images[0, 0, 0, 0] = torch.nextafter(tampered.images[0, 0, 0, 0], torch.tensor(2.0))  # one ulp
    write_rows(tampered, hub_folder / "ipc6" / ROWS)
    with pytest.raises(UserError, match="disagree on images"):
        load_condensed(hub_folder, "ipc6")
    assert "disagree on images" in " ".join(folder_problems(hub_folder))


def test_export_failure_leaves_the_folder_as_it_was(hub_folder, tmp_path, tiny_set, monkeypatch):
    before = sorted(str(p.relative_to(hub_folder)) for p in hub_folder.rglob("*"))
    card = (hub_folder / "README.md").read_text()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr("condense.hub.write_rows", broken)
    with pytest.raises(OSError):
        export(saved(tmp_path, tiny_set, "again"), hub_folder)
    assert sorted(str(p.relative_to(hub_folder)) for p in hub_folder.rglob("*")) == before
    assert (hub_folder / "README.md").read_text() == card


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (hidden ones too) with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def exported_copy(folder: Path, source: Path, name: str) -> dict[str, bytes | None]:
    """The snapshot `folder` would have after a successful export of `source` (done on a copy)."""
    import shutil

    copy = folder.parent / name
    shutil.copytree(folder, copy)
    export(source, copy)
    return snapshot(copy)


def test_export_failing_on_another_config_leaves_the_folder_as_it_was(hub_folder, tmp_path, tiny_set):
    export(saved(tmp_path, dataclasses.replace(tiny_set, ipc=3, evaluation={}), "three"), hub_folder)
    (hub_folder / "ipc3" / SET_FILE).write_bytes((hub_folder / "ipc3" / SET_FILE).read_bytes()[:-64])  # unreadable
    before = snapshot(hub_folder)
    new = saved(tmp_path, dataclasses.replace(tiny_set, images=tiny_set.images.flip(0)), "new")
    with pytest.raises(UserError, match="ipc3/synthetic.safetensors is not a readable safetensors file"):
        export(new, hub_folder)
    assert snapshot(hub_folder) == before  # ipc6 was not replaced under the old card


def fail_the_nth_move(monkeypatch, n: int) -> None:
    """Make the n-th os.replace or os.rename from now on raise OSError; the others run."""
    calls = []

    def failing(real):
        def move(src, dst, *args, **kwargs):
            calls.append(dst)
            if len(calls) == n:
                raise OSError(f"injected fault at move {n}")
            return real(src, dst, *args, **kwargs)
        return move

    monkeypatch.setattr(os, "replace", failing(os.replace))
    monkeypatch.setattr(os, "rename", failing(os.rename))


def test_export_interrupted_at_any_step_of_its_swap_leaves_the_old_folder_or_the_new_one(hub_folder, tmp_path, tiny_set, monkeypatch):
    """A fault at each rename of an export (the staged files, then the swap of config and card) leaves the folder
    byte for byte as it was; once no step fails, it is byte for byte the new one. Never the new config under the old card."""
    new = saved(tmp_path, dataclasses.replace(tiny_set, images=tiny_set.images.flip(0), evaluation={}), "new")
    before, after = snapshot(hub_folder), exported_copy(hub_folder, new, "reference")
    assert after != before
    for fail_at in range(1, 20):
        fail_the_nth_move(monkeypatch, fail_at)
        try:
            export(new, hub_folder)
        except OSError as exc:
            assert f"at move {fail_at}" in str(exc)
            monkeypatch.undo()
            assert snapshot(hub_folder) == before, f"fault at move {fail_at} left a mixed folder"
        else:
            monkeypatch.undo()
            break
    moves_in_an_export = fail_at - 1
    assert moves_in_an_export >= 6  # 3 staged files, then the old config out, the new one in, the card
    assert snapshot(hub_folder) == after


def test_export_killed_in_its_swap_is_undone_by_the_next_use(hub_folder, tmp_path, tiny_set):
    """A kill between moving the new config in and replacing the card (the worst point) leaves a staging folder
    that the next export, load or push undoes: the folder is the old one again, byte for byte."""
    new = saved(tmp_path, dataclasses.replace(tiny_set, images=tiny_set.images.flip(0), evaluation={}), "new")
    before = snapshot(hub_folder)
    code = f"""
        import os, signal
        from condense.hub import export
        replace = os.replace
        def kill_before_the_card(src, dst, *args, **kwargs):
            if str(dst) == {str(hub_folder / "README.md")!r}:
                os.kill(os.getpid(), signal.SIGKILL)
            return replace(src, dst, *args, **kwargs)
        os.replace = kill_before_the_card
        export({str(new)!r}, {str(hub_folder)!r})
    """
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert snapshot(hub_folder) != before  # the new ipc6 is in place under the old card
    assert torch.equal(load_condensed(hub_folder).images, tiny_set.images)  # the next use undoes the swap
    assert snapshot(hub_folder) == before


def _closed_port_endpoint() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once it is closed


def _set_with_metadata(tmp_path: Path, tiny_set, name: str, **changes) -> Path:
    """The tiny set's file with some metadata or tensors replaced, written around `SyntheticSet.save`'s checks."""
    from safetensors.torch import save_file

    path = tmp_path / f"{name}.safetensors"
    tensors = {**{k: v.contiguous() for k, v in tiny_set.tensors().items()}, **changes.pop("tensors", {})}
    save_file(tensors, str(path), metadata={**tiny_set.metadata(), **changes})
    return path


def _bad_input(case: str, hub_folder: Path, tmp_path: Path, tiny_set, monkeypatch) -> tuple[str, list, str]:
    """(command line, argv, what the error line says) for one bad input of the Hub folder, the Hub or a set file."""
    good = saved(tmp_path, tiny_set, "good")
    rows, card = hub_folder / "ipc6" / ROWS, hub_folder / "README.md"
    if case in ("unreachable push", "unreachable repo"):
        import huggingface_hub.constants

        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", _closed_port_endpoint())
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
        monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_unused_token")
    if case.startswith("unreadable parquet"):
        rows.write_bytes(b"not parquet")
        if case.endswith("rows only"):
            (hub_folder / "ipc6" / SET_FILE).unlink()
    if case.startswith("unsafe yaml"):
        card.write_text(card.read_text().replace("license: other", "license: !!python/object/apply:os.system ['echo owned']"))
    cases = {
        "unreadable parquet info": ("downstream", ["info", hub_folder], "is not a readable parquet file"),
        "unreadable parquet info rows only": ("downstream", ["info", hub_folder], "is not a readable parquet file"),
        "unreadable parquet export": ("condense", ["export", good, "--out", hub_folder, "--config", "other"], "is not a readable parquet file"),
        "unsafe yaml info": ("downstream", ["info", hub_folder], "README.md: the card's YAML does not parse"),
        "unsafe yaml export": ("condense", ["export", good, "--out", hub_folder], "README.md: the card's YAML does not parse"),
        "unreachable push": ("condense", ["push", hub_folder, "--repo", "tester/tiny"], "could not reach the Hub"),
        "unreachable repo": ("downstream", ["info", "tester/tiny"], "could not reach the Hub"),
        "out is a file": ("condense", ["export", good, "--out", good], "is a file, not a folder"),
        "class_names a number": ("downstream", ["info", _set_with_metadata(tmp_path, tiny_set, "class_names", class_names="3")], "'class_names' must be a JSON list"),
        "mean a scalar": ("downstream", ["info", _set_with_metadata(tmp_path, tiny_set, "mean", mean="0.5")], "'mean' must be a JSON list"),
        "config a list": ("condense", ["export", _set_with_metadata(tmp_path, tiny_set, "config", config="[1]"), "--out", tmp_path / "o"], "'config' must be a JSON object"),
        "evaluation a string": ("condense", ["export", _set_with_metadata(tmp_path, tiny_set, "evaluation", evaluation='"x"'), "--out", tmp_path / "o"], "'evaluation' must be a JSON object"),
        "soft labels -5": ("downstream", ["info", _set_with_metadata(tmp_path, tiny_set, "soft", tensors={"soft_labels": torch.full((12, 2), -5.0)})], "has a negative value"),
        "no images": ("condense", ["export", _set_with_metadata(tmp_path, tiny_set, "empty", tensors={"images": torch.zeros(0, 3, 8, 8), "labels": torch.zeros(0, dtype=torch.int64), "soft_labels": torch.zeros(0, 2)}),
                                   "--out", tmp_path / "o"], "holds no images"),
    }
    return cases[case]


BAD_INPUTS = ["unreadable parquet info", "unreadable parquet info rows only", "unreadable parquet export", "unsafe yaml info",
              "unsafe yaml export", "unreachable push", "unreachable repo", "out is a file", "class_names a number", "mean a scalar",
              "config a list", "evaluation a string", "soft labels -5", "no images"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_each_bad_input_is_one_error_line(case, hub_folder, tmp_path, tiny_set, monkeypatch, capsys):
    from condense.cli import main as condense_main
    from downstream.cli import main as downstream_main

    program, argv, contains = _bad_input(case, hub_folder, tmp_path, tiny_set, monkeypatch)
    before = snapshot(hub_folder)
    assert_one_error({"condense": condense_main, "downstream": downstream_main}[program], argv, capsys, contains=contains)
    assert snapshot(hub_folder) == before
    assert not (tmp_path / "o").exists()  # a refused export creates nothing


def test_bad_inputs_get_clear_errors(hub_folder, tmp_path, tiny_set):
    with pytest.raises(UserError, match="invalid config name"):
        export(saved(tmp_path, tiny_set, "x"), hub_folder, "ipc 6")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and has no README.md"):
        export(saved(tmp_path, tiny_set, "x"), tmp_path / "other")
    (hub_folder / "ipc6" / "preview.png").unlink()
    assert folder_problems(hub_folder) == ["config 'ipc6' lacks preview.png"]
    with pytest.raises(UserError, match="lacks preview.png"):
        push(hub_folder, "tester/tiny")
    assert folder_problems(tmp_path / "other") == ["no README.md (dataset card); run `condense export` into this folder"]
    with pytest.raises(UserError, match="holds configs|no config 'ipc9'"):
        load_condensed(hub_folder, "ipc9")


def test_push_without_a_token_says_how_to_log_in(hub_folder, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(UserError, match="hf auth login"):
        push(hub_folder, "tester/tiny")


def run_client(hub: HubStandIn, code: str, tmp_path: Path, token: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter whose huggingface_hub and datasets talk to the stand-in."""
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": token, "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, env=env, capture_output=True, text=True, timeout=300)


def test_push_then_load_dataset_by_repo_id_returns_the_same_tensors(hub_folder, tmp_path, tiny_set):
    code = f"""
        import json, torch
        from condense.hub import push
        from datasets import load_dataset
        from downstream import load_condensed
        print(push({str(hub_folder)!r}, "tester/tiny-ncfm"))
        rows = load_dataset("tester/tiny-ncfm", "ipc6", split="train").with_format("torch")[:]
        condensed = load_condensed("tester/tiny-ncfm", "ipc6")
        torch.save({{"rows": rows["pixel_values"], "labels": rows["label"], "set": condensed.images,
                    "soft": condensed.soft_labels}}, {str(tmp_path / "got.pt")!r})
    """
    with HubStandIn() as hub:
        result = run_client(hub, code, tmp_path, hub.token)
        assert result.returncode == 0, result.stderr[-3000:]
        assert sorted(hub.files("tester/tiny-ncfm")) == ["README.md", "ipc6/preview.png", "ipc6/synthetic.safetensors", "ipc6/train-00000-of-00001.parquet"]
    got = torch.load(tmp_path / "got.pt", weights_only=True)
    assert torch.equal(got["rows"], tiny_set.images) and torch.equal(got["set"], tiny_set.images)
    assert torch.equal(got["labels"], tiny_set.labels) and torch.equal(got["soft"], tiny_set.soft_labels)
    assert hub.token not in result.stdout + result.stderr


def test_refused_or_interrupted_push_leaves_nothing_on_the_hub(hub_folder, tmp_path):
    code = f"""
        from condense.errors import UserError
        from condense.hub import push
        try:
            push({str(hub_folder)!r}, "tester/tiny-ncfm")
        except UserError as exc:
            print("ERROR", exc)
    """
    with HubStandIn() as hub:
        wrong = run_client(hub, code, tmp_path, "hf_wrong_token")
        assert "ERROR the Hub refused the upload" in wrong.stdout and "401" in wrong.stdout
        assert "hf_wrong_token" not in wrong.stdout + wrong.stderr
        hub.fail_commits = True
        failed = run_client(hub, code, tmp_path, hub.token)
        assert "ERROR the Hub refused the upload" in failed.stdout
        assert hub.files("tester/tiny-ncfm") == {}  # created, but no file claims a set is there
    assert json.loads(json.dumps(read_card(hub_folder).data.to_dict()))["configs"]  # the local folder is untouched


def test_a_set_made_from_a_hub_dataset_records_the_commit_it_was_read_at(tmp_path):
    """The resolved revision, not only the one asked for: `main` moves, a commit does not."""
    from conftest import write_image_folder

    data = write_image_folder(tmp_path / "images", {"image": "image", "label": "label"})
    code = f"""
        from huggingface_hub import HfApi
        from condense.cli import main
        from condense.synthetic import SyntheticSet
        api = HfApi()
        api.create_repo("tester/images", repo_type="dataset")
        api.upload_folder(folder_path={str(data)!r}, repo_id="tester/images", repo_type="dataset")
        assert main(["baseline", "random", "--data", "tester/images", "--ipc", "1", "--out", {str(tmp_path / "set.safetensors")!r}]) == 0
        print("recorded", SyntheticSet.load({str(tmp_path / "set.safetensors")!r}).source_revision)
        print("head", api.dataset_info("tester/images").sha)
    """
    with HubStandIn() as hub:
        result = run_client(hub, code, tmp_path, hub.token)
    assert result.returncode == 0, result.stderr[-3000:]
    recorded, head = (line.split()[1] for line in result.stdout.splitlines() if line.startswith(("recorded", "head")))
    assert recorded == head and len(recorded) == 40 and recorded != "0" * 40


def _crafted_staging(folder: Path, plan, previous_is_file: bool = True) -> Path:
    """A hidden staging folder as a crafted Hub folder would carry it: a dead process's pid, the folder's card, a plan."""
    staging = folder / ".export-999999-abc"
    staging.mkdir()
    (staging / "README.md").write_bytes((folder / "README.md").read_bytes())
    (staging / "plan.json").write_text(plan if isinstance(plan, str) else json.dumps(plan))
    if previous_is_file:
        (staging / "previous").write_text("planted")
    else:
        (staging / "previous").mkdir()
    return staging


@pytest.mark.parametrize("payload", [
    {"config": "../.bashrc"},  # the reproduction: a file beside the folder
    {"config": "../../victim"},  # a folder two levels up
    {"config": "README.md"},  # inside, but the card itself
    {"config": ".hidden"},
    {"config": 3}, ["ipc6"], "not json {",
])
@pytest.mark.parametrize("command", ["info", "export"])
def test_a_crafted_staging_folder_touches_nothing_outside_or_inside(payload, command, tmp_path, tiny_set, capsys):
    """Recovery of a killed export acts only on staging folders of the shape `export` writes (issue 24, S1)."""
    from condense.cli import main as condense_main
    from downstream.cli import main as downstream_main

    home = tmp_path / "home" / "user"
    folder = home / "set"
    folder.parent.mkdir(parents=True)
    export(saved(tmp_path, tiny_set, "tiny"), folder)
    (home / ".bashrc").write_text("mine")
    (tmp_path / "home" / "victim").mkdir()
    (tmp_path / "home" / "victim" / "keep.txt").write_text("mine")
    staging = _crafted_staging(folder, payload)
    before = snapshot(tmp_path / "home")
    argv = (["info", folder], downstream_main) if command == "info" else (["export", saved(tmp_path, tiny_set, "x"), "--out", folder, "--config", "ipc9"], condense_main)
    line = assert_one_error(argv[1], argv[0], capsys)
    assert staging.name in line
    assert snapshot(tmp_path / "home") == before


def test_a_staging_folder_that_is_a_link_is_refused(hub_folder, tmp_path, capsys):
    from downstream.cli import main

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "README.md").write_bytes((hub_folder / "README.md").read_bytes())
    (outside / "plan.json").write_text(json.dumps({"config": "ipc6"}))
    (outside / "previous").mkdir()
    (hub_folder / ".export-999999-abc").symlink_to(outside)
    before = snapshot(tmp_path)
    assert ".export-999999-abc" in assert_one_error(main, ["info", hub_folder], capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("configs", ["3", "[ipc6]", "[{config_name: ../../victim, data_files: x}]", "[{config_name: [1]}]"])
def test_card_config_names_stay_inside_the_folder(hub_folder, configs, capsys):
    from downstream.cli import main

    card = hub_folder / "README.md"
    card.write_text(re.sub(r"^configs:\n(?:[- ] .*\n)*", f"configs: {configs}\n", card.read_text(), flags=re.M))
    assert "README.md" in assert_one_error(main, ["info", hub_folder], capsys)


def test_a_card_without_yaml_is_one_error(hub_folder, capsys):
    from downstream.cli import main

    (hub_folder / "README.md").write_text("# just a title\n")
    assert "configs" in assert_one_error(main, ["info", hub_folder], capsys)


def test_pool_manifest_paths_stay_inside_the_pool_folder(tmp_path):
    from condense.pool import MANIFEST, _read_manifest

    (tmp_path / "secret.safetensors").write_bytes(b"x")
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / MANIFEST).write_text(json.dumps({"spec": {}, "members": [{"init": "../secret.safetensors", "trained": "member-000-trained.safetensors"}]}))
    with pytest.raises(UserError, match="outside"):
        _read_manifest(pool)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_concurrent_exports_of_different_configs_all_reach_the_card(tmp_path, tiny_set):
    """Pairs of exports into one folder started together: every config an export reported written is in the card
    (issue 24, S2: both once passed the check for a running export before either staged, and one config was orphaned)."""
    sources = {f"ipc{n}": saved(tmp_path, dataclasses.replace(tiny_set, ipc=n, evaluation={}), f"s{n}") for n in (1, 2, 3, 4, 7)}
    folder = tmp_path / "hub"
    export(sources.pop("ipc7"), folder)
    names = list(sources)
    for first, second in zip(names[::2], names[1::2]):
        runs = [subprocess.Popen([sys.executable, "-m", "condense.cli", "export", str(sources[name]), "--out", str(folder), "--config", name],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in (first, second)]
        for run in runs:
            run.wait(timeout=300)
        written = [name for name, run in zip((first, second), runs) if run.returncode == 0]
        assert written == [first, second], [run.stderr.read()[-2000:] for run in runs]
    listed = [entry["config_name"] for entry in read_card(folder).data.to_dict()["configs"]]
    assert listed == sorted([*names, "ipc7"])
    assert folder_problems(folder) == []


def test_push_uploads_only_what_the_card_lists(hub_folder, tmp_path, tiny_set, monkeypatch):
    import shutil

    shutil.copytree(hub_folder / "ipc6", hub_folder / "orphan")  # a config folder the card does not name
    uploads = {}

    class RecordingApi:
        def __init__(self, token):
            pass

        def create_repo(self, *args, **kwargs):
            pass

        def upload_folder(self, **kwargs):
            from huggingface_hub.utils import filter_repo_objects

            files = [str(p.relative_to(hub_folder)) for p in hub_folder.rglob("*") if p.is_file()]
            uploads["files"] = sorted(filter_repo_objects(files, allow_patterns=kwargs.get("allow_patterns"), ignore_patterns=kwargs.get("ignore_patterns")))
            return type("Commit", (), {"commit_url": "https://hub/commit/1"})()

    monkeypatch.setattr("huggingface_hub.HfApi", RecordingApi)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_unused_token")
    push(hub_folder, "tester/tiny")
    assert uploads["files"] == ["README.md", "ipc6/preview.png", "ipc6/synthetic.safetensors", "ipc6/train-00000-of-00001.parquet"]


def test_push_refuses_a_token_that_is_not_ascii_without_echoing_it(hub_folder, monkeypatch, capsys):
    from condense.cli import main

    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_tökén_secret")
    line = assert_one_error(main, ["push", hub_folder, "--repo", "tester/tiny"], capsys)
    assert "token" in line and "secret" not in capsys.readouterr().err + line


def test_a_published_set_records_no_path_of_the_machine(tmp_path, capsys):
    """A set made from a local folder names it by its name and the split's fingerprint, in the set, its rows and its
    card; it needs --data to find the data again, except from its own run folder (issue 24, item 9)."""
    from condense.cli import main
    from condense.data import load_real

    data = write_image_folder(tmp_path / "work" / "cifar-copy", {"img": "image", "label": "label"}, rows=36)
    tiny = ["--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32", "--pool-size", "1",
            "--iterations", "2", "--eval-runs", "0", "--no-progress"]
    pool = tmp_path / "work" / "pools" / "mine"
    assert main(["distill", "--data", str(data), "--pool-folder", str(pool), "--soft-labels", "pool",
                 "--out", str(tmp_path / "run"), *tiny]) == 0
    small = ["--runs", "1", "--epochs", "1", "--width", "4", "--depth", "2", "--no-progress"]
    assert main(["eval", str(tmp_path / "run"), "--teacher", str(pool / "member-000-trained.safetensors"), *small,
                 "--out", str(tmp_path / "run" / "eval.json")]) == 0  # an evaluation whose teacher is a file of this machine
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "hub")]) == 0
    synthetic = load_condensed(tmp_path / "hub")
    assert synthetic.source_dataset == "cifar-copy" and synthetic.source_fingerprint == load_real(str(data)).fingerprint
    assert synthetic.config["data"] == "cifar-copy" and synthetic.config["pool_folder"] == "mine"
    assert f"Source: `cifar-copy (a local folder; split {synthetic.source_fingerprint})`" in (tmp_path / "hub" / "README.md").read_text()
    machine = str(tmp_path).encode()
    assert [str(p) for p in (tmp_path / "hub").rglob("*") if p.is_file() and machine in p.read_bytes()] == []
    capsys.readouterr()
    assert synthetic.evaluation["protocol"]["teacher"] == "member-000-trained.safetensors"
    assert "pass that folder with --data" in assert_one_error(main, ["eval", tmp_path / "hub", *small], capsys)
    assert main(["eval", str(tmp_path / "hub"), "--data", str(data), *small]) == 0
