"""Benchmark: the default model's training and reading speed on each Keras backend, and data-parallel steps.

    python -m bench.bench_backends                 # TensorFlow and JAX (and PyTorch where installed)
    python -m bench.bench_backends --steps 20      # shorter

Each backend runs in its own process (`KERAS_BACKEND` is read once, at
import), one after the other, on the same machine: training images/s of the
kit's objective (`training.objective`, Adam, batch 64) over `--steps` steps
after a warm-up, and batched reading images/s (`models.reader.Reader.scores`,
batch 256). The data-parallel step is measured in a process that sees two
virtual CPU devices (two logical devices on TensorFlow,
`XLA_FLAGS=--xla_force_host_platform_device_count=2` on JAX): the same global
batch on one of them, then split across both (`training.distribute`). The
model is the untrained default (`cellnet`): weights do not change the speed.
The images are random, of the assignment's size. Writes
`bench/results/backends.json` with the ratios to TensorFlow and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import machine

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"


def measure(steps: int, batch_size: int, devices: int) -> dict:
    """Runs in the backend's own process: training and reading images/s (and the data-parallel ratio)."""
    if devices > 1 and os.environ.get("KERAS_BACKEND") == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    import numpy as np

    from core.quiet import load_keras

    keras = load_keras()
    import models
    from core.alphabet import Alphabet
    from core.multicolor import IMAGE_SIZE
    from models.reader import Reader
    from training.distribute import start
    from training.objective import compiled_objective

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * 4, *IMAGE_SIZE, 3)).astype("uint8")
    codes = rng.integers(0, 10, (len(images), 4)).astype("int32")

    def training_rate(distribution) -> float:
        keras.utils.set_random_seed(0)
        with distribution.scope():
            model = distribution.prepare(models.get_model("cellnet", alphabet=Alphabet(), image_size=IMAGE_SIZE))
            objective = compiled_objective(model, 3e-3, total_steps=steps + 8)
        objective.fit(images, codes, batch_size=batch_size, epochs=1, verbose=0)  # Builds and compiles the step.
        repeats = max(1, steps // 4)
        started = time.perf_counter()
        objective.fit(images, codes, batch_size=batch_size, epochs=repeats, verbose=0)
        return repeats * len(images) / (time.perf_counter() - started)

    result = {"backend": keras.backend.backend()}
    if devices == 1:
        result["train_images_per_second"] = round(training_rate(start(None)), 1)
        reader = Reader(models.get_model("cellnet", alphabet=Alphabet(), image_size=IMAGE_SIZE))
        batch = np.concatenate([images] * 2)[:256]
        reader.scores(batch)  # Warm-up.
        calls, started = 0, time.perf_counter()
        while calls < 5 or time.perf_counter() - started < 5:
            reader.scores(batch)
            calls += 1
        result["read_images_per_second"] = round(calls * len(batch) / (time.perf_counter() - started), 1)
    else:
        one = training_rate(start(None))
        parallel = training_rate(start("devices"))
        result.update(
            one_device_train_images_per_second=round(one, 1),
            data_parallel_train_images_per_second=round(parallel, 1),
            devices=devices,
        )
    return result


def run_backend(backend: str, steps: int, batch_size: int, devices: int) -> dict:
    environment = {
        **os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": str(REPOSITORY),
        **({"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"} if devices > 1 else {}),
    }  # fmt: skip
    command = [sys.executable, "-m", "bench.bench_backends", "--measure", "--steps", str(steps)]
    command += ["--batch-size", str(batch_size), "--devices", str(devices)]
    print(f"$ KERAS_BACKEND={backend} {' '.join(command[1:])}", flush=True)
    output = subprocess.run(command, env=environment, cwd=REPOSITORY, capture_output=True, text=True)
    if output.returncode:
        raise SystemExit(f"error: the {backend} measurement failed:\n{output.stderr[-2000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per measurement")
    parser.add_argument("--batch-size", type=int, default=64, help="global training batch")
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # The per-backend process.
    args = parser.parse_args(argv)
    if args.measure:
        result = measure(args.steps, args.batch_size, args.devices)
        print(json.dumps(result))
        return result

    backends = ["tensorflow"] + [name for name in ("jax", "torch") if importlib.util.find_spec(name)]
    rows = {backend: run_backend(backend, args.steps, args.batch_size, 1) for backend in backends}
    parallel = {backend: run_backend(backend, args.steps, args.batch_size, 2) for backend in ("tensorflow", "jax")
                if backend in backends}  # fmt: skip
    reference = rows["tensorflow"]
    for row in rows.values():
        for key in ("train_images_per_second", "read_images_per_second"):
            row[key.replace("_images_per_second", "_ratio_to_tensorflow")] = round(row[key] / reference[key], 3)
    for row in parallel.values():
        row["data_parallel_ratio"] = round(
            row["data_parallel_train_images_per_second"] / row["one_device_train_images_per_second"], 3
        )
    result = {
        "benchmark": "default model's training and reading speed per Keras backend; data-parallel on 2 devices",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": "python -m bench.bench_backends" + (f" --steps {args.steps}" if args.steps != 40 else ""),
        "model": "cellnet (untrained)",
        "batch_size": args.batch_size,
        "backends": rows,
        "data_parallel": parallel,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "backends.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| backend | training images/s | ratio | reading images/s (batch 256) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['train_images_per_second']:.0f} | {row['train_ratio_to_tensorflow']:.2f} | "
            f"{row['read_images_per_second']:.0f} | {row['read_ratio_to_tensorflow']:.2f} |"
        )
    print("\n| backend | 1 of 2 virtual devices, images/s | both, data-parallel | ratio |")
    print("|---|---:|---:|---:|")
    for name, row in parallel.items():
        print(
            f"| {name} | {row['one_device_train_images_per_second']:.0f} | "
            f"{row['data_parallel_train_images_per_second']:.0f} | {row['data_parallel_ratio']:.2f} |"
        )
    print(f"\nWritten: {path}")
    return result


if __name__ == "__main__":
    main()
