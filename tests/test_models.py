"""Every registered model: output shape, one training step, identical predictions after a .keras round trip."""

import numpy as np
import pytest

import models
from data.alphabet import Alphabet
from models.io import load_model, save_model
from models.layers import ForegroundMap
from models.training import compile_model

ALPHABET = Alphabet()


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 144, 256, 3)).astype("uint8")
    codes = rng.integers(0, 10, (4, 4)).astype("int32")
    return images, codes


def test_registry():
    names = models.list_models()
    assert {"shawon", "cellnet", models.DEFAULT_MODEL} <= set(names)
    assert all(name.endswith("_tiny") for name in set(names) - set(models.list_models(include_tiny=False)))
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        models.get_model("nope")


@pytest.mark.parametrize("name", models.list_models())
def test_model_shape_fit_and_round_trip(name, batch, tmp_path):
    images, codes = batch
    model = models.get_model(name, alphabet=ALPHABET)
    assert model.input_shape == (None, 144, 256, 3)
    assert model.output_shape == (None, 4, 10)
    compile_model(model, ALPHABET.length, learning_rate=1e-3, total_steps=2)
    before = [weight.copy() for weight in model.get_weights()]
    history = model.fit(images, codes, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    predictions = model.predict(images, verbose=0)
    np.testing.assert_allclose(predictions.sum(axis=-1), 1.0, rtol=1e-5)

    path = save_model(model, tmp_path / f"{name}.keras")
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), predictions, rtol=1e-5, atol=1e-6)


def test_other_alphabet_and_length():
    model = models.get_model("cellnet_tiny", alphabet=Alphabet("abcdefgh", 2), image_size=(32, 64))
    assert model.output_shape == (None, 2, 8)
    model = models.get_model("shawon_tiny", alphabet=Alphabet("ab", 5), image_size=(32, 64))
    assert model.output_shape == (None, 5, 2)


def test_foreground_map_ignores_colours():
    # The same shape in two colour schemes gives the same foreground map.
    shape = np.zeros((1, 8, 8, 1), "float32")
    shape[0, 2:5, 3] = 1.0
    first = np.where(shape > 0, [0.9, 0.1, 0.2], [0.1, 0.5, 0.5]).astype("float32")
    second = np.where(shape > 0, [0.2, 0.2, 0.9], [0.7, 0.8, 0.3]).astype("float32")
    layer = ForegroundMap()
    map_one, map_two = np.asarray(layer(first)), np.asarray(layer(second))
    assert map_one.shape == (1, 8, 8, 1)
    np.testing.assert_array_equal(map_one > 0.3, shape > 0)
    np.testing.assert_array_equal(map_two > 0.3, shape > 0)
    assert np.allclose(map_one[shape == 0], 0) and np.allclose(map_two[shape == 0], 0)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        load_model(tmp_path / "missing.keras")
    not_a_model = tmp_path / "text.keras"
    not_a_model.write_text("hello")
    with pytest.raises(ValueError, match="not a Keras model"):
        load_model(not_a_model)


def test_recommended_learning_rates():
    assert models.recommended_learning_rate("cellnet") == 3e-3
    assert models.recommended_learning_rate("shawon") == 1e-3  # Adam's default, as in the Kaggle post
    with pytest.raises(ValueError, match="Unknown model"):
        models.recommended_learning_rate("nope")
