"""Rewrites a `.keras` file of an earlier kit version to load with plain Keras, weights and scores unchanged.

    python export.py reference/stage2.keras --format keras --output runs/stage2_portable.keras
    python export.py OLD.keras --format keras --output NEW.keras --check-data capts_val --check-images 512

Loads OLD through the kit (its legacy `ForegroundMap`, `Grayscale` and
`AlphabetTag` layers), rebuilds the network on Keras's built-in layers with
the same layer objects and weights (`models.layers.replace_legacy_layers`),
and saves it with `models.io.save_model`, which adds the `captcha_kit.json`
member (alphabet, lengths, kind of scores). It then loads NEW back and
compares both models' scores on the images it is given (`export.py` passes
the first images of a folder, or seeded random ones) and returns the largest
absolute difference. reference/reference.keras was made this way
(reference/README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.io import load_model, model_alphabet, save_model
from models.layers import has_legacy_layers


def convert_file(source: str | Path, destination: str | Path, images: np.ndarray, batch_size: int = 64) -> dict:
    """Converts `source` to `destination` and measures how far the scores moved.

    Args:
        source: A `.keras` file (any the kit loads; one without legacy layers is re-saved as it is).
        destination: The `.keras` file to write (not `source` itself).
        images: A batch of raw images of the model's input size to compare the scores on.
        batch_size: Images per prediction batch.

    Returns:
        {"source", "destination", "had_legacy_layers", "images", "max_abs_difference"}.

    Raises:
        FileNotFoundError: No `source`.
        ValueError: `destination` is `source`, or a file or folder the kit cannot use.
    """
    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve():
        raise ValueError(f"Write the converted model to a new file, then replace the old one. Received: {destination}")
    old = load_model(source)
    batch = np.asarray(images, dtype=np.float32)
    legacy = has_legacy_layers(old)
    save_model(old, destination)
    new = load_model(destination)
    if model_alphabet(new) != model_alphabet(old):
        raise ValueError(f"{destination} records {model_alphabet(new)}; {source} records {model_alphabet(old)}.")
    before = old.predict(batch, batch_size=batch_size, verbose=0)
    after = new.predict(batch, batch_size=batch_size, verbose=0)
    return {
        "source": str(source),
        "destination": str(destination),
        "had_legacy_layers": legacy,
        "images": len(batch),
        "max_abs_difference": float(np.max(np.abs(np.asarray(before) - np.asarray(after)))),
    }
