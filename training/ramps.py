"""Ramp-up schedules for the consistency weight of Mean Teacher (after CuriousAI/mean-teacher's ramps.py).

Pure functions of the training step; they work on Python numbers and on tensors alike.
"""

from __future__ import annotations

from keras import ops


def sigmoid_rampup(step, rampup_steps):
    """exp(-5 (1 - t)^2) with t = step / rampup_steps clipped to [0, 1]: from 0.0067 to 1 (Laine & Aila 2017).

    Args:
        step: The current training step (a number or a scalar tensor).
        rampup_steps: Steps to reach 1; 0 means no ramp-up (always 1).

    Returns:
        A float scalar in (0, 1].
    """
    if not rampup_steps:
        return ops.convert_to_tensor(1.0)
    progress = ops.clip(ops.cast(step, "float32") / float(rampup_steps), 0.0, 1.0)
    return ops.exp(-5.0 * ops.square(1.0 - progress))
