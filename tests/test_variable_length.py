"""Labels of several lengths (e.g. 2 to 4 characters): generated, read from names, trained on and scored end to end."""

import csv
import json
import random
import zipfile

import numpy as np
import pytest
from cli_helpers import refused

import evaluate
import models
import predict
import train
from core.alphabet import Alphabet
from data.generate import generate_folder, get_generator, make_captcha
from data.labels import find_labelled_images, label_from_filename, list_image_files
from models.io import load_model, model_alphabet
from models.layers import AlphabetTag

ALPHABET = Alphabet("0123456789", 4, min_length=2)
IMAGE_SIZE = (32, 72)  # (height, width): 18 CTC time steps, enough for 4 characters


@pytest.fixture(scope="module")
def variable_folders(tmp_path_factory):
    """(train, val) folders of 24 and 12 small ImageCaptchas whose labels have 2 to 4 characters."""
    root = tmp_path_factory.mktemp("variable")
    generator = get_generator("imagecaptcha", width=IMAGE_SIZE[1], height=IMAGE_SIZE[0], alphabet=ALPHABET)
    options = {"workers": 1, "progress": False, "generator": generator}
    return (
        generate_folder(root / "train", 24, seed="test/variable/train", **options),
        generate_folder(root / "val", 12, seed="test/variable/val", **options),
    )


def test_generator_draws_every_length_reproducibly(variable_folders):
    lengths = {len(label_from_filename(path)) for folder in variable_folders for path in list_image_files(folder)}
    assert lengths == {2, 3, 4}
    generator = get_generator("imagecaptcha", width=72, height=32, alphabet=ALPHABET)
    first, second = make_captcha("seed", 5, generator), make_captcha("seed", 5, generator)
    assert first[1] == second[1] and first[0].tobytes() == second[0].tobytes()
    assert generator.settings()["min_length"] == 2


def test_fixed_length_generation_draws_what_it_drew_before():
    # No length is drawn for a fixed-length alphabet, so existing seeds keep their labels and images.
    fixed = Alphabet("0123456789", 4)
    generator = get_generator("imagecaptcha", width=72, height=32, alphabet=fixed)
    source = random.Random("seed/3")
    assert make_captcha("seed", 3, generator)[1] == "".join(source.choice(fixed.characters) for _ in range(4))
    assert "min_length" not in generator.settings()


def test_labels_of_every_allowed_length_are_read(tmp_path):
    for name in ("12.png", "123_000001.png", "1234_000002.png", "1_000003.png", "12345_000004.png"):
        (tmp_path / name).write_bytes(b"")
    found = find_labelled_images(tmp_path, ALPHABET, strict=False)
    assert sorted(found.labels) == ["12", "123", "1234"]
    assert sorted(reason for _, reason in found.skipped) == [
        "label '1' of 1_000003.png has 1 characters; expected 2 to 4",
        "label '12345' of 12345_000004.png has 5 characters; expected 2 to 4",
    ]
    # Files are checked in name order, so the first refused is 12345_000004.png.
    with pytest.raises(ValueError, match="label '12345' of 12345_000004.png has 5 characters; expected 2 to 4"):
        find_labelled_images(tmp_path, ALPHABET)


@pytest.mark.parametrize("name", ["cellnet_tiny", "fourblock_tiny", "shawon_tiny", "vgg_notebook_tiny"])
def test_per_position_models_refuse_variable_lengths(name):
    with pytest.raises(ValueError, match=f"Model '{name}' reads one character per position.*use crnn_ctc"):
        models.get_model(name, alphabet=Alphabet("0123456789", 4, min_length=2), image_size=(32, 96))


def test_train_refuses_a_per_position_model_for_variable_lengths(variable_folders, tmp_path, capsys):
    train_dir, val_dir = variable_folders
    with refused(capsys, "Model 'fourblock_tiny' reads one character per position"):
        train.main(
            ["--train-dir", str(train_dir), "--val-dir", str(val_dir), "--length", "4", "--min-length", "2"]
            + ["--model", "fourblock_tiny", "--epochs", "1", "--quiet", "--output", str(tmp_path / "m.keras")]
        )


def test_files_saved_before_min_length_load_as_fixed_length():
    config = {"characters": "0123456789", "length": 4, "ctc": True, "kind": "ctc", "name": "characters"}
    tag = AlphabetTag.from_config(config)
    assert tag.min_length == 4 and tag.get_config()["min_length"] == 4


