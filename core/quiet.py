"""Loads Keras without TensorFlow's start-up lines on the console.

TensorFlow's C++ runtime writes its oneDNN notice and a CUDA-driver line to
the process's stderr while it is imported, before its own log settings are
read, so `TF_CPP_MIN_LOG_LEVEL` cannot hide them; setting up its devices
logs a cuInit error where there is no GPU. Entry points call
`load_keras()` once their arguments are parsed (so `--help` never waits for
TensorFlow); it imports Keras, and TensorFlow when that is the backend, with
file descriptor 2 pointed at /dev/null, then restores it. An import error is
still shown: it is raised after stderr is back.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced_stderr():
    """Points file descriptor 2 (what C++ libraries write to) at /dev/null for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_keras():
    """Imports and returns `keras` quietly (see the module docstring); cheap once it is loaded."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Later INFO and WARNING lines of the C++ runtime.
    with silenced_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow

            # The devices are set up on first use, and that logs a cuInit error on machines without a GPU.
            tensorflow.config.list_physical_devices()
    return keras
