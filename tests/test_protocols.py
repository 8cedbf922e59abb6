"""Evaluation protocols by name (issue 15): each protocol's settings reach the one training loop as values."""

import json

import pytest
import torch

import condense.train as train_module
from condense.augment import DSA
from condense.cli import main
from condense.evaluate import EVAL_PRESETS, Ensemble, eval_preset, evaluate_set, load_teacher
from condense.nets import build_net, seeded_net
from condense.synthetic import SyntheticSet

from conftest import assert_one_error, load_benchmark

CPU = torch.device("cpu")
FIFTHS = (0.2, 0.4, 0.6, 0.8)

# What each protocol must train with, written out from the issue and BENCHMARKS.md (not read from the presets).
EXPECTED = {
    "cpu": {"optimizer": torch.optim.AdamW, "lr": 1e-3, "weight_decay": 0.01, "decay_at": FIFTHS, "gamma": 0.5, "batch": 128, "cutmix": True},
    "paper": {"optimizer": torch.optim.AdamW, "lr": 1e-3, "weight_decay": 0.01, "decay_at": FIFTHS, "gamma": 0.5, "batch": 128, "cutmix": True},
    "ncfm": {"optimizer": torch.optim.AdamW, "lr": 1e-3, "weight_decay": 0.01, "decay_at": FIFTHS, "gamma": 0.5, "batch": 128, "cutmix": True},
    "dc": {"optimizer": torch.optim.SGD, "lr": 0.01, "weight_decay": 5e-4, "momentum": 0.9, "decay_at": (0.5,), "gamma": 0.1, "batch": 256,
           "cutmix": False},
}


