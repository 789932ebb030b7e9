"""Benchmark: how fast a model reads CAPTCHAs on the CPU, one at a time and in batches.

    python -m bench.bench_inference                          # reference/reference.keras, else untrained cellnet
    python -m bench.bench_inference --model my_model.keras

Uses the call path of `inference.py` (`models.reader.Reader`). Single
image: the latency of `Reader.read_one` (model call and decoding) and of the
model call alone, median and 90th percentile over `--calls` calls after a
warm-up. Batched: images per second of `Reader.scores` at each batch size.
For models that remove colours with the foreground map (cellnet, shawon), the
time of the weightless preprocessing layers (crop, scale, downscale,
foreground map) is measured apart, to show what dominates. Beside Keras, the
same batches go through the model exported to ONNX (`models.export`) and
run by onnxruntime on the CPU (its session's default threads), the batch
converted to float32 inside the timed call, its calls taken in turns with
Keras's so that both figures of a row share the load of the moment;
`--no-onnx` skips it. Weights do
not change the speed, so without the reference model the untrained default
model is measured; the JSON says which. Writes
`bench/results/inference_<model>.json` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # The CPU is what is measured.

import numpy as np  # noqa: E402

import bench.machine  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"
SINGLE_TARGET_MS = 5.0
BATCHED_TARGET_IMAGES_PER_SECOND = 2000.0
PREPROCESSING_END = "foreground"  # Last weightless preprocessing layer of models.blocks.preprocess.


def paired_throughput(functions: dict, batch_size: int, minimum_seconds: float) -> dict:
    """Images per second of each of `functions` (name: callable), their timed calls taken in turn.

    Taking turns makes both see the same load: on a machine shared with other
    work, two runs a minute apart can differ by half, a ratio of the same
    moment much less.
    """
    for function in functions.values():
        time_calls(function, 2, warmup=1)
    first = {name: float(np.median(time_calls(function, 3, warmup=0))) for name, function in functions.items()}
    rounds = max(5, int(minimum_seconds / max(sum(first.values()), 1e-6)))
    seconds = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            seconds[name].extend(time_calls(function, 1, warmup=0))
    return {
        "batch_size": batch_size,
        "rounds": rounds,
        **{
            f"{name}_images_per_second": round(batch_size / float(np.median(value)), 1)
            for name, value in seconds.items()
        },
    }


def onnxruntime_speeds(model, captchas: np.ndarray, batch_sizes, calls: int, seconds: float, keras_scores) -> dict:
    """Single-image latency and images/s of `model` exported to ONNX and run by onnxruntime on the CPU.

    Each batch size is timed in turns with `keras_scores` (the Keras call
    path, `Reader.scores`), so that the two figures of a row share the load.

    Returns:
        {"onnxruntime", "single_image", "batched", "max_abs_difference_from_keras"}; or {"skipped": why}
        where onnxruntime or tf2onnx is not installed.
    """
    import tempfile

    try:
        import onnxruntime
    except ImportError as error:
        return {"skipped": f"onnxruntime not installed ({error})"}
    from models.export import export_model

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = export_model(model, Path(folder) / "model.onnx", "onnx")
        except ValueError as error:
            return {"skipped": str(error)}
        options = onnxruntime.SessionOptions()
        # Its threads otherwise spin on after each call and slow down the Keras call that follows in turn.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(batch):
        return session.run(None, {"image": batch.astype("float32")})[0]

    check = captchas[: min(len(captchas), 32)]
    difference = float(np.max(np.abs(run(check) - model.predict_on_batch(check.astype("float32")))))
    batched = []
    for batch_size in batch_sizes:
        batch = captchas[np.arange(batch_size) % len(captchas)]
        turns = {"onnxruntime": lambda batch=batch: run(batch), "keras": lambda batch=batch: keras_scores(batch)}
        batched.append(paired_throughput(turns, batch_size, seconds))
    single = {"onnxruntime": [], "keras": []}
    for function in (lambda: run(captchas[:1]), lambda: keras_scores(captchas[:1])):
        time_calls(function, 0)  # The warm-up.
    for _ in range(calls):
        single["onnxruntime"].extend(time_calls(lambda: run(captchas[:1]), 1, warmup=0))
        single["keras"].extend(time_calls(lambda: keras_scores(captchas[:1]), 1, warmup=0))
    return {
        "onnxruntime": onnxruntime.__version__,
        "single_image": latency(np.array(single["onnxruntime"])),
        "single_image_keras_in_turns": latency(np.array(single["keras"])),
        "batched": batched,
        "max_abs_difference_from_keras": difference,
    }


def machine() -> str:
    """The machine and software versions the speeds were measured with."""
    import keras
    import tensorflow as tf

    return f"{bench.machine.machine()}, TensorFlow {tf.__version__}, Keras {keras.__version__}"


def time_calls(function, calls: int, warmup: int = 10) -> np.ndarray:
    """Seconds of each of `calls` calls of `function()`, after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    seconds = np.empty(calls)
    for index in range(calls):
        started = time.perf_counter()
        function()
        seconds[index] = time.perf_counter() - started
    return seconds


