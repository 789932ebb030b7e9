"""The training run: a recipe in, the best model and its logs out, nothing lost on the way.

    summary = train(Recipe(epochs=3, output="runs/quick.keras"))

Beside the model (`<name>.keras`, the best epoch's plain model) it writes
`<name>.history.csv` (per-epoch figures, epochs from 1), `<name>.curves.png`
(accuracy of each position against epoch) and `<name>.json` (the recipe, the
figures of the run and the final validation and test accuracies). While it
trains, `<name>.last.keras`, `<name>.last.weights.h5` and `<name>.last.json`
hold the state of the last finished epoch (`training.callbacks`): Ctrl-C
keeps them and the best model, and `resume=True` continues from there with
the same recipe, learning-rate schedule and CSV log, for every kind of run.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras

import models
from core.files import atomic_path, rounded, write_json
from data.batches import ArrayBatches
from data.generate import read_manifest
from models.io import load_model, model_alphabet
from models.reader import evaluate_model, format_accuracies
from training.auto import choose, fallback, is_automatic, read_alphabet
from training.callbacks import (
    AveragedWeights,
    BestModelCheckpoint,
    EpochReport,
    HistoryLog,
    StuckRun,
    TimedCosine,
    TimeLimit,
    TrainingCheckpoint,
    completed_epochs,
    judging_epoch,
)
from training.data import TrainingData, fresh_images, images_per_step, load_training_data, training_batches
from training.distribute import Distribution
from training.distribute import start as start_distribution
from training.history import read_history
from training.objective import MeanTeacherSettings, Objective, compiled_objective
from training.recipe import BUDGET_MINUTES, Recipe


@dataclass(frozen=True)
class RunFiles:
    """The files of a run, named after its model file."""

    model: Path

    def __getattr__(self, name):
        suffixes = {
            "history": ".history.csv",
            "curves": ".curves.png",
            "summary": ".json",
            "last_model": ".last.keras",
            "last_weights": ".last.weights.h5",
            "last_state": ".last.json",
            "split": ".split.csv",
            "labelled": ".labelled.txt",
        }
        if name not in suffixes:
            raise AttributeError(name)
        return Path(f"{self.model.with_suffix('')}{suffixes[name]}")


def saved_recipe(output: str | Path) -> Recipe:
    """The recipe of the interrupted run of `output`, read from its `<name>.last.json`.

    Raises:
        ValueError: Nothing to resume: no state, a finished run, or an unreadable file.
    """
    files = RunFiles(Path(output))
    if not all(path.is_file() for path in (files.last_model, files.last_weights, files.last_state)):
        raise ValueError(
            f"nothing to resume for {output}: {files.last_weights} or {files.last_state} is missing (they are "
            "written at the end of each epoch of a run with this --output)."
        )
    try:
        state = json.loads(files.last_state.read_text())
        recipe = Recipe.from_dict(state["recipe"], source=str(files.last_state))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{files.last_state} is not a training state file: {error}") from None
    if state.get("finished"):
        raise ValueError(f"the run of {output} finished; nothing to resume.")
    return recipe.replace(output=str(output))


def build_model(recipe: Recipe, image_size) -> keras.Model:
    """The model to train: the registry's `recipe.model`, or the `initial_model` file."""
    alphabet = recipe.alphabet_spec
    if recipe.initial_model:
        try:
            model = load_model(recipe.initial_model)
            model_alphabet(model, alphabet)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(f"--initial-model: {error}") from None
        if tuple(model.input_shape[1:3]) != tuple(image_size):
            raise ValueError(
                f"--initial-model takes images of {model.input_shape[1:3]}; the data has {tuple(image_size)}."
            )
        return model
    options = dict(recipe.model_options)
    options.update({key: getattr(recipe, key) for key in ("weights", "backbone") if getattr(recipe, key) is not None})
    try:
        return models.get_model(recipe.model, alphabet=alphabet, image_size=image_size, **options)
    except TypeError as error:  # A builder without that option.
        names = [f"--{key}" if key in ("weights", "backbone") else key for key in options]
        raise ValueError(f"--model {recipe.model} takes no {' or '.join(names)}: {error}") from None
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None


