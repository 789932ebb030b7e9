"""Data-parallel training over the devices of this machine, on each backend's own engine.

    python train.py --distribute          # every GPU, or every CPU device, of this machine

Nothing here is home-made: on TensorFlow the model and its objective are
built in the scope of a `tf.distribute.MirroredStrategy`, and Keras's `fit`
splits every batch across the replicas; on JAX
`keras.distribution.DataParallel` over `jax.devices()` shards each batch
along the devices and XLA reduces the gradients. `--batch-size` stays the
global batch, so the steps per epoch and the learning-rate schedule are
those of one device.

One device and many compute the same step, to float rounding: the
objective's loss is the mean over the global batch, and on TensorFlow batch
normalisation takes its statistics over the global batch (`synchronized`,
which `models.io.save_model` never writes into a file, as other backends
refuse it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import keras

from models.io import all_layers

MODES = ("devices",)


@dataclass
class Distribution:
    """Where a run trains: its number of replicas and the build scope."""

    mode: str | None = None
    replicas: int = 1
    strategy: object = field(default=None, repr=False)

    def scope(self):
        """The context the model and its objective are built in (a TensorFlow strategy's scope)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def prepare(self, model: keras.Model) -> keras.Model:
        """Batch normalisation over the global batch on TensorFlow replicas (other backends reduce it already)."""
        if self.strategy is not None and self.replicas > 1:
            for layer in all_layers(model):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model


def start(mode: str | None) -> Distribution:
    """Sets up `mode` ("devices", or None: one device) on the Keras backend in use.

    Raises:
        ValueError: An unknown mode, or a backend without data-parallel training here.
    """
    if mode is None:
        return Distribution()
    if mode not in MODES:
        raise ValueError(f"--distribute must be one of {MODES}. Received: {mode!r}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # Every GPU; without one, every CPU device (one unless logical devices were configured).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
        return Distribution(mode, strategy.num_replicas_in_sync, strategy)
    if backend == "jax":
        import jax

        devices = jax.devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return Distribution(mode, len(devices))
    raise ValueError(f"--distribute runs on the tensorflow and jax backends. Received: KERAS_BACKEND={backend}")
