"""Issue 26: `condense import` reads the layouts of ../shared/FORMATS.md, built here the way each method's code writes them;
the tensors equal a hand decoding in float64; crafted pickles run nothing; bad input is one error and no output."""

import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from condense.cli import main
from condense.errors import UserError
from condense.synthetic import SyntheticSet

from conftest import assert_one_error, write_image_folder

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
STATS = ["--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))]


@pytest.fixture
def data(tmp_path):
    return write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)


def pixels(n, seed=0, low=-0.05, high=1.05):
    """Pixels as a method leaves them: mostly in [0, 1], overshooting a little (DC never clamps; IDC/NCFM not before saving)."""
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * (high - low) + low


def normalised(images):
    return (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def unnormalised64(images):
    """The hand decoding: x * std + mean in float64."""
    return images.double() * torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1) + torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)


def imported(tmp_path, args) -> SyntheticSet:
    assert main(["import", *map(str, args), "--out", str(tmp_path / "imported.safetensors")]) == 0
    return SyntheticSet.load(tmp_path / "imported.safetensors")


def test_dc_results_import_the_chosen_experiment_as_pixels(tmp_path, data):
    labels = torch.arange(3).repeat_interleave(2)
    experiments = [[normalised(pixels(6, seed)), labels] for seed in (0, 1)]
    torch.save({"data": experiments, "accs_all_exps": {"ConvNet": [np.float64(0.51), np.float64(0.49)]}}, tmp_path / "res_DM_X_ConvNet_2ipc.pt")
    synthetic = imported(tmp_path, [tmp_path / "res_DM_X_ConvNet_2ipc.pt", "--format", "dc", "--data", data, *STATS, "--experiment", "0"])
    assert torch.allclose(synthetic.images.double(), unnormalised64(experiments[0][0]), atol=1e-6)
    assert torch.equal(synthetic.labels, labels) and synthetic.image_space == "pixels" and synthetic.images.max() > 1
    provenance = synthetic.config["import"]
    assert (provenance["method"], provenance["settings"]["experiment"], provenance["settings"]["experiments"]) == ("DM", 0, 2)
    assert provenance["file"] == "res_DM_X_ConvNet_2ipc.pt" and len(provenance["sha256"]) == 64 and provenance["data"] == "data"
    last = imported(tmp_path, [tmp_path / "res_DM_X_ConvNet_2ipc.pt", "--format", "dc", "--data", data, *STATS])  # default: the last
    assert torch.allclose(last.images.double(), unnormalised64(experiments[1][0]), atol=1e-6)


