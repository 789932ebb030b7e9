"""evaluate.py on a hand-built model whose accuracies are known in advance."""

import json
import re
import shutil

import numpy as np
import pytest

import evaluate
from core.alphabet import Alphabet
from data.dataset import load_labelled_folder
from models.io import save_model


def test_known_accuracies_and_verdict(captcha_folders, constant_reader, tmp_path, capsys):
    _, val_dir = captcha_folders
    labels = load_labelled_folder(val_dir, Alphabet()).labels
    text = "".join(max("0123456789", key=[label[p] for label in labels].count) for p in range(4))
    expected = [np.mean([label[p] == text[p] for label in labels]) for p in range(4)]
    path = save_model(constant_reader(text), tmp_path / "constant.keras")

    result = evaluate.main([str(path), "--data", str(val_dir), "--threshold", "0.0"])
    np.testing.assert_allclose(result["position_accuracies"], expected)
    assert result["whole_accuracy"] == np.mean([label == text for label in labels])
    assert result["passed"] is True
    assert "PASS" in capsys.readouterr().out

    result = evaluate.main([str(path), "--data", str(val_dir), "--threshold", "0.99", "--json"])
    assert result["passed"] is False
    printed = json.loads(capsys.readouterr().out)
    assert printed["passed"] is False and printed["position_accuracies"] == result["position_accuracies"]


def test_unusable_models_exit_2(captcha_folders, constant_reader, tmp_path, capsys):
    _, val_dir = captcha_folders
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"\x00" * 100)
    wrong = save_model(constant_reader("000"), tmp_path / "wrong.keras")
    for path, message in [
        (junk, "not a Keras model"),
        (wrong, r"Received shape: \(12, 3, 10\)"),
        (tmp_path / "absent.keras", "not found"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main([str(path), "--data", str(val_dir)])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err)


def test_figures(captcha_folders, constant_reader, tmp_path):
    _, val_dir = captcha_folders
    path = save_model(constant_reader("0000"), tmp_path / "zeros.keras")
    result = evaluate.main([str(path), "--data", str(val_dir), "--figures", str(tmp_path / "figures")])
    assert result["whole_accuracy"] < 1  # so there are misread images to show
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["confusion.png", "errors.png"]


def test_bad_images_stop_or_are_skipped(captcha_folders, constant_reader, tmp_path, capsys):
    _, val_dir = captcha_folders
    data = tmp_path / "val"
    shutil.copytree(val_dir, data)
    (data / "1234_truncated.png").write_bytes(next(val_dir.glob("*.png")).read_bytes()[:200])
    (data / "12345.png").write_bytes(next(val_dir.glob("*.png")).read_bytes())  # a label one digit too long
    path = save_model(constant_reader("0000"), tmp_path / "constant.keras")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(path), "--data", str(data)])
    assert exit_info.value.code == 2 and "12345.png" in capsys.readouterr().err
    result = evaluate.main([str(path), "--data", str(data), "--skip-bad"])
    assert result["images"] == 12 and result["skipped"] == 2
    assert "Skipped 2 files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(path), "--data", str(tmp_path / "empty_or_missing")])
    assert exit_info.value.code == 2 and "Image folder not found" in capsys.readouterr().err
