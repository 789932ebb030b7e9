"""Benchmark: grading a class of small submissions one at a time, two at a time, and on a 2-worker Dask cluster.

    python -m bench.bench_grading                      # 8 submissions, each training about a minute on one core
    python -m bench.bench_grading --steps 40 --submissions 4   # a quick look

Every submission is the same Keras training (`--steps` steps of a small CNN on
the course's own images, single-threaded, which is about a minute on one
core at the default), so the three runs do the same work:
- `grade.py --jobs 1 --cores 1`,
- `grade.py --jobs 2 --cores 1`,
- `grade.py --scheduler` a `distributed.LocalCluster` of 2 workers, 1 thread each (`--cores 1`),
  with the grading cluster's settings (`grading/dask.yaml`).
It also measures the sandbox's start-up overhead per submission: a Python
that does nothing, started through the launcher and bubblewrap (namespaces,
staged read-only mounts, limits) against started directly, median of
`--calls` starts. Targets: overhead at most 1 s per submission; `--jobs 2` at
least 1.8x the throughput of `--jobs 1`; Dask within 10% of `--jobs 2`.
Writes `bench/results/grading.json` and prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.bench_inference import RESULTS, write_result  # noqa: E402

OVERHEAD_TARGET_SECONDS = 1.0
JOBS_SPEEDUP_TARGET = 1.8
DASK_TOLERANCE = 0.10
TRAINING = '''"""A benchmark submission: {steps} steps of a small CNN on the course images, then saved."""
import os
import keras, numpy as np
from PIL import Image

names = sorted(os.listdir("capts_train"))[:256]
images = np.stack([np.asarray(Image.open(os.path.join("capts_train", name)).convert("RGB")) for name in names])
digits = np.array([[int(c) for c in name.split("_")[0]] for name in names])
keras.utils.set_random_seed(0)
inputs = keras.Input((144, 256, 3))
x = keras.layers.Rescaling(1 / 255)(keras.layers.AveragePooling2D(2)(inputs))
for filters in (16, 32, 64):
    x = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x))
x = keras.layers.Dense(40)(keras.layers.GlobalAveragePooling2D()(x))
model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Reshape((4, 10))(x)))
model.compile("adam", "sparse_categorical_crossentropy")
batches = (images[index % 8 * 32 : index % 8 * 32 + 32] for index in range({steps}))
labels = (digits[index % 8 * 32 : index % 8 * 32 + 32] for index in range({steps}))
for image_batch, label_batch in zip(batches, labels):
    model.train_on_batch(image_batch, label_batch)
model.save("my_model.keras")
'''


def make_class(root: Path, count: int, steps: int) -> Path:
    """`count` identical submissions of `steps` training steps each."""
    for index in range(count):
        folder = root / f"student{index:02d}"
        folder.mkdir(parents=True)
        (folder / "train.py").write_text(TRAINING.format(steps=steps))
    return root


def sandbox_overhead(calls: int) -> dict:
    """Median seconds to start a Python that does nothing, directly and through the sandbox."""
    from grading import sandbox as sandboxing

    box = sandboxing.Sandbox(cores_per_run=1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    if os.geteuid() == 0:
        os.chown(workdir, sandboxing.SANDBOX_USER_BASE, sandboxing.SANDBOX_USER_BASE)
    python_paths = sandboxing.python_paths(sys.executable)
    direct, sandboxed = [], []
    for _ in range(calls):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        direct.append(time.perf_counter() - started)
        stage_root = sandboxing.make_stage_root()
        nothing = [sys.executable, "-c", "pass"]
        command = sandboxing.bwrap_command(workdir, {}, nothing, box, 0, stage_root, python_paths)
        started = time.perf_counter()
        subprocess.run(command, check=True, env=sandboxing.sandbox_environment(1))
        sandboxed.append(time.perf_counter() - started)
        shutil.rmtree(stage_root)
    shutil.rmtree(workdir)
    return {
        "direct_seconds": round(statistics.median(direct), 4),
        "sandboxed_seconds": round(statistics.median(sandboxed), 4),
        "overhead_seconds": round(statistics.median(sandboxed) - statistics.median(direct), 4),
        "calls": calls,
    }


def timed_grading(root: Path, course: Path, output: Path, extra: list[str]) -> dict:
    """Runs grade.py in a process of its own and returns its wall time and statuses."""
    import csv

    command = [sys.executable, "grade.py", str(root), "--train-dir", str(course / "capts_train")]
    command += ["--val-dir", str(course / "capts_val"), "--output", str(output), "--time-limit", "900", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    with open(output, newline="") as file:
        statuses = sorted({row["status"] for row in csv.DictReader(file)})
    return {"seconds": round(seconds, 1), "statuses": statuses}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=8, help="submissions in the class (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=750, help="training steps of each (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=20, help="sandbox starts timed (default: %(default)s)")
    parser.add_argument("--output", default=str(RESULTS / "grading.json"), help="the results file")
    args = parser.parse_args(argv)

    import dask
    from distributed import LocalCluster

    from data.generate import generate_folder
    from grading.distributed import dask_settings

    overhead = sandbox_overhead(args.calls)
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        folder = Path(folder)
        generate_folder(folder / "course" / "capts_train", 256, seed="bench/train", workers=1, progress=False)
        generate_folder(folder / "course" / "capts_val", 500, seed="bench/val", workers=1, progress=False)
        root = make_class(folder / "class", args.submissions, args.steps)
        runs = {}
        for name, extra in (("jobs1", ["--jobs", "1", "--cores", "1"]), ("jobs2", ["--jobs", "2", "--cores", "1"])):
            runs[name] = timed_grading(root, folder / "course", folder / f"{name}.csv", extra)
        with (
            dask.config.set(dask_settings()),  # As docs/grading.md starts a grading cluster.
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        ):
            extra = ["--scheduler", cluster.scheduler_address, "--cores", "1"]
            runs["dask2"] = timed_grading(root, folder / "course", folder / "dask.csv", extra)
    for run in runs.values():
        run["submissions_per_minute"] = round(60 * args.submissions / run["seconds"], 3)
    speedup = runs["jobs1"]["seconds"] / runs["jobs2"]["seconds"]
    dask_gap = runs["dask2"]["seconds"] / runs["jobs2"]["seconds"] - 1
    result = {
        "submissions": args.submissions,
        "steps": args.steps,
        "machine": f"{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "runs": runs,
        "sandbox": overhead,
        "jobs2_speedup": round(speedup, 3),
        "dask_slower_than_jobs2": round(dask_gap, 4),
        "targets": {
            "overhead_seconds": [OVERHEAD_TARGET_SECONDS, overhead["overhead_seconds"] <= OVERHEAD_TARGET_SECONDS],
            "jobs2_speedup": [JOBS_SPEEDUP_TARGET, speedup >= JOBS_SPEEDUP_TARGET],
            "dask_within": [DASK_TOLERANCE, abs(dask_gap) <= DASK_TOLERANCE],
        },
    }
    path = write_result(result, Path(args.output))
    print("| run | wall s | submissions/min | statuses |\n|---|---:|---:|---|")
    for name, run in runs.items():
        print(f"| {name} | {run['seconds']:.1f} | {run['submissions_per_minute']:.2f} | {', '.join(run['statuses'])} |")
    sandboxed, direct = overhead["sandboxed_seconds"] * 1000, overhead["direct_seconds"] * 1000
    print(
        f"\nsandbox start-up: {sandboxed:.0f} ms against {direct:.0f} ms direct, overhead "
        f"{sandboxed - direct:.0f} ms (target <= {OVERHEAD_TARGET_SECONDS:g} s)"
    )
    print(f"--jobs 2: {speedup:.2f}x --jobs 1 (target >= {JOBS_SPEEDUP_TARGET}x); Dask {dask_gap:+.1%} of --jobs 2")
    print(f"Results: {path}")
    return result


if __name__ == "__main__":
    main()
