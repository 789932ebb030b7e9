"""The one training objective of the kit: any model, any kind of scores, supervised or Mean Teacher.

    objective = Objective(model, label_smoothing=0.1)                       # supervised
    objective = Objective(model, mean_teacher=MeanTeacherSettings(0.99, 30))  # semi-supervised
    objective.compile(optimizer=make_optimizer(3e-3, total_steps))
    objective.fit(batches, validation_data=ArrayBatches(val.images, val.codes, 256), callbacks=...)
    save_model(objective.model, "model.keras")   # what users get: the plain model

It wraps a plain model from `models.get_model` (or a `.keras` file) and reads
the model's declared kind of scores (`models.layers.output_kind`) for its
loss (`training.losses.ClassLoss`) and metrics (`models.metrics`):

- **Supervised** (the default): labelled batches (images, codes). A seq2seq
  model trains with teacher forcing (its decoder fed the target codes,
  through `models.seq2seq.teacher_forcing_model`) and is validated decoding
  greedily, as users get it. For a model with one softmax per position and
  no label smoothing, every number is what `model.compile(loss=
  SparseCategoricalCrossentropy())` and Keras's own `train_step` give.
- **Mean Teacher** (Tarvainen & Valpola 2017), with `mean_teacher=`: the
  model is the student of a frozen copy whose weights follow the exponential
  moving average `teacher = decay * teacher + (1 - decay) * student` after
  every optimizer step (all weights, batch-norm statistics included). Each
  batch mixes labelled and unlabelled images (`data.batches.MixedBatches`);
  the loss is the class loss of the labelled images plus `weight *` the
  squared difference of the student's and the teacher's softmax outputs over
  all of them (`training.losses.softmax_mse`). As in the semi-supervised
  CAPTCHA solver, both decode freely (no teacher forcing: unlabelled images
  have no targets), both run with dropout, the class loss sums the steps,
  and the weight is constant unless `rampup_steps` ramps it up with a sigmoid.
  Validation scores the student and the teacher (`val_teacher_...`).

Everything an objective holds (the model, the teacher, the optimizer's
moments and step count) is saved by `save_weights`, so every run resumes
(`training.callbacks.TrainingCheckpoint`).

The step is written once, as a forward pass (`supervised_loss`,
`mean_teacher_loss`), and taken the way Keras's guides take a custom step on
each backend: on TensorFlow with a `GradientTape` and
`optimizer.apply_gradients`; on JAX statelessly, `train_step(state, data)`
returning the new state, with `jax.value_and_grad` over the forward pass run
in a `keras.StatelessScope` (so batch-norm statistics, dropout seeds, the
teacher's EMA and the metrics come back as values, never as side effects);
on PyTorch with `loss.backward()` and `optimizer.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from models.layers import output_kind
from models.metadata import attach_metadata, model_metadata
from models.metrics import accuracy_metrics
from models.seq2seq import teacher_forcing_model
from training.losses import ClassLoss, softmax_mse
from training.ramps import sigmoid_rampup

BACKENDS = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class MeanTeacherSettings:
    """The Mean Teacher part of an objective.

    Args:
        ema_decay: Weight of the old teacher in each update.
        consistency_weight: Weight of the consistency cost (the solver uses 30).
        rampup_steps: Steps of sigmoid ramp-up of that weight (0: constant).
    """

    ema_decay: float = 0.99
    consistency_weight: float = 30.0
    rampup_steps: int = 0

    def __post_init__(self):
        if not 0.0 <= self.ema_decay <= 1.0 or self.consistency_weight < 0 or self.rampup_steps < 0:
            raise ValueError(
                "Expected 0 <= ema_decay <= 1, consistency_weight >= 0 and rampup_steps >= 0. Received: "
                f"ema_decay={self.ema_decay}, consistency_weight={self.consistency_weight}, "
                f"rampup_steps={self.rampup_steps}"
            )


def copy_as_teacher(student: keras.Model) -> keras.Model:
    """A frozen copy of `student` with the same weights (the initial teacher)."""
    teacher = keras.models.clone_model(student)
    teacher.set_weights(student.get_weights())
    teacher.trainable = False
    return attach_metadata(teacher, model_metadata(student))  # clone_model copies layers, not attributes.


def update_ema(teacher: keras.Model, student: keras.Model, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, for every weight (batch-norm statistics too)."""
    for teacher_weight, student_weight in zip(teacher.weights, student.weights):
        teacher_weight.assign(decay * teacher_weight + (1.0 - decay) * student_weight)


