"""Label corrections and the label audit (`python -m data.audit`)."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import refused

from core.alphabet import Alphabet
from data import audit
from data.dataset import load_labelled_folder
from data.labels import read_corrections


def labelled_copy(source, folder, flipped=()):
    """`source`'s images in `folder` with a labels file; the labels of the files in `flipped` are wrong."""
    folder.mkdir()
    lines = []
    for path in sorted(source.iterdir()):
        if path.suffix == ".png":
            shutil.copy(path, folder / path.name)
            label = path.name.split("_")[0]
            if path.name in flipped:
                label = label[::-1] if label != label[::-1] else str((int(label) + 1111) % 10000).zfill(4)
            lines.append(f"{path.name} {label}\n")
    labels = folder.parent / f"{folder.name}.labels.txt"
    labels.write_text("".join(lines))
    return labels


def test_corrections_replace_the_wrong_labels_they_name_and_refuse_other_labels(captcha_folders, tmp_path):
    _, val_dir = captcha_folders
    names = sorted(path.name for path in val_dir.glob("*.png"))
    labels = labelled_copy(val_dir, tmp_path / "images", flipped=names[:1])
    wrong = dict(line.split() for line in labels.read_text().splitlines())[names[0]]
    right = names[0].split("_")[0]
    corrections = tmp_path / "corrections.txt"
    corrections.write_text(f"# confirmed by eye\n{names[0]} {wrong} {right}\nnot_in_this_folder.png 1234 4321\n")
    loaded = load_labelled_folder(tmp_path / "images", Alphabet(), labels_file=labels, corrections=corrections)
    assert dict(zip(loaded.filenames, loaded.labels))[names[0]] == right
    assert loaded.codes[loaded.filenames.index(names[0])].tolist() == [int(digit) for digit in right]
    corrections.write_text(f"{names[1]} 0000 1111\n")  # Its label is not 0000: these are other labels.
    with pytest.raises(ValueError, match=f"{names[1]} is labelled .*, not '0000'"):
        load_labelled_folder(tmp_path / "images", Alphabet(), labels_file=labels, corrections=corrections)
    corrections.write_text("a.png 1234\n")
    with pytest.raises(ValueError, match=r"corrections.txt:1: expected 'FILENAME WRONG RIGHT'"):
        read_corrections(corrections)


def test_candidates_are_the_confident_disagreements_most_confident_first():
    readings = [
        {"filename": "a.png", "label": "1234", "reading": "1234", "confidence": 0.99, "fold": 0},
        {"filename": "b.png", "label": "1234", "reading": "1284", "confidence": 0.70, "fold": 1},
        {"filename": "c.png", "label": "5555", "reading": "5556", "confidence": 0.95, "fold": 0},
        {"filename": "d.png", "label": "5555", "reading": "0555", "confidence": 0.30, "fold": 1},
    ]
    assert [row["filename"] for row in audit.rank_candidates(readings, 0.5)] == ["c.png", "b.png"]
    parts = audit.fold_parts([f"{index}.png" for index in range(11)], 3, seed=0)
    assert sorted(len(part) for part in parts) == [3, 4, 4]
    assert sorted(name for part in parts for name in part) == sorted(f"{index}.png" for index in range(11))
    split = audit.fold_split(parts, 1, seed=0)
    assert split["test"] == parts[1] and not set(split["train"]) & set(parts[1]) and split["val"]


