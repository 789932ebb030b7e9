"""Saves a grid of sample CAPTCHAs from a folder, titled with their labels.

python -m data.preview capts_val docs/samples.png --count 8

The folder's images must be labelled (LABEL.png, LABEL_ANYTHING.png or a
`--labels` file); anything unusable is one `error:` line and exit status 2.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from core.alphabet import add_alphabet_arguments, alphabet_from_arguments
from data.dataset import decode_image
from data.labels import find_labelled_images


def main(argv=None) -> Path:
    """Writes the grid; returns its path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder of labelled images")
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--count", type=int, default=8, help="images to show (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which images to pick (default: %(default)s)")
    parser.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file")
    add_alphabet_arguments(parser)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1. Received: {args.count}")
    from core.figures import plot_samples  # Here: matplotlib takes longer to import than --help to answer.

    try:
        alphabet = alphabet_from_arguments(args)
        found = find_labelled_images(args.folder, alphabet, labels_file=args.labels)
        # A fixed random pick: file-name order would show only labels starting with 00.
        picks = sorted(random.Random(args.seed).sample(range(len(found.paths)), min(args.count, len(found.paths))))
        paths, labels = [found.paths[index] for index in picks], [found.labels[index] for index in picks]
        return plot_samples([decode_image(path) for path in paths], labels, args.output)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # The output cannot be written (a file where its folder should be, no permission).
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
