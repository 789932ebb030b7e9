"""The callbacks of every run: progress, the per-epoch log, the time limit and the two files kept up to date.

Two things are saved while a model trains, each replaced atomically: the
best plain model so far (`BestModelCheckpoint`, what users get) and the full
state of the last finished epoch (`TrainingCheckpoint`: the plain model in
`<name>.last.keras`, and in `<name>.last.weights.h5` everything the
objective holds, the teacher and the optimizer's moments and step count
included), which `train.py --resume` continues from.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from models.io import save_model


def mean_position_accuracy(logs: dict, length: int, prefix: str = "val_") -> float:
    return float(np.mean([logs[f"{prefix}digit_{position}_accuracy"] for position in range(length)]))


class EpochReport(keras.callbacks.Callback):
    """A progress bar within each epoch, then one summary line per epoch.

    Also adds `val_mean_accuracy` (mean of the per-position validation
    accuracies; `val_teacher_mean_accuracy` for a Mean Teacher's teacher),
    `epoch_seconds` and `val_seconds` (wall times of the epoch and of its
    validation) to the logs, for the checkpoint and the CSV log that follow.
    """

    def __init__(
        self, epochs: int, steps_per_epoch: int, length: int, progress_bar: bool = True, position_name: str = "digit"
    ):
        super().__init__()
        self.epochs, self.steps_per_epoch, self.length = epochs, steps_per_epoch, length
        self.progress_bar, self.position_name = progress_bar, position_name  # "character" for other alphabets.

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()
        self.bar = keras.utils.Progbar(
            self.steps_per_epoch, stateful_metrics=["loss", "whole_accuracy"], verbose=1 if self.progress_bar else 0
        )

    def on_test_begin(self, logs=None):
        self.validation_started = time.time()

    def on_test_end(self, logs=None):
        self.validation_seconds = time.time() - self.validation_started

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.bar.update(batch + 1, [(key, logs[key]) for key in ("loss", "whole_accuracy") if key in logs])

    def on_epoch_end(self, epoch, logs=None):
        # Wall times for the log: the whole epoch, and its validation (what a time budget spends on each).
        logs["epoch_seconds"] = time.time() - self.started
        if "val_loss" not in logs:
            return
        logs["val_seconds"] = self.validation_seconds
        logs["val_mean_accuracy"] = mean_position_accuracy(logs, self.length)
        digits = " ".join(f"{logs[f'val_digit_{p}_accuracy']:.4f}" for p in range(self.length))
        teacher = ""
        if "val_teacher_digit_0_accuracy" in logs:
            logs["val_teacher_mean_accuracy"] = mean_position_accuracy(logs, self.length, prefix="val_teacher_")
            teacher = (
                f" - teacher mean {logs['val_teacher_mean_accuracy']:.4f}"
                f" whole {logs['val_teacher_whole_accuracy']:.4f}"
            )
        print(
            f"Epoch {epoch + 1}/{self.epochs}: {time.time() - self.started:.0f}s - loss {logs['loss']:.4f}"
            f" - val_loss {logs['val_loss']:.4f} - val {self.position_name}s {digits}"
            f" - val mean {logs['val_mean_accuracy']:.4f} - val whole {logs['val_whole_accuracy']:.4f}{teacher}",
            flush=True,
        )


STUCK_IMAGES = 16_000  # Labelled images crnn_ctc read before it left its all-blank start: 9,000-12,000 (below).


def judging_epoch(labelled_images_per_epoch: int, epochs: int = 3) -> int:
    """The epoch at which `StuckRun` judges: the third, or the first after `STUCK_IMAGES` labelled images.

    The assignment's hint counts epochs of thousands of images; on a small
    real folder three epochs can be two thousand images, fewer than a CTC
    reader spends on its all-blank start. On cloud-4digit crnn_ctc was
    still at chance after 7,000 (700 labels, batches of 16) and left it
    between 9,000 and 12,000 (batches of 16 and of 32). Early stopping waits
    for the same epoch: a run at chance improves on nothing, and would stop
    before it is judged.
    """
    return max(epochs, math.ceil(STUCK_IMAGES / max(1, labelled_images_per_epoch)))


class StuckRun(keras.callbacks.Callback):
    """Says so on the console when validation accuracy is still near chance after the first epochs.

    The assignment's own hint: around 10% per digit for two or three epochs
    means something must change. A run whose mean validation accuracy stays
    below 1.5x chance through epoch `after` (counted from 1) gets one line with
    what to try; `stuck_after` records the epoch for the run's summary.

    Args:
        classes: Characters of the alphabet (chance is 1 / classes per position).
        advice: What to try, for the message.
        after: The epoch at which to judge.
        stop: Also stop training there (the automatic recipe then retries with its fallback).
    """

    def __init__(self, classes: int, advice: str, after: int = 3, stop: bool = False):
        super().__init__()
        self.chance, self.advice, self.after, self.stop = 1.0 / classes, advice, after, stop
        self.stuck_after = None
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_mean_accuracy")
        if accuracy is None:
            return
        # The best epoch so far: a CTC reader that has left its blank start can still dip back to chance for
        # an epoch (200x50 five-character images: 14.4% at epoch 16, 3.1% at 17) and is not stuck.
        self.best = accuracy if self.best is None else max(self.best, accuracy)
        if epoch + 1 != self.after or self.best >= 1.5 * self.chance:
            return
        self.stuck_after = epoch + 1
        print(
            f"Stuck: validation accuracy is at most {self.best:.1%} per character in {epoch + 1} epochs, and chance "
            f"is {self.chance:.1%}. {self.advice}",
            flush=True,
        )
        if self.stop:
            self.model.stop_training = True


class HistoryLog(keras.callbacks.CSVLogger):
    """Keras's CSV log of every epoch's figures, with epochs counted from 1 as on the console and in the plots."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class TimeLimit(keras.callbacks.Callback):
    """Stops training after the first batch that ends past `seconds`, and says so; that epoch is still validated.

    Gives several models the same time budget (`bench.compare`). Records how
    many batches the last epoch trained, so that throughput counts only the
    images actually trained on.
    """

    def __init__(self, seconds: float):
        super().__init__()
        if seconds <= 0:
            raise ValueError(f"`seconds` must be positive. Received: seconds={seconds}")
        self.seconds = seconds
        self.stopped_mid_epoch, self.batches_in_epoch, self.epoch = False, 0, 0

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.batches_in_epoch, self.epoch = 0, epoch

    def on_train_batch_end(self, batch, logs=None):
        self.batches_in_epoch += 1
        if time.time() - self.started > self.seconds and not self.model.stop_training:
            self.model.stop_training = True
            self.stopped_mid_epoch = True
            print(
                f"\nTime limit: {self.seconds:g} s of training reached after batch {self.batches_in_epoch} of epoch "
                f"{self.epoch + 1}; validating this epoch, then stopping.",
                flush=True,
            )


class TimedCosine(keras.callbacks.Callback):
    """The warm-up + cosine schedule sized by whichever ends first: the steps of the run or its time limit.

    A run that `--time-limit` stops would otherwise end at a high learning
    rate, its schedule sized by `--epochs`. Before every batch this sets the
    optimizer's rate from the run's progress, the larger of steps done /
    `total_steps` and seconds trained / `seconds`: a linear warm-up from a
    tenth of `peak` over the first `warmup_fraction`, then cosine decay to
    zero, the shape of `training.optimizer.make_optimizer`'s schedule. The
    optimizer must have a constant (variable) rate. A resumed run counts its
    seconds afresh and its steps from the checkpoint.
    """

    def __init__(self, peak: float, total_steps: int, seconds: float, warmup_fraction: float = 0.05):
        super().__init__()
        self.peak, self.total_steps, self.seconds, self.warmup = peak, max(1, total_steps), seconds, warmup_fraction

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def rate(self, progress: float) -> float:
        progress = min(max(progress, 0.0), 1.0)
        if progress < self.warmup:
            return self.peak * (0.1 + 0.9 * progress / self.warmup)
        return self.peak * 0.5 * (1.0 + math.cos(math.pi * (progress - self.warmup) / (1.0 - self.warmup)))

    def on_train_batch_begin(self, batch, logs=None):
        if keras.backend.backend() == "jax":
            self.model.jax_state_sync()  # JAX's fit holds the state apart; a synced state is read back before the step.
        steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        progress = max(steps / self.total_steps, (time.time() - self.started) / self.seconds)
        self.model.optimizer.learning_rate = self.rate(progress)


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Validates with the optimizer's moving average of the weights (Polyak averaging), and saves it.

    The optimizer keeps the average (`make_optimizer(weight_average=decay)`);
    Keras's `SwapEMAWeights` swaps it into the model for each validation, and
    `swapped()` does so for `BestModelCheckpoint`'s save. Training always
    continues from the trained weights. The average covers the trainable
    weights; batch normalisation's statistics are the trained model's.
    """

    @contextlib.contextmanager
    def swapped(self):
        self._swap_variables()
        try:
            yield
        finally:
            self._swap_variables()


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the plain model atomically whenever the monitored figure improves.

    Because every save is complete before it replaces the file, stopping
    training at any moment (Ctrl-C included) leaves the best model so far.

    Args:
        path: The `.keras` file to keep.
        candidates: A dict from a validation log entry to maximise to the plain
            model it scores (`Objective.plain_models`: the model, and a Mean
            Teacher's teacher); each epoch the best of them is compared with
            the best so far.
        best: The best value of a run being resumed (default: none yet).
        best_epoch: Its epoch number, counted from 1.
        averaged: The run's `AveragedWeights`, whose average is saved rather
            than the trained weights (default: none).
    """

    def __init__(self, path: str | Path, candidates: dict, best: float = -math.inf, best_epoch=None, averaged=None):
        super().__init__()
        self.path, self.candidates, self.averaged = Path(path), candidates, averaged
        self.best, self.best_epoch, self.best_source = best, best_epoch, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        scored = [(logs[key], key) for key in self.candidates if logs.get(key) is not None]
        if not scored:
            return
        value, key = max(scored)
        if value > self.best:
            self.best, self.best_epoch, self.best_source = float(value), epoch + 1, key
            with self.averaged.swapped() if self.averaged else contextlib.nullcontext():
                save_model(self.candidates[key], self.path)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves the state of the run atomically at the end of every epoch.

    `<name>.last.keras` is the plain model (its architecture, for resuming);
    `<name>.last.weights.h5` every variable of the objective, the optimizer's
    included. The optimizer's step count travels in it, so a resumed run
    knows how many epochs are done (steps // steps per epoch) and its
    learning-rate schedule, a function of the step, continues where it stopped.
    """

    def __init__(self, model_path: str | Path, state_path: str | Path):
        super().__init__()
        self.model_path, self.state_path = Path(model_path), Path(state_path)

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model.model, self.model_path)
        # Keras insists on the `.weights.h5` ending, so the temporary name keeps it.
        temporary = self.state_path.with_name(f".tmp{os.getpid()}.{self.state_path.name}")
        try:
            self.model.save_weights(temporary)
            os.replace(temporary, self.state_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


def completed_epochs(objective: keras.Model, steps_per_epoch: int) -> int:
    """Epochs a restored objective has finished, from its optimizer's step count.

    Raises:
        ValueError: The step count is not a whole number of epochs of
            `steps_per_epoch` steps (the data or the batch size changed).
    """
    steps = int(keras.ops.convert_to_numpy(objective.optimizer.iterations))
    if steps % steps_per_epoch:
        raise ValueError(
            f"the checkpoint has taken {steps} optimizer steps, not a whole number of epochs of "
            f"{steps_per_epoch} steps: the training data or --batch-size changed since it was saved."
        )
    return steps // steps_per_epoch
