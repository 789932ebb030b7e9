"""Grading many at once: jobs on one machine, a Dask cluster, lost workers, and resuming after SIGKILL."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from grading_helpers import (
    COPY_MODEL,
    SLOW,
    SLOW_MARKER,
    make_submission,
    processes_with,
    read_grades,
    require_sandbox,
)

import grade
from grading.distributed import dask_settings

# One xdist worker runs every grading test: they share job slots, CPUs and sandbox users.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

REPOSITORY = Path(__file__).resolve().parent.parent
COMPARED = ("submission", "status", "digit_0_accuracy", "digit_3_accuracy", "whole_accuracy", "verdict", "error")


@pytest.fixture
def small_class(tmp_path, constant_reader):
    root = tmp_path / "class"
    make_submission(root, "ann", COPY_MODEL, constant_reader("1234"))
    make_submission(root, "bob", 'raise SystemExit("no model today")\n')
    make_submission(root, "cy", COPY_MODEL, constant_reader("5678", layout="list"))
    make_submission(root, "dee", None)
    return root


def grade_rows(root, captcha_folders, output, *extra):
    train_dir, val_dir = captcha_folders
    grade.main(
        [str(root), "--train-dir", str(train_dir), "--val-dir", str(val_dir), "--output", str(output)]
        + ["--time-limit", "60", *extra]
    )
    return {name: {key: row[key] for key in COMPARED} for name, row in read_grades(output).items()}


@pytest.fixture
def dask_cluster():
    import dask
    from distributed import LocalCluster

    with dask.config.set(dask_settings()):  # The grading cluster's own settings, as the docs start it.
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        try:
            yield cluster
        finally:
            cluster.close()


def test_two_jobs_and_a_dask_cluster_give_the_rows_of_one_job(small_class, captcha_folders, tmp_path, dask_cluster):
    require_sandbox()
    one = grade_rows(small_class, captcha_folders, tmp_path / "one.csv", "--jobs", "1")
    two = grade_rows(small_class, captcha_folders, tmp_path / "two.csv", "--jobs", "2", "--cores", "1")
    cluster = grade_rows(
        small_class, captcha_folders, tmp_path / "dask.csv", "--scheduler", dask_cluster.scheduler_address
    )
    assert one == two == cluster
    assert [one[name]["status"] for name in sorted(one)] == ["graded", "crashed", "graded", "no_train_script"]
    assert (tmp_path / "dask_logs" / "ann.log").read_text().count("[grader] training") == 1


def test_a_lost_worker_costs_one_retry_then_worker_lost(tmp_path, captcha_folders, dask_cluster, constant_reader):
    require_sandbox()
    from distributed import Client

    root = tmp_path / "class"
    make_submission(root, "sleepy", "import time, shutil\ntime.sleep(8)\n" + COPY_MODEL, constant_reader("1111"))
    killed = []

    def kill_the_worker_grading(times: int):
        with Client(dask_cluster.scheduler_address) as client:
            while len(killed) < times:
                busy = [address for address, keys in client.processing().items() if keys]
                if busy:
                    pids = client.run(os.getpid, workers=busy)
                    time.sleep(1.5)  # Let the sandboxed run start.
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                    time.sleep(2)
                time.sleep(0.2)

    for times, expected in ((1, "graded"), (2, "worker_lost")):
        killed.clear()
        killer = threading.Thread(target=kill_the_worker_grading, args=(times,), daemon=True)
        killer.start()
        rows = grade_rows(
            root, captcha_folders, tmp_path / f"lost{times}.csv", "--scheduler", dask_cluster.scheduler_address
        )
        killer.join(timeout=30)
        assert len(killed) == times and rows["sleepy"]["status"] == expected, rows
        with open(tmp_path / f"lost{times}.csv") as file:
            assert sum(line.startswith("sleepy,") for line in file) == 1  # Never a row twice.
    assert processes_with("time.sleep(8)") == []


def test_resuming_after_sigkill_keeps_the_finished_rows(tmp_path, captcha_folders, constant_reader):
    require_sandbox()
    train_dir, val_dir = captcha_folders
    root = tmp_path / "class"
    make_submission(root, "a_quick", COPY_MODEL, constant_reader("1234"))
    make_submission(root, "b_slow", SLOW)
    make_submission(root, "c_quick", COPY_MODEL, constant_reader("4321"))
    output = tmp_path / "grades.csv"
    argv = [str(root), "--train-dir", str(train_dir), "--val-dir", str(val_dir), "--output", str(output), "--jobs", "1"]
    grader = subprocess.Popen(
        [sys.executable, str(REPOSITORY / "grade.py"), *argv, "--time-limit", "100"],
        cwd=REPOSITORY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    slow_log = tmp_path / "grades_logs" / "b_slow.log"
    deadline = time.monotonic() + 120
    while not (slow_log.exists() and "[grader] training" in slow_log.read_text() and processes_with(SLOW_MARKER)):
        assert time.monotonic() < deadline and grader.poll() is None, "the grading never reached b_slow"
        time.sleep(0.2)
    grader.kill()
    grader.wait()
    time.sleep(1)
    assert processes_with(SLOW_MARKER) == [], "the sandboxed run outlived the killed grader"
    assert list(read_grades(output)) == ["a_quick"]
    first = read_grades(output)["a_quick"]
    quick_log = (tmp_path / "grades_logs" / "a_quick.log").stat().st_mtime_ns

    result = grade.main([*argv, "--time-limit", "3"])
    rows = read_grades(output)
    assert {name: row["status"] for name, row in rows.items()} == {
        "a_quick": "graded",
        "b_slow": "timed_out",
        "c_quick": "graded",
    }
    assert rows["a_quick"] == first and (tmp_path / "grades_logs" / "a_quick.log").stat().st_mtime_ns == quick_log
    assert len(result["rows"]) == 3
    regraded = grade.main([*argv, "--time-limit", "3", "--regrade"])
    assert len(regraded["rows"]) == 3 and (tmp_path / "grades_logs" / "a_quick.log").stat().st_mtime_ns != quick_log