def check_distribution(recipe: Recipe, distribution: Distribution, resume: bool = False) -> None:
    """Refuses a batch the devices cannot share, Mean Teacher on TensorFlow replicas, and resuming many processes."""
    if distribution.processes > 1 and resume:
        raise ValueError(
            "--resume continues a run on one machine; a multi-worker run restarts from the start "
            "(or resume its chief's files without --distribute multi-worker)."
        )
    if distribution.replicas > 1:
        names = ("labelled_batch_size", "unlabelled_batch_size") if recipe.mean_teacher else ("batch_size",)
        for name in names:
            size = getattr(recipe, name)
            if size % distribution.replicas:
                raise ValueError(
                    f"--{name.replace('_', '-')} {size} cannot be split across {distribution.replicas} devices; "
                    f"pass a multiple of {distribution.replicas}."
                )
        if recipe.mean_teacher and keras.backend.backend() == "tensorflow":
            raise ValueError(
                "--mean-teacher with --distribute runs on the JAX backend (KERAS_BACKEND=jax); TensorFlow's "
                "replicas cannot update the teacher's mirrored weights."
            )


def timed_schedule(recipe: Recipe) -> bool:
    """A cosine run with a time limit: its schedule follows the time too (`training.callbacks.TimedCosine`)."""
    return bool(recipe.training_seconds) and recipe.schedule == "cosine"


def build_objective(recipe: Recipe, model: keras.Model, steps_per_epoch: int) -> Objective:
    """The compiled objective that `fit` trains (`training.objective`)."""
    settings = None
    if recipe.mean_teacher:
        rampup = round(recipe.consistency_rampup * steps_per_epoch)
        settings = MeanTeacherSettings(recipe.ema_decay, recipe.consistency_weight, rampup)
    return compiled_objective(
        model,
        recipe.learning_rate,
        steps_per_epoch * recipe.epochs,
        label_smoothing=recipe.label_smoothing,
        mean_teacher=settings,
        name=recipe.optimizer,
        schedule="constant" if timed_schedule(recipe) else recipe.schedule,
        warmup_fraction=recipe.warmup_fraction,
        weight_decay=recipe.weight_decay,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        clip_value=recipe.clip_value,
        weight_average=recipe.weight_average,
    )


def best_so_far(history_path: Path, epochs: int, candidates) -> tuple[float, int | None]:
    """Keeps the first `epochs` rows of the CSV log (a stopped run may have logged one more).

    Returns:
        (the best figure of `candidates` among the rows kept, its epoch from 1); (-inf, None) without a log.
    """
    if not history_path.is_file():
        return -math.inf, None
    lines = history_path.read_text().splitlines(keepends=True)
    with atomic_path(history_path) as temporary:
        temporary.write_text("".join(lines[: epochs + 1]))
    history = read_history(history_path)
    scored = [(value, epoch + 1) for key in candidates for epoch, value in enumerate(history.get(key, []))]
    return max(scored, default=(-math.inf, None))


