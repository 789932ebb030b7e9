"""Mean Teacher invariants: the EMA formula, no gradient into the teacher, the batch mix, both networks scored."""

import json

import keras
import numpy as np
import pytest

import models
import train
from core.alphabet import Alphabet
from data.augment import ImageAugmentation
from data.batches import MixedBatches
from models.io import load_model
from training.history import read_history
from training.losses import softmax_mse
from training.objective import MeanTeacherSettings, Objective, copy_as_teacher, update_ema
from training.ramps import sigmoid_rampup

ALPHABET = Alphabet()
IMAGE_SIZE = (24, 40)


def random_data(count, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, *IMAGE_SIZE, 3)).astype("uint8")
    return images, rng.integers(0, 10, (count, ALPHABET.length)).astype("int32")


def weights(model):
    return [np.array(weight) for weight in model.weights]


def test_update_ema_is_the_formula():
    student = models.get_model("cnn_seq2seq_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE)
    teacher = copy_as_teacher(student)
    rng = np.random.default_rng(0)
    for weight in student.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32") + 1.0)  # moving variances stay positive
    before_teacher, before_student = weights(teacher), weights(student)
    update_ema(teacher, student, 0.9)
    for after, old, new in zip(weights(teacher), before_teacher, before_student):
        np.testing.assert_allclose(after, 0.9 * old + 0.1 * new, rtol=1e-6, atol=1e-7)
    for after, before in zip(weights(student), before_student):  # the student is only read
        np.testing.assert_array_equal(after, before)


@pytest.mark.usefixtures("eager_functions")
@pytest.mark.parametrize("name", ["cnn_seq2seq_tiny", "fourblock_tiny", "crnn_ctc_tiny"])
def test_one_step_moves_the_student_and_the_teacher_only_by_ema(name):
    keras.utils.set_random_seed(0)
    student = models.get_model(name, alphabet=ALPHABET, image_size=IMAGE_SIZE)
    objective = Objective(student, mean_teacher=MeanTeacherSettings(ema_decay=0.9, consistency_weight=5.0))
    objective.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    teacher = objective.teacher
    assert teacher.trainable_weights == [] and not teacher.trainable
    assert {id(weight) for weight in teacher.weights}.isdisjoint(id(weight) for weight in student.weights)
    assert all(
        id(variable) not in {id(weight) for weight in teacher.weights} for variable in objective.trainable_variables
    )
    images, codes = random_data(12)
    teacher_before = weights(teacher)
    student_before = weights(student)
    history = objective.fit(MixedBatches(images[:4], codes[:4], images[4:], 2, 4, steps_per_epoch=1), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    student_after = weights(student)
    assert any(not np.allclose(old, new) for old, new in zip(student_before, student_after))
    # teacher after = 0.9 teacher before + 0.1 student after: the optimizer step changed nothing else in it.
    for after, old, new in zip(weights(teacher), teacher_before, student_after):
        np.testing.assert_allclose(after, 0.9 * old + 0.1 * new, rtol=1e-5, atol=1e-6)


def test_every_batch_holds_the_configured_mix():
    images, codes = random_data(7)
    unlabelled = np.random.default_rng(1).integers(0, 256, (23, *IMAGE_SIZE, 3)).astype("uint8")
    batches = MixedBatches(images, codes, unlabelled, labelled_batch_size=3, unlabelled_batch_size=5, seed=0)
    assert len(batches) == 23 // 5
    seen, second_epoch = [], []
    for index in range(3 * len(batches)):  # more labelled images than the set holds: it is cycled
        if index and index % len(batches) == 0:
            batches.on_epoch_end()
        (labelled, unlabelled_batch), batch_codes = batches[index % len(batches)]
        if index // len(batches) == 1:
            second_epoch.append(labelled)
        assert labelled.shape == (3, *IMAGE_SIZE, 3) and unlabelled_batch.shape == (5, *IMAGE_SIZE, 3)
        assert batch_codes.shape == (3, ALPHABET.length)
        for image, code in zip(labelled, batch_codes):  # each labelled image comes with its own codes
            row = next(row for row in range(len(images)) if np.array_equal(images[row], image))
            np.testing.assert_array_equal(codes[row], code)
            seen.append(row)
    # Cycling visits every labelled image once before any repeats.
    assert sorted(seen[:7]) == list(range(7))
    # A batch is its epoch's and index's: asked again, or by a run resumed at that epoch, it is the same.
    np.testing.assert_array_equal(batches[0][0][0], batches[0][0][0])
    resumed = MixedBatches(images, codes, unlabelled, labelled_batch_size=3, unlabelled_batch_size=5, first_epoch=1)
    for index, labelled in enumerate(second_epoch):
        np.testing.assert_array_equal(resumed[index][0][0], labelled)


def test_two_views_give_the_teacher_other_noise():
    images, codes = random_data(4)
    batches = MixedBatches(images, codes, images, 2, 3, augment=ImageAugmentation(seed=0), views=2)
    inputs, _ = batches[0]
    assert len(inputs) == 4 and inputs[0].shape == inputs[2].shape and inputs[1].shape == inputs[3].shape
    assert not np.array_equal(inputs[0], inputs[2])
    with pytest.raises(ValueError, match="views"):
        MixedBatches(images, codes, images, views=3)
    with pytest.raises(ValueError, match="differ in size"):
        MixedBatches(images, codes, images[:, :10])


def test_consistency_and_rampup():
    student = np.array([[[0.5, 0.5], [1.0, 0.0]]], "float32")
    teacher = np.array([[[1.0, 0.0], [1.0, 0.0]]], "float32")
    # Mean over the classes, sum over the steps.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(softmax_mse(student, teacher)), [0.25])
    assert float(sigmoid_rampup(0, 10)) == pytest.approx(np.exp(-5))
    assert float(sigmoid_rampup(10, 10)) == float(sigmoid_rampup(50, 10)) == pytest.approx(1.0)
    assert float(sigmoid_rampup(3, 0)) == 1.0


@pytest.mark.slow
def test_two_stages_through_train_py(captcha_folders, tmp_path):
    """Supervised then Mean Teacher with the tiny seq2seq: student and teacher logged, the better one saved."""
    train_dir, val_dir = captcha_folders
    common = ["--train-dir", str(train_dir), "--val-dir", str(val_dir), "--test-dir", str(val_dir), "--quiet"]
    common += ["--labelled-count", "12", "--augment", "--optimizer", "sgd", "--epochs", "2"]
    stage1 = train.main([*common, "--model", "cnn_seq2seq_tiny", "--output", str(tmp_path / "s1.keras")])
    assert (tmp_path / "s1.labelled.txt").read_text().count("\n") == 12
    stage2 = train.main(
        [
            *common,
            *("--mean-teacher", "--initial-model", str(tmp_path / "s1.keras"), "--output", str(tmp_path / "s2.keras")),
            *("--labelled-batch-size", "4", "--unlabelled-batch-size", "6", "--consistency-rampup", "1"),
            *("--learning-rate", "0.001", "--schedule", "constant", "--teacher-noise"),
        ]
    )
    assert stage1["train_images"] == 12
    assert stage2["unlabelled_images"] == 12  # the training images not kept as labelled
    assert stage2["saved_network"] in ("student", "teacher")
    history = read_history(stage2["history_file"])
    for key in ("val_whole_accuracy", "val_teacher_whole_accuracy", "consistency_loss", "class_loss"):
        assert len(history[key]) == 2
    saved = load_model(tmp_path / "s2.keras")
    assert saved.name == "cnn_seq2seq_tiny" and stage2["test"]["images"] == 12
    assert json.loads((tmp_path / "s2.json").read_text())["options"]["mean_teacher"] is True
