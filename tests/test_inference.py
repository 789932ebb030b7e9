"""inference.py, models/reader.py and models/viewer.py: the reader, the tally, marking wrong characters, both modes."""

import io
import re
import sys

import matplotlib
import numpy as np
import pytest
from matplotlib.backend_bases import KeyEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import inference
import models
from core.alphabet import Alphabet
from data.generate import generator_for, get_generator, make_captcha
from models import viewer
from models.decoding import character_confidences, decode_text, decode_with_confidence
from models.io import save_model
from models.reader import Reader, load_reader
from models.viewer import Tally

LINE = re.compile(r"^#(\d+)  truth (\S+)  read (\S+)  (right|WRONG)  confidences ([-\d. ]+?)  \|  (.*)$")


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    return save_model(models.get_model("cellnet_tiny"), tmp_path_factory.mktemp("models") / "tiny.keras")


@pytest.fixture(scope="module")
def zeros_model_path(tmp_path_factory):
    """A model that reads 0000 whatever the image, so every tally follows from the truths alone."""
    from conftest import build_constant_reader

    return save_model(build_constant_reader("0000"), tmp_path_factory.mktemp("models") / "zeros.keras")


def run_text_mode(monkeypatch, capsys, argv, keys: str):
    monkeypatch.setattr(sys, "stdin", io.StringIO(keys))
    result = inference.main([*argv, "--text"])
    lines = capsys.readouterr().out.splitlines()
    return result, [LINE.match(line) for line in lines if line.startswith("#")], lines


def test_tally_counts_whole_captchas_and_characters():
    tally = Tally()
    assert (tally.whole_accuracy, tally.character_accuracy) == (0.0, 0.0)
    assert tally.add([1, 2, 3, 4], [1, 2, 3, 4]).all()
    assert tally.add([1, 2, 3, 4], [1, 0, 3, -1]).tolist() == [True, False, True, False]
    tally.add([5, 5, 5, 5], [0, 0, 0, 0])
    assert (tally.seen, tally.whole_correct, tally.characters_correct, tally.characters_seen) == (3, 1, 6, 12)
    assert tally.whole_accuracy == pytest.approx(1 / 3)
    assert tally.character_accuracy == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        tally.add([1, 2, 3, 4], [1, 2, 3])


def test_wrong_and_missing_characters_are_marked():
    alphabet = Alphabet("0123456789", 4)
    assert viewer.marked_text([4, 7, 2, 1], [True, False, True, True], alphabet) == "4[7]21"
    assert viewer.marked_text([4, 8, -1, -1], [True, True, False, False], alphabet) == "48[_][_]"
    assert viewer.marked_text([4, 8, 2, 1], [True] * 4, alphabet) == "4821"


def test_character_confidences_of_per_position_and_ctc_scores():
    alphabet = Alphabet("012", 2)
    scores = np.array([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]])
    assert character_confidences(scores, alphabet, "positions") == pytest.approx(np.array([[0.7, 0.6]]))
    assert decode_with_confidence(scores, alphabet, "positions")[1] == pytest.approx([0.42])

    def step(code, probability):
        row = np.full(4, (1 - probability) / 3)
        row[code] = probability
        return row

    # Greedy path 1 1 blank 1 2: three characters, of which the length of two keeps the first two.
    ctc = np.array([[step(1, 0.6), step(1, 0.9), step(3, 0.8), step(1, 0.5), step(2, 0.7)]])
    assert decode_text(ctc, alphabet, "ctc") == ["11"]
    assert character_confidences(ctc, alphabet, "ctc") == pytest.approx(np.array([[0.9, 0.5]]))
    # A path with one character leaves the second position unread (NaN).
    short = np.array([[step(3, 0.9), step(2, 0.8), step(2, 0.6), step(3, 0.9), step(3, 0.9)]])
    confidences = character_confidences(short, alphabet, "ctc")
    assert confidences[0, 0] == pytest.approx(0.8) and np.isnan(confidences[0, 1])


def test_seq2seq_character_confidences_stop_at_the_end_token():
    alphabet = Alphabet("012", 2)
    # Classes 0-2 are characters, 3 the end token: the first step reads 2, the second ends the text.
    scores = np.array([[[0.1, 0.1, 0.7, 0.1, 0, 0], [0.1, 0.1, 0.1, 0.7, 0, 0], [0.2, 0.6, 0.1, 0.1, 0, 0]]])
    assert decode_text(scores, alphabet, "seq2seq") == ["2"]
    confidences = character_confidences(scores, alphabet, "seq2seq")
    assert confidences[0, 0] == pytest.approx(0.7) and np.isnan(confidences[0, 1])


