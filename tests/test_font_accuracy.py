import json

import numpy as np

from bench import font_accuracy
from core import multicolor
from data import generate
from models import get_model
from models.io import save_model


def test_draw_with_fonts_records_one_font_per_character():
    images, labels, fonts = font_accuracy.draw_with_fonts(3, "fonts/test")
    assert images.shape == (3, 144, 256, 3) and images.dtype == np.uint8
    assert all(len(image_fonts) == len(label) == 4 for label, image_fonts in zip(labels, fonts))
    assert all(font.endswith((".ttf", ".otf")) and "/fonts/" not in font for row in fonts for font in row)
    # Recording does not change what is drawn.
    image, label = generate.make_captcha("fonts/test", 1)
    assert label == labels[1] and np.array_equal(np.asarray(image), images[1])


def test_hard_font_weight_raises_the_share_of_hard_fonts():
    def hard_share(captcha_generator):
        _, _, fonts = font_accuracy.draw_with_fonts(60, "fonts/share", captcha_generator)
        characters = [font for row in fonts for font in row]
        return sum(font in multicolor.HARD_FONTS for font in characters) / len(characters)

    uniform = hard_share(None)
    weighted = hard_share(generate.get_generator("multicolorcaptcha", hard_font_weight=3))
    # Expected shares: 10/44 = 23% uniform, 30/64 = 47% weighted; 240 characters each.
    assert 0.12 < uniform < 0.34 and 0.36 < weighted < 0.6


def test_font_accuracies_are_counted_per_font_worst_first():
    rows = font_accuracy.font_accuracies(
        labels=["1234", "5678"], readings=["1239", "5678"], fonts=[["a", "a", "b", "b"], ["a", "a", "b", "c"]]
    )
    assert rows == [
        {"font": "b", "characters": 3, "accuracy": 0.6667, "errors": 1},
        {"font": "a", "characters": 4, "accuracy": 1.0, "errors": 0},
        {"font": "c", "characters": 1, "accuracy": 1.0, "errors": 0},
    ]
    groups = font_accuracy.font_groups(rows, hard_fonts=("b",))
    assert groups == {
        "hard_fonts": {"fonts": 1, "characters": 3, "accuracy": 0.6667, "share_of_errors": 1.0},
        "other_fonts": {"fonts": 2, "characters": 5, "accuracy": 1.0, "share_of_errors": 0.0},
    }


def test_main_writes_the_table(tmp_path, capsys):
    model_path = save_model(get_model("cellnet_tiny"), tmp_path / "tiny.keras")
    output = tmp_path / "fonts.json"
    assert font_accuracy.main([str(model_path), "--images", "4", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["images"] == 4 and result["characters"] == 16
    assert sum(row["characters"] for row in result["fonts"]) == 16
    assert result["hard_fonts"]["characters"] + result["other_fonts"]["characters"] == 16
    accuracies = [row["accuracy"] for row in result["fonts"]]
    assert accuracies == sorted(accuracies)
    assert "written to" in capsys.readouterr().out
