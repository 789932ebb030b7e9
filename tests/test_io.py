"""Model files: atomic saves that survive Ctrl-C, and untrusted files refused with a clear reason."""

import zipfile

import keras
import numpy as np
import pytest

import models.io as models_io
from models.io import UnsafeModelError, find_unsafe_code, load_model, save_model


def tiny_model(bias: float = 0.0) -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(40, bias_initializer=keras.initializers.Constant(bias))(x)
    return keras.Model(inputs, keras.layers.Reshape((4, 10))(outputs))


def marker_lambda_model(marker) -> keras.Model:
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(touch, name="touching")(inputs)
    return keras.Model(inputs, keras.layers.Reshape((4, 10))(keras.layers.Dense(40)(keras.layers.Flatten()(x))))


def test_ctrl_c_during_a_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_model(tiny_model(1.0), tmp_path / "best.keras")
    before = path.read_bytes()

    def interrupted_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_model(tiny_model(2.0), path)
    assert path.read_bytes() == before
    assert [item.name for item in tmp_path.iterdir()] == ["best.keras"]  # no temporary file left


def test_lambda_layer_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = save_model(marker_lambda_model(marker), tmp_path / "lambda.keras")
    marker.unlink()
    assert find_unsafe_code(path) == "a Python lambda in layer touching"
    with pytest.raises(UnsafeModelError, match="holds Python code"):
        load_model(path)
    assert not marker.exists()
    # The marker does work: loading without safe mode runs the lambda.
    keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()


def test_safe_models_have_no_unsafe_code(tmp_path):
    path = save_model(tiny_model(), tmp_path / "plain.keras")
    assert find_unsafe_code(path) is None
    assert load_model(path).predict(np.ones((1, 8, 8, 3)), verbose=0).shape == (1, 4, 10)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a Keras model"),
        (b"hello", "not a Keras model"),
        ("zip", "Cannot load model"),
        ("truncated", "not a Keras model|Cannot load model"),
    ],
)
def test_files_that_are_not_models(tmp_path, content, message):
    path = tmp_path / "model.keras"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "a zip, but not a model")
    elif content == "truncated":
        whole = save_model(tiny_model(), tmp_path / "whole.keras").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_model(path)
    assert "model.keras" in str(error.value)
    assert not isinstance(error.value, UnsafeModelError)


def test_keras_safe_mode_is_the_second_line_of_defence(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    path = save_model(marker_lambda_model(marker), tmp_path / "lambda.keras")
    marker.unlink()
    monkeypatch.setattr(models_io, "find_unsafe_code", lambda path: None)  # as if the scan missed it
    with pytest.raises(UnsafeModelError, match="arbitrary code execution"):
        load_model(path)
    assert not marker.exists()
