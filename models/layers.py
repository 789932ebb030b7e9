"""The kit's weightless image layers, built from Keras's own layers and operations, and the legacy classes.

`foreground_map` and `grayscale` are functions that add built-in Keras
layers and `keras.ops` operations to a Functional model. Keras serializes
those operations as its own (module `keras.src.ops.numpy`), so a model built
with them loads with plain `keras.models.load_model`, in safe mode, in a
Python that does not have the kit.

The classes below them (`ForegroundMap`, `Grayscale`, `AlphabetTag`) are
legacy readers: files saved by earlier versions of the kit (reference/stage1.keras,
stage2.keras, the fixtures in tests/fixtures) name them, so they stay
registered; the kit no longer builds them into new models. `ForegroundMap`
and `foreground_map` compute the same numbers, so converting an old file
(`python export.py OLD.keras --format keras`, `models.convert`) keeps its weights and its scores.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from models.metadata import OUTPUT_KINDS, attach_metadata, model_metadata  # noqa: F401  (OUTPUT_KINDS: re-exported)

FOREGROUND_SAMPLE_STRIDE = 16
# Written into the configuration of the kit's remaining custom layers (`needs`): where the kit is not
# imported, Keras's "Could not locate class" error prints the layer's whole configuration, this included.
KIT_NEEDED = (
    "captcha-kit: this layer is the kit's own; `import models` from the kit's repository root "
    "(or put that folder on sys.path) before keras.models.load_model"
)


def foreground_map(images, sample_stride: int = FOREGROUND_SAMPLE_STRIDE, name: str = "foreground"):
    """Removes the random colours: per pixel, the largest channel distance from the background colour.

    multicolorcaptcha paints one random background colour and each digit in a
    random contrasting colour, so the shapes a network must learn hide behind
    colours it must learn to ignore. The background is the image's median
    colour (it covers most pixels); `max_c |pixel_c - background_c|` is then
    high on the digit and its lines whatever the colours are. No weights.

    The median is taken over every `sample_stride`-th pixel (in row-major
    order) rather than all of them: sorting every pixel took half the time of
    a whole cellnet prediction, and because the background covers most of the
    image, the sample's median is the same colour. On 2,048 validation
    images (2x downscaled strips) stride 16 gave outputs identical to the full
    median, 2.5x faster (`python -m bench.check_foreground_sampling`).

    Built only of Keras's layers and `keras.ops` (a reshape, a strided slice,
    `ops.sort`, an index, `ops.abs`, `ops.max`), so the saved model needs no
    custom class; the numbers are those of the legacy `ForegroundMap` layer,
    whose `ops.quantile(method="nearest")` takes the sorted sample's element
    at `round((count - 1) / 2)`, half to even. Not `ops.quantile` itself: in
    a Functional model Keras 3.15 drops its `method` (`Quantile.call` does
    not pass it on) and interpolates linearly, a different colour.

    Args:
        images: (batch, height, width, channels) floats: a Keras tensor of a
            Functional model being built, or an eager array.
        sample_stride: Use every this many pixels for the median (1: all).
        name: Name of the final layer, an `Identity` whose output is the map
            (`bench.bench_inference` splits models there); the other layers
            are named after it.

    Returns:
        (batch, height, width, 1).

    Raises:
        ValueError: `sample_stride` below 1, or images without a fixed size.
    """
    if int(sample_stride) < 1:
        raise ValueError(f"`sample_stride` must be at least 1. Received: sample_stride={sample_stride}")
    height, width, channels = images.shape[1:]
    if height is None or width is None:
        raise ValueError(f"foreground_map needs images of a fixed size. Received: shape {tuple(images.shape)}")
    pixels = layers.Reshape((height * width, channels), name=f"{name}_pixels")(images)
    if int(sample_stride) > 1:
        pixels = pixels[:, :: int(sample_stride)]
    count = -(-height * width // int(sample_stride))  # Pixels in the sample.
    median_index = round((count - 1) * 0.5)  # Python rounds half to even, as tf.round in ops.quantile.
    background = ops.sort(pixels, axis=1)[:, median_index]
    background = layers.Reshape((1, 1, channels), name=f"{name}_background")(background)
    distance = ops.max(ops.abs(images - background), axis=-1, keepdims=True)
    return layers.Identity(name=name)(distance)


def grayscale(images, name: str = "grayscale"):
    """Luminance of RGB pixels, the ITU-R 601 weights PIL's `convert("L")` uses: 0.299 R + 0.587 G + 0.114 B.

    What "convert the images to grayscale" means in the assignment; inside the
    model, so that a grayscale model still takes the raw RGB image. Built of
    `keras.ops` only (no weights, no custom class).

    Args:
        images: (batch, height, width, 3) floats.
        name: Name of the final `Identity` layer.

    Returns:
        (batch, height, width, 1).
    """
    luminance = 0.299 * images[..., 0:1] + 0.587 * images[..., 1:2] + 0.114 * images[..., 2:3]
    return layers.Identity(name=name)(luminance)


def find_alphabet_tag(model: keras.Model) -> AlphabetTag | None:
    """The model's legacy `AlphabetTag` layer (files saved by earlier versions of the kit), or None."""
    for layer in reversed(model.layers):
        if isinstance(layer, AlphabetTag):
            return layer
    return None


