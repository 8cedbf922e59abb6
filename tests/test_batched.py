"""Networks trained at once (`train` on a list, condense/batched.py) end as each would alone: weights, losses,
the lr schedule, DSA and CutMix draws; the batched pool writes the sequential pool's files; batched evaluation
runs give the sequential runs' figures."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors.torch import load_file

from condense.batched import StackedNets
from condense.cli import main
from condense.distributed import World
from condense.errors import UserError
from condense.evaluate import EvalConfig, evaluate_set
from condense.nets import build_net
from condense.pool import build_or_load_pool
from condense.train import TrainConfig, train

from conftest import make_real
from test_distributed import torchrun

CPU = torch.device("cpu")
STATS = {"mean": (0.5,) * 3, "std": (0.25,) * 3}
# rounding differs between one network's kernels and the vectorised ones; a few steps keep it near float32's
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread, as the ranks run


def nets(count: int, **options) -> list[torch.nn.Module]:
    built = []
    for seed in range(count):
        torch.manual_seed(seed)
        built.append(build_net("convnet", 3, 3, (16, 16), depth=2, width=8, **options))
    return built


def train_both(config: TrainConfig, count: int = 3, net_options: dict | None = None, targets=None, **extra):
    """The same `count` networks trained one by one and at once: (alone, together, their results)."""
    real = make_real(per_class=7)
    targets = real.labels if targets is None else targets
    alone, together = nets(count, **(net_options or {})), nets(count, **(net_options or {}))
    alone_stats = [train(net, real.images, targets, config, **STATS, generator=torch.Generator().manual_seed(10 + i), device=CPU,
                         progress=False, **extra) for i, net in enumerate(alone)]
    together_stats = train(together, real.images, targets, config, **STATS, device=CPU, progress=False,
                           generator=[torch.Generator().manual_seed(10 + i) for i in range(count)], **extra)
    return alone, together, alone_stats, together_stats


def without_effect(net: torch.nn.Module) -> set[str]:
    """Biases of convolutions that instance norm follows: they cancel, so their true gradient is 0 and AdamW
    scales its rounding noise into full steps; they differ between any two summation orders and change nothing."""
    layers = list(net.body)
    return {f"body.{i}.bias" for i, (layer, after) in enumerate(itertools.pairwise(layers))
            if isinstance(layer, torch.nn.Conv2d) and isinstance(after, torch.nn.GroupNorm) and after.num_groups == after.num_channels}


def assert_same_networks(alone, together):
    probe = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    for a, b in zip(alone, together):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert name in without_effect(a) or torch.allclose(x, y, **TOLERANCE), f"{name} differs by {(x - y).abs().max():.2e}"
        with torch.no_grad():
            outputs = a.eval()(probe), b.eval()(probe)
        assert torch.allclose(*outputs, **TOLERANCE), f"outputs differ by {(outputs[0] - outputs[1]).abs().max():.2e}"


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_networks_trained_at_once_end_as_each_alone(optimizer):
    """21 images in batches of 8 (a short last batch), 3 epochs, every lr halving, per-sample DSA and CutMix on every batch."""
    config = TrainConfig(epochs=3, batch_size=8, optimizer=optimizer, lr=0.01, cutmix_p=1.0)
    alone, together, alone_stats, together_stats = train_both(config)
    assert_same_networks(alone, together)
    assert [s["loss"] for s in together_stats] == pytest.approx([s["loss"] for s in alone_stats], rel=1e-5)
    moved = [(a.state_dict()["classifier.weight"] - b.state_dict()["classifier.weight"]).abs().max() for a, b in zip(alone, nets(3))]
    assert min(moved) > 1e-3  # they trained
    assert len({round(s["loss"], 6) for s in together_stats}) == 3  # each its own init and draws, not one network three times
    assert len({s["seconds"] for s in together_stats}) == 1  # one wall time for all


def test_a_draw_of_another_network_would_show():
    """The comparison above can fail: networks given each other's generators end elsewhere."""
    real, config = make_real(per_class=7), TrainConfig(epochs=1, batch_size=8, lr=0.01)
    alone, together = nets(2), nets(2)
    for i, net in enumerate(alone):
        train(net, real.images, real.labels, config, **STATS, generator=torch.Generator().manual_seed(10 + i), device=CPU, progress=False)
    train(together, real.images, real.labels, config, **STATS, generator=[torch.Generator().manual_seed(11), torch.Generator().manual_seed(10)],
          device=CPU, progress=False)
    with pytest.raises(AssertionError, match="differs"):
        assert_same_networks(alone, together)


def test_batch_norm_statistics_soft_targets_and_a_teacher_follow_each_network():
    torch.manual_seed(99)  # not network 0's init: a student equal to its teacher has a zero gradient, all rounding noise
    teacher = build_net("convnet", 3, 3, (16, 16), depth=2, width=8).eval()
    for optimizer, net_options, targets, extra in [
        # running statistics are buffers, stacked and updated per network; SGD, as batch norm also cancels the conv biases
        # (see `without_effect`) but its running mean keeps them, so AdamW's scaled noise would show in eval mode
        ("sgd", {"norm": "batch"}, None, {}),
        ("adamw", {}, torch.softmax(torch.randn(21, 3, generator=torch.Generator().manual_seed(2)), 1), {}),
        ("adamw", {}, None, {"teacher": teacher}),
    ]:
        config = TrainConfig(epochs=2, batch_size=8, optimizer=optimizer, lr=0.01, temperature=2.0)
        alone, together, alone_stats, together_stats = train_both(config, 2, net_options, targets, **extra)
        assert_same_networks(alone, together)
        assert [s["loss"] for s in together_stats] == pytest.approx([s["loss"] for s in alone_stats], rel=1e-5)
    assert not torch.equal(together[0].state_dict()["body.1.weight"], nets(1)[0].state_dict()["body.1.weight"])


