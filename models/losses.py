"""Training objectives beyond Keras's own losses: CTC for models that read a sequence of time steps."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="captcha_kit")
class CTCLoss(keras.losses.Loss):
    """Connectionist temporal classification loss on softmax scores whose last class is the blank.

    Targets are the kit's sparse class codes (batch, length); codes of -1 pad
    labels shorter than `length`, so one batch may mix label lengths. Every
    image uses all of the model's time steps.
    """

    def __init__(self, name: str = "ctc_loss", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        target_length = ops.sum(ops.cast(y_true >= 0, "int32"), axis=-1)
        shape = ops.shape(y_pred)
        output_length = ops.full((shape[0],), shape[1], dtype="int32")
        # ctc_loss takes logits; the log of a softmax is a valid set of logits for it.
        return ops.ctc_loss(
            ops.maximum(y_true, 0),
            ops.log(ops.maximum(y_pred, 1e-7)),
            target_length,
            output_length,
            mask_index=y_pred.shape[-1] - 1,
        )
