"""CAPTCHA-reading networks, their layers, metrics and training helpers.

Importing the package registers every model and custom layer, so that
`get_model(name)` works and saved `.keras` files load with no extra arguments.
"""

from models import (  # noqa: F401  (importing registers the models)
    applications,
    cellnet,
    crnn,
    efficientnet,
    fourblock,
    losses,
    resnet,
    seq2seq,
    shawon,
    vgg,
)
from models.registry import (  # noqa: F401
    DEFAULT_MODEL,
    get_model,
    list_models,
    recommended_learning_rate,
    register_model,
)
