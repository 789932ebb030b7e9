"""Trains a CAPTCHA reader on new CAPTCHAs every epoch, validates on capts_val/, saves my_model.keras.

    python train.py                          # the assignment: default model, 10 epochs
    python train.py --model shawon           # the Kaggle baseline
    python train.py --epochs 3 --output runs/quick.keras
    python train.py --resume                 # continue an interrupted run
    python train.py --train-dir capts_train  # a fixed training folder instead of new images
    python train.py --fresh-images 60000     # 60,000 new CAPTCHAs every epoch (default 32,000)
    python train.py --train-dir notebook_train --val-dir notebook_val --alphabet imagecaptcha58 --length 4
    python train.py --data ../shared/datasets/henan-4digit/images \
        --labels ../shared/datasets/henan-4digit/labels.txt --split 0.8,0.1,0.1 --model fourblock
    python train.py --mean-teacher --initial-model runs/stage1.keras --unlabelled DIR ...   # semi-supervised

By default every epoch trains on 32,000 multicolorcaptcha images drawn while
the model trains (`data.stream`), so no image is seen twice: a fixed set of
30,000 is learnt by heart within 10 epochs and reads new CAPTCHAs worse
(91.3% per digit against 93.7%, see README). `--train-dir` trains on a
folder instead (`python -m data.generate` makes `capts_train/`). Missing
default folders (`capts_val/`, a missing `capts_train/`) are generated first.
With `--data` it splits one labelled folder by `--split` and `--split-seed`
and records the split in `<name>.split.csv`. The image size is taken from
the data; the alphabet (`--alphabet`, `--length`, `--min-length`) is recorded in the saved
model. Beside the model it writes `<name>.history.csv` (per-epoch figures),
`<name>.curves.png` (accuracy of each position against epoch) and
`<name>.json` (the resolved options and the final validation, and test,
accuracies).

Nothing is lost when training stops: the best model so far is saved
(atomically) whenever it improves, and the full state of the last finished
epoch (optimizer included) goes to `<name>.last.keras`, with the run's options
in `<name>.last.json`. Ctrl-C keeps both; `--resume` continues from the last
finished epoch with the same options, learning-rate schedule and CSV log.

Semi-supervised training (`--mean-teacher`, see models/mean_teacher.py) wraps
the model (usually the supervised run's result, `--initial-model`) as the
student of an EMA teacher; each batch mixes `--labelled-batch-size` labelled
and `--unlabelled-batch-size` unlabelled images (the `--unlabelled` folders,
and the training images beyond `--labelled-count`). Student and teacher are
both validated every epoch and the better one is saved, as a plain model.
Seq2seq models (`cnn_seq2seq`) and `--label-smoothing` train through the
supervised objective of models/supervised.py. Runs through these objectives
cannot be resumed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keep TensorFlow's start-up chatter out of the report.

import keras  # noqa: E402

import models  # noqa: E402
from core.alphabet import ALPHABET_PRESETS, Alphabet, alphabet_from_options  # noqa: E402
from core.figures import plot_history  # noqa: E402
from core.files import atomic_path  # noqa: E402
from data.augment import ImageAugmentation  # noqa: E402
from data.batches import ArrayBatches, MixedBatches  # noqa: E402
from data.dataset import describe_skipped, load_labelled_folder, load_unlabelled_folder  # noqa: E402
from data.generate import DEFAULT_TRAIN_COUNT, DEFAULT_VAL_COUNT, generate_folder, read_manifest  # noqa: E402
from data.labels import IMAGE_SUFFIXES  # noqa: E402
from data.split import choose_labelled, parse_fractions, read_split, select, split_filenames, write_split  # noqa: E402
from data.stream import GeneratedBatches  # noqa: E402
from models.evaluation import evaluate_model, format_accuracies  # noqa: E402
from models.io import load_model, model_alphabet  # noqa: E402
from models.layers import output_kind  # noqa: E402
from models.mean_teacher import MeanTeacher  # noqa: E402
from models.supervised import Supervised  # noqa: E402
from models.training import (  # noqa: E402
    BestModelCheckpoint,
    EpochReport,
    TimeLimit,
    TrainingCheckpoint,
    compile_model,
    completed_epochs,
    make_optimizer,
)
from training.history import read_history  # noqa: E402

# Options of this invocation only; a resumed run takes every other option from <name>.last.json.
SESSION_OPTIONS = ("output", "force", "resume", "quiet")
WRAPPED = "--mean-teacher, --label-smoothing and seq2seq models"
# 32,000 new images x 10 epochs fill the 20-minute budget of the default run on 2 CPU cores.
DEFAULT_FRESH_IMAGES = 32_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=models.DEFAULT_MODEL,
        choices=models.list_models(),
        help="registered model to train (default: %(default)s)",
    )
    group.add_argument(
        "--model-options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="keyword arguments of the model builder as a JSON object, e.g. '{\"units\": 64}' (default: none)",
    )
    group.add_argument(
        "--weights",
        default=None,
        help="initial weights of models that take them (efficientnet_lite0, keras_application): imagenet, none "
        "(random) or a weights file (.pth or converted .npz for efficientnet_lite0, .h5 for keras_application) "
        "(default: the model's own, imagenet for efficientnet_lite0, none for keras_application)",
    )
    group.add_argument(
        "--backbone",
        default=None,
        help="keras.applications class of --model keras_application, e.g. EfficientNetB0, MobileNetV3Small, "
        "ResNet50 (default: MobileNetV3Small)",
    )
    group.add_argument("--output", default="my_model.keras", help="where to save the best model (default: %(default)s)")
    group.add_argument("--force", action="store_true", help="replace an existing --output file")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run of --output from its last finished epoch, with the options it was "
        "started with (other options are ignored)",
    )
    group = parser.add_argument_group("data")
    group.add_argument(
        "--train-dir",
        default=None,
        help="a folder of training images (e.g. capts_train, made by python -m data.generate); without it "
        "every epoch trains on --fresh-images newly drawn CAPTCHAs",
    )
    group.add_argument("--val-dir", default="capts_val", help="validation images (default: %(default)s)")
    group.add_argument(
        "--data",
        default=None,
        help="one labelled folder to split into training, validation and test images (instead of the two dirs)",
    )
    group.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file for --data")
    group.add_argument(
        "--split",
        default="0.8,0.1,0.1",
        help="train,val[,test] fractions of --data (default: %(default)s)",
    )
    group.add_argument("--split-seed", type=int, default=0, help="seed of the --data split (default: %(default)s)")
    group.add_argument(
        "--split-file", default=None, help="reuse the split recorded in this file instead of --split/--split-seed"
    )
    group.add_argument(
        "--alphabet",
        default="digits",
        help=f"characters the labels use: a preset ({', '.join(ALPHABET_PRESETS)}) or the characters "
        "themselves (default: %(default)s)",
    )
    group.add_argument(
        "--length",
        type=int,
        default=4,
        help="characters per label, the longest with --min-length (default: %(default)s)",
    )
    group.add_argument(
        "--min-length",
        type=int,
        default=None,
        help="the shortest label, for labels of --min-length to --length characters (e.g. 4 to 6); only sequence "
        "readers (crnn_ctc, cnn_seq2seq) read them (default: --length, every label one length)",
    )
    group.add_argument(
        "--test-dir", default=None, help="labelled test images, scored once with the best model (without --data)"
    )
    group.add_argument(
        "--labelled-count",
        type=int,
        default=None,
        help="keep only this many training images as labelled, chosen by --split-seed (e.g. 700); the others "
        "become unlabelled images for --mean-teacher; the kept names go to <name>.labelled.txt",
    )
    group.add_argument(
        "--augment",
        action="store_true",
        help="random rotation (±10°) and colour jitter (0.4, 0.4, 0.4, 0.1) of training images, as the "
        "semi-supervised solver does",
    )
    group.add_argument(
        "--train-count",
        type=int,
        default=DEFAULT_TRAIN_COUNT,
        help="images to generate when the --train-dir folder is missing (default: %(default)s)",
    )
    group.add_argument(
        "--val-count",
        type=int,
        default=DEFAULT_VAL_COUNT,
        help="images to generate when --val-dir is missing (default: %(default)s)",
    )
    group.add_argument(
        "--fresh-images",
        type=int,
        default=None,
        help=f"new multicolorcaptcha images drawn for every epoch (by a worker process while the model trains) "
        f"when neither --train-dir nor --data is given (default: {DEFAULT_FRESH_IMAGES})",
    )
    group.add_argument(
        "--hard-font-weight",
        type=int,
        default=1,
        help="with --fresh-images: draw each of the fonts models misread most (core.multicolor.HARD_FONTS) this many "
        "times as often as the others (1: the library's uniform choice; validation always uses it) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip (and count) images that do not decode, have another size or a bad label, instead of stopping",
    )
    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    group.add_argument("--batch-size", type=int, default=64, help="images per step (default: %(default)s)")
    group.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="peak learning rate of the warm-up + cosine schedule (default: the model's own, 3e-3 for cellnet, "
        "1e-3 for shawon)",
    )
    group.add_argument("--weight-decay", type=float, default=0.0, help="decoupled weight decay (default: none)")
    group.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimizer (default: %(default)s)")
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    group.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    group.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="learning rate: warm-up then cosine decay, or constant (default: %(default)s)",
    )
    group.add_argument(
        "--clip-value", type=float, default=None, help="clip each gradient element to ±this (default: none)"
    )
    group.add_argument(
        "--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy (default: none)"
    )
    group.add_argument(
        "--initial-model", default=None, help="start from the weights and architecture of this .keras model"
    )
    group.add_argument(
        "--patience", type=int, default=0, help="stop after this many epochs without improvement (default: 0, never)"
    )
    group.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop after the first batch that ends past this many seconds of training; that epoch is still "
        "validated (default: none)",
    )
    group.add_argument("--seed", type=int, default=0, help="random seed for weights, shuffling and generation")
    group.add_argument("--quiet", action="store_true", help="no progress bars, only one line per epoch")
    group = parser.add_argument_group("semi-supervised (Mean Teacher)")
    group.add_argument(
        "--mean-teacher",
        action="store_true",
        help="train the model as the student of an EMA teacher on labelled and unlabelled images",
    )
    group.add_argument(
        "--unlabelled",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of unlabelled images of the training size (repeatable; labelled images of the run are left out)",
    )
    group.add_argument(
        "--unlabelled-count", type=int, default=None, help="use at most this many unlabelled images (default: all)"
    )
    group.add_argument(
        "--labelled-batch-size", type=int, default=32, help="labelled images per batch (default: %(default)s)"
    )
    group.add_argument(
        "--unlabelled-batch-size", type=int, default=64, help="unlabelled images per batch (default: %(default)s)"
    )
    group.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="batches per epoch (default: one pass over the unlabelled images)",
    )
    group.add_argument(
        "--ema-decay",
        type=float,
        default=0.99,
        help="teacher = decay * teacher + (1 - decay) * student (default: %(default)s)",
    )
    group.add_argument(
        "--consistency-weight", type=float, default=30.0, help="weight of the consistency cost (default: %(default)s)"
    )
    group.add_argument(
        "--consistency-rampup",
        type=float,
        default=0.0,
        help="epochs of sigmoid ramp-up of the consistency weight, as in the Mean Teacher paper (default: 0, "
        "constant, as in the semi-supervised solver)",
    )
    group.add_argument(
        "--teacher-noise",
        action="store_true",
        help="give the teacher its own augmentation of each image (with --augment), as in the Mean Teacher "
        "paper; default: both see the same images, as in the semi-supervised solver",
    )
    return parser


def ensure_data(folder: Path, count: int, seed: str) -> None:
    """Generates `folder` when it is missing or holds no images, and finishes it when it was left half-made."""
    if folder.is_dir() and any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.iterdir()):
        manifest = read_manifest(folder)
        if manifest.get("complete") is False:
            print(f"{folder}/ was left half-generated: finishing it (python -m data.generate --resume).", flush=True)
            generate_folder(folder, manifest["count"], seed=manifest["seed"], resume=True)
        return
    print(f"{folder}/ has no images: generating {count} CAPTCHAs into it (python -m data.generate).", flush=True)
    generate_folder(folder, count, seed=seed)


def resume_state(args: argparse.Namespace, checkpoint_path: Path, state_path: Path) -> dict:
    """Reads the state of the run to resume and puts its options back into `args`."""
    if not checkpoint_path.is_file() or not state_path.is_file():
        sys.exit(
            f"error: nothing to resume: {checkpoint_path} or {state_path} is missing (they are written at the end "
            "of each epoch of a run with this --output)."
        )
    try:
        state = json.loads(state_path.read_text())
        saved = state["options"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        sys.exit(f"error: {state_path} is not a training state file: {error}")
    if state.get("finished"):
        sys.exit(f"error: the run of {args.output} finished; nothing to resume.")
    for key, value in saved.items():
        if key not in SESSION_OPTIONS and hasattr(args, key):
            setattr(args, key, value)
    return state


def truncate_history(history_path: Path, epochs: int) -> tuple[float, int | None]:
    """Keeps the first `epochs` rows of the CSV log (a stopped run may have logged one more).

    Returns:
        (best val_mean_accuracy, its epoch counted from 1) among the rows kept;
        (-inf, None) when there is no log.
    """
    if not history_path.is_file():
        return -math.inf, None
    lines = history_path.read_text().splitlines(keepends=True)
    with atomic_path(history_path) as temporary:
        temporary.write_text("".join(lines[: epochs + 1]))
    values = read_history(history_path).get("val_mean_accuracy", [])
    if not values:
        return -math.inf, None
    best_index = max(range(len(values)), key=values.__getitem__)
    return values[best_index], best_index + 1


def resolve_training_source(args: argparse.Namespace, alphabet: Alphabet) -> None:
    """Fresh CAPTCHAs every epoch unless a training folder is named (--train-dir or --data).

    A fixed set of a few tens of thousands of images is learnt by heart
    within 10 epochs; new images every epoch are not, and cost the CPU little
    (see `data.stream`). Other alphabets have no default generator here, so
    they read the `capts_train` folder. Sets `args.fresh_images` (None when
    training on a folder) and `args.train_dir`.
    """
    if args.fresh_images is not None and args.fresh_images < 1:
        raise ValueError(f"--fresh-images must be positive. Received: {args.fresh_images}")
    if args.hard_font_weight < 1:
        raise ValueError(f"--hard-font-weight must be at least 1. Received: {args.hard_font_weight}")
    if args.hard_font_weight != 1 and (args.train_dir or args.data or alphabet != Alphabet()):
        raise ValueError(
            "--hard-font-weight changes how the new multicolorcaptcha images of --fresh-images are drawn; "
            f"it does nothing for a training folder. Received: --hard-font-weight {args.hard_font_weight} "
            f"with --train-dir {args.train_dir}, --data {args.data}, {alphabet}"
        )
    if args.train_dir or args.data:
        if args.fresh_images:
            raise ValueError(
                "--fresh-images draws new training images; it cannot be combined with a training folder. "
                f"Received: --fresh-images {args.fresh_images} with --train-dir {args.train_dir}, --data {args.data}"
            )
        return
    if alphabet != Alphabet():
        if args.fresh_images:
            raise ValueError(
                "--fresh-images draws the assignment's four-digit multicolorcaptcha images, not "
                f"{alphabet}; generate a folder for it (python -m data.generate) and pass --train-dir."
            )
        args.train_dir = "capts_train"
        return
    args.fresh_images = args.fresh_images or DEFAULT_FRESH_IMAGES


def write_json(path: Path, content: dict) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2) + "\n")


def load_data(args, alphabet: Alphabet, split_path: Path):
    """The training, validation and (possibly empty) test images the options name.

    With `--data`, one folder is split (or the split of `--split-file` reused)
    and the split is written to `split_path`; otherwise the two folders are
    read, generating the default ones when they are missing.
    """
    if args.data is None:
        default_alphabet = alphabet == Alphabet()
        if default_alphabet:
            if args.train_dir:
                ensure_data(Path(args.train_dir), args.train_count, seed=f"{args.seed}/train")
            ensure_data(Path(args.val_dir), args.val_count, seed=f"{args.seed}/val")
        val = load_labelled_folder(args.val_dir, alphabet, labels_file=args.labels, strict=not args.skip_bad)
        test = load_test(args, alphabet)
        if args.fresh_images:
            return None, val, test, f"fresh multicolorcaptcha images and {args.val_dir}/"
        train = load_labelled_folder(args.train_dir, alphabet, labels_file=args.labels, strict=not args.skip_bad)
        return train, val, test, f"{args.train_dir}/ and {args.val_dir}/"
    everything = load_labelled_folder(args.data, alphabet, labels_file=args.labels, strict=not args.skip_bad)
    if args.split_file:
        split = read_split(args.split_file)
    else:
        split = split_filenames(everything.filenames, parse_fractions(args.split), seed=args.split_seed)
    write_split(split_path, split)
    test = select(everything, split["test"]) if split["test"] else load_test(args, alphabet)
    return select(everything, split["train"]), select(everything, split["val"]), test, f"{args.data}/"


def load_test(args, alphabet: Alphabet):
    """The `--test-dir` images (named by their labels), or None."""
    if not args.test_dir:
        return None
    return load_labelled_folder(args.test_dir, alphabet, strict=not args.skip_bad)


def load_unlabelled(args, train, rest, labelled_sets, labelled_folder):
    """The unlabelled images of a Mean Teacher run: `rest` (training images whose labels are dropped) and the
    `--unlabelled` folders without any labelled image of this run, at most `--unlabelled-count` of them."""
    exclude = [Path(labelled_folder) / name for subset in labelled_sets if subset for name in subset.filenames]
    arrays = [rest.images] if rest is not None and len(rest) else []
    for folder in args.unlabelled:
        loaded = load_unlabelled_folder(folder, image_size=train.images.shape[1:3], exclude=exclude)
        arrays.append(loaded.images)
    if not arrays:
        raise ValueError("--mean-teacher needs unlabelled images: pass --unlabelled DIR or --labelled-count N.")
    count = sum(len(array) for array in arrays)
    if args.unlabelled_count is not None and args.unlabelled_count < count:
        keep = np.sort(np.random.default_rng(args.seed).permutation(count)[: args.unlabelled_count])
        starts = np.cumsum([0] + [len(array) for array in arrays])
        arrays = [
            arrays[part][keep[(keep >= start) & (keep < stop)] - start]
            for part, (start, stop) in enumerate(zip(starts[:-1], starts[1:]))
        ]
    return np.concatenate(arrays) if len(arrays) > 1 else np.asarray(arrays[0])


def build_objective(args, model, alphabet: Alphabet, total_steps: int):
    """The compiled model or training objective that `fit` trains, and the plain models the checkpoint may save.

    Returns:
        (trainable, candidates): `candidates` is None for a plain model, else a
        dict from a validation log entry to the plain model it scores.
    """
    optimizer = make_optimizer(
        args.learning_rate,
        total_steps,
        name=args.optimizer,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        nesterov=args.nesterov,
        clip_value=args.clip_value,
    )
    if args.mean_teacher:
        objective = MeanTeacher(
            model,
            alphabet.num_classes,
            alphabet.length,
            ema_decay=args.ema_decay,
            consistency_weight=args.consistency_weight,
            consistency_rampup_steps=round(args.consistency_rampup * args.steps_per_epoch),
            label_smoothing=args.label_smoothing,
        )
        objective.compile(optimizer=optimizer)
        return objective, {"val_mean_accuracy": objective.student, "val_teacher_mean_accuracy": objective.teacher}
    if output_kind(model) == "seq2seq" or args.label_smoothing:
        objective = Supervised(model, alphabet.num_classes, alphabet.length, label_smoothing=args.label_smoothing)
        objective.compile(optimizer=optimizer)
        return objective, {"val_mean_accuracy": objective.model}
    compile_model(model, alphabet.length, args.learning_rate, total_steps, optimizer=optimizer)
    return model, None


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    if output.suffix != ".keras":
        sys.exit(f"error: --output must end in .keras. Received: {output}")
    stem = output.with_suffix("")
    history_path, curves_path, options_path, checkpoint_path, state_path, split_path = (
        Path(f"{stem}{suffix}")
        for suffix in (".history.csv", ".curves.png", ".json", ".last.keras", ".last.json", ".split.csv")
    )
    state = resume_state(args, checkpoint_path, state_path) if args.resume else None
    if output.exists() and not args.force and not args.resume:
        sys.exit(
            f"error: {output} already exists. Pass --force to replace it, --resume to continue its interrupted "
            "run, or choose another --output."
        )
    if args.learning_rate is None:
        args.learning_rate = models.recommended_learning_rate(args.model)
    if args.epochs < 1 or args.batch_size < 1 or args.learning_rate <= 0:
        sys.exit("error: --epochs and --batch-size must be positive, --learning-rate above zero.")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        alphabet = alphabet_from_options(args.alphabet, args.length, args.min_length)
        if args.time_limit is not None and args.time_limit <= 0:
            raise ValueError(f"--time-limit must be positive. Received: {args.time_limit}")
        resolve_training_source(args, alphabet)
        if args.fresh_images and (args.mean_teacher or args.labelled_count is not None or args.augment):
            raise ValueError(
                "--mean-teacher, --labelled-count and --augment need a training folder (--train-dir or --data); "
                f"this run would draw --fresh-images {args.fresh_images} new images every epoch."
            )
    except ValueError as error:
        sys.exit(f"error: {error}")
    try:
        started = time.time()
        train, val, test, source = load_data(args, alphabet, split_path)
        rest = None
        if args.labelled_count is not None:
            train, rest = choose_labelled(train, args.labelled_count, seed=args.split_seed)
            with atomic_path(Path(f"{stem}.labelled.txt")) as temporary:
                temporary.write_text("".join(f"{name} {label}\n" for name, label in zip(train.filenames, train.labels)))
        unlabelled = None
        if args.mean_teacher:
            unlabelled = load_unlabelled(args, train, rest, (train, val, test), args.data or args.train_dir)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error} (--skip-bad skips unusable images instead)")
    data_seconds = time.time() - started
    train_size = args.fresh_images or len(train)
    image_size = val.images.shape[1:3]
    training = f"{train_size} new training images per epoch" if args.fresh_images else f"{train_size} training"
    print(
        f"Data: {training}, {len(val)} validation, {len(test) if test else 0} test images "
        f"of {image_size[1]}x{image_size[0]} from {source} ({data_seconds:.0f}s); {alphabet}"
        + (f"; {len(unlabelled)} unlabelled images" if unlabelled is not None else ""),
        flush=True,
    )
    for loaded, folder in ((train, args.train_dir), (val, args.val_dir)):
        if loaded is not None and loaded.skipped:
            print(describe_skipped(loaded, folder), flush=True)

    augment = ImageAugmentation(seed=args.seed) if args.augment else None
    if args.mean_teacher:
        batches = MixedBatches(
            train.images,
            train.codes,
            unlabelled,
            labelled_batch_size=args.labelled_batch_size,
            unlabelled_batch_size=args.unlabelled_batch_size,
            steps_per_epoch=args.steps_per_epoch,
            augment=augment,
            views=2 if args.teacher_noise and augment else 1,
            seed=args.seed,
        )
        args.steps_per_epoch = len(batches)
    elif args.fresh_images:
        batches = None  # Made once the first epoch to train is known.
    else:
        batches = ArrayBatches(
            train.images, train.codes, args.batch_size, shuffle=True, seed=args.seed, augment=augment
        )
    steps_per_epoch = len(batches) if batches is not None else -(-train_size // args.batch_size)
    candidates = None
    if state is None:
        keras.utils.set_random_seed(args.seed)
        if args.initial_model:
            try:
                model = load_model(args.initial_model)
                model_alphabet(model, alphabet)
            except (FileNotFoundError, ValueError) as error:
                sys.exit(f"error: --initial-model: {error}")
            if tuple(model.input_shape[1:3]) != tuple(image_size):
                sys.exit(f"error: --initial-model takes images of {model.input_shape[1:3]}; the data has {image_size}.")
        else:
            model_options = dict(args.model_options or {})
            model_options.update(
                {key: getattr(args, key) for key in ("weights", "backbone") if getattr(args, key) is not None}
            )
            try:
                model = models.get_model(args.model, alphabet=alphabet, image_size=image_size, **model_options)
            except TypeError as error:  # A builder without that option.
                if not model_options:
                    raise
                names = [f"--{key}" if key in ("weights", "backbone") else key for key in model_options]
                sys.exit(f"error: --model {args.model} takes no {' or '.join(names)}: {error}")
            except (FileNotFoundError, ValueError) as error:
                sys.exit(f"error: {error}")
        trainable, candidates = build_objective(args, model, alphabet, steps_per_epoch * args.epochs)
        initial_epoch, best, best_epoch = 0, -math.inf, None
        checkpoint_path.unlink(missing_ok=True)  # A stale state must never be resumed with these options.
        write_json(state_path, {"options": vars(args), "finished": False})
    else:
        if args.mean_teacher or args.label_smoothing or args.initial_model:
            sys.exit(f"error: runs with {WRAPPED} or --initial-model cannot be resumed.")
        model = load_model(checkpoint_path, compile=True)
        trainable = model
        try:
            initial_epoch = completed_epochs(model, steps_per_epoch)
        except ValueError as error:
            sys.exit(f"error: cannot resume from {checkpoint_path}: {error}")
        if initial_epoch >= args.epochs:
            sys.exit(f"error: {checkpoint_path} has finished all {args.epochs} epochs; nothing to resume.")
        best, best_epoch = truncate_history(history_path, initial_epoch)
        # A different seed for the rest, so that the resumed epochs do not replay the first epochs' shuffles.
        keras.utils.set_random_seed(args.seed + initial_epoch)
        print(f"Resuming {output} after epoch {initial_epoch} of {args.epochs} (from {checkpoint_path})", flush=True)
    print(f"Model: {args.initial_model or args.model}, {model.count_params():,} parameters", flush=True)

    checkpoint = BestModelCheckpoint(output, best=best, best_epoch=best_epoch, candidates=candidates)
    callbacks = [
        EpochReport(args.epochs, steps_per_epoch, alphabet.length, progress_bar=not args.quiet),
        checkpoint,
        keras.callbacks.CSVLogger(str(history_path), append=state is not None),
    ]
    if candidates is None:
        # Last, so that the state it saves comes after the log row and the best model of its epoch.
        callbacks.append(TrainingCheckpoint(checkpoint_path))
    time_limit = TimeLimit(args.time_limit) if args.time_limit else None
    if time_limit:
        callbacks.append(time_limit)
    if args.patience:
        callbacks.append(keras.callbacks.EarlyStopping("val_mean_accuracy", mode="max", patience=args.patience))
    if args.fresh_images:  # A resumed run draws the images of the epochs it has not trained yet.
        batches = GeneratedBatches(
            args.fresh_images,
            alphabet,
            args.batch_size,
            seed=f"{args.seed}/fresh",
            generator_options={"hard_font_weight": args.hard_font_weight} if args.hard_font_weight != 1 else None,
            first_epoch=initial_epoch,
        )
    train_started = time.time()
    interrupted = False
    try:
        trainable.fit(
            batches,
            epochs=args.epochs,
            initial_epoch=initial_epoch,
            validation_data=ArrayBatches(val.images, val.codes, batch_size=256),
            verbose=0,
            callbacks=callbacks,
        )
    except KeyboardInterrupt:
        interrupted = True
        print(
            f"\nInterrupted: keeping the best model saved so far; `python train.py --output {output} --resume` "
            "continues from the last finished epoch.",
            flush=True,
        )
    train_seconds = time.time() - train_started
    if checkpoint.best_epoch is None:
        sys.exit(f"error: training stopped before the first epoch ended; nothing was saved to {output}.")
    if not interrupted:
        write_json(state_path, {"options": vars(args), "finished": True})

    best = load_model(output)
    result = evaluate_model(best, val.images, val.codes, alphabet)
    test_result = evaluate_model(best, test.images, test.codes, alphabet) if test else None
    history = read_history(history_path)
    epochs_run = len(history.get("epoch", []))
    epoch_images = (
        train_size if unlabelled is None else steps_per_epoch * (args.labelled_batch_size + args.unlabelled_batch_size)
    )
    batch_images = args.batch_size if unlabelled is None else args.labelled_batch_size + args.unlabelled_batch_size
    images_trained = epoch_images * epochs_run
    if time_limit and time_limit.stopped_mid_epoch:  # The last epoch ended early: count what it trained on.
        images_trained -= epoch_images - min(epoch_images, time_limit.batches_in_epoch * batch_images)
    plot_history(
        history,
        curves_path,
        alphabet.length,
        title=f"{args.initial_model or args.model} on {train_size}{' new' if args.fresh_images else ''} "
        f"{'labelled ' if unlabelled is not None else ''}images{' every epoch' if args.fresh_images else ''}"
        + (f" + {len(unlabelled)} unlabelled (Mean Teacher)" if unlabelled is not None else "")
        + f", best epoch {checkpoint.best_epoch}",
    )
    summary = {
        "options": vars(args),
        "alphabet": alphabet.get_config(),
        "image_size": list(image_size),
        "model_file": str(output),
        "parameters": model.count_params(),
        "train_images": train_size,
        "fresh_images_per_epoch": args.fresh_images,
        "unlabelled_images": len(unlabelled) if unlabelled is not None else 0,
        "labelled_file": f"{stem}.labelled.txt" if args.labelled_count is not None else None,
        "saved_network": {"val_teacher_mean_accuracy": "teacher", "val_mean_accuracy": "student"}.get(
            checkpoint.best_source
        )
        if args.mean_teacher
        else None,
        "val_images": len(val),
        "test_images": len(test) if test else 0,
        "split_file": str(split_path) if args.data else None,
        "best_epoch": checkpoint.best_epoch,
        "epochs_run": epochs_run,
        "resumed_after_epoch": initial_epoch if state is not None else None,
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped_mid_epoch),
        "interrupted": interrupted,
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "train_images_per_second": round((images_trained - epoch_images * initial_epoch) / max(train_seconds, 1e-9), 1),
        "validation": result,
        "test": test_result,
        "history_file": str(history_path),
        "curves_file": str(curves_path),
    }
    write_json(options_path, summary)

    print(f"\nBest epoch {checkpoint.best_epoch} saved to {output} ({train_seconds / 60:.1f} min of training).")
    for position, accuracy in enumerate(result["position_accuracies"]):
        print(f"  validation accuracy of {alphabet.position_name} {position}: {accuracy:.4f}")
    print(f"  {format_accuracies(result)}")
    if test_result:
        print(f"  test ({len(test)} images): {format_accuracies(test_result)}")
    print(f"Curves: {curves_path}, history: {history_path}, options: {options_path}")
    return summary


if __name__ == "__main__":
    main()
