"""A submission whose model holds a Lambda layer: its Python code would run on loading, so it is refused.

Graded unsafe_model: Keras safe mode (and the kit's scan before it) never runs it.
"""

import keras
from keras import layers

inputs = keras.Input((144, 256, 3))
x = layers.Lambda(lambda images: images / 255.0)(inputs)
x = layers.Conv2D(8, 3, strides=4, activation="relu")(x)
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Softmax()(layers.Reshape((4, 10))(layers.Dense(40)(x)))
keras.Model(inputs, outputs).save("my_model.keras")