def check_output(recipe: Recipe, force: bool, resume: bool) -> Path:
    output = Path(recipe.output)
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--output {output}: {parent} is a file, not a folder.")
    if output.exists() and not force and not resume:
        raise ValueError(
            f"{output} already exists. Pass --force to replace it, --resume to continue its interrupted run, "
            "or choose another --output."
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


def restore(recipe: Recipe, files: RunFiles, steps_per_epoch: int):
    """The interrupted run's model and objective, as its last finished epoch left them.

    Returns:
        (model, objective, epochs done, best figure so far, its epoch).
    """
    model = load_model(files.last_model)
    objective = build_objective(recipe, model, steps_per_epoch)
    objective.optimizer.build(objective.trainable_variables)
    objective.load_weights(files.last_weights)
    try:
        initial_epoch = completed_epochs(objective, steps_per_epoch)
    except ValueError as error:
        raise ValueError(f"cannot resume from {files.last_weights}: {error}") from None
    if initial_epoch >= recipe.epochs:
        raise ValueError(f"{files.last_weights} has finished all {recipe.epochs} epochs; nothing to resume.")
    best, best_epoch = best_so_far(files.history, initial_epoch, objective.plain_models)
    # A different seed for the rest, so that the resumed epochs do not replay the first epochs' shuffles.
    keras.utils.set_random_seed(recipe.seed + initial_epoch)
    print(f"Resuming {files.model} after epoch {initial_epoch} of {recipe.epochs} (from {files.last_weights})")
    return model, objective, initial_epoch, best, best_epoch


def train(recipe: Recipe, force: bool = False, resume: bool = False, quiet: bool = False) -> dict:
    """Runs `recipe` (resuming its interrupted run with `resume`); returns the summary also written as JSON.

    Raises:
        ValueError: An option, a folder or a file that cannot work; the message names it.
        KeyboardInterrupt: Ctrl-C before the first epoch ended (nothing was saved).
    """
    rate = models.recommended_learning_rate(recipe.model)  # Also refuses an unknown name, before any data loads.
    if recipe.learning_rate is None:
        recipe = recipe.replace(learning_rate=rate)
    recipe.check()
    distribution = start_distribution(recipe.distribute)
    check_distribution(recipe, distribution, resume)
    if not distribution.chief:  # Only the chief writes the run's files; this process's go to a temporary folder.
        scratch = Path(tempfile.mkdtemp(prefix="captcha-kit-worker-"))
        try:
            return train_on(recipe, distribution, RunFiles(scratch / Path(recipe.output).name), resume, quiet)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return train_on(recipe, distribution, RunFiles(check_output(recipe, force, resume)), resume, quiet)


def train_on(
    recipe: Recipe, distribution: Distribution, files: RunFiles, resume: bool, quiet: bool, earlier: tuple = ()
) -> dict:
    """`train`'s work once the distribution is started and the run's files are chosen.

    `earlier` holds the attempts before this one (an automatic run stuck at
    chance is retried once with `training.auto.fallback`).
    """
    started = time.time()
    if not resume and not earlier:
        recipe, read = read_alphabet(recipe)
        if read:
            recipe.check()
            print(read, flush=True)
    data = load_training_data(recipe, files.split, files.labelled)
    data_seconds = time.time() - started
    print(data.describe(recipe, data_seconds), flush=True)
    if is_automatic(recipe) and not resume and not earlier:
        recipe = automatic_recipe(recipe, data)
    batches = training_batches(recipe, data, distribution=distribution)
    steps_per_epoch = len(batches)
    if resume:
        with distribution.scope():
            model, objective, initial_epoch, best, best_epoch = restore(recipe, files, steps_per_epoch)
        distribution.prepare(model)
        batches = training_batches(recipe, data, first_epoch=initial_epoch, distribution=distribution)
    else:
        keras.utils.set_random_seed(recipe.seed)
        if recipe.mixed_precision:
            keras.config.set_dtype_policy("mixed_bfloat16")  # For the layers built below.
        with distribution.scope():
            model = distribution.prepare(build_model(recipe, data.image_size))
            objective = build_objective(recipe, model, steps_per_epoch)
        initial_epoch, best, best_epoch = 0, -math.inf, None
        for stale in (files.last_model, files.last_weights):  # A stale state must never be resumed with this recipe.
            stale.unlink(missing_ok=True)
        write_json(files.last_state, {"recipe": recipe.to_dict(), "finished": False})
    print(f"Model: {recipe.initial_model or recipe.model}, {model.count_params():,} parameters", flush=True)
    if recipe.time_limit is None and recipe.training_seconds:
        print(
            f"Budget: training stops after {recipe.training_seconds / 60:g} minutes, at the epoch it has reached, with "
            f"the learning rate at zero by then, so that the whole run fits {BUDGET_MINUTES:g} minutes "
            f"(--time-limit 0: all {recipe.epochs} epochs)",
            flush=True,
        )

    averaged = AveragedWeights() if recipe.weight_average else None
    checkpoint = BestModelCheckpoint(
        files.model, objective.plain_models, best=best, best_epoch=best_epoch, averaged=averaged
    )
    time_limit = TimeLimit(recipe.training_seconds) if recipe.training_seconds else None
    retry = fallback(recipe) if not earlier else None
    labelled_batch = recipe.labelled_batch_size if recipe.mean_teacher else recipe.batch_size
    judged = judging_epoch(steps_per_epoch * labelled_batch)
    stuck = StuckRun(recipe.alphabet_spec.num_classes, stuck_advice(recipe), judged, stop=retry is not None)
    callbacks = [
        *([averaged] if averaged else []),  # First: every epoch is validated with the average.
        EpochReport(
            recipe.epochs,
            steps_per_epoch,
            recipe.alphabet_spec.length,
            progress_bar=not quiet,
            position_name=recipe.alphabet_spec.position_name,
        ),
        stuck,  # After EpochReport, which adds val_mean_accuracy to the logs, like the next two.
        checkpoint,
        HistoryLog(str(files.history), append=resume),
        # Last, so that the state it saves comes after the log row and the best model of its epoch.
        TrainingCheckpoint(files.last_model, files.last_weights),
        *([time_limit] if time_limit else []),
    ]
    if timed_schedule(recipe):
        callbacks.append(
            TimedCosine(
                recipe.learning_rate, steps_per_epoch * recipe.epochs, recipe.training_seconds, recipe.warmup_fraction
            )
        )
    if recipe.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                "val_mean_accuracy", mode="max", patience=recipe.patience, start_from_epoch=judged
            )
        )
    validation = distribution.shard(ArrayBatches(data.val.images, data.val.codes, batch_size=256))
    train_started, interrupted = time.time(), False
    try:
        objective.fit(
            batches,
            epochs=recipe.epochs,
            initial_epoch=initial_epoch,
            validation_data=validation,
            verbose=0,
            callbacks=callbacks,
        )
    except KeyboardInterrupt:
        interrupted = True
        print(
            f"\nInterrupted: keeping the best model saved so far; `python train.py --output {files.model} --resume` "
            "continues from the last finished epoch.",
            flush=True,
        )
    train_seconds = time.time() - train_started
    if retry is not None and stuck.stuck_after and not interrupted:
        attempt = {
            "model": recipe.model, "model_options": recipe.model_options, "learning_rate": recipe.learning_rate,
            "stuck_after_epoch": stuck.stuck_after, "best_val_mean_accuracy": round(checkpoint.best, 4),
            "train_seconds": round(train_seconds, 1),
        }  # fmt: skip
        second, why = retry
        second = second.replace(learning_rate=models.recommended_learning_rate(second.model))
        if recipe.training_seconds:  # The time limit bounds both attempts together.
            second = second.replace(time_limit=max(60.0, recipe.training_seconds - train_seconds))
        print(f"Retrying once with the automatic recipe's fallback: {why}.", flush=True)
        return train_on(second, distribution, files, False, quiet, earlier=(attempt,))
    fingerprint = None if interrupted else distribution.check_same_weights(model)
    distribution.end()
    if not distribution.chief:
        if interrupted:
            raise KeyboardInterrupt
        print(
            f"Process {distribution.process_index} of {distribution.processes} done (weights {fingerprint[:12]}, "
            "the chief's); the chief wrote the model and the run's files."
        )
        return {
            "process": distribution.process_index,
            "processes": distribution.processes,
            "weights_sha256": fingerprint,
        }
    if checkpoint.best_epoch is None:
        if interrupted:
            raise KeyboardInterrupt
        raise ValueError(f"training stopped before the first epoch ended; nothing was saved to {files.model}.")
    if not interrupted:
        write_json(files.last_state, {"recipe": recipe.to_dict(), "finished": True})
    outcome = Outcome(
        checkpoint, time_limit, stuck, steps_per_epoch, initial_epoch if resume else None, interrupted,
        data_seconds, train_seconds, model.count_params(), distribution.processes, fingerprint, earlier,
    )  # fmt: skip
    return summarise(recipe, files, data, outcome)


