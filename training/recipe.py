"""A training recipe: every option of a run, with its default and its meaning, in one dataclass.

    recipe = Recipe.from_file("configs/reference_stage2.json").replace(epochs=4)
    summary = training.run(recipe)

`train.py` builds its command line from these fields (their `help` and
`group`), so an option is declared once: here. A JSON config file (`--config`)
holds any subset of the fields; options given on the command line override
it. `check` refuses impossible values with a `ValueError` that names the
option and the value received.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.alphabet import Alphabet, alphabet_from_options

# The default run (new images, no --fresh-images) is sized by the clock, not by a count: up to 10 epochs of 16,000
# new images, stopped after DEFAULT_TIME_LIMIT seconds of training, with the cosine schedule reaching zero there.
# The 90 s left of the assignment's 20 minutes cover the start, the last validation and the final scores. The 2 CPU
# cores measured train cellnet at 64 to 125 images/s, so the clock ends the run on each of them (at 4 to 9 epochs),
# and a faster machine trains its 10 full epochs sooner; a fixed count sized for the slowest of them left the rest
# half their budget unused (docs/results.md, "Training at the assignment's budget").
DEFAULT_FRESH_IMAGES = 16_000
BUDGET_MINUTES = 20.0
BUDGET_MARGIN_SECONDS = 90.0
DEFAULT_TIME_LIMIT = BUDGET_MINUTES * 60 - BUDGET_MARGIN_SECONDS
DEFAULT_MODEL = "cellnet"


def option(default, help: str, group: str, **command_line):
    """A recipe field: its default, its help text, its group in `--help`, and argparse extras (choices, metavar)."""
    factory = {"default_factory": lambda: type(default)(default)} if isinstance(default, list | dict) else {}
    return field(
        **(factory or {"default": default}), metadata={"help": help, "group": group, "command_line": command_line}
    )


@dataclass
class Recipe:
    """What a training run does. Field names are the command-line options with `_` for `-`."""

    # model
    model: str = option(
        DEFAULT_MODEL,
        "registered model to train (`python -m models` lists them with their kinds and sizes)",
        "model",
        metavar="NAME",
    )
    model_options: dict = option(
        {},
        "keyword arguments of the model builder as a JSON object, e.g. '{\"dropout\": 0}'",
        "model",
        metavar="JSON",
    )
    weights: str | None = option(
        None,
        "initial weights of models that take them (efficientnet_lite0, keras_application): imagenet, none, or a "
        "weights file (.pth or .npz for efficientnet_lite0, .h5 for keras_application) (default: the model's own)",
        "model",
    )
    backbone: str | None = option(
        None, "keras.applications class of --model keras_application (default: MobileNetV3Small)", "model"
    )
    initial_model: str | None = option(None, "start from the architecture and weights of this .keras model", "model")
    # Set by train.py, not an option: the fields the automatic recipe may choose (`training.auto`).
    automatic: list = option([], "", "internal")
    output: str = option("my_model.keras", "where to save the best model", "model")
    # data
    train_dir: str | None = option(
        None,
        "a folder of labelled training images (python -m data.generate makes capts_train); without it and --data "
        "every epoch trains on --fresh-images newly drawn CAPTCHAs",
        "data",
    )
    val_dir: str = option("capts_val", "labelled validation images", "data")
    test_dir: str | None = option(None, "labelled test images, scored once with the best model", "data")
    data: str | None = option(None, "one labelled folder to split into training, validation and test images", "data")
    labels: str | None = option(None, "a 'FILENAME LABEL' file for the labels of --data (or of the folders)", "data")
    split: str = option("0.8,0.1,0.1", "train,val[,test] fractions of --data", "data")
    split_seed: int = option(0, "seed of the --data split and of --labelled-count", "data")
    split_file: str | None = option(None, "reuse the split recorded in this file instead of --split", "data")
    label_corrections: str | None = option(
        None,
        "a 'FILENAME WRONG RIGHT' file of confirmed label errors (python -m data.audit), applied to every "
        "folder's labels",
        "data",
    )
    alphabet: str = option("digits", "", "alphabet")  # Command line: core.alphabet.add_alphabet_arguments.
    length: int = option(4, "", "alphabet")
    min_length: int | None = option(None, "", "alphabet")
    fresh_images: int | None = option(
        None,
        f"new multicolorcaptcha images drawn for every epoch (by a worker process while the model trains) when no "
        f"training folder is given (default: {DEFAULT_FRESH_IMAGES:,})",
        "data",
        metavar="N",
    )
    hard_font_weight: int = option(
        1,
        "with fresh images: draw each font of core.multicolor.HARD_FONTS this many times as often as the others",
        "data",
    )
    reuse: int = option(
        1,
        "with fresh images: each drawn image serves this many consecutive epochs, in a new order (2 halves the "
        "drawing; the drawn images wait in a temporary memory-mapped file, 1.8 GB for the default 16,000)",
        "data",
        metavar="EPOCHS",
    )
    draw_workers: int = option(
        1,
        "with fresh images: processes drawing them while the model trains (each takes about a CPU core's "
        "worth when drawing is the bottleneck)",
        "data",
        metavar="N",
    )
    train_count: int = option(30_000, "images to generate when the default capts_train/ is missing", "data")
    val_count: int = option(5_000, "images to generate when the default capts_val/ is missing", "data")
    augment: bool = option(
        False, "random rotation (±10°) and colour jitter of training images, as the semi-supervised solver", "data"
    )
    skip_bad: bool = option(
        False,
        "skip (and count) images that do not decode, have another size or a bad label, instead of stopping",
        "data",
    )
    # optimisation
    epochs: int = option(10, "training epochs", "optimisation")
    batch_size: int = option(64, "images per step", "optimisation")
    learning_rate: float | None = option(
        None,
        "peak learning rate of the warm-up + cosine schedule (default: the model's own, 3e-3 for cellnet)",
        "optimisation",
    )
    schedule: str = option(
        "cosine", "warm-up then cosine decay to zero, or constant", "optimisation", choices=("cosine", "constant")
    )
    warmup_fraction: float = option(
        0.05,
        "part of the cosine schedule spent warming up linearly from a tenth of the peak (0.3 makes it one-cycle)",
        "optimisation",
    )
    optimizer: str = option("adam", "optimizer", "optimisation", choices=("adam", "sgd"))
    momentum: float = option(0.9, "SGD momentum", "optimisation")
    nesterov: bool = option(False, "SGD with Nesterov momentum", "optimisation")
    weight_decay: float = option(0.0, "decoupled weight decay", "optimisation")
    clip_value: float | None = option(None, "clip each gradient element to ±this", "optimisation")
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy", "optimisation")
    weight_average: float | None = option(
        None,
        "validate and save an exponential moving average of the weights with this decay per step (Polyak "
        "averaging), warmed up: over about the last tenth of the steps, and at most 1 / (1 - DECAY) steps",
        "optimisation",
        metavar="DECAY",
    )
    patience: int = option(0, "stop after this many epochs without improvement (0: never)", "optimisation")
    time_limit: float | None = option(
        None,
        "stop after the first batch that ends past this many seconds of training; that epoch is still validated. "
        "The cosine schedule then follows the time too: it reaches zero at the limit or at the last epoch, "
        f"whichever comes first (default: {DEFAULT_TIME_LIMIT:g} for new images without --fresh-images, so that "
        "the default run fits 20 minutes on any machine; otherwise none; 0: none)",
        "optimisation",
        metavar="SECONDS",
    )
    seed: int = option(0, "random seed of the weights, the shuffles and the drawn images", "optimisation")
    mixed_precision: bool = option(
        False,
        "compute in bfloat16 with float32 weights (Keras's mixed_bfloat16 policy; for GPUs); the saved model "
        "computes in float32",
        "optimisation",
    )
    distribute: str | None = option(
        None,
        "data-parallel training over every device of this machine (MirroredStrategy on TensorFlow, DataParallel "
        "on JAX), --batch-size split across them; multi-worker: over the processes, usually one per machine, "
        "that the KERAS_DISTRIBUTION_* variables name (JAX); see docs/training.md",
        "optimisation",
        nargs="?",
        const="devices",
        choices=("devices", "multi-worker"),
    )
    # semi-supervised (Mean Teacher)
    mean_teacher: bool = option(
        False, "train the model as the student of an EMA teacher on labelled and unlabelled images", "Mean Teacher"
    )
    unlabelled: list = option(
        [],
        "folder of unlabelled images of the training size (repeatable; labelled images of the run are left out)",
        "Mean Teacher",
        metavar="DIR",
    )
    unlabelled_count: int | None = option(
        None, "use at most this many unlabelled images (default: all)", "Mean Teacher"
    )
    labelled_count: int | None = option(
        None,
        "keep only this many training images as labelled, chosen by --split-seed; the others become unlabelled "
        "images for --mean-teacher (the kept names go to <name>.labelled.txt)",
        "Mean Teacher",
    )
    labelled_batch_size: int = option(32, "labelled images per batch", "Mean Teacher")
    unlabelled_batch_size: int = option(64, "unlabelled images per batch", "Mean Teacher")
    steps_per_epoch: int | None = option(
        None, "batches per epoch (default: one pass over the unlabelled images)", "Mean Teacher"
    )
    ema_decay: float = option(0.99, "teacher = decay * teacher + (1 - decay) * student", "Mean Teacher")
    consistency_weight: float = option(30.0, "weight of the consistency cost", "Mean Teacher")
    consistency_rampup: float = option(
        0.0, "epochs of sigmoid ramp-up of the consistency weight (0: constant, as in the solver)", "Mean Teacher"
    )
    teacher_noise: bool = option(
        False, "give the teacher its own augmentation of each image (with --augment), as in the paper", "Mean Teacher"
    )

    @classmethod
    def from_dict(cls, values: dict, source: str = "the recipe") -> Recipe:
        """A recipe from a mapping of field names (with `_` or `-`) to values; unknown names are refused."""
        names = {item.name for item in dataclasses.fields(cls)}
        values = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{source} has unknown options {unknown}; `python train.py --help` lists them.")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        """Reads a JSON config file (an object of options, e.g. configs/henan.json)."""
        return cls.from_dict(cls.read_config(path), source=f"--config {path}")

    @staticmethod
    def read_config(path: str | Path) -> dict:
        """The options of a JSON config file, by field name (`-` read as `_`), its `comment` left out."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"--config {path}: no such file.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"--config {path} is not a JSON file: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {path} must hold a JSON object of options. Received: {type(values).__name__}")
        values.pop("comment", None)  # Configs may explain themselves.
        return {key.replace("-", "_"): value for key, value in values.items()}

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def alphabet_spec(self) -> Alphabet:
        return alphabet_from_options(self.alphabet, self.length, self.min_length)

    @property
    def uses_fresh_images(self) -> bool:
        """Training draws new multicolorcaptcha images every epoch: no folder is named."""
        return not (self.train_dir or self.data)

    @property
    def training_seconds(self) -> float | None:
        """The seconds of training after which the run stops, or None for no limit.

        `--time-limit` when given (0: none); otherwise the default run's budget
        for the default data, new images with no `--fresh-images`, whose count
        per epoch is sized for the fastest machine and leaves the clock to end
        the run; a run that names its images or its folder runs all its epochs.
        """
        if self.time_limit is not None:
            return self.time_limit or None
        return DEFAULT_TIME_LIMIT if self.uses_fresh_images and self.fresh_images is None else None

    def check(self) -> None:
        """Raises `ValueError` naming the first option whose value cannot work, and the value."""
        if not self.output.endswith(".keras"):
            raise ValueError(f"--output must end in .keras. Received: {self.output}")
        for name in ("epochs", "batch_size", "labelled_batch_size", "unlabelled_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive. Received: {getattr(self, name)}")
        for name in ("learning_rate", "fresh_images", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive. Received: {value}")
        if self.time_limit is not None and self.time_limit < 0:
            raise ValueError(f"--time-limit must be positive, or 0 for none. Received: {self.time_limit}")
        if self.draw_workers < 1:
            raise ValueError(f"--draw-workers must be at least 1. Received: {self.draw_workers}")
        if self.reuse < 1:
            raise ValueError(f"--reuse must be at least 1. Received: {self.reuse}")
        if self.hard_font_weight < 1:
            raise ValueError(f"--hard-font-weight must be at least 1. Received: {self.hard_font_weight}")
        if self.weight_average is not None and not 0 < self.weight_average < 1:
            raise ValueError(f"--weight-average must be in (0, 1). Received: {self.weight_average}")
        if self.weight_average and self.mean_teacher:
            raise ValueError(
                "--weight-average and --mean-teacher both keep a moving average of the weights; the teacher already "
                "is one. Pass one of them."
            )
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"--warmup-fraction must be in [0, 1). Received: {self.warmup_fraction}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"--label-smoothing must be in [0, 1). Received: {self.label_smoothing}")
        if not isinstance(self.model_options, dict):
            raise ValueError(f"--model-options must be a JSON object. Received: {self.model_options!r}")
        alphabet = self.alphabet_spec
        folder = f"--train-dir {self.train_dir}, --data {self.data}"
        if self.uses_fresh_images:
            if alphabet != Alphabet():
                raise ValueError(
                    f"New images are drawn only for the assignment's four digits, not {alphabet}: generate a folder "
                    "(python -m data.generate) and pass --train-dir, or pass --data."
                )
            if self.mean_teacher or self.labelled_count is not None or self.augment:
                raise ValueError(
                    "--mean-teacher, --labelled-count and --augment need a training folder (--train-dir or --data); "
                    "without one every epoch trains on newly drawn images."
                )
        else:
            if self.fresh_images:
                raise ValueError(
                    "--fresh-images draws new training images; it cannot be combined with a training folder. "
                    f"Received: --fresh-images {self.fresh_images} with {folder}"
                )
            if self.reuse != 1:
                raise ValueError(
                    "--reuse keeps drawn images for more epochs; a training folder is used every epoch anyway. "
                    f"Received: --reuse {self.reuse} with {folder}"
                )
            if self.hard_font_weight != 1:
                raise ValueError(
                    "--hard-font-weight changes how new images are drawn; it does nothing for a training folder. "
                    f"Received: --hard-font-weight {self.hard_font_weight} with {folder}"
                )
