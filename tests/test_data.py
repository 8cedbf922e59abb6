import itertools

import numpy as np
import pytest
import torch

from condense.data import RealData, compute_stats, known_stats_key, load_real
from condense.errors import UserError

from conftest import write_image_folder


def test_columns_found_by_feature_type_whatever_their_names(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"picture": "image", "caption": "text", "target": "label"})
    data = load_real(str(folder), "train")
    assert data.images.shape == (12, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [i % 3 for i in range(12)]
    assert data.class_names == ["ant", "bee", "cat"]
    assert [ix.tolist() for ix in data.by_class] == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]


def test_decoded_pixels_equal_the_stored_png(tmp_path):
    import datasets

    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"})
    raw = datasets.load_dataset(str(folder), split="train")
    data = load_real(str(folder), "train")
    assert np.array_equal(data.images[5].permute(1, 2, 0).numpy(), np.asarray(raw[5]["img"]))


def test_a_local_folder_has_one_identity_however_it_is_written(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "ds", {"image": "image", "label": "label"})
    monkeypatch.chdir(tmp_path)
    sources = {load_real(path, "test").source for path in ("ds", "./ds", "ds/", str(folder), "../" + tmp_path.name + "/ds")}
    assert sources == {str(folder.resolve())}


def test_no_image_column_names_the_flag(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"caption": "text", "label": "label"})
    with pytest.raises(UserError, match=r"no image column found \(columns: caption \(Value\), label \(ClassLabel\)\); name one with --image-column"):
        load_real(str(folder))


def test_no_label_column_names_the_flag(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"img": "image", "caption": "text"})
    with pytest.raises(UserError, match="no class-label column found .*--label-column"):
        load_real(str(folder))


def test_integer_label_column_by_flag(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"img": "image", "caption": "text", "y": "int"})
    data = load_real(str(folder), label_column="y")
    assert data.class_names == ["0", "1", "2"]


def test_text_column_is_not_a_label(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"img": "image", "caption": "text", "label": "label"})
    with pytest.raises(UserError, match="column 'caption' is .* not a class label"):
        load_real(str(folder), label_column="caption")


def test_ambiguous_and_missing_named_columns(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"a": "image", "b": "image", "label": "label"})
    with pytest.raises(UserError, match=r"several image columns \(a, b\); choose one with --image-column"):
        load_real(str(folder))
    with pytest.raises(UserError, match="no column 'c' in the dataset; its columns are: a \\(Image\\), b \\(Image\\)"):
        load_real(str(folder), image_column="c")
    assert load_real(str(folder), image_column="b").images.shape == (12, 3, 8, 8)


def test_missing_folder_and_unknown_split(tmp_path):
    with pytest.raises(UserError, match="no such folder: .*nowhere"):
        load_real(str(tmp_path / "nowhere"))
    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"})
    with pytest.raises(UserError, match="has no split 'validation'; it has: train, test"):
        load_real(str(folder), "validation")


def test_resize_option(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"})
    assert load_real(str(folder), image_size=4).images.shape == (12, 3, 4, 4)


def _data(per_class=(5, 7, 9)):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))
    labels = labels[perm]
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return RealData(images, labels, ["a", "b", "c"], (0.5,), (0.5,), "toy", "train")


