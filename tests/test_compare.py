"""bench.compare: the same data and budget for every model, one table and one plot."""

import csv

import pytest

import models
from bench import compare


def test_compare_two_models(labelled_folder, tmp_path, eager_functions):
    images, labels, alphabet = labelled_folder
    result = compare.main(
        ["--models", "fourblock_tiny,shawon_tiny", "--epochs", "1", "--time-limit", "600"]
        + ["--output-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]
        + ["--data", str(images), "--labels", str(labels), "--split", "0.6,0.2,0.2"]
        + ["--alphabet", alphabet.characters, "--length", "3", "--batch-size", "8"]
    )
    with open(result["csv"], newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["model"] for row in rows] == ["fourblock_tiny", "shawon_tiny"]
    for row in rows:
        expected = models.get_model(row["model"], alphabet=alphabet, image_size=(32, 72)).count_params()
        assert int(row["parameters"]) == expected
        assert row["epochs"] == "1" and row["scored on"] == "test"
        assert 0 <= float(row["whole"]) <= float(row["mean"]) <= 1  # all right implies each position right
        assert float(row["MB"]) > 0
    markdown = result["markdown"].read_text()
    assert "| fourblock_tiny |" in markdown and "position 2" in markdown
    assert result["plot"].stat().st_size > 1000


def test_consensus_misreads_finds_images_every_model_reads_alike_but_not_as_labelled():
    from bench.consensus_misreads import consensus_misreads

    labels = ["1111", "2222", "3333", "4444"]
    readings = {"a": ["1111", "2722", "3338", "9444"], "b": ["1111", "2722", "3333", "9445"]}
    found = consensus_misreads(readings, labels)
    assert found == {"all_wrong": [1, 3], "agreeing": [1]}
    with pytest.raises(ValueError, match="Model b read 3 images; there are 4 labels"):
        consensus_misreads({"a": readings["a"], "b": readings["b"][:3]}, labels)
