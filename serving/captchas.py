"""Fresh CAPTCHAs for the page and `/api/captcha`, drawn with the model's own generator.

    source = CaptchaSource(reader.alphabet, reader.image_size)
    png, text, seed = source.draw("7")        # the same seed gives the same image

The generator is `data.generate.generator_for`'s choice, the one the desktop
window uses: multicolorcaptcha level 0 for the four-digit 256x144 models,
ImageCaptcha at the model's size and alphabet for the others. Image `S` is
image 0 of the stream named `serve/S` (`data.generate.make_captcha`).
"""

from __future__ import annotations

import io
import re
import secrets
import threading

from data.generate import generator_for, make_captcha

# Seeds are names, shown in URLs and headers: keep them short and plain.
SEED_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class CaptchaSource:
    """Draws CAPTCHAs of the kind a model reads, as PNG bytes with their text.

    Args:
        alphabet: The model's `Alphabet`.
        image_size: The model's (height, width); None for an open dimension.
    """

    def __init__(self, alphabet, image_size):
        self.generator = generator_for(alphabet, image_size)
        # multicolorcaptcha seeds Python's global `random` and ImageCaptcha's
        # stand-in swaps a module global of `captcha.image`: two draws at once
        # in the server's threads would mix their random streams.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The generator's name: multicolorcaptcha or imagecaptcha."""
        return self.generator.name

    def draw(self, seed: str | None = None) -> tuple[bytes, str, str]:
        """One CAPTCHA as (PNG bytes, its text, its seed); a random seed when none is given.

        Raises:
            ValueError: The seed is not 1 to 64 letters, digits, `_`, `.` or `-`.
        """
        seed = secrets.token_hex(6) if seed is None else seed
        if not SEED_PATTERN.match(seed):
            raise ValueError(f"A seed is 1 to 64 letters, digits, '_', '.' or '-'. Received: {seed[:80]!r}")
        with self._lock:
            image, text = make_captcha(f"serve/{seed}", 0, self.generator)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue(), text, seed
