"""Which test images do several independently trained models all misread the same way?

    python -m bench.consensus_misreads runs/compare_henan/{fourblock,crnn_ctc,vgg_notebook,shawon}.keras \
        --data ../shared/datasets/henan-4digit/images --labels ../shared/datasets/henan-4digit/labels.txt \
        --split-file runs/compare_henan/fourblock.split.csv --subset test \
        --output bench/results/compare_henan/consensus_misreads

When models of different designs, trained apart, agree on a reading that
differs from the label, the label is the likelier culprit: that is how the
accuracy ceiling of a hand-labelled set shows up. Writes OUTPUT.json (per
model accuracy, the images every model misreads, and those that every model
reads as the same other text) and OUTPUT.png (those images, labelled
"true LABEL read READING"), and prints a summary. Look at the PNG before
calling them label errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.alphabet import Alphabet
from core.figures import plot_samples
from core.files import atomic_path
from core.quiet import load_keras
from data.dataset import load_labelled_folder
from data.split import SUBSETS, read_split, select


def consensus_misreads(readings: dict[str, list[str]], labels: list[str]) -> dict:
    """Indices of the images every model misreads, and of those every model reads as the same other text.

    Args:
        readings: Model name -> the text it read for each image, in the order of `labels`.
        labels: The labels.
    """
    if not readings:
        raise ValueError("Need the readings of at least one model. Received: none")
    for name, texts in readings.items():
        if len(texts) != len(labels):
            raise ValueError(f"Model {name} read {len(texts)} images; there are {len(labels)} labels.")
    all_wrong, agreeing = [], []
    for index, label in enumerate(labels):
        texts = {texts[index] for texts in readings.values()}
        if label not in texts:
            all_wrong.append(index)
            if len(texts) == 1:
                agreeing.append(index)
    return {"all_wrong": all_wrong, "agreeing": agreeing}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help=".keras files of models that read the same alphabet")
    parser.add_argument("--data", required=True, help="labelled image folder")
    parser.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file for --data")
    parser.add_argument("--split-file", default=None, help="a split written by train.py --data")
    parser.add_argument("--subset", default="test", choices=SUBSETS, help="subset of --split-file (default: test)")
    parser.add_argument("--output", required=True, help="path without suffix for the .json and .png")
    args = parser.parse_args(argv)
    load_keras()
    from models.io import load_model, model_alphabet
    from models.metrics import sequence_accuracy
    from models.reader import Reader

    loaded = {Path(path).stem: load_model(path) for path in args.models}
    alphabets = {name: model_alphabet(model) for name, model in loaded.items()}
    alphabet: Alphabet = next(iter(alphabets.values()))
    different = [name for name, other in alphabets.items() if other != alphabet]
    if different:
        parser.error(f"the models must read one alphabet; {different} differ from {alphabet}")
    data = load_labelled_folder(args.data, alphabet, labels_file=args.labels)
    if args.split_file:
        data = select(data, read_split(args.split_file)[args.subset])
    predicted = {name: Reader(model, alphabet).codes(data.images) for name, model in loaded.items()}
    readings = {name: [alphabet.decode(row) for row in codes] for name, codes in predicted.items()}
    found = consensus_misreads(readings, data.labels)
    agreeing = found["agreeing"]
    result = {
        "command": " ".join(["python -m bench.consensus_misreads", *(argv if argv is not None else sys.argv[1:])]),
        "images": len(data),
        "whole_accuracy": {name: round(sequence_accuracy(data.codes, codes), 4) for name, codes in predicted.items()},
        "misread_by_every_model": len(found["all_wrong"]),
        "read_alike_by_every_model": [
            {
                "file": data.filenames[index],
                "label": data.labels[index],
                "reading": readings[next(iter(readings))][index],
            }
            for index in agreeing
        ],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    if agreeing:
        plot_samples(
            data.images[agreeing],
            [data.labels[index] for index in agreeing],
            output.with_suffix(".png"),
            predictions=[entry["reading"] for entry in result["read_alike_by_every_model"]],
            title=f"{len(agreeing)} of {len(data)} images that all {len(loaded)} models read alike, not as labelled",
        )
    print(
        f"{len(data)} images; whole accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in result["whole_accuracy"].items())
    )
    print(f"misread by every model: {len(found['all_wrong'])}; read alike by every model: {len(agreeing)}")
    for entry in result["read_alike_by_every_model"]:
        print(f"  {entry['file']}: label {entry['label']}, every model reads {entry['reading']}")
    return result


if __name__ == "__main__":
    main()
