"""Shared fixtures: the real-data mirrors in ../shared/data (skipped when absent) and tiny local datasets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs the real-data mirror {path} (../shared/data beside the repository); not present here")
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return shared_dataset("mnist")


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    return shared_dataset("cifar10")


@pytest.fixture(scope="session")
def mnist_test(mnist_dir):
    from condense.data import load_real

    return load_real(str(mnist_dir), "test")


@pytest.fixture(scope="session")
def mnist_train(mnist_dir):
    from condense.data import load_real

    return load_real(str(mnist_dir), "train")


def write_image_folder(folder: Path, columns: dict, splits=("train", "test"), rows: int = 12, seed: int = 0) -> Path:
    """A tiny Hub-layout dataset: one parquet file per split with the given column kinds.

    `columns` maps a name to "image", "label" (ClassLabel with 3 classes), "int" or "text".
    """
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    kinds = {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=["ant", "bee", "cat"]),
        "int": datasets.Value("int64"),
        "text": datasets.Value("string"),
    }
    features = datasets.Features({name: kinds[kind] for name, kind in columns.items()})
    for split in splits:
        data = {}
        for name, kind in columns.items():
            if kind == "image":
                data[name] = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(rows)]
            elif kind in ("label", "int"):
                data[name] = [i % 3 for i in range(rows)]
            else:
                data[name] = [f"row {i}" for i in range(rows)]
        ds = datasets.Dataset.from_dict(data, features=features)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


@pytest.fixture
def tiny_set():
    """A 2-class SyntheticSet of 8x8 RGB images (6 per class) with soft labels."""
    from condense.synthetic import SyntheticSet

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat_interleave(6)
    images = torch.rand(12, 3, 8, 8, generator=generator)
    images[labels == 1, 0] = images[labels == 1, 0] * 0.3 + 0.7  # class 1 is redder
    soft = torch.softmax(torch.randn(12, 2, generator=generator), 1)
    return SyntheticSet(
        images=images, labels=labels, soft_labels=soft, class_names=["blue", "red"],
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), method="test", source_dataset="tiny", ipc=6,
    )


@pytest.fixture
def tiny_test_data():
    """RealData with 40 uint8 8x8 images of the two tiny_set classes."""
    from condense.data import RealData

    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(2).repeat(20)
    images = torch.rand(40, 3, 8, 8, generator=generator)
    images[labels == 1, 0] = images[labels == 1, 0] * 0.3 + 0.7
    return RealData((images * 255).to(torch.uint8), labels, ["blue", "red"], (0.5,) * 3, (0.25,) * 3, "tiny", "test")


def make_real(per_class: int = 12, size: int = 16, seed: int = 0, source: str = "tiny-real", split: str = "train"):
    """RealData with 3 classes of uint8 RGB images whose class shows in the mean colour."""
    from condense.data import RealData

    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat(per_class)
    images = torch.rand(len(labels), 3, size, size, generator=generator) * 0.5
    for c in range(3):
        images[labels == c, c] += 0.5
    return RealData((images * 255).to(torch.uint8), labels, ["r", "g", "b"], (0.5,) * 3, (0.25,) * 3, source, split)


@pytest.fixture
def tiny_pool(tmp_path):
    """A 2-member pool of small ConvNets trained 1 epoch on make_real()."""
    from condense.pool import POOL_TRAINING, PoolSpec, build_or_load_pool

    real = make_real()
    training = {**POOL_TRAINING.to_dict(), "epochs": 1, "batch_size": 8}
    spec = PoolSpec(real.source, real.split, 3, 3, (16, 16), "convnet", {"depth": 2, "width": 8}, training)
    return build_or_load_pool(tmp_path / "pool", spec, 2, real, None, torch.device("cpu"), progress=False), real, spec


def assert_one_error(main, argv: list[str], capsys, contains: str | None = None) -> str:
    """Run a command line's `main(argv)`: exit 2, exactly one `error:` line on stderr, no traceback; returns that line."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}, stderr: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err[-2000:]
    if contains is not None:
        assert contains in errors[0], errors[0]
    return errors[0]


def load_benchmark(name: str):
    """A script of benchmarks/ imported as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """One torch thread (as the torchrun ranks run), so sums run in one order and results compare bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def kill_before_iteration(monkeypatch, iteration: int):
    """Make `Method.step` raise KeyboardInterrupt (a Ctrl-C) when it would run `iteration`; returns the real step."""
    from condense.methods import Method

    original = Method.step

    def killed(self):
        if self.iteration == iteration - 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Method, "step", killed)
    return original
