from pathlib import Path

import pytest
from PIL import Image

from core.alphabet import Alphabet
from data.labels import find_labelled_images, label_from_filename, read_corrections, read_labels_file


def _touch_images(folder, names):
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 4)).save(folder / name)


def test_label_from_the_three_name_forms():
    assert label_from_filename("4821.png") == "4821"  # the assignment's snippet
    assert label_from_filename("4821_000017.png") == "4821"  # the kit's own names
    assert label_from_filename("dir/0042_anything_else.jpg") == "0042"


def test_folder_labels_from_names(tmp_path):
    _touch_images(tmp_path, ["1234.png", "0042_000001.png", "0042_000002.png"])
    found = find_labelled_images(tmp_path, Alphabet())
    assert found.labels == ["0042", "0042", "1234"]
    assert [path.name for path in found.paths] == ["0042_000001.png", "0042_000002.png", "1234.png"]


def test_labels_file(tmp_path):
    _touch_images(tmp_path / "images", ["0.jpg", "1.jpg", "extra.jpg"])
    labels = tmp_path / "labels.txt"
    labels.write_text("0.jpg 5751\n\n# comment\n1.jpg 6773\n")
    found = find_labelled_images(tmp_path / "images", Alphabet(), labels_file=labels, strict=False)
    assert dict(zip([p.name for p in found.paths], found.labels)) == {"0.jpg": "5751", "1.jpg": "6773"}
    assert found.skipped == [("extra.jpg", "not listed in labels.txt")]


def test_bad_names_raise_or_are_skipped(tmp_path):
    _touch_images(tmp_path, ["1234.png", "123.png", "12a4.png", "notes_x.png"])
    with pytest.raises(ValueError, match="123.png"):
        find_labelled_images(tmp_path, Alphabet())
    found = find_labelled_images(tmp_path, Alphabet(), strict=False)
    assert found.labels == ["1234"]
    assert sorted(name for name, _ in found.skipped) == ["123.png", "12a4.png", "notes_x.png"]


def test_labels_file_problems(tmp_path):
    _touch_images(tmp_path, ["0.jpg"])
    labels = tmp_path / "labels.txt"
    labels.write_text("0.jpg 5751\nmissing.jpg 1111\n")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        find_labelled_images(tmp_path, Alphabet(), labels_file=labels)
    labels.write_text("0.jpg\n")
    with pytest.raises(ValueError, match="labels.txt:1"):
        read_labels_file(labels)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_labelled_images(tmp_path / "nowhere", Alphabet())
    with pytest.raises(ValueError, match="No labelled images"):
        find_labelled_images(tmp_path, Alphabet())


SHIPPED_CORRECTIONS = sorted((Path(__file__).parent.parent / "data" / "corrections").glob("*.txt"))


@pytest.mark.parametrize("corrections", SHIPPED_CORRECTIONS, ids=lambda path: path.stem)
def test_the_shipped_corrections_parse_and_fit_the_labels_they_were_made_for(corrections):
    read = read_corrections(corrections)
    assert read and all(wrong != right for wrong, right in read.values())
    labels = Path(__file__).parent.parent.parent / "shared" / "datasets" / corrections.stem / "labels.txt"
    if not labels.is_file():
        pytest.skip(f"{labels} is not beside the repository")
    given = read_labels_file(labels)
    assert all(given[name] == wrong for name, (wrong, _) in read.items())  # Made for these labels.
