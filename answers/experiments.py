"""Every measured figure of answers/answers.md: short training runs and analyses, each by name.

    python -m answers.experiments --list
    python -m answers.experiments baseline grayscale rgb    # short training runs (~2 CPU minutes each)
    python -m answers.experiments anatomy tta ensemble summaries step_time figures

A training run trains a `cellnet` variant for `epochs` (3) epochs on `images`
(8,000) newly drawn CAPTCHAs each (`data.stream.GeneratedBatches`, as
`python train.py --fresh-images 8000 --epochs 3` does), with the kit's
optimiser and schedule (`training.objective.compiled_objective`: Adam, 5% warm-up,
cosine decay). Every half epoch it scores the model on a fixed validation
subset: the first 2,000 images of the validation stream (seed "0/val", the
same images as the first 2,000 files of `capts_val/` from
`python -m data.generate`). It writes `answers/results/NAME.json` (the
command, settings, the curve, the final accuracies) and keeps the model in
`runs/answers/NAME.keras` for the analyses, which need the runs they name.

Times are seconds of training (evaluations excluded) on a 2-core machine
that other jobs shared; compare them across runs only roughly. Images seen
(optimiser steps x batch size) do not depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from core import multicolor  # noqa: E402
from core.alphabet import Alphabet  # noqa: E402
from data.generate import GenerationRecorder, make_captcha  # noqa: E402
from data.stream import GeneratedBatches  # noqa: E402
from models.decoding import decode_codes  # noqa: E402
from models.io import load_model  # noqa: E402
from models.reader import Reader, evaluate_predictions  # noqa: E402
from training.objective import compiled_objective  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "answers" / "results"
FIGURES = REPOSITORY / "answers" / "figures"
RUNS_DIR = REPOSITORY / "runs" / "answers"
BENCH_RESULTS = REPOSITORY / "bench" / "results"
VALIDATION_SEED = "0/val"
VALIDATION_IMAGES = 2000

# The shared setting of every short run; a configuration overrides some of it.
DEFAULTS = {
    "model": "cellnet",
    # Pinned, not taken from cellnet's defaults, so that a change of the default cannot change these runs.
    "model_options": {"dropout": 0.1, "stages": ((32,), (64,), (128,), (256,))},
    "images": 8000,
    "epochs": 3,
    "batch_size": 64,
    "learning_rate": 3e-3,
    "seed": 0,
}

TRAINING_RUNS = {
    "baseline": {"about": "cellnet as shipped: foreground map, dropout 0.1, peak LR 3e-3, batch 64, downscale 2"},
    "grayscale": {"about": "Q1: the same network on the luminance image", "model_options": {"colour": "grayscale"}},
    "rgb": {"about": "Q1: the same network on the three colour channels", "model_options": {"colour": "rgb"}},
    "no_dropout": {"about": "Q4/Q7: dropout 0 instead of 0.1", "model_options": {"dropout": 0.0}},
    "dropout_0.3": {"about": "Q4/Q7: dropout 0.3", "model_options": {"dropout": 0.3}},
    "lr_1e-3": {"about": "Q4/Q9: peak learning rate 1e-3 (Adam's default)", "learning_rate": 1e-3},
    "lr_1e-2": {"about": "Q4/Q9: peak learning rate 1e-2", "learning_rate": 1e-2},
    "batch_128": {"about": "Q9: batch 128 (half the steps)", "batch_size": 128},
    "downscale_4": {"about": "Q9: input reduced 4x instead of 2x per side", "model_options": {"downscale": 4}},
    "half_width": {
        "about": "Q4: half the filters and hidden units",
        "model_options": {"stages": ((16,), (32,), (64,), (128,)), "hidden_units": 128},
    },
    "seed_1": {"about": "Q10: the baseline with seed 1 (a second ensemble member)", "seed": 1},
}


def run_settings(name: str) -> dict:
    config = TRAINING_RUNS[name]
    settings = {**DEFAULTS, **{key: value for key, value in config.items() if key != "about"}}
    settings["model_options"] = {**DEFAULTS["model_options"], **config.get("model_options", {})}
    return settings


def command_of(name: str) -> str:
    return f"python -m answers.experiments {name}"


def shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it."""
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else str(path)


