"""The automatic recipe for real labelled folders (`training.auto`): what it chooses, and when."""

import shutil

import keras
import pytest

import train
from core.alphabet import alphabet_of_labels
from training.auto import ALPHABET_FIELDS, AUTOMATIC_FIELDS, automatic_fields, choose, fallback, read_alphabet
from training.callbacks import STUCK_IMAGES, StuckRun, judging_epoch
from training.recipe import Recipe

AUTOMATIC = Recipe(automatic=list(AUTOMATIC_FIELDS))


def test_a_named_model_turns_the_automatic_recipe_off_and_given_fields_stay_the_users():
    assert automatic_fields({"model"}) == list(ALPHABET_FIELDS)  # The labels still say which characters.
    assert automatic_fields({"model", "length"}) == ["alphabet", "min_length"]
    assert automatic_fields({"initial_model", "epochs"}) == []  # The model's own alphabet.
    left = automatic_fields({"epochs", "data", "labels"})
    assert "epochs" not in left and {"model", "batch_size", "augment", "alphabet"} <= set(left)


@pytest.mark.parametrize(
    "labels, read",
    [
        (["0427", "1133"], ("digits", 4, None)),  # Some digits missing: still the ten.
        (["225g8", "bcdef", "xy234"], ("23458bcdefgxy", 5, None)),  # Only the characters found.
        (["abcdefghijklm", "nopqrstuvwxyz"], ("lowercase", 13, None)),  # Exactly a preset's.
        (["0427", "042", "04271", ""], ("digits", 5, 3)),  # Empty labels are refused later, with their files.
    ],
)
def test_the_alphabet_of_a_set_of_labels(labels, read):
    assert alphabet_of_labels(labels) == read


def five_letter_folder(source, folder):
    """A copy of `source`'s images with a labels file of five characters from 'bcdxy2'."""
    folder.mkdir()
    lines = []
    for index, path in enumerate(sorted(source.glob("*.png"))):
        shutil.copy(path, folder / path.name)
        lines.append(f"{path.name} {'bcdxy2'[index % 6]}{'bcdxy2'[(index + 1) % 6]}bcd\n")
    labels = folder.parent / "labels.txt"
    labels.write_text("".join(lines))
    return folder, labels


def test_a_folder_of_other_characters_is_read_with_its_own_alphabet(captcha_folders, tmp_path):
    folder, labels = five_letter_folder(captcha_folders[0], tmp_path / "real")
    recipe = Recipe(data=str(folder), labels=str(labels), automatic=list(ALPHABET_FIELDS))
    read, said = read_alphabet(recipe)
    assert (read.alphabet, read.length, read.min_length) == ("2bcdxy", 5, None)
    assert "6 characters '2bcdxy', 5 to a label" in said
    given, said = read_alphabet(recipe.replace(alphabet="bcdxy2", automatic=["length", "min_length"]))
    assert (given.alphabet, given.length) == ("bcdxy2", 5)  # The user's order of classes is kept.
    course, said = read_alphabet(Recipe(automatic=list(ALPHABET_FIELDS)))  # New images: four digits.
    assert course.alphabet_spec == Recipe().alphabet_spec and said is None
    generated, said = read_alphabet(Recipe(train_dir=str(captcha_folders[0]), automatic=list(ALPHABET_FIELDS)))
    assert generated.alphabet_spec == Recipe().alphabet_spec and said is None
    missing, said = read_alphabet(recipe.replace(labels=str(tmp_path / "missing.txt")))  # Loading says so, later.
    assert missing.alphabet_spec == Recipe().alphabet_spec and said is None


def test_options_of_a_config_file_stay_the_users_however_they_are_spelt(tmp_path):
    config = tmp_path / "recipe.json"
    config.write_text('{"comment": "mine", "batch-size": 8, "epochs": 5}')
    recipe = train.recipe_from_arguments(train.build_parser().parse_args(["--config", str(config)]))
    assert (recipe.batch_size, recipe.epochs) == (8, 5)
    assert "batch_size" not in recipe.automatic and "epochs" not in recipe.automatic and "model" in recipe.automatic


