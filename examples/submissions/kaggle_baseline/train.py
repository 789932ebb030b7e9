"""The Kaggle post's baseline: 50x200 grayscale in [0, 1], three convolutions, four heads with dropout 0.5.

As in the post, a branch per digit (Dense 64, Dropout 0.5, softmax). On
multicolorcaptcha this network tends to stay at chance for many epochs (its
ReLU units die under the dropout), so it usually fails the 30% bar: a real
example of a submission that trains, saves and is graded, but does not pass.
"""

import os

import keras
import numpy as np
from keras import layers
from PIL import Image

MAX_IMAGES, EPOCHS = 4000, 3


def load(folder, limit=None):
    names = sorted(name for name in os.listdir(folder) if name.endswith(".png"))[:limit]
    images = np.stack(
        [np.asarray(Image.open(os.path.join(folder, name)).convert("L").resize((200, 50))) for name in names]
    )
    digits = np.array([[int(character) for character in name.split("_")[0]] for name in names])
    return images[..., np.newaxis] / 255.0, digits


images, digits = load("capts_train", MAX_IMAGES)
inputs = keras.Input((50, 200, 1))
x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
x = layers.MaxPooling2D(2)(x)
x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
x = layers.MaxPooling2D(2)(x)
x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
x = layers.BatchNormalization()(x)
x = layers.MaxPooling2D(2)(x)
x = layers.Flatten()(x)
heads = []
for position in range(4):
    y = layers.Dense(64, activation="relu")(x)
    y = layers.Dropout(0.5)(y)
    heads.append(layers.Dense(10, activation="softmax", name=f"digit{position}")(y))
model = keras.Model(inputs, heads)
model.compile("adam", ["sparse_categorical_crossentropy"] * 4, metrics=[["accuracy"]] * 4)
model.fit(images, [digits[:, position] for position in range(4)], batch_size=32, epochs=EPOCHS, verbose=2)
model.save("my_model.keras")
