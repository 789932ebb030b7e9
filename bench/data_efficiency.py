"""Benchmark summary: how cellnet's validation error falls with the number of training images it has seen.

    python -m bench.data_efficiency

Every cellnet run of the kit trains on new images each epoch, so "images
seen" is also "distinct images". This script reads the committed results
of finished runs (it trains nothing), all of one network, cellnet with
one convolution per stage: the earlier default recipe, the hard-font
run, and the reference model after each of its stages (a stage starts
from the previous stage's model, so its images add up). Each point is the
validation accuracy on `capts_val/` (5,000 images) at the end of a
learning-rate schedule, which is what makes the points comparable.

It fits a power law, error = c x images^slope, separately to the per-digit
and whole-CAPTCHA errors, and asks how many images the fit needs for the
default training's targets (97% per digit, 90% whole) and the reference model's (99.9%, 99.5%), how
many times the longest run's images that is, and how many minutes at the
earlier default run's measured training speed. The runs differ in more than their
length (learning rate, restarts between stages, hard fonts drawn more
often), so the answer is an estimate of scale, not a prediction. Writes
`bench/results/data_efficiency.json` and `.png` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from core.files import atomic_path

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"
# The accuracy targets of the default training and of the reference model. The figure shows the first.
TARGETS = {
    "per digit": {"default training": 0.97, "reference model": 0.999},
    "whole": {"default training": 0.90, "reference model": 0.995},
}
PLOTTED_GOAL = "default training"
# The earlier default recipe, whose network (one convolution per stage) every fitted run has: its images/s price
# the estimate.
SPEED_RUN = "bench/results/train_cellnet.json"

# (label, the results files of the run's stages in order). The accuracy is the last stage's.
RUNS = (
    ("earlier default: 32,000 new x 10", ("bench/results/train_cellnet.json",)),
    ("hard fonts x3: 32,000 new x 10", ("bench/results/train_cellnet_hardfonts3.json",)),
    ("dropout 0: 32,000 new x 10", ("bench/results/train_cellnet_dropout0.json",)),
    ("reference stage 1: 40,000 new x 12", ("reference/stage1.json",)),
    ("reference stage 2: + 48,000 new x 16", ("reference/stage1.json", "reference/stage2.json")),
    (
        "reference stage 3: + 48,000 new x 24",
        ("reference/stage1.json", "reference/stage2.json", "reference/stage3.json"),
    ),
)


def read_stage(path: Path) -> dict:
    """Images trained and final validation of one run, from `train.py`'s or `bench.bench_train`'s JSON."""
    result = json.loads(path.read_text())
    if not result.get("fresh_images_per_epoch"):
        raise ValueError(f"{path} trained on a fixed folder; only runs on new images every epoch count here")
    epochs = result["epochs_run"] if "epochs_run" in result else len(result["epochs"])
    if result.get("stopped_by_time_limit"):
        raise ValueError(f"{path} was stopped by its time limit before its schedule ended")
    validation = result["validation"] if "validation" in result else result["final_validation"]
    return {
        "images": result["fresh_images_per_epoch"] * epochs,
        "per digit": validation["mean_accuracy"],
        "whole": validation["whole_accuracy"],
    }


def collect(runs=RUNS, root: Path = REPOSITORY) -> list[dict]:
    """One point per run whose files are all present: images seen, per-digit and whole accuracy."""
    points = []
    for label, files in runs:
        paths = [root / name for name in files]
        if not all(path.is_file() for path in paths):
            continue
        stages = [read_stage(path) for path in paths]
        points.append(
            {
                "run": label,
                "files": list(files),
                "images": sum(stage["images"] for stage in stages),
                "per digit": stages[-1]["per digit"],
                "whole": stages[-1]["whole"],
            }
        )
    return points


def fit_power_law(images, accuracies) -> dict:
    """Least-squares fit of log(1 - accuracy) = intercept + slope log(images)."""
    if len(set(images)) < 2:
        raise ValueError(f"A fit needs runs of at least two lengths. Received images={list(images)}")
    slope, intercept = np.polyfit(np.log(images), np.log(1 - np.asarray(accuracies)), 1)
    return {"slope": float(slope), "intercept": float(intercept)}


def images_for(fit: dict, accuracy: float) -> float:
    """Images the fitted power law needs to reach `accuracy` (infinite if the error does not fall)."""
    if fit["slope"] >= 0:
        return math.inf
    return math.exp((math.log(1 - accuracy) - fit["intercept"]) / fit["slope"])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(RESULTS / "data_efficiency.json"), help="JSON file; PNG beside it")
    args = parser.parse_args(argv)

    points = collect()
    speed = json.loads((REPOSITORY / SPEED_RUN).read_text())["train_images_per_second"]
    most_images = max(p["images"] for p in points)
    estimates = {}
    for measure, targets in TARGETS.items():
        fit = fit_power_law([p["images"] for p in points], [p[measure] for p in points])
        estimates[measure] = {**fit, "targets": []}
        for goal, target in targets.items():
            needed = images_for(fit, target)
            finite = not math.isinf(needed)
            estimates[measure]["targets"].append(
                {
                    "goal": goal,
                    "target": target,
                    "images_needed": round(needed) if finite else None,
                    "times_the_most_images_seen": round(needed / most_images, 1) if finite else None,
                    "minutes_at_default_speed": round(needed / speed / 60, 1) if finite else None,
                }
            )
    result = {
        "benchmark": "validation error against training images seen (cellnet, new images every epoch)",
        "command": "python -m bench.data_efficiency",
        "points": points,
        "fits": estimates,
        "default_training_images_per_second": speed,
        "speed_from": SPEED_RUN,
    }
    output = Path(args.output)
    with atomic_path(output) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    figure_path = plot(result, output.with_suffix(".png"))
    print_table(result)
    print(f"\nWritten: {output}, {figure_path}")
    return result


def plot(result: dict, path: Path) -> Path:
    from matplotlib.ticker import PercentFormatter

    from core.figures import legend_below, new_figure, save_figure

    figure = new_figure(7.5, 5)
    axis = figure.subplots()
    points = result["points"]
    images = np.array([p["images"] for p in points])
    plotted = {  # measure: its target row of the plotted goal
        measure: next(row for row in fit["targets"] if row["goal"] == PLOTTED_GOAL)
        for measure, fit in result["fits"].items()
    }
    span = np.geomspace(
        images.min() / 1.5, max(images.max(), *(row["images_needed"] or 0 for row in plotted.values())) * 1.5
    )
    for (measure, fit), colour in zip(result["fits"].items(), ("tab:blue", "tab:red")):
        errors = 1 - np.array([p[measure] for p in points])
        axis.loglog(images, errors, "o", color=colour, label=f"{measure} error (capts_val)")
        axis.loglog(
            span,
            np.exp(fit["intercept"]) * span ** fit["slope"],
            "--",
            color=colour,
            alpha=0.6,
            label=f"fit: slope {fit['slope']:.2f}",
        )
        target = plotted[measure]["target"]
        axis.axhline(1 - target, color=colour, linestyle=":", alpha=0.8)
        axis.annotate(
            f"{PLOTTED_GOAL} target {target:.0%}", (span[0], 1 - target), color=colour, fontsize=8, va="bottom"
        )
    for index, point in enumerate(points):  # The label's part before the colon, beside the per-digit point.
        earlier = sum(other["images"] == point["images"] for other in points[:index])  # Runs of one length stack.
        axis.annotate(
            point["run"].split(":")[0],
            (point["images"], 1 - point["per digit"]),
            fontsize=7,
            xytext=(4, 4 - 10 * earlier),
            textcoords="offset points",
        )
    axis.set_xlabel("training images seen (all new)")
    axis.set_ylabel("validation error")
    axis.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axis.yaxis.set_minor_formatter(PercentFormatter(1.0, decimals=0))
    axis.tick_params(axis="y", which="both", labelsize=7)
    axis.grid(alpha=0.3, which="both")
    legend_below(axis, *axis.get_legend_handles_labels(), columns=2)
    axis.set_title("cellnet: error against images seen, end of each schedule", fontsize=9)
    return save_figure(figure, path, dpi=100)


def print_table(result: dict) -> None:
    print("| run | images seen | per digit | whole |")
    print("|---|---:|---:|---:|")
    for point in result["points"]:
        print(f"| {point['run']} | {point['images']:,} | {point['per digit']:.2%} | {point['whole']:.2%} |")
    print("\n| measure | fitted slope | target | images needed | x the most seen | minutes at the default speed |")
    print("|---|---:|---|---:|---:|---:|")
    for measure, fit in result["fits"].items():
        for row in fit["targets"]:
            if row["images_needed"] is None:
                needed = times = minutes = "never"
            else:
                needed = f"{row['images_needed']:,}"
                times = f"{row['times_the_most_images_seen']:,}"
                minutes = f"{row['minutes_at_default_speed']:,}"
            print(
                f"| {measure} | {fit['slope']:.2f} | {row['target']:.1%} ({row['goal']}) | {needed} | {times} | "
                f"{minutes} |"
            )


if __name__ == "__main__":
    main()
