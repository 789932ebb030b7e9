"""Benchmark: the same EfficientNet-Lite0 reader trained from ImageNet weights and from random weights.

    python -m bench.bench_pretrained                       # 4,000 + 1,200 images (made if missing), 5 epochs
    python -m bench.bench_pretrained --epochs 3 --train-dir /tmp/effdata/train --val-dir /tmp/effdata/val

Both runs see the same images in the same order (same seed), with the same
optimiser, learning-rate schedule and number of epochs; only the backbone's
initial weights differ (`weights="imagenet"` or None). The data folders are
generated when missing (multicolorcaptcha level 0, as `python -m
data.generate`). Writes `bench/results/pretrained_vs_scratch.json`, `.md`
(the table it prints) and `.png` (per-digit validation accuracy against
epoch for both runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.machine import machine
from core.alphabet import Alphabet
from core.quiet import load_keras
from data.dataset import load_labelled_folder
from data.generate import generate_folder, read_manifest

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"
MODEL = "efficientnet_lite0"
RUNS = {"imagenet": "ImageNet weights", "scratch": "random weights"}


def train_once(weights, train, val, alphabet, args) -> dict:
    """Trains one model from `weights` ("imagenet" or None); returns its per-epoch figures."""
    keras = load_keras()
    import models
    from data.batches import ArrayBatches
    from training.callbacks import EpochReport
    from training.objective import compiled_objective

    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    model = models.get_model(MODEL, alphabet=alphabet, image_size=train.images.shape[1:3], weights=weights)
    steps_per_epoch = -(-len(train) // args.batch_size)
    objective = compiled_objective(model, args.learning_rate, steps_per_epoch * args.epochs)
    # Wall seconds of each epoch, training and validation.
    started, seconds = [], []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(time.time()),
        on_epoch_end=lambda epoch, logs: seconds.append(round(time.time() - started[-1], 1)),
    )
    history = objective.fit(
        ArrayBatches(train.images, train.codes, args.batch_size, shuffle=True, seed=args.seed),
        epochs=args.epochs,
        validation_data=ArrayBatches(val.images, val.codes, batch_size=256),
        verbose=0,
        callbacks=[EpochReport(args.epochs, steps_per_epoch, alphabet.length, progress_bar=False), timer],
    )
    logs = history.history
    return {
        "weights": weights or "none",
        "parameters": model.count_params(),
        "epochs": [
            {
                "epoch": epoch + 1,
                "seconds": seconds[epoch],
                "loss": round(logs["loss"][epoch], 4),
                "val_digit_accuracies": [
                    round(logs[f"val_digit_{p}_accuracy"][epoch], 4) for p in range(alphabet.length)
                ],
                "val_mean_accuracy": round(logs["val_mean_accuracy"][epoch], 4),
                "val_whole_accuracy": round(logs["val_whole_accuracy"][epoch], 4),
            }
            for epoch in range(len(logs["loss"]))
        ],
    }


def markdown_table(result: dict) -> str:
    lines = [
        f"{MODEL}: {result['train_images']} training and {result['val_images']} validation images "
        f"(multicolorcaptcha level 0, {result['input']}), {result['epochs']} epochs, batch {result['batch_size']}, "
        f"peak learning rate {result['learning_rate']}; {result['machine']}",
        "",
        "| weights | epoch | s/epoch | loss | val digit 0 | digit 1 | digit 2 | digit 3 | val mean | val whole |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"].values():
        for row in run["epochs"]:
            digits = " | ".join(f"{value:.4f}" for value in row["val_digit_accuracies"])
            lines.append(
                f"| {run['weights']} | {row['epoch']} | {row['seconds']:.0f} | {row['loss']:.4f} | {digits} | "
                f"{row['val_mean_accuracy']:.4f} | {row['val_whole_accuracy']:.4f} |"
            )
    lines += [
        "",
        "s/epoch: wall seconds of training and validation on the shared CPU; epoch 1 includes tracing the graphs.",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5))
    styles = {"imagenet": "-", "scratch": "--"}
    for key, run in result["runs"].items():
        epochs = [row["epoch"] for row in run["epochs"]]
        for position in range(4):
            values = [row["val_digit_accuracies"][position] for row in run["epochs"]]
            axes.plot(
                epochs, values, styles[key], color=f"C{position}", marker="o", label=f"{RUNS[key]}, digit {position}"
            )
    axes.set_xticks([row["epoch"] for row in next(iter(result["runs"].values()))["epochs"]])
    axes.axhline(0.1, color="grey", linewidth=0.8, linestyle=":", label="chance (0.1)")
    axes.set(xlabel="epoch", ylabel="validation accuracy per digit", ylim=(0, 1))
    axes.set_title(f"{MODEL}: ImageNet-pretrained vs random init, {result['train_images']} training images")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", default="/tmp/effdata/train", help="training images (default: %(default)s)")
    parser.add_argument("--val-dir", default="/tmp/effdata/val", help="validation images (default: %(default)s)")
    parser.add_argument("--train-count", type=int, default=4000, help="images to generate when --train-dir is missing")
    parser.add_argument("--val-count", type=int, default=1200, help="images to generate when --val-dir is missing")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: %(default)s)")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help=f"peak learning rate (default: the one {MODEL} registers)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the shuffling")
    parser.add_argument("--data-seed", default="3", help="seed of generated folders (default: %(default)s)")
    parser.add_argument("--output-dir", default=str(RESULTS), help="where the results go (default: bench/results)")
    args = parser.parse_args(argv)
    load_keras()
    import models

    if args.learning_rate is None:
        args.learning_rate = models.recommended_learning_rate(MODEL)
    for folder, count, split in ((args.train_dir, args.train_count, "train"), (args.val_dir, args.val_count, "val")):
        if not Path(folder).is_dir():
            generate_folder(Path(folder), count, seed=f"{args.data_seed}/{split}")
    alphabet = Alphabet()
    train = load_labelled_folder(args.train_dir, alphabet)
    val = load_labelled_folder(args.val_dir, alphabet)
    height, width = train.images.shape[1:3]
    print(f"Data: {len(train)} training, {len(val)} validation images of {width}x{height}", flush=True)

    runs = {}
    for key in RUNS:
        print(f"\n{MODEL} from {RUNS[key]}:", flush=True)
        runs[key] = train_once("imagenet" if key == "imagenet" else None, train, val, alphabet, args)
    result = {
        "benchmark": "ImageNet-pretrained vs random initialisation, same data, schedule and epochs",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{machine()}, cores shared",
        "command": "python -m bench.bench_pretrained " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": MODEL,
        "input": f"{width}x{height} images, the model crops the 256x64 text strip",
        "data": {
            "generator": read_manifest(Path(args.train_dir)).get("generator"),
            "train_seed": read_manifest(Path(args.train_dir)).get("seed"),
            "val_seed": read_manifest(Path(args.val_dir)).get("seed"),
            "same_as": f"python -m data.generate --train-dir {args.train_dir} --val-dir {args.val_dir} "
            f"--train-count {len(train)} --val-count {len(val)} --seed {args.data_seed}",
        },
        "train_images": len(train),
        "val_images": len(val),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "runs": runs,
    }
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "pretrained_vs_scratch.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(result)
    (output / "pretrained_vs_scratch.md").write_text(table)
    plot(result, output / "pretrained_vs_scratch.png")
    print("\n" + table)
    print(f"Written: {output}/pretrained_vs_scratch.json, .md, .png")
    return result


if __name__ == "__main__":
    main()
