"""Fresh CAPTCHAs for every epoch, drawn in a worker process while the model trains.

A fixed training set of a few tens of thousands of images is learnt by heart
in a few epochs (training accuracy 98%, validation 91%), and a generator can
draw as many distinct images as we like, at about 4.3 CPU-ms an image
(`python -m data.generate`, PNG saving included; docs/results.md). `GeneratedBatches` hands
`model.fit` a new set every epoch. Keras runs `__getitem__` in `workers`
forked processes and keeps `max_queue_size` batches ready, so drawing
overlaps training.

Every image is seeded on its own (`{seed}/epoch{epoch}/{index}`), so a run is
repeatable whatever the number of workers or the order Keras asks for the
batches in, and a resumed run draws what the interrupted one would have.

With `reuse=2` every drawn image serves two consecutive epochs, which halves
the drawing: the first epoch of each pair draws the images (named by the
pair, `epoch{epoch // reuse}`) and keeps them in a memory-mapped file; the
next trains on the same images in another order, read back from it. A batch
whose images are not in the file (a run resumed between the two) draws them
again, the same images.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
import zlib
from pathlib import Path

import numpy as np

from core.quiet import load_keras
from data.generate import get_generator, make_captcha

keras = load_keras()  # No TensorFlow start-up lines on the console.

_generators = {}  # One generator per process and setting (fonts load once).


def _generator(name: str, alphabet, options: dict):
    key = (name, repr(alphabet), tuple(sorted(options.items())))
    if key not in _generators:
        _generators[key] = get_generator(name, alphabet=alphabet, **options)
    return _generators[key]


class GeneratedBatches(keras.utils.PyDataset):
    """Batches of (images, label codes) of CAPTCHAs drawn afresh every epoch.

    Args:
        images_per_epoch: Distinct images per epoch.
        alphabet: Characters and length the generator draws and the codes use.
        batch_size: Images per batch; the last batch may be smaller.
        seed: Names the stream; different seeds give different images.
        generator: A name from `data.generate.GENERATORS`.
        generator_options: Keyword arguments of that generator, e.g.
            `{"hard_font_weight": 3}` for multicolorcaptcha.
        first_epoch: Epoch number of the first epoch (a resumed run starts later).
        workers: Processes drawing images (0 draws in the training process).
        reuse: Epochs each drawn image serves (1: new images every epoch).
        cache_dir: Where the drawn images of `reuse` > 1 are kept (default: a
            temporary folder, deleted with the dataset; 3.5 GB for 32,000
            images of 256x144).
    """

    def __init__(
        self,
        images_per_epoch: int,
        alphabet,
        batch_size: int = 64,
        seed: str = "0/fresh",
        generator: str = "multicolorcaptcha",
        generator_options: dict | None = None,
        first_epoch: int = 0,
        workers: int = 1,
        max_queue_size: int = 16,
        reuse: int = 1,
        cache_dir: str | Path | None = None,
    ):
        super().__init__(workers=max(workers, 1), use_multiprocessing=workers > 0, max_queue_size=max_queue_size)
        if images_per_epoch < 1 or batch_size < 1:
            raise ValueError(
                f"`images_per_epoch` and `batch_size` must be positive. Received: {images_per_epoch}, {batch_size}"
            )
        self.images_per_epoch, self.alphabet, self.batch_size = images_per_epoch, alphabet, batch_size
        self.seed, self.generator_name, self.epoch = seed, generator, first_epoch
        self.generator_options = dict(generator_options or {})
        if reuse < 1:
            raise ValueError(f"`reuse` must be at least 1. Received: reuse={reuse}")
        self.reuse = reuse
        # Fail here, not in a worker, on a bad setting; forks inherit the fonts.
        generator_object = _generator(generator, alphabet, self.generator_options)
        self.cache = None
        if reuse > 1:
            folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="captcha-kit-reuse-"))
            folder.mkdir(parents=True, exist_ok=True)
            shape = np.asarray(make_captcha(f"{seed}/probe", 0, generator_object)[0]).shape
            self.cache = folder
            # Created here, in the training process, before any worker opens them.
            np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, (images_per_epoch, *shape))
            np.lib.format.open_memmap(folder / "codes.npy", "w+", np.int32, (images_per_epoch, alphabet.length))
            np.save(folder / "drawn.npy", np.full(len(self), -1, np.int64))  # Each batch's draw, by its name.
            if not cache_dir:
                weakref.finalize(self, shutil.rmtree, folder, True)

    def __len__(self) -> int:
        return -(-self.images_per_epoch // self.batch_size)

    @property
    def draw_name(self) -> int:
        """The draw this epoch's images come from: the epoch, or with `reuse` the first epoch of its group."""
        return self.epoch // self.reuse

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of an epoch of {len(self)} batches")
        first = index * self.batch_size
        indices = np.arange(first, min(first + self.batch_size, self.images_per_epoch))
        if self.cache is None:
            return self.draw(indices)
        drawn = np.load(self.cache / "drawn.npy", mmap_mode="r+")
        images = np.load(self.cache / "images.npy", mmap_mode="r+")
        codes = np.load(self.cache / "codes.npy", mmap_mode="r+")
        if self.epoch % self.reuse == 0:  # The group's first epoch draws, and keeps what it drew.
            batch_images, batch_codes = self.draw(indices)
            images[indices], codes[indices] = batch_images, batch_codes
            images.flush(), codes.flush()
            drawn[index] = self.draw_name
            drawn.flush()
            return batch_images, batch_codes
        # A later epoch of the group: the same images, shuffled across the whole epoch.
        order = np.random.default_rng([zlib.crc32(self.seed.encode()), self.epoch]).permutation(self.images_per_epoch)
        chosen = order[indices]
        batches = np.unique(chosen // self.batch_size)
        if np.all(drawn[batches] == self.draw_name):
            return np.array(images[chosen]), np.array(codes[chosen])
        return self.draw(chosen)  # Not kept (a resumed run): drawn again, the same images.

    def draw(self, indices):
        generator = _generator(self.generator_name, self.alphabet, self.generator_options)
        images, codes = [], []
        for image_index in indices:
            image, label = make_captcha(f"{self.seed}/epoch{self.draw_name}", int(image_index), generator)
            images.append(np.asarray(image, dtype=np.uint8))
            codes.append(self.alphabet.encode(label))
        return np.stack(images), np.stack(codes)

    def on_epoch_end(self):
        # Keras calls this in the training process after the epoch's workers stopped; the next epoch's workers
        # are forked afterwards and see the new epoch number.
        self.epoch += 1
