"""answers/: the PDF build turns Markdown with a table and an image into a PDF; answers.md cites only real files."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from answers import build

ANSWERS = Path(build.__file__).resolve().parent


def test_build_makes_a_pdf_with_table_and_image(tmp_path):
    if importlib.util.find_spec("weasyprint") is None:  # Not importorskip: importing it is what build() guards.
        pytest.skip("the PDF renderer is optional: pip install -r answers/requirements.txt")
    Image.fromarray(np.full((20, 40, 3), 200, dtype=np.uint8)).save(tmp_path / "figure.png")
    source = tmp_path / "notes.md"
    source.write_text("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![a figure](figure.png)\n")
    assert "<table>" in build.to_html(source.read_text())
    pdf = build.build(source)
    content = pdf.read_bytes()
    assert pdf == tmp_path / "notes.pdf" and content.startswith(b"%PDF")
    assert b"/Image" in content  # The figure is embedded, not linked.
    from PIL import ImageFile

    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # WeasyPrint's global switch is undone (the kit refuses such files).


def test_build_refuses_a_missing_image(tmp_path):
    source = tmp_path / "notes.md"
    source.write_text("![gone](figures/gone.png)\n")
    assert build.missing_images(source) == ["figures/gone.png"]
    with pytest.raises(FileNotFoundError, match="figures/gone.png"):
        build.build(source)


def test_answers_reference_only_existing_figures():
    source = ANSWERS / "answers.md"
    assert build.markdown_images(source.read_text()), "answers.md shows no figures"
    assert build.missing_images(source) == []
