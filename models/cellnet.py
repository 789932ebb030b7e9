"""The default model: a colour-free CNN whose output columns line up with the character cells.

multicolorcaptcha draws each digit in its own 64x64 cell of the text strip. The
model crops the strip, halves its resolution, replaces the random colours by a
foreground map (`ForegroundMap`), and runs a small VGG-style convolutional
stack whose pooling leaves exactly one feature column per cell. One classifier,
shared by all positions, reads each column. Sharing means every training image
teaches the classifier four times, which is what makes 10 CPU epochs enough.
"""

from __future__ import annotations

import keras
from keras import layers

from models.blocks import conv_bn_relu, default_crop, image_input, preprocess
from models.registry import register_model


def build_cellnet(
    alphabet,
    image_size,
    stages=((32,), (64, 64), (128, 128), (192, 192), (256,)),
    downscale=2,
    hidden_units=256,
    dropout=0.3,
    foreground=True,
    split_cells=False,
    name="cellnet",
):
    """Builds a cellnet.

    Args:
        alphabet: Characters and label length.
        image_size: (height, width) of the raw images.
        stages: Filters of the 3x3 convolutions of each stage; every stage
            but the last ends with a 2x2 max-pool.
        downscale: Resolution reduction before the network.
        hidden_units: Width of the shared per-position classifier.
        dropout: Dropout before and inside the classifier.
        foreground: Use the colour-free foreground map instead of RGB.
    """
    inputs = image_input(image_size)
    crop = default_crop(image_size)
    x = preprocess(inputs, crop=crop, downscale=downscale, foreground=foreground)
    if split_cells:
        return _build_split(inputs, x, alphabet, stages, hidden_units, dropout, name)
    for stage, widths in enumerate(stages, 1):
        for layer, width in enumerate(widths, 1):
            x = conv_bn_relu(x, width, name=f"stage{stage}_{layer}")
        if stage < len(stages):
            x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    height, width = x.shape[1], x.shape[2]
    if width % alphabet.length:
        raise ValueError(
            f"cellnet needs a feature width divisible by the label length {alphabet.length}; "
            f"image size {tuple(image_size)} gives width {width}."
        )
    # One column per character cell: pool the whole height and each cell's width.
    x = layers.MaxPooling2D((height, width // alphabet.length), name="cell_pool")(x)
    x = layers.Reshape((alphabet.length, x.shape[-1]), name="cells")(x)
    x = layers.Dropout(dropout, name="cell_dropout")(x)
    x = layers.Dense(hidden_units, activation="relu", name="classifier_hidden")(x)
    x = layers.Dropout(dropout, name="classifier_dropout")(x)
    outputs = layers.Dense(alphabet.num_classes, activation="softmax", name="characters")(x)
    return keras.Model(inputs, outputs, name=name)


def _build_split(inputs, x, alphabet, stages, hidden_units, dropout, name):
    height, width, channels = x.shape[1:]
    cell_width = width // alphabet.length
    x = layers.Reshape((height, alphabet.length, cell_width, channels), name="split")(x)
    x = layers.Permute((2, 1, 3, 4), name="cells_first")(x)
    cell_input = keras.Input((height, cell_width, channels), name="cell")
    y = cell_input
    for stage, widths in enumerate(stages, 1):
        for layer, filters in enumerate(widths, 1):
            y = conv_bn_relu(y, filters, name=f"stage{stage}_{layer}")
        if stage < len(stages):
            y = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(y)
    y = layers.GlobalMaxPooling2D(name="cell_pool")(y)
    cell_network = keras.Model(cell_input, y, name="cell_network")
    x = layers.TimeDistributed(cell_network, name="read_cells")(x)
    x = layers.Dropout(dropout, name="cell_dropout")(x)
    x = layers.Dense(hidden_units, activation="relu", name="classifier_hidden")(x)
    x = layers.Dropout(dropout, name="classifier_dropout")(x)
    outputs = layers.Dense(alphabet.num_classes, activation="softmax", name="characters")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model
def cellnet(alphabet, image_size, **options):
    """The default: best per-digit accuracy per CPU minute found on the assignment data."""
    return build_cellnet(alphabet, image_size, **options)


@register_model
def cellnet_tiny(alphabet, image_size, **options):
    """A few-thousand-parameter cellnet for tests."""
    options.setdefault("stages", ((4,), (8,), (8,)))
    options.setdefault("hidden_units", 8)
    return build_cellnet(alphabet, image_size, name="cellnet_tiny", **options)
