import dataclasses
import json

import pytest
import torch

from condense.baseline import random_subset
from condense.cli import main
from condense.errors import UserError
from condense.evaluate import (
    LABEL_PROTOCOLS,
    EvalConfig,
    eval_preset,
    evaluate_set,
    format_result,
)
from condense.nets import build_net, seeded_net
from condense.runtime import write_json
from condense.synthetic import SyntheticSet
from condense.train import TrainConfig, accuracy, soft_targets, train

from conftest import assert_one_error, write_image_folder

CPU = torch.device("cpu")


def _config(**train):
    return EvalConfig(net_options={"depth": 1, "width": 8}, train=TrainConfig(epochs=4, batch_size=5, **train), runs=2, seed=3)


def test_evaluation_is_deterministic_under_a_seed(tiny_set, tiny_test_data):
    first = evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)
    again = evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)
    assert [r["accuracy"] for r in first["runs"]] == [r["accuracy"] for r in again["runs"]]
    assert [r["loss"] for r in first["runs"]] == [r["loss"] for r in again["runs"]]
    assert [r["seed"] for r in first["runs"]] == [3, 4]
    other = evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "seed": 9}), CPU, progress=False)
    assert [r["loss"] for r in other["runs"]] != [r["loss"] for r in first["runs"]]


def test_reported_accuracy_is_the_final_epoch_network(tiny_set, tiny_test_data):
    """The figure is the accuracy of the network after the last epoch: rebuild it by hand and compare."""
    config = _config()
    result = evaluate_set(tiny_set, tiny_test_data, config, CPU, progress=False)
    net = seeded_net("convnet", 3, 2, (8, 8), 3, depth=1, width=8)  # run 0 of seed 3, from the evaluation stream
    train(net, tiny_set.images, tiny_set.labels, config.train, mean=tiny_set.mean, std=tiny_set.std,
          generator=torch.Generator().manual_seed(3), device=CPU, progress=False)
    assert result["runs"][0]["accuracy"] == accuracy(net, tiny_test_data, tiny_set.mean, tiny_set.std, CPU)
    assert result["accuracy_mean"] == pytest.approx(sum(r["accuracy"] for r in result["runs"]) / 2)
    assert result["accuracy_std"] == pytest.approx(abs(result["runs"][0]["accuracy"] - result["runs"][1]["accuracy"]) / 2)


def test_one_hot_stored_labels_train_exactly_like_hard_labels(tiny_set, tiny_test_data):
    hard = evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)
    tiny_set.soft_labels = torch.nn.functional.one_hot(tiny_set.labels, 2).float()
    soft = evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "labels": "stored"}), CPU, progress=False)
    assert soft["labels"] == "stored soft" and hard["labels"] == "hard"
    assert [r["loss"] for r in soft["runs"]] == pytest.approx([r["loss"] for r in hard["runs"]], rel=1e-4)


def test_stored_soft_labels_are_used_only_when_asked_for_by_name(tiny_set, tiny_test_data):
    """A set with soft labels trains on its class labels by default: the stored ones do not follow DSA and CutMix."""
    default = evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)
    stored = evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "labels": "stored"}), CPU, progress=False)
    soft_labels, tiny_set.soft_labels = tiny_set.soft_labels, None
    without = evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)
    assert default["labels"] == "hard" and default["label_protocol"] == "the class labels"
    assert [r["loss"] for r in default["runs"]] == [r["loss"] for r in without["runs"]]  # the soft labels played no part
    assert stored["labels"] == "stored soft" and "not recomputed for the augmented views" in stored["label_protocol"]
    assert [r["loss"] for r in stored["runs"]] != [r["loss"] for r in default["runs"]]
    net = seeded_net("convnet", 3, 2, (8, 8), 3, depth=1, width=8)  # the stored run trained on the soft labels themselves
    by_hand = train(net, tiny_set.images, soft_labels, _config().train, mean=tiny_set.mean, std=tiny_set.std,
                    generator=torch.Generator().manual_seed(3), device=CPU, progress=False)
    assert stored["runs"][0]["loss"] == by_hand["loss"]


