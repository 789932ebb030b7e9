import pytest

from training.history import join_histories, main, read_history, write_history


def stage_log(rows: int, start: float) -> dict:
    history = {"epoch": [float(epoch) for epoch in range(rows)], "loss": [start - 0.1 * epoch for epoch in range(rows)]}
    for prefix in ("", "val_"):
        for position in range(4):
            history[f"{prefix}digit_{position}_accuracy"] = [0.5 + 0.01 * epoch for epoch in range(rows)]
        history[f"{prefix}whole_accuracy"] = [0.1 * epoch for epoch in range(rows)]
    history["val_loss"] = list(history["loss"])
    return history


def test_stage_logs_join_with_epochs_numbered_on(tmp_path):
    first, second = tmp_path / "first.history.csv", tmp_path / "second.history.csv"
    write_history(stage_log(3, 2.0), first)
    write_history(stage_log(2, 1.0), second)
    csv_path, png_path = main([str(first), str(second), "--output", str(tmp_path / "joined")])
    joined = read_history(csv_path)
    assert joined["epoch"] == [1, 2, 3, 4, 5]
    assert joined["loss"] == pytest.approx([2.0, 1.9, 1.8, 1.0, 0.9])
    assert csv_path.read_text().splitlines()[4].startswith("4,")  # Epochs stay integers, as Keras writes them.
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_stages_with_other_columns_are_refused():
    shorter = stage_log(2, 1.0)
    del shorter["val_loss"]
    with pytest.raises(ValueError, match="Stage 2 logged other columns"):
        join_histories([stage_log(2, 1.0), shorter])
    with pytest.raises(ValueError, match="at least one history"):
        join_histories([])


def test_epochs_are_read_counted_from_1(tmp_path):
    counted_from_1, legacy = stage_log(3, 2.0), stage_log(3, 2.0)
    counted_from_1["epoch"] = [1, 2, 3]
    write_history(counted_from_1, tmp_path / "new.history.csv")
    write_history(legacy, tmp_path / "legacy.history.csv")  # Keras's CSVLogger: 0, 1, 2.
    assert read_history(tmp_path / "new.history.csv")["epoch"] == [1, 2, 3]
    assert read_history(tmp_path / "legacy.history.csv")["epoch"] == [1, 2, 3]
