"""Issue 24 items 11 and 12: values that trained nothing, diverged or were ignored are one `error:` line (exit 2) before any work."""

from __future__ import annotations

import os

import pytest
import torch

from condense.cli import main as condense_main
from condense.errors import UserError
from downstream.cli import main as downstream_main

from conftest import assert_one_error, write_image_folder


@pytest.fixture
def set_file(tmp_path, tiny_set):
    return tiny_set.save(tmp_path / "set.safetensors")


def written(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("argv, flag", [
    (["--lr", "0"], "--lr"),
    (["--cutmix-p", "2"], "--cutmix-p"),
    (["--cutmix-p", "-1"], "--cutmix-p"),
    (["--cutmix-p", "nan"], "--cutmix-p"),
    (["--temperature", "-1", "--labels", "stored"], "--temperature"),
    (["--temperature", "0", "--labels", "stored"], "--temperature"),
    (["--temperature", "nan", "--labels", "stored"], "--temperature"),
    (["--momentum", "nan"], "--momentum"),
    (["--lr-gamma", "nan"], "--lr-gamma"),
    (["--objective", "dlb", "--tau", "inf"], "--tau"),
    (["--objective", "dlb", "--alpha", "inf"], "--alpha"),
])
def test_eval_refuses_values_that_train_nothing_or_diverge_before_reading_anything(set_file, tmp_path, capsys, argv, flag):
    """The data folder does not exist: the setting is refused before the set or the data is read, and nothing is written."""
    before = written(tmp_path)
    assert_one_error(condense_main, ["eval", set_file, "--data", tmp_path / "missing", *argv], capsys, contains=flag)
    assert written(tmp_path) == before


@pytest.mark.parametrize("argv, message", [
    (["--scheme", "paper"], "--scheme is a setting of --objective dlb"),
    (["--objective", "ce", "--tau", "2", "--alpha", "0.5"], "--tau, --alpha are settings of --objective dlb"),
    (["--temperature", "4"], "--temperature scales soft labels"),
])
def test_eval_refuses_flags_that_do_nothing_in_the_combination(set_file, tmp_path, capsys, argv, message):
    before = written(tmp_path)
    assert_one_error(condense_main, ["eval", set_file, "--data", tmp_path / "missing", *argv], capsys, contains=message)
    assert written(tmp_path) == before


def test_train_config_checks_fields_set_after_construction():
    from condense.train import TrainConfig, train

    config = TrainConfig(epochs=1, batch_size=2)
    config.temperature = float("nan")
    with pytest.raises(UserError, match="--temperature must be a finite number above 0"):
        train(torch.nn.Linear(2, 2), torch.rand(4, 2), torch.tensor([0, 1, 0, 1]), config, mean=(0.5,), std=(0.25,),
              generator=torch.Generator(), device=torch.device("cpu"), progress=False)


@pytest.fixture
def data_folder(tmp_path):
    """3 classes of 4 random 8x8 images per split."""
    return write_image_folder(tmp_path / "data", {"img": "image", "label": "label"})


def test_downstream_train_refuses_a_per_class_below_1_or_with_a_set(data_folder, set_file, tmp_path, capsys):
    out = tmp_path / "out.json"
    tiny = ["--epochs", "1", "--runs", "1", "--width", "8", "--depth", "1", "--no-progress", "--out", out]
    assert_one_error(downstream_main, ["train", "--data", data_folder, "--per-class", "-1", *tiny], capsys, contains="--per-class must be at least 1")
    assert_one_error(downstream_main, ["train", "--data", data_folder, "--per-class", "0", *tiny], capsys, contains="--per-class must be at least 1")
    assert_one_error(downstream_main, ["train", set_file, "--per-class", "2", *tiny], capsys, contains="--per-class picks images of --data")
    assert not out.exists()


CL = ["cl", "--steps", "3", "--memory", "random", "--ipc", "2", "--seeds", "0", "--epochs", "1", "--width", "8", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "replay", "--stream-epochs", "0"], "the replay strategy trains and tests the continual model on the stream"),
    (["--stream-epochs", "-1"], "--stream-epochs must be at least 0"),
    (["--mem-size", "0"], "--mem-size must be at least 1"),
    (["--mem-size", "2"], "--mem-size 2 keeps no image of a class once all 3 classes are seen"),
    (["--ipc", "100000"], "--ipc 100000 is more than the 4 images of the smallest class"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--tau", "2"], "--tau is a setting of --objective dlb"),
])
def test_cl_refuses_settings_that_train_nothing_or_leave_a_memory_empty(data_folder, tmp_path, capsys, monkeypatch, argv, message):
    from downstream.continual import protocol

    monkeypatch.setattr(protocol, "run_continual", lambda *args, **kwargs: pytest.fail("trained before the settings were checked"))
    assert_one_error(downstream_main, [*CL, "--data", data_folder, "--out", tmp_path / "out", *argv], capsys, contains=message)
    assert not (tmp_path / "out").exists()


