"""One registry of model builders, so every command picks models by name.

    @register_model
    def shawon(alphabet, image_size, **options) -> keras.Model: ...

    model = get_model("shawon", alphabet=Alphabet("0123456789", 4))

Every builder takes the alphabet (characters and label length) and the raw
input image size, and returns a Functional model whose input is the raw
uint8-valued image and whose output holds one softmax over the alphabet per
character position: shape (batch, length, classes). A CTC model instead
gives one softmax over the alphabet and a final blank class per time step:
(batch, time steps, classes + 1). A seq2seq model gives one softmax per
decoder step over the alphabet and its end, pad and start tokens:
(batch, length + 1, classes + 3). `get_model` appends a built-in
`Identity` layer named `characters` (the output's name) and records the
alphabet and the kind of scores on the model (`models.metadata`);
`models.io.save_model` writes them into the `.keras` file. Only sequence
readers (CTC, seq2seq) take a variable-length alphabet (`min_length` <
`length`); `get_model` refuses it for models with one head per position.

Every registered model is built from Keras's own layers and operations, so
its saved file loads with plain `keras.models.load_model` where the kit is
not installed, except the seq2seq readers (`cnn_seq2seq`, `cnn_seq2seq_tiny`):
their greedy decoding loop is the kit's `AttentionDecoder` layer, and their
files need `import models` first (`CUSTOM_LAYER_MODELS`).
"""

from __future__ import annotations

import keras
from keras import layers

from core import multicolor
from core.alphabet import Alphabet
from models.metadata import OUTPUT_KINDS, ModelMetadata, attach_metadata

_BUILDERS = {}
DEFAULT_IMAGE_SIZE = multicolor.IMAGE_SIZE
# Models whose files hold a custom layer of the kit and so load only after `import models`.
CUSTOM_LAYER_MODELS = ("cnn_seq2seq", "cnn_seq2seq_tiny")


DEFAULT_LEARNING_RATE = 1e-3  # Adam's own default, what the Kaggle baseline uses.


def register_model(builder=None, *, learning_rate: float = DEFAULT_LEARNING_RATE, kind: str = "positions"):
    """Decorator that registers `builder` under its function name.

    Used bare (`@register_model`) or with the peak learning rate that
    `train.py` uses for the model when none is given and the kind of scores
    it gives (`@register_model(learning_rate=3e-3)`, `@register_model(kind="ctc")`).
    The kind (`models.metadata.OUTPUT_KINDS`) is recorded on every model
    built, and decoding, losses and metrics read it from there.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"`kind` must be one of {OUTPUT_KINDS}. Received: kind={kind!r}")

    def register(builder):
        name = builder.__name__
        if name in _BUILDERS:
            raise ValueError(f"A model named {name!r} is already registered.")
        builder.learning_rate, builder.kind = learning_rate, kind
        _BUILDERS[name] = builder
        return builder

    return register(builder) if builder is not None else register


def model_kind(name: str) -> str:
    """The kind of scores registered for model `name` ("positions", "ctc" or "seq2seq")."""
    return _check_name(name).kind


def recommended_learning_rate(name: str) -> float:
    """The peak learning rate registered for model `name`."""
    return _check_name(name).learning_rate


def _check_name(name: str):
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}. Registered models: {', '.join(list_models())}")
    return _BUILDERS[name]


def list_models(include_tiny: bool = True) -> list[str]:
    """Names of the registered models; tiny test variants end in `_tiny`."""
    return sorted(name for name in _BUILDERS if include_tiny or not name.endswith("_tiny"))


def get_model(name: str, alphabet: Alphabet | None = None, image_size=DEFAULT_IMAGE_SIZE, **options):
    """Builds the registered model `name`.

    Args:
        name: A name from `list_models()`.
        alphabet: Characters and label length (default: four digits).
        image_size: (height, width) of the raw input images.
        **options: Passed to the builder (e.g. `dropout=0.0`).

    Raises:
        ValueError: Unknown name, a builder that refuses the options, or a
            variable-length alphabet for a model with one head per position.
    """
    builder = _check_name(name)
    alphabet = alphabet or Alphabet()
    model = builder(alphabet=alphabet, image_size=tuple(image_size), **options)
    kind, classes = builder.kind, model.output_shape[-1]
    expected = alphabet.num_classes + {"positions": 0, "ctc": 1, "seq2seq": 3}[kind]
    if classes != expected:  # A builder that does not give what it registered.
        raise ValueError(
            f"Model {name!r} is registered as {kind!r} and should give {expected} scores per step for {alphabet} "
            f"(the characters, plus a blank for CTC, plus end, pad and start for seq2seq). Received: {classes}"
        )
    if kind == "positions" and alphabet.variable_length:
        # A head per position has no way to say "no character here"; CTC and seq2seq readers end the text.
        raise ValueError(
            f"Model {name!r} reads one character per position and needs labels of one length; labels of "
            f"{alphabet.describe_length()} characters need a sequence reader: use crnn_ctc (or cnn_seq2seq). "
            f"Received: {alphabet}"
        )
    scores = layers.Identity(name="characters")(model.outputs[0])
    tagged = keras.Model(model.inputs, scores, name=model.name)
    return attach_metadata(tagged, ModelMetadata.from_alphabet(alphabet, kind))
