"""The optimizer and learning-rate schedule of a run.

The default, Adam with a short linear warm-up then cosine decay to zero, is
what lets a 10-epoch run end converged: the large early steps move fast, the
small late steps settle the weights.
"""

from __future__ import annotations

import keras
from keras import ops

AVERAGE_WARMUP = 10
"""The moving average's decay at step t is min(decay, (1 + t) / (AVERAGE_WARMUP + t))."""


class WarmedUpAverage:
    """Mixin for a Keras optimizer: its `use_ema` average warms its decay up, as TensorFlow's own average does.

    Keras's average starts from the weights after the first step and then
    decays by a fixed d, so at the end of a run of n steps d^n of it is still
    those nearly untrained weights: 15% for 0.999 over 1,900 steps, which
    reads points below the trained weights instead of smoothing them. Here
    step t decays by min(d, (1 + t) / (10 + t)) (the `num_updates` rule of
    `tf.train.ExponentialMovingAverage`): an average over about the last
    tenth of the steps until that reaches d, over about 1 / (1 - d) steps
    after, with a negligible share of the first steps' weights either way.
    The decay is a function of the optimizer's step count, which the run's
    checkpoint holds, so a resumed run goes on with the same average. Model
    files never hold the optimizer; the classes are registered all the same,
    so a compiled model saved by hand reloads where the kit is imported.
    """

    def _update_model_variables_moving_average(self, trainable_variables):
        step = ops.cast(self.iterations, "float32")
        warmed_up = ops.minimum(self.ema_momentum, (1.0 + step) / (AVERAGE_WARMUP + step))
        # The average's variables start at zeros, so the first step copies the weights in, as Keras's does.
        decay = ops.where(ops.equal(self.iterations, 0), 0.0, warmed_up)
        for variable, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                momentum = ops.cast(decay, variable.dtype)
                average.assign(ops.add(ops.multiply(momentum, average), ops.multiply(1 - momentum, variable)))


@keras.saving.register_keras_serializable(package="captcha_kit")
class AveragedAdam(WarmedUpAverage, keras.optimizers.Adam):
    """Adam whose weight average warms up (`WarmedUpAverage`)."""


@keras.saving.register_keras_serializable(package="captcha_kit")
class AveragedAdamW(WarmedUpAverage, keras.optimizers.AdamW):
    """AdamW whose weight average warms up (`WarmedUpAverage`)."""


@keras.saving.register_keras_serializable(package="captcha_kit")
class AveragedSGD(WarmedUpAverage, keras.optimizers.SGD):
    """SGD whose weight average warms up (`WarmedUpAverage`)."""


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
    weight_average: float | None = None,
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
        weight_average: Also keep an exponential moving average of the
            trainable weights with this decay per step, warmed up
            (`WarmedUpAverage`; `training.callbacks.AveragedWeights`
            validates and saves it).
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
    sgd, adam, adamw = keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW
    if weight_average:
        # Never written over the trained weights: the callback swaps the average in to validate and save it.
        extra.update(use_ema=True, ema_momentum=weight_average, ema_overwrite_frequency=None)
        sgd, adam, adamw = AveragedSGD, AveragedAdam, AveragedAdamW
    if name == "sgd":
        return sgd(rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None, **extra)
    if name == "adam":
        if weight_decay:
            return adamw(rate, weight_decay=weight_decay, **extra)
        return adam(rate, **extra)
    raise ValueError(f"`name` must be 'adam' or 'sgd'. Received: name={name!r}")