def latency(seconds: np.ndarray) -> dict:
    return {
        "median_ms": round(float(np.median(seconds)) * 1000, 3),
        "p90_ms": round(float(np.percentile(seconds, 90)) * 1000, 3),
    }


def throughput(function, batch_size: int, minimum_seconds: float) -> dict:
    """Images per second of `function()` on batches of `batch_size`: median batch time over enough batches."""
    first = time_calls(function, 3, warmup=2)
    calls = max(5, int(minimum_seconds / max(float(np.median(first)), 1e-6)))
    seconds = time_calls(function, calls, warmup=0)
    median = float(np.median(seconds))
    return {
        "batch_size": batch_size,
        "batches": calls,
        "median_batch_ms": round(median * 1000, 2),
        "images_per_second": round(batch_size / median, 1),
    }


def load_or_build(path: str | None):
    """The model to measure and a description of it."""
    import models
    from models.io import load_model
    from training.recipe import DEFAULT_MODEL

    reference = REPOSITORY / "reference" / "reference.keras"
    if path is None and reference.is_file():
        path = reference
    if path is not None:
        return load_model(path), str(path)
    model = models.get_model(DEFAULT_MODEL)
    return model, (
        f"{DEFAULT_MODEL} built untrained by models.get_model (reference/reference.keras not present; "
        "weights do not change the speed)"
    )


def sample_captchas(reader, count: int = 32) -> np.ndarray:
    """`count` fixed CAPTCHAs of the kind the reader's model reads (uint8), the images both benchmarks time."""
    from data.generate import generator_for, make_captcha

    generator = generator_for(reader.alphabet, reader.image_size)
    return np.stack([np.asarray(make_captcha("bench/inference", index, generator)[0]) for index in range(count)])


def write_result(result: dict, path: Path) -> Path:
    """Writes a benchmark's JSON atomically."""
    from core.files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a .keras file (default: the reference model, else cellnet)")
    parser.add_argument("--calls", type=int, default=200, help="timed single-image calls (default: %(default)s)")
    parser.add_argument(
        "--batch-sizes", default="8,32,64,128,256", help="comma-separated batch sizes (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="time spent per batch size, at least (default: %(default)s)"
    )
    parser.add_argument("--output", default=None, help="JSON file (default: bench/results/inference_<model>.json)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime measurement")
    args = parser.parse_args(argv)

    from core.quiet import load_keras

    keras = load_keras()
    from models.reader import Reader

    load_before = os.getloadavg()
    model, description = load_or_build(args.model)
    reader = Reader(model)
    captchas = sample_captchas(reader)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]

    single_read = time_calls(lambda: reader.read_one(captchas[0]), args.calls)
    single_call = time_calls(lambda: reader.scores(captchas[:1]), args.calls)
    batched = []
    for batch_size in batch_sizes:
        batch = captchas[np.arange(batch_size) % len(captchas)]
        batched.append(throughput(lambda batch=batch: reader.scores(batch), batch_size, args.seconds))
    # The call path before uint8 went to the model as it is: the batch converted to float32 in NumPy first.
    float32_input = []
    for batch_size in (8, 64):
        batch = captchas[np.arange(batch_size) % len(captchas)]
        float32_input.append(
            throughput(lambda batch=batch: reader.scores(batch.astype("float32")), batch_size, args.seconds)
        )

    breakdown = None
    if PREPROCESSING_END in [layer.name for layer in model.layers]:
        preprocessing = keras.Model(model.inputs, model.get_layer(PREPROCESSING_END).output)
        breakdown = {"layers": [layer.name for layer in preprocessing.layers[1:]]}
        for batch_size in (1, 32):
            batch = captchas[np.arange(batch_size) % len(captchas)].astype("float32")
            part = np.median(time_calls(lambda batch=batch: preprocessing.predict_on_batch(batch), 30))
            whole = np.median(time_calls(lambda batch=batch: model.predict_on_batch(batch), 30))
            breakdown[f"batch_{batch_size}"] = {
                "preprocessing_ms": round(float(part) * 1000, 3),
                "whole_model_ms": round(float(whole) * 1000, 3),
                "preprocessing_share": round(float(part / whole), 3),
            }

    onnx = None
    if not args.no_onnx:
        onnx = onnxruntime_speeds(model, captchas, batch_sizes, args.calls, args.seconds, reader.scores)

    best = max(batched, key=lambda row: row["images_per_second"])
    result = {
        "benchmark": "inference speed on the CPU (models.reader.Reader, the path of inference.py)",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": "python -m bench.bench_inference"
        + (f" --model {args.model}" if args.model else "")
        + (" --no-onnx" if args.no_onnx else ""),
        "model": description,
        "model_name": model.name,
        "load_average_before_and_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "parameters": int(model.count_params()),
        "image_size": list(reader.image_size),
        "alphabet": reader.alphabet.get_config(),
        "single_image": {
            "calls": args.calls,
            "read_one": latency(single_read),
            "model_call_only": latency(single_call),
        },
        "batched": batched,
        "batched_float32_input": float32_input,
        "preprocessing_breakdown": breakdown,
        "onnxruntime_cpu": onnx,
        "targets": {
            "single_median_ms_at_most": SINGLE_TARGET_MS,
            "batched_images_per_second_at_least": BATCHED_TARGET_IMAGES_PER_SECOND,
            "single_met": latency(single_read)["median_ms"] <= SINGLE_TARGET_MS,
            "batched_met": best["images_per_second"] >= BATCHED_TARGET_IMAGES_PER_SECOND,
            "best_batched": best,
        },
    }
    path = write_result(result, Path(args.output) if args.output else RESULTS / f"inference_{model.name}.json")
    print_table(result)
    print(f"\nWritten: {path}")
    return result


