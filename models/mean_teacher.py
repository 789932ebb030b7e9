"""Mean Teacher (Tarvainen & Valpola 2017): a semi-supervised training objective that wraps any student.

    objective = MeanTeacher(student, num_characters=10, length=4, ema_decay=0.99, consistency_weight=30)
    objective.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9, clipvalue=10))
    objective.fit(MixedBatches(labelled, codes, unlabelled, 32, 64), validation_data=ArrayBatches(val, val_codes))
    save_model(objective.teacher, "model.keras")     # a plain model, like every model of the kit

The teacher is a copy of the student whose weights are never trained: after
every optimizer step of the student they move to the exponential moving
average `teacher = ema_decay * teacher + (1 - ema_decay) * student` (all
weights, batch-norm statistics included, as keras-io's ddim.py does; the
teacher's layers are frozen, so its batch normalisation runs on those averaged
statistics). Each batch mixes labelled and unlabelled images
(`data.batches.MixedBatches`); the loss is

    class loss (labelled images only) + weight * consistency (all images),

the consistency being the squared difference of the student's and the
teacher's softmax outputs (`models.losses.softmax_mse`). The teacher's output
is a constant target: no gradient reaches it.

As in the semi-supervised CAPTCHA solver (main_mean_teacher.py): both networks
decode freely (a seq2seq model is fed its own argmax, no teacher forcing,
since unlabelled images have no targets), both run with dropout, the class
loss sums the steps, and by default the weight is constant and both see the
same images. The Mean Teacher paper's variants are options:
`consistency_rampup_steps` ramps the weight up with a sigmoid
(`models.ramps`), and batches with two views (`MixedBatches(views=2)`) give
the teacher its own augmentation of each image.

Validation scores the student and the teacher: `val_whole_accuracy`,
`val_teacher_whole_accuracy` and so on, each epoch.
"""

from __future__ import annotations

import keras
from keras import ops

from models.layers import output_kind
from models.losses import softmax_mse
from models.metadata import attach_metadata, model_metadata
from models.metrics import accuracy_metrics
from models.ramps import sigmoid_rampup
from models.supervised import ClassLoss, require_tensorflow


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


class MeanTeacher(keras.Model):
    """Trains `student` on mixed labelled/unlabelled batches against its exponential-moving-average teacher.

    Args:
        student: A plain kit model (any output kind), e.g. the supervised stage's result.
        num_characters: Classes of the alphabet.
        length: Characters per label.
        ema_decay: Weight of the old teacher in each update.
        consistency_weight: Weight of the consistency cost (the solver uses 30).
        consistency_rampup_steps: Steps of sigmoid ramp-up of that weight (0: constant).
        label_smoothing: Of the class loss (the solver's Mean Teacher stage uses none).
        teacher: The initial teacher (default: a copy of the student).
    """

    def __init__(
        self,
        student: keras.Model,
        num_characters: int,
        length: int,
        ema_decay: float = 0.99,
        consistency_weight: float = 30.0,
        consistency_rampup_steps: int = 0,
        label_smoothing: float = 0.0,
        teacher: keras.Model | None = None,
        **kwargs,
    ):
        require_tensorflow("MeanTeacher")
        if not 0.0 <= ema_decay <= 1.0 or consistency_weight < 0 or consistency_rampup_steps < 0:
            raise ValueError(
                "Expected 0 <= ema_decay <= 1, consistency_weight >= 0 and consistency_rampup_steps >= 0. "
                f"Received: ema_decay={ema_decay}, consistency_weight={consistency_weight}, "
                f"consistency_rampup_steps={consistency_rampup_steps}"
            )
        super().__init__(name=f"{student.name}_mean_teacher", **kwargs)
        self.student = student
        self.teacher = teacher if teacher is not None else copy_as_teacher(student)
        self.teacher.trainable = False
        self.ema_decay, self.consistency_weight = float(ema_decay), float(consistency_weight)
        self.consistency_rampup_steps = int(consistency_rampup_steps)
        kind = output_kind(student)
        self.class_loss = ClassLoss(student, num_characters, label_smoothing, reduction="sum")
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "class_loss", "consistency_loss", "consistency_weight", "teacher_loss")
        }
        self.student_accuracy = accuracy_metrics(length, kind=kind)
        self.teacher_accuracy = accuracy_metrics(length, kind=kind, prefix="teacher_")

    @property
    def metrics(self):
        return [*self.trackers.values(), *self.student_accuracy, *self.teacher_accuracy]

    def call(self, images, training=False):
        return self.student(images, training=training)

    def current_consistency_weight(self):
        return self.consistency_weight * sigmoid_rampup(self.optimizer.iterations, self.consistency_rampup_steps)

    def train_step(self, data):
        import tensorflow as tf

        inputs, codes = data
        labelled, unlabelled = inputs[0], inputs[1]
        teacher_labelled, teacher_unlabelled = (inputs[2], inputs[3]) if len(inputs) == 4 else (labelled, unlabelled)
        images = ops.concatenate([labelled, unlabelled], axis=0)
        teacher_images = ops.concatenate([teacher_labelled, teacher_unlabelled], axis=0)
        labelled_count = ops.shape(labelled)[0]
        # training=True keeps the teacher's dropout on, as the solver does; its frozen batch norm
        # uses the EMA statistics.
        teacher_scores = ops.stop_gradient(self.teacher(teacher_images, training=True))
        weight = self.current_consistency_weight()
        with tf.GradientTape() as tape:
            scores = self.student(images, training=True)
            class_loss = ops.mean(self.class_loss(codes, scores[:labelled_count]))
            consistency = ops.mean(softmax_mse(scores, teacher_scores))
            loss = class_loss + weight * consistency
            if self.student.losses:
                loss = loss + ops.sum(self.student.losses)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        update_ema(self.teacher, self.student, self.ema_decay)

        for name, value in (
            ("loss", loss),
            ("class_loss", class_loss),
            ("consistency_loss", consistency),
            ("consistency_weight", weight),
        ):
            self.trackers[name].update_state(value)
        for metric in self.student_accuracy:
            metric.update_state(codes, scores[:labelled_count])
        shown = [self.trackers[name] for name in ("loss", "class_loss", "consistency_loss", "consistency_weight")]
        return {metric.name: metric.result() for metric in [*shown, *self.student_accuracy]}

    def test_step(self, data):
        images, codes = data
        student_scores = self.student(images, training=False)
        teacher_scores = self.teacher(images, training=False)
        self.trackers["loss"].update_state(ops.mean(self.class_loss(codes, student_scores)))
        self.trackers["teacher_loss"].update_state(ops.mean(self.class_loss(codes, teacher_scores)))
        for metric in self.student_accuracy:
            metric.update_state(codes, student_scores)
        for metric in self.teacher_accuracy:
            metric.update_state(codes, teacher_scores)
        shown = [self.trackers["loss"], self.trackers["teacher_loss"], *self.student_accuracy, *self.teacher_accuracy]
        return {metric.name: metric.result() for metric in shown}
