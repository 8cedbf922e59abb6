"""benchmarks/ncfm_gpu.py's own parquet reader (used where `datasets` is not installed) agrees with `load_real`."""


import torch

from condense.data import load_real

from conftest import load_benchmark, write_image_folder


def benchmark_module():
    return load_benchmark("ncfm_gpu")


def test_parquet_reader_takes_class_names_and_statistics_from_the_data(tmp_path):
    folder = str(write_image_folder(tmp_path / "tiny", {"img": "image", "label": "label"}))
    read = benchmark_module().read_parquet_split(folder, "train")
    loaded = load_real(folder, "train")
    assert read.class_names == ["ant", "bee", "cat"] == loaded.class_names
    assert torch.equal(read.images, loaded.images) and torch.equal(read.labels, loaded.labels)
    assert read.mean == loaded.mean and read.std == loaded.std
