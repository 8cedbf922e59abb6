"""Distillation under torchrun: 2 CPU processes (gloo) give the single-process set, class by class."""

import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import write_image_folder

from condense.cli import main
from condense.distributed import World
from condense.synthetic import SyntheticSet

ARGS = ["distill", "--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32",
        "--pool-size", "1", "--eval-runs", "0", "--checkpoint-every", "2", "--log-every", "1", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "condense", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_classes_are_shared_round_robin():
    assert [World(rank, 3).shard(10) for rank in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert World().shard(4) == [0, 1, 2, 3] and World(1, 3).owner(7) == 1


@pytest.mark.parametrize("sampler", ["gaussian", "learned"])
def test_two_gloo_processes_give_the_single_process_set(tmp_path, monkeypatch, sampler):
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    args = [*ARGS, "--data", str(data), "--sampler", sampler, "--pool-folder", "pool"]
    assert main([*args, "--iterations", "4", "--out", "single"]) == 0  # also builds the pool the ranks reuse
    whole = torchrun([*args, "--iterations", "4", "--out", "ranks"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    runs = [("ranks", "single")]
    if sampler == "gaussian":  # checkpoint and resume: stop after 2 iterations, continue to 4, in one process and under torchrun
        assert main([*args, "--iterations", "2", "--out", "single-resumed"]) == 0
        assert main([*args, "--iterations", "4", "--out", "single-resumed", "--resume"]) == 0
        assert torchrun([*args, "--iterations", "2", "--out", "resumed"], tmp_path).returncode == 0
        resumed = torchrun([*args, "--iterations", "4", "--out", "resumed", "--resume"], tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        runs.append(("resumed", "single-resumed"))
    for run, reference in runs:
        single = SyntheticSet.load(tmp_path / reference / "synthetic.safetensors")
        sharded = SyntheticSet.load(tmp_path / run / "synthetic.safetensors")
        assert torch.equal(sharded.labels, single.labels) and sorted(set(sharded.labels.tolist())) == [0, 1, 2]
        for c in range(3):  # class 1 was matched by rank 1, classes 0 and 2 by rank 0
            if sampler == "gaussian":  # the same operations on the same numbers: bit for bit
                assert torch.equal(sharded.canvases[c], single.canvases[c]), f"{run}: class {c} differs"
            else:  # ψ's gradient is summed across ranks in another order than in one process: equal to rounding
                assert torch.allclose(sharded.canvases[c], single.canvases[c], atol=1e-5), f"{run}: class {c} differs"
    assert (tmp_path / "ranks" / "log.jsonl").read_text().count("\n") == 4  # rank 0 alone writes the log
