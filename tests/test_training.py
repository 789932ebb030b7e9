import numpy as np
import pytest

import models
from core.alphabet import Alphabet
from models.training import TimeLimit, compile_model


def test_time_limit_stops_after_the_first_batch_past_it():
    alphabet = Alphabet("ab", 2)
    model = models.get_model("fourblock_tiny", alphabet=alphabet, image_size=(16, 32))
    compile_model(model, alphabet.length, learning_rate=1e-3, total_steps=10)
    images = np.zeros((16, 16, 32, 3), "uint8")
    codes = np.zeros((16, 2), "int32")
    limit = TimeLimit(1e-9)
    history = model.fit(
        images, codes, batch_size=4, epochs=3, validation_data=(images, codes), callbacks=[limit], verbose=0
    )
    assert len(history.history["loss"]) == 1 and "val_whole_accuracy" in history.history
    assert limit.stopped_mid_epoch and limit.batches_in_epoch == 1
    with pytest.raises(ValueError, match="seconds=0"):
        TimeLimit(0)
