"""CNN + GRU encoder + attention GRU decoder: the semi-supervised CAPTCHA solver's reader, in Keras.

A port of `CNNSeq2Seq` from "A Semi-supervised Deep Learning-Based Solver for
Breaking Text-Based CAPTCHAs" (github.com/2594306528/semi-supervised-for-captcha):

- the raw image is resized to 64x128 and scaled to [-1, 1] inside the model
  (144x256 multicolorcaptcha images lose their black margins first, as with
  every kit model);
- five residual blocks (32, 64, 128, 256, 256 channels; conv3x3-BN-ReLU-conv3x3-BN
  plus a 1x1 conv + BN shortcut when the channels change, no ReLU after the sum,
  as in the original), each followed by max-pooling (2,2), (2,2), (2,1), (2,1),
  (4,1) and dropout 0.1, turn 64x128 into 32 columns of 256 features;
- a 2-layer GRU encoder (128 units, dropout 0.5 between the layers);
- `AttentionDecoder`: a 2-layer GRU started from the encoder's final states,
  whose input at each step is the one-hot previous token concatenated with the
  previous attentional state; Luong dot attention over the encoder steps;
  tanh(W [output; context]) then a linear layer to the vocabulary.

Vocabulary, in class order: the alphabet's characters (so class i is
`alphabet.characters[i]`, as for every kit model), then the end token `$`, the
pad ` ` and the start token `^`. The decoder runs `length + 1` steps: the
characters, then `$`. A label shorter than `length` (a variable-length
alphabet) ends earlier: its characters, `$`, then pad tokens to the last step
(`decoder_targets`); greedy decoding stops at the first `$` either way.

Output: (batch, length + 1, classes + 3) softmax scores, read by
`models.decoding` (greedy, stopping at `$`).

Training and inference share every layer but differ in what the decoder is
fed. The registered model (the one saved and used by everybody) decodes
greedily: each step is fed the argmax of the step before. Supervised training
uses teacher forcing: `teacher_forcing_model(model)` returns a second
Functional model over the *same* layers that takes the target codes as a
second input and feeds them to the decoder. So the saved `.keras` file takes
only an image, and teacher forcing needs no switch inside the model.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from core.multicolor import text_margins
from models.blocks import image_input
from models.layers import KIT_NEEDED, foreground_map
from models.registry import register_model

END, PAD, START = "$", " ", "^"
SPECIAL_TOKENS = 3  # end, pad, start: appended after the alphabet's characters


def vocabulary_size(num_characters: int) -> int:
    """Classes of the decoder's softmax: the characters, end, pad and start."""
    return num_characters + SPECIAL_TOKENS


def end_token(num_characters: int) -> int:
    return num_characters


def pad_token(num_characters: int) -> int:
    return num_characters + 1


def start_token(num_characters: int) -> int:
    return num_characters + 2


def decoder_targets(codes, num_characters: int):
    """The tokens the decoder must give for the kit's class codes: the characters, the end token, then pads.

    Args:
        codes: (batch, length) int class codes, padded with -1 after labels
            shorter than `length` (`core.alphabet.Alphabet.encode`).
        num_characters: Classes of the alphabet.

    Returns:
        (batch, length + 1) int32 tokens: a label of k characters gives its k
        codes, the end token `$`, and `length - k` pad tokens.
    """
    codes = ops.cast(codes, "int32")
    codes = ops.concatenate([codes, ops.full_like(codes[:, :1], -1)], axis=1)
    missing = ops.cast(codes < 0, "int32")
    ends = ops.logical_and(missing > 0, ops.cumsum(missing, axis=1) == 1)
    pads = ops.where(missing > 0, pad_token(num_characters), codes)
    return ops.where(ends, end_token(num_characters), pads)