def test_temperature_scaling_of_soft_labels():
    p = torch.tensor([[0.7, 0.2, 0.1]])
    assert torch.allclose(soft_targets(p, 1.0), p)
    logits = p.log()
    assert torch.allclose(soft_targets(p, 4.0), torch.softmax(logits / 4, 1))
    assert soft_targets(p, 4.0)[0, 0] < 0.7  # flatter


def test_labels_choice_and_incompatible_sets(tiny_set, tiny_test_data):
    with pytest.raises(UserError, match="--teacher and --labels stored are two sources of soft labels; drop one"):
        evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "labels": "stored", "teacher": "t.safetensors"}),
                     CPU, progress=False)
    with pytest.raises(UserError, match="labels must be hard .* or stored"):
        evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "labels": "soft"}), CPU, progress=False)
    tiny_set.soft_labels = None
    with pytest.raises(UserError, match="no soft labels; use --labels hard"):
        evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "labels": "stored"}), CPU, progress=False)
    tiny_test_data.images = tiny_test_data.images[:, :, :4, :4]
    with pytest.raises(UserError, match=r"the set's images are \[3, 8, 8\] but tiny \[test\] has \[3, 4, 4\]"):
        evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)


def test_format_result_table(tiny_set, tiny_test_data):
    table = format_result(evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False))
    assert "final-epoch test acc" in table and "mean ± std:" in table and "4 epochs, hard labels, 2 runs" in table
    assert table.endswith("trained on hard labels: the class labels")


def test_divergence_is_reported(tiny_set, tiny_test_data):
    with pytest.raises(UserError, match="training diverged .* lower the learning rate"):
        evaluate_set(tiny_set, tiny_test_data, _config(lr=1e30, optimizer="sgd"), CPU, progress=False)


def test_random_mnist_ipc10_end_to_end(mnist_train, mnist_test):
    """Random IPC-10 MNIST subset, 60 epochs of the CPU protocol, one run: 86.5% here (2 cores, ~15 s); threshold 80%."""
    subset = random_subset(mnist_train, ipc=10, seed=0)
    assert subset.labels.bincount().tolist() == [10] * 10
    config = EvalConfig(train=TrainConfig(epochs=60), runs=1)
    result = evaluate_set(subset, mnist_test, config, CPU, progress=False)
    assert result["accuracy_mean"] > 80.0


def test_cli_baseline_then_eval(mnist_dir, mnist_test, tmp_path, capsys):
    out = tmp_path / "random.safetensors"
    assert main(["baseline", "random", "--data", str(mnist_dir), "--ipc", "2", "--seed", "1", "--out", str(out)]) == 0
    assert main(["eval", str(out), "--data", str(mnist_dir), "--epochs", "2", "--runs", "1", "--width", "8", "--no-progress"]) == 0
    result = json.loads(out.with_suffix(".eval.json").read_text())
    assert result["protocol"]["train"]["epochs"] == 2 and result["protocol"]["net_options"]["width"] == 8
    accuracy = result["runs"][0]["accuracy"]
    assert len(result["runs"]) == 1 and result["accuracy_mean"] == accuracy and result["accuracy_std"] == 0.0
    assert accuracy * 100 == pytest.approx(round(accuracy * 100))  # a whole number of the 10,000 test images
    config = eval_preset("cpu")
    config.train.epochs, config.net_options["width"], config.runs = 2, 8, 1
    assert evaluate_set(SyntheticSet.load(out), mnist_test, config, CPU, progress=False)["accuracy_mean"] == accuracy  # the library's figure
    assert f"mean ± std: {accuracy:.2f} ± 0.00 %" in capsys.readouterr().out


