"""CNN + bidirectional GRU + CTC: reads the image as a sequence of columns (after ypwhs/captcha_break).

A CNN turns the image into a feature map four times narrower than the
image; each column of it is one time step. Two bidirectional GRUs read the
columns in both directions and a dense softmax scores every step over the
alphabet plus a final blank class. Trained with the CTC loss
(`training.losses.ClassLoss`) and read by greedy CTC decoding
(`models.decoding`), it needs no character positions and reads labels
shorter than the alphabet's `length` too.

Output: (batch, time steps, classes + 1), time steps = width of the
preprocessed image / 4.
"""

from __future__ import annotations

import keras
from keras import layers

from core.multicolor import text_margins
from models.blocks import conv_bn_relu, image_input, preprocess
from models.registry import register_model


def build_crnn(
    alphabet,
    image_size,
    stages=((32, 32), (64, 64), (128, 128)),
    pools=((2, 2), (2, 2), (2, 1)),
    downscale=1,
    recurrent_units=128,
    dropout=0.25,
    batch_norm_momentum=0.9,
    name="crnn_ctc",
):
    """Builds the CNN + BiGRU + CTC reader.

    Args:
        alphabet: Characters and the longest label length.
        image_size: (height, width) of the raw images.
        stages: Filters of the 3x3 convolutions of each stage.
        pools: Max-pool size (height, width) after each stage.
        downscale: Average-pooling factor before the network.
        recurrent_units: Units of each direction of the two GRU layers.
        dropout: Dropout on the column features.
        batch_norm_momentum: Of the moving statistics that inference reads. With Keras's 0.99 they lagged
            behind the weights: on 4,000 dotted digits, validation swung between 99% and 33% per character
            from one epoch to the next while the training loss fell steadily.
    """
    inputs = image_input(image_size)
    x = preprocess(inputs, crop=text_margins(image_size), downscale=downscale)
    for stage, (widths, pool) in enumerate(zip(stages, pools), 1):
        for layer, filters in enumerate(widths, 1):
            x = conv_bn_relu(x, filters, name=f"stage{stage}_{layer}", momentum=batch_norm_momentum)
        x = layers.MaxPooling2D(pool, padding="same", name=f"stage{stage}_pool")(x)
    height, width, channels = x.shape[1:]
    if width < 2 * alphabet.length - 1:
        raise ValueError(
            f"crnn_ctc needs at least {2 * alphabet.length - 1} time steps for labels of {alphabet.length} "
            f"characters; image size {tuple(image_size)} gives {width}."
        )
    x = layers.Permute((2, 1, 3), name="columns_first")(x)
    x = layers.Reshape((width, height * channels), name="columns")(x)
    x = layers.Dropout(dropout, name="column_dropout")(x)
    x = layers.Dense(recurrent_units, activation="relu", name="column_projection")(x)
    for index in (1, 2):
        x = layers.Bidirectional(layers.GRU(recurrent_units, return_sequences=True), name=f"bigru{index}")(x)
    outputs = layers.Dense(alphabet.num_classes + 1, activation="softmax", name="character_scores")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model(kind="ctc")
def crnn_ctc(alphabet, image_size, **options):
    """CNN + two BiGRU layers + CTC, greedy decoding."""
    return build_crnn(alphabet, image_size, **options)


@register_model(kind="ctc")
def crnn_ctc_tiny(alphabet, image_size, **options):
    """A small crnn_ctc for tests."""
    options.setdefault("stages", ((4,), (8,), (8,)))
    options.setdefault("recurrent_units", 8)
    return build_crnn(alphabet, image_size, name="crnn_ctc_tiny", **options)