def _set(count=300, size=8):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat(count // 2)
    return SyntheticSet(images=torch.rand(count, 3, size, size, generator=generator), labels=labels, class_names=["a", "b"],
                        mean=(0.5,) * 3, std=(0.25,) * 3, method="test", source_dataset="tiny", ipc=count // 2)


def _test_data():
    from condense.data import RealData

    images = torch.randint(0, 256, (20, 3, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return RealData(images, torch.arange(2).repeat(10), ["a", "b"], (0.5,) * 3, (0.25,) * 3, "tiny", "test")


@pytest.fixture
def recorded(monkeypatch):
    """Record, inside train(): the optimiser and lr schedule built, every batch's size, DSA's active operations, CutMix calls."""
    seen = {"optimizers": [], "schedules": [], "batches": [], "active": [], "cutmix": 0}
    make_optimizer, schedule, active, cutmix = train_module.make_optimizer, torch.optim.lr_scheduler.MultiStepLR, DSA._active, train_module.cutmix

    def recording_optimizer(*args, **kwargs):
        seen["optimizers"].append(make_optimizer(*args, **kwargs))
        return seen["optimizers"][-1]

    class RecordingSchedule(schedule):
        def __init__(self, optimizer, milestones, gamma):
            seen["schedules"].append((list(milestones), gamma))
            super().__init__(optimizer, milestones, gamma=gamma)

    def recording_active(self, count, generator):
        seen["batches"].append(count)
        seen["active"].append(active(self, count, generator))
        return seen["active"][-1]

    def recording_cutmix(images, generator=None):
        seen["cutmix"] += 1
        return cutmix(images, generator)

    monkeypatch.setattr(train_module, "make_optimizer", recording_optimizer)
    monkeypatch.setattr(torch.optim.lr_scheduler, "MultiStepLR", RecordingSchedule)
    monkeypatch.setattr(DSA, "_active", recording_active)
    monkeypatch.setattr(train_module, "cutmix", recording_cutmix)
    return seen


@pytest.mark.parametrize("name", EXPECTED)
def test_each_protocol_trains_with_its_own_settings(name, recorded):
    config = eval_preset(name)
    config.train.epochs, config.runs, config.net_options = 5, 1, {"depth": 1, "width": 4}  # shortened; everything else as named
    result = evaluate_set(_set(), _test_data(), config, CPU, progress=False)
    want = EXPECTED[name]
    assert result["protocol"]["name"] == ("ncfm" if name == "paper" else name)  # paper: ncfm at paper scale
    (optimizer,) = recorded["optimizers"]
    group = optimizer.param_groups[0]
    assert type(optimizer) is want["optimizer"] and group["initial_lr"] == want["lr"] and group["weight_decay"] == want["weight_decay"]
    if "momentum" in want:
        assert group["momentum"] == want["momentum"]
    steps_per_epoch = -(-300 // want["batch"])
    assert recorded["batches"][:steps_per_epoch] == [min(want["batch"], 300 - i * want["batch"]) for i in range(steps_per_epoch)]
    assert recorded["schedules"] == [([round(f * 5 * steps_per_epoch) for f in want["decay_at"]], want["gamma"])]
    assert (recorded["cutmix"] > 0) == want["cutmix"]
    if not want["cutmix"]:
        assert recorded["cutmix"] == 0


def _one_operation(active: dict) -> list[str]:
    return [name for name, mask in active.items() if mask.any()]


def test_dc_draws_one_operation_per_batch_and_cpu_one_per_image(recorded):
    for name in ("dc", "cpu"):
        recorded["active"].clear()
        config = eval_preset(name)
        config.train.epochs, config.runs, config.net_options = 6, 1, {"depth": 1, "width": 4}
        evaluate_set(_set(), _test_data(), config, CPU, progress=False)
        per_batch = [_one_operation(active) for active in recorded["active"]]
        if name == "dc":  # one operation per batch, on every image of it; over the batches several operations
            assert all(len(ops) == 1 for ops in per_batch)
            assert all(active[ops[0]].all() for active, ops in zip(recorded["active"], per_batch))
            assert len({ops[0] for ops in per_batch}) > 1
        else:  # per image: a batch holds several operations, each image exactly one
            assert all(len(ops) > 1 for ops in per_batch)
            assert all((sum(mask.int() for mask in active.values()) == 1).all() for active in recorded["active"])


def test_ncfm_flips_and_colours_every_image_and_picks_one_geometric_operation_per_batch(recorded):
    config = eval_preset("ncfm")
    config.train.epochs, config.runs, config.net_options = 6, 1, {"depth": 1, "width": 4}
    evaluate_set(_set(), _test_data(), config, CPU, progress=False)
    picked = []
    for active in recorded["active"]:
        assert active["flip"].all() and active["color"].all()
        geometric = [name for name in ("crop", "scale", "rotate") if active[name].any()]
        assert len(geometric) == 1 and active[geometric[0]].all()
        picked.append(geometric[0])
    assert len(set(picked)) > 1


@pytest.mark.parametrize("name", ["dc", "ncfm"])
def test_soft_label_evaluation_asks_the_teacher_on_the_augmented_batch(name, tmp_path, monkeypatch):
    """Under every protocol the teacher's input is exactly the student's (after DSA and, where drawn, CutMix)."""
    seen = {"student": [], "teacher": []}
    teacher = build_net("convnet", 3, 2, (8, 8), depth=1, width=4)
    teacher.register_forward_pre_hook(lambda module, args: seen["teacher"].append(args[0].detach().clone()))
    monkeypatch.setattr("condense.evaluate.load_teacher", lambda path, device, student: teacher)
    original_build = seeded_net

    def student(*args, **kwargs):
        net = original_build(*args, **kwargs)
        net.register_forward_pre_hook(lambda module, args: seen["student"].append(args[0].detach().clone()) if module.training else None)
        return net

    monkeypatch.setattr("condense.evaluate.seeded_net", student)
    config = eval_preset(name)
    config.train.epochs, config.runs, config.net_options, config.teacher = 2, 1, {"depth": 1, "width": 4}, "a teacher"
    result = evaluate_set(_set(40), _test_data(), config, CPU, progress=False)
    assert result["labels"] == "teacher soft"
    assert len(seen["student"]) == len(seen["teacher"]) == 2
    assert all(torch.equal(s, t) for s, t in zip(seen["student"], seen["teacher"]))
    plain = (_set(40).images - 0.5) / 0.25
    assert not any(torch.equal(s, plain[: len(s)]) for s in seen["student"])


def test_an_ensemble_teacher_averages_its_members_probabilities(tmp_path):
    from condense.pool import PoolSpec, _save_weights

    spec = PoolSpec("tiny", "train", 2, 3, (8, 8), "convnet", {"depth": 1, "width": 4}, {})
    members = []
    for index in range(2):
        torch.manual_seed(index)
        net = spec.build()
        _save_weights(net, tmp_path / f"member-{index:03d}-trained.safetensors", spec)
        members.append(net.eval())
    x = torch.rand(5, 3, 8, 8)
    mean = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
    for named in (str(tmp_path), ",".join(str(tmp_path / f"member-{i:03d}-trained.safetensors") for i in range(2))):
        teacher = load_teacher(named, CPU)
        assert isinstance(teacher, Ensemble) and len(teacher.members) == 2
        assert torch.allclose(torch.softmax(teacher(x), 1), mean, atol=1e-6)
    single = load_teacher(str(tmp_path / "member-000-trained.safetensors"), CPU)
    assert torch.allclose(single(x), members[0](x), atol=1e-6)


def test_cli_eval_protocol_by_name_is_written_into_the_result(tmp_path, capsys):
    from condense.data import load_real

    from conftest import write_image_folder

    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    from condense.baseline import random_subset

    random_subset(load_real(str(data), "train"), 2).save(tmp_path / "set.safetensors")
    tiny = ["--epochs", "1", "--runs", "1", "--depth", "1", "--width", "8", "--no-progress", "--data", str(data)]
    assert main(["eval", str(tmp_path / "set.safetensors"), "--protocol", "dc", *tiny, "--out", str(tmp_path / "dc.json")]) == 0
    result = json.loads((tmp_path / "dc.json").read_text())
    assert result["protocol"]["name"] == "dc with depth, width, epochs changed"
    assert result["protocol"]["train"]["optimizer"] == "sgd" and result["protocol"]["train"]["dsa_mode"] == "batch"
    assert "protocol dc with depth, width, epochs changed" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "set.safetensors"), "--preset", "ncfm", *tiny, "--out", str(tmp_path / "ncfm.json")]) == 0
    assert json.loads((tmp_path / "ncfm.json").read_text())["protocol"]["train"]["dsa_mode"] == "batch-geometry"
    assert_one_error(main, ["eval", tmp_path / "set.safetensors", "--protocol", "nope", *tiny], capsys, contains=", ".join(EVAL_PRESETS))


def test_two_invocations_filling_one_table_side_by_side_keep_each_others_cells(tmp_path):
    protocols = load_benchmark("protocols")

    def cell(accuracy):
        return {"accuracy_mean": accuracy, "accuracy_std": 0.0, "runs": [accuracy]}

    first = {"rows": ["random"], "columns": ["cpu:hard"], "cells": {}, "runs": 1}
    second = {"rows": ["ours-best"], "columns": ["ncfm:soft"], "cells": {}, "runs": 1}  # both read the file before either wrote
    first["cells"]["random"] = {"cpu:hard": cell(33.0)}
    protocols.write_outputs(first, tmp_path)
    second["cells"]["ours-best"] = {"ncfm:soft": cell(56.0)}
    protocols.write_outputs(second, tmp_path)
    written = json.loads((tmp_path / "figures.json").read_text())
    assert written["cells"] == {"random": {"cpu:hard": cell(33.0)}, "ours-best": {"ncfm:soft": cell(56.0)}}
    assert written["rows"] == ["random", "ours-best"] and written["columns"] == ["ncfm:soft", "cpu:hard"]
    assert "33.00 ± 0.00" in (tmp_path / "table.md").read_text()


BENCHMARK_CASES = {  # issue 24 item 10: each was a traceback (some around a UserError), now one error line before any data is read
    "columns empty": (["--columns", ""], "column '': use PROTOCOL:hard"),
    "column of four parts": (["--columns", "cpu:hard:ce:x"], "column 'cpu:hard:ce:x'"),
    "runs 0": (["--runs", "0"], "--runs must be at least 1, got 0"),
    "epochs 0": (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    "temperature 0": (["--temperature", "0"], "--temperature must be a finite number above 0"),
    "unknown row": (["--rows", "nope"], "unknown rows ['nope']"),
    "figures garbage": (["--out", "{tmp}/garbage"], "figures.json is not a readable figures file of benchmarks/protocols.py"),
    "figures a list": (["--out", "{tmp}/list"], "figures.json is not a figures file of benchmarks/protocols.py"),
    "figures cell a number": (["--out", "{tmp}/cell"], "figures.json is not a figures file of benchmarks/protocols.py"),
    "published set missing": (["--rows", "published-200it"], "missing {tmp}/published/published_ncfm_cifar10_ipc10_cpu_200it.safetensors"),
    "teacher missing": (["--columns", "cpu:soft", "--teacher", "{tmp}/none.safetensors"], "missing {tmp}/none.safetensors"),
    "herding teacher missing": (["--rows", "herding", "--pool", "{tmp}/nopool"], "missing {tmp}/nopool/member-000-trained.safetensors"),
    "best missing": (["--rows", "ours-best", "--best", "{tmp}/nobest"], "missing {tmp}/nobest"),
    "best not given": (["--rows", "ours-best"], "row ours-best needs --best"),
}


@pytest.mark.parametrize("case", BENCHMARK_CASES)
def test_protocols_benchmark_refuses_bad_input_in_one_line(case, tmp_path, capsys, monkeypatch):
    protocols = load_benchmark("protocols")
    monkeypatch.setattr(protocols, "PUBLISHED", tmp_path / "published")
    for name, content in {"garbage": "{oops", "list": "[1, 2]", "cell": json.dumps({"rows": [], "columns": [], "cells": {"random": {"cpu:hard": 3}}})}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "figures.json").write_text(content)
    argv, message = BENCHMARK_CASES[case]
    base = {"--data": str(tmp_path / "no-data"), "--rows": "random", "--columns": "cpu:hard", "--out": str(tmp_path / "out"), "--device": "cpu"}
    given = dict(zip(argv[::2], (a.format(tmp=tmp_path) for a in argv[1::2])))
    assert_one_error(protocols.main, [item for pair in {**base, **given}.items() for item in pair], capsys, contains=message.format(tmp=tmp_path))
    assert not (tmp_path / "out").exists()
