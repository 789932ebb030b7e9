"""The semi-supervised CAPTCHA solver's experiment: 700 labelled images, supervised stage, then Mean Teacher.

    python -m bench.semi_supervised                       # both sets, the CPU-budget settings below
    python -m bench.semi_supervised --sets henan          # one set
    python -m bench.semi_supervised --original            # the original's settings: full model, 500 + 500 epochs

For each set it runs `train.py` twice, as the original runs `main.py` then
`main_mean_teacher.py`:

1. supervised: `cnn_seq2seq`, SGD 0.05 (momentum 0.9, Nesterov, weight decay
   1e-4), label smoothing 0.1, rotation and colour jitter, batches of 64;
2. Mean Teacher from the stage-1 model: SGD 0.001 (momentum 0.9, gradients
   clipped at 10), constant rate, batches of 32 labelled + 64 unlabelled, EMA
   decay 0.99, consistency weight 30.

Checkpoints are chosen on a validation set and each saved model is scored
once on every image of a held-out test set. The sets:

- `multicolor`: multicolorcaptcha level 0 (the kit's generator), 700 labelled
  images, 20,000 unlabelled ones (generated, labels never read), 500 for
  validation, 2,000 for the test; the model reads the kit's colour-free
  foreground map (`foreground=True`; `--rgb` for the original's RGB input);
- `henan`: henan-4digit, split 0.8/0.1/0.1 (seed 0); 700 labelled images of the
  training part, the rest of it unlabelled.

`--model NAME` runs the same two stages with any registered student (the
Mean Teacher objective wraps any model), e.g. `--model cellnet`: then both
stages use Adam at the model's recommended learning rate (cosine schedule in
stage 1; a third of it, constant, in stage 2), the consistency weight ramps
up over 5 epochs, and student and teacher see their own random rotation of
each image; the results go to `semi_supervised_<set>_<model>.json`.

The default settings fit the kit's CPU budget: a smaller `cnn_seq2seq`
(`--model-options`: 32x64 input, half the channels, 16 encoder steps) and
time limits per stage. Each run leaves its model, history, curves and options
in `--work-dir`; the figures go to `bench/results/semi_supervised_<set>.json`,
and the table and curves of every set run so far to
`bench/results/semi_supervised.md` and `semi_supervised.png`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.figures import accuracy_axes, legend_below, new_figure, save_figure
from core.quiet import load_keras
from data.generate import generate_folder
from data.labels import IMAGE_SUFFIXES
from training.history import read_history

RESULTS = Path("bench/results")
HENAN = Path("../shared/datasets/henan-4digit")
# The CPU-budget model: a quarter of the input pixels and half the channels of the original.
SMALL_MODEL = {
    "input_size": [32, 64],
    "channels": [16, 32, 64, 128, 128],
    "pools": [[2, 2], [2, 2], [2, 1], [2, 1], [2, 1]],
}
MULTICOLOR_COUNTS = {"labelled": 700, "unlabelled": 20000, "val": 500, "test": 2000}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="multicolor,henan", help="comma-separated sets (default: %(default)s)")
    parser.add_argument("--work-dir", default="runs/semi_supervised", help="models and data (default: %(default)s)")
    parser.add_argument("--henan", default=str(HENAN), help="henan-4digit folder (default: %(default)s)")
    parser.add_argument("--labelled", type=int, default=700, help="labelled images (default: %(default)s)")
    parser.add_argument("--stage1-epochs", type=int, default=60, help="supervised epochs (default: %(default)s)")
    parser.add_argument(
        "--stage1-seconds", type=float, default=540, help="supervised time limit (default: %(default)s)"
    )
    parser.add_argument("--stage2-epochs", type=int, default=20, help="Mean Teacher epochs (default: %(default)s)")
    parser.add_argument(
        "--stage2-seconds", type=float, default=720, help="Mean Teacher time limit (default: %(default)s)"
    )
    parser.add_argument(
        "--steps-per-epoch", type=int, default=50, help="Mean Teacher batches per epoch (default: %(default)s)"
    )
    parser.add_argument(
        "--original",
        action="store_true",
        help="the original's settings: the full cnn_seq2seq, 500 + 500 epochs, no time limits, one pass over "
        "the unlabelled images per Mean Teacher epoch",
    )
    parser.add_argument(
        "--rgb",
        action="store_true",
        help="multicolorcaptcha read in RGB as the original does, instead of the kit's colour-free foreground map",
    )
    parser.add_argument(
        "--model",
        default="cnn_seq2seq",
        metavar="NAME",
        help="the student: cnn_seq2seq (the original's, default) or any registered model (models.list_models())",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the table and curves from the results there"
    )
    return parser


def has_images(folder: Path) -> bool:
    return folder.is_dir() and any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.iterdir())


def multicolor_data(work_dir: Path) -> tuple[list[str], list[str]]:
    """Generates the multicolorcaptcha sets once; returns the (stage 1, stage 2 extra) data options."""
    root = work_dir / "multicolor"
    for name, count in MULTICOLOR_COUNTS.items():
        if not has_images(root / name):
            print(f"Generating {count} multicolorcaptcha images into {root / name}/", flush=True)
            generate_folder(root / name, count, seed=f"semi_supervised/{name}")
    data = ["--train-dir", str(root / "labelled"), "--val-dir", str(root / "val"), "--test-dir", str(root / "test")]
    return data, ["--unlabelled", str(root / "unlabelled")]


def henan_data(folder: Path, labelled: int) -> tuple[list[str], list[str]]:
    data = ["--data", str(folder / "images"), "--labels", str(folder / "labels.txt"), "--split", "0.8,0.1,0.1"]
    return [*data, "--split-seed", "0", "--labelled-count", str(labelled)], []


def run_set(name: str, args) -> dict:
    """Both stages on one set; returns and writes its figures."""
    import models
    import train

    work_dir = Path(args.work_dir)
    if name == "multicolor":
        data, unlabelled = multicolor_data(work_dir)
    elif name == "henan":
        data, unlabelled = henan_data(Path(args.henan), args.labelled)
    else:
        raise ValueError(f"Unknown set {name!r}; expected multicolor or henan.")
    seq2seq = args.model == "cnn_seq2seq"
    common = [*data, "--model", args.model, "--augment", "--seed", str(args.seed), "--quiet", "--force"]
    model_options = {}
    if seq2seq:
        common += ["--optimizer", "sgd"]
        model_options = {} if args.original else dict(SMALL_MODEL)
        if name == "multicolor" and not args.rgb:
            # In RGB the random colours hide the digits: 17 epochs on 700 images stayed at chance (see docs/results.md).
            model_options["foreground"] = True
    if model_options:
        common += ["--model-options", json.dumps(model_options)]
    suffix = "" if seq2seq else f"_{args.model}"
    stage1_output = work_dir / f"{name}_{args.labelled}{suffix}.keras"
    stage2_output = work_dir / f"MT_{name}_{args.labelled}{suffix}.keras"
    epochs1 = "500" if args.original else str(args.stage1_epochs)
    epochs2 = "500" if args.original else str(args.stage2_epochs)
    if seq2seq:  # The original's recipe.
        stage1_recipe = [
            *("--learning-rate", "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "1e-4"),
            *("--label-smoothing", "0.1", "--batch-size", "64"),
        ]
        stage2_recipe = [
            *("--learning-rate", "0.001", "--momentum", "0.9", "--schedule", "constant", "--clip-value", "10"),
            *("--consistency-weight", "30"),
        ]
    else:  # The model's own recipe: Adam at its learning rate; a gentler, ramped start for stage 2.
        rate = models.recommended_learning_rate(args.model)
        stage1_recipe = ["--learning-rate", str(rate), "--batch-size", "64"]
        stage2_recipe = [
            *("--learning-rate", f"{rate / 3:.3g}", "--schedule", "constant", "--clip-value", "10"),
            *("--consistency-weight", "30", "--consistency-rampup", "5", "--teacher-noise"),
        ]
    stage1 = [*common, *stage1_recipe, "--output", str(stage1_output), "--epochs", epochs1]
    stage2 = [
        *common,
        *unlabelled,
        *("--mean-teacher", "--initial-model", str(stage1_output), "--output", str(stage2_output)),
        *stage2_recipe,
        *("--labelled-batch-size", "32", "--unlabelled-batch-size", "64", "--ema-decay", "0.99"),
        "--epochs",
        epochs2,
    ]
    if not args.original:
        stage1 += ["--time-limit", str(args.stage1_seconds)]
        stage2 += ["--time-limit", str(args.stage2_seconds), "--steps-per-epoch", str(args.steps_per_epoch)]
    print(f"\n== {name}: stage 1 (supervised)\npython train.py {' '.join(stage1)}", flush=True)
    first = train.main(stage1)
    print(f"\n== {name}: stage 2 (Mean Teacher)\npython train.py {' '.join(stage2)}", flush=True)
    second = train.main(stage2)
    stage2_history = read_history(second["history_file"])
    best = second["best_epoch"] - 1
    result = {
        "set": name,
        "model": args.model,
        "labelled_images": first["train_images"],
        "unlabelled_images": second["unlabelled_images"],
        "val_images": first["val_images"],
        "test_images": first["test_images"],
        "stage1": {
            "command": f"python train.py {' '.join(stage1)}",
            "best_epoch": first["best_epoch"],
            "epochs_run": first["epochs_run"],
            "train_seconds": first["train_seconds"],
            "validation": first["validation"],
            "test": first["test"],
            "history_file": first["history_file"],
        },
        "stage2": {
            "command": f"python train.py {' '.join(stage2)}",
            "best_epoch": second["best_epoch"],
            "epochs_run": second["epochs_run"],
            "train_seconds": second["train_seconds"],
            "saved_network": second["saved_network"],
            "validation": second["validation"],
            "test": second["test"],
            "student_val_whole_at_best": stage2_history["val_whole_accuracy"][best],
            "teacher_val_whole_at_best": stage2_history["val_teacher_whole_accuracy"][best],
            "history_file": second["history_file"],
        },
        "test_whole_gain_points": round(100 * (second["test"]["whole_accuracy"] - first["test"]["whole_accuracy"]), 2),
        "settings": {"model_options": model_options, **vars(args)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"semi_supervised_{name}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_report() -> Path | None:
    """The table and curves of every set whose results exist."""
    results = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("semi_supervised_*.json"))]
    if not results:
        return None
    lines = [
        "| set | student | labelled | unlabelled | val / test images | stage 1 test whole (val) "
        "| stage 2 test whole (val) | saved network | gain (points) | training minutes (1 + 2) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        first, second = result["stage1"], result["stage2"]
        lines.append(
            f"| {result['set']} | {result.get('model', 'cnn_seq2seq')} | {result['labelled_images']} "
            f"| {result['unlabelled_images']} "
            f"| {result['val_images']} / {result['test_images']} "
            f"| {first['test']['whole_accuracy']:.4f} ({first['validation']['whole_accuracy']:.4f}) "
            f"| {second['test']['whole_accuracy']:.4f} ({second['validation']['whole_accuracy']:.4f}) "
            f"| {second['saved_network']} (epoch {second['best_epoch']}) | {result['test_whole_gain_points']:+.2f} "
            f"| {first['train_seconds'] / 60:.1f} + {second['train_seconds'] / 60:.1f} |"
        )
    (RESULTS / "semi_supervised.md").write_text("\n".join(lines) + "\n")

    # Curves need the runs' history files, which stay in --work-dir: plot the results whose histories are
    # here, into the shared figure when all are, else into one figure per run (never dropping a panel).
    plotted = [result for result in results if histories_exist(result)]
    if not plotted:
        return None
    if len(plotted) == len(results):
        return plot_curves(plotted, RESULTS / "semi_supervised.png")
    for result in plotted:
        suffix = "" if result.get("model", "cnn_seq2seq") == "cnn_seq2seq" else f"_{result['model']}"
        plot_curves([result], RESULTS / f"semi_supervised_{result['set']}{suffix}.png")
    return None


def histories_exist(result: dict) -> bool:
    return all(Path(result[stage]["history_file"]).is_file() for stage in ("stage1", "stage2"))


def plot_curves(results: list[dict], path: Path) -> Path:
    """Validation whole accuracy of stage 1, then of the stage-2 student and teacher, one panel per run."""
    figure = new_figure(6 * len(results), 4.8)
    axes = figure.subplots(1, len(results), squeeze=False)
    for axis, result in zip(axes[0], results):
        first = read_history(result["stage1"]["history_file"])
        second = read_history(result["stage2"]["history_file"])
        stage1_epochs = [int(epoch) for epoch in first["epoch"]]  # read_history counts from 1.
        offset = len(stage1_epochs)
        stage2_epochs = [offset + int(epoch) for epoch in second["epoch"]]
        axis.plot(stage1_epochs, first["val_whole_accuracy"], "-", color="C0", label="stage 1 (val)")
        axis.plot(stage1_epochs, first["whole_accuracy"], "--", color="C0", alpha=0.5, label="stage 1 (train)")
        axis.plot(stage2_epochs, second["val_whole_accuracy"], "-", color="C1", label="stage 2 student (val)")
        axis.plot(stage2_epochs, second["val_teacher_whole_accuracy"], "-", color="C2", label="stage 2 teacher (val)")
        axis.axvline(offset + 0.5, color="grey", linewidth=0.8)
        accuracy_axes(axis, stage1_epochs + stage2_epochs)
        axis.set(
            xlabel=f"epoch (stage 2: {result['settings'].get('steps_per_epoch', '?')} batches of 32 labelled + 64 "
            "unlabelled)",
            ylabel="whole-CAPTCHA accuracy",
            title=f"{result['set']}, {result.get('model', 'cnn_seq2seq')}: {result['labelled_images']} labelled "
            f"+ {result['unlabelled_images']} unlabelled",
        )
        legend_below(axis, *axis.get_legend_handles_labels(), columns=2)
    return save_figure(figure, path)


def main(argv=None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report_only:
        write_report()
        return []
    load_keras()
    import models

    if args.model not in models.list_models():
        parser.error(f"--model must be a registered model ({', '.join(models.list_models())}). Received: {args.model}")
    results = []
    for name in [part.strip() for part in args.sets.split(",") if part.strip()]:
        results.append(run_set(name, args))
        write_report()
    print((RESULTS / "semi_supervised.md").read_text())
    return results


if __name__ == "__main__":
    main()
