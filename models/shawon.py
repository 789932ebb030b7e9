"""The assignment's baseline: Ashadullah Shawon's Kaggle CAPTCHA CNN, adapted to four digits.

Backbone: conv 16 -> pool -> conv 32 -> pool -> conv 32 -> batch norm -> pool
-> flatten; then one branch per character: dense 64 -> dropout 0.5 -> dense
softmax. The Kaggle post feeds 50x200 grayscale images; here the model crops
the 256x64 text strip of the raw image and scales it to [0, 1] itself, so the
saved model takes the raw 144x256x3 image. The branches are stacked into one
(length, classes) output like every model of the kit.
"""

from __future__ import annotations

import keras
from keras import layers

from models.blocks import character_heads, default_crop, image_input, preprocess
from models.registry import register_model


def build_shawon(
    alphabet, image_size, filters=(16, 32, 32), dense_units=64, dropout=0.5, foreground=False, name="shawon"
):
    inputs = image_input(image_size)
    x = preprocess(inputs, crop=default_crop(image_size), foreground=foreground)
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
    """The Kaggle baseline students are told to follow (about 2.2M parameters on 144x256)."""
    return build_shawon(alphabet, image_size, **options)


@register_model
def shawon_tiny(alphabet, image_size, **options):
    """A few-thousand-parameter shawon for tests."""
    return build_shawon(alphabet, image_size, filters=(2, 4, 4), dense_units=8, name="shawon_tiny", **options)
