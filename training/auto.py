"""The automatic recipe for a labelled folder of real CAPTCHAs: chosen from the data, said with its reasons.

    python train.py --data FOLDER --labels FILE --split 0.8,0.1,0.1   # no --model: the automatic recipe

`train.py` without `--model` marks the fields that neither the command line
nor `--config` sets as `Recipe.automatic`. On the assignment's data (new
CAPTCHAs every epoch, or a generated folder) the defaults are the course's
own recipe and nothing changes. On a real folder `choose` fills those
fields from the training images, and the run prints each choice and why:

- the model: `crnn_ctc`, which reads the characters as a sequence of
  columns, so it needs no fixed positions and reads labels of several
  lengths. Chosen this way it read all 945 henan-4digit test images (70x30,
  against corrected labels) and 99.45% of the characters of the dotted
  240x80 cloud-4digit in 10 minutes (`python -m bench.real_data`); with a
  `downscale` that brings the image to at most `TARGET_HEIGHT` rows;
- the batch: small enough for `MIN_STEPS_PER_EPOCH` steps an epoch (a small
  set read in batches of 64 takes too few steps to leave CTC's all-blank
  start), between 16 and 64; a run is judged stuck only after enough
  labelled images for that (`training.callbacks.judging_epoch`);
- the epochs: those a CTC reader may spend on its all-blank start (the
  epoch at which a run is judged stuck, `training.callbacks.judging_epoch`),
  then enough for about `TARGET_STEPS` steps, 10 to `MAX_EPOCHS` in all,
  with early stopping after a quarter of them without improvement;
- light augmentation (small rotations, colour jitter) below
  `SMALL_SET` training images;
- the learning rate: the model's registered one, under the warm-up and
  cosine schedule that every run uses;
- with `--mean-teacher`: the same labelled batches and epochs, twice as
  many unlabelled images a batch, and the consistency weight ramped up over
  a quarter of the epochs, so that the student learns from the labels before
  the teacher holds it.

When such a run is stuck at chance (`training.callbacks.StuckRun`), it is
stopped and retried once with `fallback` (the He-initialised `fourblock`,
which reads small fixed-length sets well), and the summary reports both
attempts. The ImageNet-pretrained backbone (`efficientnet_lite0`) is not
chosen: on henan-4digit it read no better than `crnn_ctc` (97.9% against
98.4% whole in the same 150 s, docs/results.md).
"""

from __future__ import annotations

import math
from pathlib import Path

from core.alphabet import alphabet_of_labels
from data.labels import labels_in_folder
from training.callbacks import judging_epoch
from training.recipe import Recipe

# The fields the automatic recipe may set, and what it sets them to unless told.
AUTOMATIC_FIELDS = (
    "model",
    "model_options",
    "batch_size",
    "epochs",
    "patience",
    "augment",
    "learning_rate",
    # With --mean-teacher:
    "labelled_batch_size",
    "unlabelled_batch_size",
    "steps_per_epoch",
    "consistency_rampup",
)
# Read from the labels of the folders when not given, whatever the model (not with --initial-model: its own).
ALPHABET_FIELDS = ("alphabet", "length", "min_length")
TARGET_HEIGHT = 48  # Rows the CNN reads at most: 240x80 dotted digits read as well at 40 rows, four times as fast.
MIN_STEPS_PER_EPOCH = 100  # cloud-4digit's 4,002 images: in batches of 64 (63 steps) still blank after 3 epochs.
TARGET_STEPS = 1500  # cloud-4digit: crnn_ctc's validation settled after about 1,000 steps of 32 images.
MAX_EPOCHS = 80
SMALL_SET = 2000
FALLBACK_MODEL = "fourblock"


def automatic_fields(given: set[str]) -> list[str]:
    """The fields left to the data: `ALPHABET_FIELDS` not given, and `AUTOMATIC_FIELDS` unless a model was named."""
    if "initial_model" in given:
        return []
    alphabet = [name for name in ALPHABET_FIELDS if name not in given]
    if "model" in given:
        return alphabet
    return alphabet + [name for name in AUTOMATIC_FIELDS if name not in given]


def is_automatic(recipe: Recipe) -> bool:
    """Whether the automatic recipe chooses the model (and the fields around it) of this run."""
    return "model" in recipe.automatic


