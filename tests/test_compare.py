"""compare.py: the same data and budget for every model, one table and one plot."""

import csv

import compare
import models


def test_compare_two_models(labelled_folder, tmp_path):
    images, labels, alphabet = labelled_folder
    result = compare.main(
        ["--models", "fourblock_tiny,crnn_ctc_tiny", "--epochs", "2", "--time-limit", "600"]
        + ["--output-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]
        + ["--data", str(images), "--labels", str(labels), "--split", "0.6,0.2,0.2"]
        + ["--alphabet", alphabet.characters, "--length", "3", "--batch-size", "8"]
    )
    with open(result["csv"], newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["model"] for row in rows] == ["fourblock_tiny", "crnn_ctc_tiny"]
    for row in rows:
        expected = models.get_model(row["model"], alphabet=alphabet, image_size=(32, 72)).count_params()
        assert int(row["parameters"]) == expected
        assert row["epochs"] == "2" and row["scored on"] == "test"
        assert 0 <= float(row["whole"]) <= float(row["mean"]) <= 1  # all right implies each position right
        assert float(row["MB"]) > 0
    markdown = result["markdown"].read_text()
    assert "| fourblock_tiny |" in markdown and "position 2" in markdown
    assert result["plot"].stat().st_size > 1000
