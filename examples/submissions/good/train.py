"""A good submission: a small CNN reads each of the four digit cells, trained for a few minutes.

multicolorcaptcha draws the four digits in four 64x64 cells of a strip on
rows 40-103, so the model crops the strip, halves it, cuts it into cells and
reads every cell with one shared CNN. Only built-in Keras layers, so the
saved model loads anywhere.
"""

import os
import time

import keras
import numpy as np
from keras import layers
from PIL import Image

MAX_IMAGES, EPOCHS, BATCH_SIZE = 8000, 5, 64


def load(folder, limit=None):
    names = sorted(name for name in os.listdir(folder) if name.endswith(".png"))[:limit]
    images = np.stack([np.asarray(Image.open(os.path.join(folder, name)).convert("RGB")) for name in names])
    digits = np.array([[int(character) for character in name.split("_")[0]] for name in names])
    return images, digits


def build_model():
    inputs = keras.Input((144, 256, 3))
    x = layers.Cropping2D(((40, 40), (0, 0)))(inputs)
    x = layers.Rescaling(1 / 255)(x)
    x = layers.AveragePooling2D(2)(x)  # 32 x 128
    # The colours are random: subtract the background colour (the strip's top-left corner) and keep
    # the size of the difference, so the digits stand out whatever their colour.
    background = layers.GlobalAveragePooling2D(keepdims=True)(layers.Cropping2D(((0, 28), (0, 124)))(x))
    difference = layers.Subtract()([x, background])
    x = layers.Add()([layers.ReLU()(difference), layers.ReLU()(layers.Rescaling(-1.0)(difference))])
    x = layers.Reshape((32, 4, 32, 3))(x)
    x = layers.Permute((2, 1, 3, 4))(x)  # four cells of 32 x 32
    cell = keras.Input((32, 32, 3))
    y = cell
    for filters in (32, 64, 128):
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.MaxPooling2D(2)(y)
    y = layers.GlobalMaxPooling2D()(y)
    x = layers.TimeDistributed(keras.Model(cell, y))(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax")(x)  # (batch, 4, 10)
    return keras.Model(inputs, outputs)


started = time.time()
train_images, train_digits = load("capts_train", MAX_IMAGES)
val_images, val_digits = load("capts_val", 1000)
print(f"loaded {len(train_images)} training images in {time.time() - started:.0f}s")
model = build_model()
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(train_images, train_digits, batch_size=BATCH_SIZE, epochs=EPOCHS, verbose=2)
predicted = model.predict(val_images, verbose=0).argmax(-1)
for position in range(4):
    print(f"digit {position}: {np.mean(predicted[:, position] == val_digits[:, position]):.3f}")
model.save("my_model.keras")