def test_distill_refuses_psi_settings_with_the_gaussian_sampler_and_a_revision_of_a_local_folder(data_folder, tmp_path, capsys):
    tiny = ["distill", "--data", data_folder, "--out", tmp_path / "run", "--pool-folder", tmp_path / "pool", "--no-progress"]
    assert_one_error(condense_main, [*tiny, "--sigma-min", "0.5"], capsys, contains="--sigma-min shape psi, the learned sampler")
    assert_one_error(condense_main, [*tiny, "--sigma-max", "5", "--sampler", "gaussian"], capsys, contains="--sigma-max shape psi")
    assert_one_error(condense_main, [*tiny, "--revision", "v1"], capsys, contains="is a local folder, which has none")
    assert_one_error(condense_main, [*tiny, "--soft-labels", data_folder], capsys, contains="is a folder; pass one network file in it")
    assert not (tmp_path / "run").exists() and not (tmp_path / "pool").exists()


def test_a_relative_path_whose_first_folder_exists_is_a_missing_folder_not_a_hub_id(tmp_path, capsys, monkeypatch):
    """`work/nosuchdir` beside an existing `work/` was looked up on the Hub (26 s offline) and never said the folder was missing."""
    import datasets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda *args, **kwargs: pytest.fail("asked the Hub"))
    for path in ("work/nosuchdir", "a/b/c"):  # a/b/c: no Hub id has two slashes
        assert_one_error(condense_main, ["baseline", "random", "--data", path, "--out", tmp_path / "x.safetensors"], capsys,
                         contains=f"no such folder: {path}")
    assert not (tmp_path / "x.safetensors").exists()


def test_constant_images_are_refused_by_name_not_reported_as_a_divergence(tmp_path, capsys):
    import datasets
    import numpy as np
    from PIL import Image

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    (tmp_path / "flat" / "data").mkdir(parents=True)
    rows = {"img": [Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8))] * 4, "label": [0, 1, 0, 1]}
    for split in ("train", "test"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "flat" / "data" / f"{split}-00000-of-00001.parquet"))
    argv = ["train", "--data", tmp_path / "flat", "--epochs", "1", "--runs", "1", "--width", "8", "--depth", "1", "--no-progress",
            "--out", tmp_path / "out.json"]
    assert_one_error(downstream_main, argv, capsys, contains="are constant in channel 0")


def test_distill_refuses_an_unknown_network_before_reading_the_data(tmp_path, capsys):
    argv = ["distill", "--data", tmp_path / "missing", "--net", "nosuch", "--out", tmp_path / "run", "--pool-folder", tmp_path / "pool"]
    assert_one_error(condense_main, argv, capsys, contains="unknown network 'nosuch'")
    assert not (tmp_path / "pool").exists()


def test_pool_files_are_readable_as_every_other_file_and_no_folder_is_left_by_an_unbuildable_network(tmp_path, tiny_pool):
    from condense.pool import PoolSpec, build_or_load_pool

    _, real, spec = tiny_pool
    mask = os.umask(0)
    os.umask(mask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "pool").iterdir()}
    assert modes and set(modes.values()) == {0o666 & ~mask}, modes
    deep = PoolSpec(**{**spec.__dict__, "net_options": {"depth": 10, "width": 8}})
    with pytest.raises(UserError):
        build_or_load_pool(tmp_path / "deep", deep, 1, real, None, torch.device("cpu"), progress=False)
    assert not (tmp_path / "deep").exists()
