"""Continual learning through Avalanche: benchmark, memories, the fresh-model protocol, condense-as-you-go, CLI."""

from __future__ import annotations

import copy
import json
import statistics
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import pytest
import torch

import condense.evaluate as per_run
from condense.data import RealData
from condense.errors import UserError
from condense.nets import seeded_net
from condense.synthetic import SyntheticSet
from condense.train import TrainConfig, accuracy
from downstream.continual import CLConfig, MemorySpec, herding_order, parse_memories, protocol
from downstream.continual.benchmark import class_order, condensed_benchmark
from downstream.continual.memories import CondensedMemory, CondensingMemory, HerdingMemory, RandomMemory
from downstream.continual.plugins import FreshModelPlugin
from downstream.continual.protocol import make_memory, run_continual
from downstream.dlb import DLB
from downstream.dlb_plugin import DLBPlugin

from conftest import assert_one_error

CPU = torch.device("cpu")
STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
tiny_net = partial(seeded_net, "convnet", 3, 6, (8, 8), depth=1, width=8)  # a fresh net from a seed, as FreshModelPlugin takes it


def tiny_real(classes: int = 6, per_class: int = 8, size: int = 8, seed: int = 0, split: str = "train") -> RealData:
    """uint8 RGB images whose class shows in the mean colour of one channel and the brightness."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat(per_class)
    images = torch.rand(len(labels), 3, size, size, generator=generator) * 0.4
    for c in range(classes):
        images[labels == c, c % 3] += 0.3 + 0.3 * (c // 3)
    names = [f"class{c}" for c in range(classes)]
    return RealData((images.clamp(0, 1) * 255).to(torch.uint8), labels, names, *STATS, "tiny-cl", split)


def tiny_condensed(classes: int = 6, ipc: int = 2, factor: int = 2, size: int = 8) -> SyntheticSet:
    """A condensed set with `ipc` canvases per class, decoded to ipc * factor² images (canvas-major)."""
    labels = torch.arange(classes).repeat_interleave(ipc * factor**2)
    images = torch.rand(len(labels), 3, size, size, generator=torch.Generator().manual_seed(5))
    return SyntheticSet(images=images, labels=labels, class_names=[f"class{c}" for c in range(classes)], mean=STATS[0], std=STATS[1],
                        method="ncfm", source_dataset="tiny-cl", ipc=ipc, factor=factor)


def tiny_config(**changes) -> CLConfig:
    config = CLConfig(steps=3, ipc=2, seeds=(0,), net_options={"depth": 1, "width": 8},
                      train=TrainConfig(epochs=2, batch_size=16), stream_batch=8, eval_batch=64)
    return replace(config, **changes)


def fake_agent(model=None):
    """What a memory reads from a strategy: its model, device and evaluation batch size."""
    return SimpleNamespace(model=model, device=CPU, eval_mb_size=64)


@pytest.fixture(scope="module")
def data():
    return tiny_real(), tiny_real(per_class=4, seed=1, split="test")


def test_benchmark_order_names_and_items(data):
    train, test = data
    bench = condensed_benchmark(train, test, 3, seed=3)
    assert bench.class_order == class_order(6, 3) and sorted(bench.class_order) == list(range(6))
    assert bench.class_names == train.class_names
    assert bench.experience_classes == [bench.class_order[0:2], bench.class_order[2:4], bench.class_order[4:6]]
    for k, (exp, test_exp) in enumerate(zip(bench.train_stream, bench.test_stream)):
        assert sorted(exp.classes_in_this_experience) == sorted(bench.experience_classes[k])
        assert len(exp.dataset) == 16 and len(test_exp.dataset) == 8
        rows = torch.tensor(list(exp.dataset.source_index))
        assert set(train.labels[rows].tolist()) == set(bench.experience_classes[k])
    x, y, t = bench.train_stream[0].dataset[0]
    row = bench.train_stream[0].dataset.source_index[0]
    expected = (train.images[row].float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected) and y.dtype == torch.int64 and int(y) == int(train.labels[row]) and t == 0
    given = condensed_benchmark(train, test, 2, order=[5, 4, 3, 2, 1, 0])
    assert given.experience_classes == [[5, 4, 3], [2, 1, 0]]
    with pytest.raises(UserError, match="equal steps"):
        condensed_benchmark(train, test, 4)
    with pytest.raises(UserError, match="each of the 6 classes once"):
        condensed_benchmark(train, test, 2, order=[0, 0, 1, 2, 3, 4])


def feed(memory, bench, model=None) -> list[dict[int, int]]:
    """Absorb every experience; the stored images per class after each."""
    sizes = []
    for exp in bench.train_stream:
        memory.post_adapt(fake_agent(model), exp)
        sizes.append(memory.stored_per_class())
    return sizes


def test_budget_per_class_shrinks_as_classes_arrive(data):
    bench = condensed_benchmark(*data, 3, seed=0)
    order = bench.class_order
    # 12 images in all: 6 per class for 2 classes, 3 for 4, 2 for 6.
    sizes = feed(RandomMemory(12), bench)
    assert sizes == [dict.fromkeys(order[:2], 6), dict.fromkeys(order[:4], 3), dict.fromkeys(order, 2)]
    memory = RandomMemory(12, max_per_class=4)
    assert [len(memory.buffer) for _ in feed(memory, bench)[-1:]] == [12]
    assert feed(RandomMemory(12, max_per_class=4), bench)[0] == dict.fromkeys(order[:2], 4)
    # shrinking keeps a prefix of each class's ranking, and the buffer holds exactly the stored images
    random = RandomMemory(12, seed=1)
    random.post_adapt(fake_agent(), bench.train_stream[0])
    before = list(random.buffer.source_index)
    random.post_adapt(fake_agent(), bench.train_stream[1])
    after = list(random.buffer.source_index)
    for c in order[:2]:
        kept = [r for r in after if int(data[0].labels[r]) == c]
        assert kept == [r for r in before if int(data[0].labels[r]) == c][:3]
    # a condensed class counts its canvases (factor 2: 4 decoded images each), or its decoded images
    condensed = CondensedMemory(8, tiny_condensed(ipc=2))
    sizes = feed(condensed, bench)
    assert sizes[0] == dict.fromkeys(order[:2], 2)  # budget 4 per class, but the set has 2 canvases
    assert sizes[2] == dict.fromkeys(order, 1) and len(condensed.buffer) == 6 * 4
    decoded = CondensedMemory(8, tiny_condensed(ipc=2), count="decoded")
    assert feed(decoded, bench)[0] == dict.fromkeys(order[:2], 4) and len(decoded.buffer) == 6 * 1
    # the same experience absorbed twice (ReplayPlugin and FreshModelPlugin) changes nothing
    condensed.post_adapt(fake_agent(), bench.train_stream[2])
    assert len(condensed.buffer) == 24 and condensed.absorbed == [0, 1, 2]


def test_memory_items_have_the_stream_structure(data):
    from condense.nets import build_net

    bench = condensed_benchmark(*data, 3, seed=0)
    model = build_net("convnet", 3, 6, (8, 8), depth=1, width=8)
    stream_item = bench.train_stream[0].dataset[0]
    kinds = {
        "random": RandomMemory(12), "herding": HerdingMemory(12),
        "condensed": CondensedMemory(12, tiny_condensed()),
    }
    for name, memory in kinds.items():
        feed(memory, bench, model)
        for item in (memory.buffer[0], memory.buffer[len(memory.buffer) - 1]):
            assert len(item) == len(stream_item), name
            assert [type(v) for v in item] == [type(v) for v in stream_item], name
            assert item[0].shape == stream_item[0].shape and item[0].dtype == stream_item[0].dtype, name
            assert item[1].dtype == stream_item[1].dtype and item[1].shape == stream_item[1].shape, name
        assert len(memory.buffer.targets) == len(memory.buffer)
    # herding's first pick per class is the image whose features are nearest the class mean
    herding = HerdingMemory(12)
    herding.post_adapt(fake_agent(model), bench.train_stream[0])
    cls = bench.experience_classes[0][0]
    rows = torch.tensor(bench.train_stream[0].dataset.targets.val_to_idx[cls])
    x = torch.stack([bench.train_stream[0].dataset[int(i)][0] for i in rows])
    with torch.no_grad():
        features = model.features(x)
    nearest = rows[(features - features.mean(0)).square().sum(1).argmin()]
    assert herding.buffer.source_index[0] == bench.train_stream[0].dataset.source_index[int(nearest)]


def test_herding_order_is_avalanche_herding_prefix():
    from avalanche.training.storage_policy import HerdingSelectionStrategy

    features = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    full = HerdingSelectionStrategy.make_sorted_indices_from_features(None, features)  # the method uses no state
    assert herding_order(features, 7) == [int(i) for i in full[:7]]
    assert herding_order(features, 100) == [int(i) for i in full]


@pytest.mark.parametrize("method", ["ncfm", "dm"])
def test_condense_as_you_go_never_reads_unseen_classes(data, method):
    from condense.distill import DistillConfig

    train, _ = data
    bench = condensed_benchmark(*data, 3, seed=2)
    config = DistillConfig(ipc=1, factor=2, width=8, depth=1, pool_size=1, pool_epochs=1, real_batch=4, iterations=3,
                           seed=0, method=method).changed(**({"frequencies": 16} if method == "ncfm" else {}))
    memory = CondensingMemory(12, bench, config, CPU, progress=False)
    for k, exp in enumerate(bench.train_stream):
        memory.post_adapt(fake_agent(), exp)
        read = memory.reads[k]
        seen = {c for group in bench.experience_classes[: k + 1] for c in group}
        current = set(bench.experience_classes[k])
        assert set(train.labels[read["pool_rows"]].tolist()) == (seen if method == "ncfm" else set())  # matchers: every class seen so far
        assert set(train.labels[read["distill_rows"]].tolist()) == current  # distillation: this experience only
        assert set(train.labels[read["step_rows"]].tolist()) <= current and len(read["step_rows"]) > 0
        assert len(read["pool_rows"]) == (16 * (k + 1) if method == "ncfm" else 0)  # dm: no pool
        assert memory.stored_per_class() == dict.fromkeys(seen, 1)
    assert set(memory.buffer.targets) == set(range(6)) and len(memory.buffer) == 6 * 4


def test_fresh_model_protocol_resets_weights_each_experience(data, monkeypatch):
    train, test = data
    config = tiny_config()
    starts, ends = [], []
    real_train = per_run.train

    def recording_train(nets, images, targets, *args, **kwargs):
        (net,) = nets  # the per-run trainer trains the fresh model alone
        starts.append({k: v.clone() for k, v in net.state_dict().items()})
        result = real_train(nets, images, targets, *args, **kwargs)
        ends.append({k: v.clone() for k, v in net.state_dict().items()})
        return result

    monkeypatch.setattr(per_run, "train", recording_train)  # the loop the per-run trainer calls
    bench = condensed_benchmark(train, test, 3, seed=0)
    memory = RandomMemory(12, 2)
    fresh_models = []
    watcher = SimpleNamespace(after_eval=lambda strategy, **kw: fresh_models.append(copy.deepcopy(strategy.model)))
    run = run_continual(bench, memory, config, 7, CPU, plugins=[_plugin(watcher)], progress=False)
    for k in range(3):
        fresh = seeded_net("convnet", 3, 6, (8, 8), 7 * 1000 + k, stream="fresh", **config.net_options).state_dict()
        assert all(torch.equal(starts[k][name], fresh[name]) for name in fresh)  # a new init, the seed's own
        if k:
            assert not torch.equal(starts[k]["classifier.weight"], ends[k - 1]["classifier.weight"])
    assert [s["memory_images"] for s in run["steps"]] == [4, 8, 12]
    assert [s["classes_seen"] for s in run["steps"]] == [2, 4, 6]
    for k, (step, net) in enumerate(zip(run["steps"], fresh_models)):  # Avalanche tested the fresh model on the seen classes
        assert all(torch.equal(net.state_dict()[name], ends[k][name]) for name in ends[k])
        seen = torch.isin(test.labels, torch.tensor(bench.class_order[: 2 * (k + 1)]))
        subset = RealData(test.images[seen], test.labels[seen], test.class_names, test.mean, test.std, test.source, test.split)
        assert step["accuracy"] == pytest.approx(accuracy(net, subset, test.mean, test.std, CPU), abs=1e-6)
    assert any(name.startswith("StreamForgetting") for name in run["avalanche"])


def _plugin(callbacks):
    """An Avalanche plugin calling the given callbacks (e.g. to watch the strategy after each evaluation)."""
    from avalanche.core import SupervisedPlugin

    plugin = SupervisedPlugin()
    for name, function in vars(callbacks).items():
        setattr(plugin, name, function)
    return plugin


def test_plugins_inside_naive_and_replay(data):
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.supervised import Naive, Replay

    train, test = data
    bench = condensed_benchmark(train, test, 3, seed=1)
    config = TrainConfig(epochs=1, batch_size=16)

    for strategy_class in (Naive, Replay):
        model = tiny_net(0)
        memory = CondensedMemory(12, tiny_condensed(), max_per_class=2)
        fresh = FreshModelPlugin(memory, tiny_net, config, *STATS, progress=False)
        used = [fresh] if strategy_class is Replay else [ReplayPlugin(12, storage_policy=memory), fresh]
        extra = {"mem_size": 12} if strategy_class is Replay else {}
        strategy = strategy_class(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                                  criterion=torch.nn.CrossEntropyLoss(), train_mb_size=8,
                                  train_epochs=1, eval_mb_size=64, device=CPU, plugins=used, evaluator=None, **extra)
        before = model.classifier.weight.detach().clone()
        for exp in bench.train_stream:
            strategy.train(exp, eval_streams=[])
        assert not torch.equal(before, model.classifier.weight)
        assert [h["memory_images"] for h in fresh.history] == [2 * 2 * 4, 4 * 2 * 4, 6 * 2 * 4]
        assert fresh.history[-1]["stored_per_class"] == dict.fromkeys(range(6), 2)


@pytest.fixture
def gloo_group(tmp_path):
    """A one-process gloo group: Avalanche then trains as distributed (`DistributedHelper.is_distributed`)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("distributed", [False, True])
