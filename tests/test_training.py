"""The training package's parts: the one objective, its checkpoint, the time limit, the recipe and its configs."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import models
from core.alphabet import Alphabet
from data.batches import MixedBatches
from models.io import load_model
from training.callbacks import (
    AveragedWeights,
    BestModelCheckpoint,
    EpochReport,
    StuckRun,
    TimedCosine,
    TimeLimit,
    TrainingCheckpoint,
    completed_epochs,
)
from training.objective import MeanTeacherSettings, Objective, compiled_objective
from training.optimizer import AVERAGE_WARMUP, make_optimizer
from training.recipe import DEFAULT_TIME_LIMIT, Recipe

ALPHABET = Alphabet("ab", 2)
# Keras's steps run eagerly: the same numbers, without tracing them anew for every tiny run.
pytestmark = pytest.mark.usefixtures("eager_functions")
IMAGE_SIZE = (16, 32)


def data(count=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, *IMAGE_SIZE, 3)).astype("uint8"), rng.integers(0, 2, (count, 2)).astype("int32")


def test_time_limit_stops_after_the_first_batch_past_it_and_says_so(capsys):
    model = models.get_model("fourblock_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE)
    objective = compiled_objective(model, learning_rate=1e-3, total_steps=10)
    images, codes = data()
    limit = TimeLimit(1e-9)
    history = objective.fit(
        images, codes, batch_size=4, epochs=3, validation_data=(images, codes), callbacks=[limit], verbose=0
    )
    assert len(history.history["loss"]) == 1 and "val_whole_accuracy" in history.history
    assert limit.stopped_mid_epoch and limit.batches_in_epoch == 1
    assert "Time limit" in capsys.readouterr().out
    with pytest.raises(ValueError, match="seconds=0"):
        TimeLimit(0)


def test_the_time_sized_schedule_decays_to_zero_by_the_time_limit_or_the_last_step():
    schedule = TimedCosine(peak=1.0, total_steps=100, seconds=1e9, warmup_fraction=0.1)
    rates = [schedule.rate(progress) for progress in np.linspace(0, 1, 101)]
    assert rates[0] == pytest.approx(0.1) and max(rates) == pytest.approx(1.0) and rates[10] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12) and all(a >= b for a, b in zip(rates[10:], rates[11:]))

    model = models.get_model("fourblock_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE)
    objective = compiled_objective(model, learning_rate=1e-3, total_steps=10, schedule="constant")
    images, codes = data()
    # Far more steps than a millisecond allows: the time ends the schedule, and the time limit the run.
    timed = TimedCosine(peak=1e-3, total_steps=10_000, seconds=1e-3)
    objective.fit(images, codes, batch_size=4, epochs=3, callbacks=[timed, TimeLimit(1e-3)], verbose=0)
    assert float(keras.ops.convert_to_numpy(objective.optimizer.learning_rate)) == pytest.approx(0.0, abs=1e-12)
    # Without a binding time, the steps set the progress: after 4 of 8 steps the rate is mid-way down.
    objective = compiled_objective(model, learning_rate=1e-3, total_steps=8, schedule="constant")
    stepped = TimedCosine(peak=1e-3, total_steps=8, seconds=1e9, warmup_fraction=0.0)
    objective.fit(images, codes, batch_size=4, epochs=1, callbacks=[stepped], verbose=0)
    # The last of the four batches began after 3 steps.
    assert float(keras.ops.convert_to_numpy(objective.optimizer.learning_rate)) == pytest.approx(stepped.rate(3 / 8))


def test_weight_averaging_validates_and_saves_the_average_and_trains_on(tmp_path):
    model = models.get_model("fourblock_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE)
    objective = compiled_objective(model, learning_rate=1e-2, total_steps=8, weight_average=0.5)
    images, codes = data()
    averaged = AveragedWeights()
    checkpoint = BestModelCheckpoint(tmp_path / "best.keras", objective.plain_models, best=-1.0, averaged=averaged)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            optimizer = objective.optimizer
            seen.append(
                (
                    checkpoint.best_epoch,
                    [keras.ops.convert_to_numpy(v) for v in optimizer._trainable_variables],
                    [keras.ops.convert_to_numpy(v) for v in optimizer._model_variables_moving_average],
                    [v.path for v in optimizer._trainable_variables],
                )
            )

    objective.fit(
        images, codes, batch_size=4, epochs=2, validation_data=(images, codes),
        callbacks=[averaged, EpochReport(2, 4, 2, progress_bar=False), checkpoint, Probe()], verbose=0,
    )  # fmt: skip
    _, trained, average, paths = seen[checkpoint.best_epoch - 1]
    # After the save the model holds the trained weights again (the probe runs after the checkpoint), not the average.
    assert any(not np.allclose(a, b) for a, b in zip(trained, average))
    saved = load_model(tmp_path / "best.keras")
    by_path = {variable.path: keras.ops.convert_to_numpy(variable) for variable in saved.trainable_variables}
    for path, value in zip(paths, average):  # ...and the model file holds the average of its epoch.
        np.testing.assert_allclose(by_path[path], value, rtol=1e-6)


def test_the_weight_average_warms_its_decay_up_so_that_the_first_steps_fade_out():
    weights = keras.Variable(np.zeros(3, "float32"))
    optimizer = make_optimizer(0.1, total_steps=50, name="sgd", schedule="constant", momentum=0.0, weight_average=0.999)
    optimizer.build([weights])
    expected = np.zeros(3)
    for step in range(50):
        optimizer.apply([keras.ops.ones(3)], [weights])  # The weights go down by 0.1 a step.
        decay = 0.0 if step == 0 else min(0.999, (1 + step) / (AVERAGE_WARMUP + step))
        expected = decay * expected + (1 - decay) * -0.1 * (step + 1)
    average = keras.ops.convert_to_numpy(optimizer._model_variables_moving_average[0])
    np.testing.assert_allclose(average, expected, rtol=1e-5)
    # An average of the last few steps (the weights end at -5), where Keras's fixed 0.999 would still be
    # 95% the first step's -0.1 and read about -0.2.
    assert np.all(average < -4.0)


def test_the_objective_takes_keras_own_steps_for_a_model_with_one_softmax_per_position():
    """Same seed, same batches: Objective.fit and model.compile(SparseCategoricalCrossentropy) + fit agree exactly."""
    images, codes = data(24)
    trained = []
    for use_objective in (True, False):
        keras.utils.set_random_seed(0)
        model = models.get_model("cellnet_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE)
        optimizer = make_optimizer(3e-3, total_steps=6)
        if use_objective:
            fitted = Objective(model)
            fitted.compile(optimizer=optimizer)
        else:
            fitted = model
            model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy())
        history = fitted.fit(images, codes, batch_size=8, epochs=2, shuffle=False, verbose=0)
        trained.append((model.get_weights(), history.history["loss"]))
    (objective_weights, objective_loss), (keras_weights, keras_loss) = trained
    for ours, theirs in zip(objective_weights, keras_weights):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(objective_loss, keras_loss)


@pytest.mark.parametrize(
    "name, mean_teacher",
    [
        ("cellnet_tiny", None),
        ("crnn_ctc_tiny", None),
        ("cellnet_tiny", MeanTeacherSettings(0.9, 5.0)),
        pytest.param("cnn_seq2seq_tiny", MeanTeacherSettings(0.9, 5.0), marks=pytest.mark.slow),
    ],
)
def test_checkpoint_restores_everything_the_objective_holds(tmp_path, name, mean_teacher):
    alphabet = Alphabet("0123456789", 2)
    keras.utils.set_random_seed(0)
    model = models.get_model(name, alphabet=alphabet, image_size=(24, 40))
    images = np.random.default_rng(0).integers(0, 256, (8, 24, 40, 3)).astype("uint8")
    codes = np.random.default_rng(1).integers(0, 10, (8, 2)).astype("int32")
    objective = compiled_objective(model, 1e-2, total_steps=8, mean_teacher=mean_teacher)
    checkpoint = TrainingCheckpoint(tmp_path / "m.last.keras", tmp_path / "m.last.weights.h5")
    if mean_teacher:  # One step per epoch, each of 2 labelled and 2 unlabelled images.
        batches, steps_per_epoch = MixedBatches(images[:4], codes[:4], images[4:], 2, 2, steps_per_epoch=1), 1
        objective.fit(batches, epochs=2, verbose=0, callbacks=[checkpoint])
    else:
        steps_per_epoch = 2
        objective.fit(images, codes, batch_size=4, epochs=2, verbose=0, callbacks=[checkpoint])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.last.keras", "m.last.weights.h5"]

    restored = compiled_objective(load_model(tmp_path / "m.last.keras"), 1e-2, total_steps=8, mean_teacher=mean_teacher)
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(tmp_path / "m.last.weights.h5")
    assert completed_epochs(restored, steps_per_epoch) == 2
    for saved, loaded in zip(
        objective.weights + objective.optimizer.variables, restored.weights + restored.optimizer.variables
    ):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
    if mean_teacher:
        assert len(restored.teacher.weights) == len(model.weights)
    with pytest.raises(ValueError, match="not a whole number of epochs"):
        completed_epochs(restored, steps_per_epoch=3 * steps_per_epoch)


def test_recipe_refuses_unknown_options_and_impossible_values(tmp_path):
    with pytest.raises(ValueError, match=r"unknown options \['epoch'\]"):
        Recipe.from_dict({"epoch": 3})
    config = tmp_path / "recipe.json"
    config.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        Recipe.from_file(config)
    config.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        Recipe.from_file(config)
    with pytest.raises(ValueError, match="no such file"):
        Recipe.from_file(tmp_path / "absent.json")
    for changes, message in (
        ({"output": "m.h5"}, r"\.keras"),
        ({"epochs": 0}, "--epochs must be positive"),
        ({"fresh_images": 8, "train_dir": "x"}, "cannot be combined"),
        ({"hard_font_weight": 3, "data": "x"}, "does nothing for a training folder"),
        ({"mean_teacher": True}, "need a training folder"),
        ({"alphabet": "abc"}, "generate a folder"),
        ({"label_smoothing": 1.5}, "label-smoothing"),
        ({"time_limit": -1.0}, "--time-limit must be positive, or 0 for none"),
    ):
        with pytest.raises(ValueError, match=message):
            Recipe(**changes).check()


def test_the_default_run_is_sized_by_the_clock_and_a_run_that_names_its_images_is_not():
    assert Recipe().training_seconds == DEFAULT_TIME_LIMIT  # python train.py: up to 10 epochs, stopped by the clock
    assert Recipe(time_limit=300.0).training_seconds == 300.0
    assert Recipe(time_limit=0.0).training_seconds is None  # 0: every epoch, however long
    assert Recipe(fresh_images=8_000).training_seconds is None  # the quick run trains all its epochs
    assert Recipe(train_dir="capts_train").training_seconds is None
    assert Recipe(data="folder").training_seconds is None
    Recipe(time_limit=0.0).check()


@pytest.mark.parametrize("path", sorted(Path("configs").rglob("*.json")), ids=lambda path: path.stem)
def test_every_shipped_config_is_a_valid_recipe(path):
    recipe = Recipe.from_file(path)
    if path.stem.startswith("semi_supervised"):  # semi_supervised.py adds the site's folders.
        recipe = recipe.replace(data="dataset/site/train")
    recipe.check()
    assert json.loads(path.read_text())["comment"]  # Each config says what it is.
    assert recipe.model in models.list_models()


def test_a_run_at_chance_is_told_what_to_try(capsys):
    stuck = StuckRun(classes=10, advice="Try a lower --learning-rate.", after=3)
    for epoch, accuracy in enumerate((0.10, 0.11, 0.12, 0.10)):
        stuck.on_epoch_end(epoch, {"val_mean_accuracy": accuracy})
    printed = capsys.readouterr().out
    assert printed.count("Stuck") == 1 and "at most 12.0% per character in 3 epochs" in printed
    assert "chance is 10.0%" in printed and "lower --learning-rate" in printed and stuck.stuck_after == 3
    learning = StuckRun(classes=10, advice="", after=3)
    for epoch, accuracy in enumerate((0.10, 0.30, 0.60)):
        learning.on_epoch_end(epoch, {"val_mean_accuracy": accuracy})
    assert learning.stuck_after is None and "Stuck" not in capsys.readouterr().out
    dipping = StuckRun(classes=19, advice="", after=3)  # Left chance, then one epoch's validation fell back.
    for epoch, accuracy in enumerate((0.01, 0.144, 0.031)):
        dipping.on_epoch_end(epoch, {"val_mean_accuracy": accuracy})
    assert dipping.stuck_after is None and "Stuck" not in capsys.readouterr().out


def test_a_distributed_run_refuses_a_batch_the_devices_cannot_share_and_saves_plain_batch_norm(tmp_path):
    from models.io import all_layers, save_model
    from training.distribute import Distribution
    from training.run import check_distribution

    two = Distribution("devices", replicas=2)
    with pytest.raises(ValueError, match="--batch-size 63 cannot be split across 2 devices"):
        check_distribution(Recipe(batch_size=63), two)
    with pytest.raises(ValueError, match="--labelled-batch-size 3"):
        check_distribution(Recipe(mean_teacher=True, labelled_batch_size=3, train_dir="x"), two)
    check_distribution(Recipe(batch_size=64), two)
    # TensorFlow's replicas synchronise batch normalisation; the file never says so (other backends refuse it).
    model = models.get_model("cellnet_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE)
    norms = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms
    for layer in norms:
        layer.synchronized = True
    save_model(model, tmp_path / "model.keras")
    assert all(layer.synchronized for layer in norms)
    reloaded = load_model(tmp_path / "model.keras")
    assert not any(getattr(layer, "synchronized", False) for layer in all_layers(reloaded))


def test_each_process_keeps_its_equal_part_of_every_batch_in_process_order():
    from data.batches import ArrayBatches, ProcessShard

    images, codes = np.arange(10)[:, None] * np.ones((10, 3)), np.arange(10)
    whole = ArrayBatches(images, codes, batch_size=4)  # Batches of 4, 4 and 2 rows.
    parts = [ProcessShard(ArrayBatches(images, codes, batch_size=4), index, 2) for index in (0, 1)]
    assert len(parts[0]) == len(whole) == 3
    for batch in range(3):
        joined = np.concatenate([part[batch][1] for part in parts])
        np.testing.assert_array_equal(joined, whole[batch][1])  # Process 0's rows first, as JAX joins them.
        np.testing.assert_array_equal(parts[1][batch][0][:, 0], parts[1][batch][1])  # Images stay with codes.
    three = ProcessShard(ArrayBatches(images, codes, batch_size=4), 2, 3)
    assert three[0][1].tolist() == [2]  # 4 rows: one each, the fourth left out.
    assert len(three) == 2  # The last batch, 2 rows, cannot give each of 3 processes one.
    with pytest.raises(ValueError, match="index"):
        ProcessShard(whole, 2, 2)


def test_a_multi_worker_run_names_what_it_lacks_and_refuses_to_resume(monkeypatch):
    from training.distribute import CLUSTER_VARIABLES, Distribution, start_workers
    from training.run import check_distribution

    with pytest.raises(ValueError, match="runs on the JAX backend.*20585"):
        start_workers("tensorflow")
    for name in CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match="needs KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_PROCESS_ID"):
        start_workers("jax")
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "2")
    with pytest.raises(ValueError, match="PROCESS_ID=2 must be at least 0 and below"):
        start_workers("jax")
    workers = Distribution("multi-worker", replicas=2, processes=2, process_index=1)
    assert not workers.chief
    with pytest.raises(ValueError, match="--resume continues a run on one machine"):
        check_distribution(Recipe(batch_size=64), workers, resume=True)


def test_a_model_trained_in_mixed_precision_is_saved_computing_in_float32(tmp_path):
    from models.io import all_layers, model_alphabet, save_model

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.get_model("cellnet_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE)
    finally:
        keras.config.set_dtype_policy("float32")
    assert {layer.dtype_policy.name for layer in all_layers(model)} == {"mixed_bfloat16"}
    save_model(model, tmp_path / "model.keras")
    saved = load_model(tmp_path / "model.keras")
    assert {layer.dtype_policy.name for layer in all_layers(saved)} == {"float32"}
    for ours, theirs in zip(model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    images = data(4)[0].astype("float32")
    mixed, plain = (keras.ops.convert_to_numpy(reader(images)).astype("float32") for reader in (model, saved))
    np.testing.assert_allclose(plain, mixed, atol=2e-2)  # bfloat16 keeps about 3 significant digits.
    assert model_alphabet(saved) == ALPHABET