def idc_decode64(canvases, factor, size):
    """FORMATS.md §2 by hand, in float64: pad with 0.5, ceil tiles, tile-major, bilinear to the canvas size."""
    h = canvases.shape[-1]
    pad = (factor - h % factor) % factor
    padded = F.pad(canvases.double(), (0, pad, 0, pad), value=0.5)
    s = -(-h // factor)
    tiles = [padded[:, :, i * s : (i + 1) * s, j * s : (j + 1) * s] for i in range(factor) for j in range(factor)]
    return F.interpolate(torch.cat(tiles), size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("layout", ["idc", "ncfm"])
@pytest.mark.parametrize("factor", [2, 3])
def test_canvases_decode_by_idcs_rule(tmp_path, data, layout, factor):
    canvases, labels = pixels(6).clamp(0, 1), torch.arange(3).repeat_interleave(2)
    torch.save([canvases, labels], tmp_path / "data.pt")
    synthetic = imported(tmp_path, [tmp_path / "data.pt", "--format", layout, "--data", data, "--factor", factor])
    expected = torch.cat([idc_decode64(canvases[labels == c], factor, 8) for c in range(3)])
    assert torch.allclose(synthetic.images.double(), expected, atol=1e-6)
    assert torch.equal(synthetic.labels, torch.arange(3).repeat_interleave(2 * factor**2))
    assert torch.equal(synthetic.canvases, canvases) and (synthetic.factor, synthetic.ipc) == (factor, 2)
    if factor == 2:  # where the factor divides the size, our own decode makes the same images, canvas-major instead of tile-major
        from condense.formation import decode

        ours = decode(canvases[:2], 2)  # class 0: canvas 0's four crops, then canvas 1's
        theirs = synthetic.images[:8]  # class 0: tile (0,0) of both canvases, then tile (0,1), ...
        assert torch.equal(ours, theirs.view(4, 2, 3, 8, 8).transpose(0, 1).reshape(8, 3, 8, 8))


def test_datadam_ddranking_and_image_folders(tmp_path, data):
    from PIL import Image

    images, labels = normalised(pixels(6, 3)), torch.arange(3).repeat_interleave(2)
    torch.save({"data": [images, labels]}, tmp_path / "syn_data_X_ipc_2.pt")
    dam = imported(tmp_path, [tmp_path / "syn_data_X_ipc_2.pt", "--format", "datadam", "--data", data, *STATS])
    assert torch.allclose(dam.images.double(), unnormalised64(images), atol=1e-6) and torch.equal(dam.labels, labels)
    (tmp_path / "ddr").mkdir()
    torch.save(images, tmp_path / "ddr" / "images.pt")
    torch.save(torch.tensor(0.0123), tmp_path / "ddr" / "lr.pt")
    ranking = imported(tmp_path, [tmp_path / "ddr", "--format", "ddranking", "--data", data, *STATS])
    assert torch.equal(ranking.labels, labels) and ranking.learned_lr == pytest.approx(0.0123)
    uint8 = (pixels(6, 4, 0, 1) * 255).round().to(torch.uint8)
    for k, image in enumerate(uint8):
        folder = tmp_path / "folder" / f"new{k // 2:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"class{k // 2:03d}_id{k % 2:03d}.png")
    folder = imported(tmp_path, [tmp_path / "folder", "--format", "imagefolder", "--data", data])
    assert torch.equal(folder.images, uint8.float() / 255) and torch.equal(folder.labels, labels) and folder.image_space == "pixels01"


def test_an_imported_set_exports_and_loads_with_datasets_exactly(tmp_path, data, monkeypatch):
    from datasets import load_dataset

    monkeypatch.chdir(tmp_path)
    torch.save({"data": [[normalised(pixels(6)), torch.arange(3).repeat_interleave(2)]]}, tmp_path / "res_DSA_X_ConvNet_2ipc.pt")
    synthetic = imported(tmp_path, [tmp_path / "res_DSA_X_ConvNet_2ipc.pt", "--format", "dc", "--data", data, *STATS])
    assert main(["export", str(tmp_path / "imported.safetensors"), "--out", "hub"]) == 0
    rows = load_dataset(str(tmp_path / "hub"), "ipc2", split="train").with_format("torch")[:]
    assert torch.equal(rows["pixel_values"], synthetic.images) and torch.equal(rows["label"], synthetic.labels)
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "Imported" in card and "DSA" in card and "res_DSA_X_ConvNet_2ipc.pt" in card and "not clamped" in card


class RunsCode:
    def __reduce__(self):
        import os

        return os.system, ("touch PWNED",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
@pytest.mark.parametrize("layout", ["dc", "datadam", "idc", "ncfm", "ddranking", "mtt", "datm"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, data, monkeypatch, capsys, layout, writer):
    monkeypatch.chdir(tmp_path)
    payloads = {"dc": {"data": [[RunsCode(), torch.zeros(1)]]}, "datadam": {"data": [RunsCode(), torch.zeros(1)]}}
    (tmp_path / "ddr").mkdir()
    path = {"ddranking": tmp_path / "ddr" / "images.pt", "mtt": tmp_path / "images_1.pt", "datm": tmp_path / "images_1.pt"}.get(layout, tmp_path / "set.pt")
    torch.save(torch.zeros(6, 3), tmp_path / "labels_1.pt")  # the pair's other file, harmless
    payload = payloads.get(layout, [RunsCode(), torch.zeros(1)])
    if writer == "pickle.dump":  # a legacy (non-zip) pickle: torch.load reads those too
        with path.open("wb") as handle:
            pickle.dump(payload, handle)
    else:
        torch.save(payload, path)
    args = ["import", path.parent if layout == "ddranking" else path, "--format", layout, "--data", data, *STATS, "--factor", "2",
            *(["--to-pixels"] if layout == "datm" else []), "--out", "out.safetensors"]
    assert_one_error(main, args, capsys, contains="never loaded (it could run code); nothing was run")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out.safetensors").exists()


def test_bad_input_is_one_error_and_leaves_nothing(tmp_path, data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.save([pixels(6).clamp(0, 1), torch.arange(3).repeat_interleave(2)], "idc.pt")
    cases = {
        "the wrong format": (["idc.pt", "--format", "dc"], "is not a DC/DSA/DM result"),
        "no factor": (["idc.pt", "--format", "idc"], "pass --factor"),
        "the wrong format (datadam)": (["idc.pt", "--format", "datadam"], "is not a DataDAM set"),
    }
    torch.save([torch.rand(6, 1, 8, 8), torch.arange(3).repeat_interleave(2)], "gray.pt")
    cases["another dataset's images"] = (["gray.pt", "--format", "idc", "--factor", "1"], "a set of another dataset?")
    torch.save([torch.rand(6, 3, 8, 8), torch.arange(6)], "many.pt")
    cases["another dataset's classes"] = (["many.pt", "--format", "ncfm", "--factor", "1"], "has 3 classes: a set of another dataset?")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "idc.pt").read_bytes()[:300])
    cases["a truncated file"] = (["truncated.pt", "--format", "idc", "--factor", "2"], "may be truncated")
    torch.save({"data": [[normalised(pixels(6)), torch.arange(3).repeat_interleave(2)]]}, "res_DC_X_ConvNet_2ipc.pt")
    cases["no mean/std for this dataset"] = (["res_DC_X_ConvNet_2ipc.pt", "--format", "dc"], "pass --mean and --std")
    for name, (args, message) in cases.items():
        assert_one_error(main, ["import", *args, "--data", str(data), "--out", "out.safetensors"], capsys, contains=message), name
        assert not (tmp_path / "out.safetensors").exists(), name


def test_distill_starts_from_an_imported_or_our_own_set(tmp_path, data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    canvases = pixels(3).clamp(0, 1)
    torch.save([canvases, torch.arange(3)], "ncfm.pt")
    assert main(["import", "ncfm.pt", "--format", "ncfm", "--factor", "2", "--data", str(data), "--out", "imported.safetensors"]) == 0
    tiny = ["distill", "--data", str(data), "--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32",
            "--pool-size", "1", "--eval-runs", "0", "--no-progress"]
    assert main([*tiny, "--iterations", "0", "--init-from", "imported.safetensors", "--out", "start"]) == 0
    assert torch.equal(SyntheticSet.load(tmp_path / "start" / "synthetic.safetensors").canvases, canvases)
    assert main([*tiny, "--iterations", "2", "--init-from", "start", "--out", "refined"]) == 0  # a run folder works too
    refined = SyntheticSet.load(tmp_path / "refined" / "synthetic.safetensors")
    assert not torch.equal(refined.canvases, canvases) and refined.config["init_from"] == "start"
    assert_one_error(main, [*tiny, "--ipc", "2", "--init-from", "imported.safetensors", "--out", "bad"], capsys,
                     contains="the set's IPC 1 (the run: 2) differ from the run's")
    assert not (tmp_path / "bad" / "synthetic.safetensors").exists()


def test_mtts_learned_lr_is_kept_and_trains_under_sgd_protocols_only(tmp_path, data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    images = normalised(pixels(6, 5))
    torch.save(images.requires_grad_(), "images_best.pt")  # MTT's saved leaf may carry requires_grad
    torch.save(torch.arange(3).repeat_interleave(2), "labels_best.pt")
    synthetic = imported(tmp_path, ["images_best.pt", "--format", "mtt", "--data", data, *STATS, "--lr", "0.02"])
    assert synthetic.learned_lr == 0.02 and torch.allclose(synthetic.images.double(), unnormalised64(images.detach()), atol=1e-6)
    quick = ["--epochs", "1", "--runs", "1", "--width", "4", "--depth", "2", "--no-progress", "--data", str(data)]
    for protocol, used, lr in (("dc", True, 0.02), ("cpu", False, None), ("dc --lr 0.05", False, 0.05)):
        name, *extra = protocol.split()
        assert main(["eval", str(tmp_path / "imported.safetensors"), "--protocol", name, *extra, *quick, "--out", "eval.json"]) == 0
        result = json.loads((tmp_path / "eval.json").read_text())
        assert result["learned_lr"]["used"] is used, protocol
        if lr is not None:
            assert result["protocol"]["train"]["lr"] == lr, protocol
    assert_one_error(main, ["import", "images_best.pt", "--format", "mtt", "--data", str(data), *STATS, "--lr", "-1"], capsys,
                     contains="the learned lr must be a finite number above 0")


def zca64(train):
    """FORMATS.md §9 transcribed in float64: μ, unbiased Σ, torch.svd, W = U (S + 0.1)^(-1/2) Uᵀ."""
    x = train.reshape(len(train), -1).double()
    mean = x.mean(0)
    u, s, _ = torch.svd(torch.cov(x.T))
    return mean, u @ torch.diag((s + 0.1) ** -0.5) @ u.T


@pytest.mark.parametrize("layout", ["mtt", "datm"])
def test_zca_sets_map_back_to_pixels_through_a_refitted_whitening(tmp_path, data, monkeypatch, layout):
    from condense.source import DataSource

    monkeypatch.chdir(tmp_path)
    train = DataSource(str(data)).load("train")
    mean, whiten = zca64(train.floats(torch.arange(len(train))))
    original = pixels(6, 6)  # overshooting [0, 1], as a set optimised in ZCA space and inverted may
    whitened = ((original.reshape(6, -1).double() - mean) @ whiten).reshape(6, 3, 8, 8).float()
    torch.save(whitened, "images_best.pt")
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(7))
    torch.save(torch.arange(3).repeat_interleave(2) if layout == "mtt" else logits, "labels_best.pt")
    torch.save(torch.tensor(0.03), "lr_best.pt")
    extra = ["--zca", "--lr", "0.01"] if layout == "mtt" else []
    synthetic = imported(tmp_path, ["images_best.pt", "--format", layout, "--data", data, "--to-pixels", *extra])
    assert torch.allclose(synthetic.images, original, atol=2e-5) and synthetic.image_space == "pixels"
    assert torch.equal(synthetic.labels, torch.arange(3).repeat_interleave(2))
    assert synthetic.config["import"]["settings"]["zca"]["eps"] == 0.1
    if layout == "datm":
        assert torch.allclose(synthetic.soft_labels, torch.softmax(logits, 1)) and synthetic.learned_lr == pytest.approx(0.03)


def test_a_zca_set_stays_whitened_and_eval_whitens_the_test_images_alike(tmp_path, data, monkeypatch, capsys):
    from condense.importers import ZCA
    from downstream.load import load_condensed

    monkeypatch.chdir(tmp_path)
    torch.save(torch.randn(6, 3, 8, 8), "images_best.pt")
    torch.save(torch.randn(6, 3), "labels_best.pt")
    synthetic = imported(tmp_path, ["images_best.pt", "--format", "datm", "--data", data])
    assert synthetic.image_space == "zca" and synthetic.mean == (0.0,) * 3 and synthetic.std == (1.0,) * 3
    whitened = []
    original = ZCA.whiten
    monkeypatch.setattr(ZCA, "whiten", lambda self, x: whitened.append(len(x)) or original(self, x))
    quick = ["--epochs", "1", "--runs", "1", "--width", "4", "--depth", "2", "--no-progress", "--data", str(data)]
    assert main(["eval", str(tmp_path / "imported.safetensors"), *quick, "--out", "eval.json"]) == 0
    assert sum(whitened) == 36 and json.loads((tmp_path / "eval.json").read_text())["test_whitened"]["eps"] == 0.1  # every test image
    with pytest.raises(UserError, match="ZCA-whitened: only `condense eval`"):
        load_condensed(tmp_path / "imported.safetensors")
    assert_one_error(main, ["distill", "--data", str(data), "--ipc", "2", "--factor", "1", "--real-batch", "4", "--init-from",
                            "imported.safetensors", "--pool-folder", "pool"], capsys, contains="ZCA-whitened")
    assert not (tmp_path / "pool").exists()  # refused before any pool is trained


def test_canvases_in_any_class_order_come_out_class_major_and_stray_files_are_handled(tmp_path, data, monkeypatch, capsys):
    """Review findings: canvases follow their images into class order (--init-from reads them class-major); a hidden file in
    a class folder is skipped, any other non-image is one error."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    canvases, labels = pixels(6).clamp(0, 1), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.save([canvases, labels], "mixed.pt")
    synthetic = imported(tmp_path, ["mixed.pt", "--format", "ncfm", "--factor", "1", "--data", data])
    assert torch.equal(synthetic.canvases, canvases[[0, 3, 1, 4, 2, 5]]) and torch.equal(synthetic.images, synthetic.canvases)
    for c in range(3):
        (tmp_path / "folder" / f"{c:05d}").mkdir(parents=True)
        Image.fromarray((torch.rand(8, 8, 3) * 255).byte().numpy()).save(tmp_path / "folder" / f"{c:05d}" / "a.png")
    (tmp_path / "folder" / "00000" / ".DS_Store").write_bytes(b"\0junk")
    assert len(imported(tmp_path, ["folder", "--format", "imagefolder", "--data", data]).images) == 3
    (tmp_path / "folder" / "00001" / "notes.txt").write_text("not an image")
    assert_one_error(main, ["import", "folder", "--format", "imagefolder", "--data", str(data), "--out", "x.safetensors"], capsys,
                     contains="notes.txt is not an image PIL reads")


def test_cards_link_papers_tag_the_ipc_and_count_in_words(tmp_path, data, monkeypatch):
    """Issue 28 item 5, on an imported set: the paper's arXiv link, an ipc-N tag, machine-generated annotations, '1 run'."""
    from huggingface_hub import DatasetCard

    monkeypatch.chdir(tmp_path)
    torch.save([pixels(6).clamp(0, 1), torch.arange(3).repeat_interleave(2)], "idc.pt")
    imported(tmp_path, ["idc.pt", "--format", "idc", "--factor", "1", "--data", data])
    assert main(["eval", "imported.safetensors", "--data", str(data), "--epochs", "1", "--runs", "1", "--width", "4", "--depth", "2",
                 "--no-progress"]) == 0
    assert main(["export", "imported.safetensors", "--out", "hub"]) == 0
    card = DatasetCard.load(tmp_path / "hub" / "README.md")
    assert "ipc-2" in card.data.tags and card.data.annotations_creators == ["machine-generated"]
    assert "https://arxiv.org/abs/2205.14959" in card.text and "over 1 run " in card.text.replace("\n", " ")


def test_format_auto_only_where_the_layout_says_it(tmp_path, data, monkeypatch, capsys):
    from condense.importers import detect_format

    monkeypatch.chdir(tmp_path)
    labels = torch.arange(3).repeat_interleave(2)
    torch.save({"data": [[normalised(pixels(6)), labels]], "accs_all_exps": {"ConvNet": [np.float64(0.5)]}}, "dc.pt")
    torch.save({"data": [normalised(pixels(6)), labels]}, "dam.pt")
    torch.save([pixels(6), labels], "canvases.pt")
    (tmp_path / "run").mkdir()
    torch.save(pixels(6), "run/images_best.pt")
    torch.save(torch.randn(6, 3), "run/labels_best.pt")
    assert [detect_format(tmp_path / name) for name in ("dc.pt", "dam.pt", "run/images_best.pt")] == ["dc", "datadam", "datm"]
    assert imported(tmp_path, ["dc.pt", "--format", "auto", "--data", data, *STATS]).config["import"]["format"] == "dc"
    assert_one_error(main, ["import", "canvases.pt", "--format", "auto", "--data", str(data), "--out", "x.safetensors"], capsys,
                     contains="could be idc or ncfm")
    torch.save(labels, "run/labels_best.pt")
    assert_one_error(main, ["import", "run/images_best.pt", "--format", "auto", "--data", str(data), "--out", "x.safetensors"], capsys,
                     contains="could be mtt or mtt --zca")


def test_eval_trains_on_a_plain_image_classification_dataset(tmp_path, data, monkeypatch, capsys):
    """Issue 26 item 4: e.g. the rethinkdc sets: rows of images and class labels; the test split comes from --data."""
    monkeypatch.chdir(tmp_path)
    published = write_image_folder(tmp_path / "published", {"image": "image", "label": "label"}, splits=("train",), rows=9, seed=3)
    quick = ["--epochs", "1", "--runs", "1", "--width", "4", "--depth", "2", "--no-progress"]
    assert main(["eval", str(published), "--data", str(data), *quick]) == 0
    result = json.loads((tmp_path / "published.eval.json").read_text())
    assert 0 <= result["accuracy_mean"] <= 100 and "data" in result["test"]
    assert_one_error(main, ["eval", str(published), *quick], capsys, contains="pass --data for the test split")
