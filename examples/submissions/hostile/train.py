"""A hostile submission: tries every way out of the sandbox, reports what worked, then hands in a model.

Each attempt prints BLOCKED or ESCAPED; grading must contain all of them
and still grade this model, and every submission after it, correctly.
"""

import os
import signal
import socket
import subprocess
import sys
import time

MARKER = "captcha-kit-hostile-daemon"  # Tests look for processes carrying it after grading.


def attempt(name, action):
    try:
        action()
    except Exception as error:  # noqa: BLE001  (any refusal is a success of the sandbox)
        print(f"BLOCKED {name}: {type(error).__name__}: {error}", flush=True)
        return
    print(f"ESCAPED {name}", flush=True)


def write(path):
    with open(path, "w") as file:
        file.write("escaped")


def overwrite_cache():
    os.makedirs("capts_val/.cache", exist_ok=True)
    write("capts_val/.cache/images.npy")


def empty_folder(folder):
    def empty():
        names = os.listdir(folder)
        for name in names:
            os.remove(os.path.join(folder, name))
        if not names:
            raise FileNotFoundError(f"{folder} is empty or missing")

    return empty


def truncate_first_image():
    name = sorted(os.listdir("capts_val"))[0]
    os.truncate(os.path.join("capts_val", name), 0)


def connect():
    socket.create_connection(("pypi.org", 443), timeout=3).close()


def connect_loopback_of_host():
    socket.create_connection(("127.0.0.1", 22), timeout=3).close()


def daemon():
    # setsid + double fork + SIGTERM ignored: outlives any process-group kill.
    code = f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)  # {MARKER}"
    subprocess.Popen([sys.executable, "-c", code, MARKER], start_new_session=True)
    raise RuntimeError("daemon started; the sandbox must end it when the run ends")


def list_other_submissions():
    # Only the system, the Python environment and this submission exist in its file system.
    raise PermissionError(f"visible at /: {sorted(os.listdir('/'))}; above the submission: {sorted(os.listdir('..'))}")


def signal_outside():
    # In its own PID namespace, the grader is not even visible: PID 1 is the sandbox's own init.
    for pid in range(2, 400):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    raise PermissionError(f"visible processes: {sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}")


def big_file():
    with open("big.bin", "wb") as file:
        block = b"\0" * (1 << 20)
        for _ in range(int(os.environ.get("HOSTILE_FILE_MB", "4096"))):
            file.write(block)
    os.remove("big.bin")


def big_memory():
    hog = bytearray(int(os.environ.get("HOSTILE_MEMORY_MB", "65536")) << 20)
    del hog


def many_processes():
    children = []
    try:
        for _ in range(int(os.environ.get("HOSTILE_PROCESSES", "4000"))):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        print(f"  started {len(children)} processes", flush=True)


attempt("write /escaped", lambda: write("/escaped"))
attempt("write /usr/escaped", lambda: write("/usr/escaped"))
attempt("write /etc/escaped", lambda: write("/etc/escaped"))
attempt("write ../escaped", lambda: write("../escaped"))
attempt("write the Python environment", lambda: write(os.path.join(sys.prefix, "escaped")))
attempt("write the home folder", lambda: write(os.path.expanduser("~/../../root/escaped")))
attempt("overwrite capts_val/.cache/images.npy", overwrite_cache)
attempt("truncate a validation image", truncate_first_image)
attempt("empty capts_val/", empty_folder("capts_val"))
attempt("empty capts_train/", empty_folder("capts_train"))
attempt("reach the internet", connect)
attempt("reach the host's loopback", connect_loopback_of_host)
attempt("see the other submissions", list_other_submissions)
attempt("kill processes outside", signal_outside)
attempt("write a huge file", big_file)
attempt("take all the memory", big_memory)
attempt("fork without bound", many_processes)
attempt("leave a daemon behind", daemon)

# Then hand in a model (the one given, or an untrained one), so grading must still happen after all of the above.
if os.path.exists("prebuilt.keras"):
    import shutil

    shutil.copy("prebuilt.keras", "my_model.keras")
else:
    import keras

    inputs = keras.Input((144, 256, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Softmax()(keras.layers.Reshape((4, 10))(keras.layers.Dense(40)(x)))
    keras.Model(inputs, outputs).save("my_model.keras")
