"""CAPTCHA-reading networks: the registry of models by name, their layers, decoding and metrics.

Importing the package registers every model and custom layer, so that
`get_model(name)` works and saved `.keras` files load with no extra arguments.
"""

from core.quiet import load_keras

load_keras()  # Before any model module imports Keras: no TensorFlow start-up lines on the console.


from models import (  # noqa: E402, F401  (importing registers the models)
    applications,
    cellnet,
    crnn,
    efficientnet,
    fourblock,
    resnet,
    seq2seq,
    shawon,
    vgg,
)
from models.registry import (  # noqa: E402, F401
    get_model,
    list_models,
    model_kind,
    recommended_learning_rate,
    register_model,
)
