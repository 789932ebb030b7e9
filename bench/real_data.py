"""Benchmark: the automatic recipe on real labelled folders, with all training labels and with 700.

    python -m bench.real_data                              # henan-4digit and cloud-4digit, six runs of 10 minutes
    python -m bench.real_data --sets cloud --minutes 2     # a quick look

Each run is `python train.py --data FOLDER --labels FILE --split 0.8,0.1,0.1
--split-seed 0` without `--model`, as a user runs it, so the automatic
recipe (`training.auto`) chooses the reader and its schedule, under
`--time-limit` (which also sizes the cosine schedule). Per set:

- `all`: every training label;
- `700`: 700 of them (`--labelled-count 700`), supervised only;
- `700_mean_teacher`: the same 700, and the rest of the training split as
  unlabelled images (`--mean-teacher`), at the same budget.

henan-4digit is scored against its corrected labels (`--label-corrections`
with the set's `label_errors.txt`, and `data/corrections/` where the audit
found more), cloud-4digit against its one (`data/corrections/`). Writes
`bench/results/real_data.json` and `real_data.md` (per-character and whole
test accuracy, wall time, the recipe chosen) after every run, keeping the
runs of the sets and variants not run this time, and prints the table.
Targets: henan ≥ 99.5% whole against corrected labels; cloud ≥ 98% per
character; with 700 labels, Mean Teacher ≥ 5 points whole above supervised
only on at least one set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.bench_inference import machine, write_result

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"
SHARED = REPOSITORY.parent / "shared" / "datasets"
SETS = {
    "henan": {
        "folder": SHARED / "henan-4digit" / "images",
        "labels": SHARED / "henan-4digit" / "labels.txt",
        "corrections": [
            REPOSITORY / "data" / "corrections" / "henan-4digit.txt",
            SHARED / "henan-4digit" / "label_errors.txt",
        ],
    },
    "cloud": {
        "folder": SHARED / "cloud-4digit" / "images",
        "labels": SHARED / "cloud-4digit" / "labels.txt",
        "corrections": [REPOSITORY / "data" / "corrections" / "cloud-4digit.txt"],
    },
}
VARIANTS = {
    "all": [],
    "700": ["--labelled-count", "700"],
    "700_mean_teacher": ["--labelled-count", "700", "--mean-teacher"],
}
TARGETS = {"henan_whole": 0.995, "cloud_per_character": 0.98, "mean_teacher_gain": 0.05}


def run(name: str, variant: str, minutes: float, work: Path) -> dict:
    """One `train.py` run as a user types it (no --model); its summary, wall time and recipe."""
    spec = SETS[name]
    command = [
        sys.executable,
        str(REPOSITORY / "train.py"),
        "--data",
        str(spec["folder"]),
        "--labels",
        str(spec["labels"]),
    ]
    command += ["--split", "0.8,0.1,0.1", "--split-seed", "0", "--time-limit", str(round(minutes * 60))]
    corrections = next((path for path in spec["corrections"] if path.is_file()), None)
    if corrections:
        command += ["--label-corrections", str(corrections)]
    output = work / f"{name}_{variant}.keras"
    command += [*VARIANTS[variant], "--output", str(output), "--force", "--quiet"]
    print("$", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True, cwd=REPOSITORY)
    summary = json.loads(output.with_suffix(".json").read_text())
    options = summary["options"]
    return {
        "set": name,
        "variant": variant,
        "command": " ".join(["python", *command[1:]]).replace(str(REPOSITORY) + "/", ""),
        "corrections": str(corrections) if corrections else None,
        "wall_seconds": round(time.time() - started, 1),
        "recipe": {key: options[key] for key in ("model", "model_options", "batch_size", "epochs", "augment")},
        "earlier_attempts": summary.get("earlier_attempts", []),
        "labelled_images": summary["train_images"],
        "unlabelled_images": summary["unlabelled_images"],
        "epochs_run": summary["epochs_run"],
        "test": summary["test"],
    }


def table(runs: list[dict]) -> str:
    lines = [
        "| set | labels | model (options) | epochs | per character | whole | wall min |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in runs:
        recipe, test = row["recipe"], row["test"]
        options = f" {json.dumps(recipe['model_options'])}" if recipe["model_options"] else ""
        lines.append(
            f"| {row['set']} | {row['variant'].replace('_', ' ')} | {recipe['model']}{options} | {row['epochs_run']} | "
            f"{test['mean_accuracy']:.2%} | {test['whole_accuracy']:.2%} | {row['wall_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="henan,cloud", help="comma-separated, of henan and cloud (default: both)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all three)")
    parser.add_argument("--minutes", type=float, default=10, help="training budget of each run (default: 10)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/real_data"), help="models and logs")
    parser.add_argument("--output", type=Path, default=RESULTS / "real_data.json", help="the results file")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    planned = [(name, variant) for name in args.sets.split(",") for variant in args.variants.split(",")]
    # The results file keeps the runs of other sets and variants, so one set can be run again on its own.
    earlier = json.loads(args.output.read_text())["runs"] if args.output.is_file() else []
    runs = [row for row in earlier if (row["set"], row["variant"]) not in planned]
    for name, variant in planned:
        runs.append(run(name, variant, args.minutes, args.work_dir))
        runs.sort(key=lambda row: (list(SETS).index(row["set"]), list(VARIANTS).index(row["variant"])))
        result = write_results(runs, args.minutes, args.output)  # After each run: a later failure keeps it.
    print(table(runs))
    print("Targets:", json.dumps(result["targets"]))
    return result


def write_results(runs: list[dict], minutes: float, output: Path) -> dict:
    """The runs so far, with the targets they decide, written to `output` (JSON) and beside it as a table."""
    by = {(row["set"], row["variant"]): row["test"] for row in runs}
    gains = [
        by[(name, "700_mean_teacher")]["whole_accuracy"] - by[(name, "700")]["whole_accuracy"]
        for name in SETS
        if (name, "700") in by and (name, "700_mean_teacher") in by
    ]
    targets = {}
    if ("henan", "all") in by:
        targets["henan_whole"] = [
            TARGETS["henan_whole"],
            by[("henan", "all")]["whole_accuracy"] >= TARGETS["henan_whole"],
        ]
    if ("cloud", "all") in by:
        value = by[("cloud", "all")]["mean_accuracy"]
        targets["cloud_per_character"] = [TARGETS["cloud_per_character"], value >= TARGETS["cloud_per_character"]]
    if gains:
        targets["mean_teacher_gain"] = [TARGETS["mean_teacher_gain"], max(gains) >= TARGETS["mean_teacher_gain"]]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "minutes": minutes, "runs": runs}
    result["targets"] = targets
    write_result(result, output)
    output.with_suffix(".md").write_text(
        f"`python -m bench.real_data` ({result['date']}, {result['machine']})\n\n{table(runs)}\n"
    )
    return result


if __name__ == "__main__":
    main()
