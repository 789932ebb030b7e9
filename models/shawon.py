"""The assignment's baseline: Ashadullah Shawon's Kaggle CAPTCHA CNN, adapted to four digits.

Backbone: conv 16 -> pool -> conv 32 -> pool -> conv 32 -> batch norm -> pool
-> flatten; then one branch per character: dense 64 -> dropout 0.5 -> dense
softmax. The Kaggle post feeds 50x200 grayscale images; here the model crops
the 256x64 text strip of the raw image, scales it to [0, 1] and (in `shawon`,
not `shawon_rgb`) turns it into the colour-free foreground map itself, so the
saved model takes the raw 144x256x3 image. The branches are stacked into one
(length, classes) output like every model of the kit.
"""

from __future__ import annotations

import keras
from keras import layers

from models.blocks import character_heads, default_crop, image_input, preprocess
from models.registry import register_model


def build_shawon(
    alphabet,
    image_size,
    filters=(16, 32, 32),
    dense_units=64,
    dropout=0.5,
    foreground=False,
    downscale=1,
    name="shawon",
):
    inputs = image_input(image_size)
    x = preprocess(inputs, crop=default_crop(image_size), downscale=downscale, foreground=foreground)
    for stage, width in enumerate(filters, 1):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{stage}")(x)
        if stage == len(filters):
            x = layers.BatchNormalization(name="bn")(x)
        x = layers.MaxPooling2D(padding="same", name=f"pool{stage}")(x)
    features = layers.Flatten(name="flatten")(x)
    outputs = character_heads(features, alphabet, hidden_units=dense_units, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)


@register_model
def shawon(alphabet, image_size, **options):
    """The Kaggle baseline students are told to follow, reading the colour-free foreground map.

    On the raw RGB strip the same network does not learn at all: the training
    loss stays at ln(10) = 2.303 (chance) for 4 epochs at Adam's 1e-3
    (bench/results/experiment_shawon_rgb.history.csv), because the random
    colours hide the digit shapes. The weightless `ForegroundMap` in front of
    it changes only the input; backbone and heads are the Kaggle post's.
    """
    options.setdefault("foreground", True)
    return build_shawon(alphabet, image_size, **options)


@register_model
def shawon_rgb(alphabet, image_size, **options):
    """The Kaggle baseline on the raw RGB strip, literally; stays at chance on multicolorcaptcha."""
    return build_shawon(alphabet, image_size, foreground=False, name="shawon_rgb", **options)


@register_model
def shawon_tiny(alphabet, image_size, **options):
    """A few-thousand-parameter shawon for tests."""
    options.setdefault("foreground", True)
    return build_shawon(alphabet, image_size, filters=(2, 4, 4), dense_units=8, name="shawon_tiny", **options)


@register_model
def shawon_rgb_tiny(alphabet, image_size, **options):
    """A few-thousand-parameter shawon_rgb for tests."""
    return build_shawon(
        alphabet, image_size, filters=(2, 4, 4), dense_units=8, foreground=False, name="shawon_rgb_tiny", **options
    )
