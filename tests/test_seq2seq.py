"""cnn_seq2seq: greedy decoding inside the model, its teacher-forcing twin, the decoder, the .keras round trip."""

import json
import zipfile

import keras
import numpy as np
import pytest

import models
from core.alphabet import Alphabet
from models.decoding import decode_text, decode_with_confidence, seq2seq_greedy_codes
from models.io import load_model, model_alphabet, save_model
from models.layers import output_kind
from models.seq2seq import teacher_forcing_model
from training.objective import Objective

ALPHABET = Alphabet("0123456789ABCDEF", 3)


def tiny(alphabet=ALPHABET, image_size=(24, 40), **options):
    return models.get_model("cnn_seq2seq_tiny", alphabet=alphabet, image_size=image_size, **options)


def test_shapes_and_kind():
    model = tiny()
    # One step per character and one for the end token, over characters + end, pad, start.
    assert model.output_shape == (None, ALPHABET.length + 1, ALPHABET.num_classes + 3)
    assert output_kind(model) == "seq2seq" and model.input_shape == (None, 24, 40, 3)
    full = models.get_model("cnn_seq2seq", alphabet=Alphabet(), image_size=(30, 70))
    # 64x128 after resizing becomes 32 encoder steps of 256 features.
    assert full.get_layer("encoder").output[0].shape == (None, 32, 128)
    assert full.get_layer("encoder").get_layer("columns").output.shape == (None, 32, 256)


def test_teacher_forcing_twin_shares_weights_and_matches_greedy_on_its_own_tokens():
    model = tiny()
    images = np.random.default_rng(0).integers(0, 256, (5, 24, 40, 3)).astype("uint8")
    greedy = np.asarray(model(images, training=False))
    tokens = greedy.argmax(-1)[:, : ALPHABET.length].astype("int32")
    forced_model = teacher_forcing_model(model)
    assert {id(weight) for weight in forced_model.weights} == {id(weight) for weight in model.weights}
    # Fed the tokens it chose itself, the teacher-forced decoder gives the greedy scores.
    forced = np.asarray(forced_model([images, tokens], training=False))
    np.testing.assert_allclose(forced, greedy, rtol=1e-5, atol=1e-6)
    other = (tokens + 1) % ALPHABET.num_classes
    assert not np.allclose(np.asarray(forced_model([images, other], training=False))[:, 1:], greedy[:, 1:])


def test_decoding_stops_at_the_end_token():
    classes = ALPHABET.num_classes + 3  # 16 characters, then end = 16, pad = 17, start = 18
    end = ALPHABET.num_classes
    tokens = np.array([[1, 2, 3, end], [4, end, 5, 6], [end, 1, 2, 3]])
    scores = np.full((3, 4, classes), 0.01, "float32")
    for row, steps in enumerate(tokens):
        for step, token in enumerate(steps):
            scores[row, step, token] = 0.8
    codes, confidences = (keras.ops.convert_to_numpy(value) for value in seq2seq_greedy_codes(scores, 3))
    np.testing.assert_array_equal(codes, [[1, 2, 3], [4, -1, -1], [-1, -1, -1]])
    # The confidence counts the characters read and the token that ended them.
    np.testing.assert_allclose(confidences, [0.8**4, 0.8**2, 0.8], rtol=1e-5)
    assert decode_text(scores, ALPHABET, "seq2seq") == ["123", "4", ""]
    assert decode_with_confidence(scores, ALPHABET, "seq2seq")[0].shape == (3, 3)


def test_round_trip_in_safe_mode(tmp_path):
    model = tiny(image_size=(30, 70))
    images = np.random.default_rng(1).integers(0, 256, (3, 30, 70, 3)).astype("uint8")
    path = save_model(model, tmp_path / "seq2seq.keras")
    with zipfile.ZipFile(path) as archive:
        assert "Lambda" not in json.dumps(json.loads(archive.read("config.json")))
    loaded = keras.saving.load_model(path, safe_mode=True)  # No custom_objects: the layers are registered.
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    kit_loaded = load_model(path)  # The kit reads captcha_kit.json too; plain Keras ignores it.
    assert model_alphabet(kit_loaded) == ALPHABET and output_kind(kit_loaded) == "seq2seq"


