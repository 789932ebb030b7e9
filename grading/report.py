"""The instructor's summary page, grades.html: one static file with its figures inline, safe to open anywhere.

Figures (PNG, embedded as data URIs): the histogram of mean per-digit
accuracy with the pass bar, the pass rate, the count per status, and the
slowest submissions. Then the table of every row. Every text from a
submission (its folder name, its error) is HTML-escaped: the page runs no
script and loads nothing.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path

from core.files import atomic_path
from grading.grades import GRADED, csv_columns, one_line


def _figure_to_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def summary_figures(rows: list[dict], threshold: float) -> dict[str, str]:
    """{title: PNG data URI} for the page's four figures."""
    from matplotlib.figure import Figure  # The object API: no backend is chosen or switched.
    from matplotlib.ticker import MaxNLocator

    figures = {}
    graded = [float(row["mean_accuracy"]) for row in rows if row["status"] == GRADED]
    figure = Figure(figsize=(5, 3))
    axes = figure.subplots()
    axes.hist(graded, bins=[index / 20 for index in range(21)], color="#4c72b0", edgecolor="white")
    axes.axvline(threshold, color="#c44e52", linestyle="--", label=f"pass bar {threshold:.0%} per digit")
    axes.set(xlabel="mean per-digit accuracy", ylabel="submissions", xlim=(0, 1))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)  # Above the axes, never on a bar.
    figures["Mean per-digit accuracy of the graded submissions"] = _figure_to_data_uri(figure)

    passed = sum(row["verdict"] == "PASS" for row in rows)
    figure = Figure(figsize=(5, 1.6))
    axes = figure.subplots()
    axes.barh([0], [passed], color="#55a868", label=f"PASS {passed}")
    axes.barh([0], [len(rows) - passed], left=[passed], color="#c44e52", label=f"FAIL {len(rows) - passed}")
    axes.set(yticks=[], xlabel="submissions", xlim=(0, max(len(rows), 1)))
    axes.set_title(f"pass rate {passed / max(len(rows), 1):.0%} (every digit at least {threshold:.0%})")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=2, frameon=False)
    figures["Pass rate"] = _figure_to_data_uri(figure)

    statuses = Counter(row["status"] for row in rows)
    figure = Figure(figsize=(5, 0.4 * len(statuses) + 1))
    axes = figure.subplots()
    names = sorted(statuses, key=statuses.get)
    axes.barh(names, [statuses[name] for name in names], color="#8172b2")
    axes.set(xlabel="submissions")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figures["Submissions per status"] = _figure_to_data_uri(figure)

    timed = sorted(
        (row for row in rows if isinstance(row.get("train_seconds"), (int, float))),
        key=lambda row: row["train_seconds"],
    )[-10:]
    if timed:
        figure = Figure(figsize=(5, 0.35 * len(timed) + 1))
        axes = figure.subplots()
        axes.barh([one_line(row["submission"], 30) for row in timed], [row["train_seconds"] / 60 for row in timed])
        axes.set(xlabel="training minutes")
        figures["The slowest submissions"] = _figure_to_data_uri(figure)
    return figures


def write_report(rows: list[dict], path: str | Path, threshold: float, length: int, title: str = "Grades") -> Path:
    """Writes grades.html atomically and returns its path."""
    escape = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;font-size:90%;max-width:30em;"
        "overflow-wrap:anywhere}figure{display:inline-block;margin:0 1em 1em 0}"
        ".PASS{color:#2a7d3f}.FAIL{color:#b02a2a}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(rows)} submissions, {sum(row['verdict'] == 'PASS' for row in rows)} pass.</p>",
    ]
    for caption, uri in summary_figures(rows, threshold).items():
        parts.append(
            f'<figure><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
        )
    columns = csv_columns(length)
    parts.append("<table><tr>" + "".join(f"<th>{escape(column)}</th>" for column in columns) + "</tr>")
    for row in sorted(rows, key=lambda row: row["submission"]):
        cells = []
        for column in columns:
            value = row.get(column, "")
            value = one_line(value) if column == "error" else value
            css = f' class="{value}"' if column == "verdict" else ""
            cells.append(f"<td{css}>{escape(str(value))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table></body></html>")
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
