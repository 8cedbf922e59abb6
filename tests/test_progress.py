"""Issue 24 item 8: long trainings save their progress. `train` continues from a state saved after any epoch to the
uninterrupted weights; the pool saves every epoch of a group (a kill loses at most one), and `benchmarks/paper_gpu.py`
stops by its budget inside the pool and resumes to the very pool and set of an uninterrupted run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from condense.nets import build_net
from condense.pool import POOL_TRAINING, PoolSpec, build_or_load_pool
from condense.synthetic import SyntheticSet
from condense.train import TrainConfig, train

from conftest import load_benchmark, make_real, write_image_folder

CPU = torch.device("cpu")


class Stop(Exception):
    """A stop right after a save (what a kill, or a budget, does there)."""


def _stop(where: str):
    raise Stop(where)


def _nets(count: int) -> list[torch.nn.Module]:
    nets = []
    for seed in range(count):
        torch.manual_seed(seed)
        nets.append(build_net("convnet", 3, 3, (16, 16), depth=2, width=8))
    return nets


@pytest.mark.parametrize("count", [1, 2])  # one network, or two trained at once (stacked)
def test_a_training_saved_after_an_epoch_continues_to_the_uninterrupted_weights(tmp_path, count):
    real = make_real()
    config = TrainConfig(epochs=3, batch_size=8, optimizer="sgd", lr=0.05, momentum=0.9, lr_decay_at=(0.5,), dsa="color_crop", cutmix_p=0.5)

    def run(nets, **options):
        generators = [torch.Generator().manual_seed(10 + i) for i in range(count)]
        train(nets, real.images, real.labels, config, mean=real.mean, std=real.std, generator=generators, device=CPU, progress=False, **options)
        return nets

    whole = run(_nets(count))

    def save_and_stop(done, state):
        torch.save(state(), tmp_path / "state.pt")
        if done == 2:  # past the lr decay, with momentum
            raise Stop

    with pytest.raises(Stop):
        run(_nets(count), after_epoch=save_and_stop)
    saved = torch.load(tmp_path / "state.pt", weights_only=True)  # tensors and plain values only
    assert saved["epochs_done"] == 2
    resumed = run(_nets(count), state=saved)  # fresh networks: the state carries the weights
    for a, b in zip(whole, resumed):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _spec(real, epochs: int) -> PoolSpec:
    training = {**POOL_TRAINING.to_dict(), "epochs": epochs, "batch_size": 8}
    return PoolSpec(real.source, real.split, 3, 3, (16, 16), "convnet", {"depth": 2, "width": 8}, training)


@pytest.mark.parametrize("batched", [True, False])
def test_the_pool_saves_every_epoch_and_a_stopped_pool_ends_as_an_uninterrupted_one(tmp_path, batched):
    real = make_real()
    spec = _spec(real, epochs=3)
    build_or_load_pool(tmp_path / "whole", spec, 2, real, None, CPU, progress=False, batched=batched)
    saves = []

    def stop_after_the_second_save(where):
        saves.append(where)
        if len(saves) == 2:
            raise Stop

    with pytest.raises(Stop):
        build_or_load_pool(tmp_path / "stopped", spec, 2, real, None, CPU, progress=False, batched=batched, on_saved=stop_after_the_second_save)
    first = "members 0, 1" if batched else "member 0"
    assert saves == [f"after epoch 1 of 3 of {first}", f"after epoch 2 of 3 of {first}"]
    progress_file = tmp_path / "stopped" / ("progress-members-000-001.pt" if batched else "progress-members-000-000.pt")
    assert torch.load(progress_file, weights_only=True)["epochs_done"] == 2
    assert not (tmp_path / "stopped" / "manifest.json").exists()  # no member finished yet

    saves.clear()
    build_or_load_pool(tmp_path / "stopped", spec, 2, real, None, CPU, progress=False, batched=batched, on_saved=saves.append)
    assert len(saves) == (0 if batched else 2)  # only the epochs not done yet train: member 1's (one by one)
    assert sorted(p.name for p in (tmp_path / "stopped").iterdir()) == sorted(p.name for p in (tmp_path / "whole").iterdir())  # no progress file left
    for index in range(2):
        for kind in ("init", "trained"):
            name = f"member-{index:03d}-{kind}.safetensors"
            a, b = load_file(tmp_path / "whole" / name), load_file(tmp_path / "stopped" / name)
            assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs"
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("whole", "stopped")]
    assert [m["train_loss"] for m in manifests[0]["members"]] == [m["train_loss"] for m in manifests[1]["members"]]


def test_a_progress_file_of_other_members_or_another_pool_is_not_continued(tmp_path):
    real = make_real()
    spec = _spec(real, epochs=2)
    build_or_load_pool(tmp_path / "whole", spec, 1, real, None, CPU, progress=False)
    with pytest.raises(Stop):
        build_or_load_pool(tmp_path / "other", _spec(real, epochs=3), 1, real, None, CPU, progress=False, on_saved=_stop)
    (tmp_path / "pool").mkdir()
    (tmp_path / "other" / "progress-members-000-000.pt").rename(tmp_path / "pool" / "progress-members-000-000.pt")
    build_or_load_pool(tmp_path / "pool", spec, 1, real, None, CPU, progress=False)  # a 3-epoch pool's epoch: trained anew
    a, b = (load_file(tmp_path / name / "member-000-trained.safetensors") for name in ("whole", "pool"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_real_images_stay_on_a_cuda_device_by_default():
    paper_gpu = load_benchmark("paper_gpu")
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert paper_gpu.residence(None, cuda) == cuda and paper_gpu.residence(None, cpu) == cpu
    assert paper_gpu.residence(False, cuda) == cpu and paper_gpu.residence(True, cuda) == cuda
    assert paper_gpu.parse(["--data", "d"]).real_on_device is None and paper_gpu.parse(["--data", "d", "--no-real-on-device"]).real_on_device is False


def test_paper_gpu_stops_by_its_budget_inside_the_pool_and_resumes_to_the_uninterrupted_run(tmp_path, capsys):
    paper_gpu = load_benchmark("paper_gpu")
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    common = ["--tiny", "--data", str(data), "--device", "cpu", "--no-progress", "--pool-epochs", "3"]
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    for epoch in (1, 2):  # --budget 0: every command trains one epoch of the pool, saves it and stops
        assert paper_gpu.main([*common, "--out", str(stopped), "--budget", "0"]) == 0
        assert f"stopped by the budget (0 s) in the pool, after epoch {epoch} of 3 of members 0, 1" in capsys.readouterr().out
        assert torch.load(stopped / "pool" / "progress-members-000-001.pt", weights_only=True)["epochs_done"] == epoch
    figures = json.loads((stopped / "figures.json").read_text())
    assert figures["phases"]["pool"]["commands"] == 2 and figures["phases"]["data"]["real_images_on"] == "cpu"
    assert paper_gpu.main([*common, "--out", str(stopped)]) == 0 and "complete:" in capsys.readouterr().out
    assert paper_gpu.main([*common, "--out", str(whole)]) == 0
    assert not list((stopped / "pool").glob("progress-*"))
    for index in range(2):
        a, b = (load_file(folder / "pool" / f"member-{index:03d}-trained.safetensors") for folder in (stopped, whole))
        assert all(torch.equal(a[k], b[k]) for k in a)
    resumed, uninterrupted = (SyntheticSet.load(folder / "run" / "synthetic.safetensors") for folder in (stopped, whole))
    assert torch.equal(resumed.canvases, uninterrupted.canvases)
