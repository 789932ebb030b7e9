import json
import math
import shutil

import numpy as np
import pytest
from cli_helpers import refused

import train
from core.alphabet import Alphabet
from data.dataset import load_labelled_folder
from data.generate import read_manifest
from data.labels import list_image_files
from models.io import load_model
from training.callbacks import EpochReport
from training.history import read_history
from training.optimizer import make_optimizer
from training.recipe import Recipe
from training.run import best_so_far, build_objective

# Keras's steps run eagerly: the same numbers, without tracing them anew for every tiny run.
pytestmark = pytest.mark.usefixtures("eager_functions")


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
    with refused(capsys, "already exists"):
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


def test_bad_options_are_refused(tmp_path, capsys):
    with refused(capsys, r"must end in \.keras"):
        train.main(["--output", str(tmp_path / "model.h5")])


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


def restored_objective(tmp_path, recipe, steps_per_epoch):
    """The objective of an interrupted run, as `--resume` rebuilds it."""
    objective = build_objective(recipe, load_model(tmp_path / "run.last.keras"), steps_per_epoch)
    objective.optimizer.build(objective.trainable_variables)
    objective.load_weights(tmp_path / "run.last.weights.h5")
    return objective


@pytest.mark.slow  # 9 s and more; test_training's checkpoint tests cover --resume's state in the default run.
@pytest.mark.parametrize("model", ["cellnet_tiny", "crnn_ctc_tiny"])
def test_ctrl_c_keeps_the_best_model_and_resume_continues(captcha_folders, tmp_path, monkeypatch, capsys, model):
    train_dir, val_dir = captcha_folders
    output = tmp_path / "run.keras"
    state = tmp_path / "run.last.json"
    begin, batch_end = EpochReport.on_epoch_begin, EpochReport.on_train_batch_end

    def remember_epoch(self, epoch, logs=None):
        self.current_epoch = epoch
        begin(self, epoch, logs)

    def ctrl_c_in_second_epoch(self, batch, logs=None):
        if self.current_epoch == 1 and batch == 1:
            raise KeyboardInterrupt
        batch_end(self, batch, logs)

    options = [*_fast_options(train_dir, val_dir, output), "--model", model]
    with monkeypatch.context() as patch:
        patch.setattr(EpochReport, "on_epoch_begin", remember_epoch)
        patch.setattr(EpochReport, "on_train_batch_end", ctrl_c_in_second_epoch)
        summary = train.main(options)
    assert "Interrupted" in capsys.readouterr().out
    assert summary["interrupted"] is True and summary["best_epoch"] == 1 and summary["epochs_run"] == 1
    assert train.exit_status(summary) == 130
    assert json.loads(state.read_text())["finished"] is False
    # 24 images in batches of 8: the checkpoint holds the 3 steps of epoch 1, not the 2 of the interrupted epoch.
    recipe = Recipe.from_dict(json.loads(state.read_text())["recipe"])
    objective = restored_objective(tmp_path, recipe, steps_per_epoch=3)
    assert int(objective.optimizer.iterations.numpy()) == 3
    images = load_labelled_folder(val_dir, Alphabet()).images[:4]
    np.testing.assert_allclose(
        load_model(output).predict(images, verbose=0), objective.model.predict(images, verbose=0), rtol=1e-5, atol=1e-6
    )
    # The learning-rate schedule is the 9-step one of the run, at step 3.
    expected = make_optimizer(recipe.learning_rate, total_steps=9)._learning_rate
    assert objective.optimizer._learning_rate.get_config() == expected.get_config()
    assert float(objective.optimizer.learning_rate) == pytest.approx(float(expected(3)))

    with refused(capsys, "--resume"):
        train.main(options)
    summary = train.main(["--output", str(output), "--resume", "--quiet"])  # the other options come from the state
    assert "Resuming" in capsys.readouterr().out
    assert summary["resumed_after_epoch"] == 1 and summary["epochs_run"] == 3 and train.exit_status(summary) == 0
    assert read_history(tmp_path / "run.history.csv")["epoch"] == [1.0, 2.0, 3.0]
    assert (tmp_path / "run.history.csv").read_text().splitlines()[1].startswith("1,")  # epochs from 1 in the file
    assert int(restored_objective(tmp_path, recipe, 3).optimizer.iterations.numpy()) == 9
    assert json.loads(state.read_text())["finished"] is True
    with refused(capsys, "finished"):
        train.main(["--output", str(output), "--resume"])


