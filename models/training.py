"""Training helpers: the optimizer and loss, and the callbacks every run uses.

Two files are kept up to date while a model trains, each replaced atomically:
the best plain model so far (`BestModelCheckpoint`, what users get) and the
full state of the last finished epoch (`TrainingCheckpoint`: weights,
optimizer moments and step count, what `train.py --resume` continues from).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from models.io import save_checkpoint, save_model
from models.layers import output_kind
from models.losses import CTCLoss, SequenceCrossEntropy
from models.metrics import accuracy_metrics


def make_optimizer(
    learning_rate: float,
    total_steps: int,
    name: str = "adam",
    schedule: str = "cosine",
    warmup_fraction: float = 0.05,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    clip_value: float | None = None,
) -> keras.optimizers.Optimizer:
    """The optimizer of a run: Adam(W) or SGD, with a warm-up + cosine schedule or a constant rate.

    Args:
        learning_rate: Peak (cosine) or constant learning rate.
        total_steps: Optimizer steps of the whole run (for the cosine schedule).
        name: "adam" (AdamW when `weight_decay`) or "sgd" (with `momentum`, `nesterov`).
        schedule: "cosine" (short linear warm-up, then cosine decay to zero) or "constant".
        warmup_fraction: Part of the steps spent warming up.
        weight_decay: Decoupled weight decay (0: none).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        clip_value: Clip each gradient element to ±this (None: no clipping).
    """
    if schedule == "cosine":
        warmup_steps = max(1, int(total_steps * warmup_fraction))
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate * 0.1,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=learning_rate,
            warmup_steps=warmup_steps,
        )
    elif schedule == "constant":
        rate = learning_rate
    else:
        raise ValueError(f"`schedule` must be 'cosine' or 'constant'. Received: schedule={schedule!r}")
    extra = {"clipvalue": clip_value} if clip_value else {}
    if name == "sgd":
        return keras.optimizers.SGD(
            rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None, **extra
        )
    if name == "adam":
        if weight_decay:
            return keras.optimizers.AdamW(rate, weight_decay=weight_decay, **extra)
        return keras.optimizers.Adam(rate, **extra)
    raise ValueError(f"`name` must be 'adam' or 'sgd'. Received: name={name!r}")


def compile_model(
    model: keras.Model,
    length: int,
    learning_rate: float,
    total_steps: int,
    warmup_fraction: float = 0.05,
    weight_decay: float = 0.0,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> keras.Model:
    """Adam(W) with a short linear warm-up then cosine decay to zero, sparse cross-entropy.

    A CTC model (see `models.metadata`) gets the CTC loss and
    metrics that decode its time steps instead; a seq2seq model the
    cross-entropy of its greedy decoder steps (`SequenceCrossEntropy`). The
    cosine schedule is what lets a 10-epoch run end converged: the large early
    steps move fast, the small late steps settle the weights. `optimizer`
    replaces the default one (see `make_optimizer`).
    """
    if optimizer is None:
        optimizer = make_optimizer(
            learning_rate, total_steps, warmup_fraction=warmup_fraction, weight_decay=weight_decay
        )
    kind = output_kind(model)
    if kind == "seq2seq":
        # Free-running decoding; train.py trains seq2seq models with teacher forcing (models.supervised) instead.
        loss = SequenceCrossEntropy(end_token=model.output_shape[-1] - 3)
    elif kind == "ctc":
        loss = CTCLoss()
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=optimizer, loss=loss, metrics=accuracy_metrics(length, kind=kind))
    return model


def mean_position_accuracy(logs: dict, length: int, prefix: str = "val_") -> float:
    return float(np.mean([logs[f"{prefix}digit_{position}_accuracy"] for position in range(length)]))


class EpochReport(keras.callbacks.Callback):
    """A progress bar within each epoch, then one summary line per epoch.

    Also adds `val_mean_accuracy` (mean of the per-position validation
    accuracies) to the logs, for the checkpoint and the CSV log that follow.
    """

    def __init__(self, epochs: int, steps_per_epoch: int, length: int, progress_bar: bool = True):
        super().__init__()
        self.epochs, self.steps_per_epoch, self.length = epochs, steps_per_epoch, length
        self.progress_bar = progress_bar

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()
        self.bar = keras.utils.Progbar(
            self.steps_per_epoch, stateful_metrics=["loss", "whole_accuracy"], verbose=1 if self.progress_bar else 0
        )

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.bar.update(batch + 1, [(key, logs[key]) for key in ("loss", "whole_accuracy") if key in logs])

    def on_epoch_end(self, epoch, logs=None):
        if "val_loss" not in logs:
            return
        logs["val_mean_accuracy"] = mean_position_accuracy(logs, self.length)
        digits = " ".join(f"{logs[f'val_digit_{p}_accuracy']:.4f}" for p in range(self.length))
        teacher = ""
        if "val_teacher_digit_0_accuracy" in logs:  # A Mean Teacher run scores its teacher too.
            logs["val_teacher_mean_accuracy"] = mean_position_accuracy(logs, self.length, prefix="val_teacher_")
            teacher = (
                f" - teacher mean {logs['val_teacher_mean_accuracy']:.4f}"
                f" whole {logs['val_teacher_whole_accuracy']:.4f}"
            )
        print(
            f"Epoch {epoch + 1}/{self.epochs}: {time.time() - self.started:.0f}s - loss {logs['loss']:.4f}"
            f" - val_loss {logs['val_loss']:.4f} - val digits {digits}"
            f" - val mean {logs['val_mean_accuracy']:.4f} - val whole {logs['val_whole_accuracy']:.4f}{teacher}",
            flush=True,
        )


class TimeLimit(keras.callbacks.Callback):
    """Stops training after the first batch that ends past `seconds`; that epoch is still validated.

    Gives several models the same time budget (`compare.py`). Records how
    many batches the last epoch trained, so that throughput counts only the
    images actually trained on.
    """

    def __init__(self, seconds: float):
        super().__init__()
        if seconds <= 0:
            raise ValueError(f"`seconds` must be positive. Received: seconds={seconds}")
        self.seconds = seconds
        self.stopped_mid_epoch, self.batches_in_epoch = False, 0

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.batches_in_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches_in_epoch += 1
        if time.time() - self.started > self.seconds and not self.model.stop_training:
            self.model.stop_training = True
            self.stopped_mid_epoch = True


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the plain model atomically whenever the monitored figure improves.

    Because every save is complete before it replaces the file, stopping
    training at any moment (Ctrl-C included) leaves the best model so far.

    Args:
        path: The `.keras` file to keep.
        monitor: The log entry to maximise.
        best: The best value of a run being resumed (default: none yet).
        best_epoch: Its epoch number, counted from 1.
        candidates: For a training objective that wraps plain models: a dict
            from a log entry to maximise to the plain model it scores (e.g.
            Mean Teacher's student and teacher); each epoch the best of them
            is compared with the best so far. Default: {monitor: the model fitted}.
    """

    def __init__(
        self,
        path: str | Path,
        monitor: str = "val_mean_accuracy",
        best: float = -math.inf,
        best_epoch=None,
        candidates: dict | None = None,
    ):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best, self.best_epoch = best, best_epoch
        self.candidates, self.best_source = candidates, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        candidates = self.candidates or {self.monitor: self.model}
        scored = [(logs[key], key) for key in candidates if logs.get(key) is not None]
        if not scored:
            return
        value, key = max(scored)
        if value > self.best:
            self.best, self.best_epoch, self.best_source = float(value), epoch + 1, key
            save_model(candidates[key], self.path)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves the compiled model with its optimizer state atomically at the end of every epoch.

    The optimizer's step count travels in the file, so a resumed run knows how
    many epochs are done (steps // steps per epoch) and its learning-rate
    schedule, a function of the step, continues where it stopped.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        save_checkpoint(self.model, self.path)


def completed_epochs(model: keras.Model, steps_per_epoch: int) -> int:
    """Epochs a checkpointed model has finished, from its optimizer's step count.

    Raises:
        ValueError: The step count is not a whole number of epochs of
            `steps_per_epoch` steps (the data or the batch size changed).
    """
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if steps % steps_per_epoch:
        raise ValueError(
            f"The checkpoint has taken {steps} optimizer steps, not a whole number of epochs of "
            f"{steps_per_epoch} steps: the training data or --batch-size changed since it was saved."
        )
    return steps // steps_per_epoch