@pytest.mark.parametrize("name", ["crnn_ctc_tiny", pytest.param("cnn_seq2seq_tiny", marks=pytest.mark.slow)])
def test_train_evaluate_and_predict_variable_lengths(variable_folders, tmp_path, capsys, name, eager_functions):
    train_dir, val_dir = variable_folders
    output = tmp_path / "varlen.keras"
    summary = train.main(
        ["--train-dir", str(train_dir), "--val-dir", str(val_dir), "--alphabet", "digits"]
        + ["--length", "4", "--min-length", "2", "--model", name, "--epochs", "1", "--batch-size", "8"]
        + ["--quiet", "--output", str(output)]
    )
    assert summary["alphabet"] == {"characters": "0123456789", "length": 4, "min_length": 2}
    assert len(summary["validation"]["position_accuracies"]) == 4
    history = (tmp_path / "varlen.history.csv").read_text().splitlines()
    assert len(history) == 2 and "nan" not in history[1].lower()

    # The saved file records the shortest length; loading restores the variable-length alphabet.
    with zipfile.ZipFile(output) as archive:
        assert '"min_length": 2' in archive.read("captcha_kit.json").decode()
    loaded = load_model(output)
    assert model_alphabet(loaded) == ALPHABET and model_alphabet(loaded).min_length == 2
    with pytest.raises(ValueError, match="min_length=2"):
        model_alphabet(loaded, Alphabet("0123456789", 4))

    capsys.readouterr()
    result = evaluate.main([str(output), "--data", str(val_dir), "--threshold", "0", "--json"])
    assert result["images"] == 12 and result["whole_accuracy"] == summary["validation"]["whole_accuracy"]
    assert result["position_accuracies"] == summary["validation"]["position_accuracies"]
    # Naming the alphabet on the command line needs the same range.
    named = evaluate.main(
        [str(output), "--data", str(val_dir), "--alphabet", "digits", "--length", "4", "--min-length", "2"]
        + ["--threshold", "0", "--json"]
    )
    assert named["whole_accuracy"] == result["whole_accuracy"]

    predictions = predict.main([str(val_dir), "--model", str(output), "--output", str(tmp_path / "predictions.csv")])
    with open(predictions, newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 12
    for row in rows:
        assert set(row["prediction"]) <= set(ALPHABET.characters) and len(row["prediction"]) <= ALPHABET.length
    saved = json.loads((tmp_path / "varlen.json").read_text())
    assert saved["options"]["min_length"] == 2


@pytest.mark.slow  # 8 s: test_models fits crnn_ctc_tiny in the default run.
def test_ctc_training_lowers_the_loss_of_labels_of_several_lengths():
    """The -1 padding reaches the CTC loss as shorter targets: a few steps on four images lower it."""
    import keras

    from training.objective import compiled_objective

    keras.utils.set_random_seed(0)
    codes = ALPHABET.encode_many(["12", "345", "6789", "90"])
    images = np.random.default_rng(0).integers(0, 256, (4, *IMAGE_SIZE, 3)).astype("uint8")
    model = models.get_model("crnn_ctc_tiny", alphabet=ALPHABET, image_size=IMAGE_SIZE, dropout=0)
    objective = compiled_objective(model, learning_rate=0.01, total_steps=20, warmup_fraction=0.01)
    losses = objective.fit(images, codes, batch_size=4, epochs=20, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_inference_tally_and_marks_count_only_real_characters():
    from models.viewer import Tally, marked_text

    tally = Tally()
    short_read_short = tally.add(ALPHABET.encode("12"), np.array([1, 2, -1, -1]))
    short_read_long = tally.add(ALPHABET.encode("12"), np.array([1, 2, 3, -1]))
    assert short_read_short.all() and not short_read_long.all()
    # Padding read as padding is neither a character seen nor one read right.
    assert (tally.whole_correct, tally.characters_correct, tally.characters_seen) == (1, 4, 5)
    assert marked_text([1, 2, -1, -1], short_read_short, ALPHABET) == "12"
    assert marked_text([1, 2, 3, -1], short_read_long, ALPHABET) == "12[3]"
    assert (
        marked_text([1, -1, -1, -1], tally.add(ALPHABET.encode("123"), np.array([1, -1, -1, -1])), ALPHABET)
        == "1[_][_]"
    )
