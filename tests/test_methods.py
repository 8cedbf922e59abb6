"""Issue 25: methods behind one interface (a method registered here runs through the whole pipeline), the
mean-matching losses of dance and dm by hand, the method flags, and the coresets."""

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from condense.cli import main
from condense.config import DistillConfig, preset
from condense.distill import make_method
from condense.errors import UserError
from condense.flags import setting
from condense.loop import Callback, iterate
from condense.methods import Method, method_class, register_method
from condense.methods.dance import DANCE, DANCESettings
from condense.methods.dm import DM, DMSettings
from condense.synthetic import SyntheticSet

from conftest import assert_one_error, kill_before_iteration, write_image_folder

CPU = torch.device("cpu")


@dataclass
class PixelSettings:
    scale: float = setting(1.0, "factor on the pixel-mean distance")


@register_method("pixel-means")
class PixelMeans(Method):
    """A toy method, registered from this file alone: match the mean pixels of each class, no network, no pool."""

    Settings = PixelSettings
    uses_pool = False

    def embed(self, x):
        return x.flatten(1)

    def matching_loss(self, real, synthetic):
        return self.settings.scale * (real.mean(1) - synthetic.mean(1)).square().sum(1)


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)


def test_a_method_registered_in_a_test_file_runs_distill_resume_eval_and_export(image_folder, tmp_path, monkeypatch, capsys):
    from datasets import load_dataset

    monkeypatch.chdir(tmp_path)
    args = ["distill", "--method", "pixel-means", "--scale", "2", "--data", str(image_folder), "--ipc", "1", "--real-batch", "4",
            "--iterations", "4", "--checkpoint-every", "2", "--eval-runs", "0", "--no-progress"]
    assert main([*args, "--out", "whole"]) == 0
    original = kill_before_iteration(monkeypatch, 4)
    assert main([*args, "--out", "killed"]) == 130
    assert not (tmp_path / "killed" / "synthetic.safetensors").exists()
    monkeypatch.setattr(Method, "step", original)
    assert main([*args, "--out", "killed", "--resume"]) == 0
    whole, resumed = (SyntheticSet.load(tmp_path / name / "synthetic.safetensors") for name in ("whole", "killed"))
    assert torch.equal(whole.canvases, resumed.canvases)
    assert main([*args, "--out", "start", "--iterations", "0"]) == 0
    assert not torch.equal(whole.canvases, SyntheticSet.load(tmp_path / "start" / "synthetic.safetensors").canvases)  # it learned
    assert resumed.method == "pixel-means" and resumed.config["method_settings"] == {"scale": 2.0}
    assert not (tmp_path / "pools").exists()  # a method without a pool trains none
    assert main(["eval", "killed", "--epochs", "1", "--runs", "1", "--width", "4", "--depth", "2", "--no-progress", "--out", "eval.json"]) == 0
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["accuracy_mean"] <= 100
    assert main(["export", "killed", "--out", "hub"]) == 0
    rows = load_dataset(str(tmp_path / "hub"), "ipc1", split="train")
    assert len(rows) == len(resumed.images) and "pixel-means" in (tmp_path / "hub" / "README.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["distill", "--method", "pixel-means", "--help"])
    shown = capsys.readouterr().out
    assert "--scale" in shown and "--frequencies" not in shown


def test_a_method_changed_between_kill_and_resume_is_refused(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["distill", "--data", str(image_folder), "--ipc", "1", "--real-batch", "4", "--iterations", "2", "--eval-runs", "0", "--no-progress",
            "--out", "run"]
    assert main([*args, "--method", "pixel-means"]) == 0
    assert_one_error(main, [*args, "--method", "dm", "--resume"], capsys, contains="settings differ from the run in run (method)")
    assert_one_error(main, [*args, "--method", "pixel-means", "--scale", "3", "--resume"], capsys, contains="(scale)")


def test_mean_matching_losses_equal_a_hand_computation():
    """Per class ||mean real - mean synthetic||²: class 0 means (2, 1) and (1, 0): 2; class 1 means (0, 0) and (2, 2): 8."""
    real = torch.tensor([[[1.0, 0], [3, 0], [2, 3]], [[0, 0], [0, 0], [0, 0]]])
    synthetic = torch.tensor([[[0.0, 0], [2, 0]], [[1, 1], [3, 3]]])
    dance = SimpleNamespace(settings=DANCESettings(loss_scale=0.5))
    assert DANCE.matching_loss(dance, real, synthetic).tolist() == [1.0, 4.0]
    assert DM.matching_loss(SimpleNamespace(settings=DMSettings()), real, synthetic).tolist() == [2.0, 8.0]


def test_dance_steps_through_the_pool_with_calibration_and_without(tiny_pool):
    pool, real, _ = tiny_pool
    base = DistillConfig(data="tiny-real", ipc=1, factor=2, depth=2, width=8, real_batch=6, iterations=2, pool_size=2, pool_epochs=1,
                         method="dance")
    record = make_method(base, real, pool, CPU).step()
    assert record["calibration"] > 0 and record["loss"] == pytest.approx(record["matching"] + record["calibration"])
    assert {"member", "blend"} <= set(record)
    plain = make_method(base.changed(calibration_weight=0.0), real, pool, CPU).step()
    assert plain["calibration"] == 0 and plain["loss"] == plain["matching"]


def test_dm_draws_a_fresh_network_per_iteration_the_same_on_a_resume(tiny_pool):
    _, real, _ = tiny_pool
    config = DistillConfig(data="tiny-real", ipc=1, factor=2, depth=2, width=8, real_batch=6, iterations=3, method="dm")
    first, again = make_method(config, real, None, CPU), make_method(config, real, None, CPU)

    def weights(method):
        method.draw(method.generator)
        return torch.cat([p.flatten() for p in method.network.parameters()])

    one, two = weights(first), None
    first.iteration = 1
    two = weights(first)
    assert not torch.equal(one, two)  # a fresh network every iteration
    again.iteration = 1
    assert torch.equal(weights(again), two)  # iteration i's network whatever came before (a resume draws the same)
    record = first.step()
    assert record["calibration"] == 0 and "member" not in record
    with pytest.raises(ValueError, match="matches through a pool"):
        make_method(config.changed(method="dance"), real, None, CPU)


def test_method_flags_and_settings_are_refused_by_name(capsys):
    assert_one_error(main, ["distill", "--method", "dm", "--frequencies", "64"], capsys,
                     contains="--frequencies: not a setting of method dm (its own: --loss-scale)")
    assert_one_error(main, ["distill", "--method", "nope"], capsys, contains="unknown method 'nope'; choose one of dance, dm, ncfm")
    with pytest.raises(UserError, match="--loss-scale must be a finite number above 0"):
        preset("cifar10-ipc10-cpu", "dance").changed(loss_scale=0.0)


def test_presets_give_each_method_its_settings_at_the_presets_shared_compute():
    ncfm, dance, dm = (preset("cifar10-ipc10-cpu", method) for method in ("ncfm", "dance", "dm"))
    shared = ("iterations", "real_batch", "ipc", "factor", "pool_size", "pool_epochs", "width", "lr")
    assert {tuple(getattr(c, name) for name in shared) for c in (ncfm, dance, dm)} == {(200, 128, 10, 2, 2, 1, 64, 0.01)}
    assert ncfm.method_settings.frequencies == 1024 and preset("cifar10-ipc10").method_settings.frequencies == 4096
    assert isinstance(dance.method_settings, DANCESettings) and isinstance(dm.method_settings, DMSettings)
    assert not method_class("dm").uses_pool and method_class("dance").uses_pool


def test_records_from_before_methods_read_as_ncfm_and_round_trip():
    old = {"data": "x", "ipc": 3, "frequencies": 64, "sampler": "learned", "calibration_weight": 0.5}  # flat, as sets recorded them
    config = DistillConfig.from_dict(old)
    assert config.method == "ncfm" and (config.method_settings.frequencies, config.method_settings.calibration_weight) == (64, 0.5)
    assert DistillConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["method_settings"]["sampler"] == "learned" and config.flat()["frequencies"] == 64
    dm = DistillConfig.from_dict({"method": "dm", "method_settings": {"loss_scale": 2.0}})
    assert dm.method_settings == DMSettings(loss_scale=2.0)


def test_a_callback_stops_the_loop(tiny_pool):
    _, real, _ = tiny_pool
    method = make_method(DistillConfig(data="tiny-real", ipc=1, factor=2, depth=2, width=8, real_batch=6, iterations=10, method="dm"),
                         real, None, CPU)

    class StopAtThree(Callback):
        def stop(self, distiller):
            return distiller.iteration >= 3

    assert len(iterate(method, [StopAtThree()])) == 3 and method.iteration == 3


def test_kcenter_and_herding_orders_by_hand():
    from condense.baseline import herding_order, kcenter_order

    points = torch.tensor([[0.0], [1], [10], [11], [5]])  # mean 5.4: start at 5, then the farthest (11), then 0 (25 from 5)
    assert kcenter_order(points, 3) == [4, 3, 0]
    assert herding_order(points, 2) == [4, 2]  # 5 nearest the mean 5.4; then (5 + 10) / 2 is 2.1 from it, (5 + 1) / 2 2.4


def test_coreset_baselines_from_the_command_line(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--method", "dm", "--data", str(image_folder), "--width", "4", "--depth", "2", "--pool-size", "1",
                 "--pool-folder", "pool", "--no-progress"]) == 0  # asked for, a pool is trained whatever the method
    network = tmp_path / "pool" / "member-000-trained.safetensors"
    for kind in ("herding", "kcenter"):
        assert main(["baseline", kind, "--data", str(image_folder), "--ipc", "2", "--network", str(network), "--out", f"{kind}.safetensors"]) == 0
        chosen = SyntheticSet.load(tmp_path / f"{kind}.safetensors")
        assert chosen.method == kind and chosen.labels.bincount().tolist() == [2, 2, 2]
        assert chosen.config["network"] == "member-000-trained.safetensors"
    assert_one_error(main, ["baseline", "herding", "--data", str(image_folder)], capsys, contains="pass --network")


def test_an_installed_packages_method_is_found_through_its_entry_point(monkeypatch, capsys):
    """`[project.entry-points."condense.methods"] NAME = "module"`: `--method NAME` loads the module, which registers it."""
    import condense.methods

    loaded = []

    class EntryPoint:
        def load(self):
            loaded.append(register_method("from-a-package")(type("FromAPackage", (PixelMeans,), {})))

    monkeypatch.setattr(condense.methods, "entry_points", lambda group, name: [EntryPoint()] if name == "from-a-package" else [])
    monkeypatch.delitem(condense.methods.METHODS, "from-a-package", raising=False)
    with pytest.raises(SystemExit):
        main(["distill", "--method", "from-a-package", "--help"])
    assert loaded and "--scale" in capsys.readouterr().out
    monkeypatch.delitem(condense.methods.METHODS, "from-a-package")


def test_the_methods_table_is_written_and_a_partial_one_continued(image_folder, tmp_path, monkeypatch):
    from conftest import load_benchmark

    monkeypatch.chdir(tmp_path)
    methods = load_benchmark("methods")
    args = ["--data", str(image_folder), "--out", "table", "--rows", "ncfm,dance,dm,random", "--seeds", "0,1", "--protocols", "cpu,ncfm",
            "--runs", "1", "--epochs", "1", "--timing-steps", "1", "--set", "ipc=1", "width=4", "depth=2", "real_batch=4", "iterations=2",
            "pool_size=1", "frequencies=32", "loss_scale=2"]
    assert methods.main(args) == 0
    table = json.loads((tmp_path / "table" / "methods.json").read_text())
    assert set(table["rows"]["ncfm"]) == set(table["rows"]["dance"]) == {"cpu", "ncfm"} and set(table["rows"]["dm"]) == {"cpu"}
    assert len(table["rows"]["dance"]["cpu"]["runs"]) == 2 and table["rows"]["dance"]["cpu"]["seeds_done"] == [0, 1]
    assert table["timing"]["ratio_to_ncfm"]["ncfm"] == 1.0 and (tmp_path / "table" / "methods.png").is_file()
    dance = SyntheticSet.load(tmp_path / "table" / "sets" / "dance-seed0.safetensors")
    assert dance.method == "dance" and dance.config["method_settings"]["loss_scale"] == 2.0  # --set reaches a method's own setting
    assert SyntheticSet.load(tmp_path / "table" / "sets" / "ncfm-seed1.safetensors").config["method_settings"]["frequencies"] == 32
    kept = {path: path.stat().st_mtime_ns for path in (tmp_path / "table" / "evals").iterdir()}
    (tmp_path / "table" / "evals" / "dm-seed1-cpu.json").unlink()  # a study killed before this cell
    assert methods.main(args) == 0
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items() if path.name != "dm-seed1-cpu.json")
    assert json.loads((tmp_path / "table" / "methods.json").read_text())["rows"]["dm"]["cpu"]["seeds_done"] == [0, 1]


