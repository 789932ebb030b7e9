"""Data-parallel training over the devices of this machine, or of several, on each backend's own engine.

    python train.py --distribute          # every GPU, or every CPU device, of this machine
    KERAS_BACKEND=jax KERAS_DISTRIBUTION_JOB_ADDRESSES=HOST0:1234 KERAS_DISTRIBUTION_NUM_PROCESSES=2 \
        KERAS_DISTRIBUTION_PROCESS_ID=0 python train.py --distribute multi-worker   # process 1 likewise

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

`multi-worker` trains one model in several processes, usually one per
machine, on JAX: `keras.distribution.initialize` starts `jax.distributed`
from the `KERAS_DISTRIBUTION_*` variables (the coordinator is process 0's
address), and `DataParallel` spans every process's devices. Each process
feeds its part of every global batch (`shard`): a fixed folder's batches are
built alike everywhere and split (`data.batches.ProcessShard`); new CAPTCHAs
are drawn by each process, a share of the epoch each, from a seed of its own.
Process 0, the chief, writes the model and the run's files; the others
write theirs to a temporary folder, deleted at the end. TensorFlow's
`MultiWorkerMirroredStrategy` is not offered: Keras 3.15's `fit` fails under
it (keras-team/keras#20585).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field

import keras
import numpy as np

from models.io import all_layers

MODES = ("devices", "multi-worker")
CLUSTER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


@dataclass
class Distribution:
    """Where a run trains: its number of replicas and the build scope."""

    mode: str | None = None
    replicas: int = 1
    strategy: object = field(default=None, repr=False)
    processes: int = 1
    process_index: int = 0

    @property
    def chief(self) -> bool:
        """Whether this process writes the model and the run's files."""
        return self.process_index == 0

    def shard(self, batches):
        """This process's part of every batch of `batches` (all of them with one process)."""
        if self.processes == 1:
            return batches
        from data.batches import ProcessShard

        return ProcessShard(batches, self.process_index, self.processes)

    def check_same_weights(self, model: keras.Model) -> str:
        """The fingerprint of `model`'s weights, checked to be every process's.

        Raises:
            ValueError: Some process holds other weights.
        """
        digest = hashlib.sha256()
        for weight in model.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight.value)).tobytes())
        fingerprint = digest.hexdigest()
        if self.processes > 1:
            from jax.experimental import multihost_utils

            try:
                multihost_utils.assert_equal(np.frombuffer(digest.digest(), np.uint8), "weights differ")
            except AssertionError:
                raise ValueError(
                    f"process {self.process_index} ended with other weights than the chief's ({fingerprint[:12]})"
                ) from None
        return fingerprint

    def end(self) -> None:
        """Leaves the distribution, so that the chief scores the saved model on its own devices."""
        if self.mode is not None and keras.backend.backend() == "jax":
            keras.distribution.set_distribution(None)

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
    if mode == "multi-worker":
        return start_workers(backend)
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


def start_workers(backend: str) -> Distribution:
    """Joins the processes named by the `KERAS_DISTRIBUTION_*` variables (JAX only; see the module's text)."""
    if backend != "jax":
        raise ValueError(
            "--distribute multi-worker runs on the JAX backend (KERAS_BACKEND=jax): Keras's fit fails under "
            "TensorFlow's MultiWorkerMirroredStrategy (keras-team/keras#20585)."
        )
    missing = [name for name in CLUSTER_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"--distribute multi-worker needs {', '.join(missing)}: the chief's host:port, the number of "
            "processes and this process's number from 0 (see docs/training.md)."
        )
    try:
        count, index = int(os.environ[CLUSTER_VARIABLES[1]]), int(os.environ[CLUSTER_VARIABLES[2]])
    except ValueError:
        raise ValueError(f"{CLUSTER_VARIABLES[1]} and {CLUSTER_VARIABLES[2]} must be whole numbers.") from None
    if not 0 <= index < count:
        raise ValueError(f"{CLUSTER_VARIABLES[2]}={index} must be at least 0 and below {CLUSTER_VARIABLES[1]}={count}.")
    import jax

    keras.distribution.initialize()  # jax.distributed.initialize from the variables; waits for every process.
    devices = jax.devices()  # Every process's.
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    return Distribution("multi-worker", len(devices), processes=jax.process_count(), process_index=jax.process_index())
