"""The assignment's baseline: Ashadullah Shawon's Kaggle CAPTCHA CNN, adapted to four digits.

Backbone: conv 16 -> pool -> conv 32 -> pool -> conv 32 -> batch norm -> pool
-> flatten; then one branch per character: dense 64 -> dropout 0.5 -> dense
softmax. The Kaggle post feeds 50x200 grayscale images; here the model crops
the 256x64 text strip of the raw image, scales it to [0, 1], halves it to
32x128 (the post's scale) and (in `shawon`, not `shawon_rgb`) turns it into
the colour-free foreground map itself, so the saved model takes the raw
144x256x3 image. The branches are stacked into one (length, classes) output
like every model of the kit.

One deviation from the post, by default: no dropout in the branches
(`dropout=0.0`; `dropout=0.5` restores the post's). With it the network never
leaves chance on these CAPTCHAs: while the flattened features carry no
signal yet, the cheapest way to cut the loss that the dropout noise adds is
to switch the branch units off, and they stay dead (ReLU). Of each
branch's 64 units, 63 to 64 never fire after 3 epochs of 12,800 new images
at a peak learning rate of 1e-3, 39 to 50 after 6 epochs at 3e-4 and 11 to
19 at 1e-4 (half resolution), and the loss stays at ln 10 = 2.303
(`bench/probe_shawon.py`; the full default training in
`bench/results/train_shawon_dropout05.json`). Without it the same network
reaches 40% per digit after 2 epochs of the default training
(`bench/results/train_shawon.json`).
"""

from __future__ import annotations

import keras
from keras import layers

from core import multicolor
from core.multicolor import text_margins
from models.blocks import character_heads, image_input, preprocess
from models.registry import register_model


def build_shawon(
    alphabet,
    image_size,
    filters=(16, 32, 32),
    dense_units=64,
    dropout=0.0,
    foreground=False,
    downscale=None,
    name="shawon",
):
    """Builds the Kaggle network.

    Args:
        alphabet: Characters and label length (one branch per character).
        image_size: (height, width) of the raw images.
        filters: Filters of the three 3x3 convolutions.
        dense_units: Width of each branch's hidden layer.
        dropout: Dropout in each branch (the post's 0.5 stalls here; see the module docstring).
        foreground: Read the colour-free `foreground_map` instead of RGB.
        downscale: Average-pooling factor before the network; None: 2 for
            the 144x256 multicolorcaptcha images (a 32x128 strip, the post's
            scale), else 1.
    """
    if downscale is None:
        downscale = 2 if tuple(image_size) == multicolor.IMAGE_SIZE else 1
    inputs = image_input(image_size)
    x = preprocess(inputs, crop=text_margins(image_size), downscale=downscale, foreground=foreground)
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
    colours hide the digit shapes. The weightless `foreground_map` in front of
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
