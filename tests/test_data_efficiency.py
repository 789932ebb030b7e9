import json
import math

import pytest

from bench.data_efficiency import collect, fit_power_law, images_for, read_stage


def write(path, result):
    path.write_text(json.dumps(result))
    return path.name


def test_stages_add_their_images_and_the_last_stage_gives_the_accuracy(tmp_path):
    bench_run = {
        "fresh_images_per_epoch": 1000,
        "epochs": [{}, {}],
        "final_validation": {"mean_accuracy": 0.8, "whole_accuracy": 0.4},
    }
    first = {
        "fresh_images_per_epoch": 2000,
        "epochs_run": 3,
        "validation": {"mean_accuracy": 0.9, "whole_accuracy": 0.6},
    }
    second = {
        "fresh_images_per_epoch": 500,
        "epochs_run": 4,
        "validation": {"mean_accuracy": 0.95, "whole_accuracy": 0.8},
    }
    runs = (
        ("bench", (write(tmp_path / "bench.json", bench_run),)),
        ("two stages", (write(tmp_path / "first.json", first), write(tmp_path / "second.json", second))),
        ("not run yet", ("missing.json",)),
    )
    points = collect(runs, root=tmp_path)
    assert [(p["run"], p["images"], p["per digit"], p["whole"]) for p in points] == [
        ("bench", 2000, 0.8, 0.4),
        ("two stages", 8000, 0.95, 0.8),
    ]


def test_runs_that_cannot_be_compared_are_refused(tmp_path):
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({"fresh_images_per_epoch": None, "epochs_run": 10, "validation": {}}))
    with pytest.raises(ValueError, match="fixed.json trained on a fixed folder"):
        read_stage(fixed)
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({"fresh_images_per_epoch": 10, "epochs_run": 2, "stopped_by_time_limit": True}))
    with pytest.raises(ValueError, match="cut.json was stopped by its time limit"):
        read_stage(cut)


def test_power_law_fit_and_its_inverse():
    images = [1e5, 4e5, 1.6e6]
    accuracies = [1 - 0.2 * (n / 1e5) ** -0.5 for n in images]  # Error halves for every 4x more images.
    fit = fit_power_law(images, accuracies)
    assert fit["slope"] == pytest.approx(-0.5)
    assert images_for(fit, 0.95) == pytest.approx(1.6e6)
    assert images_for({"slope": 0.1, "intercept": 0.0}, 0.9) == math.inf
    with pytest.raises(ValueError, match="at least two lengths"):
        fit_power_law([1e5, 1e5], [0.9, 0.91])
