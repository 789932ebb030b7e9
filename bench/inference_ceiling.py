"""Benchmark: how far batched inference of a cellnet can go on this CPU, and what does not help.

    python -m bench.inference_ceiling                          # reference/reference.keras
    python -m bench.inference_ceiling --model my_model.keras

`python -m bench.bench_inference` measures the call path of `inference.py`.
This probe asks where the ceiling is, at one batch size (default 128):
- **whole model**: `Reader.scores` on raw uint8 images (as bench_inference);
- **network alone**: the layers after the weightless preprocessing, fed
  precomputed foreground maps: the speed if cropping, scaling and the
  foreground map cost nothing;
- **mixed_bfloat16**: the same weights in the same architecture rebuilt
  under Keras's `mixed_bfloat16` policy (bfloat16 compute, float32
  weights). The CPU advertises avx512_bf16, which could double the
  arithmetic rate if TensorFlow's kernels used it;
- **cells folded into the batch**: the cell reader applied once to
  (images x cells) cells instead of once per cell position (what
  `TimeDistributed` does), identical outputs.

It also counts the network's multiply-accumulates per image (convolutions
and dense layers) and turns each speed into arithmetic throughput, the
figure to compare with what the cores can do. Writes
`bench/results/inference_ceiling.json` and prints a table.
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

from bench.bench_inference import (  # noqa: E402
    BATCHED_TARGET_IMAGES_PER_SECOND,
    PREPROCESSING_END,
    load_or_build,
    machine,
    sample_captchas,
    throughput,
    write_result,
)

RESULTS = Path(__file__).resolve().parent / "results"
CELL_READER = "read_cells"  # The TimeDistributed cell reader of models.cellnet.


def multiply_accumulates(model) -> int:
    """Multiply-accumulates of one image through `model`'s Conv2D and Dense layers (nested models included).

    A layer inside `TimeDistributed` counts once per time step (cell); a
    Dense layer applied to (positions, features) counts once per position.
    """
    import keras

    def count(layer, repeats: int) -> int:
        if isinstance(layer, keras.layers.TimeDistributed):
            return count(layer.layer, repeats * int(layer.input.shape[1]))
        if isinstance(layer, keras.Model):
            return sum(count(inner, repeats) for inner in layer.layers)
        if isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            return repeats * height * width * int(np.prod(layer.kernel.shape))
        if isinstance(layer, keras.layers.Dense):
            positions = int(np.prod(layer.input.shape[1:-1]))
            return repeats * positions * int(np.prod(layer.kernel.shape))
        return 0

    return sum(count(layer, 1) for layer in model.layers)


def fold_cells(model):
    """The model with its cell reader applied to all cells as one batch; None for models without one."""
    import keras
    from keras import layers, ops

    if CELL_READER not in [layer.name for layer in model.layers]:
        return None
    distributed = model.get_layer(CELL_READER)
    cells, features = distributed.input.shape[1], distributed.output.shape[-1]
    cell_shape = tuple(distributed.input.shape[2:])
    folded = layers.Lambda(lambda x: ops.reshape(x, (-1, *cell_shape)), name="fold_cells")(distributed.input)
    read = distributed.layer(folded)
    x = layers.Lambda(lambda x: ops.reshape(x, (-1, cells, features)), name="unfold_cells")(read)
    after = model.layers[model.layers.index(distributed) + 1 :]
    for layer in after:  # cellnet's head is a chain: dropout, dense, dropout, dense, alphabet tag.
        x = layer(x)
    return keras.Model(model.inputs, x, name="folded")


def rebuild_in_bfloat16(model):
    """The same architecture and weights under the `mixed_bfloat16` policy (bfloat16 compute, float32 weights)."""
    import keras

    config = json.loads(json.dumps(model.get_config()))

    def drop_dtypes(node):  # Each layer's saved policy would pin it to float32; tensors keep their dtypes.
        if isinstance(node, dict):
            if isinstance(node.get("dtype"), dict) and node["dtype"].get("class_name") == "DTypePolicy":
                del node["dtype"]
            for value in node.values():
                drop_dtypes(value)
        elif isinstance(node, list):
            for value in node:
                drop_dtypes(value)

    drop_dtypes(config)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        rebuilt = model.__class__.from_config(config)
        rebuilt.set_weights(model.get_weights())
    finally:
        keras.config.set_dtype_policy(previous)
    return rebuilt


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=None, help="a .keras cellnet (default: the reference model, else an untrained cellnet)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch (default: %(default)s)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="time spent per variant, at least (default: %(default)s)"
    )
    parser.add_argument("--output", default=None, help="JSON file (default: bench/results/inference_ceiling.json)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be positive. Received: {args.batch_size}")

    from core.quiet import load_keras

    keras = load_keras()
    from models.reader import Reader

    model, description = load_or_build(args.model)
    if PREPROCESSING_END not in [layer.name for layer in model.layers]:
        raise SystemExit(
            f"error: {description} has no {PREPROCESSING_END!r} layer; this probe measures cellnet-like models"
        )
    reader = Reader(model)
    captchas = sample_captchas(reader)
    batch = captchas[np.arange(args.batch_size) % len(captchas)]

    preprocessing = keras.Model(model.inputs, model.get_layer(PREPROCESSING_END).output)
    network = keras.Model(model.get_layer(PREPROCESSING_END).output, model.output)
    foreground = np.asarray(preprocessing.predict_on_batch(batch.astype("float32")))
    reference_scores = reader.scores(batch)

    variants = {"whole model": (lambda: reader.scores(batch), reference_scores)}
    variants["network alone (preprocessing free)"] = (
        lambda: network.predict_on_batch(foreground),
        network.predict_on_batch(foreground),
    )
    bfloat16 = rebuild_in_bfloat16(model)
    variants["mixed_bfloat16"] = (
        lambda: bfloat16.predict_on_batch(batch),
        bfloat16.predict_on_batch(batch),
    )
    folded = fold_cells(model)
    if folded is not None:
        variants["cells folded into the batch"] = (
            lambda: folded.predict_on_batch(batch),
            folded.predict_on_batch(batch),
        )

    macs = multiply_accumulates(model)
    rows = []
    for name, (function, scores) in variants.items():
        speed = throughput(function, args.batch_size, args.seconds)
        rows.append(
            {
                "variant": name,
                **speed,
                "gflop_per_second": round(2 * macs * speed["images_per_second"] / 1e9, 1),
                "largest_score_difference": float(
                    np.max(np.abs(np.asarray(scores, dtype="float32") - reference_scores))
                ),
            }
        )
    result = {
        "benchmark": "ceiling of batched cellnet inference on the CPU",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": "python -m bench.inference_ceiling" + (f" --model {args.model}" if args.model else ""),
        "model": description,
        "parameters": int(model.count_params()),
        "multiply_accumulates_per_image": macs,
        "batch_size": args.batch_size,
        "variants": rows,
        "target_images_per_second": BATCHED_TARGET_IMAGES_PER_SECOND,
    }
    output = write_result(result, Path(args.output) if args.output else RESULTS / "inference_ceiling.json")
    print_table(result)
    print(f"\nWritten: {output}")
    return result


def print_table(result: dict) -> None:
    print(f"\n{result['model']}: {result['parameters']:,} parameters, ", end="")
    print(f"{result['multiply_accumulates_per_image'] / 1e6:.1f} M multiply-accumulates per image")
    print(f"{result['machine']}; batch {result['batch_size']}\n")
    print("| variant | images/s | GFLOP/s | largest score difference |")
    print("|---|---:|---:|---:|")
    for row in result["variants"]:
        print(
            f"| {row['variant']} | {row['images_per_second']:,.0f} | {row['gflop_per_second']:.0f} | "
            f"{row['largest_score_difference']:.1e} |"
        )
    print(f"\ntarget: {result['target_images_per_second']:,.0f} images/s")


if __name__ == "__main__":
    main()
