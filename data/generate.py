"""Generates CAPTCHA folders with `multicolorcaptcha` (the assignment's) or `captcha`'s ImageCaptcha.

    python -m data.generate                      # capts_train/ and capts_val/
    python -m data.generate --train-count 2000 --val-count 500 --seed 7
    python -m data.generate --preset notebook    # the PyTorch notebook's 30,000/10,000/10,000 ImageCaptchas
    python -m data.generate --generator imagecaptcha --width 160 --height 60 \
        --alphabet imagecaptcha58 --length 4 --train-dir ic_train --val-dir ic_val
    python -m data.generate --generator imagecaptcha --width 200 --height 60 \
        --length 6 --min-length 4 --train-dir varlen_train --val-dir varlen_val   # labels of 4 to 6 characters

Every image is seeded on its own (`seed/split/index`), so a folder is the same
whatever the number of worker processes, and an interrupted run continues
with `--resume` exactly where it stopped. multicolorcaptcha draws from
Python's global `random` and lists its fonts in file-system order; we sort the
font list so that the result does not depend on that order. captcha 0.7
draws from the `secrets` module, which no seed controls; while it draws one
image, the kit hands it a stand-in `secrets` backed by a `random.Random`
seeded for that image (`seeded_secrets`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
from functools import partial
from multiprocessing import Pool
from pathlib import Path

from core.alphabet import IMAGECAPTCHA58, Alphabet, add_alphabet_arguments, alphabet_from_arguments
from core.files import atomic_path
from core.multicolor import ALPHABET as MULTICOLOR_ALPHABET
from core.multicolor import HARD_FONTS, IMAGE_SIZE
from data.labels import kit_filename, list_image_files

DEFAULT_TRAIN_COUNT = 30_000
DEFAULT_VAL_COUNT = 5_000
MANIFEST_NAME = "dataset.json"

_generator = None


def _multicolor_generator():
    """One CaptchaGenerator per process, with its font list in a fixed order."""
    global _generator
    if _generator is None:
        from multicolorcaptcha import CaptchaGenerator

        _generator = CaptchaGenerator(0)
        _generator.l_fonts.sort()
    return _generator


def font_name(path: str) -> str:
    """A font file's path under multicolorcaptcha's fonts/ folder, the name `HARD_FONTS` uses."""
    return Path(path).as_posix().split("/fonts/", 1)[-1]


class GenerationRecorder:
    """Records, while multicolorcaptcha draws, each character's font and its and the background's colour.

        with GenerationRecorder() as recorder:
            image, label = make_captcha(seed, index)
        recorder.fonts    # one `font_name` per character
        recorder.colours  # one (background RGB, character RGB) per character

    It wraps two methods of the library's generator instance and calls the
    originals, so the random stream, and hence the image, is exactly the
    unrecorded one (whatever font list a `MulticolorCaptcha` hands it).
    """

    def __enter__(self):
        self.generator = _multicolor_generator()
        self.fonts, self.colours = [], []
        original_font, original_colour = self.generator.gen_rand_font, self.generator.gen_rand_custom_contrast_color

        def gen_rand_font(fonts_list):
            font = original_font(fonts_list)
            self.fonts.append(font_name(font))
            return font

        def gen_rand_custom_contrast_color(from_color):
            colour = original_colour(from_color)
            self.colours.append(((from_color.R, from_color.G, from_color.B), (colour.R, colour.G, colour.B)))
            return colour

        self.generator.gen_rand_font = gen_rand_font
        self.generator.gen_rand_custom_contrast_color = gen_rand_custom_contrast_color
        return self

    def __exit__(self, *exc):
        del self.generator.gen_rand_font, self.generator.gen_rand_custom_contrast_color


class MulticolorCaptcha:
    """The assignment's generator: `multicolorcaptcha.CaptchaGenerator(0)`, four digits on 256x144.

    Args:
        width, height: Must be 256 and 144 (or None).
        alphabet: Must be four digits (or None).
        hard_font_weight: How many times more often than the others each of
            `HARD_FONTS` is drawn. 1 (the default) is the library's own uniform
            choice, what validation and test sets must use; a larger weight
            is for training streams, to show a model more of the fonts it
            finds hardest.
    """

    name = "multicolorcaptcha"

    def __init__(
        self,
        width: int | None = None,
        height: int | None = None,
        alphabet: Alphabet | None = None,
        hard_font_weight: int = 1,
    ):
        if (width or IMAGE_SIZE[1], height or IMAGE_SIZE[0]) != (IMAGE_SIZE[1], IMAGE_SIZE[0]):
            raise ValueError(f"multicolorcaptcha draws 256x144 images. Received: width={width}, height={height}")
        if alphabet is not None and alphabet != MULTICOLOR_ALPHABET:
            raise ValueError(f"multicolorcaptcha draws four digits. Received: alphabet={alphabet}")
        if int(hard_font_weight) != hard_font_weight or hard_font_weight < 1:
            raise ValueError(
                "`hard_font_weight` must be a whole number of at least 1. "
                f"Received: hard_font_weight={hard_font_weight!r}"
            )
        self.alphabet = MULTICOLOR_ALPHABET
        self.hard_font_weight = int(hard_font_weight)
        self.fonts = None
        if self.hard_font_weight > 1:
            fonts = _multicolor_generator().l_fonts
            missing = set(HARD_FONTS) - {font_name(font) for font in fonts}
            if missing:
                raise ValueError(f"This multicolorcaptcha lacks fonts of HARD_FONTS: {sorted(missing)}")
            # The library picks `fonts[randint(0, len(fonts) - 1)]`: a font listed k times is drawn k times as often.
            self.fonts = [
                font for font in fonts for _ in range(self.hard_font_weight if font_name(font) in HARD_FONTS else 1)
            ]

    def settings(self) -> dict:
        settings = {"generator": "multicolorcaptcha==1.2.0", "captcha_size_num": 0, "difficult_level": 0}
        if self.hard_font_weight > 1:
            settings["hard_font_weight"] = self.hard_font_weight
        return settings

    def draw(self, seed: str):
        random.seed(seed)
        generator = _multicolor_generator()
        if self.fonts is None:
            captcha = generator.gen_captcha_image(difficult_level=0)
        else:
            uniform, generator.l_fonts = generator.l_fonts, self.fonts
            try:
                captcha = generator.gen_captcha_image(difficult_level=0)
            finally:
                generator.l_fonts = uniform
        return captcha.image.convert("RGB"), captcha.characters


class SeededSecrets:
    """The part of the `secrets` module that captcha 0.7 uses, drawn from a seeded `random.Random`."""

    def __init__(self, source: random.Random):
        self.source = source

    def randbelow(self, exclusive_upper_bound: int) -> int:
        return self.source.randrange(exclusive_upper_bound)

    def randbits(self, bits: int) -> int:
        return self.source.getrandbits(bits)

    def choice(self, sequence):
        return self.source.choice(sequence)


@contextlib.contextmanager
def seeded_secrets(source: random.Random):
    """Makes `captcha.image` draw from `source` instead of the unseedable `secrets` module, then restores it."""
    import captcha.image

    original = captcha.image.secrets
    captcha.image.secrets = SeededSecrets(source)
    try:
        yield
    finally:
        captcha.image.secrets = original


_image_captchas = {}


class ImageCaptchaGenerator:
    """`captcha.image.ImageCaptcha` (the PyTorch notebook's), any size, alphabet and length.

    The label's characters are drawn uniformly from the alphabet; for a
    variable-length alphabet its length is drawn first, uniformly from
    `min_length` to `length`. The image uses the library's own font and
    noise. All come from one `random.Random` seeded by the image's seed, so
    the same seed gives byte-identical images (and fixed-length alphabets the
    same images as before lengths could vary: no extra number is drawn).
    """

    name = "imagecaptcha"

    def __init__(self, width: int | None = None, height: int | None = None, alphabet: Alphabet | None = None):
        self.width, self.height = width or 160, height or 60
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Image size must be positive. Received: width={self.width}, height={self.height}")
        self.alphabet = alphabet or Alphabet(IMAGECAPTCHA58, 4)

    def settings(self) -> dict:
        from importlib.metadata import version

        return {
            "generator": f"captcha=={version('captcha')}",
            "width": self.width,
            "height": self.height,
            "alphabet": self.alphabet.characters,
            "length": self.alphabet.length,
            # Only when lengths vary, so that folders made before keep their manifest (and `--resume`).
            **({"min_length": self.alphabet.min_length} if self.alphabet.variable_length else {}),
        }

    def draw(self, seed: str):
        from captcha.image import ImageCaptcha

        key = (self.width, self.height)
        if key not in _image_captchas:  # One per process: it loads its fonts once.
            _image_captchas[key] = ImageCaptcha(width=self.width, height=self.height)
        source = random.Random(seed)
        length = self.alphabet.length
        if self.alphabet.variable_length:
            length = source.randint(self.alphabet.min_length, self.alphabet.length)
        label = "".join(source.choice(self.alphabet.characters) for _ in range(length))
        with seeded_secrets(source):
            image = _image_captchas[key].generate_image(label)
        return image.convert("RGB"), label


GENERATORS = {generator.name: generator for generator in (MulticolorCaptcha, ImageCaptchaGenerator)}


def get_generator(
    name: str = "multicolorcaptcha", width=None, height=None, alphabet: Alphabet | None = None, **options
):
    """The generator called `name` (see `GENERATORS`) with the given image size, alphabet and options."""
    if name not in GENERATORS:
        raise ValueError(f"Unknown generator {name!r}. Choose one of: {', '.join(GENERATORS)}")
    return GENERATORS[name](width=width, height=height, alphabet=alphabet, **options)


def generator_for(alphabet: Alphabet, image_size):
    """The generator of CAPTCHAs a model reads: multicolorcaptcha for four-digit 256x144 models, else ImageCaptcha.

    Args:
        alphabet: The model's alphabet.
        image_size: The model's (height, width); None for a dimension it leaves open.
    """
    height, width = image_size
    if alphabet == MULTICOLOR_ALPHABET and (height, width) in (IMAGE_SIZE, (None, None)):
        return get_generator("multicolorcaptcha")
    return get_generator("imagecaptcha", width=width, height=height, alphabet=alphabet)


def make_captcha(seed: str, index: int, generator=None):
    """Draws CAPTCHA number `index` of the stream named `seed`.

    Args:
        seed: Names the stream.
        index: The image's number in it.
        generator: From `get_generator` (default: multicolorcaptcha).

    Returns:
        (PIL RGB image, its label).
    """
    return (generator or MulticolorCaptcha()).draw(f"{seed}/{index}")


def _write_one(folder: Path, seed: str, generator, index: int) -> str:
    image, label = make_captcha(seed, index, generator)
    path = folder / kit_filename(label, index)
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")
    return path.name


def generate_folder(
    folder: str | Path,
    count: int,
    seed: str | int = 0,
    workers: int | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    generator=None,
) -> Path:
    """Fills `folder` with `count` CAPTCHAs named `LABEL_INDEX.png`.

    Args:
        folder: Destination; created if missing.
        count: Number of images.
        seed: Names the random stream; the same seed gives the same images.
        generator: From `get_generator` (default: multicolorcaptcha).
        workers: Processes to use (default: every CPU core).
        force: Delete the images already in `folder` first.
        resume: Keep the images of an interrupted run with the same seed and
            make only the missing ones.
        progress: Show a progress bar.

    Returns:
        The folder.
    """
    from tqdm import tqdm

    if count < 1:
        raise ValueError(f"`count` must be at least 1. Received: count={count}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = generator or MulticolorCaptcha()
    manifest = {**generator.settings(), "seed": str(seed), "count": count}
    # A run killed mid-write leaves its temporary files (never a half-written image under a real name).
    for leftover in folder.glob(".*.tmp*"):
        leftover.unlink(missing_ok=True)
    existing = list_image_files(folder)
    done = set()
    if existing:
        previous = read_manifest(folder)
        if resume and all(previous.get(key) == value for key, value in manifest.items()):
            done = {_kit_index(path.name) for path in existing}
        elif force:
            for path in existing:
                path.unlink()
            (folder / MANIFEST_NAME).unlink(missing_ok=True)
        else:
            raise FileExistsError(
                f"{folder} already holds {len(existing)} images. Pass --force to replace them"
                + (
                    ", or --resume with the same --seed and count to finish an interrupted run."
                    if previous.get("complete") is False
                    else "."
                )
            )
    _write_manifest(folder, {**manifest, "complete": False})

    indices = [index for index in range(count) if index not in done]
    workers = workers or os.cpu_count() or 1
    write = partial(_write_one, folder, str(seed), generator)
    bar = tqdm(
        total=count,
        initial=count - len(indices),
        desc=f"Generating {folder}",
        unit="img",
        disable=not progress,
        file=sys.stdout,
    )
    if workers == 1:
        for index in indices:
            write(index)
            bar.update()
    else:
        with Pool(workers) as pool:
            for _ in pool.imap_unordered(write, indices, chunksize=64):
                bar.update()
    bar.close()
    _write_manifest(folder, {**manifest, "complete": True})
    return folder


def _kit_index(filename: str) -> int | None:
    """The index of a kit-named file (`LABEL_INDEX.png`), None for other names."""
    tail = Path(filename).stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() and "_" in filename else None


def read_manifest(folder: str | Path) -> dict:
    """The folder's `dataset.json` (seed, count, whether the run completed), or {} when there is none."""
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_manifest(folder: Path, manifest: dict) -> None:
    with atomic_path(folder / MANIFEST_NAME) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")


# Named settings for `--preset`; options given on the command line override them.
PRESETS = {
    "assignment": {
        "generator": "multicolorcaptcha",
        "train_dir": "capts_train",
        "val_dir": "capts_val",
        "test_dir": None,
        "train_count": DEFAULT_TRAIN_COUNT,
        "val_count": DEFAULT_VAL_COUNT,
        "test_count": 0,
    },
    "notebook": {
        "generator": "imagecaptcha",
        "width": 160,
        "height": 60,
        "alphabet": "imagecaptcha58",
        "length": 4,
        "train_dir": "notebook_train",
        "val_dir": "notebook_val",
        "test_dir": "notebook_test",
        "train_count": 30_000,
        "val_count": 10_000,
        "test_count": 10_000,
    },
}


def generate_sets(folders: dict, counts: dict, seed=0, **options) -> list[Path]:
    """Generates several folders (e.g. train, val, test) from one seed, a distinct stream for each.

    Args:
        folders: Subset name to folder; subsets whose folder or count is empty are skipped.
        counts: Subset name to number of images.
        seed: The run's seed; subset `name` uses the stream `{seed}/{name}`.
        **options: Passed to `generate_folder` (generator, workers, force, ...).
    """
    return [
        generate_folder(folders[name], counts[name], seed=f"{seed}/{name}", **options)
        for name in folders
        if folders[name] and counts.get(name)
    ]


def generate_assignment_data(
    train_dir="capts_train",
    val_dir="capts_val",
    train_count=DEFAULT_TRAIN_COUNT,
    val_count=DEFAULT_VAL_COUNT,
    seed=0,
    **options,
) -> None:
    """Generates both assignment folders from one seed (distinct streams for each)."""
    generate_sets({"train": train_dir, "val": val_dir}, {"train": train_count, "val": val_count}, seed, **options)


def build_parser(preset: str = "assignment") -> argparse.ArgumentParser:
    settings = {"width": None, "height": None, "alphabet": None, "length": None, "min_length": None, **PRESETS[preset]}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--preset",
        default="assignment",
        choices=PRESETS,
        help="named settings, overridden by the options below: assignment (multicolorcaptcha, 30,000 + 5,000) "
        "or notebook (ImageCaptcha 160x60, imagecaptcha58, 4 characters, 30,000 + 10,000 + 10,000) "
        "(default: %(default)s)",
    )
    group = parser.add_argument_group("images")
    group.add_argument("--generator", choices=GENERATORS, help="which library draws the CAPTCHAs")
    group.add_argument("--width", type=int, help="image width (imagecaptcha; default 160)")
    group.add_argument("--height", type=int, help="image height (imagecaptcha; default 60)")
    add_alphabet_arguments(group, purpose="imagecaptcha: ", default_characters="imagecaptcha58")
    group = parser.add_argument_group("folders and counts")
    group.add_argument("--train-dir", help="training folder")
    group.add_argument("--val-dir", help="validation folder")
    group.add_argument("--test-dir", help="test folder (none for the assignment)")
    group.add_argument("--train-count", type=int, help="training images")
    group.add_argument("--val-count", type=int, help="validation images")
    group.add_argument("--test-count", type=int, help="test images")
    group = parser.add_argument_group("run")
    group.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same images (default: %(default)s)"
    )
    group.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    group.add_argument("--force", action="store_true", help="delete images already in the folders first")
    group.add_argument("--resume", action="store_true", help="finish an interrupted run with the same seed and counts")
    parser.set_defaults(**settings)
    return parser


def main(argv=None):
    preset = build_parser().parse_known_args(argv)[0].preset
    parser = build_parser(preset)
    args = parser.parse_args(argv)
    folders = {"train": args.train_dir, "val": args.val_dir, "test": args.test_dir}
    counts = {"train": args.train_count, "val": args.val_count, "test": args.test_count}
    try:
        alphabet = alphabet_from_arguments(args, default_characters="imagecaptcha58", optional=True)
        generator = get_generator(args.generator, width=args.width, height=args.height, alphabet=alphabet)
        written = generate_sets(
            folders,
            counts,
            seed=args.seed,
            generator=generator,
            workers=args.workers,
            force=args.force,
            resume=args.resume,
        )
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    return written


if __name__ == "__main__":
    main()
