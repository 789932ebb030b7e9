"""The PyTorch notebook's VGG-style model for ImageCaptcha CAPTCHAs, in Keras.

conv 64 -> 128 -> 256 -> 512 (each 3x3, ReLU, 2x2 max-pool), flatten, dense
4096 with dropout 0.5, then one dense layer of length x classes outputs. The
notebook trains those outputs with a multi-label soft-margin loss; the kit
puts a softmax over each position's classes and uses the same per-position
cross-entropy as every other model, so that all models compare under one
objective. About 63M parameters on 160x60 images, nearly all in the dense
4096 layer.
"""

from __future__ import annotations

import keras
from keras import layers

from core.multicolor import text_margins
from models.blocks import image_input, preprocess
from models.registry import register_model


def build_vgg(alphabet, image_size, filters=(64, 128, 256, 512), dense_units=4096, dropout=0.5, name="vgg_notebook"):
    """Builds the notebook's VGG-style network.

    Args:
        alphabet: Characters and label length.
        image_size: (height, width) of the raw images.
        filters: Channels of the 3x3 convolution of each block.
        dense_units: Width of the hidden dense layer.
        dropout: Dropout after the hidden dense layer.
    """
    inputs = image_input(image_size)
    x = preprocess(inputs, crop=text_margins(image_size))
    smallest = 2 ** len(filters)
    if min(x.shape[1:3]) < smallest:
        raise ValueError(
            f"{name} halves the image {len(filters)} times and needs at least {smallest}x{smallest} pixels; "
            f"image size {tuple(image_size)} gives {x.shape[1]} rows and {x.shape[2]} columns after preprocessing."
        )
    for block, width in enumerate(filters, 1):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{block}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(alphabet.length * alphabet.num_classes, name="logits")(x)
    x = layers.Reshape((alphabet.length, alphabet.num_classes), name="per_position")(x)
    outputs = layers.Softmax(name="character_scores")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model
def vgg_notebook(alphabet, image_size, **options):
    """The PyTorch notebook's VGG-style CNN (conv 64-128-256-512, dense 4096)."""
    return build_vgg(alphabet, image_size, **options)


@register_model
def vgg_notebook_tiny(alphabet, image_size, **options):
    """A small vgg_notebook for tests."""
    return build_vgg(alphabet, image_size, filters=(2, 4, 4, 4), dense_units=8, name="vgg_notebook_tiny", **options)
