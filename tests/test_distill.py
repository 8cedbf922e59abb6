import dataclasses
import json
import math

import pytest
import torch

from condense.cli import main
from condense.config import PRESETS, DistillConfig, preset
from condense.distill import make_method
from condense.errors import UserError
from condense.loop import run_distillation
from condense.methods import Method
from condense.run import distill
from condense.runfolder import load_checkpoint
from condense.synthetic import SyntheticSet

from conftest import kill_before_iteration, make_real, write_image_folder

CPU = torch.device("cpu")


def _config(**overrides):
    base = {"data": "tiny-real", "ipc": 1, "factor": 2, "depth": 2, "width": 8, "real_batch": 6, "frequencies": 64, "sampler": "learned",
            "iterations": 4, "checkpoint_every": 2, "log_every": 1, "eval_runs": 0, "pool_size": 2, "pool_epochs": 1}
    return DistillConfig().changed(**{**base, **overrides})


def test_real_batch_is_redrawn_every_iteration(tiny_pool):
    pool, real, _ = tiny_pool
    distiller = make_method(_config(), real, pool, CPU)
    first, second = distiller.step()["real_indices"], distiller.step()["real_indices"]
    assert not torch.equal(first, second)
    assert real.labels[first].tolist() == [0] * 6 + [1] * 6 + [2] * 6


@pytest.mark.parametrize("sampler,steps", [("learned", 1), ("gaussian", 3)])
def test_an_image_moves_only_with_its_own_class(tiny_pool, sampler, steps):
    """Changing class 1's real images leaves the updates of classes 0 and 2 bit for bit unchanged."""
    pool, real, _ = tiny_pool
    other = make_real(seed=7)
    altered = make_real()
    altered.images[altered.labels == 1] = other.images[other.labels == 1]
    runs = []
    for data in (real, altered):
        distiller = make_method(_config(sampler=sampler), data, pool, CPU)
        start = distiller.canvases.detach().clone()
        for _ in range(steps):
            distiller.step()
        runs.append((start, distiller.canvases.detach().clone()))
    (start_a, end_a), (start_b, end_b) = runs
    labels = distiller.canvas_labels
    assert torch.equal(start_a[labels != 1], start_b[labels != 1])
    for c in (0, 2):
        assert not torch.equal(end_a[labels == c], start_a[labels == c])
        assert torch.equal(end_a[labels == c], end_b[labels == c])
    assert not torch.equal(end_a[labels == 1], end_b[labels == 1])


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tiny_pool, tmp_path):
    pool, real, _ = tiny_pool
    whole = make_method(_config(iterations=6), real, pool, CPU)
    run_distillation(whole, tmp_path / "whole", progress=False)

    first = make_method(_config(iterations=6), real, pool, CPU)
    step = first.step

    def killed():  # killed after iteration 5, whose work (past the checkpoint at 4) is lost
        if first.iteration == 5:
            raise KeyboardInterrupt
        return step()

    first.step = killed
    with pytest.raises(KeyboardInterrupt):
        run_distillation(first, tmp_path / "split", progress=False)
    resumed = make_method(_config(iterations=6), real, pool, CPU)
    load_checkpoint(resumed, tmp_path / "split" / "checkpoint.pt")
    assert resumed.iteration == 4
    run_distillation(resumed, tmp_path / "split", progress=False)
    assert torch.equal(resumed.canvases, whole.canvases)
    assert resumed.sampler.state_dict()["net.0.weight"].equal(whole.sampler.state_dict()["net.0.weight"])
    lines = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    whole_lines = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert [line["loss"] for line in lines] == [line["loss"] for line in whole_lines]


def test_psi_schedule_after_a_resume_with_more_iterations_follows_the_new_total(tiny_pool, tmp_path):
    """ψ's cosine lr after resuming a finished 4-iteration run as an 8-iteration one is that of an 8-iteration run."""
    pool, real, _ = tiny_pool
    run_distillation(make_method(_config(iterations=4), real, pool, CPU), tmp_path / "short", progress=False)
    resumed, whole = make_method(_config(iterations=8), real, pool, CPU), make_method(_config(iterations=8), real, pool, CPU)
    load_checkpoint(resumed, tmp_path / "short" / "checkpoint.pt")
    for _ in range(4):
        whole.step()
    for _ in range(3):
        lrs = [distiller.step()["sampler_lr"] for distiller in (resumed, whole)]
        assert lrs[0] == pytest.approx(lrs[1], rel=1e-12)
    assert lrs[1] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 6 / 8)) / 2)


