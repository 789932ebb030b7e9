"""The recipe sweep's sizing of epochs and its table of means and spreads."""

import json

import pytest

import bench.sweep
from bench.sweep import calibrate, images_per_epoch, machine_cpu_seconds, paired, run_train, table


def run(recipe, seed, digit, whole, contended=False):
    return {
        "recipe": recipe, "seed": seed, "parameters": 1000, "images_seen": 300_000 + seed, "images_per_second": 280.0,
        "validation": {"mean_accuracy": digit, "whole_accuracy": whole},
        "test": {"mean_accuracy": digit - 0.01, "whole_accuracy": whole - 0.02},
        "wall_seconds": 1170.0, "other_cpu_seconds": 90.0 if contended else 3.0, "contended": contended,
    }  # fmt: skip


def test_the_table_gives_mean_and_half_range_over_seeds_best_first_and_leaves_out_shared_runs():
    rows, markdown = table(
        [run("default", 0, 0.940, 0.78), run("default", 1, 0.946, 0.80), run("wide", 0, 0.95, 0.82),
         run("wide", 1, 0.10, 0.0, contended=True)]
    )  # fmt: skip
    assert [row["recipe"] for row in rows] == ["wide", "default"]
    default = rows[1]
    assert default["seeds"] == [0, 1]
    assert default["val_digit"] == pytest.approx((0.943, 0.003)) and default["val_whole"] == pytest.approx((0.79, 0.01))
    assert rows[0]["seeds"] == [0]  # The contended run of seed 1 is not averaged in...
    assert "94.30 ± 0.30" in markdown and "Left out" in markdown and "wide seed 1" in markdown  # ...but named.


def test_epochs_are_sized_to_fill_the_time_with_training_and_validation():
    # 100 images/s of training, 10 s of validation per epoch, 1,000 s for 10 epochs: 90 s x 100 x 1.05 = 9,450.
    assert images_per_epoch({"train_images_per_second": 100.0, "val_seconds": 10.0}, 1000, 10, 64) == 9472
    assert images_per_epoch({"train_images_per_second": 100.0, "val_seconds": 500.0}, 1000, 10, 64) == 128


def test_a_calibration_is_reused_on_the_same_running_machine_and_measured_again_on_another(tmp_path, monkeypatch):
    runs = []

    def fake_train(arguments, cwd):
        runs.append(arguments)  # Two epochs of 6,400 images: 40 s of training and 4 s of validation in the second.
        (cwd / "model.history.csv").write_text("epoch,epoch_seconds,val_seconds\n1,60,5\n2,44,4\n")
        return {"wall_seconds": 110.0, "cpu_seconds": 200.0, "other_cpu_seconds": 0.0}

    monkeypatch.setattr(bench.sweep, "run_train", fake_train)
    config, results = tmp_path / "recipe.json", tmp_path / "results"
    results.mkdir()
    cached = results / "recipe.calibration.json"
    cached.write_text(json.dumps({"train_images_per_second": 999.0, "val_seconds": 1.0, "machine": "another CPU"}))
    measured = calibrate(config, tmp_path / "work", results)
    assert len(runs) == 1 and measured["train_images_per_second"] == 160.0 and measured["val_seconds"] == 4.0
    assert json.loads(cached.read_text())["machine"] == bench.sweep.machine()
    assert calibrate(config, tmp_path / "work", results) == measured and len(runs) == 1  # Same machine: reused.
    # The same CPU model on another host (another boot) can run at another speed: measured again.
    monkeypatch.setattr(bench.sweep, "boot_id", lambda: "another boot")
    calibrate(config, tmp_path / "work", results)
    assert len(runs) == 2 and json.loads(cached.read_text())["boot"] == "another boot"


def test_runs_are_paired_with_the_baseline_on_their_own_machine_only():
    def run(recipe, seed, digit, machine, boot=None, images=1000):
        result = {"recipe": recipe, "seed": seed, "machine": machine, "images_seen": images}
        result["validation"] = {"mean_accuracy": digit}
        result["validation"]["whole_accuracy"] = digit - 0.2
        return result | ({"boot": boot} if boot else {})

    runs = [
        run("default", 0, 0.93, "fast"),
        run("default", 1, 0.95, "fast"),
        run("recipe", 0, 0.945, "fast", images=1100),
        run("default", 2, 0.90, "slow", "boot a"),
        run("recipe", 1, 0.91, "slow", "boot a"),
        run("recipe", 2, 0.99, "slow", "boot b"),  # No baseline on this boot: not paired.
    ]
    lines = paired(runs).splitlines()[2:]
    assert lines == [
        "| recipe | 0 | 0,1 | +0.50 | +0.5 | +10% | fast |",
        "| recipe | 1 | 2 | +1.00 | +1.0 | +0% | slow (boot a) |",
    ]


def test_the_written_table_pairs_runs_with_the_earlier_default_and_with_todays(tmp_path, capsys):
    results = tmp_path / "sweep"
    results.mkdir()
    runs = [run("default", 0, 0.93, 0.75), run("two_convolutions", 0, 0.95, 0.82), run("deeper", 0, 0.96, 0.85)]
    for result in runs:
        result |= {"machine": "one CPU", "boot": "one boot"}
        (results / f"{result['recipe']}_seed0.json").write_text(json.dumps(result))
    markdown = bench.sweep.write_table(results)
    earlier, today = markdown.split("Against today's default (two_convolutions)")
    assert "| deeper | 0 | 0 | +3.00 | +10.0 |" in earlier and "| deeper | 0 | 0 | +1.00 | +3.0 |" in today
    assert json.loads((tmp_path / "sweep.json").read_text())["rows"][0]["recipe"] == "deeper"
    assert (tmp_path / "sweep.md").read_text() == markdown + "\n" and "deeper" in capsys.readouterr().out


def test_a_run_counts_as_its_own_the_cpu_of_workers_it_never_waited_for(tmp_path, monkeypatch):
    # A drawing worker that is killed rather than joined is in no resource usage; it must not read as other work.
    (tmp_path / "train.py").write_text(
        "import os, signal, subprocess, sys, time\n"
        "busy = 'import time\\nend = time.process_time() + 1.5\\n'\n"
        "busy += 'while time.process_time() < end: pass\\ntime.sleep(60)'\n"
        "worker = subprocess.Popen([sys.executable, '-c', busy])\n"
        "time.sleep(2.5)\n"
        "os.kill(worker.pid, signal.SIGKILL)\n"
        "os._exit(0)\n"
    )
    monkeypatch.setattr(bench.sweep, "REPOSITORY", tmp_path)
    timing = run_train([], tmp_path)
    assert timing["cpu_seconds"] >= 1.4 and timing["wall_seconds"] >= 2.5


def test_the_machine_busy_time_counts_the_hosts_steal_and_names_it_apart(monkeypatch):
    monkeypatch.setattr(bench.sweep.os, "sysconf", lambda name: 100)
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy, stolen = machine_cpu_seconds("cpu  100 0 50 1000 10 0 5 20 0 0")
    assert (busy, stolen) == (1.75, 0.2)
