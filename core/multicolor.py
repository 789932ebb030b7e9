"""The facts of the assignment's CAPTCHAs, in one place: multicolorcaptcha 1.2.0's `CaptchaGenerator(0)`.

It draws four digits on a 256x144 image. The text is a 256x64 strip on rows
40-103; the rows above and below are plain margin. Each digit sits in its own
64x64 cell of that strip, which is what `models.cellnet` reads.
"""

from __future__ import annotations

from core.alphabet import DIGITS, Alphabet

ALPHABET = Alphabet(DIGITS, 4)
IMAGE_SIZE = (144, 256)  # (height, width)
TEXT_ROWS = (40, 104)  # first row of the text strip, and the row after its last
CELL_SIZE = 64  # each character's square cell within the strip
MARGINS = (TEXT_ROWS[0], IMAGE_SIZE[0] - TEXT_ROWS[1])  # (top, bottom) rows outside the text


def text_margins(image_size) -> tuple[int, int]:
    """Rows (top, bottom) to crop from an image of `image_size`: the margins of multicolorcaptcha images, else none."""
    return MARGINS if tuple(image_size) == IMAGE_SIZE else (0, 0)


# The ten fonts (paths under multicolorcaptcha's fonts/ folder) the 12-epoch
# cellnet reference model (reference/stage1.keras) misreads most: thin
# outlines, hairline scripts and dotted faces, 69-92% per character on 4,000
# fresh images, 59% of its misreads (`python -m bench.font_accuracy
# reference/stage1.keras --seed fontprobe`, the sample they were chosen on:
# bench/results/font_accuracy_reference_12epochs_selection.json). On an
# independent sample (the default seed, font_accuracy_reference_12epochs.json)
# nine of them are again the nine worst of the 44 (70-91%), the tenth is 16th
# (95%), the other 34 read 93-99.8%, and the ten hold 59% of the misreads.
HARD_FONTS = (
    "GoogleFonts/ofl/monofett/Monofett.ttf",
    "GoogleFonts/ofl/dawningofanewday/DawningofaNewDay.ttf",
    "GoogleFonts/ofl/bungeeoutline/BungeeOutline-Regular.ttf",
    "fontlibraryorg/fibel-nord/Fibel Nord Kontur.ttf",
    "GoogleFonts/ofl/londrinaoutline/LondrinaOutline-Regular.ttf",
    "GoogleFonts/ofl/windsong/WindSong-Regular.ttf",
    "GoogleFonts/ofl/londrinashadow/LondrinaShadow-Regular.ttf",
    "GoogleFonts/ofl/handjet/Handjet[EGRD,ESHP,wght].ttf",
    "GoogleFonts/ofl/windsong/WindSong-Medium.ttf",
    "fontlibraryorg/tambourine/Tambourine Outline.ttf",
)
