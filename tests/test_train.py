import json
import shutil

import pytest

import train
from data.labels import list_image_files
from models.io import load_model


def test_train_end_to_end(captcha_folders, tmp_path, capsys):
    train_dir, val_dir = captcha_folders
    output = tmp_path / "run" / "tiny.keras"
    summary = train.main(
        [
            "--model",
            "cellnet_tiny",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--quiet",
            "--train-dir",
            str(train_dir),
            "--val-dir",
            str(val_dir),
            "--output",
            str(output),
        ]
    )
    printed = capsys.readouterr().out
    assert "Epoch 2/2" in printed and "validation accuracy of digit 3" in printed
    assert output.is_file() and load_model(output).output_shape == (None, 4, 10)
    for suffix in (".history.csv", ".curves.png", ".json"):
        assert (tmp_path / "run" / f"tiny{suffix}").is_file()
    saved = json.loads((tmp_path / "run" / "tiny.json").read_text())
    assert saved["options"]["model"] == "cellnet_tiny" and saved["epochs_run"] == 2
    assert len(saved["validation"]["position_accuracies"]) == 4
    assert 1 <= saved["best_epoch"] <= 2
    assert summary["validation"] == saved["validation"]

    # A model the user made is never replaced without --force.
    before = output.read_bytes()
    with pytest.raises(SystemExit, match="already exists"):
        train.main(
            [
                "--model",
                "cellnet_tiny",
                "--epochs",
                "1",
                "--train-dir",
                str(train_dir),
                "--val-dir",
                str(val_dir),
                "--output",
                str(output),
            ]
        )
    assert output.read_bytes() == before


def test_train_generates_missing_folders(captcha_folders, tmp_path, capsys):
    train_dir, val_dir = tmp_path / "capts_train", tmp_path / "capts_val"
    shutil.copytree(captcha_folders[1], val_dir)
    train.main(
        [
            "--model",
            "shawon_tiny",
            "--epochs",
            "1",
            "--quiet",
            "--train-count",
            "16",
            "--train-dir",
            str(train_dir),
            "--val-dir",
            str(val_dir),
            "--output",
            str(tmp_path / "m.keras"),
        ]
    )
    assert "has no images: generating 16 CAPTCHAs" in capsys.readouterr().out
    assert len(list_image_files(train_dir)) == 16


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"must end in \.keras"):
        train.main(["--output", str(tmp_path / "model.h5")])
    with pytest.raises(SystemExit):
        train.main(["--model", "no_such_model"])
