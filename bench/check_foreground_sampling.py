"""Check: the foreground map's sampled median (every 16th pixel) against the full median, on real CAPTCHAs.

    python -m bench.check_foreground_sampling [--data capts_val] [--images 2048]

The kit's foreground map (`models.layers.foreground_map`) takes the background
colour as the median of every 16th pixel instead of all of them. This counts
the images whose foreground map differs between the two, and times both on
batches of 64, on the 2x downscaled text strip that cellnet feeds it. It
also compares the built-in map with the former custom `ForegroundMap` layer
(files saved by earlier versions of the kit): the images whose maps differ (none expected)
and the time of each, both as Functional models, their calls taken in turns.
(The sampling figures in the README were measured on that former layer.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from core.alphabet import Alphabet
from core.multicolor import MARGINS
from core.quiet import load_keras
from data.dataset import load_labelled_folder


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="capts_val", help="labelled multicolorcaptcha folder (default: %(default)s)")
    parser.add_argument("--images", type=int, default=2048, help="images to compare (default: %(default)s)")
    args = parser.parse_args(argv)
    keras = load_keras()
    from models.layers import ForegroundMap, foreground_map

    images = load_labelled_folder(args.data, Alphabet()).images[: args.images]
    top, bottom = MARGINS
    strips = images[:, top : images.shape[1] - bottom].astype("float32") / 255
    strips = np.asarray(keras.layers.AveragePooling2D(2)(strips))
    strip = keras.Input(strips.shape[1:])
    sampled, full = (keras.Model(strip, foreground_map(strip, sample_stride=stride)) for stride in (16, 1))
    legacy = keras.Model(strip, ForegroundMap()(strip))
    differing = differing_from_legacy = 0
    for start in range(0, len(strips), 256):
        batch = strips[start : start + 256]
        maps = sampled.predict_on_batch(batch), full.predict_on_batch(batch), legacy.predict_on_batch(batch)
        differing += int(np.any(maps[0] != maps[1], axis=(1, 2, 3)).sum())
        differing_from_legacy += int(np.any(maps[0] != maps[2], axis=(1, 2, 3)).sum())
    variants = {"sampled": sampled, "full": full, "legacy_layer": legacy}
    seconds = {name: [] for name in variants}
    batch = strips[:64]
    for model in variants.values():
        model.predict_on_batch(batch)
    for _ in range(30):
        for name, model in variants.items():
            started = time.perf_counter()
            model.predict_on_batch(batch)
            seconds[name].append(time.perf_counter() - started)
    timings = {name: round(float(np.median(value)) * 1000, 2) for name, value in seconds.items()}
    result = {
        "images": len(strips),
        "differing": differing,
        "differing_from_legacy_layer": differing_from_legacy,
        "median_ms_per_batch_of_64": timings,
    }
    print(
        f"{differing} of {len(strips)} foreground maps differ between sampled and full median, "
        f"{differing_from_legacy} between the built-in map and the legacy layer; batch of 64: sampled "
        f"{timings['sampled']:.1f} ms, full {timings['full']:.1f} ms, legacy layer {timings['legacy_layer']:.1f} ms"
    )
    return result


if __name__ == "__main__":
    main()