def test_psi_learns_during_distillation(tiny_pool):
    pool, real, _ = tiny_pool
    distiller = make_method(_config(), real, pool, CPU)
    sigmas = [distiller.step()["sigma_mean"] for _ in range(4)]
    assert abs(sigmas[0] - 1) < 0.05 and sigmas[-1] != sigmas[0]


def test_bad_input_gets_clear_errors(tiny_pool):
    pool, real, _ = tiny_pool
    with pytest.raises(UserError, match="IPC 4 with factor 2 needs 16 real images per class .* has 12; lower --ipc or --factor"):
        make_method(_config(ipc=4), real, pool, CPU)
    with pytest.raises(UserError, match="unknown distillation preset 'cifar11-ipc10'; choose one of cifar10-ipc10-cpu"):
        preset("cifar11-ipc10")
    with pytest.raises(UserError, match="unknown sampler 'uniform'"):
        make_method(_config(sampler="uniform"), real, pool, CPU)


# (classes, channels, images in the smallest class of the training split) of every preset's dataset
DATASET_SHAPES = {"uoft-cs/cifar10": (10, 3, 5000), "uoft-cs/cifar100": (100, 3, 500), "ylecun/mnist": (10, 1, 5421)}


def _every_preset_run() -> dict:
    """The distillation settings of every preset, and those the continual-learning presets condense with."""
    from downstream.continual import CL_PRESETS

    runs = {name: preset(name) for name in PRESETS}
    for name, cl in CL_PRESETS.items():
        runs[f"continual {name}"] = preset(cl.condense_preset).changed(**{**cl.condense, "ipc": cl.ipc, "data": cl.data})
    return runs


