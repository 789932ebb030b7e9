"""Building blocks shared by the registered models: the raw-image input and its preprocessing.

All of them are Keras's built-in layers and operations, so the models load
with plain Keras (`models.layers`).
"""

from __future__ import annotations

import keras
from keras import layers

from models import layers as image_layers  # The kit's; `layers` is Keras's.


def image_input(image_size) -> keras.KerasTensor:
    """The model input: a raw RGB image with values 0-255, as decoded from the file."""
    height, width = image_size
    return keras.Input(shape=(height, width, 3), name="image")


def preprocess(images, crop=(0, 0), downscale: int = 1, foreground: bool = False, grayscale: bool = False):
    """Crops, scales to [0, 1], optionally downsamples and removes colours, as model layers.

    Args:
        images: The raw image tensor from `image_input`.
        crop: Rows (top, bottom) to cut off.
        downscale: Integer factor of average pooling (1 keeps full resolution).
        foreground: Replace the RGB channels with the colour-free `models.layers.foreground_map`.
        grayscale: Replace them with their luminance (`models.layers.grayscale`) instead.
    """
    if foreground and grayscale:
        raise ValueError("Choose one of `foreground` and `grayscale`. Received: both True")
    x = images
    if any(crop):
        x = layers.Cropping2D((tuple(crop), (0, 0)), name="crop_strip")(x)
    x = layers.Rescaling(1.0 / 255, name="scale")(x)
    if downscale > 1:
        x = layers.AveragePooling2D(downscale, name="downscale")(x)
    if foreground:
        x = image_layers.foreground_map(x, name="foreground")
    if grayscale:
        x = image_layers.grayscale(x, name="grayscale")
    return x


def conv_bn_relu(x, filters: int, name: str, momentum: float = 0.99):
    """3x3 convolution, batch normalisation, ReLU.

    `momentum` is that of the normalisation's moving statistics, which
    inference reads: Keras's 0.99 averages about the last 100 batches, 0.9
    (PyTorch's default) the last 10, which keeps up with weights that change
    fast, as on small sets at a high learning rate.
    """
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def character_heads(features, alphabet, hidden_units: int | None = None, dropout: float = 0.0):
    """One classifier per character position on shared features, stacked to (batch, length, classes).

    Args:
        features: A (batch, features) tensor.
        alphabet: Gives the number of heads (`length`) and of classes.
        hidden_units: Width of each head's hidden ReLU layer; None for a single linear layer.
        dropout: Dropout in each head, before its output layer.
    """
    classes = alphabet.num_classes
    branches = []
    for position in range(alphabet.length):
        y = features
        if hidden_units:
            y = layers.Dense(hidden_units, activation="relu", name=f"char{position}_dense")(y)
        if dropout:
            y = layers.Dropout(dropout, name=f"char{position}_dropout")(y)
        y = layers.Dense(classes, activation="softmax", name=f"char{position}_softmax")(y)
        branches.append(layers.Reshape((1, classes), name=f"char{position}_reshape")(y))
    if len(branches) == 1:
        return layers.Identity(name="character_scores")(branches[0])
    return layers.Concatenate(axis=1, name="character_scores")(branches)


def pooled_character_heads(feature_map, alphabet, dropout: float = 0.0):
    """Global average pooling of a backbone's feature map, optional dropout, then `character_heads`.

    The head of the backbone readers (resnet18, efficientnet_lite0, keras_application).
    """
    x = layers.GlobalAveragePooling2D(name="pool")(feature_map)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return character_heads(x, alphabet)
