import numpy as np
import pytest

from data.alphabet import Alphabet
from models.decoding import decode_text, position_scores
from models.metrics import PositionAccuracy, SequenceAccuracy, position_accuracies, sequence_accuracy

TRUE = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [5, 5, 5, 5], [0, 0, 0, 0]])
PREDICTED = np.array([[1, 2, 3, 4], [1, 9, 3, 4], [5, 5, 0, 5], [0, 0, 0, 1]])


def test_numpy_accuracies():
    np.testing.assert_allclose(position_accuracies(TRUE, PREDICTED), [1.0, 0.75, 0.75, 0.75])
    assert sequence_accuracy(TRUE, PREDICTED) == 0.25
    with pytest.raises(ValueError, match="same shape"):
        position_accuracies(TRUE, PREDICTED[:, :3])


def test_keras_metrics_agree_with_numpy():
    scores = np.eye(10, dtype="float32")[PREDICTED]
    for position in range(4):
        metric = PositionAccuracy(position)
        metric.update_state(TRUE, scores)
        assert float(metric.result()) == pytest.approx(position_accuracies(TRUE, PREDICTED)[position])
    metric = SequenceAccuracy()
    metric.update_state(np.eye(10)[TRUE], scores)  # one-hot targets work too
    assert float(metric.result()) == pytest.approx(0.25)


def test_decoding_accepts_the_common_layouts():
    alphabet = Alphabet()
    scores = np.eye(10, dtype="float32")[PREDICTED]  # (4 images, 4 positions, 10 classes)
    expected = ["1234", "1934", "5505", "0001"]
    assert decode_text(scores, alphabet) == expected
    assert decode_text([scores[:, position] for position in range(4)], alphabet) == expected
    assert decode_text(scores.reshape(4, 40), alphabet) == expected
    with pytest.raises(ValueError, match=r"Received shape: \(4, 30\)"):
        position_scores(np.zeros((4, 30)), alphabet)
    with pytest.raises(ValueError, match="Expected 4 outputs"):
        position_scores([scores[:, 0]] * 3, alphabet)


def test_confusion_counts_ignore_unread_positions():
    from models.metrics import confusion_counts

    counts = confusion_counts([[0, 1], [1, 1]], [[0, -1], [1, 0]], classes=2)
    np.testing.assert_array_equal(counts, [[1, 0], [1, 1]])  # the unread position is in no cell
