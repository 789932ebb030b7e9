"""predict.py on image files, folders of them and a mix; every bad path is one error line naming it."""

import csv

import numpy as np
import pytest
from PIL import Image

import predict
from models.io import save_model


@pytest.fixture(scope="module")
def zeros_model(tmp_path_factory):
    """A model that reads 0000 in any image, with a confidence close to 1."""
    from conftest import build_constant_reader

    return save_model(build_constant_reader("0000"), tmp_path_factory.mktemp("models") / "zeros.keras")


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_files_folders_and_a_mix(captcha_folders, zeros_model, tmp_path, capsys):
    _, val_dir = captcha_folders
    images = sorted(val_dir.glob("*.png"))
    output = tmp_path / "one.csv"
    assert predict.main([str(images[0]), "--model", str(zeros_model), "--output", str(output)]) == output
    rows = read_rows(output)
    assert [row["filename"] for row in rows] == [images[0].name]
    assert rows[0]["prediction"] == "0000" and float(rows[0]["confidence"]) == pytest.approx(1.0, abs=1e-4)
    assert "1 predictions written to" in capsys.readouterr().out

    # A folder stands for its images in name order; another size is resized to the model's input.
    small = tmp_path / "small.png"
    Image.fromarray(np.full((60, 160, 3), 200, np.uint8)).save(small)
    mixed = tmp_path / "mixed.csv"
    predict.main([str(val_dir), str(small), "--model", str(zeros_model), "--output", str(mixed), "--batch-size", "5"])
    rows = read_rows(mixed)
    assert [row["filename"] for row in rows] == [path.name for path in images] + ["small.png"]
    assert {row["prediction"] for row in rows} == {"0000"}


def test_a_real_model_reads_what_the_reader_reads(captcha_folders, tmp_path):
    import models
    from data.dataset import decode_image
    from models.reader import load_reader

    _, val_dir = captcha_folders
    path = save_model(models.get_model("cellnet_tiny"), tmp_path / "tiny.keras")
    output = predict.main(
        [str(val_dir), "--model", str(path), "--output", str(tmp_path / "p.csv"), "--batch-size", "4"]
    )
    files = sorted(val_dir.glob("*.png"))
    readings = load_reader(path).read(np.stack([decode_image(file) for file in files]))
    rows = read_rows(output)
    assert [row["prediction"] for row in rows] == [reading.text for reading in readings]
    np.testing.assert_allclose([float(row["confidence"]) for row in rows], [r.confidence for r in readings], atol=1e-5)


def test_bad_paths_are_one_error_line(captcha_folders, zeros_model, tmp_path, capsys):
    _, val_dir = captcha_folders
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    cases = [
        ([str(tmp_path / "absent.png")], "No such image file or folder: " + str(tmp_path / "absent.png")),
        ([str(notes)], f"{notes} is not an image file"),
        ([str(empty)], f"No images found in {empty}"),
        ([str(broken)], f"Cannot decode image {broken}"),
        ([str(val_dir), "--model", str(tmp_path / "absent.keras")], "python train.py"),
        ([str(val_dir), "--output", str(notes / "out.csv")], f"cannot write {notes / 'out.csv'}"),
    ]
    for arguments, message in cases:
        if "--model" not in arguments:
            arguments = [*arguments, "--model", str(zeros_model)]
        with pytest.raises(SystemExit) as exit_info:
            predict.main(arguments)
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1, error
        assert message in error
