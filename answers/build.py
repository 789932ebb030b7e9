"""Builds answers/answers.pdf from answers/answers.md: Markdown -> HTML (markdown-it-py) -> PDF (WeasyPrint).

    pip install -r answers/requirements.txt     # weasyprint; needs the Pango library (Debian: libpango-1.0-0)
    python -m answers.build                     # answers/answers.md -> answers/answers.pdf
    python -m answers.build NOTES.md --output notes.pdf

Images are embedded from the paths the Markdown gives, relative to the
Markdown file; a missing image stops the build with its name rather than
leaving a hole in the PDF. The PDF's Title metadata is the Markdown's first
`# ` heading, its Author `captcha-kit`.
"""

from __future__ import annotations

import argparse
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

from core.files import atomic_path

ANSWERS = Path(__file__).resolve().parent
AUTHOR = "captcha-kit"
IMAGE_PATTERN = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")

STYLE = """
@page { size: A4; margin: 16mm 15mm 18mm 15mm;
        @bottom-center { content: counter(page) " / " counter(pages); font-size: 8pt; color: #666; } }
body { font-family: "DejaVu Sans", sans-serif; font-size: 9.5pt; line-height: 1.38; color: #111; }
h1 { font-size: 17pt; margin: 0 0 4pt 0; }
h2 { font-size: 12.5pt; margin: 14pt 0 4pt 0; border-bottom: 1px solid #bbb; padding-bottom: 2pt;
     break-after: avoid; }
h3 { font-size: 10.5pt; margin: 10pt 0 3pt 0; break-after: avoid; }
p, li { margin: 3pt 0; }
blockquote { margin: 4pt 0 6pt 0; padding: 2pt 8pt; border-left: 3px solid #999; color: #333;
             background: #f4f4f4; font-style: italic; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 8.3pt; background: #f0f0f0; padding: 0 1.5pt; }
pre { background: #f0f0f0; padding: 5pt; font-size: 8pt; white-space: pre-wrap; }
pre code { background: none; padding: 0; }
table { border-collapse: collapse; width: 100%; margin: 5pt 0 8pt 0; font-size: 8.3pt; break-inside: avoid; }
th, td { border: 1px solid #aaa; padding: 2pt 5pt; text-align: left; vertical-align: top; }
th { background: #e8e8e8; }
img { max-width: 100%; max-height: 95mm; display: block; margin: 5pt auto; }
.todo, strong.todo { color: #a00; }
"""


def markdown_images(markdown: str) -> list[str]:
    """The image paths a Markdown text references (`![alt](path)`)."""
    return IMAGE_PATTERN.findall(markdown)


def missing_images(markdown_path: Path) -> list[str]:
    """Referenced images that do not exist, relative to the Markdown file."""
    markdown_path = Path(markdown_path)
    text = markdown_path.read_text(encoding="utf-8")
    return [image for image in markdown_images(text) if not (markdown_path.parent / image).is_file()]


def document_title(markdown: str, default: str = "answers") -> str:
    """The text of the Markdown's first top-level heading (`# ...`), or `default` when it has none."""
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return default


def to_html(markdown: str, title: str = "answers", author: str = AUTHOR) -> str:
    """A complete HTML page of the Markdown (CommonMark plus tables and strikethrough).

    Args:
        markdown: The Markdown text.
        title: The page's title; WeasyPrint writes it as the PDF's Title metadata.
        author: The page's author; WeasyPrint writes it as the PDF's Author metadata.

    Returns:
        The HTML text.
    """
    body = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)
    head = (
        f'<meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="author" content="{html.escape(author, quote=True)}">'
    )
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


def build(markdown_path: str | Path, pdf_path: str | Path | None = None) -> Path:
    """Renders a Markdown file to PDF with its images embedded.

    Args:
        markdown_path: The Markdown source; image paths are relative to it.
        pdf_path: Where to write the PDF (default: beside it, `.pdf`).

    Returns:
        The PDF's path.

    Raises:
        FileNotFoundError: The Markdown file or an image it references is missing.
    """
    markdown_path = Path(markdown_path)
    if not markdown_path.is_file():
        raise FileNotFoundError(f"No Markdown file at {markdown_path}")
    missing = missing_images(markdown_path)
    if missing:
        raise FileNotFoundError(f"{markdown_path} references images that do not exist: {', '.join(missing)}")
    from PIL import ImageFile

    accept_truncated = ImageFile.LOAD_TRUNCATED_IMAGES  # Before WeasyPrint's import changes it (see below).
    import weasyprint  # Imported only now, so that checking the sources needs no Pango.

    pdf_path = Path(pdf_path) if pdf_path else markdown_path.with_suffix(".pdf")
    markdown = markdown_path.read_text(encoding="utf-8")
    page = to_html(markdown, title=document_title(markdown, default=markdown_path.stem))
    try:
        document = weasyprint.HTML(string=page, base_url=str(markdown_path.parent.resolve()))
        with atomic_path(pdf_path) as temporary:
            document.write_pdf(temporary, stylesheets=[weasyprint.CSS(string=STYLE)])
    finally:
        # Importing WeasyPrint's image module makes Pillow accept truncated images in the whole process; the kit's
        # readers rely on refusing them (a half-written PNG must be reported, not read as a CAPTCHA).
        ImageFile.LOAD_TRUNCATED_IMAGES = accept_truncated
    return pdf_path


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("markdown", nargs="?", default=str(ANSWERS / "answers.md"), help="Markdown source")
    parser.add_argument("--output", default=None, help="PDF to write (default: the source's name, .pdf)")
    args = parser.parse_args(argv)
    path = build(args.markdown, args.output)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
