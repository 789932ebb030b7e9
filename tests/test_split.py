import numpy as np
import pytest

from data.dataset import LabelledImages
from data.split import parse_fractions, read_split, select, split_filenames, write_split

NAMES = [f"{index}.jpg" for index in range(50)]


def test_parse_fractions():
    assert parse_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_fractions("0.9,0.1") == (0.9, 0.1, 0.0)
    for bad in ["0.8,0.1", "1,0,0", "a,b,c", "0.5,0.6,-0.1", "0.2,0.2,0.2,0.4"]:
        with pytest.raises(ValueError, match=f"Received: split='{bad}'"):
            parse_fractions(bad)


def test_split_is_fixed_disjoint_and_complete(tmp_path):
    split = split_filenames(NAMES, (0.8, 0.1, 0.1), seed=0)
    assert [len(split[subset]) for subset in ("train", "val", "test")] == [40, 5, 5]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(NAMES)
    assert split == split_filenames(list(reversed(NAMES)), (0.8, 0.1, 0.1), seed=0)  # order does not matter
    assert split != split_filenames(NAMES, (0.8, 0.1, 0.1), seed=1)
    path = write_split(tmp_path / "model.split.csv", split)
    assert read_split(path) == split
    with pytest.raises(ValueError, match="empty training or validation"):
        split_filenames(NAMES[:3], (0.9, 0.1, 0.0))


def test_select_keeps_the_data_order():
    data = LabelledImages(
        images=np.arange(4).reshape(4, 1, 1, 1).astype("uint8"),
        labels=["a", "b", "c", "d"],
        codes=np.arange(4).reshape(4, 1),
        filenames=["0.png", "1.png", "2.png", "3.png"],
    )
    part = select(data, ["3.png", "1.png"])
    assert part.filenames == ["1.png", "3.png"] and part.labels == ["b", "d"]
    assert part.images[:, 0, 0, 0].tolist() == [1, 3] and part.codes[:, 0].tolist() == [1, 3]
    with pytest.raises(ValueError, match="first: 9.png"):
        select(data, ["9.png"])