@pytest.mark.parametrize(
    "size, count, downscale, batch, augment, epochs",
    [
        ((80, 240), 4002, 2, 32, False, 4 + 12),  # cloud-4digit: half resolution, 126 steps an epoch.
        ((30, 70), 7562, 1, 64, False, 3 + 13),  # henan-4digit.
        ((50, 200), 832, 1, 16, True, 20 + 29),  # 1,040 five-character images: small batches, augmented.
        ((144, 256), 400, 3, 16, True, 80),  # 40 + 60, at most MAX_EPOCHS.
    ],
)
def test_the_reader_and_its_schedule_follow_from_the_image_size_and_the_set_size(
    size, count, downscale, batch, augment, epochs
):
    chosen, reasons = choose(AUTOMATIC, size, count)
    assert chosen.model == "crnn_ctc" and chosen.model_options.get("downscale", 1) == downscale
    assert chosen.batch_size == batch and chosen.augment == augment
    # Epochs to leave the blank start (judged stuck after them), then about TARGET_STEPS steps.
    assert chosen.epochs == epochs and chosen.patience == max(3, chosen.epochs // 4)
    assert chosen.learning_rate is None  # The chosen model's own, set by the run.
    assert len(reasons) >= 3 and reasons[0].startswith("model crnn_ctc")


def test_only_the_automatic_fields_change_and_narrow_images_keep_enough_columns():
    mine = Recipe(automatic=["model", "model_options"], batch_size=8, epochs=3)
    chosen, _ = choose(mine, (80, 240), 4002)
    assert (chosen.model, chosen.batch_size, chosen.epochs) == ("crnn_ctc", 8, 3)
    narrow, _ = choose(AUTOMATIC.replace(length=6), (96, 56), 1000)  # 56 / 2 / 4 = 7 columns < 11 for 6 characters.
    assert narrow.model_options == {}
    retry, why = fallback(chosen)
    assert retry.model == "fourblock" and retry.model_options == {"downscale": 2} and "fourblock" in why
    assert fallback(retry) is None and fallback(Recipe(model="crnn_ctc")) is None


def test_mean_teacher_takes_the_labelled_batches_and_ramps_its_consistency_up():
    chosen, reasons = choose(AUTOMATIC.replace(mean_teacher=True), (30, 70), 700)
    assert (chosen.labelled_batch_size, chosen.unlabelled_batch_size) == (16, 32)
    assert chosen.steps_per_epoch == 44 and chosen.epochs == 23 + 35  # An epoch: one pass over the 700 labels.
    assert chosen.consistency_rampup == 14 and any(reason.startswith("Mean Teacher") for reason in reasons)
    mine = AUTOMATIC.replace(mean_teacher=True, labelled_batch_size=8)
    mine = mine.replace(automatic=[name for name in mine.automatic if name != "labelled_batch_size"])
    assert choose(mine, (30, 70), 700)[0].labelled_batch_size == 8
    assert choose(AUTOMATIC, (30, 70), 700)[0].steps_per_epoch is None  # Supervised runs keep theirs.


def test_short_epochs_are_judged_stuck_only_after_enough_images_for_ctc_to_leave_its_blank_start():
    assert judging_epoch(8000) == 3  # The course's epochs: the assignment's hint, three of them.
    assert judging_epoch(4002) == 4 and judging_epoch(700) == 23 and judging_epoch(1) == STUCK_IMAGES


def test_a_stuck_run_that_will_be_retried_stops_at_the_judging_epoch(capsys):
    stuck = StuckRun(classes=10, advice="", after=3, stop=True)
    stuck.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch, accuracy in enumerate((0.10, 0.11, 0.10)):
        stuck.on_epoch_end(epoch, {"val_mean_accuracy": accuracy})
    assert stuck.stuck_after == 3 and stuck.model.stop_training


def unlisted_copy(source, folder):
    """`source`'s images, named by their labels, in a folder that no generator made (no manifest)."""
    folder.mkdir()
    for path in source.glob("*.png"):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.slow  # 12 s: a full-size crnn_ctc; the choices themselves are checked above.
def test_train_without_a_model_on_a_real_folder_prints_and_records_its_choices(captcha_folders, tmp_path, capsys):
    train_dir, _ = captcha_folders
    folder = unlisted_copy(train_dir, tmp_path / "real")
    summary = train.main(
        ["--data", str(folder), "--split", "0.5,0.5", "--epochs", "1", "--output", str(tmp_path / "m.keras"), "--quiet"]
    )
    printed = capsys.readouterr().out
    assert "Automatic recipe (no --model given" in printed and "downscale 3: 256x144 read at 85x48" in printed
    options = summary["options"]
    assert options["model"] == "crnn_ctc" and options["model_options"] == {"downscale": 3}
    assert options["epochs"] == 1 and "epochs" not in options["automatic"]  # Given: honoured.
    assert options["batch_size"] == 16 and options["augment"] and options["learning_rate"] == 1e-3


@pytest.mark.slow  # 8 s.
def test_a_named_model_trains_on_labels_of_other_characters_without_being_told_them(captcha_folders, tmp_path):
    folder, labels = five_letter_folder(captcha_folders[0], tmp_path / "real")
    summary = train.main(
        ["--data", str(folder), "--labels", str(labels), "--split", "0.5,0.5", "--model", "crnn_ctc_tiny",
         "--epochs", "1", "--output", str(tmp_path / "m.keras"), "--quiet"]
    )  # fmt: skip
    assert summary["alphabet"] == {"characters": "2bcdxy", "length": 5, "min_length": 5}
    assert summary["options"]["automatic"] == list(ALPHABET_FIELDS)


def test_the_course_data_keeps_the_course_recipe(captcha_folders, tmp_path, capsys):
    train_dir, val_dir = captcha_folders  # Generated folders: the assignment's data.
    summary = train.main(
        ["--train-dir", str(train_dir), "--val-dir", str(val_dir), "--epochs", "1",
         "--output", str(tmp_path / "m.keras"), "--quiet"]
    )  # fmt: skip
    assert "Automatic recipe" not in capsys.readouterr().out
    assert summary["options"]["model"] == "cellnet" and summary["options"]["automatic"] == []


@pytest.mark.slow
def test_an_automatic_run_stuck_at_chance_is_retried_once_with_the_other_reader(
    captcha_folders, tmp_path, capsys, monkeypatch
):
    import training.callbacks

    monkeypatch.setattr(training.callbacks, "STUCK_IMAGES", 1)  # Judged at epoch 3 although its epochs are tiny.
    train_dir, _ = captcha_folders
    folder = tmp_path / "real"
    folder.mkdir()
    lines = []
    for index, path in enumerate(sorted(train_dir.glob("*.png"))):  # Labels that the images do not show.
        shutil.copy(path, folder / path.name)
        lines.append(f"{path.name} {index % 10}{(index * 7) % 10}{(index * 3) % 10}{(index + 5) % 10}\n")
    (tmp_path / "labels.txt").write_text("".join(lines))
    summary = train.main(
        ["--data", str(folder), "--labels", str(tmp_path / "labels.txt"), "--split", "0.5,0.5", "--epochs", "4",
         "--output", str(tmp_path / "m.keras"), "--quiet"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("Stuck:") >= 1 and "Retrying once with the automatic recipe's fallback: fourblock" in printed
    (first,) = summary["earlier_attempts"]
    assert first["model"] == "crnn_ctc" and first["stuck_after_epoch"] == 3
    assert summary["options"]["model"] == "fourblock" and summary["epochs_run"] >= 3
