"""Trains or runs a saved model on the backend of this process, for comparisons with another backend.

    KERAS_BACKEND=jax python tests/backend_worker.py train INITIAL.keras DATA.npz SETTINGS_JSON OUT.npz
    KERAS_BACKEND=jax python tests/backend_worker.py predict MODEL.keras IMAGES.npy OUT.npy
    KERAS_BACKEND=jax python tests/backend_worker.py build NAME OPTIONS_JSON OUT.keras
    KERAS_BACKEND=jax python tests/backend_worker.py distributed one|devices INITIAL.keras DATA.npz SETTINGS OUT.npz

`tests/test_backends.py` calls the same functions in its own process and compares.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.quiet import load_keras  # noqa: E402

keras = load_keras()


def build(name: str, options: dict, output: str) -> None:
    """A fresh registered model of 2 digits on 24x40 images, saved to `output` (the common starting point)."""
    import models
    from core.alphabet import Alphabet
    from models.io import save_model

    keras.utils.set_random_seed(0)
    save_model(models.get_model(name, alphabet=Alphabet("0123456789", 2), image_size=(24, 40), **options), output)


def train(initial: str, data: str, settings: dict) -> list[np.ndarray]:
    """The weights after training `initial` on `data` with the kit's objective for `settings["epochs"]` epochs."""
    from data.batches import MixedBatches
    from models.io import load_model
    from training.objective import MeanTeacherSettings, compiled_objective

    arrays = np.load(data)
    model = load_model(initial)
    mean_teacher = MeanTeacherSettings(0.9, 5.0, rampup_steps=2) if settings.get("mean_teacher") else None
    objective = compiled_objective(
        model,
        settings["learning_rate"],
        total_steps=8,
        mean_teacher=mean_teacher,
        name=settings.get("optimizer", "adam"),
        weight_average=settings.get("weight_average"),
    )
    if mean_teacher:
        batches = MixedBatches(arrays["images"], arrays["codes"], arrays["images"], 4, 4, seed=0)
        objective.fit(batches, epochs=settings["epochs"], shuffle=False, verbose=0)  # Keras shuffles batch order.
        return [*model.get_weights(), *objective.teacher.get_weights()]
    objective.fit(arrays["images"], arrays["codes"], batch_size=8, epochs=settings["epochs"], shuffle=False, verbose=0)
    if settings.get("weight_average"):  # The trained weights, then the model's weights with the average in.
        optimizer = objective.optimizer
        average = {
            variable.path: keras.ops.convert_to_numpy(mean)
            for variable, mean in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average)
        }
        trained = model.get_weights()
        return [*trained, *(average.get(variable.path, value) for variable, value in zip(model.weights, trained))]
    return model.get_weights()


def distributed(mode: str, initial: str, data: str, settings: dict) -> list[np.ndarray]:
    """The weights after `settings["epochs"]` epochs of `initial` on `data`, on one device ("one") or split across
    every device (mode "devices", `training.distribute`); the process must see two devices (two logical CPUs on
    TensorFlow, which this sets up; XLA_FLAGS=--xla_force_host_platform_device_count=2 on JAX)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from models.io import load_model
    from training.distribute import start
    from training.objective import compiled_objective

    arrays = np.load(data)
    distribution = start(None if mode == "one" else mode)
    assert mode == "one" or distribution.replicas == 2, distribution
    with distribution.scope():
        model = distribution.prepare(load_model(initial))
        objective = compiled_objective(model, settings["learning_rate"], 8, name=settings.get("optimizer", "adam"))
    objective.fit(arrays["images"], arrays["codes"], batch_size=8, epochs=settings["epochs"], shuffle=False, verbose=0)
    if settings.get("weight_average"):  # The trained weights, then the model's weights with the average in.
        optimizer = objective.optimizer
        average = {
            variable.path: keras.ops.convert_to_numpy(mean)
            for variable, mean in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average)
        }
        trained = model.get_weights()
        return [*trained, *(average.get(variable.path, value) for variable, value in zip(model.weights, trained))]
    return model.get_weights()


def predict(model_path: str, images: str) -> np.ndarray:
    from models.reader import load_reader

    return load_reader(model_path).scores(np.load(images))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "build":
        build(arguments[0], json.loads(arguments[1]), arguments[2])
    elif command == "train":
        weights = train(arguments[0], arguments[1], json.loads(arguments[2]))
        np.savez(arguments[3], *weights)
    elif command == "distributed":
        weights = distributed(arguments[0], arguments[1], arguments[2], json.loads(arguments[3]))
        np.savez(arguments[4], *weights)
    elif command == "predict":
        np.save(arguments[2], predict(arguments[0], arguments[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")