def test_dlb_composes_with_memories_and_the_fresh_model(data, distributed, request, recwarn):
    """Also distributed, the model wrapped in DistributedDataParallel: both plugins declare it and still do their part."""
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.supervised import Naive
    from torch.nn.parallel import DistributedDataParallel

    train, test = data
    bench = condensed_benchmark(train, test, 3, seed=0)
    if distributed:
        request.getfixturevalue("gloo_group")
    model = DistributedDataParallel(tiny_net(0)) if distributed else tiny_net(0)
    memory = HerdingMemory(12)
    objective, plugin = DLB(), DLBPlugin()
    fresh_terms, stream_terms, stream_steps = [], [], []
    extra_loss, step_loss = objective.extra_loss, plugin.distillation.step_loss
    objective.extra_loss = lambda logits, mixed: fresh_terms.append(extra_loss(logits, mixed)) or fresh_terms[-1]
    plugin.distillation.step_loss = lambda *args: stream_terms.append(step_loss(*args)) or stream_terms[-1]
    fresh = FreshModelPlugin(memory, tiny_net, TrainConfig(epochs=2, batch_size=4, cutmix_p=0.0), *STATS,
                         objective=objective, progress=False)
    counter = _plugin(SimpleNamespace(after_training_iteration=lambda strategy, **kw: stream_steps.append(1)))
    counter.supports_distributed = True  # it only counts; the warning below is about the others
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=8, train_epochs=1,
                     eval_mb_size=64, device=CPU, evaluator=None,
                     plugins=[ReplayPlugin(12, storage_policy=memory), plugin, fresh, counter])
    for exp in bench.train_stream:
        strategy.train(exp, eval_streams=[])
    assert [h["memory_images"] for h in fresh.history] == [12, 12, 12]
    # the fresh model trains with DLB: 12 images in batches of 4 for 2 epochs, 6 steps per experience, a KL term from the 2nd on
    assert len(fresh_terms) == 3 * 6 and sum(float(term.detach()) > 0 for term in fresh_terms) == 3 * 5
    assert len(stream_terms) == len(stream_steps) > 0  # every stream step of the strategy takes the plugin's DLB loss
    assert not [w for w in recwarn if "distributed" in str(w.message)]  # Avalanche warns of plugins that do not declare it