def test_reader_matches_model_predict_and_the_decoder(tiny_model_path):
    from models.io import load_model

    model = load_model(tiny_model_path)
    reader = Reader(model)
    generator = get_generator("multicolorcaptcha")
    images = np.stack([np.asarray(generator.draw(f"reader/{index}")[0]) for index in range(3)])
    outputs = model.predict(images, verbose=0)
    assert images.dtype == np.uint8
    assert reader.scores(images) == pytest.approx(outputs, abs=1e-5)
    # uint8 goes to the model as it is and is cast there: the same scores as float32 (or float64) pixels.
    np.testing.assert_array_equal(reader.scores(images), reader.scores(images.astype("float32")))
    np.testing.assert_array_equal(reader.scores(images), reader.scores(images.astype("float64")))
    readings = reader.read(images)
    assert [reading.text for reading in readings] == decode_text(outputs, reader.alphabet, "positions")
    # In batches the same readings and codes, batches joined in order.
    assert [reading.text for reading in reader.read(images, batch_size=2)] == [reading.text for reading in readings]
    np.testing.assert_allclose(reader.scores(images, batch_size=2), reader.scores(images), atol=1e-6)
    np.testing.assert_array_equal(reader.codes(images, batch_size=2), [reading.codes for reading in readings])
    assert reader.codes(images[:0]).shape == (0, 4)
    assert reader.read_one(images[1]).text == readings[1].text
    for reading in readings:
        assert np.prod(reading.character_confidences) == pytest.approx(reading.confidence, rel=1e-5)
    with pytest.raises(
        ValueError, match=r"takes images of shape \(images, 144, 256, 3\). Received: \(3, 100, 256, 3\)"
    ):
        reader.scores(images[:, :100])


def test_reader_decodes_by_the_kind_the_model_records(tmp_path):
    # A CTC model's scores have classes + 1 columns; a per-position reading of them would fail.
    alphabet = Alphabet("0123456789", 4, 3)
    path = save_model(models.get_model("crnn_ctc_tiny", alphabet=alphabet, image_size=(32, 96)), tmp_path / "c.keras")
    reader = load_reader(path)
    assert reader.kind == "ctc" and reader.alphabet == alphabet
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 96, 3)).astype("uint8")
    np.testing.assert_array_equal(
        reader.codes(images), decode_with_confidence(reader.scores(images), alphabet, "ctc")[0]
    )
    with pytest.raises(ValueError, match="Expected outputs of shape"):
        Reader(reader.model, kind="positions").codes(images)
    with pytest.raises(FileNotFoundError, match="python train.py.*reference/reference.keras"):
        load_reader(tmp_path / "absent.keras")


def test_ctc_model_reads_imagecaptchas_of_its_own_alphabet(tmp_path, monkeypatch, capsys):
    alphabet = Alphabet("0123456789ABCDEF", 5)
    model = models.get_model("crnn_ctc_tiny", alphabet=alphabet, image_size=(48, 120))
    path = save_model(model, tmp_path / "ctc.keras")
    generator = generator_for(alphabet, (48, 120))
    assert (generator.name, generator.width, generator.height) == ("imagecaptcha", 120, 48)
    assert generator.alphabet == alphabet
    result, lines, _ = run_text_mode(monkeypatch, capsys, ["--model", str(path), "--seed", "1"], "n\n")
    assert result["seen"] == 2 and result["characters_seen"] == 10
    for line in lines:
        assert len(line.group(2)) == 5 and set(line.group(2)) <= set(alphabet.characters)
        # Each read character has a confidence; unread positions show "-".
        read_count = len(line.group(3).replace("[", "").replace("]", "").replace("_", ""))
        assert len(re.findall(r"\d\.\d\d", line.group(5))) == read_count


