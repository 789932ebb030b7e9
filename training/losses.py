"""The loss of every kit model, chosen by the kind of scores it declares, and Mean Teacher's consistency cost.

`ClassLoss` is a Keras `Loss`, so it reduces over the batch exactly as
Keras's own losses do: a model with one softmax per position and no label
smoothing gets the very numbers of `keras.losses.SparseCategoricalCrossentropy`.
"""

from __future__ import annotations

import keras
from keras import ops

from models.seq2seq import decoder_targets

REDUCTIONS = ("mean", "sum")


class ClassLoss(keras.losses.Loss):
    """The labelled loss for a model's kind of scores (`models.metadata.OUTPUT_KINDS`).

    - "positions": cross-entropy of each position's softmax;
    - "seq2seq": cross-entropy of each decoder step against the characters,
      the end token and the padding (`models.seq2seq.decoder_targets`);
    - "ctc": connectionist temporal classification on the time steps, whose
      last class is the blank; codes of -1 pad labels shorter than `length`.

    Args:
        kind: The model's kind of scores.
        num_characters: Classes of the alphabet.
        label_smoothing: Spread this much of each target's mass over all classes (cross-entropy only).
        steps: How the cross-entropy of an image combines its positions or
            steps: "mean" (the supervised objective) or "sum" (the
            semi-supervised solver's Mean Teacher stage). The loss is then
            averaged over the batch.
    """

    def __init__(
        self, kind: str, num_characters: int, label_smoothing: float = 0.0, steps: str = "mean", name="class_loss"
    ):
        if steps not in REDUCTIONS:
            raise ValueError(f"`steps` must be one of {REDUCTIONS}. Received: steps={steps!r}")
        if kind == "ctc" and label_smoothing:
            raise ValueError(f"Label smoothing applies to cross-entropy, not to CTC. Received: {label_smoothing}")
        super().__init__(name=name, reduction="sum_over_batch_size")
        self.kind, self.num_characters = kind, int(num_characters)
        self.label_smoothing, self.steps = float(label_smoothing), steps

    def call(self, codes, scores):
        codes = ops.cast(codes, "int32")
        if self.kind == "ctc":
            return ctc_loss(codes, scores)
        if self.kind == "seq2seq":
            codes = decoder_targets(codes, self.num_characters)
        if self.label_smoothing:
            classes = scores.shape[-1]
            targets = ops.one_hot(codes, classes, dtype=scores.dtype)
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / classes
            per_step = keras.losses.categorical_crossentropy(targets, scores)
        else:
            per_step = keras.losses.sparse_categorical_crossentropy(codes, scores)
        # Per step, "mean" leaves the batch-and-step average to the reduction: Keras's own arithmetic.
        return per_step if self.steps == "mean" else ops.sum(per_step, axis=-1)


def ctc_loss(codes, scores):
    """CTC loss per image of softmax scores (batch, time steps, classes + blank) against padded codes."""
    target_length = ops.sum(ops.cast(codes >= 0, "int32"), axis=-1)
    shape = ops.shape(scores)
    output_length = ops.full((shape[0],), shape[1], dtype="int32")
    # ctc_loss takes logits; the log of a softmax is a valid set of logits for it.
    return ops.ctc_loss(
        ops.maximum(codes, 0),
        ops.log(ops.maximum(scores, 1e-7)),
        target_length,
        output_length,
        mask_index=scores.shape[-1] - 1,
    )


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
