"""Train, evaluate and predict on one labelled folder of any size and alphabet, with a recorded split."""

import csv
import json
import shutil

import pytest
from cli_helpers import refused

import evaluate
import predict
import train
from data.split import read_split
from models.io import load_model, model_alphabet


@pytest.mark.parametrize("model", ["fourblock_tiny", pytest.param("crnn_ctc_tiny", marks=pytest.mark.slow)])
def test_train_evaluate_and_predict_on_a_split_folder(labelled_folder, tmp_path, capsys, model, eager_functions):
    images, labels, alphabet = labelled_folder
    output = tmp_path / "run" / "model.keras"
    arguments = ["--data", str(images), "--labels", str(labels), "--split", "0.6,0.2,0.2", "--split-seed", "3"]
    arguments += ["--alphabet", alphabet.characters, "--length", "3", "--model", model]
    summary = train.main([*arguments, "--epochs", "1", "--batch-size", "8", "--quiet", "--output", str(output)])
    assert (summary["train_images"], summary["val_images"], summary["test_images"]) == (18, 6, 6)
    assert summary["image_size"] == [32, 72] and summary["alphabet"] == alphabet.get_config()
    assert len(summary["test"]["position_accuracies"]) == 3
    # The alphabet and the input size travel inside the model file.
    loaded = load_model(output)
    assert model_alphabet(loaded) == alphabet and loaded.input_shape == (None, 32, 72, 3)
    split = read_split(tmp_path / "run" / "model.split.csv")
    assert not set(split["train"]) & set(split["test"]) and len(split["test"]) == 6
    assert json.loads((tmp_path / "run" / "model.json").read_text())["split_file"].endswith("model.split.csv")

    capsys.readouterr()
    result = evaluate.main(
        [
            str(output),
            "--data",
            str(images),
            "--labels",
            str(labels),
            "--split-file",
            str(tmp_path / "run" / "model.split.csv"),
        ]
        + ["--threshold", "0", "--json"]
    )
    assert result["images"] == 6
    assert result["position_accuracies"] == summary["test"]["position_accuracies"]
    assert result["whole_accuracy"] == summary["test"]["whole_accuracy"]
    # An image the labels file does not list is counted and named, by evaluate (split or not) and by train.py.
    extra = tmp_path / "with_extra"
    shutil.copytree(images, extra)
    shutil.copy(next(images.iterdir()), extra / "unlisted.png")
    split_file = str(tmp_path / "run" / "model.split.csv")
    capsys.readouterr()
    counted = evaluate.main([str(output), "--data", str(extra), "--labels", str(labels), "--split-file", split_file])
    assert counted["skipped"] == 1 and "unlisted.png: not listed in labels.txt" in capsys.readouterr().err
    again = ["--data", str(extra), "--labels", str(labels), "--split-file", split_file, "--alphabet"]
    again += [alphabet.characters, "--length", "3", "--model", model, "--epochs", "1", "--quiet"]
    train.main([*again, "--output", str(tmp_path / "again" / "model.keras")])
    assert capsys.readouterr().out.count("Skipped 1 files") == 1
    # Not the course's data: no verdict (and exit status 0) unless --threshold asks for one.
    capsys.readouterr()
    plain = evaluate.main([str(output), "--data", str(images), "--labels", str(labels)])
    printed = capsys.readouterr().out
    assert plain["passed"] is None and plain["threshold"] is None and "PASS" not in printed and "FAIL" not in printed
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(output), "--data", str(images), "--labels", str(labels), "--alphabet", "digits"])
    assert exit_info.value.code == 2 and "Received: Alphabet" in capsys.readouterr().err

    predictions = predict.main([str(images), "--model", str(output), "--output", str(tmp_path / "predictions.csv")])
    with open(predictions, newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 30 and rows[0].keys() == {"filename", "prediction", "confidence"}
    for row in rows:
        assert set(row["prediction"]) <= set(alphabet.characters) and len(row["prediction"]) <= 3
        assert 0.0 <= float(row["confidence"]) <= 1.0


def test_split_options_are_checked(labelled_folder, tmp_path, capsys):
    images, labels, alphabet = labelled_folder
    arguments = ["--data", str(images), "--labels", str(labels), "--alphabet", alphabet.characters, "--length", "3"]
    with refused(capsys, "Received: split='0.5,0.1'"):
        train.main([*arguments, "--split", "0.5,0.1", "--output", str(tmp_path / "m.keras")])
    with refused(capsys, "has 3 characters; expected 4"):
        train.main([*arguments[:-1], "4", "--output", str(tmp_path / "m.keras")])