@pytest.mark.slow  # 12 s: two models trained; the ranking and the folds are checked above.
def test_the_audit_reads_every_image_with_a_model_that_never_saw_it_and_keeps_finished_folds(
    captcha_folders, tmp_path, capsys
):
    train_dir, _ = captcha_folders
    labels = labelled_copy(train_dir, tmp_path / "images")
    arguments = [str(tmp_path / "images"), "--labels", str(labels), "--output-dir", str(tmp_path / "audit"),
                 "--model", "cellnet_tiny", "--folds", "2", "--epochs", "1", "--batch-size", "8",
                 "--min-confidence", "0"]  # fmt: skip
    summary = audit.main(arguments)
    with open(tmp_path / "audit" / "readings.csv", newline="") as file:
        readings = list(csv.DictReader(file))
    assert sorted(row["filename"] for row in readings) == sorted(path.name for path in train_dir.glob("*.png"))
    for row in readings:  # Each image was read by the fold that held it out.
        split = (tmp_path / "audit" / f"fold{row['fold']}.split.csv").read_text()
        assert f"{row['filename']},test" in split and f"{row['filename']},train" not in split
    assert summary["images"] == 24 and summary["candidates"] == 24 - summary["agreeing"]
    assert (tmp_path / "audit" / "candidates.png").stat().st_size > 1000
    capsys.readouterr()
    assert audit.main(arguments) == summary
    assert capsys.readouterr().out.count("read before") == 2


def test_without_a_model_each_fold_trains_with_the_automatic_recipe(captcha_folders, tmp_path, monkeypatch):
    import models
    import training.run
    from models.io import save_model

    trained = []

    def fake_train(recipe, force=False, quiet=False):  # Records the recipe; a tiny model stands in for the run.
        trained.append(recipe)
        model = models.get_model("cellnet_tiny", alphabet=recipe.alphabet_spec)
        save_model(model, recipe.output)
        Path(recipe.output).with_suffix(".json").write_text(json.dumps({"options": {"model": "crnn_ctc"}}))
        return {"options": {"model": "crnn_ctc"}}

    monkeypatch.setattr(training.run, "train", fake_train)
    train_dir, _ = captcha_folders
    labels = labelled_copy(train_dir, tmp_path / "images")
    arguments = [str(tmp_path / "images"), "--labels", str(labels), "--output-dir", str(tmp_path / "audit"),
                 "--folds", "2", "--batch-size", "8"]  # fmt: skip
    summary = audit.main(arguments)
    assert len(trained) == 2 and summary["model"] == "crnn_ctc"
    assert all("model" in recipe.automatic and "epochs" in recipe.automatic for recipe in trained)
    assert all("batch_size" not in recipe.automatic and recipe.batch_size == 8 for recipe in trained)
    assert audit.main(arguments)["model"] == "crnn_ctc"  # Read before: the folds' own summaries say.
    named = audit.main([*arguments[:3], "--output-dir", str(tmp_path / "named"), "--folds", "2", "--model", "m_tiny"])
    assert trained[-1].automatic == [] and (trained[-1].epochs, trained[-1].batch_size) == (10, 32)
    assert named["model"] == "crnn_ctc"  # What the (fake) run reports.


def test_the_audit_refuses_too_few_folds(tmp_path, capsys):
    with refused(capsys, "--folds must be at least 2"):
        audit.main([str(tmp_path), "--folds", "1"])


def test_the_audit_reads_its_alphabet_from_the_labels_as_train_does(captcha_folders, tmp_path, capsys):
    import argparse

    folder = tmp_path / "real"
    folder.mkdir()
    lines = []
    for index, path in enumerate(sorted(captcha_folders[0].glob("*.png"))):
        shutil.copy(path, folder / path.name)
        lines.append(f"{path.name} {'bcx'[index % 3]}y{index % 10}\n")  # Three characters of 'bcxy0123456789'.
    (tmp_path / "labels.txt").write_text("".join(lines))
    options = dict(folder=str(folder), labels=str(tmp_path / "labels.txt"), label_corrections=None, min_length=None)
    read = audit.labels_alphabet(argparse.Namespace(**options, alphabet=None, length=None))
    assert read == Alphabet("0123456789bcxy", 3) and "14 characters" in capsys.readouterr().out
    longer = audit.labels_alphabet(argparse.Namespace(**options, alphabet=None, length=5))  # Given: kept.
    assert longer == Alphabet("0123456789bcxy", 5)
