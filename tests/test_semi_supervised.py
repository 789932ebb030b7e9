"""The original's two commands on its folder layout (dataset/<site>/train, buchong, test, label/700.txt)."""

import shutil

import pytest

import semi_supervised
from data.labels import label_from_filename, list_image_files


@pytest.fixture
def site(captcha_folders, tmp_path):
    """dataset/toy/: 16 training images of which 10 are labelled in label/10.txt, 8 in buchong/, 12 test images."""
    train_dir, val_dir = captcha_folders
    root = tmp_path / "dataset" / "toy"
    for name in ("train", "buchong", "test", "label"):
        (root / name).mkdir(parents=True)
    files = list_image_files(train_dir)
    lines = []
    for index, path in enumerate(files[:16]):
        shutil.copy(path, root / "train" / f"{index}.png")
        if index < 10:
            lines.append(f"{index}.png {label_from_filename(path)}")
    for index, path in enumerate(files[16:]):
        shutil.copy(path, root / "buchong" / f"extra{index}.png")
    for path in list_image_files(val_dir):  # the original names test images <label>.<ext>
        shutil.copy(path, root / "test" / f"{label_from_filename(path)}.png")
    (root / "label" / "10.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "dataset"


def test_commands_map_to_train_py(site, tmp_path):
    common = ["--dataset", "toy", "--root", str(site), "--label", "10.txt", "--output-dir", str(tmp_path / "m")]
    args, passed_on = semi_supervised.build_parser().parse_known_args(["supervised", *common, "--time-limit", "9"])
    first = semi_supervised.train_arguments(args, passed_on)
    assert first[first.index("--alphabet") + 1] == "0123456789" and first[first.index("--length") + 1] == "4"
    assert first[first.index("--output") + 1] == str(tmp_path / "m" / "toy_10.keras") and first[-2:] == [
        "--time-limit",
        "9",
    ]
    args, passed_on = semi_supervised.build_parser().parse_known_args(["mean-teacher", *common])
    second = semi_supervised.train_arguments(args, passed_on)
    assert second[second.index("--initial-model") + 1] == str(tmp_path / "m" / "toy_10.keras")
    assert [second[i + 1] for i, value in enumerate(second) if value == "--unlabelled"] == [
        str(site / "toy" / "train"),
        str(site / "toy" / "buchong"),
    ]
    assert semi_supervised.alphabet_of(["ab-c", "x1"]) == "0123456789abcdefghijklmnopqrstuvwxyz-"


@pytest.mark.slow
def test_two_stages_on_the_original_layout(site, tmp_path, eager_functions):
    common = ["--dataset", "toy", "--root", str(site), "--label", "10.txt", "--output-dir", str(tmp_path / "m")]
    common += ["--epoch", "1", "--model", "cnn_seq2seq_tiny", "--quiet", "--val-fraction", "0.2"]
    first = semi_supervised.main(["supervised", *common])
    assert first["train_images"] == 8 and first["val_images"] == 2 and first["test_images"] == 12
    second = semi_supervised.main(["mean-teacher", *common, "--batch-size", "4", "--secondary-batch-size", "4"])
    # The 6 unlabelled images of train/ and the 8 of buchong/; no labelled image among them.
    assert second["unlabelled_images"] == 14 and second["saved_network"] in ("student", "teacher")
    assert (tmp_path / "m" / "MT_toy_10.keras").is_file()
