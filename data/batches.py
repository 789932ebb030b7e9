"""Feeds image arrays to `model.fit` batch by batch, without copying the whole set.

Handing `fit` a large NumPy array makes Keras convert all of it to a tensor,
on top of the array itself (8.7 GB of memory for 30,000 images of 144x256x3
instead of 3.3 GB). Slicing one shuffled batch at a time keeps the memory to
the array alone, and works on a memory-mapped cache too.
"""

from __future__ import annotations

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (images, targets) from arrays, reshuffled every epoch when `shuffle`.

    Args:
        images: Array (N, height, width, channels); a memory map works.
        targets: Array (N, ...) of labels, or None to yield images alone (prediction).
        batch_size: Images per batch; the last batch may be smaller.
        shuffle: Visit the images in a new random order every epoch.
        seed: Seed of the shuffling.
    """

    def __init__(self, images, targets=None, batch_size: int = 64, shuffle: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if targets is not None and len(images) != len(targets):
            raise ValueError(f"images and targets differ in length: {len(images)} and {len(targets)}")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.shuffle = shuffle
        self.random = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shuffle:
            rows = np.sort(rows)  # Reads a memory map in file order; the batch holds the same images.
        if self.targets is None:
            return self.images[rows]
        return self.images[rows], self.targets[rows]

    def on_epoch_end(self):
        if self.shuffle:
            self.random.shuffle(self.order)
