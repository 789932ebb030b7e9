"""Feeds image arrays to `model.fit` batch by batch, without copying the whole set.

Handing `fit` a large NumPy array makes Keras convert all of it to a tensor,
on top of the array itself (8.7 GB of memory for 30,000 images of 144x256x3
instead of 3.3 GB). Slicing one shuffled batch at a time keeps the memory to
the array alone, and works on a memory-mapped cache too.
"""

from __future__ import annotations

import numpy as np

from core.quiet import load_keras

keras = load_keras()  # No TensorFlow start-up lines on the console.


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (images, targets) from arrays, reshuffled every epoch when `shuffle`.

    Args:
        images: Array (N, height, width, channels); a memory map works.
        targets: Array (N, ...) of labels, or None to yield images alone (prediction).
        batch_size: Images per batch; the last batch may be smaller.
        shuffle: Visit the images in a new random order every epoch.
        seed: Seed of the shuffling.
        augment: Optional function applied to each batch of images (e.g.
            `data.augment.ImageAugmentation`), for training batches.
    """

    def __init__(
        self,
        images,
        targets=None,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        augment=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if targets is not None and len(images) != len(targets):
            raise ValueError(f"images and targets differ in length: {len(images)} and {len(targets)}")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.shuffle, self.augment = shuffle, augment
        self.random = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def batch_rows(self, index: int) -> int:
        """The number of images in batch `index`, without reading them."""
        return len(self.order[index * self.batch_size : (index + 1) * self.batch_size])

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shuffle:
            rows = np.sort(rows)  # Reads a memory map in file order; the batch holds the same images.
        images = self.images[rows] if self.augment is None else self.augment(self.images[rows])
        if self.targets is None:
            return images
        return images, self.targets[rows]

    def on_epoch_end(self):
        if self.shuffle:
            self.random.shuffle(self.order)


class MixedBatches(keras.utils.PyDataset):
    """Batches that each hold a fixed number of labelled and of unlabelled images (semi-supervised training).

    Each stream is read in a fresh random order, and restarted in a new one
    when it runs out, so every batch holds exactly `labelled_batch_size`
    labelled and `unlabelled_batch_size` unlabelled images, whatever the
    sizes of the two sets (the labelled set is usually much smaller and is
    cycled many times per epoch, as in the Mean Teacher code).

    A batch is `((labelled, unlabelled), codes)`; with `views=2` it is
    `((labelled, unlabelled, labelled_again, unlabelled_again), codes)`, where
    the second pair is a second, independent augmentation of the same images
    (for a teacher that sees different noise from the student).

    Args:
        labelled_images: (N, height, width, 3) images with labels.
        labelled_codes: (N, length) class codes.
        unlabelled_images: (M, height, width, 3) images without labels, same size.
        labelled_batch_size: Labelled images per batch.
        unlabelled_batch_size: Unlabelled images per batch.
        steps_per_epoch: Batches per epoch (default: M // unlabelled_batch_size,
            one pass over the unlabelled images).
        augment: Optional function applied to each group of images.
        views: 1 or 2 augmented views of each image.
        seed: Seed of the orders (the augmentation has its own).
        first_epoch: Epoch number of the first epoch (a resumed run starts later).

    The rows of a batch follow from its epoch and index alone, so a batch asked
    for twice (as JAX's `fit` asks for the first, to build) or out of order is
    the same batch, and a resumed run reads on where the interrupted one was.
    """

    def __init__(
        self,
        labelled_images,
        labelled_codes,
        unlabelled_images,
        labelled_batch_size: int = 32,
        unlabelled_batch_size: int = 64,
        steps_per_epoch: int | None = None,
        augment=None,
        views: int = 1,
        seed: int = 0,
        first_epoch: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(labelled_images) != len(labelled_codes):
            raise ValueError(
                f"labelled images and codes differ in length: {len(labelled_images)} and {len(labelled_codes)}"
            )
        if (
            min(labelled_batch_size, unlabelled_batch_size) < 1
            or not len(labelled_images)
            or not len(unlabelled_images)
        ):
            raise ValueError(
                "Both batch sizes must be positive and both sets non-empty. Received: "
                f"labelled_batch_size={labelled_batch_size}, unlabelled_batch_size={unlabelled_batch_size}, "
                f"{len(labelled_images)} labelled and {len(unlabelled_images)} unlabelled images"
            )
        if tuple(labelled_images.shape[1:]) != tuple(unlabelled_images.shape[1:]):
            raise ValueError(
                f"Labelled and unlabelled images differ in size: {labelled_images.shape[1:]} and "
                f"{unlabelled_images.shape[1:]}"
            )
        if views not in (1, 2):
            raise ValueError(f"`views` must be 1 or 2. Received: views={views}")
        self.labelled_images, self.labelled_codes = labelled_images, labelled_codes
        self.unlabelled_images = unlabelled_images
        self.labelled_batch_size, self.unlabelled_batch_size = labelled_batch_size, unlabelled_batch_size
        self.steps = steps_per_epoch or max(1, len(unlabelled_images) // unlabelled_batch_size)
        self.augment, self.views = augment, views
        self.labelled_rows = _EndlessOrder(len(labelled_images), seed, stream=0)
        self.unlabelled_rows = _EndlessOrder(len(unlabelled_images), seed, stream=1)
        self.epoch = first_epoch

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, index):
        if not 0 <= index < self.steps:
            raise IndexError(f"batch {index} of an epoch of {self.steps} batches")
        batch = self.epoch * self.steps + index  # Counted from the start of the run.
        labelled_rows = np.sort(self.labelled_rows.take(batch * self.labelled_batch_size, self.labelled_batch_size))
        unlabelled_rows = np.sort(
            self.unlabelled_rows.take(batch * self.unlabelled_batch_size, self.unlabelled_batch_size)
        )
        labelled, unlabelled = self.labelled_images[labelled_rows], self.unlabelled_images[unlabelled_rows]
        codes = self.labelled_codes[labelled_rows]
        if self.augment is None:
            views = [(labelled, unlabelled)] * self.views
        else:
            views = [(self.augment(labelled), self.augment(unlabelled)) for _ in range(self.views)]
        return tuple(image for view in views for image in view), codes


class _EndlessOrder:
    """Row numbers 0..count-1 in random order, in a new order each time all have been given, read by position:
    positions 0..count-1 are the first order, count..2*count-1 the second, and so on."""

    def __init__(self, count: int, seed: int, stream: int):
        self.count, self.seed, self.stream = count, seed, stream
        self.cycle, self.order = None, None

    def order_of(self, cycle: int) -> np.ndarray:
        if cycle != self.cycle:  # Batches come in order: one order at a time is kept.
            self.cycle, self.order = (
                cycle,
                np.random.default_rng([self.seed, self.stream, cycle]).permutation(self.count),
            )
        return self.order

    def take(self, start: int, number: int) -> np.ndarray:
        """The rows at positions start..start+number-1."""
        positions = np.arange(start, start + number)
        cycles = positions // self.count
        return np.concatenate(
            [self.order_of(cycle)[positions[cycles == cycle] % self.count] for cycle in np.unique(cycles)]
        )


class ProcessShard(keras.utils.PyDataset):
    """This process's part of every batch of `batches`, for training on several processes (hosts) at once.

    Every process builds the same `batches` (the same seed, so the same
    order and augmentation) and keeps rows `index` * n .. (`index` + 1) * n - 1
    of each batch of B rows, n = B // `count`; JAX puts the processes' parts
    back together in process order, so the global batches are those of one
    process. A last batch that `count` does not divide loses its last
    B % `count` rows (fewer than `count` images an epoch), and one of fewer
    rows than `count` is left out where `batches` tells its size (`batch_rows`).

    Args:
        batches: A `keras.utils.PyDataset` whose batches are arrays or tuples of arrays of equal length.
        index: This process's number, from 0.
        count: The number of processes.
    """

    def __init__(self, batches, index: int, count: int):
        super().__init__()
        if not 0 <= index < count:
            raise ValueError(f"`index` must be in [0, {count}). Received: index={index}")
        self.batches, self.index, self.count = batches, index, count
        self.length = len(batches)
        if self.length and hasattr(batches, "batch_rows") and batches.batch_rows(self.length - 1) < count:
            self.length -= 1

    def __len__(self) -> int:
        return self.length

    def on_epoch_begin(self):
        self.batches.on_epoch_begin()

    def on_epoch_end(self):
        self.batches.on_epoch_end()

    def __getitem__(self, index):
        if not 0 <= index < self.length:
            raise IndexError(f"batch {index} of an epoch of {self.length} batches")
        batch = self.batches[index]
        rows = len(keras.tree.flatten(batch)[0]) // self.count
        if rows == 0:
            raise ValueError(f"batch {index} has fewer rows than the {self.count} processes that share it")
        part = slice(self.index * rows, (self.index + 1) * rows)
        return keras.tree.map_structure(lambda array: array[part], batch)