@dataclass(frozen=True)
class Outcome:
    """How a run went, for its summary."""

    checkpoint: BestModelCheckpoint
    time_limit: TimeLimit | None
    stuck: StuckRun
    steps_per_epoch: int
    resumed_after: int | None
    interrupted: bool
    data_seconds: float
    train_seconds: float
    parameters: int
    processes: int = 1
    weights_sha256: str | None = None  # Of the last epoch's weights (every process's, when several train).
    earlier_attempts: tuple = ()  # Automatic runs stuck at chance before this one.


def automatic_recipe(recipe: Recipe, data: TrainingData) -> Recipe:
    """The automatic recipe's choices on a real folder, printed with their reasons; the course's defaults elsewhere."""
    if data.train is None or read_manifest(recipe.data or recipe.train_dir):  # New images, or a generated folder.
        return recipe.replace(automatic=[])  # The assignment's data: its own defaults.
    chosen, reasons = choose(recipe, data.image_size, len(data.train))
    if chosen.learning_rate is None:
        chosen = chosen.replace(learning_rate=models.recommended_learning_rate(chosen.model))
        reasons.append(f"learning rate {chosen.learning_rate:g}: {chosen.model}'s own, with warm-up and cosine decay")
    chosen.check()
    print("Automatic recipe (no --model given; name one to choose yourself):", flush=True)
    for reason in reasons:
        print(f"  {reason}", flush=True)
    return chosen


