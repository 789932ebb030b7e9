import json
import math
import shutil

import numpy as np
import pytest

import models
import train
from core.alphabet import Alphabet
from data.dataset import load_labelled_folder
from data.generate import read_manifest
from data.labels import list_image_files
from models.io import load_model
from models.training import compile_model
from training.history import read_history


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
    # The validation folder was left half-made by an interrupted generation: train.py finishes it.
    complete = {path.name: path.read_bytes() for path in list_image_files(val_dir)}
    for path in list_image_files(val_dir)[-3:]:
        path.unlink()
    manifest = read_manifest(val_dir)
    (val_dir / "dataset.json").write_text(json.dumps({**manifest, "complete": False}))
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
    printed = capsys.readouterr().out
    assert "has no images: generating 16 CAPTCHAs" in printed and "left half-generated" in printed
    assert len(list_image_files(train_dir)) == 16
    assert {path.name: path.read_bytes() for path in list_image_files(val_dir)} == complete
    assert read_manifest(val_dir)["complete"] is True


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"must end in \.keras"):
        train.main(["--output", str(tmp_path / "model.h5")])
    with pytest.raises(SystemExit):
        train.main(["--model", "no_such_model"])


def _fast_options(train_dir, val_dir, output, epochs=3):
    return [
        "--model",
        "cellnet_tiny",
        "--epochs",
        str(epochs),
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


def test_ctrl_c_keeps_the_best_model_and_resume_continues(captcha_folders, tmp_path, monkeypatch, capsys):
    train_dir, val_dir = captcha_folders
    output = tmp_path / "run.keras"
    last, state = tmp_path / "run.last.keras", tmp_path / "run.last.json"
    begin, batch_end = train.EpochReport.on_epoch_begin, train.EpochReport.on_train_batch_end

    def remember_epoch(self, epoch, logs=None):
        self.current_epoch = epoch
        begin(self, epoch, logs)

    def ctrl_c_in_second_epoch(self, batch, logs=None):
        if self.current_epoch == 1 and batch == 1:
            raise KeyboardInterrupt
        batch_end(self, batch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(train.EpochReport, "on_epoch_begin", remember_epoch)
        patch.setattr(train.EpochReport, "on_train_batch_end", ctrl_c_in_second_epoch)
        summary = train.main(_fast_options(train_dir, val_dir, output))
    assert "Interrupted" in capsys.readouterr().out
    assert summary["interrupted"] is True and summary["best_epoch"] == 1 and summary["epochs_run"] == 1
    assert json.loads(state.read_text())["finished"] is False
    # 24 images in batches of 8: the checkpoint holds the 3 steps of epoch 1, not the 2 of the interrupted epoch.
    checkpoint = load_model(last, compile=True)
    assert int(checkpoint.optimizer.iterations.numpy()) == 3
    images = load_labelled_folder(val_dir, Alphabet()).images[:4]
    np.testing.assert_allclose(
        load_model(output).predict(images, verbose=0), checkpoint.predict(images, verbose=0), rtol=1e-5, atol=1e-6
    )
    # The learning-rate schedule is the 9-step one of the run, at step 3.
    expected = compile_model(models.get_model("cellnet_tiny"), 4, 3e-3, total_steps=9).optimizer._learning_rate
    assert checkpoint.optimizer._learning_rate.get_config() == expected.get_config()
    assert float(checkpoint.optimizer.learning_rate) == pytest.approx(float(expected(3)))

    with pytest.raises(SystemExit, match="--resume"):
        train.main(_fast_options(train_dir, val_dir, output))
    summary = train.main(["--output", str(output), "--resume", "--quiet"])  # the other options come from the state
    assert "Resuming" in capsys.readouterr().out
    assert summary["resumed_after_epoch"] == 1 and summary["epochs_run"] == 3
    assert read_history(tmp_path / "run.history.csv")["epoch"] == [1.0, 2.0, 3.0]
    assert int(load_model(last, compile=True).optimizer.iterations.numpy()) == 9
    assert json.loads(state.read_text())["finished"] is True
    with pytest.raises(SystemExit, match="finished"):
        train.main(["--output", str(output), "--resume"])


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="nothing to resume"):
        train.main(["--output", str(tmp_path / "never_trained.keras"), "--resume"])


def test_truncate_history_drops_rows_after_the_checkpoint(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("epoch,loss,val_mean_accuracy\n0,2.0,0.1\n1,1.5,0.4\n2,1.2,0.3\n3,1.0,0.9\n")
    assert train.truncate_history(history, 3) == (0.4, 2)
    assert history.read_text().splitlines()[-1] == "2,1.2,0.3"
    assert train.truncate_history(tmp_path / "absent.csv", 3) == (-math.inf, None)


def test_skip_bad_images(captcha_folders, tmp_path, capsys):
    train_dir, val_dir = tmp_path / "train", tmp_path / "val"
    shutil.copytree(captcha_folders[0], train_dir)
    shutil.copytree(captcha_folders[1], val_dir)
    (train_dir / "1234_broken.png").write_bytes(b"")
    options = _fast_options(train_dir, val_dir, tmp_path / "m.keras", epochs=1)
    with pytest.raises(SystemExit, match="1234_broken.png.*--skip-bad"):
        train.main(options)
    summary = train.main([*options, "--skip-bad"])
    assert "Skipped 1 files" in capsys.readouterr().out and summary["train_images"] == 24