def test_balanced_sampling_is_balanced_distinct_and_seeded():
    data = _data()
    first = data.balanced_indices(4, torch.Generator().manual_seed(0))
    again = data.balanced_indices(4, torch.Generator().manual_seed(0))
    other = data.balanced_indices(4, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert data.labels[first].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert len(set(first.tolist())) == 12
    assert data.balanced_indices(2, torch.Generator(), classes=[2]).tolist() != []
    assert set(data.labels[data.balanced_indices(2, torch.Generator(), classes=[2])].tolist()) == {2}


def test_sampling_more_than_a_class_has_says_how_many_it_has():
    with pytest.raises(UserError, match=r"class 0 \('a'\) of toy \[train\] has only 5 images, but 6 were asked for"):
        _data().balanced_indices(6)


def test_stats_known_by_name_else_computed():
    assert known_stats_key("uoft-cs/cifar10") == "cifar10"
    assert known_stats_key("../shared/data/cifar10/") == "cifar10"
    assert known_stats_key("ylecun/mnist") == "mnist"
    assert known_stats_key("zalando-datasets/fashion_mnist") == "fashionmnist"
    assert known_stats_key("frgfm/imagenette") == "imagenet"
    assert known_stats_key("someone/flowers") is None
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = compute_stats(images, chunk=7)
    array = images.numpy().astype(np.float64) / 255
    assert np.allclose(mean, array.mean((0, 2, 3)), atol=1e-4)
    assert np.allclose(std, array.std((0, 2, 3)), atol=1e-4)


def test_cifar10_mirror(cifar10_dir):
    data = load_real(str(cifar10_dir), "test")
    assert data.images.shape == (10000, 3, 32, 32)
    assert data.class_names[:3] == ["airplane", "automobile", "bird"]
    assert [len(ix) for ix in data.by_class] == [1000] * 10
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2023, 0.1994, 0.2010)


def test_mnist_mirror(mnist_test):
    assert mnist_test.images.shape == (10000, 1, 28, 28)
    assert mnist_test.mean == (0.1307,) and mnist_test.std == (0.3081,)
    assert mnist_test.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the official test order


def test_memory_mapped_split_reads_the_same_pixels_row_by_row(tmp_path):
    from condense.data import ArrowImages

    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"}, rows=30)
    loaded = load_real(str(folder), "train")
    mapped = load_real(str(folder), "train", memory_mapped=True)
    assert isinstance(mapped.images, ArrowImages) and mapped.images.shape == loaded.images.shape
    batch = mapped.balanced_indices(4, torch.Generator().manual_seed(1))
    assert torch.equal(mapped.floats(batch), loaded.floats(batch))
    assert torch.equal(mapped.images[2:7], loaded.images[2:7]) and torch.equal(mapped.images.to("cpu"), loaded.images)
    assert (mapped.mean, mapped.std) == (loaded.mean, loaded.std)  # statistics computed through the same reads


def test_distillation_over_a_memory_mapped_split_gives_the_same_set(tmp_path):
    from condense.distill import DistillConfig, make_method
    from condense.pool import POOL_TRAINING, PoolSpec, build_or_load_pool

    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"}, rows=36)
    loaded = load_real(str(folder), "train")
    training = {**POOL_TRAINING.to_dict(), "epochs": 1, "batch_size": 8}
    spec = PoolSpec(loaded.source, loaded.split, 3, 3, (8, 8), "convnet", {"depth": 2, "width": 8}, training)
    pool = build_or_load_pool(tmp_path / "pool", spec, 1, loaded, None, torch.device("cpu"), progress=False)
    config = DistillConfig(data=str(folder), ipc=1, factor=2, depth=2, width=8, real_batch=6, pool_size=1).changed(frequencies=64)
    sets = []
    for real in (loaded, load_real(str(folder), "train", memory_mapped=True)):
        distiller = make_method(config, real, pool, torch.device("cpu"))
        for _ in range(2):
            distiller.step()
        sets.append(distiller.canvases.detach())
    assert torch.equal(*sets)


def test_pool_pretraining_over_a_memory_mapped_split_reads_only_its_batches(tmp_path, monkeypatch):
    from condense.data import ArrowImages
    from condense.pool import POOL_TRAINING, PoolSpec, build_or_load_pool

    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"}, rows=36)
    loaded = load_real(str(folder), "train")
    training = {**POOL_TRAINING.to_dict(), "epochs": 2, "batch_size": 8}
    spec = PoolSpec(loaded.source, loaded.split, 3, 3, (8, 8), "convnet", {"depth": 2, "width": 8}, training)
    pools = [build_or_load_pool(tmp_path / "pool-loaded", spec, 1, loaded, None, torch.device("cpu"), progress=False)]

    def whole_split(self, device):
        raise AssertionError("the whole mapped split was read into memory")

    monkeypatch.setattr(ArrowImages, "to", whole_split)
    mapped = load_real(str(folder), "train", memory_mapped=True)
    pools.append(build_or_load_pool(tmp_path / "pool-mapped", spec, 1, mapped, None, torch.device("cpu"), progress=False))
    loaded_weights, mapped_weights = (pool.members[0][1] for pool in pools)
    assert all(torch.equal(loaded_weights[name], mapped_weights[name]) for name in loaded_weights)


