"""Check: the foreground map's sampled median (every 16th pixel) against the full median, on real CAPTCHAs.

    python -m bench.check_foreground_sampling [--data capts_val] [--images 2048]

The kit's foreground map (`models.layers.foreground_map`) takes the background
colour as the median of every 16th pixel instead of all of them. This counts
the images whose foreground map differs between the two, and times both on
batches of 64, on the 2x downscaled text strip that cellnet feeds it. (The
figures in the README were measured on the former `ForegroundMap` layer,
which computes the same numbers.)
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from data.alphabet import Alphabet
from data.dataset import load_labelled_folder
from models.blocks import MULTICOLOR_MARGINS
from models.layers import foreground_map


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="capts_val", help="labelled multicolorcaptcha folder (default: %(default)s)")
    parser.add_argument("--images", type=int, default=2048, help="images to compare (default: %(default)s)")
    args = parser.parse_args(argv)
    images = load_labelled_folder(args.data, Alphabet()).images[: args.images]
    top, bottom = MULTICOLOR_MARGINS
    strips = images[:, top : images.shape[1] - bottom].astype("float32") / 255
    strips = np.asarray(keras.layers.AveragePooling2D(2)(strips))
    strip = keras.Input(strips.shape[1:])
    sampled, full = (keras.Model(strip, foreground_map(strip, sample_stride=stride)) for stride in (16, 1))
    differing = 0
    for start in range(0, len(strips), 256):
        batch = strips[start : start + 256]
        maps = sampled.predict_on_batch(batch), full.predict_on_batch(batch)
        differing += int(np.any(maps[0] != maps[1], axis=(1, 2, 3)).sum())
    timings = {}
    batch = strips[:64]
    for name, model in (("sampled", sampled), ("full", full)):
        model.predict_on_batch(batch)
        started = time.perf_counter()
        for _ in range(20):
            model.predict_on_batch(batch)
        timings[name] = (time.perf_counter() - started) / 20 * 1000
    result = {"images": len(strips), "differing": differing, "ms_per_batch_of_64": timings}
    print(
        f"{differing} of {len(strips)} foreground maps differ; batch of 64: sampled {timings['sampled']:.1f} ms, "
        f"full {timings['full']:.1f} ms"
    )
    return result


if __name__ == "__main__":
    main()
