"""What the kit knows about a model: its alphabet, label lengths and kind of scores, kept beside Keras's config.

Keras's own `config.json` describes the network; the kit also needs to know
which characters the classes stand for, how long the labels are and how to
read the scores (`OUTPUT_KINDS`). That travels as a `ModelMetadata`:

- in memory, as the attribute `captcha_kit_metadata` of the model, set by
  `models.get_model` and by `models.io.load_model`;
- in a `.keras` file, as the JSON member `captcha_kit.json` of its zip
  archive, written by `models.io.save_model`:

      {"format": 1, "characters": "0123456789", "length": 4, "min_length": 4, "kind": "positions"}

Keras reads only its own members (`config.json`, `metadata.json`,
`model.weights.h5`) and ignores this one, so the file still loads with plain
`keras.models.load_model` where the kit is not installed; the kit reads it
back with `read_file_metadata`. A file re-saved by plain Keras loses the
member and is then read like a foreign model (`--alphabet`, `--length`).

Files saved before this member existed carry the same facts in the
configuration of a custom `AlphabetTag` layer (`models.layers`) named
`characters`; `model_metadata` reads those too.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import keras

from core.alphabet import Alphabet
from core.archive import read_member

OUTPUT_KINDS = ("positions", "ctc", "seq2seq")
METADATA_MEMBER = "captcha_kit.json"
METADATA_ATTRIBUTE = "captcha_kit_metadata"
FORMAT_VERSION = 1
METADATA_BYTES = 1 << 20  # Far above any real alphabet; a larger member is refused unread (a zip can inflate).
# The registered name of the kit's former output layer (`models.layers.AlphabetTag`).
LEGACY_TAG_NAME = "captcha_kit>AlphabetTag"


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """The alphabet a model reads and the kind of scores it gives.

    Args:
        characters: The alphabet's characters in class order.
        length: The label length (the longest label).
        min_length: The shortest label.
        kind: "positions" (batch, length, classes), "ctc" (batch, time steps,
            classes + 1; the last class is the blank) or "seq2seq" (batch,
            length + 1, classes + 3: characters, end, pad and start).
    """

    characters: str
    length: int
    min_length: int
    kind: str = "positions"

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"`kind` must be one of {OUTPUT_KINDS}. Received: kind={self.kind!r}")
        Alphabet(self.characters, self.length, self.min_length)  # Raises ValueError for bad ones.

    @classmethod
    def from_alphabet(cls, alphabet: Alphabet, kind: str = "positions") -> ModelMetadata:
        return cls(alphabet.characters, alphabet.length, alphabet.min_length, kind)

    @property
    def alphabet(self) -> Alphabet:
        return Alphabet(self.characters, self.length, self.min_length)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self)}, ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        """Parses `to_json`'s text.

        Raises:
            ValueError: Not JSON, a newer format, or missing or invalid fields.
        """
        try:
            fields = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{METADATA_MEMBER} is not valid JSON: {error}") from error
        if not isinstance(fields, dict) or fields.get("format") != FORMAT_VERSION:
            found = fields.get("format") if isinstance(fields, dict) else fields
            raise ValueError(f"{METADATA_MEMBER} has an unknown format. Received: {found!r}; expected {FORMAT_VERSION}")
        try:
            return cls(fields["characters"], fields["length"], fields["min_length"], fields["kind"])
        except KeyError as error:
            raise ValueError(f"{METADATA_MEMBER} lacks the field {error}. Received: {fields}") from error


def attach_metadata(model: keras.Model, metadata: ModelMetadata | None) -> keras.Model:
    """Records `metadata` on `model` (in memory) and returns the model; None leaves it unrecorded."""
    if metadata is not None:
        # object.__setattr__: Keras tracks the attributes of layers; this one is plain data, not state.
        object.__setattr__(model, METADATA_ATTRIBUTE, metadata)
    return model


def model_metadata(model: keras.Model) -> ModelMetadata | None:
    """What `model` records about itself, or None for models the kit did not build (plain Keras, foreign).

    Looks at the attribute `attach_metadata` sets, then at a legacy
    `AlphabetTag` layer (files saved before `captcha_kit.json` existed).
    """
    recorded = getattr(model, METADATA_ATTRIBUTE, None)
    if recorded is not None:
        return recorded
    for layer in reversed(model.layers):
        if keras.saving.get_registered_name(type(layer)) == LEGACY_TAG_NAME:
            config = layer.get_config()
            kind = config.get("kind") or ("ctc" if config.get("ctc") else "positions")
            length = int(config["length"])
            min_length = config.get("min_length")
            return ModelMetadata(config["characters"], length, length if min_length is None else int(min_length), kind)
    return None


def read_file_metadata(path: str | Path) -> ModelMetadata | None:
    """The `captcha_kit.json` member of a `.keras` file, or None when it has none (older and foreign files).

    Raises:
        ValueError: The member exists but is not valid metadata, or is larger than `METADATA_BYTES`
            (`core.archive.OversizedModelError`).
    """
    try:
        text = read_member(path, METADATA_MEMBER, METADATA_BYTES)
    except (KeyError, zipfile.BadZipFile):
        return None
    try:
        return ModelMetadata.from_json(text)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def write_file_metadata(path: str | Path, metadata: ModelMetadata) -> None:
    """Adds `captcha_kit.json` to the `.keras` archive at `path` (a file being written, not yet in place)."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        if METADATA_MEMBER in archive.namelist():
            raise ValueError(f"{path} already holds {METADATA_MEMBER}; write it once, into a fresh file.")
        archive.writestr(METADATA_MEMBER, metadata.to_json())
