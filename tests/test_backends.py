"""The kit on another Keras backend: JAX beside TensorFlow (`KERAS_BACKEND=jax pytest -m jax`).

Each test runs on the backend of the test process and compares with TensorFlow, run in a subprocess
(`tests/backend_worker.py`), where the other backend is needed: the same training steps from the same
weights give the same weights, and a `.keras` file reads the same whichever backend saved it.
"""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from backend_worker import build, predict
from backend_worker import train as train_steps

import evaluate
import grade
import inference
import models
import train
from core.alphabet import Alphabet
from core.quiet import load_keras

keras = load_keras()
pytestmark = pytest.mark.jax
WORKER = Path(__file__).resolve().parent / "backend_worker.py"
OTHER = "tensorflow" if keras.backend.backend() != "tensorflow" else "jax"


def on_other_backend(*arguments) -> None:
    if OTHER == "jax":
        pytest.importorskip("jax", reason="the JAX backend: pip install -r requirements-jax.txt")
    environment = {**os.environ, "KERAS_BACKEND": OTHER, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(WORKER), *map(str, arguments)], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]


def data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, images=rng.integers(0, 256, (16, 24, 40, 3)).astype("uint8"), codes=rng.integers(0, 10, (16, 2)))
    return path


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (docs/training.md)")
def test_pytorch_takes_the_same_steps_as_this_backend(tmp_path):
    """Where torch is installed: the objective's PyTorch step from the same weights gives the same weights."""
    initial, arrays = tmp_path / "initial.keras", data(tmp_path)
    build("cellnet_tiny", {}, initial)
    settings = {"learning_rate": 3e-3, "epochs": 2}
    ours = train_steps(initial, arrays, settings)
    environment = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(WORKER), "train", str(initial), str(arrays), json.dumps(settings)]
    result = subprocess.run([*command, str(tmp_path / "torch.npz")], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = np.load(tmp_path / "torch.npz")
    for index, mine in enumerate(ours):
        np.testing.assert_allclose(mine, theirs[f"arr_{index}"], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    "name, options, settings",
    [
        ("cellnet_tiny", {}, {"learning_rate": 3e-3, "epochs": 2}),
        ("fourblock_tiny", {}, {"learning_rate": 1e-3, "epochs": 2}),
        ("crnn_ctc_tiny", {"dropout": 0.0}, {"learning_rate": 1e-3, "epochs": 2}),  # The CTC loss.
        # Teacher forcing; without dropout, which draws other numbers on each backend, and with SGD: Adam's
        # step is ±rate wherever a gradient is near zero, whatever its rounding, and the GRUs have many such.
        (
            "cnn_seq2seq_tiny",
            {"cnn_dropout": 0.0, "recurrent_dropout": 0.0},
            {"learning_rate": 0.05, "epochs": 2, "optimizer": "sgd"},
        ),
        ("cellnet_tiny", {}, {"learning_rate": 3e-3, "epochs": 2, "mean_teacher": True}),  # Student and teacher.
        ("cellnet_tiny", {}, {"learning_rate": 3e-3, "epochs": 2, "weight_average": 0.9}),  # The warmed-up average.
    ],
    ids=["positions", "fourblock", "ctc", "seq2seq", "mean_teacher", "weight_average"],
)
def test_the_same_steps_from_the_same_weights_give_the_same_weights_on_both_backends(tmp_path, name, options, settings):
    initial, arrays = tmp_path / "initial.keras", data(tmp_path)
    build(name, options, initial)
    ours = train_steps(initial, arrays, settings)
    on_other_backend("train", initial, arrays, json.dumps(settings), tmp_path / "theirs.npz")
    theirs = np.load(tmp_path / "theirs.npz")
    theirs = [theirs[f"arr_{index}"] for index in range(len(theirs.files))]
    assert len(ours) == len(theirs)
    moved = [not np.allclose(weight, start) for weight, start in zip(ours, load_weights(initial, len(ours)))]
    assert any(moved)  # The steps changed the weights...
    for mine, other in zip(ours, theirs):  # ...and both backends changed them alike.
        np.testing.assert_allclose(mine, other, atol=1e-4, rtol=1e-3)


def load_weights(path, count):
    from models.io import load_model

    weights = load_model(path).get_weights()
    return (weights * 2)[:count]  # A Mean Teacher's teacher starts as a copy of the student.


@pytest.mark.parametrize("direction", ["saved here, read there", "saved there, read here"])
def test_a_model_file_reads_the_same_whichever_backend_saved_it(tmp_path, direction):
    rng = np.random.default_rng(1)
    images = tmp_path / "images.npy"
    np.save(images, rng.integers(0, 256, (6, 24, 40, 3)).astype("uint8"))
    model = tmp_path / "model.keras"
    if direction == "saved here, read there":
        build("cellnet_tiny", {}, model)
    else:
        on_other_backend("build", "cellnet_tiny", "{}", model)
    on_other_backend("predict", model, images, tmp_path / "theirs.npy")
    np.testing.assert_allclose(np.asarray(predict(model, images)), np.load(tmp_path / "theirs.npy"), atol=1e-4)


def test_every_registered_model_reads_and_takes_a_step_on_this_backend():
    from core.alphabet import Alphabet
    from training.objective import compiled_objective

    alphabet = Alphabet("0123456789", 2)
    rng = np.random.default_rng(0)
    images, codes = rng.integers(0, 256, (4, 64, 128, 3)).astype("uint8"), rng.integers(0, 10, (4, 2))
    for name in models.list_models():
        if not name.endswith("_tiny"):
            continue
        model = models.get_model(name, alphabet=alphabet, image_size=(64, 128))
        history = compiled_objective(model, 1e-3, total_steps=1).fit(images, codes, batch_size=4, verbose=0)
        assert np.isfinite(history.history["loss"][0]), name


def test_train_evaluate_inference_and_grade_run_on_this_backend(captcha_folders, tmp_path, capsys, monkeypatch):
    train_dir, val_dir = captcha_folders
    output = tmp_path / "model.keras"
    summary = train.main(
        ["--model", "cellnet_tiny", "--train-dir", str(train_dir), "--val-dir", str(val_dir), "--epochs", "2",
         "--batch-size", "8", "--time-limit", "600", "--output", str(output), "--quiet"]
    )  # fmt: skip
    assert output.is_file() and summary["epochs_run"] == 2
    result = evaluate.main([str(output), "--data", str(val_dir), "--json"])
    assert result["images"] == 12, result
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\nq\n"))
    inference.main(["--text", "--model", str(output), "--seed", "3"])
    assert "#2  truth" in capsys.readouterr().out
    submission = tmp_path / "class" / "student"
    submission.mkdir(parents=True)
    (submission / "my_model.keras").write_bytes(output.read_bytes())
    result = grade.main(
        [str(tmp_path / "class"), "--train", "never", "--val-dir", str(val_dir), "--sandbox", "none",
         "--output", str(tmp_path / "grades.csv")]
    )  # fmt: skip
    assert [row["status"] for row in result["rows"]] == ["graded"], result["rows"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_data_parallel_steps_on_two_devices_equal_steps_on_one(tmp_path, backend):
    """`training.distribute` on two virtual CPU devices: the same global batch, the same weights (within 1e-5)."""
    pytest.importorskip("jax", reason="the JAX backend: pip install -r requirements-jax.txt")
    initial, arrays = tmp_path / "initial.keras", data(tmp_path)
    build("cellnet_tiny", {}, initial)  # Batch normalisation: its statistics must be the global batch's.
    environment = {
        **os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }  # fmt: skip
    weights = {}
    for mode in ("one", "devices"):
        command = [sys.executable, str(WORKER), "distributed", mode, str(initial), str(arrays)]
        command += ['{"learning_rate": 3e-3, "epochs": 2}', str(tmp_path / f"{mode}.npz")]
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        saved = np.load(tmp_path / f"{mode}.npz")
        weights[mode] = [saved[f"arr_{index}"] for index in range(len(saved.files))]
    start = load_weights(initial, len(weights["one"]))
    assert any(not np.allclose(after, before) for after, before in zip(weights["one"], start))
    for one, parallel in zip(weights["one"], weights["devices"]):
        np.testing.assert_allclose(parallel, one, atol=1e-5)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_worker_processes_train_one_model_and_only_the_chief_writes_it(captcha_folders, tmp_path):
    """train.py --distribute multi-worker in two processes on 127.0.0.1: equal weights, one model file, and the
    steps of one process with the same global batches (weights within 1e-5)."""
    pytest.importorskip("jax", reason="the JAX backend: pip install -r requirements-jax.txt")
    train_dir, val_dir = captcha_folders
    repository = Path(__file__).resolve().parent.parent
    arguments = ["--model", "cellnet_tiny", "--train-dir", str(train_dir), "--val-dir", str(val_dir),
                 "--epochs", "2", "--batch-size", "8", "--quiet"]  # fmt: skip
    environment = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "XLA_FLAGS": ""}
    address = f"127.0.0.1:{free_port()}"
    workers = []
    for process in (0, 1):
        cluster = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": address, "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                   "KERAS_DISTRIBUTION_PROCESS_ID": str(process)}  # fmt: skip
        folder = tmp_path / f"process{process}"
        folder.mkdir()
        command = [sys.executable, str(repository / "train.py"), *arguments, "--distribute", "multi-worker"]
        workers.append(subprocess.Popen(
            [*command, "--output", str(folder / "model.keras")], env={**environment, **cluster}, cwd=repository,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))  # fmt: skip
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    chief = json.loads((tmp_path / "process0" / "model.json").read_text())
    assert chief["processes"] == 2 and chief["epochs_run"] == 2
    assert f"weights {chief['weights_sha256'][:12]}" in outputs[1]  # The other process's own fingerprint.
    assert sorted(path.name for path in (tmp_path / "process1").iterdir()) == []  # Only the chief writes.
    single = subprocess.run(
        [sys.executable, str(repository / "train.py"), *arguments, "--output", str(tmp_path / "one.keras")],
        env=environment, cwd=repository, capture_output=True, text=True,
    )  # fmt: skip
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    expected = keras.models.load_model(tmp_path / "one.last.keras").get_weights()
    trained = keras.models.load_model(tmp_path / "process0" / "model.last.keras").get_weights()
    keras.utils.set_random_seed(0)  # As train.py builds the model (--seed 0).
    start = models.get_model("cellnet_tiny", alphabet=Alphabet("0123456789", 4), image_size=(144, 256)).get_weights()
    assert any(not np.allclose(after, before) for after, before in zip(expected, start))
    for one, two in zip(expected, trained):
        np.testing.assert_allclose(two, one, atol=1e-5)