@pytest.mark.multiprocess
@pytest.mark.slow
def test_plugins_under_two_gloo_processes(tmp_path):
    """Under torchrun (2 gloo ranks, the model in DistributedDataParallel), DLBPlugin and FreshModelPlugin run without
    Avalanche's warning about plugins that do not support distributed training, and both ranks test one fresh model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(tests / "avalanche_ranks.py"), str(tmp_path)], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(rank["warnings"] == [] for rank in ranks), ranks  # Avalanche warns of every plugin that does not declare it
    assert all(rank["dlb_steps"] > 0 and rank["memory_images"] == [12, 12, 12] for rank in ranks)  # each rank's own DLB steps
    assert ranks[0]["weights"] == ranks[1]["weights"]  # one tested model


def test_memory_specs_and_errors(data):
    specs = parse_memories("random, herding,condensed:runs/a/synthetic.safetensors,condensed")
    assert [(s.kind, s.path) for s in specs] == [("random", None), ("herding", None), ("condensed", "runs/a/synthetic.safetensors"), ("condensed", None)]
    assert specs[2].label == "condensed:a"
    for bad in ("rand", "random:x", ""):
        with pytest.raises(UserError, match="memory"):
            parse_memories(bad)
    bench = condensed_benchmark(*data, 3)
    wrong = replace(tiny_condensed(), class_names=[f"other{c}" for c in range(6)])
    with pytest.raises(UserError, match="classes"):
        make_memory(MemorySpec("condensed", "x.safetensors"), bench, tiny_config(), 0, CPU, loaded={"x.safetensors": wrong})
    with pytest.raises(UserError, match="positive size"):
        RandomMemory(0)
    with pytest.raises(UserError, match="no setting iterationz"):
        make_memory(MemorySpec("condensed"), bench, tiny_config(condense={"iterationz": 3}), 0, CPU)
    as_you_go = make_memory(MemorySpec("condensed"), bench, tiny_config(condense={"iterations": 3, "pool_size": 1}), 4, CPU)
    assert (as_you_go.config.iterations, as_you_go.config.pool_size, as_you_go.config.ipc, as_you_go.config.seed) == (3, 1, 2, 4)


def test_cli_table_plot_and_json(tmp_path, capsys):
    from condense.baseline import random_subset
    from downstream.cli import main

    folder = tmp_path / "data"
    train, test = tiny_real(), tiny_real(per_class=4, seed=1, split="test")
    _write_folder(folder, train, test)
    from condense.data import load_real

    random_subset(load_real(str(folder), "train"), 2, seed=3).save(tmp_path / "set.safetensors")
    out = tmp_path / "out"
    code = main(["cl", "--data", str(folder), "--steps", "3", "--memory", f"random,condensed:{tmp_path / 'set.safetensors'}",
                 "--ipc", "2", "--seeds", "0,1", "--epochs", "1", "--width", "8", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "random" in printed and "condensed:" in printed and printed.count("±") >= 6
    result = json.loads((out / "cl.json").read_text())
    assert (out / "cl.png").stat().st_size > 1000
    for memory in result["memories"].values():
        assert len(memory["runs"]) == 2 and len(memory["accuracy_mean"]) == 3
        assert [len(s["stored_per_class"]) for s in memory["runs"][0]["steps"]] == [2, 4, 6]
        per_step = []
        for run in memory["runs"]:
            accuracies = [s["accuracy"] for s in run["steps"]]
            trained = run["avalanche"]["Accuracy_On_Trained_Experiences/eval_phase/test_stream"][1]
            assert accuracies == pytest.approx([100 * value for value in trained])
            for step in run["steps"]:  # 4 test images per seen class: a whole number of them right
                right = step["accuracy"] * 4 * step["classes_seen"] / 100
                assert right == pytest.approx(round(right), abs=1e-6)
            per_step.append(accuracies)
        means, stds = [statistics.fmean(v) for v in zip(*per_step)], [statistics.pstdev(v) for v in zip(*per_step)]
        assert memory["accuracy_mean"] == pytest.approx(means) and memory["accuracy_std"] == pytest.approx(stds)
        assert all(f"{m:6.2f} ± {s:5.2f}" in printed for m, s in zip(means, stds))
    assert result["objective"] == {"objective": "ce"} and "epochs per step, cross-entropy" in printed
    assert main(["cl", "--data", str(folder), "--steps", "4", "--memory", "random", "--ipc", "2", "--out", str(out)]) == 2
    assert "equal steps" in capsys.readouterr().err


def test_cli_fresh_model_trains_with_dlb(tmp_path, capsys, monkeypatch):
    from downstream.cli import main

    folder = tmp_path / "data"
    _write_folder(folder, tiny_real(), tiny_real(per_class=4, seed=1, split="test"))
    objectives = []
    train = per_run.train  # the loop of the per-run trainer FreshModelPlugin calls: record the objective every fresh model gets
    monkeypatch.setattr(per_run, "train", lambda *args, **kwargs: objectives.append(kwargs["objective"]) or train(*args, **kwargs))
    argv = ["cl", "--data", str(folder), "--steps", "3", "--memory", "random", "--ipc", "2", "--seeds", "0", "--epochs", "2", "--width", "8",
            "--device", "cpu", "--no-progress", "--objective", "dlb", "--scheme", "paper", "--out", str(tmp_path / "dlb")]
    assert main(argv) == 0
    assert "epochs per step, DLB (scheme paper, tau 3.0, alpha 1.0)" in capsys.readouterr().out
    result = json.loads((tmp_path / "dlb" / "cl.json").read_text())
    assert result["objective"] == {"objective": "dlb", "tau": 3.0, "alpha": 1.0, "scheme": "paper"}
    assert result["config"]["train"]["cutmix_p"] == 0.0  # the preset's CutMix is dropped: DLB refuses it
    assert len(objectives) == 3 and all(isinstance(o, DLB) and o.scheme == "paper" for o in objectives)  # one fresh model per step
    assert main([*argv[:-6], "--out", str(tmp_path / "ce"), "--objective", "ce"]) == 0  # no --scheme: plain CE has none
    assert objectives[3:] == [None] * 3
    assert main([*argv[:-4], "--out", str(tmp_path / "official")]) == 0  # DLB's official scheme keeps the preset's CutMix (new samples only)
    assert json.loads((tmp_path / "official" / "cl.json").read_text())["config"]["train"]["cutmix_p"] == 0.5


def test_cli_replay_strategy_trains_and_tests_the_continual_model_with_dlb_plugin(tmp_path, capsys, monkeypatch):
    from downstream.cli import main
    from downstream.dlb import LastBatchDistillation

    folder = tmp_path / "data"
    _write_folder(folder, tiny_real(), tiny_real(per_class=4, seed=1, split="test"))
    fresh_models, dlb_steps = [], []
    monkeypatch.setattr(per_run, "train", lambda *args, **kwargs: fresh_models.append(1))
    step_loss = LastBatchDistillation.step_loss
    monkeypatch.setattr(LastBatchDistillation, "step_loss", lambda self, *args: dlb_steps.append(len(args[1])) or step_loss(self, *args))
    argv = ["cl", "--data", str(folder), "--steps", "3", "--memory", "random", "--ipc", "2", "--seeds", "0", "--width", "8",
            "--device", "cpu", "--no-progress", "--strategy", "replay", "--stream-epochs", "2", "--objective", "dlb", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    assert "continual model (experience replay) 2 epochs per experience, DLB (scheme official" in capsys.readouterr().out
    result = json.loads((tmp_path / "r" / "cl.json").read_text())
    assert result["config"]["strategy"] == "replay" and not fresh_models  # no fresh model: the continual model is tested
    # 16 new images per experience in mini-batches of 128 (one per epoch), 2 epochs, 3 experiences; from the 2nd on
    # each mini-batch carries a quarter of 128 (32) replayed images, here the whole memory (4, then 8)
    assert dlb_steps == [16, 16, 16 + 4, 16 + 4, 16 + 8, 16 + 8]
    assert [s["memory_images"] for s in result["memories"]["random"]["runs"][0]["steps"]] == [4, 8, 12]
    assert main([*argv[:-1], str(tmp_path / "p"), "--scheme", "paper"]) == 2
    assert "the replay strategy trains with DLB through DLBPlugin, which takes the official scheme" in capsys.readouterr().err
    assert not (tmp_path / "p" / "cl.json").exists()


def _write_folder(folder, train: RealData, test: RealData) -> None:
    """A Hub-layout image folder holding exactly these splits."""
    import datasets
    from PIL import Image

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=train.class_names)})
    (folder / "data").mkdir(parents=True)
    for split in (train, test):
        rows = {"img": [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in split.images], "label": split.labels.tolist()}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "data" / f"{split.split}-00000-of-00001.parquet"))


@pytest.fixture(scope="module")
def cl_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cl") / "data"
    _write_folder(folder, tiny_real(), tiny_real(per_class=4, seed=1, split="test"))
    return folder


def _without_class(synthetic: SyntheticSet, cls: int) -> SyntheticSet:
    keep = synthetic.labels != cls
    return replace(synthetic, images=synthetic.images[keep], labels=synthetic.labels[keep])


@pytest.mark.parametrize("change, message", [
    (lambda s: replace(s, class_names=[f"other{c}" for c in range(6)]), "use a set made from this dataset"),
    (lambda s: replace(s, images=s.images[..., :4, :4]), "images are [3, 4, 4]"),
    (lambda s: _without_class(s, 5), "no images of class 5"),
    (lambda s: replace(s, mean=STATS[0], std=STATS[1]), "is normalised with mean (0.5, 0.5, 0.5)"),
], ids=["classes", "image size", "missing class", "normalisation"])
def test_cl_checks_every_memory_before_training_any(cl_folder, tmp_path, capsys, monkeypatch, change, message):
    from condense.data import load_real
    from downstream.cli import main

    def no_training(*args, **kwargs):
        raise AssertionError("a memory was trained before every input was checked")

    monkeypatch.setattr(protocol, "run_continual", no_training)
    stream = load_real(str(cl_folder), "train")
    path = change(replace(tiny_condensed(), mean=stream.mean, std=stream.std)).save(tmp_path / "bad.safetensors")
    argv = ["cl", "--data", cl_folder, "--steps", "3", "--memory", f"random,herding,condensed:{path}", "--ipc", "2",
            "--epochs", "1", "--width", "8", "--out", tmp_path / "out", "--device", "cpu", "--no-progress"]
    assert_one_error(main, argv, capsys, contains=message)
    assert not (tmp_path / "out").exists()
