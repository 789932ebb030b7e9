"""Fitting raw CAPTCHA images to the input a student's model declares.

The kit's own models take the raw 144x256x3 image with values 0-255 and do
their preprocessing as layers. Student models declare what they were trained
on instead: another size (the Kaggle post uses 50x200), one grayscale channel,
values scaled to [0, 1] or left at 0-255. `plan_input` reads the declared
input shape and decides; `InputPlan.apply` turns a batch of raw images into it.

Scale, when not chosen by the user (`scale="auto"`): a model that holds a
`Rescaling` or `Normalization` layer scales its input itself, so it gets raw
0-255 values (the kit's models, and students who followed the Keras
tutorials); any other model gets [0, 1], what the assignment's snippet and the
Kaggle post feed (`X / 255.0`). A model cannot say which it expects, so the
grading report names the choice and `--input-scale` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SCALES = ("auto", "unit", "raw")
SELF_SCALING_LAYERS = ("Rescaling", "Normalization")


@dataclass(frozen=True)
class InputPlan:
    """How raw (N, height, width, 3) uint8 images become what a model takes.

    Attributes:
        size: (height, width) to resize to; None keeps the image size.
        channels: 3 (RGB), 1 (grayscale) or 4 (RGBA, opaque); None for a
            grayscale input declared without a channel axis, (N, height, width).
        scale: "unit" for [0, 1] floats, "raw" for 0-255 floats.
        reason: Why this scale was chosen (for the report).
    """

    size: tuple[int, int] | None
    channels: int | None
    scale: str
    reason: str = ""

    def describe(self, image_size: tuple[int, int]) -> str:
        """One phrase for the report, e.g. 'resize 144x256 to 50x200, grayscale, [0, 1]'."""
        height, width = image_size
        if self.size is None or tuple(self.size) == (height, width):
            size = f"{height}x{width} as is"
        else:
            size = f"resize {height}x{width} to {self.size[0]}x{self.size[1]}"
        colour = {3: "RGB", 1: "grayscale", None: "grayscale (no channel axis)", 4: "RGBA"}[self.channels]
        values = "[0, 1]" if self.scale == "unit" else "0-255"
        return f"{size}, {colour}, {values}" + (f" ({self.reason})" if self.reason else "")

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Turns raw uint8 RGB images (N, height, width, 3) into float32 model input."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"Expected raw RGB images of shape (N, height, width, 3). Received: {images.shape}")
        grayscale = self.channels in (1, None)
        resize = self.size is not None and tuple(self.size) != images.shape[1:3]
        if grayscale or resize:
            images = np.stack([self._convert(image, grayscale, resize) for image in images])
        images = images.astype("float32")
        if self.scale == "unit":
            images /= 255.0
        if self.channels == 1 and images.ndim == 3:
            images = images[..., np.newaxis]
        elif self.channels == 4:
            opaque = np.full((*images.shape[:3], 1), 1.0 if self.scale == "unit" else 255.0, "float32")
            images = np.concatenate([images, opaque], axis=-1)
        return images

    def _convert(self, image: np.ndarray, grayscale: bool, resize: bool) -> np.ndarray:
        # PIL's grayscale (ITU-R 601 luma) and bilinear resize: the same
        # transforms cv2.imread(..., IMREAD_GRAYSCALE) and cv2.resize apply in
        # the snippets students follow.
        picture = Image.fromarray(image)
        if grayscale:
            picture = picture.convert("L")
        if resize:
            picture = picture.resize((self.size[1], self.size[0]), Image.BILINEAR)
        return np.asarray(picture)


def plan_input(model, scale: str = "auto") -> InputPlan:
    """Reads the input a model declares and plans how to feed raw images to it.

    Args:
        model: A loaded Keras model with one image input.
        scale: "auto" (see the module docstring), "unit" or "raw".

    Raises:
        ValueError: The model has several inputs, or an input that is not an
            image of 1, 3 or 4 channels.
    """
    if scale not in SCALES:
        raise ValueError(f"`scale` must be one of {SCALES}. Received: scale={scale!r}")
    if len(model.inputs) != 1:
        raise ValueError(f"The model has {len(model.inputs)} inputs; expected one image input.")
    shape = tuple(model.inputs[0].shape)
    if len(shape) == 3:
        height, width, channels = shape[1], shape[2], None
    elif len(shape) == 4 and shape[3] in (1, 3, 4):
        height, width, channels = shape[1:]
    else:
        raise ValueError(
            f"The model takes inputs of shape {shape}; expected images (batch, height, width, channels) "
            "with 1, 3 or 4 channels, or (batch, height, width)."
        )
    size = None if height is None or width is None else (int(height), int(width))
    reason = ""
    if scale == "auto":
        scaling_layer = find_scaling_layer(model)
        scale = "raw" if scaling_layer else "unit"
        reason = f"auto: the model scales itself ({scaling_layer})" if scaling_layer else "auto: no scaling layer"
    return InputPlan(size=size, channels=channels, scale=scale, reason=reason)


def find_scaling_layer(model) -> str | None:
    """'Rescaling layer "scale"' when the model (or a model inside it) scales its own input, else None."""
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ in SELF_SCALING_LAYERS:
            return f'{type(layer).__name__} layer "{layer.name}"'
        inner = find_scaling_layer(layer) if hasattr(layer, "layers") else None
        if inner:
            return inner
    return None
