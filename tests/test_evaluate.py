"""evaluate.py on a hand-built model whose accuracies are known in advance, and its errors."""

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import evaluate
from core.alphabet import Alphabet
from data.dataset import load_labelled_folder
from models.io import save_model


def test_known_accuracies_and_verdict(captcha_folders, constant_reader, tmp_path, capsys):
    _, val_dir = captcha_folders
    labels = load_labelled_folder(val_dir, Alphabet()).labels
    text = "".join(max("0123456789", key=[label[p] for label in labels].count) for p in range(4))
    expected = [np.mean([label[p] == text[p] for label in labels]) for p in range(4)]
    path = save_model(constant_reader(text), tmp_path / "constant.keras")

    result = evaluate.main([str(path), "--data", str(val_dir), "--threshold", "0.0"])
    np.testing.assert_allclose(result["position_accuracies"], expected, atol=1e-6)
    assert result["whole_accuracy"] == pytest.approx(np.mean([label == text for label in labels]), abs=1e-6)
    assert result["passed"] is True
    assert "PASS" in capsys.readouterr().out

    # The course's data: the course's 30% bar applies without being asked for.
    result = evaluate.main([str(path), "--data", str(val_dir)])
    assert result["threshold"] == 0.3 and result["passed"] is bool(min(expected) >= 0.3)
    assert ("PASS" if result["passed"] else "FAIL") in capsys.readouterr().out

    result = evaluate.main([str(path), "--data", str(val_dir), "--threshold", "0.99", "--json"])
    assert result["passed"] is False
    output = capsys.readouterr().out
    printed = json.loads(output)
    assert printed["passed"] is False and printed["position_accuracies"] == result["position_accuracies"]
    # No float noise: every number has at most 6 decimals (1/12 is written 0.083333, not 0.08333333333333333).
    assert all(len(number.split(".")[1]) <= 6 for number in re.findall(r"\d+\.\d+", output))


def test_unusable_models_exit_2(captcha_folders, constant_reader, tmp_path, capsys):
    _, val_dir = captcha_folders
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"\x00" * 100)
    wrong = save_model(constant_reader("000"), tmp_path / "wrong.keras")
    for path, message in [
        (junk, "not a Keras model"),
        (wrong, r"Received shape: \(12, 3, 10\)"),
        (tmp_path / "absent.keras", "not found"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main([str(path), "--data", str(val_dir)])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err)


def test_figures(captcha_folders, constant_reader, tmp_path, capsys):
    _, val_dir = captcha_folders
    path = save_model(constant_reader("0000"), tmp_path / "zeros.keras")
    figures = tmp_path / "figures"
    result = evaluate.main([str(path), "--data", str(val_dir), "--figures", str(figures)])
    assert result["whole_accuracy"] < 1  # so there are misread images to show
    assert sorted(p.name for p in figures.iterdir()) == ["confusion.png", "errors.png"]
    assert f"Figures written: {figures / 'confusion.png'}, {figures / 'errors.png'}" in (capsys.readouterr().out)
    # With --json the line goes to stderr: standard output stays one JSON object.
    evaluate.main([str(path), "--data", str(val_dir), "--figures", str(figures), "--json"])
    printed = capsys.readouterr()
    assert json.loads(printed.out)["figures"] == result["figures"] and "Figures written" in printed.err
    # Under an existing file: one error line, before anything is read.
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    for folder in (blocker, blocker / "figures"):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main([str(path), "--data", str(val_dir), "--figures", str(folder)])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error == f"error: --figures {folder}: {blocker} is a file, not a folder.\n"


def test_missing_model_and_data_say_how_to_make_them(constant_reader, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # A fresh clone: no my_model.keras, no capts_val/.
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1
    assert "my_model.keras" in error and "python train.py" in error and "reference/reference.keras" in error
    save_model(constant_reader("0000"), tmp_path / "my_model.keras")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "capts_val" in error and "python -m data.generate" in error


@pytest.mark.parametrize("damage", ["not json", "not a mapping", "bad bytes"])
def test_corrupt_model_config_is_one_error_line(captcha_folders, constant_reader, tmp_path, capsys, damage):
    _, val_dir = captcha_folders
    good = save_model(constant_reader("0000"), tmp_path / "good.keras")
    broken = tmp_path / "broken.keras"
    if damage == "bad bytes":  # The compressed config.json scrambled inside an intact zip directory.
        content = bytearray(good.read_bytes())
        with zipfile.ZipFile(good) as archive:
            info = archive.getinfo("config.json")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        content[start + 4 : start + 40] = bytes(byte ^ 0x5A for byte in content[start + 4 : start + 40])
        broken.write_bytes(bytes(content))
    else:
        with zipfile.ZipFile(good) as source, zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as target:
            for name in source.namelist():
                config = b"{not json" if damage == "not json" else b"[1, 2]"
                target.writestr(name, config if name == "config.json" else source.read(name))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(broken), "--data", str(val_dir)])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1
    assert str(broken) in error


@pytest.mark.parametrize("command", ["evaluate.py", "predict.py", "inference.py"])
def test_help_answers_without_tensorflow(command):
    repository = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-X", "importtime", command, "--help"], cwd=repository, capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage:" in result.stdout
    assert "tensorflow" not in result.stderr and "keras" not in result.stderr


def test_bad_images_stop_or_are_skipped(captcha_folders, constant_reader, tmp_path, capsys):
    _, val_dir = captcha_folders
    data = tmp_path / "val"
    shutil.copytree(val_dir, data)
    (data / "1234_truncated.png").write_bytes(next(val_dir.glob("*.png")).read_bytes()[:200])
    (data / "12345.png").write_bytes(next(val_dir.glob("*.png")).read_bytes())  # a label one digit too long
    path = save_model(constant_reader("0000"), tmp_path / "constant.keras")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(path), "--data", str(data)])
    assert exit_info.value.code == 2 and "12345.png" in capsys.readouterr().err
    result = evaluate.main([str(path), "--data", str(data), "--skip-bad"])
    assert result["images"] == 12 and result["skipped"] == 2
    assert "Skipped 2 files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(path), "--data", str(tmp_path / "empty_or_missing")])
    assert exit_info.value.code == 2 and "Image folder not found" in capsys.readouterr().err
