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
"""

from __future__ import annotations

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
    ):
        super().__init__(workers=max(workers, 1), use_multiprocessing=workers > 0, max_queue_size=max_queue_size)
        if images_per_epoch < 1 or batch_size < 1:
            raise ValueError(
                f"`images_per_epoch` and `batch_size` must be positive. Received: {images_per_epoch}, {batch_size}"
            )
        self.images_per_epoch, self.alphabet, self.batch_size = images_per_epoch, alphabet, batch_size
        self.seed, self.generator_name, self.epoch = seed, generator, first_epoch
        self.generator_options = dict(generator_options or {})
        # Fail here, not in a worker, on a bad setting; forks inherit the fonts.
        _generator(generator, alphabet, self.generator_options)

    def __len__(self) -> int:
        return -(-self.images_per_epoch // self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of an epoch of {len(self)} batches")
        generator = _generator(self.generator_name, self.alphabet, self.generator_options)
        first = index * self.batch_size
        indices = range(first, min(first + self.batch_size, self.images_per_epoch))
        images, codes = [], []
        for image_index in indices:
            image, label = make_captcha(f"{self.seed}/epoch{self.epoch}", image_index, generator)
            images.append(np.asarray(image, dtype=np.uint8))
            codes.append(self.alphabet.encode(label))
        return np.stack(images), np.stack(codes)

    def on_epoch_end(self):
        # Keras calls this in the training process after the epoch's workers stopped; the next epoch's workers
        # are forked afterwards and see the new epoch number.
        self.epoch += 1