def stuck_advice(recipe: Recipe) -> str:
    """What to try when a run stays at chance: the rate, another reader, the labels."""
    folder = recipe.data or recipe.train_dir
    labels = f"; look at the labels: python -m data.preview {folder} samples.png" if folder else ""
    return (
        f"Try a lower --learning-rate (this run: {recipe.learning_rate:g}) or another --model "
        f"(python -m models lists them; crnn_ctc reads small real images well){labels}."
    )


def summarise(recipe: Recipe, files: RunFiles, data: TrainingData, outcome: Outcome) -> dict:
    """Scores the best model, draws the curves, writes `<name>.json` and prints the final figures."""
    from core.figures import plot_history

    alphabet = recipe.alphabet_spec
    best = load_model(files.model)
    result = evaluate_model(best, data.val.images, data.val.codes, alphabet)
    test_result = evaluate_model(best, data.test.images, data.test.codes, alphabet) if data.test else None
    history = read_history(files.history)
    epochs_run = len(history.get("epoch", []))
    train_size = fresh_images(recipe) or len(data.train)
    epoch_images = train_size if data.unlabelled is None else outcome.steps_per_epoch * images_per_step(recipe)
    images_trained = epoch_images * epochs_run
    if (
        outcome.time_limit and outcome.time_limit.stopped_mid_epoch
    ):  # The last epoch ended early: count what it trained on.
        images_trained -= epoch_images - min(
            epoch_images, outcome.time_limit.batches_in_epoch * images_per_step(recipe)
        )
    fresh = data.train is None
    unlabelled = len(data.unlabelled) if data.unlabelled is not None else 0
    plot_history(
        history,
        files.curves,
        alphabet.length,
        title=f"{recipe.initial_model or recipe.model} on {train_size:,}{' new' if fresh else ''} "
        f"{'labelled ' if unlabelled else ''}images{' every epoch' if fresh else ''}"
        + (f" + {unlabelled:,} unlabelled (Mean Teacher)" if unlabelled else "")
        + f", best epoch {outcome.checkpoint.best_epoch}",
    )
    summary = {
        "options": recipe.to_dict(),
        "alphabet": alphabet.get_config(),
        "image_size": list(data.image_size),
        "model_file": str(files.model),
        "parameters": outcome.parameters,
        "train_images": train_size,
        "fresh_images_per_epoch": fresh_images(recipe),
        "unlabelled_images": unlabelled,
        "labelled_file": str(files.labelled) if recipe.labelled_count is not None else None,
        "saved_network": {"val_teacher_mean_accuracy": "teacher", "val_mean_accuracy": "student"}.get(
            outcome.checkpoint.best_source
        )
        if recipe.mean_teacher
        else None,
        "val_images": len(data.val),
        "test_images": len(data.test) if data.test else 0,
        "split_file": str(files.split) if recipe.data else None,
        "best_epoch": outcome.checkpoint.best_epoch,
        "epochs_run": epochs_run,
        "resumed_after_epoch": outcome.resumed_after,
        "time_limit_seconds": recipe.training_seconds,
        "stopped_by_time_limit": bool(outcome.time_limit and outcome.time_limit.stopped_mid_epoch),
        "interrupted": outcome.interrupted,
        "stuck_after_epoch": outcome.stuck.stuck_after,
        "data_seconds": round(outcome.data_seconds, 1),
        "train_seconds": round(outcome.train_seconds, 1),
        "train_images_per_second": round(
            (images_trained - epoch_images * (outcome.resumed_after or 0)) / max(outcome.train_seconds, 1e-9), 1
        ),
        "validation": result,
        "test": test_result,
        "history_file": str(files.history),
        "curves_file": str(files.curves),
        "earlier_attempts": list(outcome.earlier_attempts),
        "processes": outcome.processes,
        "weights_sha256": outcome.weights_sha256,
    }
    summary = rounded(summary)
    write_json(files.summary, summary)
    print(
        f"\nBest epoch {outcome.checkpoint.best_epoch} saved to {files.model} "
        f"({outcome.train_seconds / 60:.1f} min of training)."
    )
    for position, accuracy in enumerate(result["position_accuracies"]):
        print(f"  validation accuracy of {alphabet.position_name} {position}: {accuracy:.4f}")
    print(f"  {format_accuracies(result, alphabet.position_name)}")
    if test_result:
        print(f"  test ({len(data.test)} images): {format_accuracies(test_result, alphabet.position_name)}")
    print(f"Curves: {files.curves}, history: {files.history}, summary: {files.summary}")
    return summary