@pytest.mark.parametrize("config", list(_every_preset_run().values()), ids=list(_every_preset_run()))
def test_every_preset_takes_a_step_on_its_datasets_class_sizes(config):
    """A synthetic stand-in with the preset's classes and images per class (8x8 images, a tiny matcher)."""
    from condense.data import RealData
    from condense.pool import Pool
    from condense.run import pool_spec

    classes, channels, per_class = DATASET_SHAPES[config.data]
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.randint(0, 256, (len(labels), channels, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    real = RealData(images, labels, [str(c) for c in range(classes)], (0.5,) * channels, (0.25,) * channels, config.data, "train")
    config = config.changed(depth=1, width=2, **({"frequencies": 64} if config.method == "ncfm" else {}))
    spec = pool_spec(config, real)
    weights = spec.build().state_dict()
    record = make_method(config, real, Pool(spec, [(weights, weights)], CPU), CPU).step()
    assert record["iteration"] == 1 and torch.isfinite(torch.tensor(record["loss"]))
    drawn = record["real_indices"].view(classes, -1)
    assert drawn.shape[1] == min(config.real_batch, per_class)
    assert all(len(set(row.tolist())) == drawn.shape[1] for row in drawn)  # distinct images of one class
    assert torch.equal(real.labels[drawn], torch.arange(classes)[:, None].expand_as(drawn))


def test_presets_follow_benchmarks_md():
    cpu = preset("cifar10-ipc10-cpu")
    assert (cpu.width, cpu.pool_size, cpu.pool_epochs, cpu.real_batch, cpu.method_settings.frequencies, cpu.iterations) == (64, 2, 1, 128, 1024, 200)
    paper = preset("cifar100-ipc10")
    assert (paper.width, paper.pool_size, paper.pool_epochs, paper.real_batch, paper.method_settings.frequencies, paper.iterations) == (128, 20, 60, 500, 4096, 20000)
    assert preset("cifar10-ipc10").real_batch == 1024
    assert (paper.optimizer, paper.lr, paper.momentum, paper.label_column) == ("sgd", 0.01, 0.5, "fine_label")
    assert preset("cifar10-ipc50").optimizer == "adamw"


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)


def test_distill_job_writes_a_complete_run_folder(image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(data=str(image_folder), width=4, real_batch=4, iterations=3, soft_labels="pool", eval_runs=1, eval_preset="cpu")
    result = distill(config, tmp_path / "run", CPU, progress=False)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoint.pt", "config.json", "eval.json", "log.jsonl", "preview.png", "synthetic.safetensors"]
    synthetic = SyntheticSet.load(run / "synthetic.safetensors")
    assert synthetic.images.shape == (12, 3, 8, 8) and synthetic.canvases.shape == (3, 3, 8, 8)
    assert synthetic.method == "ncfm" and synthetic.factor == 2 and synthetic.config["iterations_done"] == 3
    assert torch.allclose(synthetic.soft_labels.sum(1), torch.ones(12))
    assert "teacher" in synthetic.evaluation["labels"] and "accuracy_mean" in synthetic.evaluation
    assert json.loads((run / "config.json").read_text())["soft_labels"] == "pool"
    assert result["seconds_per_iteration"] and len(result["seconds_per_iteration"]) == 3
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        distill(config, run, CPU, progress=False)


def test_distill_without_multi_formation_stores_images_equal_to_canvases(image_folder, tmp_path, monkeypatch):
    """At factor 1 the decoded images are the canvases themselves (one tensor); the file still gets both."""
    monkeypatch.chdir(tmp_path)
    config = _config(data=str(image_folder), factor=1, ipc=2, width=4, real_batch=4, iterations=2, pool_size=1)
    distill(config, tmp_path / "run", CPU, progress=False)
    synthetic = SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors")
    assert synthetic.images.shape == synthetic.canvases.shape == (6, 3, 8, 8)
    assert torch.equal(synthetic.images, synthetic.canvases)


def test_cli_distill_resume_after_a_kill(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["distill", "--data", str(image_folder), "--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32",
            "--pool-size", "1", "--eval-runs", "0", "--checkpoint-every", "2", "--no-progress"]
    assert main([*args, "--iterations", "4", "--out", "whole"]) == 0
    # a distilled set records its source's loading options flat in its config; `condense eval` reads them back
    assert main(["eval", "whole/synthetic.safetensors", "--epochs", "1", "--runs", "1", "--width", "4", "--depth", "2", "--no-progress"]) == 0
    original = kill_before_iteration(monkeypatch, 4)
    assert main([*args, "--iterations", "4", "--out", "killed"]) == 130
    assert not (tmp_path / "killed" / "synthetic.safetensors").exists()
    monkeypatch.setattr(Method, "step", original)
    assert main([*args, "--iterations", "4", "--out", "killed"]) == 2  # without --resume
    assert main([*args, "--iterations", "4", "--out", "killed", "--resume"]) == 0
    a = SyntheticSet.load(tmp_path / "whole" / "synthetic.safetensors")
    b = SyntheticSet.load(tmp_path / "killed" / "synthetic.safetensors")
    assert torch.equal(a.canvases, b.canvases) and torch.equal(a.images, b.images)
    capsys.readouterr()
    assert main([*args, "--iterations", "4", "--out", "whole", "--resume"]) == 0  # already finished: only rewrites the set
    printed = capsys.readouterr().out
    assert "wrote whole/synthetic.safetensors" in printed and "s/iteration" not in printed


def test_resume_auto_starts_a_new_run_and_continues_a_checkpointed_one(image_folder, tmp_path, monkeypatch, capsys):
    """Issue 24 item 6: `--resume auto` (what torchrun's restarts run) starts where there is no checkpoint, resumes where there is
    one (to the uninterrupted set, bit for bit), and still refuses other settings."""
    from conftest import assert_one_error

    monkeypatch.chdir(tmp_path)
    args = ["distill", "--data", str(image_folder), "--pool-folder", "pool", *TINY_RUN, "--iterations", "4", "--log-every", "1", "--resume", "auto"]
    assert main([*args, "--out", "whole"]) == 0  # nothing there: starts
    original = kill_before_iteration(monkeypatch, 2)  # killed before its first checkpoint: auto starts again
    assert main([*args, "--out", "killed"]) == 130 and not (tmp_path / "killed" / "checkpoint.pt").exists()
    monkeypatch.setattr(Method, "step", original)
    kill_before_iteration(monkeypatch, 4)
    assert main([*args, "--out", "killed"]) == 130
    monkeypatch.setattr(Method, "step", original)
    assert_one_error(main, [*args, "--out", "killed", "--lr", "0.5"], capsys, contains="--resume: settings differ from the run in killed (lr)")
    assert main([*args, "--out", "killed"]) == 0
    a, b = (SyntheticSet.load(tmp_path / name / "synthetic.safetensors") for name in ("whole", "killed"))
    assert torch.equal(a.canvases, b.canvases)
    assert [json.loads(line)["iteration"] for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_pool_identity_of_a_local_folder_does_not_depend_on_how_it_is_written(tmp_path, monkeypatch):
    from condense.run import pool_spec

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    relative, absolute = make_real(source="./data"), make_real(source=str(tmp_path / "data"))
    assert pool_spec(_config(), relative) == pool_spec(_config(), absolute)
    assert pool_spec(_config(), make_real(source="uoft-cs/cifar10")).dataset == "uoft-cs/cifar10"


def test_cli_distill_over_streamed_splits_never_decodes_a_whole_split(image_folder, tmp_path, monkeypatch):
    import condense.data

    def whole_split(*args, **kwargs):
        raise AssertionError("a split was decoded whole")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(condense.data, "_decoded", whole_split)
    args = ["distill", "--data", str(image_folder), "--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32",
            "--pool-size", "1", "--eval-runs", "1", "--eval-preset", "cpu", "--iterations", "2", "--no-progress", "--stream-per-class", "6"]
    assert main([*args, "--out", "streamed"]) == 0
    synthetic = SyntheticSet.load(tmp_path / "streamed" / "synthetic.safetensors")
    assert synthetic.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and synthetic.config["stream_per_class"] == 6
    pool = json.loads(next((tmp_path / "pools").glob("*/manifest.json")).read_text())
    assert pool["spec"]["split"] == "train[streamed, 6 random per class, seed 0]"  # the pool trained on the reservoirs
    assert json.loads((tmp_path / "streamed" / "eval.json").read_text())["test"].endswith("[test[streamed]], 36 images")
    assert main([*args, "--out", "both", "--memory-mapped"]) == 2  # one clear refusal


def test_every_setting_has_a_line_of_help_and_a_flag_that_sets_it():
    from condense.cli import build_parser

    assert all(field.metadata.get("help") for field in dataclasses.fields(DistillConfig))
    assert build_parser().parse_args(["distill", "--pooling", "max", "--dataset-config", "plain"]).pooling == "max"
    old_names = build_parser().parse_args(["distill", "--pool", "none", "--data-config", "plain"])  # the flags' old names still work
    assert (old_names.pooling, old_names.dataset_config) == ("none", "plain")


def test_a_diverged_run_says_so_and_blames_the_learning_rate(tiny_pool):
    pool, real, _ = tiny_pool
    distiller = make_method(_config(), real, pool, CPU)
    distiller.optimizer.step = lambda: distiller.canvases.data.fill_(float("nan"))  # what lr = inf leaves (inf x 0)
    with pytest.raises(UserError, match=r"the run diverged at iteration 1 \(the loss or the images are no longer finite\); lower --lr"):
        distiller.step()


TINY_RUN = ["--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32", "--pool-size", "1",
            "--eval-runs", "0", "--checkpoint-every", "2", "--iterations", "2", "--no-progress"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-iteration run (absolute paths: cases copy its folder and resume it, or copy its pool)."""
    base = tmp_path_factory.mktemp("finished")
    data = write_image_folder(base / "data", {"img": "image", "label": "label"}, rows=36)
    args = ["distill", "--data", str(data), "--pool-folder", str(base / "pool"), *TINY_RUN]
    assert main([*args, "--out", str(base / "run")]) == 0
    return base, args


class Payload:
    """A pickle that runs a command when unpickled."""

    def __reduce__(self):
        import os

        return os.system, ("touch PWNED",)


def _pool_member_for(path, classes: int = 3, fill: float | None = None):
    """A pool member file for 8x8 RGB images of `classes` classes (weights filled with `fill` if given)."""
    from condense.pool import PoolSpec, _save_weights

    spec = PoolSpec("elsewhere", "train", classes, 3, (8, 8), "convnet", {"depth": 2, "width": 4}, {})
    net = spec.build()
    if fill is not None:
        for value in net.state_dict().values():
            value.fill_(fill)
    _save_weights(net, path, spec)
    return path


def _resume_with(corrupt):
    def setup(case, base):
        import shutil

        shutil.copytree(base / "run", case / "run")
        corrupt(case / "run")
        return ["--out", str(case / "run"), "--resume"]

    return setup


def _fresh_with(make_args):
    def setup(case, base):  # a pool folder of its own unless make_args names one: the checks come before its training
        return ["--out", str(case / "fresh"), "--pool-folder", str(case / "new-pool"), *make_args(case, base)]

    return setup


def _copied_pool(corrupt):
    def make_args(case, base):
        import shutil

        shutil.copytree(base / "pool", case / "pool")
        corrupt(case / "pool")
        return ["--pool-folder", str(case / "pool")]

    return make_args


def _with_checkpoint(make_state):
    def corrupt(run):
        torch.save(make_state(torch.load(run / "checkpoint.pt", weights_only=True)), run / "checkpoint.pt")

    return corrupt


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _junk(path):
    path.write_bytes(b"junk")
    return path


def _write(name, content: bytes):
    return lambda folder: (folder / name).write_bytes(content)


def _flags(*argv):
    return _fresh_with(lambda case, base: list(argv))


BAD_DISTILL_INPUT = {
    "ipc 0": (_flags("--ipc", "0"), "--ipc must be at least 1, got 0"),
    "ipc -1": (_flags("--ipc", "-1"), "--ipc must be at least 1, got -1"),
    "real batch 0": (_flags("--real-batch", "0"), "--real-batch must be at least 1, got 0"),
    "checkpoint every 0": (_flags("--checkpoint-every", "0"), "--checkpoint-every must be at least 1"),
    "log every 0": (_flags("--log-every", "0"), "--log-every must be at least 1"),
    "lr nan": (_flags("--lr", "nan"), "--lr must be a finite number above 0, got nan"),
    "lr -1": (_flags("--lr", "-1"), "--lr must be a finite number above 0, got -1"),
    "lr inf": (_flags("--lr", "inf"), "--lr must be a finite number above 0, got inf"),
    "frequencies 0": (_flags("--frequencies", "0"), "--frequencies must be at least 1, got 0"),
    "frequencies psi cannot split": (_flags("--frequencies", "100", "--sampler", "learned"), "does not split into psi's 6 mixture components"),
    "ipc larger than a class": (_flags("--ipc", "4"), "IPC 4 with factor 2 needs 16 real images per class"),
    "pickle payload checkpoint": (_resume_with(_with_checkpoint(lambda state: Payload())), "never loaded"),
    "truncated checkpoint": (_resume_with(lambda run: _truncate(run / "checkpoint.pt")), "checkpoint.pt: it is damaged"),
    "foreign checkpoint": (_resume_with(_with_checkpoint(lambda state: {"weight": torch.zeros(3)})), "it is not a checkpoint of `condense distill`"),
    "checkpoint of another shape": (_resume_with(_with_checkpoint(lambda state: {**state, "canvases": torch.zeros(2, 3, 4, 4)})),
                                    "checkpoint.pt does not fit this run"),
    "corrupt config.json": (_resume_with(_write("config.json", b'{"ipc": 1,')), "config.json is damaged"),
    "config.json a list": (_resume_with(_write("config.json", b"[1]")), "config.json is not the settings of a run"),
    "log.jsonl damaged before its last line": (_resume_with(_write("log.jsonl", b'{"iteration": 1,\n{"iteration": 2}\n')), "log.jsonl is damaged"),
    "corrupt pool member": (_fresh_with(_copied_pool(_write("member-000-trained.safetensors", b"\x00" * 64))),
                            "member-000-trained.safetensors is damaged"),
    "pool member of another network": (_fresh_with(_copied_pool(lambda pool: _pool_member_for(pool / "member-000-init.safetensors", classes=5))),
                                       "does not hold the weights of its pool's network"),
    "non-UTF-8 manifest": (_fresh_with(_copied_pool(_write("manifest.json", b'{"spec": "\xff\xfe"}'))), "manifest.json is not valid UTF-8 JSON"),
    "teacher not a member file": (_fresh_with(lambda case, base: ["--soft-labels", str(_junk(case / "t.safetensors"))]),
                                  "t.safetensors is not a pool member file"),
    "teacher of other classes": (_fresh_with(lambda case, base: ["--soft-labels", str(_pool_member_for(case / "t.safetensors", classes=5))]),
                                 "the network is for 5 classes, 3 channels, 8x8 images"),
    "teacher with NaN weights": (_fresh_with(lambda case, base: ["--soft-labels", str(_pool_member_for(case / "t.safetensors", fill=float("nan")))]),
                                 "the teacher's outputs are not finite"),
}


@pytest.mark.parametrize("case", BAD_DISTILL_INPUT)
def test_bad_distill_input_is_one_clear_error_before_any_work(case, finished_run, tmp_path, monkeypatch, capsys):
    """Exit 2 with one error line; a fresh run leaves no checkpoint and trains no pool; nothing is unpickled."""
    from conftest import assert_one_error

    base, args = finished_run
    monkeypatch.chdir(tmp_path)
    setup, message = BAD_DISTILL_INPUT[case]
    extra = setup(tmp_path, base)
    assert_one_error(main, [*args, *extra], capsys, contains=message)
    assert not (tmp_path / "fresh" / "checkpoint.pt").exists() and not (tmp_path / "new-pool").exists()
    assert not (tmp_path / "PWNED").exists()
    assert sorted(p.name for p in (base / "pool").iterdir()) == ["manifest.json", "member-000-init.safetensors", "member-000-trained.safetensors"]


def test_baseline_with_image_size_0_is_one_clear_error(finished_run, capsys):
    from conftest import assert_one_error

    base, _ = finished_run
    assert_one_error(main, ["baseline", "random", "--data", str(base / "data"), "--image-size", "0", "--out", str(base / "b.safetensors")],
                     capsys, contains="--image-size must be at least 1 (pixels), got 0")


def test_config_is_checked_in_python_too():
    with pytest.raises(UserError, match="--real-batch must be at least 1, got 0"):
        _config(real_batch=0)
    with pytest.raises(UserError, match="--sigma-min .* must be below 1"):
        _config(sigma_min=2.0)
    with pytest.raises(UserError, match="--alpha must be between 0 and 1"):
        _config().changed(alpha=1.5)


def test_a_second_run_into_the_same_folder_is_refused_at_once(image_folder, tmp_path, monkeypatch):
    import condense.run

    monkeypatch.chdir(tmp_path)
    config = _config(data=str(image_folder), width=4, real_batch=4, iterations=2, pool_size=1)
    original, refusals = Method.step, []

    def step_while_another_run_starts(self):
        with monkeypatch.context() as inner:
            inner.setattr(condense.run, "load_splits", lambda config: pytest.fail("the second run loaded data"))
            with pytest.raises(UserError, match="another run is writing into .*run .*wait for it to end or choose another --out") as refusal:
                distill(config, tmp_path / "run", CPU, progress=False)
        refusals.append(refusal)
        return original(self)

    monkeypatch.setattr(Method, "step", step_while_another_run_starts)
    distill(config, tmp_path / "run", CPU, progress=False)
    assert len(refusals) == 2 and SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors").config["iterations_done"] == 2


def test_a_killed_run_leaves_its_folder_free_to_resume(image_folder, tmp_path, monkeypatch, capsys):
    """A process that holds the run's lock blocks a run; killed (SIGKILL), it no longer does."""
    import subprocess
    import sys

    from condense.runfolder import RUN_LOCK

    from conftest import assert_one_error

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    hold = (f"import time; from filelock import FileLock; lock = FileLock({str(tmp_path / 'run' / RUN_LOCK)!r}); "
            "lock.acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["distill", "--data", str(image_folder), "--out", "run", *TINY_RUN]
        assert_one_error(main, args, capsys, contains="another run is writing into run")
    finally:
        holder.kill()
        holder.wait()
    assert main(args) == 0


def test_resume_drops_a_torn_last_log_line_and_may_change_the_teacher_and_how_the_data_folder_is_written(image_folder, tmp_path, monkeypatch):
    """A kill during a log write leaves a torn line; the teacher (soft labels) can be fixed on resume; ./data is /abs/data."""
    monkeypatch.chdir(tmp_path)
    args = ["distill", "--pool-folder", "pool", *TINY_RUN, "--iterations", "4", "--log-every", "1", "--out", "run"]
    original = kill_before_iteration(monkeypatch, 4)
    assert main([*args, "--data", "data", "--soft-labels", "pool"]) == 130
    monkeypatch.setattr(Method, "step", original)
    with (tmp_path / "run" / "log.jsonl").open("a") as log:
        log.write('{"iteration": 4, "lo')
    teacher = str(tmp_path / "pool" / "member-000-trained.safetensors")
    assert main([*args, "--data", str(image_folder), "--soft-labels", teacher, "--resume"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["soft_labels"] == teacher
    assert SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors").soft_labels is not None


def test_a_kill_during_the_log_rewrite_keeps_its_lines_and_killed_writes_leave_nothing_behind(image_folder, tmp_path, monkeypatch):
    """Issue 24 item 13: the resume rewrites log.jsonl atomically, and the next run that holds the folder's lock deletes the
    hidden temporaries that writes killed mid-way leave; other files stay."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    args = ["distill", "--data", str(image_folder), "--pool-folder", "pool", *TINY_RUN, "--iterations", "4", "--log-every", "1", "--out", "run"]
    original = kill_before_iteration(monkeypatch, 4)  # log lines 1-3, checkpoint at 2
    assert main(args) == 130
    monkeypatch.setattr(Method, "step", original)
    write_text = Path.write_text

    def killed_mid_write(self, data, *rest, **options):  # the log's rewrite is cut in the middle, as by a kill
        if self.name == "log.jsonl" or self.name.startswith(".log."):
            write_text(self, data[: len(data) // 2], *rest, **options)
            raise KeyboardInterrupt
        return write_text(self, data, *rest, **options)

    with monkeypatch.context() as inner:
        inner.setattr(Path, "write_text", killed_mid_write)
        assert main([*args, "--resume"]) == 130
    run = tmp_path / "run"
    assert [record["iteration"] for record in map(json.loads, (run / "log.jsonl").read_text().splitlines())] == [1, 2, 3]
    leftovers = [".checkpoint.k1ll3d_0.tmp.pt", ".synthetic.abc.tmp.safetensors", ".preview.x_y.tmp.png", ".log.q.tmp.jsonl", ".config.z.tmp.json"]
    kept = [".notes.tmp", "notes.txt", ".checkpoint.pt.bak", ".synthetic.eval.k.tmp.json"]  # the last: `condense eval`'s, not the run's
    for name in leftovers + kept:
        (run / name).write_bytes(b"half")
    assert main([*args, "--resume"]) == 0
    assert [record["iteration"] for record in map(json.loads, (run / "log.jsonl").read_text().splitlines())] == [1, 2, 3, 4]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock") == sorted(n for n in kept if n[0] == ".")
    assert (run / "notes.txt").is_file()


def test_distill_records_the_data_revision_in_the_set(image_folder, tmp_path, monkeypatch):
    """A Hub id at a revision (a local folder has none: refused, tests/test_cli_values.py), read here from the image folder."""
    import condense.data

    monkeypatch.chdir(tmp_path)
    asked, load_real = [], condense.data.load_real

    def recording(source, split, **options):
        asked.append(options["revision"])
        return dataclasses.replace(load_real(str(image_folder), split, **options), source=source)  # as if read from the Hub

    monkeypatch.setattr(condense.data, "load_real", recording)
    assert main(["distill", "--data", "owner/tiny", "--revision", "v1.0", "--out", "run", *TINY_RUN]) == 0
    synthetic = SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors")
    assert asked == ["v1.0", "v1.0"] and synthetic.source_revision == "v1.0" and synthetic.data_source().revision == "v1.0"


def test_benchmark_overrides_are_read_by_the_settings_type():
    from condense.config import parse_setting

    parsed = dict(map(parse_setting, ["amp=False", "compile=true", "depth=2", "lr=3e-3", "sampler=gaussian", "loss_scale=2"]))
    assert parsed == {"amp": False, "compile": True, "depth": 2, "lr": 3e-3, "sampler": "gaussian", "loss_scale": 2.0}
    with pytest.raises(UserError, match="amp takes true or false"):
        parse_setting("amp=0")
    with pytest.raises(UserError, match="depth takes a number"):
        parse_setting("depth=two")
    with pytest.raises(UserError, match="no setting 'depht'"):
        parse_setting("depht=2")


def test_psi_variants_change_what_psi_ascends_and_leave_the_images_step_alone(tiny_pool):
    """The images descend the same loss; only ψ's update differs (a normalised objective, a σ penalty)."""
    pool, real, _ = tiny_pool
    after = {}
    for name, overrides in {"ncfd": {}, "normalised": {"psi_objective": "normalised"}, "penalty": {"sigma_penalty": 10.0}}.items():
        distiller = make_method(_config(sampler="learned", sampler_lr=0.1, **overrides), real, pool, CPU)
        distiller.step()
        after[name] = (distiller.canvases.detach().clone(), [p.detach().clone() for p in distiller.sampler.parameters()])
    for name in ("normalised", "penalty"):
        assert torch.equal(after[name][0], after["ncfd"][0])
        assert any(not torch.equal(a, b) for a, b in zip(after[name][1], after["ncfd"][1]))


def test_psi_gradients_are_those_of_its_own_objective(tiny_pool):
    """normalised: NCFD(real, synthetic) / NCFD(first half, second half of the real batch), summed over classes,
    minus the penalty times mean (log σ)²; the plain objective leaves ψ the shared gradients (None)."""
    from condense.ncfd import ncfd

    pool, real, _ = tiny_pool
    distiller = make_method(_config(sampler="learned", psi_objective="normalised", sigma_penalty=3.0), real, pool, CPU)
    dim = distiller.sampler.dim
    features = torch.nn.functional.normalize(torch.randn(3, 6, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    synthetic = torch.nn.functional.normalize(torch.randn(3, 4, dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    frequencies = distiller.sampler(torch.Generator().manual_seed(2))
    matching = 300 * ncfd(features, synthetic, frequencies)
    distiller.frequencies = frequencies
    distiller.before_backward(matching, features)
    got = distiller.psi_gradients
    ratio = (ncfd(features, synthetic, frequencies) / ncfd(features[:, :3], features[:, 3:], frequencies)).sum()
    objective = ratio - 3.0 * distiller.sampler.log_scale_penalty()
    expected = torch.autograd.grad(objective, list(distiller.sampler.parameters()))
    assert all(torch.allclose(g, e, rtol=1e-4, atol=1e-7) for g, e in zip(got, expected))
    assert any(e.abs().sum() > 0 for e in expected)
    plain = make_method(_config(sampler="learned"), real, pool, CPU)
    plain.frequencies = frequencies
    plain.before_backward(matching, features)
    assert plain.psi_gradients is None


def test_initialisation_and_pool_augmentation_settings_reach_the_run(tiny_pool):
    from condense.distill import initial_set
    from condense.formation import init_canvases
    from condense.pool import POOL_TRAINING
    from condense.run import pool_spec

    pool, real, _ = tiny_pool
    config = _config(init_images="first", init_resize="nearest")
    distiller = make_method(config, real, pool, CPU)
    expected, _ = init_canvases(real, 1, 2, torch.Generator(), resize="nearest", images="first")
    assert torch.equal(distiller.canvases.detach(), expected)
    assert torch.equal(initial_set(config, real).images, distiller.synthetic_set().images)
    random_start = _config()
    assert torch.equal(initial_set(random_start, real).canvases, make_method(random_start, real, pool, CPU).canvases.detach())
    assert pool_spec(_config(), real).training == {**POOL_TRAINING.to_dict(), "epochs": 1}  # defaults: the same pools as before
    assert pool_spec(_config(pool_dsa_mode="all"), real).training["dsa_mode"] == "all"
    for bad, message in [({"init_resize": "cubic"}, "--init-resize"), ({"pool_dsa_mode": "some"}, "DSA mode must be one of"),
                         ({"sigma_penalty": 1.0, "sampler": "gaussian"}, "use them with --sampler learned"),
                         ({"phase": "split"}, "--phase must be")]:
        with pytest.raises(UserError, match=message):
            _config(**bad)


def test_a_run_written_before_a_setting_existed_resumes_when_the_setting_keeps_its_default(tmp_path):
    from condense.runfolder import check_run_folder

    config = _config()
    saved = {k: v for k, v in config.flat().items() if k not in ("init_images", "init_resize", "phase", "method")}  # as before methods
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_run_folder(tmp_path, config, resume=True)  # the settings it lacks are at their defaults: the same run
    with pytest.raises(UserError, match=r"settings differ from the run in .* \(init_resize\)"):
        check_run_folder(tmp_path, dataclasses.replace(config, init_resize="nearest"), resume=True)
