"""A submission whose model reads three digits instead of four: graded wrong_output_shape."""

import keras
from keras import layers

inputs = keras.Input((144, 256, 3))
x = layers.Rescaling(1 / 255)(inputs)
x = layers.Conv2D(8, 3, strides=4, activation="relu")(x)
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Reshape((3, 10))(layers.Dense(30)(x))
outputs = layers.Softmax()(outputs)
keras.Model(inputs, outputs).save("my_model.keras")
