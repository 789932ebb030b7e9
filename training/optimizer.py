"""The optimizer and learning-rate schedule of a run.

The default, Adam with a short linear warm-up then cosine decay to zero, is
what lets a 10-epoch run end converged: the large early steps move fast, the
small late steps settle the weights.
"""

from __future__ import annotations

import keras


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
            trainable weights with this decay per step (Keras's `use_ema`;
            `training.callbacks.AveragedWeights` validates and saves it).
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
    if weight_average:
        # Never written over the trained weights: the callback swaps the average in to validate and save it.
        extra.update(use_ema=True, ema_momentum=weight_average, ema_overwrite_frequency=None)
    if name == "sgd":
        return keras.optimizers.SGD(
            rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None, **extra
        )
    if name == "adam":
        if weight_decay:
            return keras.optimizers.AdamW(rate, weight_decay=weight_decay, **extra)
        return keras.optimizers.Adam(rate, **extra)
    raise ValueError(f"`name` must be 'adam' or 'sgd'. Received: name={name!r}")
