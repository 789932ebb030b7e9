"""Every model family on the shapes of real CAPTCHA sets: it builds with the right outputs, or refuses in one line.

The shapes are those of the real labelled sets the kit has been tried on: four digits at 50x22 (the original
project of 944 real CAPTCHAs), five of 19 characters at 200x50, four digits at 152x42, and the dotted four
digits of cloud-4digit at 240x80. The automatic recipe's two readers (`crnn_ctc` and its fallback
`fourblock`) also learn on each of them, tiny, from a few rendered images (`pytest -m slow`).
"""

import keras
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import models
from core.alphabet import Alphabet
from models.layers import is_ctc_model, output_kind
from training.auto import FALLBACK_MODEL
from training.objective import compiled_objective

DIGITS = "0123456789"
SHAPES = {
    "50x22": ((22, 50), Alphabet(DIGITS, 4)),
    "200x50": ((50, 200), Alphabet("2345678bcdefgmnpwxy", 5)),
    "152x42": ((42, 152), Alphabet(DIGITS, 4)),
    "240x80": ((80, 240), Alphabet(DIGITS, 4)),
}
# Refused, and why: (model prefix, shape) -> what the message says.
REFUSALS = {
    ("cellnet", "50x22"): "4 cells of equal width",
    ("keras_application", "50x22"): "needs at least 32x32 pixels",
}


def expected_output_shape(model, alphabet):
    if is_ctc_model(model):
        return (None, model.output_shape[1], alphabet.num_classes + 1)
    if output_kind(model) == "seq2seq":
        return (None, alphabet.length + 1, alphabet.num_classes + 3)
    return (None, alphabet.length, alphabet.num_classes)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_family_builds_or_refuses_each_real_shape(shape):
    size, alphabet = SHAPES[shape]
    for name in [name for name in models.list_models() if name.endswith("_tiny")]:
        family = name.removesuffix("_tiny")
        refusal = REFUSALS.get((family, shape))
        if refusal:
            with pytest.raises(ValueError, match=refusal) as error:
                models.get_model(name, alphabet=alphabet, image_size=size)
            message = str(error.value)
            assert family in message and str(size) in message and "\n" not in message
            continue
        model = models.get_model(name, alphabet=alphabet, image_size=size)
        assert model.input_shape == (None, *size, 3), name
        assert model.output_shape == expected_output_shape(model, alphabet), name
        if is_ctc_model(model):
            assert model.output_shape[1] >= 2 * alphabet.length - 1, name


@pytest.mark.parametrize("name", ["vgg_notebook_tiny", "crnn_ctc_tiny", "keras_application_tiny"])
def test_too_small_images_are_refused_in_one_line(name):
    with pytest.raises(ValueError) as error:
        models.get_model(name, alphabet=Alphabet(DIGITS, 4), image_size=(10, 20))
    message = str(error.value)
    assert name.removesuffix("_tiny") in message and "(10, 20)" in message and "\n" not in message


def rendered_images(alphabet, size, count, seed=0):
    """`count` images of random labels, drawn in black on white with PIL's own font, and their codes."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, alphabet.num_classes, (count, alphabet.length)).astype("int32")
    height, width = size
    font = ImageFont.load_default(size=max(8, int(height * 0.7)))
    step = width / (alphabet.length + 1)
    images = []
    for row in codes:
        image = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(image)
        for position, code in enumerate(row):
            left = step * (position + 0.5) + rng.integers(-1, 2)
            draw.text((left, height * 0.1), alphabet.characters[code], fill="black", font=font)
        images.append(np.asarray(image))
    return np.stack(images), codes


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
# fourblock_tiny (2 filters, heads of 8) is too small to fit even 16 images; a narrow fourblock stands in.
@pytest.mark.parametrize(
    "name, options", [("crnn_ctc_tiny", {}), (FALLBACK_MODEL, {"base_filters": 8, "head_units": 32})]
)
def test_automatic_readers_learn_on_each_real_shape(name, options, shape):
    size, alphabet = SHAPES[shape]
    images, codes = rendered_images(alphabet, size, count=16)
    keras.utils.set_random_seed(0)
    model = models.get_model(name, alphabet=alphabet, image_size=size, **options)
    objective = compiled_objective(model, models.recommended_learning_rate(name), total_steps=50)
    losses = objective.fit(images, codes, batch_size=8, epochs=25, verbose=0).history["loss"]
    assert np.isfinite(losses).all()
    # Stuck at chance, the loss stays where it starts.
    assert losses[-1] < 0.85 * losses[0], losses
