"""Random image augmentation for training batches: the semi-supervised solver's rotation and colour jitter.

    augment = ImageAugmentation(rotation=10, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, seed=0)
    noisy = augment(images)          # uint8 (N, height, width, 3) -> uint8, a fresh draw per image

The transforms follow torchvision's `RandomRotation(10)` and
`ColorJitter(0.4, 0.4, 0.4, 0.1)` that the original applies: a rotation by an
angle uniform in [-10, 10] degrees (corners filled black), then brightness,
contrast and saturation factors uniform in [0.6, 1.4] and a hue shift uniform
in [-0.1, 0.1] of the colour wheel, in random order. They run on the raw images
before the model (which resizes and scales them itself), in NumPy and PIL, so
the saved model holds no augmentation.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class ImageAugmentation:
    """Draws one random rotation and colour jitter per image.

    Args:
        rotation: Largest rotation in degrees (0: none).
        brightness: Brightness factor range 1 ± brightness (0: none).
        contrast: Contrast factor range 1 ± contrast (0: none).
        saturation: Saturation factor range 1 ± saturation (0: none).
        hue: Largest hue shift, in turns of the colour wheel, at most 0.5 (0: none).
        seed: Seed of the draws.
    """

    def __init__(
        self,
        rotation: float = 10.0,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        seed: int = 0,
    ):
        if min(rotation, brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError(
                "Augmentation strengths must be non-negative and `hue` at most 0.5. Received: "
                f"rotation={rotation}, brightness={brightness}, contrast={contrast}, saturation={saturation}, hue={hue}"
            )
        self.rotation, self.brightness, self.contrast = rotation, brightness, contrast
        self.saturation, self.hue = saturation, hue
        self.random = np.random.default_rng(seed)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Augments a batch of uint8 RGB images (N, height, width, 3); returns a new uint8 array."""
        return np.stack([self.augment_one(image) for image in np.asarray(images)]) if len(images) else images

    def augment_one(self, image: np.ndarray) -> np.ndarray:
        picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
        if self.rotation:
            angle = self.random.uniform(-self.rotation, self.rotation)
            picture = picture.rotate(angle, resample=Image.BILINEAR)
        pixels = np.asarray(picture, dtype=np.float32)
        jitters = [
            (self._brightness, self.brightness),
            (self._contrast, self.contrast),
            (self._saturation, self.saturation),
            (self._hue, self.hue),
        ]
        for index in self.random.permutation(len(jitters)):
            transform, strength = jitters[index]
            if strength:
                pixels = transform(pixels, strength)
        return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)

    def _factor(self, strength: float) -> float:
        return self.random.uniform(max(0.0, 1 - strength), 1 + strength)

    def _brightness(self, pixels, strength):
        return np.clip(pixels * self._factor(strength), 0, 255)

    def _contrast(self, pixels, strength):
        mean = _grey(pixels).mean()
        return np.clip(mean + (pixels - mean) * self._factor(strength), 0, 255)

    def _saturation(self, pixels, strength):
        grey = _grey(pixels)[..., None]
        return np.clip(grey + (pixels - grey) * self._factor(strength), 0, 255)

    def _hue(self, pixels, strength):
        shift = self.random.uniform(-strength, strength)
        hsv = np.asarray(Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(shift * 255)) % 256
        return np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"), dtype=np.float32)


def _grey(pixels: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, what torchvision's grayscale uses."""
    return pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
