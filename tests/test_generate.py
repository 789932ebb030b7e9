import io
import subprocess
import sys
import time
from pathlib import Path

import multicolorcaptcha._generator as multicolor_module
import numpy as np
import pytest
from PIL import Image

import data.generate as generate
from core import multicolor
from core.alphabet import IMAGECAPTCHA58, Alphabet
from data.labels import kit_filename, label_from_filename, list_image_files

REPOSITORY = Path(__file__).resolve().parent.parent


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
    generate._write_manifest(folder, {**generate.read_manifest(folder), "complete": False})
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


def test_killed_generation_resumes_to_the_same_images(tmp_path):
    train_dir, val_dir = tmp_path / "train", tmp_path / "val"
    command = [
        sys.executable,
        "-m",
        "data.generate",
        "--train-dir",
        str(train_dir),
        "--val-dir",
        str(val_dir),
        "--train-count",
        "400",
        "--val-count",
        "2",
        "--workers",
        "1",
        "--seed",
        "5",
    ]
    process = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while (not train_dir.is_dir() or len(list_image_files(train_dir)) < 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    written = len(list_image_files(train_dir))
    assert 5 <= written < 400, "the run was not stopped half-way"
    assert generate.read_manifest(train_dir)["complete"] is False
    (train_dir / ".0000_000999.tmp123.png").write_bytes(b"half")  # what a kill during a write leaves

    # Without --resume nothing is touched, and the error says how to go on.
    with pytest.raises(SystemExit):
        generate.main(command[3:])
    assert len(list_image_files(train_dir)) == written

    generate.generate_folder(train_dir, 400, seed="5/train", workers=2, resume=True, progress=False)
    files = list_image_files(train_dir)
    assert len(files) == 400 and generate.read_manifest(train_dir)["complete"] is True
    assert not list(train_dir.glob(".*.tmp*"))
    for index in (0, written - 1, written, 399):  # before, at and after the interruption
        image, label = generate.make_captcha("5/train", index)
        expected = io.BytesIO()
        image.save(expected, format="PNG")
        assert (train_dir / kit_filename(label, index)).read_bytes() == expected.getvalue()


def test_imagecaptcha_is_reproducible_by_seed():
    generator = generate.get_generator("imagecaptcha", width=100, height=40, alphabet=Alphabet("abcXYZ", 5))
    first, label = generate.make_captcha("ic", 7, generator)
    again, label_again = generate.make_captcha("ic", 7, generator)
    other, _ = generate.make_captcha("ic", 8, generator)
    assert first.size == (100, 40) and first.mode == "RGB"
    assert len(label) == 5 and set(label) <= set("abcXYZ") and label == label_again
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()
    # The library's `secrets` is restored after each image.
    import secrets

    import captcha.image

    assert captcha.image.secrets is secrets


def test_notebook_preset_and_byte_identical_folders(tmp_path):
    arguments = ["--preset", "notebook", "--train-count", "3", "--val-count", "2", "--test-count", "2"]
    arguments += ["--workers", "1", "--train-dir", str(tmp_path / "a_train"), "--val-dir", str(tmp_path / "a_val")]
    written = generate.main([*arguments, "--test-dir", str(tmp_path / "a_test")])
    assert [len(list_image_files(folder)) for folder in written] == [3, 2, 2]
    for path in list_image_files(written[0]):
        label = label_from_filename(path)
        assert len(label) == 4 and set(label) <= set(IMAGECAPTCHA58)
        with Image.open(path) as image:
            assert image.size == (160, 60)
    manifest = generate.read_manifest(written[0])
    assert manifest["generator"].startswith("captcha==") and manifest["alphabet"] == IMAGECAPTCHA58
    # Another run with the same seed, on two processes, writes the same bytes.
    again = generate.generate_folder(
        tmp_path / "again",
        3,
        seed="0/train",
        workers=2,
        progress=False,
        generator=generate.get_generator("imagecaptcha", alphabet=Alphabet(IMAGECAPTCHA58, 4)),
    )
    assert _contents(again) == _contents(written[0])


def test_generator_options_are_checked():
    with pytest.raises(ValueError, match="Unknown generator 'nope'"):
        generate.get_generator("nope")
    with pytest.raises(ValueError, match="256x144"):
        generate.get_generator("multicolorcaptcha", width=100)
    with pytest.raises(ValueError, match="four digits"):
        generate.get_generator("multicolorcaptcha", alphabet=Alphabet("ab", 4))


def test_hard_font_weight_draws_the_hard_fonts_more_often():
    uniform = generate.get_generator("multicolorcaptcha")
    weighted = generate.get_generator("multicolorcaptcha", hard_font_weight=3)
    fonts = generate._multicolor_generator().l_fonts
    # Each hard font is listed three times, every other font once; the library's own list is left alone.
    assert len(weighted.fonts) == len(fonts) + 2 * len(multicolor.HARD_FONTS)
    names = [generate.font_name(font) for font in weighted.fonts]
    assert all(names.count(font) == 3 for font in multicolor.HARD_FONTS)
    assert names.count("freefont-20120503/FreeSans.ttf") == 1
    assert weighted.settings()["hard_font_weight"] == 3 and "hard_font_weight" not in uniform.settings()

    # A weighted draw swaps the font list in and back: uniform draws before and after it are identical.
    image, label = uniform.draw("weights/0")
    weighted.draw("weights/0")
    assert generate._multicolor_generator().l_fonts == fonts
    again, again_label = uniform.draw("weights/0")
    assert label == again_label and np.array_equal(np.asarray(image), np.asarray(again))


def test_hard_font_weight_is_checked():
    for bad in (0, 1.5, -2):
        with pytest.raises(ValueError, match="hard_font_weight"):
            generate.get_generator("multicolorcaptcha", hard_font_weight=bad)
