"""answers/: the PDF build turns Markdown with a table and an image into a PDF; answers.md cites only real files
and builds into a titled PDF."""

import importlib.util
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from answers import build

ANSWERS = Path(build.__file__).resolve().parent
needs_weasyprint = pytest.mark.skipif(
    importlib.util.find_spec("weasyprint") is None,  # Not importorskip: importing it is what build() guards.
    reason="the PDF renderer is optional: pip install -r answers/requirements.txt",
)


def pdf_dictionaries(content: bytes) -> bytes:
    """The PDF's bytes with its compressed streams inflated, where WeasyPrint puts its object dictionaries."""
    inflated = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", content, re.S):
        try:
            inflated.append(zlib.decompress(match.group(1)))
        except zlib.error:  # An image or font stream that is not Flate-compressed.
            continue
    return content + b"".join(inflated)


@needs_weasyprint
def test_build_makes_a_pdf_with_table_and_image(tmp_path):
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


def test_document_title_is_the_first_heading():
    assert build.document_title("intro\n# Cracking CAPTCHAs: answers\n## Q1\n# later") == "Cracking CAPTCHAs: answers"
    assert build.document_title("## only a section\n", default="notes") == "notes"
    assert '<meta name="author" content="captcha-kit">' in build.to_html("# A & B", title="A & B")
    assert "<title>A &amp; B</title>" in build.to_html("# A & B", title="A & B")


@needs_weasyprint
def test_answers_build_into_a_titled_pdf(tmp_path):
    source = ANSWERS / "answers.md"
    pdf = build.build(source, tmp_path / "answers.pdf")
    dictionaries = pdf_dictionaries(pdf.read_bytes())
    title = build.document_title(source.read_text(encoding="utf-8"))
    assert title == "Cracking CAPTCHAs: answers"
    info = re.search(rb"<<[^<>]*/Producer \(WeasyPrint[^<>]*>>", dictionaries)  # The document information.
    assert info, "no document information dictionary"
    assert f"/Title ({title})".encode() in info.group(0)  # Not only the outline entry of the heading.
    assert b"/Author (captcha-kit)" in info.group(0)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", dictionaries))
    # The ten answers with their tables and figures: more than a page or two, and not one page per figure row.
    assert 5 <= pages <= 30, pages
    assert f"/Count {pages}".encode() in dictionaries  # The page tree agrees.
