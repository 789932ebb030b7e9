import multicolorcaptcha._generator as multicolor_module
import numpy as np
import pytest

import data.generate as generate
from data.labels import label_from_filename, list_image_files


def _contents(folder):
    return {path.name: path.read_bytes() for path in list_image_files(folder)}


def test_count_unique_names_and_valid_images(captcha_folders):
    train, _ = captcha_folders
    files = list_image_files(train)
    assert len(files) == 24
    assert len({path.name for path in files}) == 24
    for path in files:
        label = label_from_filename(path)
        assert len(label) == 4 and label.isdigit()
    image, label = generate.make_captcha("test/train", 0)
    assert image.size == (256, 144) and image.mode == "RGB"
    assert (train / f"{label}_000000.png").is_file()


def test_reproducible_whatever_the_workers(tmp_path, captcha_folders):
    train, _ = captcha_folders
    again = generate.generate_folder(tmp_path / "again", 24, seed="test/train", workers=2, progress=False)
    assert _contents(again) == _contents(train)
    other = generate.generate_folder(tmp_path / "other", 24, seed="another", workers=1, progress=False)
    assert _contents(other) != _contents(train)


def test_independent_of_font_directory_order(monkeypatch):
    generate._generator = None
    first, _ = generate.make_captcha("fonts", 3)
    real_walk = multicolor_module.walk
    monkeypatch.setattr(
        multicolor_module,
        "walk",
        lambda *a, **k: [(root, dirs, files[::-1]) for root, dirs, files in real_walk(*a, **k)][::-1],
    )
    generate._generator = None
    second, _ = generate.make_captcha("fonts", 3)
    generate._generator = None
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))


def test_refuses_to_overwrite_then_force_and_resume(tmp_path):
    folder = generate.generate_folder(tmp_path / "set", 6, seed=1, workers=1, progress=False)
    before = _contents(folder)
    with pytest.raises(FileExistsError, match="--force"):
        generate.generate_folder(folder, 6, seed=2, workers=1, progress=False)
    assert _contents(folder) == before
    # An interrupted run: two images lost, the manifest says incomplete.
    for path in list_image_files(folder)[:2]:
        path.unlink()
    generate._write_manifest(folder, {**generate._read_manifest(folder), "complete": False})
    generate.generate_folder(folder, 6, seed=1, workers=1, progress=False, resume=True)
    assert _contents(folder) == before
    generate.generate_folder(folder, 3, seed=2, workers=1, progress=False, force=True)
    assert len(list_image_files(folder)) == 3


def test_cli_error_for_existing_folder(tmp_path, capsys):
    generate.generate_folder(tmp_path / "t", 2, seed=0, workers=1, progress=False)
    with pytest.raises(SystemExit) as exit_info:
        generate.main(
            [
                "--train-dir",
                str(tmp_path / "t"),
                "--val-dir",
                str(tmp_path / "v"),
                "--train-count",
                "2",
                "--val-count",
                "2",
                "--workers",
                "1",
            ]
        )
    assert exit_info.value.code == 2
    assert "already holds 2 images" in capsys.readouterr().err