def test_objectives_and_mixed_architectures_are_refused_with_a_list():
    real = make_real(per_class=2)

    class Objective:
        def steps_per_epoch(self, count, batch_size):
            return 1

    with pytest.raises(UserError, match="Objective trains one network at a time; train the networks one by one"):
        train(nets(2), real.images, real.labels, TrainConfig(cutmix_p=0), **STATS, generator=[torch.Generator()] * 2, device=CPU,
              objective=Objective())
    with pytest.raises(UserError, match="2 networks need one generator each, got 1"):
        train(nets(2), real.images, real.labels, TrainConfig(), **STATS, generator=torch.Generator(), device=CPU)
    wider = build_net("convnet", 3, 3, (16, 16), depth=2, width=16)
    with pytest.raises(UserError, match="must share one architecture"):
        StackedNets([nets(1)[0], wider])


def test_groups_give_each_rank_one_contiguous_group():
    assert World().groups([0, 1, 2], together=False) == [[0], [1], [2]]
    assert World().groups([4, 5, 6], together=True) == [[4, 5, 6]]
    assert World(0, 2).groups([0, 1, 2, 3, 4], together=True) == [[0, 1, 2], [3, 4]]
    assert World(0, 4).groups([7, 8], together=True) == [[7], [8]] and World().groups([], True) == []


def test_batched_pool_writes_the_sequential_pool(tiny_pool, tmp_path):
    _, real, spec = tiny_pool  # 2 members trained one by one into tmp_path/pool
    test = make_real(per_class=4, seed=5, split="test")
    build_or_load_pool(tmp_path / "sequential", spec, 3, real, test, CPU, progress=False)
    build_or_load_pool(tmp_path / "batched", spec, 3, real, test, CPU, progress=False, batched=True)
    sequential, batched = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("sequential", "batched"))
    assert sorted(p.name for p in (tmp_path / "batched").iterdir()) == sorted(p.name for p in (tmp_path / "sequential").iterdir())
    assert batched["spec"] == sequential["spec"] and len(batched["members"]) == 3
    for mine, theirs in zip(batched["members"], sequential["members"]):
        assert mine.keys() == theirs.keys() and (mine["index"], mine["seed"], mine["init"]) == (theirs["index"], theirs["seed"], theirs["init"])
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["test_accuracy"] == pytest.approx(theirs["test_accuracy"], abs=100 / len(test) + 1e-9)  # at most one image
        init_a, init_b = load_file(tmp_path / "batched" / mine["init"]), load_file(tmp_path / "sequential" / theirs["init"])
        assert all(torch.equal(init_a[k], init_b[k]) for k in init_a)
        a, b = load_file(tmp_path / "batched" / mine["trained"]), load_file(tmp_path / "sequential" / theirs["trained"])
        effect = set(a) - without_effect(spec.build())
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], **TOLERANCE) for k in effect)


def test_batched_evaluation_runs_are_the_sequential_runs(tiny_set, tiny_test_data):
    config = EvalConfig(net_options={"depth": 1, "width": 8}, train=TrainConfig(epochs=4, batch_size=5), runs=3, seed=3)
    sequential = evaluate_set(tiny_set, tiny_test_data, config, CPU, progress=False)
    batched = evaluate_set(tiny_set, tiny_test_data, config, CPU, progress=False, batched=True)
    assert [r["seed"] for r in batched["runs"]] == [3, 4, 5]
    assert [r["loss"] for r in batched["runs"]] == pytest.approx([r["loss"] for r in sequential["runs"]], rel=1e-5)
    assert len({r["loss"] for r in batched["runs"]}) == 3
    for mine, theirs in zip(batched["runs"], sequential["runs"]):  # 40 test images: at most one may flip
        assert mine["accuracy"] == pytest.approx(theirs["accuracy"], abs=2.5 + 1e-9)


def test_two_processes_pretrain_a_batched_pool_as_one_process(tmp_path, monkeypatch):
    """Under torchrun each rank trains its group of members at once (3 members: 0-1 on rank 0, 2 on rank 1)."""
    from conftest import write_image_folder

    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--data", str(data), "--width", "4", "--depth", "2", "--pool-size", "3", "--no-progress"]
    assert main([*args, "--pool-folder", "single"]) == 0
    ranks = torchrun([*args, "--pool-folder", "ranks", "--batched-pool"], tmp_path)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    single, ranked = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("single", "ranks"))
    assert [m["index"] for m in ranked["members"]] == [0, 1, 2] and ranked["spec"] == single["spec"]
    for mine, theirs in zip(ranked["members"], single["members"]):
        assert mine["seed"] == theirs["seed"] and mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        a, b = load_file(tmp_path / "ranks" / mine["trained"]), load_file(tmp_path / "single" / theirs["trained"])
        assert all(torch.allclose(a[k], b[k], **TOLERANCE) for k in a), f"member {mine['index']} differs"  # SGD: every weight
