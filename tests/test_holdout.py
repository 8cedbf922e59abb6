"""Issue 24 item 3: a validation split held out of the training data (`--holdout N`), never distilled or pretrained on."""

import dataclasses
import json

import pytest
import torch

import condense.evaluate
import condense.pool
import condense.run
from condense.cli import main
from condense.config import DistillConfig
from condense.data import load_real
from condense.errors import UserError
from condense.run import pool_folder_for, pool_spec

from conftest import assert_one_error, make_real, write_image_folder

TINY = ["--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32", "--pool-size", "1", "--pool-epochs", "1",
        "--iterations", "2", "--eval-runs", "1", "--eval-preset", "cpu", "--device", "cpu", "--no-progress"]


def rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_held_out_images_are_seeded_nested_and_disjoint_from_the_rest():
    real = make_real(per_class=12, size=8)
    rest, held = real.holdout_split(4)
    assert held.held_out == 4 and rest.held_out is None
    assert torch.bincount(held.labels).tolist() == [4, 4, 4] and torch.bincount(rest.labels).tolist() == [8, 8, 8]
    assert not rows(rest.images) & rows(held.images) and len(rows(rest.images) | rows(held.images)) == 36
    assert torch.equal(real.holdout_split(4)[1].images, held.images)  # the same images every time
    assert rows(real.holdout_split(2)[1].images) < rows(held.images)  # nested: those of 2 are among those of 4
    assert (rest.split, held.split) == ("train[minus 4 held out per class]", "train[4 held out per class]")


@pytest.mark.parametrize("per_class", [-1, 0, 12, 13])
def test_a_holdout_outside_1_to_the_class_size_less_one_is_one_clear_error(per_class):
    with pytest.raises(UserError, match="--holdout takes 1 to 11 images per class"):
        make_real(per_class=12, size=8).holdout_split(per_class)


def test_memory_mapped_data_holds_out_the_same_images_and_stays_mapped(tmp_path):
    folder = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    loaded, mapped = load_real(str(folder)).holdout_split(4), load_real(str(folder), memory_mapped=True).holdout_split(4)
    assert type(mapped[0].images).__name__ == "ArrowImages"
    for ours, theirs in zip(loaded, mapped):
        assert torch.equal(ours.images, theirs.images[:]) and torch.equal(ours.labels, theirs.labels)
        assert torch.equal(ours.images[[2, 0]], theirs.images[torch.tensor([2, 0])])


def test_a_pool_for_other_held_out_images_has_another_spec_and_folder():
    real = make_real(per_class=12, size=8)
    specs = {holdout: pool_spec(DistillConfig(holdout=holdout), real.holdout_split(holdout)[0] if holdout else real) for holdout in (0, 2, 4)}
    assert len({spec.digest() for spec in specs.values()}) == 3
    assert len({pool_folder_for(DistillConfig(), spec) for spec in specs.values()}) == 3


@pytest.fixture
def held_out_run(tmp_path, monkeypatch, capsys):
    """`condense distill --holdout 4` on a 3-class folder of 12 images per class, recording what the pool trained on, what
    the distiller drew from and what the evaluation tested on."""
    folder = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    seen = {"pool": [], "distiller": [], "tested": []}
    pool_train, distiller, evaluate_set = condense.pool.train, condense.run.make_method, condense.evaluate.evaluate_set
    monkeypatch.setattr(condense.pool, "train", lambda nets, images, *a, **k: seen["pool"].append(images) or pool_train(nets, images, *a, **k))
    monkeypatch.setattr(condense.run, "make_method", lambda config, real, *a, **k: seen["distiller"].append(real) or distiller(config, real, *a, **k))

    def recording_evaluate_set(synthetic, test, config, *args, **kwargs):
        seen["tested"].append(test)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=2))  # what is tested on matters, not how long
        return evaluate_set(synthetic, test, config, *args, **kwargs)

    monkeypatch.setattr(condense.run, "evaluate_set", recording_evaluate_set)
    monkeypatch.setattr(condense.evaluate, "evaluate_set", recording_evaluate_set)  # condense eval imports it when it runs
    monkeypatch.chdir(tmp_path)
    assert main(["distill", "--data", str(folder), "--holdout", "4", "--out", "run", *TINY]) == 0
    return folder, seen, load_real(str(folder)).holdout_split(4)[1], capsys.readouterr().out


