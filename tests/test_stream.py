import json

import numpy as np
import pytest
from cli_helpers import refused

import train
import training.data
import training.recipe
from core.alphabet import Alphabet
from data.generate import make_captcha
from data.stream import GeneratedBatches


def test_generated_batches_are_repeatable_and_new_every_epoch():
    alphabet = Alphabet()
    batches = GeneratedBatches(10, alphabet, batch_size=4, seed="test", workers=0)
    assert len(batches) == 3
    images, codes = batches[2]
    assert images.shape == (2, 144, 256, 3) and images.dtype == np.uint8  # The last batch holds the remainder.
    assert codes.shape == (2, 4)

    first_images, first_codes = batches[0]
    again_images, again_codes = GeneratedBatches(10, alphabet, batch_size=4, seed="test", workers=0)[0]
    np.testing.assert_array_equal(first_images, again_images)
    np.testing.assert_array_equal(first_codes, again_codes)
    # The codes are the labels the generator drew for exactly these images.
    image, label = make_captcha("test/epoch0", 1)
    np.testing.assert_array_equal(first_images[1], np.asarray(image))
    assert alphabet.decode(first_codes[1]) == label

    batches.on_epoch_end()
    assert not np.array_equal(batches[0][0], first_images)
    # A run resumed at epoch 1 draws what the uninterrupted run drew in its second epoch.
    resumed = GeneratedBatches(10, alphabet, batch_size=4, seed="test", first_epoch=1, workers=0)
    np.testing.assert_array_equal(resumed[0][0], batches[0][0])
    with pytest.raises(IndexError):
        batches[3]


def test_reused_images_serve_two_epochs_in_another_order_then_new_ones_are_drawn(tmp_path):
    alphabet = Alphabet()

    def epoch(batches):
        pairs = [batches[index] for index in range(len(batches))]
        return np.concatenate([images for images, _ in pairs]), np.concatenate([codes for _, codes in pairs])

    def fingerprints(images, codes):
        return [(image.tobytes(), tuple(code)) for image, code in zip(images, codes)]

    batches = GeneratedBatches(6, alphabet, batch_size=4, seed="reuse", workers=0, reuse=2, cache_dir=tmp_path)
    first = epoch(batches)
    np.testing.assert_array_equal(first[0][5], np.asarray(make_captcha("reuse/epoch0", 5)[0]))
    batches.on_epoch_end()
    second = epoch(batches)
    assert sorted(fingerprints(*second)) == sorted(fingerprints(*first))  # The same images with their labels...
    assert fingerprints(*second) != fingerprints(*first)  # ...in another order,
    batches.on_epoch_end()
    third = epoch(batches)  # then new ones.
    assert not set(fingerprints(*third)) & set(fingerprints(*first))
    # A run resumed between the two epochs of a draw has nothing kept: it draws the same images again.
    resumed = GeneratedBatches(6, alphabet, batch_size=4, seed="reuse", first_epoch=1, workers=0, reuse=2)
    assert fingerprints(*epoch(resumed)) == fingerprints(*second)
    with pytest.raises(ValueError, match="reuse"):
        GeneratedBatches(6, alphabet, workers=0, reuse=0)


def test_generated_batches_reject_bad_counts():
    with pytest.raises(ValueError, match="images_per_epoch"):
        GeneratedBatches(0, Alphabet(), workers=0)


def test_train_draws_fresh_images_by_default(captcha_folders, tmp_path, capsys, monkeypatch, eager_functions):
    _, val_dir = captcha_folders
    monkeypatch.chdir(tmp_path)  # A capts_train/ would be generated here if the default still used a folder.
    monkeypatch.setattr(training.data, "DEFAULT_FRESH_IMAGES", 16)
    output = tmp_path / "fresh.keras"
    summary = train.main(
        ["--model", "cellnet_tiny", "--epochs", "2", "--batch-size", "8", "--quiet"]
        + ["--val-dir", str(val_dir), "--output", str(output)]
    )
    printed = capsys.readouterr().out
    assert "16 new training images per epoch" in printed and "Budget: training stops after 18.5 minutes" in printed
    assert output.is_file() and not (tmp_path / "capts_train").exists()
    saved = json.loads(output.with_suffix(".json").read_text())
    assert saved["fresh_images_per_epoch"] == 16 and saved["train_images"] == 16 and saved["epochs_run"] == 2
    assert saved["time_limit_seconds"] == 1110 and not saved["stopped_by_time_limit"]
    assert summary["train_images_per_second"] > 0
    # The default run's clock, not its epochs, ends it where the budget is spent.
    monkeypatch.setattr(training.recipe, "DEFAULT_TIME_LIMIT", 1e-6)
    summary = train.main(
        ["--model", "cellnet_tiny", "--epochs", "2", "--batch-size", "8", "--quiet", "--force"]
        + ["--val-dir", str(val_dir), "--output", str(output)]
    )
    assert summary["epochs_run"] == 1 and summary["stopped_by_time_limit"] and "Time limit" in capsys.readouterr().out


def test_fresh_image_options_are_checked(captcha_folders, tmp_path, capsys):
    train_dir, val_dir = captcha_folders
    common = ["--val-dir", str(val_dir), "--output", str(tmp_path / "m.keras")]
    with refused(capsys, "--fresh-images must be positive"):
        train.main(["--fresh-images", "0", *common])
    with refused(capsys, "cannot be combined with a training folder"):
        train.main(["--fresh-images", "8", "--train-dir", str(train_dir), *common])
    with refused(capsys, "not Alphabet"):
        train.main(["--fresh-images", "8", "--alphabet", "abc", "--length", "3", *common])
    with refused(capsys, "--hard-font-weight must be at least 1"):
        train.main(["--hard-font-weight", "0", *common])
    with refused(capsys, "does nothing for a training folder"):
        train.main(["--hard-font-weight", "3", "--train-dir", str(train_dir), *common])
    assert not (tmp_path / "m.keras").exists()


def test_generator_options_reach_the_generator():
    uniform = GeneratedBatches(4, Alphabet(), batch_size=4, seed="weights", workers=0)[0][0]
    weighted = GeneratedBatches(
        4, Alphabet(), batch_size=4, seed="weights", generator_options={"hard_font_weight": 3}, workers=0
    )[0][0]
    assert not np.array_equal(uniform, weighted)  # Same seeds, another font list: other images.
    with pytest.raises(ValueError, match="hard_font_weight"):
        GeneratedBatches(4, Alphabet(), generator_options={"hard_font_weight": 0}, workers=0)


def test_the_recipe_sets_how_many_processes_draw_and_how_often_images_serve():
    from training.data import TrainingData, training_batches
    from training.recipe import Recipe

    recipe = Recipe(fresh_images=8, draw_workers=2, reuse=2)
    batches = training_batches(recipe, TrainingData(None, None, None, None, "fresh"))
    assert batches.workers == 2 and batches.use_multiprocessing and batches.reuse == 2
    with pytest.raises(ValueError, match="--draw-workers must be at least 1"):
        Recipe(draw_workers=0).check()
