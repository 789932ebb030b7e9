import argparse

import numpy as np
import pytest

from core.alphabet import (
    Alphabet,
    add_alphabet_arguments,
    alphabet_from_arguments,
    alphabet_from_options,
    resolve_characters,
)


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


def test_fallback_alphabet_options():
    parser = argparse.ArgumentParser()
    add_alphabet_arguments(parser, purpose="for models that record no alphabet: ")
    assert (
        alphabet_from_arguments(optional=True, args=parser.parse_args([])) is None
    )  # The model's own alphabet decides.
    assert alphabet_from_arguments(optional=True, args=parser.parse_args(["--length", "5"])) == Alphabet(
        "0123456789", 5
    )
    assert alphabet_from_arguments(
        optional=True, args=parser.parse_args(["--alphabet", "uppercase", "--length", "6", "--min-length", "4"])
    ) == (Alphabet("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 6, 4))


def test_decode_skips_missing_characters():
    assert Alphabet("abc", 3).decode([2, -1, -1]) == "c"
    assert Alphabet().position_name == "digit" and Alphabet("ab").position_name == "character"


def test_variable_length_labels_are_padded_with_minus_one():
    alphabet = Alphabet("0123456789", 6, min_length=4)
    assert alphabet.variable_length and not Alphabet("0123456789", 6).variable_length
    assert alphabet.encode("0427").tolist() == [0, 4, 2, 7, -1, -1]
    assert alphabet.encode("042719").tolist() == [0, 4, 2, 7, 1, 9]
    codes = alphabet.encode_many(["0427", "04271", "042719"])
    assert codes.shape == (3, 6) and (codes < 0).sum(axis=1).tolist() == [2, 1, 0]
    assert [alphabet.decode(row) for row in codes] == ["0427", "04271", "042719"]


@pytest.mark.parametrize("label, problem", [("042", "has 3 characters; expected 4 to 6"), ("0427190", "has 7")])
def test_labels_outside_the_length_range_are_named(label, problem):
    alphabet = Alphabet("0123456789", 6, min_length=4)
    assert problem in alphabet.check(label)
    with pytest.raises(ValueError, match=f"Label '{label}' {problem}"):
        alphabet.encode(label)


@pytest.mark.parametrize("min_length", [0, 7, 4.0])
def test_bad_minimum_length(min_length):
    with pytest.raises(ValueError, match=f"Received: min_length={min_length!r}"):
        Alphabet("0123456789", 6, min_length=min_length)


def test_minimum_length_in_config_equality_repr_and_options():
    variable = alphabet_from_options("digits", 6, 4)
    assert variable == Alphabet("0123456789", 6, 4) and variable != Alphabet("0123456789", 6)
    assert variable.get_config() == {"characters": "0123456789", "length": 6, "min_length": 4}
    assert Alphabet(**variable.get_config()) == variable
    assert "min_length=4" in repr(variable) and "min_length" not in repr(Alphabet())
    assert alphabet_from_options("digits", 4, None) == Alphabet() == Alphabet("0123456789", 4, 4)
    assert variable.describe_length() == "4 to 6" and Alphabet().describe_length() == "4"
