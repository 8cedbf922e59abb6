"""benchmarks/paper_gpu.py --tiny: the whole paper path (pool, distillation, evaluation, Hub export) at tiny sizes on a CPU,
stopped by its budget at each safe point and resumed to the very result of an uninterrupted run."""

import json

import torch

from condense.hub import load_hub_folder
from condense.synthetic import SyntheticSet

from conftest import assert_one_error, load_benchmark, write_image_folder


def benchmark_module():
    return load_benchmark("paper_gpu")


def test_tiny_run_stops_by_budget_and_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    paper_gpu = benchmark_module()
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    common = ["--tiny", "--data", str(data), "--device", "cpu", "--no-progress"]
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"

    # --budget 0: every command does one part of the work, then stops at the next safe point
    assert paper_gpu.main([*common, "--out", str(stopped), "--budget", "0"]) == 0
    assert "stopped by the budget (0 s) after the pool" in capsys.readouterr().out
    assert len(json.loads((stopped / "pool" / "manifest.json").read_text())["members"]) == 2
    assert not (stopped / "run" / "checkpoint.pt").exists()
    assert paper_gpu.main([*common, "--out", str(stopped), "--budget", "0"]) == 0
    assert "at the checkpoint of iteration 2" in capsys.readouterr().out
    assert torch.load(stopped / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 2
    figures = json.loads((stopped / "figures.json").read_text())
    assert figures["complete"] is False and figures["phases"]["distill"]["iterations_done"] == 2

    assert paper_gpu.main([*common, "--out", str(stopped)]) == 0  # no budget: to the end
    out = capsys.readouterr().out
    for phase in ("data", "pool", "distill", "eval", "export"):
        assert f"\n{phase:<8} " in "\n" + out, out
    assert "complete:" in out
    assert paper_gpu.main([*common, "--out", str(whole)]) == 0
    capsys.readouterr()

    resumed, uninterrupted = (SyntheticSet.load(folder / "run" / "synthetic.safetensors") for folder in (stopped, whole))
    assert torch.equal(resumed.canvases, uninterrupted.canvases)
    assert resumed.config["iterations_done"] == 6 and len(resumed) == 3 * 4  # 3 classes, ipc 1, factor 2
    evaluations = [json.loads((folder / "eval.json").read_text()) for folder in (stopped, whole)]
    assert [r["accuracy"] for r in evaluations[0]["runs"]] == [r["accuracy"] for r in evaluations[1]["runs"]]
    assert len(evaluations[0]["runs"]) == 2 and evaluations[0]["protocol"]["train"]["epochs"] == 2
    figures = json.loads((stopped / "figures.json").read_text())
    assert figures["complete"] is True and figures["phases"]["distill"]["commands"] == 2
    assert figures["phases"]["distill"]["s_per_iteration_median"] > 0 and figures["phases"]["eval"]["accuracy_mean"] == round(
        evaluations[0]["accuracy_mean"], 2)
    exported = load_hub_folder(stopped / "hub", "ipc1")
    assert torch.equal(exported.images, resumed.images) and exported.evaluation["accuracy_mean"] == evaluations[0]["accuracy_mean"]

    # a rerun asking for another evaluation reported the earlier figures as complete: refused before any work
    assert_one_error(paper_gpu.main, [*common, "--out", stopped, "--eval-epochs", "3"], capsys, contains="holds an evaluation with other settings (train differ")
    assert json.loads((stopped / "figures.json").read_text()) == figures