@pytest.mark.parametrize("alphabet", [Alphabet("ab", 2), Alphabet("0123456789", 6)])
def test_any_alphabet_and_length(alphabet):
    model = tiny(alphabet=alphabet)
    assert model.output_shape == (None, alphabet.length + 1, alphabet.num_classes + 3)
    scores = model.predict(np.zeros((2, 24, 40, 3), "uint8"), verbose=0)
    assert decode_with_confidence(scores, alphabet, "seq2seq")[0].shape == (2, alphabet.length)


@pytest.mark.slow  # 9 s: test_models fits cnn_seq2seq_tiny in the default run.
@pytest.mark.usefixtures("eager_functions")
def test_teacher_forced_steps_lower_the_loss_of_the_greedy_reader():
    """A few teacher-forced steps on four images lower the loss of the greedy decoder users get."""
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (4, 24, 40, 3)).astype("uint8")
    codes = ALPHABET.encode_many(["1A3", "F00", "B7C", "2E9"])
    objective = Objective(tiny(cnn_dropout=0.0, recurrent_dropout=0.0, units=32))
    objective.compile(optimizer=keras.optimizers.Adam(0.01))
    before = objective.evaluate(images, codes, verbose=0, return_dict=True)["loss"]
    objective.fit(images, codes, batch_size=4, epochs=3, verbose=0)
    assert objective.evaluate(images, codes, verbose=0, return_dict=True)["loss"] < 0.9 * before


@pytest.mark.slow
def test_overfits_a_few_images_and_reads_them_greedily():
    """Trained with teacher forcing on four images, the saved model's greedy decoding reads their labels."""
    keras.utils.set_random_seed(0)
    labels = ["1A3", "F00", "B7C", "2E9"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 24, 40, 3)).astype("uint8")
    model = tiny(cnn_dropout=0.0, recurrent_dropout=0.0, units=32)
    objective = Objective(model)
    objective.compile(optimizer=keras.optimizers.Adam(0.01))
    codes = ALPHABET.encode_many(labels)
    objective.fit(images, codes, batch_size=4, epochs=150, verbose=0)
    assert decode_text(model.predict(images, verbose=0), ALPHABET, "seq2seq") == labels


def test_foreground_option_reads_one_colour_free_channel(tmp_path):
    model = tiny(image_size=(144, 256), foreground=True)
    assert model.get_layer("encoder").get_layer("foreground").output.shape[-1] == 1
    images = np.random.default_rng(2).integers(0, 256, (2, 144, 256, 3)).astype("uint8")
    loaded = load_model(save_model(model, tmp_path / "foreground.keras"))
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_decoder_targets_end_short_labels_with_the_end_token_then_pads():
    from models.seq2seq import decoder_targets

    end, pad = ALPHABET.num_classes, ALPHABET.num_classes + 1
    codes = np.array([[1, 2, 3], [4, -1, -1], [-1, -1, -1]])
    targets = keras.ops.convert_to_numpy(decoder_targets(codes, ALPHABET.num_classes))
    np.testing.assert_array_equal(targets, [[1, 2, 3, end], [4, end, pad, pad], [end, pad, pad, pad]])


def test_teacher_forcing_feeds_the_end_token_after_a_short_label():
    # A label padded with -1 drives the decoder exactly as its explicit tokens (end, then pad) do.
    from models.seq2seq import decoder_targets

    model = tiny()
    forced_model = teacher_forcing_model(model)
    images = np.random.default_rng(2).integers(0, 256, (2, 24, 40, 3)).astype("uint8")
    padded = np.array([[1, -1, -1], [1, 2, -1]], "int32")
    explicit = keras.ops.convert_to_numpy(decoder_targets(padded, ALPHABET.num_classes))[:, :-1]
    np.testing.assert_allclose(
        np.asarray(forced_model([images, padded], training=False)),
        np.asarray(forced_model([images, explicit], training=False)),
        rtol=1e-6,
    )