def residual_block(x, filters: int, name: str, momentum: float):
    """conv3x3-BN-ReLU-conv3x3-BN plus the (projected) input; the original has no ReLU after the sum."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, name=f"{name}_shortcut_conv")(x)
        shortcut = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=f"{name}_shortcut_bn")(shortcut)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=f"{name}_bn2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


@keras.saving.register_keras_serializable(package="captcha_kit")
class AttentionDecoder(layers.Layer):
    """GRU decoder with Luong dot attention, run for a fixed number of steps.

    Called on `[encoder_sequence, state_1, ..., state_n]` it decodes greedily,
    feeding each step the argmax of the step before (inference, and the
    free-running decoding the Mean Teacher stage trains with). Called on
    `[encoder_sequence, state_1, ..., state_n, target_codes]` it uses teacher
    forcing: step t is fed the target token of step t - 1 (`decoder_targets`:
    the -1 padding of a short label becomes the end token, then pads).

    Args:
        vocabulary_size: Output classes: characters, end, pad, start.
        steps: Decoding steps (label length + 1 for the end token).
        start_token: Class fed to the first step.
        units: GRU units, also the size of the attentional state.
        num_layers: Stacked GRU layers; must match the encoder's.
        dropout: Dropout between the stacked GRU layers (PyTorch's GRU `dropout`).
        needs: Ignored: the advice its configuration carries for loaders without the kit.

    The kit's one custom layer in a registered model (the greedy loop feeds
    each step's argmax to the next; Keras's layers have no such loop), so a
    seq2seq file loads only after `import models`.

    Input: encoder_sequence (batch, time, units) and `num_layers` states (batch, units).
    Output: (batch, steps, vocabulary_size) softmax scores.
    """

    def __init__(
        self,
        vocabulary_size: int,
        steps: int,
        start_token: int,
        units: int = 128,
        num_layers: int = 2,
        dropout: float = 0.5,
        needs: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)  # `needs` is only advice for loaders without the kit (`KIT_NEEDED`).
        self.vocabulary_size, self.steps, self.start_token = int(vocabulary_size), int(steps), int(start_token)
        self.units, self.num_layers, self.dropout = int(units), int(num_layers), float(dropout)
        self.cells = [layers.GRUCell(self.units, name=f"gru_cell_{index}") for index in range(self.num_layers)]
        self.between_layers = layers.Dropout(self.dropout)
        self.combine = layers.Dense(self.units, activation="tanh", name="attentional_state")
        self.classifier = layers.Dense(self.vocabulary_size, name="token_logits")

    def build(self, input_shapes):
        input_size = self.vocabulary_size + self.units
        for cell in self.cells:
            cell.build((None, input_size))
            input_size = self.units
        self.combine.build((None, 2 * self.units))
        self.classifier.build((None, self.units))

    def call(self, inputs, training=None):
        encoder_sequence, states = inputs[0], list(inputs[1 : 1 + self.num_layers])
        target_codes = inputs[1 + self.num_layers] if len(inputs) > 1 + self.num_layers else None
        if target_codes is not None:
            target_codes = decoder_targets(target_codes, self.vocabulary_size - SPECIAL_TOKENS)
        batch = ops.shape(encoder_sequence)[0]
        token = ops.full((batch,), self.start_token, dtype="int32")
        attentional = ops.zeros((batch, self.units), dtype=encoder_sequence.dtype)
        logits = []
        for step in range(self.steps):
            x = ops.concatenate([ops.one_hot(token, self.vocabulary_size, dtype=attentional.dtype), attentional], -1)
            for index, cell in enumerate(self.cells):
                if index:
                    x = self.between_layers(x, training=training)
                x, new_state = cell(x, states[index], training=training)
                states[index] = new_state[0] if isinstance(new_state, (list, tuple)) else new_state
            energy = ops.einsum("btu,bu->bt", encoder_sequence, x)
            context = ops.einsum("bt,btu->bu", ops.softmax(energy, axis=-1), encoder_sequence)
            attentional = self.combine(ops.concatenate([x, context], -1))
            step_logits = self.classifier(attentional)
            logits.append(step_logits)
            if target_codes is not None and step < self.steps - 1:
                token = ops.cast(target_codes[:, step], "int32")
            else:
                token = ops.cast(ops.argmax(step_logits, axis=-1), "int32")
        return ops.softmax(ops.stack(logits, axis=1), axis=-1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.steps, self.vocabulary_size)

    def get_config(self):
        return {
            "needs": KIT_NEEDED,
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "steps": self.steps,
            "start_token": self.start_token,
            "units": self.units,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        }


def build_cnn_seq2seq(
    alphabet,
    image_size,
    crop=None,
    input_size=(64, 128),
    channels=(32, 64, 128, 256, 256),
    pools=((2, 2), (2, 2), (2, 1), (2, 1), (4, 1)),
    cnn_dropout=0.1,
    units=128,
    num_layers=2,
    recurrent_dropout=0.5,
    batch_norm_momentum=0.9,
    foreground=False,
    name="cnn_seq2seq",
):
    """Builds the CNN + GRU encoder + attention GRU decoder reader.

    Args:
        alphabet: Characters and label length.
        image_size: (height, width) of the raw images the model is given.
        crop: Rows (top, bottom) cut off before resizing (default: the margins
            of 144x256 multicolorcaptcha images, else none, as for every kit model).
        input_size: (height, width) the images are resized to inside the model.
        channels: Channels of the residual blocks.
        pools: Max-pool size (height, width) after each block.
        cnn_dropout: Dropout after each block.
        units: GRU units of encoder and decoder.
        num_layers: GRU layers of encoder and decoder.
        recurrent_dropout: Dropout between stacked GRU layers.
        batch_norm_momentum: 0.9 is PyTorch's BatchNorm default (its momentum 0.1).
        foreground: Read the kit's colour-free `foreground_map` (one channel)
            instead of RGB: not in the original; multicolorcaptcha's random
            colours otherwise hide the digits from a model trained on few images.
    """
    if len(channels) != len(pools):
        raise ValueError(f"`channels` and `pools` differ in length. Received: {channels} and {pools}")
    inputs = image_input(image_size)
    crop = text_margins(image_size) if crop is None else tuple(crop)
    x = layers.Cropping2D((crop, (0, 0)), name="crop_strip")(inputs) if any(crop) else inputs
    x = layers.Resizing(*input_size, interpolation="bilinear", name="resize")(x)
    if foreground:
        x = layers.Rescaling(1.0 / 255, name="unit_scale")(x)
        x = foreground_map(x, name="foreground")
        x = layers.Rescaling(2.0, offset=-1.0, name="scale")(x)
    else:
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(x)
    for index, (filters, pool) in enumerate(zip(channels, pools), 1):
        x = residual_block(x, filters, name=f"block{index}", momentum=batch_norm_momentum)
        x = layers.MaxPooling2D(pool, name=f"block{index}_pool")(x)
        x = layers.Dropout(cnn_dropout, name=f"block{index}_dropout")(x)
    height, width, features = x.shape[1:]
    x = layers.Permute((2, 1, 3), name="columns_first")(x)
    x = layers.Reshape((width, height * features), name="columns")(x)
    states = []
    for index in range(num_layers):
        if index:
            x = layers.Dropout(recurrent_dropout, name=f"encoder_dropout{index}")(x)
        x, state = layers.GRU(units, return_sequences=True, return_state=True, name=f"encoder_gru{index + 1}")(x)
        states.append(state)
    encoder = keras.Model(inputs, [x, *states], name="encoder")

    image = image_input(image_size)
    decoder = AttentionDecoder(
        vocabulary_size(alphabet.num_classes),
        steps=alphabet.length + 1,
        start_token=start_token(alphabet.num_classes),
        units=units,
        num_layers=num_layers,
        dropout=recurrent_dropout,
        name="decoder",
    )
    outputs = decoder(encoder(image))
    return keras.Model(image, outputs, name=name)


def teacher_forcing_model(model: keras.Model) -> keras.Model:
    """The training-mode twin of a seq2seq model: inputs (image, target codes), the same layers and weights.

    Its decoder is fed the target codes (teacher forcing) instead of its own
    argmax. Training it trains `model`; only `model` is saved.

    Raises:
        ValueError: `model` has no `encoder` sub-model and `decoder` layer.
    """
    try:
        encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    except ValueError as error:
        raise ValueError(f"Model {model.name!r} is not a seq2seq model (no encoder and decoder layers).") from error
    if not isinstance(decoder, AttentionDecoder):
        raise ValueError(f"Model {model.name!r} has a `decoder` layer that is not an AttentionDecoder.")
    image = keras.Input(shape=model.input_shape[1:], name="image")
    codes = keras.Input(shape=(decoder.steps - 1,), dtype="int32", name="target_codes")
    return keras.Model([image, codes], decoder([*encoder(image), codes]), name=f"{model.name}_teacher_forcing")


def is_seq2seq_model(model: keras.Model) -> bool:
    """True when `model` has an `AttentionDecoder` named `decoder`."""
    return any(isinstance(layer, AttentionDecoder) for layer in model.layers)


@register_model(learning_rate=0.05, kind="seq2seq")
def cnn_seq2seq(alphabet, image_size, **options):
    """The semi-supervised solver's CNN + GRU seq2seq reader with attention (greedy decoding)."""
    return build_cnn_seq2seq(alphabet, image_size, **options)


@register_model(learning_rate=0.05, kind="seq2seq")
def cnn_seq2seq_tiny(alphabet, image_size, **options):
    """A small cnn_seq2seq for tests."""
    options.setdefault("channels", (4, 8, 8, 8, 8))
    options.setdefault("units", 8)
    return build_cnn_seq2seq(alphabet, image_size, name="cnn_seq2seq_tiny", **options)
