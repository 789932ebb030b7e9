import matplotlib
import numpy as np

from core import figures


def history(epochs: int) -> dict:
    columns = {"epoch": list(range(epochs)), "loss": [1.0] * epochs, "val_loss": [1.1] * epochs}
    for prefix in ("", "val_"):
        for position in range(4):
            columns[f"{prefix}digit_{position}_accuracy"] = [0.5] * epochs
        columns[f"{prefix}whole_accuracy"] = [0.1] * epochs
    return columns


def test_figures_are_written_without_switching_the_backend(tmp_path):
    backend = matplotlib.get_backend()
    paths = [
        figures.plot_history(history(3), tmp_path / "curves.png", length=4, title="run"),
        figures.plot_comparison({"a": history(2), "b": history(3)}, tmp_path / "comparison.png", length=4),
        figures.plot_samples(
            [np.zeros((8, 16, 3))] * 3, ["0123"] * 3, tmp_path / "samples.png", predictions=["0123", "0", "1"]
        ),
        figures.plot_confusion(np.eye(3, dtype=int), "abc", tmp_path / "confusion.png"),
    ]
    assert matplotlib.get_backend() == backend
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*"))  # No temporary file left behind.
