"""The accuracy measures of the kit: per character position and per whole CAPTCHA.

The NumPy functions score decoded predictions (evaluation, grading, answers);
the Keras metrics compute the same quantities during `model.fit`.

Codes are (images, length) with -1 for "no character": the padding after a
label shorter than `length` (variable-length alphabets) and the positions a
CTC or seq2seq model left unread. Both sides are compared code by code, so a
padded position of the truth counts as right only when the model read no
character there either. Position p's accuracy is therefore the fraction of
images whose p-th character is right, where a label with no p-th character
asks the model to stop before it; whole accuracy is the fraction of images
whose text read equals the label (no character missing, none extra).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from models.decoding import ctc_greedy_codes, seq2seq_greedy_codes


def position_accuracies(true_codes, predicted_codes) -> np.ndarray:
    """Fraction of images whose character at each position is right; shape (length,)."""
    true_codes, predicted_codes = _check_codes(true_codes, predicted_codes)
    return (true_codes == predicted_codes).mean(axis=0)


def sequence_accuracy(true_codes, predicted_codes) -> float:
    """Fraction of images whose every character is right (whole-CAPTCHA accuracy)."""
    true_codes, predicted_codes = _check_codes(true_codes, predicted_codes)
    return float((true_codes == predicted_codes).all(axis=1).mean())


def confusion_counts(true_codes, predicted_codes, classes: int) -> np.ndarray:
    """Counts of (true character, read character) over all positions: int array (classes, classes).

    Positions a CTC model left unread and the padding of short labels (code
    -1 on either side) are not counted; indexing with -1 would silently count
    them as the last class.
    """
    true_codes, predicted_codes = np.ravel(true_codes), np.ravel(predicted_codes)
    both = (true_codes >= 0) & (predicted_codes >= 0)
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (true_codes[both], predicted_codes[both]), 1)
    return counts


def _check_codes(true_codes, predicted_codes):
    true_codes, predicted_codes = np.asarray(true_codes), np.asarray(predicted_codes)
    if true_codes.shape != predicted_codes.shape or true_codes.ndim != 2 or len(true_codes) == 0:
        raise ValueError(
            "Expected true and predicted codes of the same shape (images, length). "
            f"Received: {true_codes.shape} and {predicted_codes.shape}"
        )
    return true_codes, predicted_codes


def _correct_characters(y_true, y_pred, kind: str = "positions"):
    """Boolean (batch, length): sparse or one-hot targets against per-position, CTC or seq2seq scores.

    Sparse targets may be padded with -1 (labels shorter than `length`); the
    CTC and seq2seq decoders give -1 where they read no character, so the
    padding counts as right exactly when nothing was read there.
    """
    if kind == "seq2seq":
        predicted = seq2seq_greedy_codes(y_pred, y_true.shape[-1])[0]
    elif kind == "ctc":
        # Sparse targets only: a CTC target may be shorter than `length`, padded with -1.
        predicted = ctc_greedy_codes(y_pred, y_true.shape[-1])[0]
    else:
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.argmax(y_true, axis=-1)
        predicted = ops.argmax(y_pred, axis=-1)
    return ops.equal(ops.cast(y_true, "int32"), ops.cast(predicted, "int32"))


@keras.saving.register_keras_serializable(package="captcha_kit")
class PositionAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy of the character at one position (e.g. the first digit).

    Args:
        position: Which character, from 0.
        kind: The kind of scores the model gives (`models.metadata.OUTPUT_KINDS`).
    """

    def __init__(self, position: int, kind: str = "positions", name: str | None = None, dtype=None):
        super().__init__(
            fn=lambda y_true, y_pred: ops.cast(_correct_characters(y_true, y_pred, kind)[:, position], "float32"),
            name=name or f"digit_{position}_accuracy",
            dtype=dtype,
        )
        self.position, self.kind = position, kind

    def get_config(self):
        return {"position": self.position, "kind": self.kind, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="captcha_kit")
class SequenceAccuracy(keras.metrics.MeanMetricWrapper):
    """Whole-CAPTCHA accuracy: every character of the image right."""

    def __init__(self, kind: str = "positions", name: str = "whole_accuracy", dtype=None):
        super().__init__(
            fn=lambda y_true, y_pred: ops.cast(ops.all(_correct_characters(y_true, y_pred, kind), axis=-1), "float32"),
            name=name,
            dtype=dtype,
        )
        self.kind = kind

    def get_config(self):
        return {"kind": self.kind, "name": self.name, "dtype": self.dtype}


def accuracy_metrics(length: int, kind: str = "positions", prefix: str = "") -> list:
    """The metrics every training run reports: one per position, then whole accuracy.

    Args:
        length: Characters per label.
        kind: The kind of scores the model gives (`models.metadata.OUTPUT_KINDS`).
        prefix: Put before each metric name (e.g. "teacher_").
    """
    return [
        PositionAccuracy(position, kind=kind, name=f"{prefix}digit_{position}_accuracy") for position in range(length)
    ] + [SequenceAccuracy(kind=kind, name=f"{prefix}whole_accuracy")]