def print_table(result: dict) -> None:
    targets = result["targets"]
    print(f"\n{result['model']}: {result['parameters']:,} parameters, images {result['image_size']}")
    print(f"{result['machine']}; 1-minute load average before and after: {result['load_average_before_and_after']}\n")
    print("| measure | median | p90 | target |")
    print("|---|---:|---:|---:|")
    single = result["single_image"]
    print(
        f"| one image, read_one (call + decoding) | {single['read_one']['median_ms']:.2f} ms | "
        f"{single['read_one']['p90_ms']:.2f} ms | ≤ {targets['single_median_ms_at_most']:g} ms |"
    )
    print(
        f"| one image, model call only | {single['model_call_only']['median_ms']:.2f} ms | "
        f"{single['model_call_only']['p90_ms']:.2f} ms | |"
    )
    onnx = result.get("onnxruntime_cpu") or {}
    onnx_rows = {row["batch_size"]: row for row in onnx.get("batched", [])}
    if "single_image" in onnx:
        for label, key in (("onnxruntime", "single_image"), ("Keras in turns with it", "single_image_keras_in_turns")):
            print(f"| one image, {label} | {onnx[key]['median_ms']:.2f} ms | {onnx[key]['p90_ms']:.2f} ms | |")
    print("\n| batch size | median batch time | images/s | Keras / onnxruntime images/s, in turns | target |")
    print("|---:|---:|---:|---:|---:|")
    for row in result["batched"]:
        other = onnx_rows.get(row["batch_size"])
        other = (
            f"{other['keras_images_per_second']:,.0f} / {other['onnxruntime_images_per_second']:,.0f}" if other else "-"
        )
        print(
            f"| {row['batch_size']} | {row['median_batch_ms']:.1f} ms | {row['images_per_second']:,.0f} | "
            f"{other} | ≥ {targets['batched_images_per_second_at_least']:,.0f} |"
        )
    for row in result.get("batched_float32_input", []):
        print(
            f"| {row['batch_size']}, float32 input converted first | {row['median_batch_ms']:.1f} ms | "
            f"{row['images_per_second']:,.0f} | | |"
        )
    if "skipped" in onnx:
        print(f"\nonnxruntime not measured: {onnx['skipped']}")
    elif onnx:
        print(
            f"\nonnxruntime {onnx['onnxruntime']}: largest score difference from Keras "
            f"{onnx['max_abs_difference_from_keras']:.1e}"
        )
    breakdown = result["preprocessing_breakdown"]
    if breakdown:
        print(f"\npreprocessing ({', '.join(breakdown['layers'])}) against the whole model:")
        for key in ("batch_1", "batch_32"):
            row = breakdown[key]
            print(
                f"  {key.replace('_', ' ')}: {row['preprocessing_ms']:.2f} of {row['whole_model_ms']:.2f} ms "
                f"({100 * row['preprocessing_share']:.0f}%)"
            )
    best = targets["best_batched"]
    print(
        f"\nsingle target {'met' if targets['single_met'] else 'MISSED'}, "
        f"batched target {'met' if targets['batched_met'] else 'MISSED'} "
        f"(best {best['images_per_second']:,.0f} images/s at batch {best['batch_size']})"
    )


if __name__ == "__main__":
    main()