def test_text_mode_keys_tally_and_marks(zeros_model_path, monkeypatch, capsys):
    # First CAPTCHA at start; n and Enter show two more; x gets a hint; q quits before the last n.
    result, lines, output = run_text_mode(
        monkeypatch, capsys, ["--model", str(zeros_model_path), "--seed", "5"], "n\n\nx\nq\nn\n"
    )
    assert [int(line.group(1)) for line in lines] == [1, 2, 3]
    assert any("unknown key 'x'" in line for line in output)
    truths = [line.group(2) for line in lines]
    for line, truth in zip(lines, truths):
        expected = "".join("0" if character == "0" else "[0]" for character in truth)
        assert line.group(3) == expected
        assert line.group(4) == ("right" if truth == "0000" else "WRONG")
    zeros = sum(truth.count("0") for truth in truths)
    assert result["seen"] == 3 and result["mode"] == "text"
    assert result["characters_correct"] == zeros and result["characters_seen"] == 12
    assert result["whole_correct"] == truths.count("0000")
    assert f"characters right {zeros}/12" in lines[-1].group(6)
    # The same seed gives the same CAPTCHAs; the end of the input quits.
    again, lines_again, _ = run_text_mode(monkeypatch, capsys, ["--model", str(zeros_model_path), "--seed", "5"], "n")
    assert again["seen"] == 2 and [line.group(2) for line in lines_again] == truths[:2]


def test_window_mode_key_handler_redraws_in_place(zeros_model_path, monkeypatch):
    from models.io import load_model

    reader = Reader(load_model(zeros_model_path))
    figure = Figure(figsize=(7, 4.6))
    FigureCanvasAgg(figure)
    view = viewer.WindowView(figure, length=4)
    generator = get_generator("multicolorcaptcha")
    session = viewer.Session(reader, lambda index: make_captcha("inference/5", index, generator), views=[view])
    view.connect(session)
    closed = []
    monkeypatch.setattr(matplotlib.pyplot, "close", closed.append)
    session.next()
    artists = len(figure.texts), view.image_artist

    def press(key):
        figure.canvas.callbacks.process("key_press_event", KeyEvent("key_press_event", figure.canvas, key=key))

    press("n")
    press("shift")  # A modifier on its own is no command.
    assert session.tally.seen == 2
    assert (len(figure.texts), view.image_artist) == artists  # redrawn in place, nothing added
    assert np.array_equal(view.image_artist.get_array(), np.asarray(session.image))
    assert "".join(text.get_text() for text in view.truth_texts) == session.truth
    for text, character in zip(view.read_texts, session.truth):
        assert text.get_text() == "0"
        assert text.get_color() == ("forestgreen" if character == "0" else "firebrick")
    assert view.tally_text.get_text().startswith("seen 2, whole right")
    press("x")
    assert "unknown key 'x'" in view.hint_text.get_text() and session.tally.seen == 2
    assert not closed
    press("q")
    assert closed == [figure] and session.tally.seen == 2
    figure.savefig(io.BytesIO(), format="png")  # the figure draws


def test_missing_reference_model_says_how_to_name_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inference, "REFERENCE_MODEL", tmp_path / "reference" / "reference.keras")
    with pytest.raises(SystemExit) as exit_info:
        inference.main(["--text"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "reference.keras is missing" in error and "--model PATH" in error and "my_model.keras" in error


def test_bad_model_files_are_refused_clearly(tmp_path, capsys):
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("not a model")
    for path, message in ((not_a_model, "is not a Keras model"), (tmp_path / "absent.keras", "Model file not found")):
        with pytest.raises(SystemExit) as exit_info:
            inference.main(["--model", str(path), "--text"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_terminal_mode_is_chosen_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not viewer.display_available()
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "agg")
    assert not viewer.display_available()
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "TkAgg")
    assert viewer.display_available()


def test_multicolorcaptcha_for_four_digit_models():
    assert generator_for(Alphabet(), (144, 256)).name == "multicolorcaptcha"
    assert generator_for(Alphabet(), (60, 160)).name == "imagecaptcha"


@pytest.mark.slow
def test_window_opens_and_answers_keys_under_xvfb(tiny_model_path, tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "docs" / "inference_window_check.py"
    spec = importlib.util.spec_from_file_location("inference_window_check", script)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    if check.missing_tools():
        pytest.skip(f"needs {', '.join(check.missing_tools())}")
    printed = check.check_window(tiny_model_path, tmp_path / "window.png")
    assert [line.split()[0] for line in printed.splitlines() if line.startswith("#")] == ["#1", "#2", "#3"]
    assert "Done: seen 3" in printed
    assert (tmp_path / "window.png").stat().st_size > 10_000
