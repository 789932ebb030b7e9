"""CTC: the loss, greedy decoding into the kit's codes, and the metrics on CTC scores."""

import numpy as np
import pytest

from core.alphabet import Alphabet
from models.decoding import decode_text, decode_with_confidence
from models.metrics import PositionAccuracy, SequenceAccuracy
from training.losses import ClassLoss

ALPHABET = Alphabet("0123456789", 4)
BLANK = 10


def path_scores(paths, confidence=0.9, classes=11):
    """Softmax-like scores whose greedy path at each step is `paths[image][step]`."""
    paths = np.asarray(paths)
    scores = np.full((*paths.shape, classes), (1 - confidence) / (classes - 1), "float32")
    for image, path in enumerate(paths):
        for step, code in enumerate(path):
            scores[image, step, code] = confidence
    return scores


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    b = BLANK
    scores = path_scores([[1, 1, b, 2, b, 3, 3, 4], [7, b, 7, b, 7, 7, b, 7], [5, 5, b, b, 6, b, b, b]])
    codes, confidences = decode_with_confidence(scores, ALPHABET, "ctc")
    # A short reading is padded with -1, which `decode` skips.
    np.testing.assert_array_equal(codes, [[1, 2, 3, 4], [7, 7, 7, 7], [5, 6, -1, -1]])
    assert decode_text(scores, ALPHABET, "ctc") == ["1234", "7777", "56"]
    np.testing.assert_allclose(confidences, 0.9**8, rtol=1e-4)


def test_ctc_loss_is_low_on_the_right_path_and_high_on_a_wrong_one():
    b = BLANK
    targets = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])  # the second label has two characters
    right = path_scores([[1, b, 2, b, 3, b, 4, b], [5, 5, b, 6, b, b, b, b]], confidence=0.99)
    wrong = path_scores([[4, b, 3, b, 2, b, 1, b], [6, b, 5, b, b, b, b, b]], confidence=0.99)
    loss = ClassLoss("ctc", num_characters=BLANK)
    low, high = float(loss(targets, right)), float(loss(targets, wrong))
    assert np.isfinite(low) and low < 0.5 < 10 < high


def test_metrics_on_ctc_scores_agree_with_decoding():
    b = BLANK
    targets = np.array([[1, 2, 3, 4], [7, 7, 7, 7], [5, 6, 0, 0]])
    scores = path_scores([[1, 1, b, 2, b, 3, 3, 4], [7, b, 7, b, 7, 7, b, 7], [5, 5, b, b, 6, b, b, b]])
    expected = (targets == decode_with_confidence(scores, ALPHABET, "ctc")[0]).mean(axis=0)
    for position in range(4):
        metric = PositionAccuracy(position, kind="ctc")
        metric.update_state(targets, scores)
        assert float(metric.result()) == pytest.approx(expected[position])
    metric = SequenceAccuracy(kind="ctc")
    metric.update_state(targets, scores)
    assert float(metric.result()) == pytest.approx(2 / 3)
