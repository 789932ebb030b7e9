"""Benchmark: training recipes compared at the same CPU budget, two seeds each.

    python -m bench.sweep configs/sweep/*.json              # every recipe, seeds 0 and 1
    python -m bench.sweep configs/sweep/half_width.json --seeds 2
    python -m bench.sweep --table                           # the table of the runs done so far

Each recipe (a `train.py --config` file) trains from a clean state for the
default run's budget, 10 epochs within 20 minutes on this machine, and a
recipe that reads images faster sees more of them: a short calibration run
(two epochs of 6,400 new images) measures its training images/s and its
validation time, and every epoch gets `--fresh-images` for a tenth of the
budget, 5% more than those figures promise, so that `--time-limit` (which
also ends the cosine schedule, `training.callbacks.TimedCosine`) rather than
the epoch count ends each run.
Recipes that train on a folder keep their own images and only get the time.

Every run validates on the same `capts_val/` (5,000 images, seed 0) and its
best model is scored once on `capts_test/` (10,000 separately seeded images,
seed 1), which confirms the choice made on validation. A run's figures go to
`bench/results/sweep/<recipe>_seed<k>.json` and runs already there are not
redone, so a sweep can be continued. The table (mean and spread over the
seeds of images seen, images/s, per-digit and whole accuracy of the best
epoch, wall time) is printed and written to `bench/results/sweep.md` and
`sweep.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine import boot_id, machine
from core.files import write_json
from training.history import read_history
from training.recipe import BUDGET_MARGIN_SECONDS, BUDGET_MINUTES, Recipe

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results" / "sweep"  # `--results-dir` moves it.
CALIBRATION_IMAGES = 6_400
CONTENDED_SECONDS = 60.0
# The recipes every run is paired with where they ran on the same machine: the default before the sweep, which the
# recipes pinned to its network were measured against, and the default it chose.
BASELINES = {"default": "the earlier default", "two_convolutions": "today's default"}
CALIBRATION_CONTENDED_SECONDS = 10.0


def machine_cpu_seconds(stat: str | None = None) -> tuple[float, float]:
    """CPU seconds this machine has spent busy since boot, all processes together, and the part of it stolen.

    Both from the first line of Linux's /proc/stat (`stat`, read when not given). Busy counts steal time, CPU
    that the hypervisor gave to other guests while this one wanted it, which slows a run as much as a process
    here would; it is returned apart so that a result can say which of the two took the cores.
    """
    line = stat if stat is not None else Path("/proc/stat").read_text().split("\n")[0]
    fields = [int(value) for value in line.split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) / tick, fields[7] / tick


def process_tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Records in `seen` the CPU seconds so far of `root` and of every process below it (Linux /proc)."""
    parents, times, tick = {}, {}, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # The process ended while it was being read.
        pid = int(stat.parent.name)
        parents[pid], times[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
    for pid in times:
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            seen[pid] = max(seen.get(pid, 0.0), times[pid])


def run_train(arguments: list[str], cwd: Path) -> dict:
    """Runs train.py with `arguments` in `cwd`: its wall time, its CPU time, and the CPU time others took meanwhile.

    A run that shared the cores with other work saw fewer images in its time; `other_cpu_seconds` says by how much.
    The run's own CPU is what it and the processes it started used: those it waited for count in its resource
    usage, and those that ended without being waited for (drawing workers that are killed rather than joined)
    are sampled from /proc each half second while it runs, so they do not read as other work.
    """
    command = [sys.executable, str(REPOSITORY / "train.py"), *arguments]
    print("$", " ".join(command), flush=True)
    started, (busy, stolen), own = time.time(), machine_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    watching, seen = time.process_time(), {}  # The sampling's own CPU is not other work either.
    with subprocess.Popen(command, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPOSITORY)}) as process:
        while process.poll() is None:
            process_tree_cpu(process.pid, seen)
            time.sleep(0.5)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = max(after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime, sum(seen.values()))
    busy_after, stolen_after = machine_cpu_seconds()
    return {
        "wall_seconds": round(time.time() - started, 1),
        "cpu_seconds": round(cpu, 1),
        "other_cpu_seconds": round(max(0.0, busy_after - busy - cpu - (time.process_time() - watching)), 1),
        "stolen_cpu_seconds": round(stolen_after - stolen, 1),  # Of the other CPU, what the host's other guests took.
    }