def read_alphabet(recipe: Recipe) -> tuple[Recipe, str | None]:
    """The recipe with the alphabet fields left to the data read from the labels of its folders, and a line
    saying what was read (None when nothing changed).

    A folder of five-character labels over 19 letters and digits then trains
    as it is, instead of being refused as not four digits. New images every
    epoch are the assignment's four digits, and keep them.
    """
    fields = [name for name in ALPHABET_FIELDS if name in recipe.automatic]
    if not fields:
        return recipe, None
    if recipe.uses_fresh_images:  # Recorded as not read from any labels.
        return recipe.replace(automatic=[name for name in recipe.automatic if name not in fields]), None
    folders = [recipe.data] if recipe.data else [recipe.train_dir, recipe.val_dir, recipe.test_dir]
    labels = []
    try:
        for folder in folders:
            if folder and Path(folder).is_dir():  # A missing default folder is generated (four digits) or refused.
                labels_file = recipe.labels if folder != recipe.test_dir else None
                labels += labels_in_folder(folder, labels_file, recipe.label_corrections)
        read = dict(zip(ALPHABET_FIELDS, alphabet_of_labels(labels)))
    except (FileNotFoundError, ValueError):  # A missing or malformed file, or no labels: loading the data says which.
        return recipe.replace(automatic=[name for name in recipe.automatic if name not in fields]), None
    changed = recipe.replace(**{name: read[name] for name in fields})
    if changed.alphabet_spec == recipe.alphabet_spec:
        return changed, None
    alphabet = changed.alphabet_spec
    return changed, (
        f"Alphabet read from the {len(labels):,} labels (--alphabet, --length and --min-length choose it): "
        f"{alphabet.num_classes} characters {alphabet.characters!r}, {alphabet.describe_length()} to a label"
    )


def choose(recipe: Recipe, image_size: tuple[int, int], train_count: int) -> tuple[Recipe, list[str]]:
    """The recipe for `train_count` training images of `image_size`, with one reason per choice made.

    Only the fields in `recipe.automatic` change.
    """
    height, width = image_size
    alphabet = recipe.alphabet_spec
    chosen, reasons = {}, []
    downscale = max(1, round(height / TARGET_HEIGHT))
    # crnn_ctc's columns: width / downscale / 4; CTC needs two per character, and one between repeats.
    while downscale > 1 and width // downscale // 4 < 2 * alphabet.length - 1:
        downscale -= 1
    chosen["model"] = "crnn_ctc"
    reasons.append(
        "model crnn_ctc: reads the characters as a sequence of columns, wherever they stand"
        + (
            f" and of {alphabet.min_length} to {alphabet.length} characters"
            if alphabet.min_length < alphabet.length
            else ""
        )
    )
    chosen["model_options"] = {"downscale": downscale} if downscale > 1 else {}
    if downscale > 1:
        reasons.append(f"downscale {downscale}: {width}x{height} read at {width // downscale}x{height // downscale}")
    batch = 64
    while batch > 16 and train_count / batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    chosen["batch_size"] = batch
    steps = max(1, math.ceil(train_count / batch))
    reasons.append(f"batch {batch}: {steps} steps an epoch for {train_count:,} training images")
    # The blank start first, then the steps that learn: sized by TARGET_STEPS alone, 1,040 five-character
    # images left the blank start at epoch 19 of 29 with the rate already down to a third, and read 16%.
    judged = judging_epoch(steps * batch)
    epochs = min(MAX_EPOCHS, max(10, judged + math.ceil(TARGET_STEPS / steps)))
    chosen["epochs"], chosen["patience"] = epochs, max(3, epochs // 4)
    reasons.append(
        f"{epochs} epochs (about {epochs * steps:,} steps): {judged} to leave a CTC reader's blank start, then "
        f"about {TARGET_STEPS:,} steps; stopping after {chosen['patience']} without gain"
    )
    chosen["augment"] = train_count < SMALL_SET
    if chosen["augment"]:
        reasons.append(f"augmentation (rotation, colour jitter): fewer than {SMALL_SET:,} training images")
    chosen["learning_rate"] = None  # The chosen model's own, set by the run.
    if recipe.mean_teacher:
        # The same labelled batches and steps, with twice as many unlabelled images beside them (the solver's
        # 32 + 64). Held to the teacher from the first step by the full weight, a CTC student never leaves its
        # all-blank start (henan-4digit, 700 labels: 0.2% per character after 3 epochs); ramped up over a
        # quarter of the run, it first learns from the labels.
        chosen["labelled_batch_size"], chosen["unlabelled_batch_size"] = batch, 2 * batch
        chosen["steps_per_epoch"] = steps
        chosen["consistency_rampup"] = float(max(1, epochs // 4))
        reasons.append(
            f"Mean Teacher: {batch} labelled and {2 * batch} unlabelled images a batch, an epoch one pass over "
            f"the labelled ones; the consistency weight ramps up over {epochs // 4 or 1} epochs"
        )
    return recipe.replace(**{name: chosen[name] for name in recipe.automatic if name in chosen}), reasons


def fallback(recipe: Recipe) -> tuple[Recipe, str] | None:
    """The second attempt after a stuck automatic run: the other reader; None when there is none to try."""
    if not is_automatic(recipe) or recipe.model == FALLBACK_MODEL:
        return None
    options = {"downscale": recipe.model_options["downscale"]} if "downscale" in recipe.model_options else {}
    retry = recipe.replace(model=FALLBACK_MODEL, model_options=options, learning_rate=None)
    return retry, f"{FALLBACK_MODEL}, a CNN with one classifier per character position"
