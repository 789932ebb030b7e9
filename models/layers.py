"""Custom layers; each is registered serializable so `.keras` files load anywhere."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="captcha_kit")
class ForegroundMap(layers.Layer):
    """Removes the random colours: per pixel, the largest channel distance from the background.

    multicolorcaptcha paints one random background colour and each digit in a
    random contrasting colour, so the shapes a network must learn hide behind
    colours it must learn to ignore. The background is the image's median
    colour (it covers most pixels); `max_c |pixel_c - background_c|` is then
    high on the digit and its lines whatever the colours are. The layer has no
    weights.

    The median is taken over every `sample_stride`-th pixel (in row-major
    order) rather than all of them: sorting every pixel took half the time of
    a whole cellnet prediction, and because the background covers most of the
    image, the sample's median is the same colour. On 2,048 validation
    images (2x downscaled strips) stride 16 gave outputs identical to the full
    median, 2.5x faster (`python -m bench.check_foreground_sampling`).

    Args:
        sample_stride: Use every this many pixels for the median (1: all).

    Input: (batch, height, width, channels) floats. Output: (batch, height, width, 1).
    """

    def __init__(self, sample_stride: int = 16, **kwargs):
        super().__init__(**kwargs)
        if int(sample_stride) < 1:
            raise ValueError(f"`sample_stride` must be at least 1. Received: sample_stride={sample_stride}")
        self.sample_stride = int(sample_stride)

    def call(self, images):
        shape = ops.shape(images)
        pixels = ops.reshape(images, (shape[0], -1, shape[-1]))[:, :: self.sample_stride]
        background = ops.quantile(pixels, 0.5, axis=1, method="nearest")
        background = ops.reshape(background, (shape[0], 1, 1, shape[-1]))
        return ops.max(ops.abs(images - background), axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "sample_stride": self.sample_stride}


OUTPUT_KINDS = ("positions", "ctc", "seq2seq")


@keras.saving.register_keras_serializable(package="captcha_kit")
class Grayscale(layers.Layer):
    """Luminance of RGB pixels, the ITU-R 601 weights PIL's `convert("L")` uses: 0.299 R + 0.587 G + 0.114 B.

    What "convert the images to grayscale" means in the assignment; kept as a
    layer so that a grayscale model still takes the raw RGB image. No weights.

    Input: (batch, height, width, 3) floats. Output: (batch, height, width, 1).
    """

    def call(self, images):
        weights = ops.convert_to_tensor([0.299, 0.587, 0.114], dtype=images.dtype)
        return ops.sum(images * weights, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)


@keras.saving.register_keras_serializable(package="captcha_kit")
class AlphabetTag(layers.Layer):
    """The model's output layer: passes the scores through and records the alphabet in the `.keras` file.

    `models.get_model` ends every model with this layer, named `characters`,
    so a saved model carries the characters it reads (in class order), the
    label length (the longest, and the shortest for variable-length labels)
    and the kind of scores it gives (see `OUTPUT_KINDS`).
    Evaluation and inference read them back with `model_alphabet` and need no
    side file. It has no weights and costs nothing.

    Args:
        characters: The alphabet's characters in class order.
        length: The label length (the longest label).
        min_length: The shortest label; None (files saved before variable
            lengths existed, and fixed-length alphabets) means `length`.
        ctc: True when the scores are (batch, time steps, classes + 1), the
            last class being the CTC blank (files saved before `kind` existed).
        kind: "positions" (batch, length, classes), "ctc" (as `ctc`) or
            "seq2seq": (batch, length + 1, classes + 3), one greedy decoder
            step per character then the end token; the classes are the
            characters, end, pad and start (`models.seq2seq`).
    """

    def __init__(
        self,
        characters: str,
        length: int,
        ctc: bool = False,
        kind: str | None = None,
        min_length: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        kind = kind or ("ctc" if ctc else "positions")
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"`kind` must be one of {OUTPUT_KINDS}. Received: kind={kind!r}")
        self.characters, self.length, self.kind = characters, int(length), kind
        self.min_length = self.length if min_length is None else int(min_length)
        self.ctc = kind == "ctc"

    def call(self, scores):
        return scores

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "characters": self.characters,
            "length": self.length,
            "min_length": self.min_length,
            "ctc": self.ctc,
            "kind": self.kind,
        }


def find_alphabet_tag(model: keras.Model) -> AlphabetTag | None:
    """The model's `AlphabetTag` layer, or None for models made before the kit recorded alphabets."""
    for layer in reversed(model.layers):
        if isinstance(layer, AlphabetTag):
            return layer
    return None


def is_ctc_model(model: keras.Model) -> bool:
    """True when the model's scores are per CTC time step (see `AlphabetTag`)."""
    return output_kind(model) == "ctc"


def output_kind(model: keras.Model) -> str:
    """The kind of scores the model gives (see `AlphabetTag`); "positions" for untagged models."""
    tag = find_alphabet_tag(model)
    return tag.kind if tag else "positions"
