import numpy as np
import pytest
from PIL import Image

import data.dataset as dataset
from data.alphabet import Alphabet


def test_loads_images_and_labels(captcha_folders):
    train, _ = captcha_folders
    loaded = dataset.load_labelled_folder(train, Alphabet(), cache=False)
    assert loaded.images.shape == (24, 144, 256, 3) and loaded.images.dtype == np.uint8
    assert loaded.codes.shape == (24, 4)
    assert [Alphabet().decode(codes) for codes in loaded.codes] == loaded.labels
    assert all(name.startswith(label) for name, label in zip(loaded.filenames, loaded.labels))


def test_cache_is_reused_and_rebuilt_when_the_folder_changes(tmp_path, monkeypatch):
    for index, label in enumerate(["1111", "2222", "3333"]):
        Image.new("RGB", (16, 8), (index * 50, 0, 0)).save(tmp_path / f"{label}.png")
    first = dataset.load_labelled_folder(tmp_path, Alphabet())
    assert (tmp_path / ".cache" / "images.npy").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again although the folder did not change")

    with monkeypatch.context() as patch:
        patch.setattr(dataset, "_decode_all", refuse)
        again = dataset.load_labelled_folder(tmp_path, Alphabet())
    np.testing.assert_array_equal(first.images, again.images)

    Image.new("RGB", (16, 8), (0, 200, 0)).save(tmp_path / "4444.png")
    changed = dataset.load_labelled_folder(tmp_path, Alphabet())
    assert len(changed) == 4 and changed.images[3, 0, 0].tolist() == [0, 200, 0]


def test_mixed_sizes_and_broken_files_are_named(tmp_path):
    Image.new("RGB", (16, 8)).save(tmp_path / "1111.png")
    Image.new("RGB", (20, 8)).save(tmp_path / "2222.png")
    with pytest.raises(ValueError, match="2222.png has size"):
        dataset.load_labelled_folder(tmp_path, Alphabet(), cache=False)
    (tmp_path / "2222.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Cannot decode image .*2222.png"):
        dataset.load_labelled_folder(tmp_path, Alphabet(), cache=False)


def test_modes_are_converted_to_rgb(tmp_path):
    Image.new("RGBA", (16, 8), (10, 20, 30, 255)).save(tmp_path / "1111.png")
    Image.new("L", (16, 8), 77).save(tmp_path / "2222.png")
    loaded = dataset.load_labelled_folder(tmp_path, Alphabet(), cache=False)
    assert loaded.images.shape == (2, 8, 16, 3)
    assert loaded.images[0, 0, 0].tolist() == [10, 20, 30]
    assert loaded.images[1, 0, 0].tolist() == [77, 77, 77]


def test_array_batches_cover_every_image_once_per_epoch():
    from data.batches import ArrayBatches

    images = np.arange(10).reshape(10, 1, 1, 1)
    batches = ArrayBatches(images, np.arange(10), batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 3
    for _ in range(2):
        seen = np.concatenate([batches[index][1] for index in range(len(batches))])
        assert sorted(seen.tolist()) == list(range(10))
        for index in range(len(batches)):
            batch_images, batch_targets = batches[index]
            np.testing.assert_array_equal(batch_images.ravel(), batch_targets)
        batches.on_epoch_end()
    assert ArrayBatches(images, batch_size=8)[1].shape == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="differ in length"):
        ArrayBatches(images, np.arange(3), batch_size=2)
