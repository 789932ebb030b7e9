"""The small four-block CNN of a project that reads 944 hand-labelled 4-digit CAPTCHAs (50x22).

Four blocks of two 3x3 convolutions with 32 x 2^i channels (ReLU) and a 2x2
max-pool, flatten, then one dense 100 (ReLU) -> dense softmax head per
character. It suits small real images such as henan-4digit (70x30).
"""

from __future__ import annotations

import keras
from keras import layers

from core.multicolor import text_margins
from models.blocks import character_heads, image_input, preprocess
from models.registry import register_model


def build_fourblock(
    alphabet, image_size, base_filters=32, blocks=4, head_units=100, dropout=0.0, downscale=1, name="fourblock"
):
    """Builds the four-block CNN.

    Args:
        alphabet: Characters and label length.
        image_size: (height, width) of the raw images.
        base_filters: Channels of the first block; block i has base_filters x 2^i.
        blocks: Number of conv-conv-pool blocks.
        head_units: Width of each character head's hidden layer.
        dropout: Dropout in each head.
        downscale: Average-pooling factor before the network (2 reads 240x80 images four times as fast).
    """
    inputs = image_input(image_size)
    x = preprocess(inputs, crop=text_margins(image_size), downscale=downscale)
    for block in range(blocks):
        for conv in (1, 2):
            # He initialisation: with Keras's default (Glorot) each of the eight ReLU layers halves the signal's
            # variance, and on small real sets the model sat at chance (loss ln 10) for 8 to 60 epochs.
            x = layers.Conv2D(
                base_filters * 2**block, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                name=f"block{block + 1}_conv{conv}",
            )(x)  # fmt: skip
        # "same" keeps a one-pixel map from vanishing on very small images.
        x = layers.MaxPooling2D(2, padding="same", name=f"block{block + 1}_pool")(x)
    features = layers.Flatten(name="flatten")(x)
    outputs = character_heads(features, alphabet, hidden_units=head_units, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)


@register_model
def fourblock(alphabet, image_size, **options):
    """Four blocks of two 3x3 convolutions (32-64-128-256 channels), one dense-100 head per character."""
    return build_fourblock(alphabet, image_size, **options)


@register_model
def fourblock_tiny(alphabet, image_size, **options):
    """A small fourblock for tests."""
    return build_fourblock(alphabet, image_size, base_filters=2, head_units=8, name="fourblock_tiny", **options)