def test_ctrl_c_before_the_first_epoch_ends_exits_130(captcha_folders, tmp_path, monkeypatch):
    def ctrl_c(self, batch, logs=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochReport, "on_train_batch_end", ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        train.main(_fast_options(*captcha_folders, tmp_path / "m.keras"))
    assert stopped.value.code == 130 and not (tmp_path / "m.keras").exists()


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    with refused(capsys, "nothing to resume"):
        train.main(["--output", str(tmp_path / "never_trained.keras"), "--resume"])


def test_best_so_far_drops_rows_after_the_checkpoint(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("epoch,loss,val_mean_accuracy\n1,2.0,0.1\n2,1.5,0.4\n3,1.2,0.3\n4,1.0,0.9\n")
    assert best_so_far(history, 3, ["val_mean_accuracy"]) == (0.4, 2)
    assert history.read_text().splitlines()[-1] == "3,1.2,0.3"
    assert best_so_far(tmp_path / "absent.csv", 3, ["val_mean_accuracy"]) == (-math.inf, None)


def test_config_file_with_command_line_overrides(captcha_folders, tmp_path, capsys):
    train_dir, val_dir = captcha_folders
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps({"comment": "a test", "model": "shawon_tiny", "epochs": 3, "batch_size": 8}))
    output = tmp_path / "m.keras"
    arguments = ["--config", str(config), "--epochs", "1", "--train-dir", str(train_dir), "--val-dir", str(val_dir)]
    summary = train.main([*arguments, "--quiet", "--output", str(output)])
    assert summary["options"]["model"] == "shawon_tiny" and summary["options"]["batch_size"] == 8
    assert summary["epochs_run"] == 1  # the command line wins
    config.write_text(json.dumps({"epoch": 3}))
    with refused(capsys, r"unknown options \['epoch'\]"):
        train.main(["--config", str(config)])


def test_help_answers_without_tensorflow():
    """`--help` lists the options without loading TensorFlow, and hides the tiny test models."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "train.py", "--help"], capture_output=True, text=True, check=True
    )
    assert "--fresh-images" in result.stdout and "_tiny" not in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "keras")]


def test_folders_that_cannot_work_are_named(captcha_folders, tmp_path, capsys):
    empty = tmp_path / "my_images"
    empty.mkdir()
    with refused(capsys, "my_images holds no images.*python -m data.generate"):
        train.main(_fast_options(empty, captcha_folders[1], tmp_path / "m.keras"))
    assert list(empty.iterdir()) == []  # nothing was generated into it
    (tmp_path / "a_file").write_text("")
    with refused(capsys, "a_file is a file, not a folder"):
        train.main(_fast_options(*captcha_folders, tmp_path / "a_file" / "m.keras"))
    with refused(capsys, "Unknown model 'no_such_model'"):
        train.main([*_fast_options(*captcha_folders, tmp_path / "m.keras"), "--model", "no_such_model"])


def test_skip_bad_images(captcha_folders, tmp_path, capsys):
    train_dir, val_dir = tmp_path / "train", tmp_path / "val"
    shutil.copytree(captcha_folders[0], train_dir)
    shutil.copytree(captcha_folders[1], val_dir)
    (train_dir / "1234_broken.png").write_bytes(b"")
    options = _fast_options(train_dir, val_dir, tmp_path / "m.keras", epochs=1)
    with refused(capsys, "1234_broken.png.*--skip-bad"):
        train.main(options)
    summary = train.main([*options, "--skip-bad"])
    assert "Skipped 1 files" in capsys.readouterr().out and summary["train_images"] == 24