def test_class_reservoirs_keep_every_item_with_the_same_probability():
    from condense.data import ClassReservoirs

    counts = np.zeros((2, 20))
    made = 0
    for seed in range(3000):
        reservoirs = ClassReservoirs(5, seed)
        for position in range(40):  # classes alternate: 20 items each
            reservoirs.offer(position % 2, lambda position=position: position)
        items = reservoirs.items()
        assert [label for label, _ in items] == [0] * 5 + [1] * 5  # exactly 5 per class, grouped by class
        assert all(a < b for (la, a), (lb, b) in itertools.pairwise(items) if la == lb)  # stream order within a class
        for label, position in items:
            counts[label, position // 2] += 1
        made += sum(reservoirs.seen.values())
    frequency = counts / 3000
    assert np.abs(frequency - 5 / 20).max() < 0.04  # every item: kept with probability 5/20 (binomial std 0.008)
    assert ClassReservoirs(None).per_class is None and made == 3000 * 40


def test_class_reservoirs_make_only_the_items_they_keep():
    from condense.data import ClassReservoirs

    made = []
    reservoirs = ClassReservoirs(2, seed=0)
    for position in range(1000):
        reservoirs.offer(0, lambda position=position: made.append(position) or position)
    # the n-th item is kept with probability 2/n: about 2 (1 + ln(1000 / 2)) = 14 items are ever made, not 1000
    assert len(made) < 40 and made[:2] == [0, 1] and len(reservoirs.items()) == 2
    everything = ClassReservoirs(None)
    for position in range(7):
        everything.offer(position % 3, lambda position=position: position)
    assert everything.items() == [(0, 0), (0, 3), (0, 6), (1, 1), (1, 4), (2, 2), (2, 5)]
    with pytest.raises(UserError, match="at least 1"):
        ClassReservoirs(0)


def test_streamed_split_keeps_random_images_of_each_class_in_one_pass(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"}, rows=36)
    loaded = load_real(str(folder), "train")
    streamed = load_real(str(folder), "train", streaming=True, per_class=4, seed=1)
    assert streamed.split == "train[streamed, 4 random per class, seed 1]" and streamed.class_names == loaded.class_names
    assert torch.bincount(streamed.labels).tolist() == [4, 4, 4] and streamed.images.dtype == torch.uint8
    rows = {loaded.images[i].numpy().tobytes(): i for i in range(len(loaded))}
    positions = [rows[image.numpy().tobytes()] for image in streamed.images]  # every kept image is a row of the split ...
    assert all(loaded.labels[p] == label for p, label in zip(positions, streamed.labels.tolist()))  # ... of its class
    assert len(set(positions)) == 12  # distinct
    again = load_real(str(folder), "train", streaming=True, per_class=4, seed=1)
    other = load_real(str(folder), "train", streaming=True, per_class=4, seed=2)
    assert torch.equal(again.images, streamed.images) and not torch.equal(other.images, streamed.images)
    whole = load_real(str(folder), "test", streaming=True)  # no per_class: the whole split, grouped by class
    order = torch.argsort(loaded.labels, stable=True)
    assert torch.equal(whole.images, load_real(str(folder), "test").images[order]) and whole.split == "test[streamed]"


def test_streaming_refuses_conflicting_options(tmp_path):
    folder = write_image_folder(tmp_path / "ds", {"img": "image", "label": "label"})
    with pytest.raises(UserError, match="not both"):
        load_real(str(folder), streaming=True, memory_mapped=True)
    with pytest.raises(UserError, match="balanced_subset"):
        load_real(str(folder), per_class=2)
