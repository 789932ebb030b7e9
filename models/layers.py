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

    Input: (batch, height, width, channels) floats. Output: (batch, height, width, 1).
    """

    def call(self, images):
        shape = ops.shape(images)
        pixels = ops.reshape(images, (shape[0], -1, shape[-1]))
        background = ops.quantile(pixels, 0.5, axis=1, method="nearest")
        background = ops.reshape(background, (shape[0], 1, 1, shape[-1]))
        return ops.max(ops.abs(images - background), axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)
