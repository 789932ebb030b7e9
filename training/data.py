"""Where a run's images come from: new CAPTCHAs every epoch, two folders, or one folder split in three.

By default every epoch trains on `fresh_images` multicolorcaptcha images
drawn while the model trains (`data.stream`), so no image is seen twice: a
fixed set of 30,000 is learnt by heart within 10 epochs and reads new
CAPTCHAs worse (docs/results.md). `train_dir` trains on a folder instead;
`data` splits one labelled folder by `split` and `split_seed` and records the
split. Only the kit's own default folders (`capts_val/`, `capts_train/`) are
generated when they are missing, and that is said with the size it takes;
any other missing or empty folder is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import multicolor
from core.files import atomic_path
from data.augment import ImageAugmentation
from data.batches import ArrayBatches, MixedBatches
from data.dataset import LabelledImages, describe_skipped, load_labelled_folder, load_unlabelled_folder
from data.generate import generate_folder, read_manifest
from data.labels import IMAGE_SUFFIXES
from data.split import choose_labelled, parse_fractions, read_split, select, split_filenames, write_split
from data.stream import GeneratedBatches
from training.recipe import DEFAULT_FRESH_IMAGES, Recipe

DEFAULT_FOLDERS = {"train_dir": "capts_train", "val_dir": "capts_val"}
IMAGE_KILOBYTES = 110  # A multicolorcaptcha PNG, for the size a generated folder will take.


@dataclass
class TrainingData:
    """The images of a run. `train` is None when every epoch draws new images."""

    train: LabelledImages | None
    val: LabelledImages
    test: LabelledImages | None
    unlabelled: np.ndarray | None
    source: str

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.val.images.shape[1:3])

    def describe(self, recipe: Recipe, seconds: float) -> str:
        """The one console line that says what the run trains and validates on."""
        if self.train is None:
            training = f"{fresh_images(recipe):,} new training images per epoch"
            if recipe.reuse > 1:
                training = f"{fresh_images(recipe):,} new training images every {recipe.reuse} epochs"
        else:
            training = f"{len(self.train):,} training"
        height, width = self.image_size
        line = (
            f"Data: {training}, {len(self.val):,} validation, {len(self.test) if self.test else 0:,} test images "
            f"of {width}x{height} from {self.source} ({seconds:.0f}s); {recipe.alphabet_spec}"
        )
        if self.unlabelled is not None:
            line += f"; {len(self.unlabelled):,} unlabelled images"
        if recipe.label_corrections:
            line += f"; labels corrected by {recipe.label_corrections}"
        # One folder split in three reports its skipped files once.
        sources = (
            [(self.train, recipe.data)] if recipe.data else [(self.train, recipe.train_dir), (self.val, recipe.val_dir)]
        )
        for loaded, folder in sources:
            if loaded is not None and loaded.skipped:
                line += "\n" + describe_skipped(loaded, folder)
        return line


def fresh_images(recipe: Recipe) -> int | None:
    """New images per epoch, or None when the run trains on a folder."""
    return (recipe.fresh_images or DEFAULT_FRESH_IMAGES) if recipe.uses_fresh_images else None


def ensure_folder(recipe: Recipe, option: str, count: int, seed: str) -> None:
    """Generates a missing default folder (saying so), finishes a half-made one, refuses any other empty one."""
    folder = Path(getattr(recipe, option))
    if folder.is_file():
        raise ValueError(f"--{option.replace('_', '-')} {folder} is a file, not a folder of images.")
    if folder.is_dir() and any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.iterdir()):
        manifest = read_manifest(folder)
        if manifest.get("complete") is False:
            print(f"{folder}/ was left half-generated: finishing it (python -m data.generate --resume).", flush=True)
            generate_folder(folder, manifest["count"], seed=manifest["seed"], resume=True)
        return
    if folder.name != DEFAULT_FOLDERS[option] or recipe.alphabet_spec != multicolor.ALPHABET:
        raise ValueError(
            f"--{option.replace('_', '-')} {folder} holds no images. Make them with "
            f"`python -m data.generate --{option.replace('_', '-')} {folder}`, or name a folder of labelled images."
        )
    print(
        f"{folder}/ has no images: generating {count:,} CAPTCHAs into it "
        f"(about {count * IMAGE_KILOBYTES / 1e6:.1f} GB; python -m data.generate).",
        flush=True,
    )
    generate_folder(folder, count, seed=seed)


def load_training_data(recipe: Recipe, split_path: Path, labelled_path: Path) -> TrainingData:
    """The training, validation, test and unlabelled images the recipe names.

    With `data`, one folder is split (or the split of `split_file` reused) and
    the split is written to `split_path`; with `labelled_count`, the names of
    the images kept labelled go to `labelled_path`.

    Raises:
        ValueError: A folder is missing or empty, or holds unusable images
            (unless `skip_bad`).
    """
    alphabet, strict = recipe.alphabet_spec, not recipe.skip_bad
    if recipe.data is None:
        if recipe.train_dir:
            ensure_folder(recipe, "train_dir", recipe.train_count, seed=f"{recipe.seed}/train")
        ensure_folder(recipe, "val_dir", recipe.val_count, seed=f"{recipe.seed}/val")
    try:
        if recipe.data is None:
            val = load_labelled_folder(
                recipe.val_dir, alphabet, labels_file=recipe.labels, strict=strict, corrections=recipe.label_corrections
            )
            test = load_test(recipe)
            if recipe.uses_fresh_images:
                return TrainingData(None, val, test, None, f"fresh multicolorcaptcha images and {recipe.val_dir}/")
            train = load_labelled_folder(
                recipe.train_dir,
                alphabet,
                labels_file=recipe.labels,
                strict=strict,
                corrections=recipe.label_corrections,
            )
            source = f"{recipe.train_dir}/ and {recipe.val_dir}/"
        else:
            everything = load_labelled_folder(
                recipe.data, alphabet, labels_file=recipe.labels, strict=strict, corrections=recipe.label_corrections
            )
            if recipe.split_file:
                split = read_split(recipe.split_file)
            else:
                split = split_filenames(everything.filenames, parse_fractions(recipe.split), seed=recipe.split_seed)
            write_split(split_path, split)
            train, val = select(everything, split["train"]), select(everything, split["val"])
            test = select(everything, split["test"]) if split["test"] else load_test(recipe)
            source = f"{recipe.data}/"
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"{error} (--skip-bad skips unusable images instead)") from None
    rest = None
    if recipe.labelled_count is not None:
        train, rest = choose_labelled(train, recipe.labelled_count, seed=recipe.split_seed)
        with atomic_path(labelled_path) as temporary:
            temporary.write_text("".join(f"{name} {label}\n" for name, label in zip(train.filenames, train.labels)))
    unlabelled = None
    if recipe.mean_teacher:
        unlabelled = load_unlabelled(recipe, train, rest, (train, val, test), recipe.data or recipe.train_dir)
    return TrainingData(train, val, test, unlabelled, source)


def load_test(recipe: Recipe) -> LabelledImages | None:
    """The `test_dir` images (named by their labels), or None."""
    if not recipe.test_dir:
        return None
    return load_labelled_folder(
        recipe.test_dir, recipe.alphabet_spec, strict=not recipe.skip_bad, corrections=recipe.label_corrections
    )


def load_unlabelled(recipe: Recipe, train, rest, labelled_sets, labelled_folder) -> np.ndarray:
    """The unlabelled images of a Mean Teacher run: `rest` (training images whose labels are dropped) and the
    `unlabelled` folders without any labelled image of this run, at most `unlabelled_count` of them."""
    exclude = [Path(labelled_folder) / name for subset in labelled_sets if subset for name in subset.filenames]
    arrays = [rest.images] if rest is not None and len(rest) else []
    for folder in recipe.unlabelled:
        loaded = load_unlabelled_folder(folder, image_size=train.images.shape[1:3], exclude=exclude)
        arrays.append(loaded.images)
    if not arrays:
        raise ValueError("--mean-teacher needs unlabelled images: pass --unlabelled DIR or --labelled-count N.")
    count = sum(len(array) for array in arrays)
    if recipe.unlabelled_count is not None and recipe.unlabelled_count < count:
        keep = np.sort(np.random.default_rng(recipe.seed).permutation(count)[: recipe.unlabelled_count])
        starts = np.cumsum([0] + [len(array) for array in arrays])
        arrays = [
            arrays[part][keep[(keep >= start) & (keep < stop)] - start]
            for part, (start, stop) in enumerate(zip(starts[:-1], starts[1:]))
        ]
    return np.concatenate(arrays) if len(arrays) > 1 else np.asarray(arrays[0])


def training_batches(recipe: Recipe, data: TrainingData, first_epoch: int = 0, distribution=None):
    """The `keras.utils.PyDataset` that `fit` trains on; a resumed run draws the images of the epochs still to do.

    With several processes (`training.distribute.Distribution`), this
    process's part of every batch: a share of the new CAPTCHAs drawn from a
    seed of its own, or its rows of the batches that every process builds alike.
    """
    processes, index = (distribution.processes, distribution.process_index) if distribution else (1, 0)
    if data.train is None:
        return GeneratedBatches(
            fresh_images(recipe) // processes,
            recipe.alphabet_spec,
            recipe.batch_size // processes,
            seed=f"{recipe.seed}/fresh" + (f"/process{index}" if processes > 1 else ""),
            generator_options={"hard_font_weight": recipe.hard_font_weight} if recipe.hard_font_weight != 1 else None,
            first_epoch=first_epoch,
            workers=recipe.draw_workers,
            reuse=recipe.reuse,
        )
    batches = _folder_batches(recipe, data, first_epoch)
    return distribution.shard(batches) if distribution else batches


def _folder_batches(recipe: Recipe, data: TrainingData, first_epoch: int):
    """The batches of a run on fixed images: Mean Teacher's mixed batches, or shuffled labelled batches."""
    augment = ImageAugmentation(seed=recipe.seed) if recipe.augment else None
    if recipe.mean_teacher:
        return MixedBatches(
            data.train.images,
            data.train.codes,
            data.unlabelled,
            labelled_batch_size=recipe.labelled_batch_size,
            unlabelled_batch_size=recipe.unlabelled_batch_size,
            steps_per_epoch=recipe.steps_per_epoch,
            augment=augment,
            views=2 if recipe.teacher_noise and augment else 1,
            seed=recipe.seed,
            first_epoch=first_epoch,
        )
    return ArrayBatches(
        data.train.images, data.train.codes, recipe.batch_size, shuffle=True, seed=recipe.seed, augment=augment
    )


def images_per_step(recipe: Recipe) -> int:
    return recipe.labelled_batch_size + recipe.unlabelled_batch_size if recipe.mean_teacher else recipe.batch_size
