import numpy as np
import pytest

from core.alphabet import Alphabet
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
    assert decode_text(scores, alphabet, "positions") == expected
    assert decode_text([scores[:, position] for position in range(4)], alphabet, "positions") == expected
    assert decode_text(scores.reshape(4, 40), alphabet, "positions") == expected
    # The kind is declared, never guessed: per-position scores are not read as CTC ones, and no kind is refused.
    assert decode_text(scores, alphabet, "ctc") != expected
    with pytest.raises(ValueError, match="`kind` must be one of"):
        decode_text(scores, alphabet, "guess")
    with pytest.raises(ValueError, match=r"Received shape: \(4, 30\)"):
        position_scores(np.zeros((4, 30)), alphabet)
    with pytest.raises(ValueError, match="Expected 4 outputs"):
        position_scores([scores[:, 0]] * 3, alphabet)


def test_confusion_counts_ignore_unread_positions():
    from models.metrics import confusion_counts

    counts = confusion_counts([[0, 1], [1, 1]], [[0, -1], [1, 0]], classes=2)
    np.testing.assert_array_equal(counts, [[1, 0], [1, 1]])  # the unread position is in no cell


# Labels of 2 or 3 characters, padded with -1; a reader's -1 is a position it left unread.
PADDED_TRUE = np.array([[1, 2, -1], [1, 2, -1], [1, 2, 3], [1, 2, 3], [4, 5, -1]])
PADDED_PREDICTED = np.array([[1, 2, -1], [1, 2, 5], [1, 2, -1], [1, 2, 3], [4, 6, -1]])


def test_padded_position_is_right_only_when_nothing_was_read_there():
    # Position 2: right for image 0 (nothing to read, nothing read) and 3; wrong for 1 (an extra
    # character), 2 (a missing one); image 4 is wrong at position 1 but right at its padding.
    np.testing.assert_allclose(position_accuracies(PADDED_TRUE, PADDED_PREDICTED), [1.0, 0.8, 0.6])
    alphabet = Alphabet("0123456789", 3, min_length=2)
    texts_equal = [alphabet.decode(true) == alphabet.decode(read) for true, read in zip(PADDED_TRUE, PADDED_PREDICTED)]
    assert texts_equal == [True, False, False, True, False]
    assert sequence_accuracy(PADDED_TRUE, PADDED_PREDICTED) == pytest.approx(np.mean(texts_equal))


def test_keras_metrics_score_padded_targets_like_numpy():
    from models.seq2seq import decoder_targets

    # seq2seq scores whose greedy tokens are the reading followed by the end token, then pads.
    alphabet = Alphabet("0123456789", 3, min_length=2)
    tokens = np.asarray(decoder_targets(PADDED_PREDICTED, alphabet.num_classes))
    scores = np.eye(alphabet.num_classes + 3, dtype="float32")[tokens]
    for position in range(3):
        metric = PositionAccuracy(position, kind="seq2seq")
        metric.update_state(PADDED_TRUE, scores)
        expected = position_accuracies(PADDED_TRUE, PADDED_PREDICTED)[position]
        assert float(metric.result()) == pytest.approx(expected)
    metric = SequenceAccuracy(kind="seq2seq")
    metric.update_state(PADDED_TRUE, scores)
    assert float(metric.result()) == pytest.approx(0.4)


def test_confusion_counts_ignore_padding_of_the_truth():
    from models.metrics import confusion_counts

    counts = confusion_counts([[0, -1], [1, -1]], [[0, 1], [1, -1]], classes=2)
    np.testing.assert_array_equal(counts, [[1, 0], [0, 1]])  # the extra 1 read after label "0" is in no cell