def prepare_folders(work: Path) -> None:
    """The fixed validation set and the separately seeded test set, made once and shared by every run."""
    work.mkdir(parents=True, exist_ok=True)
    # train.py's own capts_val/ (seed 0), and the reference model's capts_test/ (seed 1, reference/README.md).
    for folder, count, seed, kind in (("capts_val", 5_000, 0, "val"), ("capts_test", 10_000, 1, "test")):
        if not (work / folder / ".complete").exists():
            counts = {"train": 0, "val": 0, "test": 0, kind: count}
            subprocess.run(
                [sys.executable, "-m", "data.generate", f"--{kind}-dir", str(work / folder), "--seed", str(seed),
                 "--force", *(f"--{name}-count={value}" for name, value in counts.items())],
                cwd=REPOSITORY, check=True,
            )  # fmt: skip
            (work / folder / ".complete").touch()


def calibrate(config: Path, work: Path, results: Path) -> dict:
    """The recipe's training images/s and validation seconds, from the second of two short epochs.

    Cached per recipe and kept while the machine is the same running one (its CPU model and its boot): "2 CPU
    cores" have differed by half in speed from one machine to the next, two hosts have reported the same CPU
    model at speeds 20% apart, and a figure from another one sizes the epochs wrong.
    """
    path = results / f"{config.stem}.calibration.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if not cached.get("contended") and (cached.get("machine"), cached.get("boot")) == (machine(), boot_id()):
            return cached
    folder = work / f"calibrate_{config.stem}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    timing = run_train(
        ["--config", str(config), "--val-dir", str(work / "capts_val"), "--epochs", "2", "--fresh-images",
         str(CALIBRATION_IMAGES), "--output", "model.keras", "--quiet"],
        cwd=folder,
    )  # fmt: skip
    history = read_history(folder / "model.history.csv")
    # The first epoch also builds the step functions; the second is what every later epoch costs.
    validation = history["val_seconds"][-1]
    result = {
        "images": CALIBRATION_IMAGES,
        "train_images_per_second": round(CALIBRATION_IMAGES / (history["epoch_seconds"][-1] - validation), 1),
        "val_seconds": round(validation, 1),
        "machine": machine(),
        "boot": boot_id(),
        **timing,
        # Shared cores make a recipe look slower than it is: such a figure is measured again before the next run.
        "contended": timing["other_cpu_seconds"] > CALIBRATION_CONTENDED_SECONDS,
    }
    write_json(path, result)
    shutil.rmtree(folder)
    return result


def images_per_epoch(calibration: dict, fit_seconds: float, epochs: int, batch_size: int) -> int:
    """New images per epoch that fill a tenth of the time with training and validation, plus 5%.

    The extra 5% makes the time limit, not the epoch count, end the run, so no recipe leaves budget unused.
    """
    training = max(fit_seconds / epochs - calibration["val_seconds"], 1.0)
    return max(1, round(calibration["train_images_per_second"] * training * 1.05 / batch_size)) * batch_size