def write_json(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    print(f"wrote {shown(path)}", flush=True)
    return path


def read_result(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `{command_of(name)}` first.")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------- data


def validation_set(count: int = VALIDATION_IMAGES) -> dict:
    """The first `count` images of the validation stream with their codes, fonts and colours (cached)."""
    cache = RUNS_DIR / f"validation_{count}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    alphabet = Alphabet()
    images, codes, fonts, backgrounds, digit_colours = [], [], [], [], []
    for index in range(count):
        with GenerationRecorder() as recorder:
            image, label = make_captcha(VALIDATION_SEED, index)
        images.append(np.asarray(image, dtype=np.uint8))
        codes.append(alphabet.encode(label))
        fonts.append([Path(font).stem for font in recorder.fonts])
        backgrounds.append(recorder.colours[0][0])
        digit_colours.append([digit for _, digit in recorder.colours])
    data = {
        "images": np.stack(images),
        "codes": np.stack(codes),
        "fonts": np.array(fonts),
        "backgrounds": np.array(backgrounds, dtype=np.uint8),
        "digit_colours": np.array(digit_colours, dtype=np.uint8),
    }
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **data)
    return data


def luminance(rgb) -> np.ndarray:
    """ITU-R 601 luma (PIL's convert("L") and `models.layers.Grayscale`), 0-255."""
    return np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def predict_scores(model, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """Softmax scores (images, length, classes) of the four-digit cellnet runs, in batches (`models.reader`)."""
    return Reader(model, Alphabet()).scores(images, batch_size)


def score(scores: np.ndarray, codes: np.ndarray) -> dict:
    """Accuracies of (averaged) per-position scores: what TTA and the ensembles need beside `Reader.evaluate`."""
    return evaluate_predictions(codes, decode_codes(scores, Alphabet(), "positions"))


# ------------------------------------------------------------------------------------------ training


class HalfEpochEvaluation(keras.callbacks.Callback):
    """Scores the model on the validation subset every `every` steps; timing excludes the evaluations."""

    def __init__(self, images, codes, every: int, batch_size: int):
        super().__init__()
        self.images, self.codes, self.every, self.batch_size = images, codes, every, batch_size
        self.curve, self.steps, self.evaluation_seconds = [], 0, 0.0

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps % self.every == 0:
            self.evaluate()

    def evaluate(self):
        began = time.time()
        train_seconds = began - self.started - self.evaluation_seconds
        result = score(predict_scores(self.model, self.images), self.codes)
        self.evaluation_seconds += time.time() - began
        self.curve.append(
            {
                "steps": self.steps,
                "images_seen": self.steps * self.batch_size,
                "train_seconds": round(train_seconds, 1),
                "val_digit_accuracies": [round(value, 4) for value in result["position_accuracies"]],
                "val_mean_accuracy": round(result["mean_accuracy"], 4),
                "val_whole_accuracy": round(result["whole_accuracy"], 4),
            }
        )
        print(
            f"  step {self.steps}: {self.curve[-1]['train_seconds']}s, val mean {result['mean_accuracy']:.4f}, "
            f"whole {result['whole_accuracy']:.4f}",
            flush=True,
        )


def train(name: str) -> dict:
    """Runs training configuration `name`, writes its results and model."""
    settings = run_settings(name)
    alphabet = Alphabet()
    validation = validation_set()
    keras.utils.set_random_seed(settings["seed"])
    model = models.get_model(settings["model"], alphabet=alphabet, **settings["model_options"])
    steps_per_epoch = math.ceil(settings["images"] / settings["batch_size"])
    objective = compiled_objective(model, settings["learning_rate"], steps_per_epoch * settings["epochs"])
    batches = GeneratedBatches(settings["images"], alphabet, settings["batch_size"], seed=f"{settings['seed']}/fresh")
    evaluation = HalfEpochEvaluation(
        validation["images"], validation["codes"], max(1, steps_per_epoch // 2), settings["batch_size"]
    )
    print(f"{name}: {TRAINING_RUNS[name]['about']}; {model.count_params():,} parameters", flush=True)
    history = objective.fit(batches, epochs=settings["epochs"], verbose=0, callbacks=[evaluation])
    if evaluation.steps % evaluation.every:
        evaluation.evaluate()
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    model.save(RUNS_DIR / f"{name}.keras")
    logs = history.history
    epochs = [
        {
            "epoch": epoch + 1,
            "train_loss": round(logs["loss"][epoch], 4),
            # Keras's running mean over the epoch, with dropout active: below the accuracy at the epoch's end.
            "train_digit_accuracies": [
                round(logs[f"digit_{position}_accuracy"][epoch], 4) for position in range(alphabet.length)
            ],
        }
        for epoch in range(settings["epochs"])
    ]
    final = evaluation.curve[-1]
    result = {
        "name": name,
        "about": TRAINING_RUNS[name]["about"],
        "command": command_of(name),
        "settings": {**settings, "model_options": {k: v for k, v in settings["model_options"].items()}},
        "equivalent_train_py": "python train.py --fresh-images {images} --epochs {epochs} --batch-size {batch_size} "
        "--learning-rate {learning_rate} --seed {seed}".format(**settings)
        + (f" --model-options '{json.dumps(settings['model_options'])}'" if settings["model_options"] else ""),
        "validation": f"first {VALIDATION_IMAGES} images of the stream {VALIDATION_SEED!r} (= capts_val/ files 0-1999)",
        "parameters": model.count_params(),
        "train_seconds": final["train_seconds"],
        "final": final,
        "curve": evaluation.curve,
        "epochs": epochs,
    }
    return {"result": write_json(RESULTS / f"{name}.json", result)}


# ------------------------------------------------------------------------------------------ analyses


def load_run_model(name: str):
    path = RUNS_DIR / f"{name}.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `{command_of(name)}` first.")
    return load_model(path)


def anatomy() -> dict:
    """Q1 and Q8: where the errors are, by luminance contrast of digit and background and by font."""
    validation = validation_set()
    codes = validation["codes"]
    contrast = np.abs(luminance(validation["digit_colours"]) - luminance(validation["backgrounds"])[:, None])
    bins = [0, 10, 20, 40, 256]
    result = {
        "command": command_of("anatomy"),
        "images": int(len(codes)),
        "digits": int(codes.size),
        "luminance_contrast_bins": bins,
        "digits_per_bin": [int(((contrast >= low) & (contrast < high)).sum()) for low, high in zip(bins, bins[1:])],
        "share_below_10": round(float((contrast < 10).mean()), 4),
        "share_below_20": round(float((contrast < 20).mean()), 4),
        # Below about 1 the rounded 8-bit grayscale values of digit and background are equal: the digit is gone.
        "digits_below": {str(limit): int((contrast < limit).sum()) for limit in (1, 2, 5, 10, 20)},
        "images_with_a_digit_below": {str(limit): int((contrast < limit).any(axis=1).sum()) for limit in (1, 2, 5, 10)},
        "accuracy_by_contrast": {},
    }
    for name in ("baseline", "grayscale", "rgb"):
        if not (RUNS_DIR / f"{name}.keras").is_file():
            continue
        predicted = Reader(load_run_model(name), Alphabet()).codes(validation["images"], batch_size=250)
        correct = predicted == codes
        result["accuracy_by_contrast"][name] = [
            round(float(correct[(contrast >= low) & (contrast < high)].mean()), 4)
            if ((contrast >= low) & (contrast < high)).any()
            else None
            for low, high in zip(bins, bins[1:])
        ]
        if name == "baseline":
            fonts = validation["fonts"]
            errors = ~correct
            per_font = {
                font: {"digits": int((fonts == font).sum()), "errors": int(errors[fonts == font].sum())}
                for font in np.unique(fonts)
            }
            rate = {font: counts["errors"] / counts["digits"] for font, counts in per_font.items()}
            ranked = sorted(per_font, key=rate.get, reverse=True)
            worst = ranked[: len(ranked) // 5]
            result["fonts"] = len(per_font)
            result["baseline_errors"] = int(errors.sum())
            result["baseline_error_rate"] = round(float(errors.mean()), 4)
            result["worst_fifth_of_fonts"] = worst
            result["worst_fifth_share_of_digits"] = round(sum(per_font[f]["digits"] for f in worst) / codes.size, 4)
            result["worst_fifth_share_of_errors"] = round(
                sum(per_font[f]["errors"] for f in worst) / max(1, errors.sum()), 4
            )
            result["error_rate_by_font"] = {
                font: round(per_font[font]["errors"] / per_font[font]["digits"], 4) for font in ranked
            }
            result["digits_by_font"] = {font: per_font[font]["digits"] for font in ranked}
    write_json(RESULTS / "anatomy.json", result)
    luminance_figure(validation, contrast)
    return result


def luminance_figure(validation: dict, contrast: np.ndarray, samples: int = 4) -> Path:
    """Real validation images whose digit has nearly the background's luminance: RGB, grayscale, foreground map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.layers import ForegroundMap

    order = np.argsort(contrast, axis=None)
    chosen, used = [], set()
    for flat in order:
        image_index, position = divmod(int(flat), contrast.shape[1])
        if image_index not in used:
            chosen.append((image_index, position))
            used.add(image_index)
        if len(chosen) == samples:
            break
    strips = validation["images"][[index for index, _ in chosen], slice(*multicolor.TEXT_ROWS)].astype(np.float32)
    gray = luminance(strips)
    foreground = np.asarray(ForegroundMap()(strips / 255.0))[..., 0]
    figure, axes = plt.subplots(samples, 3, figsize=(10, 1.05 * samples + 0.4))
    for row, (image_index, position) in enumerate(chosen):
        label = "".join(str(code) for code in validation["codes"][image_index])
        panels = (strips[row] / 255, gray[row], foreground[row] / max(foreground[row].max(), 1e-6))
        for column, (panel, title) in enumerate(zip(panels, ("RGB", "grayscale (luma)", "foreground map"))):
            axis = axes[row, column]
            axis.imshow(panel, cmap=None if column == 0 else "gray", vmin=0, vmax=255 if column == 1 else 1)
            axis.add_patch(plt.Rectangle((64 * position, 0), 63, 63, fill=False, edgecolor="red", linewidth=1.5))
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=10)
        axes[row, 0].set_ylabel(
            f"#{image_index} '{label}'\n|ΔY|={contrast[image_index, position]:.1f}", fontsize=8, rotation=0, ha="right"
        )
    figure.tight_layout()
    path = FIGURES / "q1_luminance.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {shown(path)}", flush=True)
    return path


def shifted(images: np.ndarray, dy: int, dx: int, top: int = 40, height: int = 64) -> np.ndarray:
    """Images whose text strip (rows `top` to `top + height`) is moved by (dy, dx) pixels, edges repeated."""
    if dy == 0 and dx == 0:
        return images
    pad = max(abs(dy), abs(dx))
    strip = np.pad(images[:, top : top + height], ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    moved = images.copy()
    moved[:, top : top + height] = strip[:, pad - dy : pad - dy + height, pad - dx : pad - dx + images.shape[2]]
    return moved


TTA_SHIFTS = ((0, 0), (0, 2), (0, -2), (2, 0), (-2, 0))


def tta() -> dict:
    """Q10: test-time augmentation, the baseline's scores averaged over the image and four 2-pixel shifts."""
    validation = validation_set()
    model = load_run_model("baseline")
    scores = [predict_scores(model, shifted(validation["images"], dy, dx)) for dy, dx in TTA_SHIFTS]
    result = {
        "command": command_of("tta"),
        "model": "runs/answers/baseline.keras",
        "shifts": TTA_SHIFTS,
        "single": score(scores[0], validation["codes"]),
        "averaged": score(np.mean(scores, axis=0), validation["codes"]),
    }
    write_json(RESULTS / "tta.json", result)
    return result


def ensemble() -> dict:
    """Q10: averaging the scores of two (and more) independently trained models."""
    validation = validation_set()
    members = [name for name in ("baseline", "seed_1", "no_dropout") if (RUNS_DIR / f"{name}.keras").is_file()]
    scores = {name: predict_scores(load_run_model(name), validation["images"]) for name in members}
    result = {"command": command_of("ensemble"), "members": {}, "ensembles": {}}
    for name in members:
        result["members"][name] = score(scores[name], validation["codes"])
    for size in range(2, len(members) + 1):
        names = members[:size]
        result["ensembles"][" + ".join(names)] = score(np.mean([scores[n] for n in names], axis=0), validation["codes"])
    write_json(RESULTS / "ensemble.json", result)
    return result


def layer_table(model, indent: str = "") -> list[str]:
    """Markdown rows (layer, type, output shape, parameters) of a model, nested models expanded."""
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # TimeDistributed wraps the cell reader.
        shape = tuple(layer.output.shape) if hasattr(layer, "output") else "?"
        rows.append(f"| {indent}{layer.name} | {type(layer).__name__} | {shape} | {layer.count_params():,} |")
        if isinstance(inner, keras.Model):
            rows += layer_table(inner, indent + "&nbsp;&nbsp;&nbsp;")
    return rows


def summaries() -> dict:
    """Q5: `model.summary()` of the models the answers describe (untrained; the shape is what matters)."""
    # The practical model is the reference model: cellnet as configs/reference_stage1.json builds it.
    reference_options = json.loads((REPOSITORY / "configs" / "reference_stage1.json").read_text())["model_options"]
    wanted = [("cellnet", reference_options), ("shawon", {})]
    if "efficientnet_lite0" in models.list_models():
        wanted.append(("efficientnet_lite0", {"weights": None}))  # Same network as the pretrained one.
    result = {"command": command_of("summaries"), "models": {}}
    os.environ["COLUMNS"] = "140"  # Keras prints its summary table at the terminal's width.
    for name, options in wanted:
        model = models.get_model(name, **options)
        lines = []
        model.summary(
            print_fn=lambda line, *args, lines=lines, **kwargs: lines.append(line), expand_nested=True, line_length=140
        )
        path = RESULTS / f"summary_{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        table = RESULTS / f"summary_{name}.md"
        table.write_text(
            "\n".join(["| layer | type | output shape | parameters |", "|---|---|---|---|", *layer_table(model)]) + "\n"
        )
        result["models"][name] = {
            "parameters": model.count_params(),
            "summary": shown(path),
            "layer_table": shown(table),
        }
    write_json(RESULTS / "summaries.json", result)
    return result


def step_time(steps: int = 15) -> dict:
    """Q9: training compute per image of each setting, on fixed batches of real images (no data generation).

    The short runs draw their images in one worker process on a shared CPU, which
    can cap their speed whatever the model costs; this times the optimiser steps
    alone, after three warm-up steps.
    """
    validation = validation_set()
    result = {"command": command_of("step_time"), "steps": steps, "runs": {}}
    for name in ("baseline", "downscale_4", "batch_128", "half_width"):
        settings = run_settings(name)
        keras.utils.set_random_seed(0)
        model = models.get_model(settings["model"], **settings["model_options"])
        objective = compiled_objective(model, settings["learning_rate"], total_steps=1000)
        size = settings["batch_size"]
        images, codes = validation["images"][:size], validation["codes"][:size]
        for _ in range(3):
            objective.train_on_batch(images, codes)
        began = time.time()
        for _ in range(steps):
            objective.train_on_batch(images, codes)
        seconds = time.time() - began
        result["runs"][name] = {
            "batch_size": size,
            "milliseconds_per_image": round(1000 * seconds / (steps * size), 2),
            "images_per_second": round(steps * size / seconds, 1),
        }
        print(f"  {name}: {result['runs'][name]}", flush=True)
    write_json(RESULTS / "step_time.json", result)
    return result


def figures() -> dict:
    """Every figure of the answers from the committed results (the runs' JSON and bench/results)."""
    from answers import plots

    return {"figures": [str(shown(path)) for path in plots.make_all()]}


ANALYSES = {
    "anatomy": anatomy,
    "tta": tta,
    "ensemble": ensemble,
    "summaries": summaries,
    "step_time": step_time,
    "figures": figures,
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="training runs and analyses to run, in order ('runs': all runs)")
    parser.add_argument("--list", action="store_true", help="list the names and what each measures")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for name, config in TRAINING_RUNS.items():
            print(f"{name:14s} run       {config['about']}")
        for name, function in ANALYSES.items():
            print(f"{name:14s} analysis  {function.__doc__.splitlines()[0]}")
        return {}
    names = [n for name in args.names for n in (TRAINING_RUNS if name == "runs" else [name])]
    unknown = [name for name in names if name not in TRAINING_RUNS and name not in ANALYSES]
    if unknown:
        print(f"error: unknown names {unknown}; known: {', '.join([*TRAINING_RUNS, *ANALYSES])}", file=sys.stderr)
        sys.exit(2)
    outputs = {}
    for name in names:
        began = time.time()
        outputs[name] = train(name) if name in TRAINING_RUNS else ANALYSES[name]()
        print(f"{name} done in {time.time() - began:.0f}s", flush=True)
    return outputs


if __name__ == "__main__":
    main()
