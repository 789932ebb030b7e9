"""CAPTCHA readers on a `keras.applications` backbone (EfficientNetB0, MobileNetV3Small, ResNet50, ...).

    python train.py --model keras_application --backbone EfficientNetB0 --weights imagenet
    python train.py --model keras_application --backbone ResNet50 --weights ~/Downloads/resnet50_notop.h5

The backbone is the application without its classifier (`include_top=False`),
on the cropped text strip, followed by global average pooling and one softmax
head per character. Each application expects its own input scaling; the
model does it with layers (`PREPROCESSING`), so it takes raw 0-255 pixels
like every kit model.

ImageNet weights (`weights="imagenet"`) are downloaded by Keras into
`$KERAS_HOME/models` (default `~/.keras/models`) on first use. Offline, the
error names the file to place there and the address it comes from; a path
to the weights file itself (`weights=PATH`) also works.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras
from keras import layers, ops

from core.multicolor import text_margins
from models.blocks import image_input, pooled_character_heads
from models.registry import register_model

# Input scaling each application's ImageNet weights expect, when the application does not do it itself
# (EfficientNet, EfficientNetV2, MobileNetV3, ConvNeXt and RegNet take 0-255 pixels and scale them inside).
SCALES_ITSELF = ("EfficientNet", "MobileNetV3", "ConvNeXt", "RegNet")
CAFFE_STYLE = ("ResNet50", "ResNet101", "ResNet152", "VGG16", "VGG19")  # BGR, ImageNet mean subtracted.
TORCH_STYLE = ("DenseNet",)  # [0, 1], then ImageNet mean and standard deviation.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, mode "caffe".


@keras.saving.register_keras_serializable(package="captcha_kit")
class ReverseChannels(layers.Layer):
    """Legacy (files saved by earlier versions of the kit): RGB to BGR, now `ops.flip` in `scale_for`. No weights."""

    def call(self, images):
        return ops.flip(images, axis=-1)


def preprocessing_style(application: str) -> str:
    """'none' (the application scales itself), 'caffe', 'torch' or 'tf' ([-1, 1])."""
    if application.startswith(SCALES_ITSELF):
        return "none"
    if application in CAFFE_STYLE:
        return "caffe"
    if application.startswith(TORCH_STYLE):
        return "torch"
    return "tf"


def scale_for(application: str, x):
    """The layers that turn 0-255 RGB pixels into what `application`'s ImageNet weights expect."""
    style = preprocessing_style(application)
    if style == "caffe":
        # RGB to BGR, the channel order of Caffe-style weights; a keras.ops call, so no custom class.
        x = layers.Identity(name="rgb_to_bgr")(ops.flip(x, axis=-1))
        return layers.Normalization(mean=list(CAFFE_MEAN_BGR), variance=[1.0, 1.0, 1.0], name="subtract_mean")(x)
    if style == "torch":
        x = layers.Rescaling(1.0 / 255, name="scale")(x)
        variance = [value**2 for value in IMAGENET_STD_RGB]
        return layers.Normalization(mean=list(IMAGENET_MEAN_RGB), variance=variance, name="normalize")(x)
    if style == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(x)
    return x


def keras_weights_folder() -> Path:
    """Where Keras keeps downloaded application weights: `$KERAS_HOME/models`, default `~/.keras/models`."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def build_application_backbone(application: str, input_shape, weights=None, **options) -> keras.Model:
    """`keras.applications.<application>(include_top=False)` with clear errors for names and offline weights.

    Args:
        application: A class name in `keras.applications`, e.g. "EfficientNetB0".
        input_shape: (height, width, 3) of the images it gets.
        weights: None, "imagenet" or the path to a weights file.
        **options: Passed to the application (e.g. `alpha=0.75`).

    Raises:
        ValueError: No such application.
        FileNotFoundError: The weights file is missing, or the ImageNet file
            cannot be downloaded and is not in the Keras cache (the message
            names the file and folder).
    """
    constructor = getattr(keras.applications, application, None)
    if not callable(constructor) or not application[:1].isupper():
        raise ValueError(f"Unknown keras.applications backbone {application!r}; e.g. EfficientNetB0, ResNet50.")
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(f"Weights file not found: {weights}")
    try:
        return constructor(include_top=False, weights=weights, input_shape=tuple(input_shape), **options)
    except Exception as error:  # Keras raises a bare Exception when the download fails.
        url = re.search(r"(https?://\S+?\.h5)", str(error))
        if weights != "imagenet" or url is None:
            raise
        file_name = url.group(1).rsplit("/", 1)[-1]
        raise FileNotFoundError(
            f"Cannot download the ImageNet weights of {application} ({error}). Offline, place {file_name} "
            f"(from {url.group(1)}) in {keras_weights_folder()}/, or pass the file (weights=PATH, "
            "train.py --weights PATH), or train from random weights (train.py --weights none)."
        ) from error


def build_application_reader(
    alphabet,
    image_size,
    backbone="MobileNetV3Small",
    weights=None,
    dropout=0.2,
    name="keras_application",
    **backbone_options,
):
    """Builds a CAPTCHA reader on a `keras.applications` backbone.

    Args:
        alphabet: Characters and label length.
        image_size: (height, width) of the raw images.
        backbone: The `keras.applications` class name.
        weights: None (random), "none", "imagenet" or a path to a weights file.
        dropout: Dropout on the pooled features.
        name: Model name.
        **backbone_options: Passed to the application.
    """
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    inputs = image_input(image_size)
    x = inputs
    crop = text_margins(image_size)
    if any(crop):
        x = layers.Cropping2D((tuple(crop), (0, 0)), name="crop_strip")(x)
    if min(x.shape[1:3]) < 32:
        raise ValueError(
            f"{name}: keras.applications.{backbone} needs at least 32x32 pixels; "
            f"image size {tuple(image_size)} gives {x.shape[1]} rows and {x.shape[2]} columns."
        )
    x = scale_for(backbone, x)
    x = build_application_backbone(backbone, x.shape[1:], weights, **backbone_options)(x)
    outputs = pooled_character_heads(x, alphabet, dropout)
    return keras.Model(inputs, outputs, name=name)


@register_model
def keras_application(alphabet, image_size, **options):
    """A `keras.applications` backbone (option `backbone`, default MobileNetV3Small; `weights="imagenet"`)."""
    return build_application_reader(alphabet, image_size, **options)


@register_model
def keras_application_tiny(alphabet, image_size, **options):
    """A small MobileNetV3Small (alpha 0.5, minimalistic) from random weights, for tests."""
    options.setdefault("alpha", 0.5)
    options.setdefault("minimalistic", True)
    return build_application_reader(alphabet, image_size, name="keras_application_tiny", **options)
