import numpy as np
import pytest

from data.alphabet import Alphabet, alphabet_from_options, resolve_characters


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


def test_presets_and_literal_characters():
    assert alphabet_from_options("digits", 4) == Alphabet()
    imagecaptcha = alphabet_from_options("imagecaptcha58", 4)
    assert imagecaptcha.num_classes == 58 and not set("loIO") & set(imagecaptcha.characters)
    assert alphabet_from_options("xyz", 2) == Alphabet("xyz", 2)
    with pytest.raises(ValueError, match="alphabet=''"):
        resolve_characters("")


def test_decode_skips_missing_characters():
    assert Alphabet("abc", 3).decode([2, -1, -1]) == "c"
    assert Alphabet().position_name == "digit" and Alphabet("ab").position_name == "character"
