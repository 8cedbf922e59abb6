"""Run by tests/test_continual.py under `torchrun --nproc_per_node 2` (gloo): Avalanche's Naive with ReplayPlugin,
DLBPlugin and FreshModelPlugin (DLB), the model in DistributedDataParallel. Each rank writes FOLDER/rank<r>.json:
the warnings about distributed support, how many DLB step terms it took, the fresh models' memory sizes and
a fingerprint of the tested model's weights."""

from __future__ import annotations

import json
import sys
import warnings
from functools import partial
from pathlib import Path

import torch
from avalanche.distributed import DistributedHelper
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.supervised import Naive

from condense.data import RealData
from condense.nets import seeded_net
from condense.train import TrainConfig
from downstream.continual.benchmark import condensed_benchmark
from downstream.continual.memories import RandomMemory
from downstream.continual.plugins import FreshModelPlugin
from downstream.dlb import DLB
from downstream.dlb_plugin import DLBPlugin

STATS = ((0.5,) * 3, (0.25,) * 3)


def real(per_class: int, seed: int, split: str) -> RealData:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(6).repeat(per_class)
    images = (torch.rand(len(labels), 3, 8, 8, generator=generator) * 255).to(torch.uint8)
    return RealData(images, labels, [f"class{c}" for c in range(6)], *STATS, "ranks", split)


def main(folder: Path) -> None:
    DistributedHelper.init_distributed(0, backend="gloo", use_cuda=False)
    benchmark = condensed_benchmark(real(8, 0, "train"), real(4, 1, "test"), 3, seed=0)
    net = partial(seeded_net, "convnet", 3, 6, (8, 8), depth=1, width=8, stream="fresh")
    model = DistributedHelper.wrap_model(net(0))
    memory, dlb = RandomMemory(12), DLBPlugin()
    fresh = FreshModelPlugin(memory, net, TrainConfig(epochs=1, batch_size=4, cutmix_p=0.0), *STATS, objective=DLB(), progress=False)
    terms = []
    step_loss = dlb.distillation.step_loss
    dlb.distillation.step_loss = lambda *args: terms.append(1) or step_loss(*args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=8, train_epochs=2,
                         eval_mb_size=64, device=torch.device("cpu"), evaluator=None,
                         plugins=[ReplayPlugin(12, storage_policy=memory), dlb, fresh])
        for experience in benchmark.train_stream:
            strategy.train(experience, eval_streams=[])
    weights = DistributedHelper.unwrap_model(strategy.model).state_dict()
    (folder / f"rank{DistributedHelper.rank}.json").write_text(json.dumps({
        "warnings": [str(w.message) for w in caught if "distributed" in str(w.message)],
        "dlb_steps": len(terms),
        "memory_images": [h["memory_images"] for h in fresh.history],
        "weights": [float(t.double().sum()) for t in weights.values()],
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
