"""Probe: does the shawon baseline leave chance level on new CAPTCHAs, and can it learn a few by heart?

    python -m bench.probe_shawon new --learning-rate 1e-3            # 3 epochs of 12,800 new images
    python -m bench.probe_shawon new --learning-rate 2e-4
    python -m bench.probe_shawon new --downscale 2                   # close to the Kaggle post's 50x200 input
    python -m bench.probe_shawon memorise [--dropout 0]              # 256 images of capts_val, 50 epochs

Prints the training loss and the mean per-digit training and validation
accuracy (first 2,000 images of --val-dir) after each epoch, then how many
units of each digit branch's hidden layer never fire on 256 validation
images (dead ReLUs: what the post's dropout 0.5 leads to here). The probes
use the post's settings (dropout 0.5, full resolution) unless told
otherwise. The README's shawon paragraph quotes these runs.
"""

from __future__ import annotations

import argparse

import numpy as np

from core.alphabet import Alphabet
from core.quiet import load_keras
from data.dataset import load_labelled_folder


def mean_accuracy(history: dict, epoch: int, prefix: str = "") -> float:
    return float(np.mean([history[f"{prefix}digit_{position}_accuracy"][epoch] for position in range(4)]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("new", "memorise"), help="new images every epoch, or 256 images by heart")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--downscale", type=int, default=1, help="input downscale factor (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.5, help="head dropout (default: the post's 0.5)")
    parser.add_argument("--images", type=int, default=12_800, help="new images per epoch (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 3 (new) or 50 (memorise)")
    parser.add_argument("--val-dir", default="capts_val", help="validation folder (default: %(default)s)")
    args = parser.parse_args(argv)
    keras = load_keras()
    import models
    from data.batches import ArrayBatches
    from data.stream import GeneratedBatches
    from training.objective import compiled_objective

    alphabet = Alphabet()
    keras.utils.set_random_seed(0)
    model = models.get_model("shawon", alphabet=alphabet, downscale=args.downscale, dropout=args.dropout)
    val = load_labelled_folder(args.val_dir, alphabet)
    if args.mode == "new":
        epochs = args.epochs or 3
        objective = compiled_objective(model, args.learning_rate, -(-args.images // 64) * epochs)
        history = objective.fit(
            GeneratedBatches(args.images, alphabet, 64, seed="probe"),
            epochs=epochs,
            validation_data=ArrayBatches(val.images[:2000], val.codes[:2000], 256),
            verbose=0,
        ).history
    else:
        epochs = args.epochs or 50
        objective = compiled_objective(model, args.learning_rate, 8 * epochs)
        history = objective.fit(val.images[:256], val.codes[:256], batch_size=32, epochs=epochs, verbose=0).history
    for epoch in range(epochs):
        line = f"epoch {epoch + 1}: loss {history['loss'][epoch]:.4f}, train {mean_accuracy(history, epoch):.4f}"
        if "val_digit_0_accuracy" in history:
            line += f", validation {mean_accuracy(history, epoch, 'val_'):.4f}"
        print(line, flush=True)
    for position in range(alphabet.length):
        hidden = keras.Model(model.input, model.get_layer(f"char{position}_dense").output)
        activations = hidden.predict(val.images[:256], verbose=0)
        dead = int((activations.max(axis=0) <= 0).sum())
        print(f"digit {position} branch: {dead} of {activations.shape[1]} hidden units never fire", flush=True)
    return history


if __name__ == "__main__":
    main()
