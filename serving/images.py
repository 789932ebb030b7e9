"""Uploaded bytes to the uint8 array a model reads, refusing anything that is not a sane CAPTCHA image.

    image, note = decode_image(body, (144, 256, 3))   # note: None, or how the image was changed

Everything happens in memory. Refusals are `ImageError`s that carry the
HTTP status the service answers with: 415 for bytes that are no image of
an accepted format, 400 for an image that is broken (truncated, corrupt) or
too large once decoded (a decompression bomb: a few kilobytes of PNG can
claim gigapixels).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile

from data.dataset import as_seen

# Formats Pillow may open. Pillow knows some forty; a CAPTCHA comes as one of
# these, and every other decoder left out is one less for a hostile file to reach.
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# CAPTCHAs are a few hundred pixels wide; 4 megapixels (2000x2000) is far
# beyond any of them and takes about 12 MB as RGB. Pillow's own default,
# `MAX_IMAGE_PIXELS` (89 megapixels, an error only at twice that), guards
# photographs; this is the bound `decode_image` applies before decoding.
MAX_PIXELS = 4_000_000


class ImageError(ValueError):
    """An upload that cannot be read as an image; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, input_shape, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """Decodes an uploaded image into the uint8 array (height, width, channels) a model takes.

    Transparent images (RGBA, LA, palette images with a transparent colour)
    are composited onto white first (`data.dataset.as_seen`, the kit's one
    reading of transparency): CAPTCHAs are dark text on a light
    ground, and dropping the alpha channel would turn transparent pixels into
    whatever colour they happen to store (often black). Images of another
    size are resized (bilinear, as `data.dataset` does) and the note says so.

    Args:
        data: The uploaded bytes.
        input_shape: The model's (height, width, channels); None for a dimension it leaves open.
        max_pixels: The most pixels (width x height) accepted.

    Returns:
        (image, note): note is None when the image was used as it is, else a sentence for the response.

    Raises:
        ImageError: With status 415 (not an image of `ACCEPTED_FORMATS`) or 400 (broken or too large).
    """
    if not data:
        raise ImageError("The body is empty; expected an image (PNG, JPEG, GIF, BMP or WebP).", 400)
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageError(f"Image too large to decode: {error}", 400) from error
    except Exception as error:  # Pillow's UnidentifiedImageError, or a header so broken a plugin raised.
        raise ImageError(
            f"Not an image of an accepted format ({', '.join(ACCEPTED_FORMATS)}): {type(error).__name__}.", 415
        ) from error
    width, height = image.size
    if width * height > max_pixels:  # Checked on the header, before a single pixel is decoded.
        raise ImageError(
            f"Image of {width}x{height} pixels refused as a possible decompression bomb; "
            f"at most {max_pixels:,} pixels are accepted.",
            400,
        )
    # Pillow pads a truncated file with grey when this is on; a truncated upload must fail instead.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; truncated uploads would be read.")
    try:
        image.load()
    except Exception as error:  # OSError "image file is truncated", SyntaxError, zlib errors, ...
        raise ImageError(f"Broken {image.format} image (truncated or corrupt): {error}", 400) from error
    notes = []
    image, transparent = as_seen(image)
    if transparent:
        notes.append("transparent pixels composited onto white")
    height_wanted, width_wanted, channels = input_shape
    mode = "L" if channels == 1 else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    size = (width_wanted or width, height_wanted or height)
    if size != (width, height):
        image = image.resize(size, Image.BILINEAR)
        notes.append(f"resized from {width}x{height} to {size[0]}x{size[1]}, the model's input size")
    array = np.asarray(image, dtype=np.uint8)
    if channels == 1:
        array = array[..., None]
    note = "; ".join(notes)
    return array, (note[0].upper() + note[1:] + ".") if note else None