@pytest.mark.slow
def test_the_gpu_recipe_runs_end_to_end_on_this_cpu(tmp_path):
    """bench/gpu_reference.sh train with a tiny model and sets: draws, trains in mixed precision on JAX, compares."""
    pytest.importorskip("jax", reason="the JAX backend: pip install -r requirements-jax.txt")
    repository = Path(__file__).resolve().parent.parent
    environment = {
        **os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "VAL_COUNT": "32", "TEST_COUNT": "32",
        "EXTRA": "--model cellnet_tiny --fresh-images 128 --epochs 2 --batch-size 32", "CUDA_VISIBLE_DEVICES": "",
    }  # fmt: skip
    result = subprocess.run(
        ["bash", str(repository / "bench" / "gpu_reference.sh"), "train", "60"],
        env=environment, cwd=repository, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert comparison["test_images"] == 32 and comparison["epochs_run"] == 2
    assert comparison["reference"]["mean_accuracy"] > 0.8  # The shipped model, read on JAX.
    summary = json.loads((tmp_path / "gpu_reference.json").read_text())
    assert summary["options"]["mixed_precision"] and summary["options"]["reuse"] == 2
    for name in ("gpu_reference.keras", "gpu_reference.history.csv", "gpu_reference.curves.png"):
        assert (tmp_path / name).is_file()