def test_cli_bad_input_exits_2_with_one_message(tmp_path, capsys):
    assert main(["baseline", "random", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such folder") and err.count("\n") == 1
    assert not (tmp_path / "x.safetensors").exists()
    assert main(["eval", str(tmp_path / "none.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_teacher_sees_exactly_the_augmented_batch_the_student_sees(tiny_set):
    """The published code labels the un-augmented view; here the teacher gets the student's very input."""
    seen = {"student": [], "teacher": []}

    def recorder(name, net):
        net.register_forward_pre_hook(lambda module, args: seen[name].append(args[0].detach().clone()))
        return net

    student = recorder("student", build_net("convnet", 3, 2, (8, 8), depth=1, width=4))
    teacher = recorder("teacher", build_net("convnet", 3, 2, (8, 8), depth=1, width=4))
    config = TrainConfig(epochs=2, batch_size=4, cutmix_p=1.0, temperature=4.0)
    train(student, tiny_set.images, tiny_set.labels, config, mean=tiny_set.mean, std=tiny_set.std,
          generator=torch.Generator().manual_seed(0), device=CPU, progress=False, teacher=teacher)
    assert len(seen["student"]) == len(seen["teacher"]) == 6
    assert all(torch.equal(s, t) for s, t in zip(seen["student"], seen["teacher"]))
    unaugmented = (tiny_set.images - 0.5) / 0.25
    assert not any(torch.equal(s, unaugmented[: len(s)]) for s in seen["student"])


@pytest.fixture
def run_folder(tmp_path):
    """A `condense distill`-style run folder holding a 3-class set with soft labels, made from a local image folder."""
    from condense.data import load_real

    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    synthetic = random_subset(load_real(str(data), "train"), 2)
    synthetic.soft_labels = torch.softmax(torch.randn(len(synthetic.labels), 3, generator=torch.Generator().manual_seed(0)), 1)
    synthetic.save(tmp_path / "run" / "synthetic.safetensors")
    write_json(tmp_path / "run" / "config.json", {"resolved_data": str(data)})  # where a run folder records its data
    return tmp_path / "run"


TINY_EVAL = ["--epochs", "1", "--runs", "1", "--depth", "1", "--width", "8", "--no-progress"]


def test_cli_eval_takes_a_run_folder_and_names_the_label_protocol(run_folder, tmp_path, capsys):
    assert main(["eval", str(run_folder), "--labels", "stored", *TINY_EVAL]) == 0
    printed = capsys.readouterr().out
    result = json.loads((run_folder / "synthetic.eval.json").read_text())  # beside the set file, as for a .safetensors argument
    assert result["set_file"] == str(run_folder) and result["labels"] == "stored soft"
    assert result["label_protocol"] == LABEL_PROTOCOLS["stored soft"] and result["protocol"]["labels"] == "stored"
    assert f"trained on stored soft labels: {LABEL_PROTOCOLS['stored soft']}" in printed
    assert main(["eval", str(run_folder / "synthetic.safetensors"), *TINY_EVAL, "--out", str(tmp_path / "default.json")]) == 0
    default = json.loads((tmp_path / "default.json").read_text())
    assert default["labels"] == "hard" and "trained on hard labels: the class labels" in capsys.readouterr().out
    assert default["runs"][0]["loss"] != result["runs"][0]["loss"]


def test_cli_eval_batched_runs_give_the_runs_one_by_one(run_folder, tmp_path):
    two_runs = [*TINY_EVAL, "--runs", "2"]  # the last --runs wins
    assert main(["eval", str(run_folder), *two_runs, "--out", str(tmp_path / "alone.json")]) == 0
    assert main(["eval", str(run_folder), *two_runs, "--batched-runs", "--out", str(tmp_path / "batched.json")]) == 0
    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("alone", "batched")}
    assert not results["alone"]["batched_runs"] and results["batched"]["batched_runs"]
    alone, batched = results["alone"]["runs"], results["batched"]["runs"]
    assert batched[0]["seconds"] == batched[1]["seconds"] != alone[0]["seconds"]  # trained together: one wall time
    assert [r["seed"] for r in batched] == [r["seed"] for r in alone] == [0, 1]
    for one, other in zip(alone, batched, strict=True):
        assert other["loss"] == pytest.approx(one["loss"], rel=1e-4)
        assert abs(other["accuracy"] - one["accuracy"]) <= 100 / 24 + 1e-9  # at most one of the 24 test images


def test_cli_eval_takes_a_hub_folder_and_writes_beside_it(run_folder, tmp_path, capsys):
    from condense.hub import export

    export(run_folder, tmp_path / "hub", "ipc2", repo_id="tester/tiny")
    before = sorted(p.relative_to(tmp_path / "hub") for p in (tmp_path / "hub").rglob("*"))
    assert main(["eval", str(tmp_path / "hub"), "--config", "ipc2", "--data", str(tmp_path / "data"), *TINY_EVAL]) == 0
    from_hub = json.loads((tmp_path / "hub-ipc2.eval.json").read_text())
    assert sorted(p.relative_to(tmp_path / "hub") for p in (tmp_path / "hub").rglob("*")) == before  # nothing added to what push uploads
    assert main(["eval", str(run_folder), *TINY_EVAL]) == 0
    from_run = json.loads((run_folder / "synthetic.eval.json").read_text())
    assert from_hub["runs"][0]["accuracy"] == from_run["runs"][0]["accuracy"] and from_hub["runs"][0]["loss"] == from_run["runs"][0]["loss"]
    assert_one_error(main, ["eval", tmp_path / "hub", "--config", "ipc9", *TINY_EVAL], capsys, contains="no config 'ipc9'")


@pytest.mark.parametrize("argv, contains", [
    (["{tmp}/none.safetensors"], "no such file"),
    (["{tmp}/data"], "is a dataset, trained on as a whole: pass --data"),  # a dataset folder is a training set of its own (issue 26)
    (["{run}", "--labels", "stored", "--teacher", "{tmp}/teacher.safetensors"], "two sources of soft labels; drop one"),
    (["{hard}", "--labels", "stored", "--data", "{tmp}/data"], "no soft labels; use --labels hard"),
])
def test_cli_eval_bad_input(run_folder, tmp_path, capsys, argv, contains):
    hard = SyntheticSet.load(run_folder / "synthetic.safetensors")
    hard.soft_labels = None
    hard.save(tmp_path / "hard.safetensors")
    paths = {"tmp": tmp_path, "run": run_folder, "hard": tmp_path / "hard.safetensors"}
    assert_one_error(main, ["eval", *(a.format(**paths) for a in argv), *TINY_EVAL], capsys, contains=contains)


def test_paper_is_the_ncfm_protocol_at_paper_scale():
    """Issue 24 item 2: `paper` trained the `cpu` protocol's one DSA operation per image at width 128; it is `ncfm` at paper scale."""
    paper = eval_preset("paper")
    assert (paper.train.dsa, paper.train.dsa_mode) == ("color_crop_flip_scale_rotate", "batch-geometry")
    assert (paper.net_options["width"], paper.train.epochs, paper.runs) == (128, 2000, 10)
    assert (paper.name, paper.scale) == ("ncfm", "paper")
    assert paper.train == dataclasses.replace(eval_preset("ncfm").train, epochs=2000) and eval_preset("ncfm", "paper") == paper


@pytest.mark.parametrize("protocol,paper_epochs", [("cpu", 2000), ("ncfm", 2000), ("dc", 1000)])
def test_every_protocol_runs_at_either_scale(protocol, paper_epochs):
    """A scale sets width, epochs and runs only; at paper scale `dc` trains 1000 epochs as DC/DM do, `ncfm` NCFM's 2000."""
    cpu, paper = eval_preset(protocol), eval_preset(protocol, "paper")
    assert (cpu.net_options["width"], cpu.train.epochs, cpu.runs, cpu.name, cpu.scale) == (64, 300, 2, protocol, "cpu")
    assert (paper.net_options["width"], paper.train.epochs, paper.runs, paper.name, paper.scale) == (128, paper_epochs, 10, protocol, "paper")
    assert paper.train == dataclasses.replace(cpu.train, epochs=paper_epochs)
    assert {**paper.net_options, "width": 64} == cpu.net_options
    assert eval_preset(protocol, "cpu") == cpu


def test_an_unknown_scale_or_a_second_scale_for_paper_is_one_clear_error():
    with pytest.raises(UserError, match="unknown evaluation scale 'huge'; choose one of cpu, paper"):
        eval_preset("dc", "huge")
    with pytest.raises(UserError, match="paper is ncfm at paper scale; for cpu scale name the protocol: --protocol ncfm --scale cpu"):
        eval_preset("paper", "cpu")


def _trained_through(tiny_set, *configs: TrainConfig) -> dict:
    """A network trained by `configs` one after the other, every call drawing on from one generator."""
    torch.manual_seed(0)
    net, generator = build_net("convnet", 3, 2, (8, 8), depth=1, width=8), torch.Generator().manual_seed(1)
    for config in configs:
        train(net, tiny_set.images, tiny_set.labels, config, mean=tiny_set.mean, std=tiny_set.std, generator=generator, device=CPU, progress=False)
    return net.state_dict()


def test_dc_makes_its_optimiser_anew_at_the_lr_decay(tiny_set):
    """DC/DM's evaluate_synset re-creates SGD at the decay (its momentum forgotten): training through the decay equals
    training up to it and then again with a fresh optimiser at the decayed lr; keeping the momentum differs."""
    dc = eval_preset("dc").train
    assert dc.reset_at_decay
    config = dataclasses.replace(dc, epochs=2, batch_size=len(tiny_set))  # one step per epoch: the decay falls after the first
    through = _trained_through(tiny_set, config)
    anew = _trained_through(tiny_set, dataclasses.replace(config, epochs=1, lr_decay_at=()),
                            dataclasses.replace(config, epochs=1, lr_decay_at=(), lr=config.lr * config.lr_gamma))
    kept = _trained_through(tiny_set, dataclasses.replace(config, reset_at_decay=False))
    assert all(torch.equal(through[name], anew[name]) for name in through)
    assert not all(torch.equal(through[name], kept[name]) for name in through)


def test_cli_eval_names_protocol_and_scale_apart(tmp_path, capsys):
    """`--scale paper` puts any protocol at paper scale; `--protocol paper` still works and is ncfm at paper scale; the JSON says both."""
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=6)
    out = tmp_path / "set.safetensors"
    assert main(["baseline", "random", "--data", str(data), "--ipc", "1", "--out", str(out)]) == 0
    tiny = [str(out), "--epochs", "1", "--runs", "1", "--depth", "1", "--no-progress", "--data", str(data)]
    assert main(["eval", *tiny, "--protocol", "dc", "--scale", "paper", "--out", str(tmp_path / "dc.json")]) == 0
    protocol = json.loads((tmp_path / "dc.json").read_text())["protocol"]
    assert (protocol["name"], protocol["scale"], protocol["net_options"]["width"]) == ("dc with depth, epochs changed", "paper", 128)
    assert protocol["train"]["optimizer"] == "sgd" and protocol["train"]["reset_at_decay"] is True
    assert "protocol dc with depth, epochs changed at paper scale" in capsys.readouterr().out
    assert main(["eval", *tiny, "--protocol", "paper", "--out", str(tmp_path / "paper.json")]) == 0
    protocol = json.loads((tmp_path / "paper.json").read_text())["protocol"]
    assert (protocol["name"], protocol["scale"], protocol["train"]["dsa_mode"]) == ("ncfm with depth, epochs changed", "paper", "batch-geometry")
    assert_one_error(main, ["eval", *tiny, "--protocol", "paper", "--scale", "cpu"], capsys, contains="--protocol ncfm --scale cpu")


def test_eval_help_says_what_a_protocol_and_a_scale_fix(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    printed = " ".join(capsys.readouterr().out.split())
    assert "--protocol NAME, --preset NAME how to train: cpu, ncfm, dc, paper: optimiser, schedule, augmentation, CutMix" in printed
    assert "--scale {cpu,paper} how big and how long: cpu: width 64, 300 epochs, 2 runs; paper: width 128, 2000 epochs (dc: 1000), 10 runs" in printed