class Objective(keras.Model):
    """Trains a plain kit model; `call` is the plain model (greedy for seq2seq).

    Args:
        model: A model from `models.get_model` or a kit `.keras` file (it records its alphabet and kind).
        label_smoothing: Of the cross-entropy.
        mean_teacher: Train `model` as the student of an EMA teacher (default: supervised).
        teacher: The initial teacher of a Mean Teacher objective (default: a copy of `model`).
    """

    def __init__(
        self,
        model: keras.Model,
        label_smoothing: float = 0.0,
        mean_teacher: MeanTeacherSettings | None = None,
        teacher: keras.Model | None = None,
        **kwargs,
    ):
        if keras.backend.backend() not in BACKENDS:
            raise ValueError(
                f"The training objective has steps for the {', '.join(BACKENDS)} backends. "
                f"Received: KERAS_BACKEND={keras.backend.backend()}"
            )
        metadata = model_metadata(model)
        if metadata is None:
            raise ValueError(f"Model {model.name!r} records no alphabet; build it with models.get_model.")
        super().__init__(name=f"{model.name}_objective", **kwargs)
        attach_metadata(self, metadata)  # Readers of `self` (callbacks' `self.model`) find the alphabet.
        self.model, self.kind, self.settings = model, output_kind(model), mean_teacher
        length, characters = metadata.length, len(metadata.characters)
        self.class_loss = ClassLoss(self.kind, characters, label_smoothing, steps="sum" if mean_teacher else "mean")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = accuracy_metrics(length, kind=self.kind)
        self.teacher = self.training_model = None
        if mean_teacher is None:
            self.training_model = teacher_forcing_model(model) if self.kind == "seq2seq" else None
            self.extra_trackers, self.teacher_accuracy = {}, []
        else:
            self.teacher = teacher if teacher is not None else copy_as_teacher(model)
            self.teacher.trainable = False
            self.extra_trackers = {
                name: keras.metrics.Mean(name=name)
                for name in ("class_loss", "consistency_loss", "consistency_weight", "teacher_loss")
            }
            self.teacher_accuracy = accuracy_metrics(length, kind=self.kind, prefix="teacher_")
        self.built = True  # The wrapped models are built; `load_weights` needs to know.

    @property
    def metrics(self):
        return [self.loss_tracker, *self.extra_trackers.values(), *self.accuracy, *self.teacher_accuracy]

    @property
    def plain_models(self) -> dict:
        """The plain models this objective trains, by the validation log entry that scores each."""
        models = {"val_mean_accuracy": self.model}
        if self.teacher is not None:
            models["val_teacher_mean_accuracy"] = self.teacher
        return models

    def call(self, images, training=False):
        return self.model(images, training=training)

    def total_loss(self, codes, scores):
        """The class loss plus the model's own losses (weight regularisers), as Keras's `compute_loss` adds them."""
        loss = self.class_loss(codes, scores)
        return loss + ops.sum(self.model.losses) if self.model.losses else loss

    # The forward passes: the loss to minimise and what the metrics need, on any backend.

    def supervised_loss(self, data):
        images, codes = data
        if self.training_model is not None:
            scores = self.training_model([images, codes], training=True)
        else:
            scores = self.model(images, training=True)
        return self.total_loss(codes, scores), {"codes": codes, "scores": scores, "count": ops.shape(images)[0]}

    def mean_teacher_loss(self, data):
        inputs, codes = data
        labelled, unlabelled = inputs[0], inputs[1]
        teacher_labelled, teacher_unlabelled = (inputs[2], inputs[3]) if len(inputs) == 4 else (labelled, unlabelled)
        images = ops.concatenate([labelled, unlabelled], axis=0)
        teacher_images = ops.concatenate([teacher_labelled, teacher_unlabelled], axis=0)
        labelled_count = ops.shape(labelled)[0]
        # training=True keeps the teacher's dropout on, as the solver does; its frozen batch norm
        # uses the EMA statistics.
        teacher_scores = ops.stop_gradient(self.teacher(teacher_images, training=True))
        weight = self.settings.consistency_weight * sigmoid_rampup(
            self.optimizer.iterations, self.settings.rampup_steps
        )
        scores = self.model(images, training=True)
        class_loss = self.class_loss(codes, scores[:labelled_count])
        consistency = ops.mean(softmax_mse(scores, teacher_scores))
        loss = class_loss + weight * consistency
        if self.model.losses:
            loss = loss + ops.sum(self.model.losses)
        parts = {"class_loss": class_loss, "consistency_loss": consistency, "consistency_weight": weight}
        return loss, {"codes": codes, "scores": scores[:labelled_count], "count": labelled_count, "parts": parts}

    def forward(self, data):
        return self.supervised_loss(data) if self.teacher is None else self.mean_teacher_loss(data)

    def after_step(self) -> None:
        """What follows each optimizer step: the teacher's EMA of the student."""
        if self.teacher is not None:
            update_ema(self.teacher, self.model, self.settings.ema_decay)

    def report(self, loss, outputs) -> dict:
        """Updates the metrics with a step's loss and scores; returns the logs of the step."""
        for name, value in outputs.get("parts", {}).items():
            self.extra_trackers[name].update_state(value)
        self.record(loss, outputs["codes"], outputs["scores"], outputs["count"])
        shown = [self.extra_trackers[name] for name in outputs.get("parts", {})]
        return self.logs([self.loss_tracker, *shown, *self.accuracy])

    def evaluate_batch(self, data) -> dict:
        images, codes = data
        scores = self.model(images, training=False)
        self.record(self.total_loss(codes, scores), codes, scores, ops.shape(images)[0])
        if self.teacher is None:
            return self.logs([self.loss_tracker, *self.accuracy])
        teacher_scores = self.teacher(images, training=False)
        self.extra_trackers["teacher_loss"].update_state(self.class_loss(codes, teacher_scores))
        for metric in self.teacher_accuracy:
            metric.update_state(codes, teacher_scores)
        return self.logs(
            [self.loss_tracker, self.extra_trackers["teacher_loss"], *self.accuracy, *self.teacher_accuracy]
        )

    # The steps, one per backend (Keras calls train_step(data) on TensorFlow and PyTorch, (state, data) on JAX).

    def train_step(self, *arguments):
        backend = keras.backend.backend()
        if backend == "jax":
            return self.jax_train_step(*arguments)
        if backend == "torch":
            return self.torch_train_step(*arguments)
        return self.tensorflow_train_step(*arguments)

    def test_step(self, *arguments):
        if keras.backend.backend() == "jax":
            return self.jax_test_step(*arguments)
        return self.evaluate_batch(*arguments)

    def tensorflow_train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, outputs = self.forward(data)
        variables = self.model.trainable_variables
        # Under a tf.distribute strategy each replica's loss is the mean over its part of the batch, and the
        # steps equal one device's on the whole batch as they are (tests/test_backends.py checks it).
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.after_step()
        return self.report(loss, outputs)

    def torch_train_step(self, data):
        import torch

        self.zero_grad()
        loss, outputs = self.forward(data)
        loss.backward()
        variables = self.model.trainable_variables
        with torch.no_grad():
            self.optimizer.apply([variable.value.grad for variable in variables], variables)
            self.after_step()
        return self.report(loss, outputs)

    def jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metric_values = state
        trainable_variables, non_trainable_variables = self.trainable_variables, self.non_trainable_variables

        def loss_and_updates(trainable):
            pairs = [
                *zip(trainable_variables, trainable),
                *zip(non_trainable_variables, non_trainable),
                *zip(self.optimizer.variables, optimizer_values),  # The rampup reads the step count.
            ]
            (loss, outputs), values = run_stateless(lambda: self.forward(data), pairs)
            return loss, (outputs, values[len(trainable) : len(trainable) + len(non_trainable)])

        (loss, (outputs, non_trainable)), gradients = jax.value_and_grad(loss_and_updates, has_aux=True)(trainable)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, gradients, trainable)
        if self.teacher is not None:
            pairs = [*zip(trainable_variables, trainable), *zip(non_trainable_variables, non_trainable)]
            _, values = run_stateless(self.after_step, pairs)
            non_trainable = values[len(trainable) :]
        logs, metric_values = run_stateless(
            lambda: self.report(loss, outputs), list(zip(self.metrics_variables, metric_values))
        )
        return logs, (trainable, non_trainable, optimizer_values, metric_values)

    def jax_test_step(self, state, data):
        trainable, non_trainable, metric_values = state
        pairs = [
            *zip(self.trainable_variables, trainable),
            *zip(self.non_trainable_variables, non_trainable),
            *zip(self.metrics_variables, metric_values),
        ]
        logs, values = run_stateless(lambda: self.evaluate_batch(data), pairs)
        after_trainable = len(trainable) + len(non_trainable)
        return logs, (trainable, values[len(trainable) : after_trainable], values[after_trainable:])

    def record(self, loss, codes, scores, batch_size) -> None:
        """Updates the loss (weighted by the batch size, as Keras does) and the accuracy metrics."""
        self.loss_tracker.update_state(loss, sample_weight=batch_size)
        for metric in self.accuracy:
            metric.update_state(codes, scores)

    @staticmethod
    def logs(metrics) -> dict:
        return {metric.name: metric.result() for metric in metrics}


def run_stateless(function, pairs):
    """Runs `function` with each variable of `pairs` (variable, value) reading as its value, without changing any.

    Returns `function`'s result and every variable's value after it, in the order of `pairs`: what it assigned,
    else the value given. This is how a JAX step computes with Keras's stateful layers and metrics.
    """
    with keras.StatelessScope(state_mapping=pairs) as scope:
        result = function()
    after = []
    for variable, value in pairs:
        current = scope.get_current_value(variable)
        after.append(value if current is None else current)
    return result, after


def compiled_objective(
    model: keras.Model,
    learning_rate: float,
    total_steps: int,
    label_smoothing: float = 0.0,
    mean_teacher: MeanTeacherSettings | None = None,
    **optimizer_options,
) -> Objective:
    """`Objective(model, ...)` compiled with `training.optimizer.make_optimizer(learning_rate, total_steps, ...)`.

    The one way to make a model trainable: `compiled_objective(model, 3e-3, steps).fit(batches, ...)`.
    """
    from training.optimizer import make_optimizer

    objective = Objective(model, label_smoothing=label_smoothing, mean_teacher=mean_teacher)
    objective.compile(optimizer=make_optimizer(learning_rate, total_steps, **optimizer_options))
    return objective
