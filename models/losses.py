"""Training objectives beyond Keras's own losses: CTC for models that read a sequence of time steps."""

from __future__ import annotations

import keras
from keras import ops

from models.seq2seq import decoder_targets


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


@keras.saving.register_keras_serializable(package="captcha_kit")
class SequenceCrossEntropy(keras.losses.Loss):
    """Cross-entropy of a seq2seq model's greedy decoder steps against the labels and the end token.

    What `compile_model` gives a seq2seq model, so that plain `model.fit` trains
    it too (free-running: each step is fed the model's own argmax, like the
    Mean Teacher stage). Supervised training with teacher forcing goes through
    `models.supervised.Supervised` instead.

    Args:
        end_token: The class of the end token (the number of characters).
        label_smoothing: Spread this much of each target's mass over all classes.
    """

    def __init__(self, end_token: int, label_smoothing: float = 0.0, name="sequence_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.end_token, self.label_smoothing = int(end_token), float(label_smoothing)

    def call(self, y_true, y_pred):
        return sequence_cross_entropy(y_true, y_pred, self.label_smoothing, "mean", self.end_token)

    def get_config(self):
        return {**super().get_config(), "end_token": self.end_token, "label_smoothing": self.label_smoothing}


def sequence_cross_entropy(
    codes, scores, label_smoothing: float = 0.0, reduction: str = "mean", end_token: int | None = None
):
    """Cross-entropy of softmax scores against class codes at each position or decoder step, per image.

    Args:
        codes: (batch, length) int class codes.
        scores: (batch, steps, classes) softmax scores; steps is length, or
            length + 1 for seq2seq scores.
        label_smoothing: Spread this much of each target's mass over all classes.
        reduction: "mean" over the steps (the solver's supervised stage) or
            "sum" (its Mean Teacher stage).
        end_token: For seq2seq scores: the class of the end token `$` (the
            number of characters); the targets become `decoder_targets`: the
            characters, `$`, then pad tokens after a label shorter than `length`.

    Returns:
        (batch,) losses.
    """
    codes = ops.cast(codes, "int32")
    classes = scores.shape[-1]
    if end_token is not None:
        codes = decoder_targets(codes, end_token)
    targets = ops.one_hot(codes, classes, dtype=scores.dtype)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / classes
    per_step = -ops.sum(targets * ops.log(ops.clip(scores, 1e-7, 1.0)), axis=-1)
    return ops.mean(per_step, axis=1) if reduction == "mean" else ops.sum(per_step, axis=1)


def softmax_mse(student_scores, teacher_scores):
    """Mean Teacher's consistency cost: squared difference of two softmax outputs, per image.

    Summed over the steps and averaged over the classes, as the semi-supervised
    solver's `ConsistentLoss` does (its mean over the batch is taken by the caller).

    Args:
        student_scores: (batch, steps, classes) softmax scores.
        teacher_scores: The same shape; no gradient should flow into them.

    Returns:
        (batch,) costs.
    """
    return ops.sum(ops.mean(ops.square(student_scores - teacher_scores), axis=-1), axis=-1)
