import json

import pytest
import torch

from condense.baseline import random_subset
from condense.cli import main
from condense.errors import UserError
from condense.evaluate import EvalConfig, evaluate_set, format_result
from condense.nets import build_net
from condense.train import TrainConfig, accuracy, soft_targets, train

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
    torch.manual_seed(3)
    net = build_net("convnet", 3, 2, (8, 8), depth=1, width=8)
    train(net, tiny_set.images, tiny_set.soft_labels, config.train, mean=tiny_set.mean, std=tiny_set.std,
          generator=torch.Generator().manual_seed(3), device=CPU, progress=False)
    assert result["runs"][0]["accuracy"] == accuracy(net, tiny_test_data, tiny_set.mean, tiny_set.std, CPU)
    assert result["accuracy_mean"] == pytest.approx(sum(r["accuracy"] for r in result["runs"]) / 2)
    assert result["accuracy_std"] == pytest.approx(abs(result["runs"][0]["accuracy"] - result["runs"][1]["accuracy"]) / 2)


def test_one_hot_soft_labels_train_exactly_like_hard_labels(tiny_set, tiny_test_data):
    hard = evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "labels": "hard"}), CPU, progress=False)
    tiny_set.soft_labels = torch.nn.functional.one_hot(tiny_set.labels, 2).float()
    soft = evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)
    assert soft["labels"] == "soft" and hard["labels"] == "hard"
    assert [r["loss"] for r in soft["runs"]] == pytest.approx([r["loss"] for r in hard["runs"]], rel=1e-4)


def test_temperature_scaling_of_soft_labels():
    p = torch.tensor([[0.7, 0.2, 0.1]])
    assert torch.allclose(soft_targets(p, 1.0), p)
    logits = p.log()
    assert torch.allclose(soft_targets(p, 4.0), torch.softmax(logits / 4, 1))
    assert soft_targets(p, 4.0)[0, 0] < 0.7  # flatter


def test_labels_choice_and_incompatible_sets(tiny_set, tiny_test_data):
    tiny_set.soft_labels = None
    with pytest.raises(UserError, match="no soft labels; use --labels hard"):
        evaluate_set(tiny_set, tiny_test_data, EvalConfig(**{**_config().__dict__, "labels": "soft"}), CPU, progress=False)
    tiny_test_data.images = tiny_test_data.images[:, :, :4, :4]
    with pytest.raises(UserError, match=r"the set's images are \[3, 8, 8\] but tiny \[test\] has \[3, 4, 4\]"):
        evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False)


def test_format_result_table(tiny_set, tiny_test_data):
    table = format_result(evaluate_set(tiny_set, tiny_test_data, _config(), CPU, progress=False))
    assert "final-epoch test acc" in table and "mean ± std:" in table and "4 epochs, soft labels, 2 runs" in table


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


def test_cli_baseline_then_eval(mnist_dir, tmp_path, capsys):
    out = tmp_path / "random.safetensors"
    assert main(["baseline", "random", "--data", str(mnist_dir), "--ipc", "2", "--seed", "1", "--out", str(out)]) == 0
    assert main(["eval", str(out), "--epochs", "2", "--runs", "1", "--width", "8", "--no-progress"]) == 0
    result = json.loads(out.with_suffix(".eval.json").read_text())
    assert result["protocol"]["train"]["epochs"] == 2 and result["protocol"]["net_options"]["width"] == 8
    assert len(result["runs"]) == 1 and 0 <= result["accuracy_mean"] <= 100
    assert "mean ± std:" in capsys.readouterr().out


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
