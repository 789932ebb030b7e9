import numpy as np
import pytest
from PIL import Image

import data.dataset as dataset
from core.alphabet import Alphabet


def test_loads_images_and_labels(captcha_folders):
    train, _ = captcha_folders
    loaded = dataset.load_labelled_folder(train, Alphabet(), cache=False)
    assert loaded.images.shape == (24, 144, 256, 3) and loaded.images.dtype == np.uint8
    assert loaded.codes.shape == (24, 4)
    assert [Alphabet().decode(codes) for codes in loaded.codes] == loaded.labels
    assert all(name.startswith(label) for name, label in zip(loaded.filenames, loaded.labels))


def test_cache_is_reused_and_rebuilt_when_the_folder_changes(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CAPTCHA_KIT_CACHE", str(cache))
    data = tmp_path / "data"
    data.mkdir()
    for index, label in enumerate(["1111", "2222", "3333"]):
        Image.new("RGB", (16, 8), (index * 50, 0, 0)).save(data / f"{label}.png")
    first = dataset.load_labelled_folder(data, Alphabet())
    # Outside the data folder, which is never written to; said once, with the size.
    assert sorted(path.name for path in data.iterdir()) == ["1111.png", "2222.png", "3333.png"]
    cache_dir = dataset.cache_folder(data)
    assert cache_dir.parent.parent == cache and (cache_dir / "images.npy").is_file()
    message = capsys.readouterr().err
    assert f"Cached the 3 decoded images of {data}/ in {cache_dir}/" in message and "MB" in message

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again although the folder did not change")

    with monkeypatch.context() as patch:
        patch.setattr(dataset, "_decode_all", refuse)
        again = dataset.load_labelled_folder(data, Alphabet())
    np.testing.assert_array_equal(first.images, again.images)
    assert capsys.readouterr().err == ""  # Read back, nothing written.

    Image.new("RGB", (16, 8), (0, 200, 0)).save(data / "4444.png")
    changed = dataset.load_labelled_folder(data, Alphabet())
    assert len(changed) == 4 and changed.images[3, 0, 0].tolist() == [0, 200, 0]
    # A rewritten file (another size in bytes) is read again too.
    Image.new("RGB", (16, 8), (0, 0, 90)).save(data / "1111.png", compress_level=0)
    assert dataset.load_labelled_folder(data, Alphabet()).images[0, 0, 0].tolist() == [0, 0, 90]
    # Another folder gets a cache of its own; the unlabelled loader keeps its own beside it.
    assert dataset.cache_folder(tmp_path) != cache_dir != dataset.cache_folder(data, "unlabelled")
    dataset.load_unlabelled_folder(data)
    assert (dataset.cache_folder(data, "unlabelled") / "images.npy").is_file()


def test_unwritable_cache_still_loads(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CAPTCHA_KIT_CACHE", str(blocker / "cache"))
    Image.new("RGB", (16, 8)).save(tmp_path / "1111.png")
    assert dataset.load_labelled_folder(tmp_path, Alphabet()).labels == ["1111"]
    assert "Cached" not in capsys.readouterr().err


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


def _bad_folder(folder):
    """Three good 16x8 images and one of each kind of bad file."""
    for index, label in enumerate(["1111", "2222", "3333"]):
        Image.new("RGB", (16, 8), (index * 50, 0, 0)).save(folder / f"{label}.png")
    (folder / "4444_empty.png").write_bytes(b"")
    whole = (folder / "1111.png").read_bytes()
    (folder / "5555_truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "6666_text.png").write_text("this is not an image")
    Image.new("RGB", (32, 8)).save(folder / "7777_wide.png")
    Image.new("RGB", (16, 8)).save(folder / "12_short.png")
    Image.new("RGB", (16, 8)).save(folder / "12ab_letters.png")


@pytest.mark.parametrize(
    "name, message",
    [
        ("4444_empty.png", "Cannot decode image .*4444_empty.png"),
        ("5555_truncated.png", "Cannot decode image .*5555_truncated.png"),
        ("6666_text.png", "Cannot decode image .*6666_text.png"),
        ("7777_wide.png", r"7777_wide.png has size \(8, 32\) \(height, width\); expected \(8, 16\)"),
    ],
)
def test_each_bad_file_is_named_when_strict(tmp_path, name, message):
    for index, label in enumerate(["1111", "2222"]):
        Image.new("RGB", (16, 8), (index, 0, 0)).save(tmp_path / f"{label}.png")
    source = tmp_path / "source"
    source.mkdir()
    _bad_folder(source)
    (tmp_path / name).write_bytes((source / name).read_bytes())
    with pytest.raises(ValueError, match=message):
        dataset.load_labelled_folder(tmp_path, Alphabet(), cache=False)


def test_bad_files_are_skipped_and_counted(tmp_path, monkeypatch):
    _bad_folder(tmp_path)
    for cache in (True, True, False):  # The second load comes from the cache and must report the same skips.
        loaded = dataset.load_labelled_folder(tmp_path, Alphabet(), strict=False, cache=cache)
        assert loaded.labels == ["1111", "2222", "3333"] and loaded.images.shape == (3, 8, 16, 3)
        assert loaded.images[1, 0, 0].tolist() == [50, 0, 0]
        assert sorted(name for name, _ in loaded.skipped) == [
            "12_short.png",
            "12ab_letters.png",
            "4444_empty.png",
            "5555_truncated.png",
            "6666_text.png",
            "7777_wide.png",
        ]
    line = dataset.describe_skipped(loaded, tmp_path)
    assert line.startswith("Skipped 6 files of") and "and 3 more" in line
    # Strict after a lenient load: the problems kept in the cache still stop it.
    (tmp_path / "12_short.png").unlink()
    (tmp_path / "12ab_letters.png").unlink()
    assert len(dataset.load_labelled_folder(tmp_path, Alphabet(), strict=False).skipped) == 4
    monkeypatch.setattr(dataset, "_decode_all", None)  # from the cache, without decoding
    with pytest.raises(ValueError, match="Cannot decode image .*4444_empty.png"):
        dataset.load_labelled_folder(tmp_path, Alphabet())


def test_lenient_size_is_the_most_common_one(tmp_path):
    Image.new("RGB", (32, 8)).save(tmp_path / "0000.png")  # first by name, but the odd one out
    for label in ["1111", "2222"]:
        Image.new("RGB", (16, 8)).save(tmp_path / f"{label}.png")
    loaded = dataset.load_labelled_folder(tmp_path, Alphabet(), strict=False, cache=False)
    assert loaded.labels == ["1111", "2222"] and [name for name, _ in loaded.skipped] == ["0000.png"]


def test_nothing_usable_is_an_error_even_when_lenient(tmp_path):
    (tmp_path / "1111.png").write_bytes(b"")
    (tmp_path / "2222.png").write_text("text")
    with pytest.raises(ValueError, match="No readable labelled images"):
        dataset.load_labelled_folder(tmp_path, Alphabet(), strict=False, cache=False)


def test_palette_images_are_converted(tmp_path):
    palette = Image.new("P", (16, 8))
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.save(tmp_path / "1111.png")
    loaded = dataset.load_labelled_folder(tmp_path, Alphabet(), cache=False)
    assert loaded.images[0, 0, 0].tolist() == [200, 100, 50] and loaded.images[0, 0, 1].tolist() == [0, 0, 0]


def test_lenient_labels_file_naming_missing_images(tmp_path):
    Image.new("RGB", (16, 8)).save(tmp_path / "a.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("a.png 1234\nmissing.png 5678\nbad.png 12\n")
    loaded = dataset.load_labelled_folder(tmp_path, Alphabet(), labels_file=labels, strict=False, cache=False)
    assert loaded.labels == ["1234"]
    assert ("missing.png", "named in the labels file but missing") in loaded.skipped


def test_preview_writes_a_grid_and_refuses_unlabelled_folders(tmp_path, capsys):
    from data import preview

    labelled = tmp_path / "labelled"
    labelled.mkdir()
    for label in ["1111", "2222", "3333"]:
        Image.new("RGB", (32, 16), (200, 0, 0)).save(labelled / f"{label}.png")
    written = preview.main([str(labelled), str(tmp_path / "grid.png"), "--count", "2"])
    assert written == tmp_path / "grid.png" and Image.open(written).size[0] > 100
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    Image.new("RGB", (32, 16)).save(unlabelled / "photo.png")
    for folder in (unlabelled, tmp_path / "absent"):
        with pytest.raises(SystemExit) as exit_info:
            preview.main([str(folder), str(tmp_path / "other.png")])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1
        assert str(folder) in error
    assert not (tmp_path / "other.png").exists()


def test_transparent_images_are_read_as_people_see_them(tmp_path):
    """RGBA, LA and palette transparency go onto white, as in a browser, never onto black."""
    from PIL import Image

    from data.dataset import decode_image

    dark = (20, 20, 20)
    rgba = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (*dark, 255))
    la = Image.new("LA", (4, 2), (0, 0))
    la.putpixel((0, 0), (20, 255))
    palette = Image.new("P", (4, 2), 1)
    palette.putpalette([*dark, 0, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    paths = {}
    for name, image, extra in (("rgba", rgba, {}), ("la", la, {}), ("p", palette, {"transparency": 1})):
        paths[name] = tmp_path / f"{name}.png"
        image.save(paths[name], **extra)
    for name, path in paths.items():
        pixels = decode_image(path)
        assert pixels.shape == (2, 4, 3), name
        assert tuple(pixels[0, 0]) == dark, name  # the opaque ink is kept
        assert (pixels[1] == 255).all(), name  # the transparent background is white, not black
    # Opaque images are left as they are.
    Image.new("RGB", (4, 2), (1, 2, 3)).save(tmp_path / "rgb.png")
    assert (decode_image(tmp_path / "rgb.png") == (1, 2, 3)).all()
