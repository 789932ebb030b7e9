"""Saves a grid of sample CAPTCHAs from a folder, titled with their labels.

python -m data.preview capts_val docs/samples.png --count 8
"""

from __future__ import annotations

import argparse
import random

from core.alphabet import add_alphabet_arguments, alphabet_from_arguments
from core.figures import plot_samples
from data.dataset import decode_image
from data.labels import find_labelled_images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder of labelled images")
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--count", type=int, default=8, help="images to show (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which images to pick (default: %(default)s)")
    parser.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file")
    add_alphabet_arguments(parser)
    args = parser.parse_args(argv)
    alphabet = alphabet_from_arguments(args)
    found = find_labelled_images(args.folder, alphabet, labels_file=args.labels)
    # A fixed random pick: file-name order would show only labels starting with 00.
    picks = sorted(random.Random(args.seed).sample(range(len(found.paths)), min(args.count, len(found.paths))))
    paths, labels = [found.paths[index] for index in picks], [found.labels[index] for index in picks]
    return plot_samples([decode_image(path) for path in paths], labels, args.output)


if __name__ == "__main__":
    main()
