"""Under torchrun, 2 CPU processes (gloo) give what one process gives: the distilled set class by class,
the pool members and the evaluation runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from condense.cli import main
from condense.distributed import World
from condense.synthetic import SyntheticSet

from conftest import write_image_folder

ARGS = ["distill", "--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4",
        "--pool-size", "1", "--eval-runs", "0", "--checkpoint-every", "2", "--log-every", "1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread, as the ranks run


def torchrun_command(args: list[str], module: str = "condense", launcher: tuple[str, ...] = ()) -> list[str]:
    # --standalone: the rendezvous picks its own free port (no race between choosing a port and binding it)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *launcher, "-m", module, *args]


def torchrun(args: list[str], cwd, module: str = "condense") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(torchrun_command(args, module), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_classes_are_shared_round_robin():
    assert [World(rank, 3).shard(10) for rank in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert World().shard(4) == [0, 1, 2, 3] and World(1, 3).owner(7) == 1


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["gaussian", "learned", "dance"])
def test_two_gloo_processes_give_the_single_process_set(tmp_path, monkeypatch, sampler):
    """NCFM with either sampler, and DANCE (another method: the sharding is the interface's, not a method's)."""
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    method = ["--method", "dance"] if sampler == "dance" else ["--sampler", sampler, "--frequencies", "32"]
    args = [*ARGS, "--data", str(data), *method, "--pool-folder", "pool"]
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
            if sampler != "learned":  # the same operations on the same numbers: bit for bit
                assert torch.equal(sharded.canvases[c], single.canvases[c]), f"{run}: class {c} differs"
            else:  # ψ's gradient is summed across ranks in another order than in one process: equal to rounding
                assert torch.allclose(sharded.canvases[c], single.canvases[c], atol=1e-5), f"{run}: class {c} differs"
    assert (tmp_path / "ranks" / "log.jsonl").read_text().count("\n") == 4  # rank 0 alone writes the log


def worker_pid(agent: int, rank: int) -> int | None:
    """The process id of the torchrun worker of `rank` among the children of the launcher `agent` (Linux /proc), or None."""
    for task in Path(f"/proc/{agent}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                environment = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:  # gone meanwhile
                continue
            if f"RANK={rank}".encode() in environment:
                return int(child)
    return None


@pytest.mark.multiprocess
@pytest.mark.slow
def test_an_elastic_restart_after_a_killed_rank_ends_where_an_uninterrupted_run_does(tmp_path, monkeypatch):
    """Issue 24 item 6: torchrun --max-restarts 1 restarts both processes with the same arguments after rank 1 is killed
    (SIGKILL) mid-run; `--resume auto` continues from the last checkpoint to the uninterrupted set, bit for bit."""
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").is_file():
        pytest.skip("finds the worker to kill through Linux's /proc/PID/task/TID/children")
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    iterations = 60
    args = [*ARGS, "--frequencies", "32", "--data", str(data), "--pool-folder", "pool", "--iterations", str(iterations), "--resume", "auto"]
    assert main([*args, "--out", "single"]) == 0  # also builds the pool the ranks reuse
    log = tmp_path / "ranks" / "log.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(torchrun_command([*args, "--out", "ranks"], launcher=("--max-restarts", "1")), cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as launcher:
        deadline, done = time.monotonic() + 300, 0
        while done < 5 and time.monotonic() < deadline and launcher.poll() is None:  # past the checkpoint of iteration 4
            time.sleep(0.01)
            done = log.read_text().count("\n") if log.is_file() else 0
        rank1 = worker_pid(launcher.pid, 1)
        assert rank1 is not None and done < iterations - 1, f"no worker to kill mid-run (log lines: {done})"
        os.kill(rank1, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, stderr[-3000:]
    assert "exitcode: -9" in stderr, stderr[-3000:]  # the agent saw the kill, and restarted the processes that then ended well
    single, ranks = (SyntheticSet.load(tmp_path / name / "synthetic.safetensors") for name in ("single", "ranks"))
    assert torch.equal(single.canvases, ranks.canvases) and ranks.config["iterations_done"] == iterations
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == list(range(1, iterations + 1))


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_pretrain_the_single_process_pool(tmp_path, monkeypatch):
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--data", str(data), "--width", "4", "--depth", "2", "--no-progress"]
    assert main([*args, "--pool-size", "3", "--pool-folder", "single"]) == 0
    ranks = torchrun([*args, "--pool-size", "2", "--pool-folder", "ranks"], tmp_path)  # one round: members 0 and 1
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert ranks.stdout.count("pool of 2 in ranks") == 1  # rank 0 alone reports
    grown = torchrun([*args, "--pool-size", "3", "--pool-folder", "ranks"], tmp_path)  # the missing member is added
    assert grown.returncode == 0, grown.stderr[-3000:]
    single, ranked = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("single", "ranks"))
    assert [m["index"] for m in ranked["members"]] == [0, 1, 2] and ranked["spec"] == single["spec"]
    for mine, theirs in zip(ranked["members"], single["members"]):
        assert (mine["seed"], mine["train_loss"], mine["test_accuracy"]) == (theirs["seed"], theirs["train_loss"], theirs["test_accuracy"])
        for kind in ("init", "trained"):
            a, b = load_file(tmp_path / "ranks" / mine[kind]), load_file(tmp_path / "single" / theirs[kind])
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"member {mine['index']} {kind} differs"


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("command", ["condense eval", "downstream train"])
def test_two_processes_share_the_evaluation_runs(tmp_path, monkeypatch, command):
    from downstream.cli import main as downstream_main

    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    assert main(["baseline", "random", "--data", str(data), "--ipc", "2", "--out", "set.safetensors"]) == 0
    program, name = command.split()
    args = [name, "set.safetensors", "--data", str(data), "--runs", "3", "--epochs", "3", "--width", "4", "--depth", "2",
            "--no-progress", *(["--label-noise", "0.25"] if program == "downstream" else [])]  # DLB, and labels noisy per run
    assert (main if program == "condense" else downstream_main)([*args, "--out", "single.json"]) == 0
    ranks = torchrun([*args, "--out", "ranks.json"], tmp_path, module=program)  # runs 0 and 2 on rank 0, run 1 on rank 1
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    single, ranked = (json.loads((tmp_path / name).read_text()) for name in ("single.json", "ranks.json"))
    assert [r["seed"] for r in ranked["runs"]] == [0, 1, 2]
    assert [r["accuracy"] for r in ranked["runs"]] == [r["accuracy"] for r in single["runs"]]
    assert [r["loss"] for r in ranked["runs"]] == [r["loss"] for r in single["runs"]]
    assert ranked["accuracy_mean"] == single["accuracy_mean"] and ranks.stdout.count("mean ± std") == 1


def test_jobs_in_rounds_keep_their_order_in_one_process():
    seen = []
    results = World().map_in_rounds([3, 1, 2], lambda job: job * 10, lambda jobs, out: seen.append((jobs, out)))
    assert results == [30, 10, 20] and seen == [([3], [30]), ([1], [10]), ([2], [20])]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_share_the_nas_candidates(tmp_path, monkeypatch):
    from downstream.cli import main as downstream_main

    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    space = [{"depth": 1, "width": 4, "pool": pool} for pool in ("none", "max", "avg")]
    (tmp_path / "space.json").write_text(json.dumps(space))
    args = ["nas", "--data", str(data), "--space", "space.json", "--candidates", "all", "--proxies", "random,real", "--random-ipc", "2",
            "--random-epochs", "2", "--real-epochs", "1", "--reference-epochs", "2", "--real-per-class", "all", "--test-per-class", "all", "--no-progress"]
    assert downstream_main([*args, "--out", "single"]) == 0
    ranks = torchrun([*args, "--out", "ranks"], tmp_path, module="downstream")
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    single, ranked = (json.loads((tmp_path / name / "nas.json").read_text()) for name in ("single", "ranks"))
    assert ranked["complete"] and [c["name"] for c in ranked["candidates"]] == [c["name"] for c in single["candidates"]]
    for mine, theirs in zip(ranked["candidates"], single["candidates"]):
        assert {name: run["accuracy"] for name, run in mine["runs"].items()} == {name: run["accuracy"] for name, run in theirs["runs"].items()}
    assert ranked["summary"]["proxies"]["real"]["spearman"] == single["summary"]["proxies"]["real"]["spearman"]
    assert (tmp_path / "ranks" / "nas.png").is_file() and ranks.stdout.count("wrote ranks/nas.json") == 1
