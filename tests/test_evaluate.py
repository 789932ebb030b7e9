"""evaluate.py on a hand-built model whose accuracies are known in advance."""

import json
import re

import keras
import numpy as np
import pytest

import evaluate
from data.alphabet import Alphabet
from data.dataset import load_labelled_folder
from models.io import save_model


def constant_reader(text: str, output_shape=(4, 10)) -> keras.Model:
    """A model that reads `text` whatever the image: its accuracy follows from the labels alone."""
    inputs = keras.Input((144, 256, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    scores = np.full((4, 10), -10.0, "float32")
    for position, character in enumerate(text):
        scores[position, int(character)] = 10.0
    dense = keras.layers.Dense(
        int(np.prod(output_shape)),
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(scores.reshape(-1)[: np.prod(output_shape)]),
    )
    outputs = keras.layers.Reshape(output_shape)(dense(x))
    return keras.Model(inputs, outputs)


def test_known_accuracies_and_verdict(captcha_folders, tmp_path, capsys):
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


def test_unusable_models_exit_2(captcha_folders, tmp_path, capsys):
    _, val_dir = captcha_folders
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"\x00" * 100)
    wrong = save_model(constant_reader("0000", output_shape=(3, 10)), tmp_path / "wrong.keras")
    for path, message in [
        (junk, "not a Keras model"),
        (wrong, r"Received shape: \(12, 3, 10\)"),
        (tmp_path / "absent.keras", "not found"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main([str(path), "--data", str(val_dir)])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err)


def test_figures(captcha_folders, tmp_path):
    _, val_dir = captcha_folders
    path = save_model(constant_reader("0000"), tmp_path / "zeros.keras")
    result = evaluate.main([str(path), "--data", str(val_dir), "--figures", str(tmp_path / "figures")])
    assert result["whole_accuracy"] < 1  # so there are misread images to show
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["confusion.png", "errors.png"]
