import numpy as np
import pytest

from data.alphabet import Alphabet


def test_encode_decode_round_trip():
    alphabet = Alphabet("0123456789", 4)
    codes = alphabet.encode("0427")
    assert codes.tolist() == [0, 4, 2, 7]
    assert alphabet.decode(codes) == "0427"


def test_any_alphabet_and_length():
    alphabet = Alphabet("abcXYZ", 3)
    assert alphabet.num_classes == 6
    assert alphabet.decode(alphabet.encode("cXa")) == "cXa"
    np.testing.assert_array_equal(alphabet.encode_many(["abc", "ZZZ"]), [[0, 1, 2], [5, 5, 5]])


@pytest.mark.parametrize("label, problem", [("123", "has 3 characters"), ("12a4", "outside the alphabet")])
def test_bad_labels_are_named(label, problem):
    with pytest.raises(ValueError, match=problem):
        Alphabet().encode(label)


def test_bad_alphabet():
    with pytest.raises(ValueError, match="repeated"):
        Alphabet("0012")
    with pytest.raises(ValueError, match="length"):
        Alphabet("01", 0)
