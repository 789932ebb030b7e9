"""The supervised training objective that wraps a plain model: teacher forcing for seq2seq, label smoothing.

    objective = Supervised(model, length=4, label_smoothing=0.1)
    objective.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True))
    objective.fit(ArrayBatches(images, codes, 64, shuffle=True), validation_data=...)
    save_model(objective.model, "model.keras")      # what users get: the plain model

The kit's ordinary models train with `compile_model` and `model.fit`; this
objective exists for what that cannot express. A seq2seq model
(`models.seq2seq`) trains with teacher forcing (its decoder fed the target
codes, through `teacher_forcing_model`) but is validated and saved decoding
greedily; and the semi-supervised solver smooths its labels (0.1). Training
accuracy is that of the teacher-forced decoder; validation accuracy is that of
the greedy one, the model users get.

The gradient step uses TensorFlow's GradientTape, as keras-io's
`trainer_pattern.py` does; the models themselves run on any backend.
"""

from __future__ import annotations

import keras
from keras import ops

from models.layers import output_kind
from models.losses import CTCLoss, sequence_cross_entropy
from models.metrics import accuracy_metrics
from models.seq2seq import end_token, teacher_forcing_model


def require_tensorflow(objective: str) -> None:
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"{objective} takes its gradient steps with TensorFlow. Received: KERAS_BACKEND={keras.backend.backend()}"
        )


class ClassLoss:
    """The labelled loss of any kit model, per image: cross-entropy (per position or decoder step) or CTC.

    Args:
        model: The plain model (its `models.metadata` says which kind of scores it gives).
        num_characters: Classes of the alphabet.
        label_smoothing: For cross-entropy.
        reduction: "mean" or "sum" over positions/steps (see `sequence_cross_entropy`).
    """

    def __init__(self, model, num_characters: int, label_smoothing: float = 0.0, reduction: str = "mean"):
        self.kind = output_kind(model)
        self.label_smoothing, self.reduction = label_smoothing, reduction
        self.end_token = end_token(num_characters) if self.kind == "seq2seq" else None
        self.ctc = CTCLoss(reduction=None) if self.kind == "ctc" else None

    def __call__(self, codes, scores):
        if self.ctc is not None:
            return self.ctc(codes, scores)
        return sequence_cross_entropy(codes, scores, self.label_smoothing, self.reduction, self.end_token)


class Supervised(keras.Model):
    """Trains a plain model on labelled batches; `call` is the plain model (greedy for seq2seq).

    Args:
        model: A model from `models.get_model` (or loaded from a `.keras` file).
        num_characters: Classes of the alphabet.
        length: Characters per label.
        label_smoothing: Label smoothing of the cross-entropy.
    """

    def __init__(self, model: keras.Model, num_characters: int, length: int, label_smoothing: float = 0.0, **kwargs):
        require_tensorflow("Supervised")
        super().__init__(name=f"{model.name}_supervised", **kwargs)
        self.model = model
        kind = output_kind(model)
        self.training_model = teacher_forcing_model(model) if kind == "seq2seq" else None
        self.class_loss = ClassLoss(model, num_characters, label_smoothing)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = accuracy_metrics(length, kind=kind)

    @property
    def metrics(self):
        return [self.loss_tracker, *self.accuracy]

    def call(self, images, training=False):
        return self.model(images, training=training)

    def train_step(self, data):
        import tensorflow as tf

        images, codes = data
        with tf.GradientTape() as tape:
            if self.training_model is not None:
                scores = self.training_model([images, codes], training=True)
            else:
                scores = self.model(images, training=True)
            loss = ops.mean(self.class_loss(codes, scores))
            if self.model.losses:
                loss = loss + ops.sum(self.model.losses)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._update(loss, codes, scores)

    def test_step(self, data):
        images, codes = data
        scores = self.model(images, training=False)
        return self._update(ops.mean(self.class_loss(codes, scores)), codes, scores)

    def _update(self, loss, codes, scores):
        self.loss_tracker.update_state(loss)
        for metric in self.accuracy:
            metric.update_state(codes, scores)
        return {metric.name: metric.result() for metric in self.metrics}