def test_a_method_whose_settings_cannot_be_flags_is_refused_and_breaks_no_other_command(monkeypatch, capsys):
    import condense.methods

    @dataclass
    class Clashing:
        lr: float = setting(0.1, "the images' lr again")

    monkeypatch.setitem(condense.methods.METHODS, "clashing", type("Clashing", (PixelMeans,), {"Settings": Clashing, "name": "clashing"}))
    assert_one_error(main, ["distill", "--method", "clashing"], capsys, contains="its setting 'lr' is also a shared setting's name")
    with pytest.raises(SystemExit):
        main(["distill", "--help"])  # the other methods' flags are still built
    assert "--frequencies" in capsys.readouterr().out


def test_review_findings_teacher_file_without_a_pool_and_coresets_beyond_a_class(tmp_path):
    from condense.baseline import coreset
    from condense.nets import build_net
    from condense.run import teacher_of

    from conftest import make_real

    assert teacher_of("elsewhere/member-003-trained.safetensors", None) == "elsewhere/member-003-trained.safetensors"  # dm: no pool folder
    real = make_real(per_class=4)
    with pytest.raises(UserError, match="more than the smallest class"):
        coreset(real, 5, "herding", build_net("convnet", 3, real.num_classes, real.image_size, depth=1, width=4), CPU)