def test_distillation_and_its_pool_never_see_the_held_out_images(held_out_run, tmp_path):
    _, seen, held, printed = held_out_run
    ((pool_images,),), ((real,),) = [seen["pool"]], [seen["distiller"]]
    assert len(pool_images) == len(real) == 24 and not rows(pool_images) & rows(held.images)
    assert not rows(real.images) & rows(held.images)
    assert torch.equal(seen["tested"][0].images, held.images)  # the evaluation after distillation tests on exactly them
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["evaluated_on"] == "validation" and "[train[4 held out per class]], 12 images" in result["test"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["holdout"] == 4
    manifest = json.loads(next((tmp_path / "pools").glob("*/manifest.json")).read_text())
    assert manifest["spec"]["split"] == "train[minus 4 held out per class]"
    assert "final-epoch validation acc" in printed and "not on the test split" in printed


def test_eval_on_the_holdout_tests_on_exactly_the_held_out_images(held_out_run, tmp_path, capsys):
    folder, seen, held, _ = held_out_run
    eval_args = ["eval", "run", "--data", str(folder), "--epochs", "1", "--runs", "1", "--width", "4", "--depth", "2", "--device", "cpu",
                 "--no-progress", "--out", "holdout.json"]
    assert main([*eval_args, "--holdout", "3"]) == 0
    assert torch.equal(seen["tested"][-1].images, held.images[torch.cat([torch.arange(3), torch.arange(4, 7), torch.arange(8, 11)])])
    out = capsys.readouterr().out
    assert "final-epoch validation acc" in out and "not on the test split" in out
    result = json.loads((tmp_path / "holdout.json").read_text())
    assert result["evaluated_on"] == "validation" and "[train[3 held out per class]], 9 images" in result["test"]
    assert main(eval_args) == 0 and seen["tested"][-1].split == "test"  # without --holdout: the test split, as before
    assert json.loads((tmp_path / "holdout.json").read_text())["evaluated_on"] == "test"


@pytest.mark.parametrize("argv, contains", [
    (["--holdout", "-1"], "--holdout is a number of images per class"),
    (["--holdout", "5"], "this set was distilled with --holdout 4"),
])
def test_bad_eval_holdout_is_one_clear_error(held_out_run, argv, contains, capsys):
    folder, seen, _, _ = held_out_run
    tested = len(seen["tested"])
    assert_one_error(main, ["eval", "run", "--data", str(folder), "--runs", "1", "--device", "cpu", "--no-progress", *argv], capsys, contains)
    assert len(seen["tested"]) == tested  # refused before any evaluation


@pytest.mark.parametrize("holdout, contains", [("-1", "--holdout must be at least 0"), ("12", "--holdout takes 1 to 11 images per class"),
                                               ("20", "--holdout takes 1 to 11 images per class")])
def test_bad_distill_holdout_is_one_clear_error(holdout, contains, tmp_path, monkeypatch, capsys):
    folder = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    assert_one_error(main, ["distill", "--data", str(folder), "--holdout", holdout, "--out", "run", *TINY], capsys, contains)
    assert not (tmp_path / "pools").exists()  # nothing trained


def test_a_held_out_figure_is_marked_on_the_card_and_old_results_read_as_test_figures(held_out_run, tmp_path):
    from condense.hub import load_set_source
    from condense.synthetic import SyntheticSet

    assert main(["export", "run", "--out", "hub"]) == 0
    assert "(on held-out train images, not the test split)" in (tmp_path / "hub" / "README.md").read_text()
    synthetic = SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors")
    synthetic.evaluation = {}
    synthetic.save(tmp_path / "old.safetensors")
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    del result["evaluated_on"]  # an eval.json written before the key
    (tmp_path / "old.eval.json").write_text(json.dumps(result))
    assert load_set_source(str(tmp_path / "old.safetensors")).evaluation["evaluated_on"] == "test"