def run_recipe(
    config: Path, seed: int, work: Path, minutes: float, results: Path = RESULTS, redo_contended: bool = False
) -> dict:
    """One run of the recipe at the budget; returns (and writes) its figures. A run already done is kept, unless
    it shared the cores (`contended`) and `redo_contended` is set."""
    path = results / f"{config.stem}_seed{seed}.json"
    if path.exists():
        done = json.loads(path.read_text())
        if not (redo_contended and done.get("contended")):
            return done
    recipe = Recipe.from_file(config)  # Refuses a bad config before anything runs.
    fit_seconds = minutes * 60 - BUDGET_MARGIN_SECONDS  # As the default run's limit.
    arguments = ["--config", str(config), "--seed", str(seed), "--val-dir", str(work / "capts_val"),
                 "--test-dir", str(work / "capts_test"), "--time-limit", f"{fit_seconds:.0f}", "--output",
                 "model.keras", "--quiet"]  # fmt: skip
    epochs = recipe.epochs
    fresh, contended_calibration = None, False
    if recipe.uses_fresh_images:
        calibration = calibrate(config, work, results)
        fresh = images_per_epoch(calibration, fit_seconds, epochs, recipe.batch_size)
        contended_calibration = calibration["contended"]
        arguments += ["--fresh-images", str(fresh)]
    folder = work / f"{config.stem}_seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    timing = run_train(arguments, cwd=folder)
    summary = json.loads((folder / "model.json").read_text())
    epochs_run = summary["epochs_run"]
    images_seen = round(summary["train_images_per_second"] * summary["train_seconds"])
    result = {
        "recipe": config.stem,
        "config": str(config.relative_to(REPOSITORY)) if config.is_relative_to(REPOSITORY) else str(config),
        "options": json.loads(config.read_text()),
        "seed": seed,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "boot": boot_id(),  # Which running machine: runs compare best against others on the same one.
        "command": "python train.py " + " ".join(arguments),
        "parameters": summary["parameters"],
        "fresh_images_per_epoch": fresh,
        "epochs_run": epochs_run,
        "stopped_by_time_limit": summary["stopped_by_time_limit"],
        "images_seen": images_seen,
        "images_per_second": summary["train_images_per_second"],
        "train_seconds": summary["train_seconds"],
        **timing,
        # Other work took more than a minute of CPU from this run's 40 CPU-minutes: not comparable.
        "contended": timing["other_cpu_seconds"] > CONTENDED_SECONDS or contended_calibration,
        "best_epoch": summary["best_epoch"],
        "validation": summary["validation"],
        "test": summary["test"],
    }
    write_json(path, result)
    shutil.copy(folder / "model.history.csv", results / f"{config.stem}_seed{seed}.history.csv")
    return result


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and half the range (for two seeds, the distance of each from the mean)."""
    return float(np.mean(values)), float((max(values) - min(values)) / 2)


def table(results: list[dict]) -> tuple[list[dict], str]:
    """Rows by recipe (mean ± half-range over seeds) and their Markdown table, best per-digit accuracy first."""
    recipes: dict[str, list[dict]] = {}
    for result in results:
        if not result.get("contended"):
            recipes.setdefault(result["recipe"], []).append(result)
    rows = []
    for name, runs in recipes.items():
        runs.sort(key=lambda run: run["seed"])
        row = {"recipe": name, "seeds": [run["seed"] for run in runs], "parameters": runs[0]["parameters"]}
        for key, read in (
            ("images_seen", lambda run: run["images_seen"]),
            ("images_per_second", lambda run: run["images_per_second"]),
            ("val_digit", lambda run: run["validation"]["mean_accuracy"]),
            ("val_whole", lambda run: run["validation"]["whole_accuracy"]),
            ("test_digit", lambda run: run["test"]["mean_accuracy"]),
            ("test_whole", lambda run: run["test"]["whole_accuracy"]),
            ("wall_minutes", lambda run: run["wall_seconds"] / 60),
            ("other_cpu_minutes", lambda run: run["other_cpu_seconds"] / 60),
        ):
            row[key] = spread([read(run) for run in runs])
        rows.append(row)
    rows.sort(key=lambda row: -row["val_digit"][0])

    def cell(pair, percent=False, digits=1):
        mean, half = pair
        scale = 100 if percent else 1
        return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"

    lines = [
        "| recipe | seeds | parameters | images seen | images/s | val per digit % | val whole % | "
        "test per digit % | test whole % | wall min | others' CPU min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['recipe']} | {','.join(map(str, row['seeds']))} | {row['parameters']:,} | "
            f"{row['images_seen'][0]:,.0f} | {row['images_per_second'][0]:.0f} | {cell(row['val_digit'], True, 2)} | "
            f"{cell(row['val_whole'], True)} | {cell(row['test_digit'], True, 2)} | {cell(row['test_whole'], True)} | "
            f"{row['wall_minutes'][0]:.1f} | {row['other_cpu_minutes'][0]:.1f} |"
        )
    contended = [f"{result['recipe']} seed {result['seed']}" for result in results if result.get("contended")]
    if contended:
        lines.append(
            f"\nLeft out, as other work shared the cores (`--redo-contended` reruns them): {', '.join(contended)}"
        )
    return rows, "\n".join(lines)


def paired(results: list[dict], baseline: str = "default") -> str:
    """Each run against the baseline's runs on the same running machine (CPU model and boot), as a Markdown table.

    The means over seeds mix machines whose speeds differ by half, and a faster machine sees more images in the
    same 20 minutes; a difference from the baseline where both ran does not. Runs from before the boot was
    recorded group by the machine string alone: the first machine's, which named no CPU model, with each other
    (two later runs that predate the model's recording carry it, with a `machine_note`); the second and third
    machines report the same model, and no baseline ran on either. The images column says how many more or fewer
    images a run saw than the baseline's mean, as a faster recipe, or the machine's drift during a run, buys some
    accuracy by images alone.
    """
    machines: dict[tuple, list[dict]] = {}
    for result in results:
        if not result.get("contended"):
            machines.setdefault((result["machine"], result.get("boot")), []).append(result)
    lines = [
        f"| recipe | seed | against {baseline} seeds | val per digit, points | val whole, points | images | machine |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for (name, boot), runs in machines.items():
        baselines = [run for run in runs if run["recipe"] == baseline]
        if not baselines:
            continue
        digit = np.mean([run["validation"]["mean_accuracy"] for run in baselines])
        whole = np.mean([run["validation"]["whole_accuracy"] for run in baselines])
        images = np.mean([run["images_seen"] for run in baselines])
        where = f"{name} ({boot[:8]})" if boot else name
        for run in sorted(runs, key=lambda run: (run["recipe"], run["seed"])):
            if run["recipe"] != baseline:
                lines.append(
                    f"| {run['recipe']} | {run['seed']} | {','.join(str(b['seed']) for b in baselines)} | "
                    f"{100 * (run['validation']['mean_accuracy'] - digit):+.2f} | "
                    f"{100 * (run['validation']['whole_accuracy'] - whole):+.1f} | "
                    f"{100 * (run['images_seen'] / images - 1):+.0f}% | {where} |"
                )
    return "\n".join(lines)


def write_table(results: Path = RESULTS) -> str:
    """Prints the table of every run in `results` and writes it beside that folder (`sweep.md`, `sweep.json`)."""
    runs = [json.loads(path.read_text()) for path in sorted(results.glob("*_seed*.json"))]
    rows, markdown = table(runs)
    for baseline, what in BASELINES.items():
        markdown += f"\n\nAgainst {what} ({baseline}) on the same machine:\n\n" + paired(runs, baseline)
    write_json(results.parent / f"{results.name}.json", {"rows": rows, "runs": runs})
    (results.parent / f"{results.name}.md").write_text(markdown + "\n")
    print(markdown)
    return markdown


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", type=Path, help="train.py --config files, one recipe each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every recipe (default: 0 1)")
    parser.add_argument("--minutes", type=float, default=BUDGET_MINUTES, help="budget of every run (default: 20)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/captcha-kit-sweep"), help="scratch folder")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the runs' figures go")
    parser.add_argument(
        "--redo-contended", action="store_true", help="rerun the runs that other work took over a CPU minute from"
    )
    parser.add_argument("--table", action="store_true", help="only print and write the table of the runs done")
    args = parser.parse_args(argv)
    for config in args.configs:
        if not config.is_file():
            parser.error(f"{config}: no such config file")
    results = args.results_dir.resolve()
    results.mkdir(parents=True, exist_ok=True)
    if not args.table:
        prepare_folders(args.work_dir)
        for seed in args.seeds:  # Every recipe's first seed before any second, so a cut sweep still compares all.
            for config in args.configs:
                run_recipe(config.resolve(), seed, args.work_dir, args.minutes, results, args.redo_contended)
                write_table(results)
    return write_table(results)


if __name__ == "__main__":
    main()
