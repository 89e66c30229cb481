import numpy as np
import pytest
import torch

from tokbench.data.loader import iterate_batches, load_images
from tokbench.data.shapes import ShapesDataset


@pytest.fixture(scope="module")
def shapes():
    return ShapesDataset(num_images=23, resolution=16)


def test_batches_cover_the_dataset_in_order(shapes):
    batches = list(iterate_batches(shapes, batch_size=8))
    assert [len(indices) for _, _, indices in batches] == [8, 8, 7]
    images, labels, indices = batches[0]
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 16, 16) and images.is_contiguous()
    assert labels.dtype == torch.int64 and labels.tolist() == [shapes.label(i) for i in range(8)]
    assert sum((ix for _, _, ix in batches), []) == list(range(23))
    assert torch.equal(images[3], torch.from_numpy(shapes.image(3)).permute(2, 0, 1))


def test_chosen_indices_keep_their_order(shapes):
    chosen = [20, 3, 3, 11]
    (images, labels, indices), = iterate_batches(shapes, batch_size=10, indices=chosen)
    assert indices == chosen
    assert labels.tolist() == [shapes.label(i) for i in chosen]
    assert torch.equal(images, load_images(shapes, chosen))


def test_workers_give_the_same_batches(shapes):
    serial = list(iterate_batches(shapes, batch_size=5))
    parallel = list(iterate_batches(shapes, batch_size=5, num_workers=2))
    assert len(serial) == len(parallel)
    for (a, la, ia), (b, lb, ib) in zip(serial, parallel):
        assert torch.equal(a, b) and torch.equal(la, lb) and ia == ib


def test_load_images(shapes):
    images = load_images(shapes, np.array([0, 5]))
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert load_images(shapes, []).shape == (0, 3, 16, 16)


def test_bad_arguments(shapes):
    with pytest.raises(ValueError):
        iterate_batches(shapes, batch_size=0)
    with pytest.raises(ValueError):
        iterate_batches(shapes, batch_size=4, num_workers=-1)
    with pytest.raises(IndexError):
        list(iterate_batches(shapes, batch_size=4, indices=[23]))


def test_image_folder_through_workers(tmp_path):
    from PIL import Image

    from tokbench.data.imagefolder import ImageFolderDataset

    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / f"class{c}").mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / f"class{c}" / f"{i}.png")
    folder = ImageFolderDataset(tmp_path, resolution=12)
    batches = list(iterate_batches(folder, batch_size=4, num_workers=2))
    assert [b[1].tolist() for b in batches] == [[0, 0, 0, 1], [1, 1]]
    assert torch.equal(torch.cat([b[0] for b in batches]), load_images(folder, range(6)))


def test_auto_workers_none_on_cpu_some_on_gpu(monkeypatch):
    from tokbench.data.loader import default_workers

    assert default_workers("cpu") == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert default_workers("cuda:1") == 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert default_workers("cuda") == 2


def test_build_context_batches_use_its_workers(shapes, tmp_path):
    from tokbench.runtime.context import BuildContext
    from tokbench.storage.store import Store

    plain = list(iterate_batches(shapes, 5))
    context = BuildContext(store=Store(tmp_path / "store"), loader_workers=2)
    with_workers = list(context.batches(shapes, 5))
    assert len(plain) == len(with_workers)
    for (a, la, ia), (b, lb, ib) in zip(plain, with_workers):
        assert torch.equal(a, b) and torch.equal(la, lb) and ia == ib