def is_ctc_model(model: keras.Model) -> bool:
    """True when the model's scores are per CTC time step (see `models.metadata`)."""
    return output_kind(model) == "ctc"


def output_kind(model: keras.Model) -> str:
    """The kind of scores the model gives (`OUTPUT_KINDS`, recorded in `models.metadata`).

    "positions" for models that record nothing (plain Keras and foreign models).
    """
    metadata = model_metadata(model)
    return metadata.kind if metadata else "positions"


# Legacy readers: every class below is named by files saved by earlier versions of the kit; new models do not use them.


@keras.saving.register_keras_serializable(package="captcha_kit")
class ForegroundMap(layers.Layer):
    """Legacy: the layer form of `foreground_map` (same numbers), in files saved by earlier versions of the kit.

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


@keras.saving.register_keras_serializable(package="captcha_kit")
class Grayscale(layers.Layer):
    """Legacy: the layer form of `grayscale`, in files saved by earlier versions of the kit. No weights.

    Input: (batch, height, width, 3) floats. Output: (batch, height, width, 1).
    """

    def call(self, images):
        weights = ops.convert_to_tensor([0.299, 0.587, 0.114], dtype=images.dtype)
        return ops.sum(images * weights, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)


@keras.saving.register_keras_serializable(package="captcha_kit")
class AlphabetTag(layers.Layer):
    """Legacy: the output layer, named `characters`, of models saved by earlier kit versions; passes scores through.

    Its configuration records the characters the model reads (in class
    order), the label length (the longest, and the shortest for
    variable-length labels) and the kind of scores (see `OUTPUT_KINDS`).
    New models end in a built-in `Identity` layer named `characters` and keep
    those facts in the file's `captcha_kit.json` (`models.metadata`), which
    `models.metadata.model_metadata` reads for both. No weights.

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


LEGACY_LAYERS = (ForegroundMap, Grayscale, AlphabetTag)


def has_legacy_layers(model: keras.Model) -> bool:
    """True when `model` (or a model nested in it) holds one of `LEGACY_LAYERS`."""
    for layer in model.layers:
        if isinstance(layer, LEGACY_LAYERS):
            return True
        inner = getattr(layer, "layer", layer)  # TimeDistributed and Bidirectional wrap a layer.
        if isinstance(inner, keras.Model) and has_legacy_layers(inner):
            return True
    return False


def replace_legacy_layers(model: keras.Model) -> keras.Model:
    """The same network with every legacy layer replaced by its built-in form; the other layers are shared.

    `ForegroundMap` becomes `foreground_map`, `Grayscale` becomes `grayscale`
    and `AlphabetTag` an `Identity` of the same name (`characters`); each
    computes the same numbers, so the scores do not change. Every other layer
    is reused (not copied), weights included. A model without legacy layers
    is returned as it is. What the model records (`models.metadata`) is
    carried over.

    Args:
        model: A Functional model, e.g. loaded from a file saved by earlier versions of the kit.

    Returns:
        A Functional model made only of Keras's layers and operations (and
        the kit's other custom layers, such as seq2seq's `AttentionDecoder`).
    """
    if not has_legacy_layers(model):
        return model

    def reuse(layer):
        return layer

    def call(layer, *args, **kwargs):
        if isinstance(layer, ForegroundMap):
            return foreground_map(args[0], layer.sample_stride, name=layer.name)
        if isinstance(layer, Grayscale):
            return grayscale(args[0], name=layer.name)
        if isinstance(layer, AlphabetTag):
            return layers.Identity(name=layer.name)(args[0])
        return layer(*args, **kwargs)

    rebuilt = keras.models.clone_model(model, clone_function=reuse, call_function=call, recursive=True)
    return attach_metadata(rebuilt, model_metadata(model))
