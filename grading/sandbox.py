"""The sandbox a submission's `train.py` runs in: bubblewrap namespaces, read-only data, limits.

Under `bwrap` the code gets its own PID, network, IPC and UTS namespaces, so
it has no network at all, sees only its own processes, and when its run
ends (or its time is up) the kernel ends every process of the namespace,
whatever the code started: a daemon that called setsid, a double fork, a
process ignoring SIGTERM. Its file system holds only:
- the system (`/usr`, `/etc`, ...) and the Python environment, read-only;
- its own copy of the submission at `/submission` (the working directory), writable;
- the course's training and validation folders inside it, read-only;
- a private `/tmp` of bounded size.
Nothing else of the grader's machine is there: not the other submissions,
not the grader's outputs, not the grader's private copy of the images.

Limits for each run: resource limits (address space for memory, file size,
processes, no core dumps) and CPU affinity, set by `grading/launch.py`
before the sandbox starts. Memory is bounded by a cgroup v2 `memory.max`
instead where the grader's own cgroup is delegated to it (see
`find_cgroup`); an address-space limit counts reserved virtual memory,
which is what is available everywhere. When the grader runs as root the code
runs as an unprivileged user of its own (`SANDBOX_USER_BASE` + job slot), so
the process limit counts only that submission's processes.

`kind="none"` runs the code unsandboxed, as the grader's own user; only the
time limit and the process group bound it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_KINDS = ("bwrap", "none")
SANDBOX_USER_BASE = 190000  # uid (and gid) of job slot 0's code when the grader is root; slot k gets base + k.
MOUNT_POINT = "/submission"
LAUNCHER = Path(__file__).with_name("launch.py")
GIB = 1024**3
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
# Parts of the system a Python program needs, bound read-only when present.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt")


class SandboxUnavailableError(RuntimeError):
    """bwrap is missing or cannot create namespaces on this machine; the message says how to fix it."""


@dataclass(frozen=True)
class Limits:
    """What one submission's code may use.

    Attributes:
        memory_bytes: Memory (cgroup `memory.max`, else the address-space rlimit); None: no limit.
        file_size_bytes: Largest file it may write.
        processes: Most processes and threads at once.
        tmp_bytes: Size of its private /tmp.
    """

    memory_bytes: int | None = 8 * GIB
    file_size_bytes: int = 2 * GIB
    processes: int = 512
    tmp_bytes: int = 1 * GIB


@dataclass(frozen=True)
class Sandbox:
    """How submissions run.

    Attributes:
        kind: "bwrap" or "none".
        limits: The `Limits` of each run.
        cores_per_run: CPUs each run gets (affinity and thread variables); None: all.
    """

    kind: str = "bwrap"
    limits: Limits = field(default_factory=Limits)
    cores_per_run: int | None = None

    def __post_init__(self):
        if self.kind not in SANDBOX_KINDS:
            raise ValueError(f"`kind` must be one of {SANDBOX_KINDS}. Received: {self.kind!r}")


def parse_size(text: str) -> int:
    """Bytes from '8G', '512M', '100k' or a plain number of bytes (binary units).

    Raises:
        ValueError: Not a size.
    """
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    value = str(text).strip().lower().removesuffix("b").removesuffix("i")
    multiplier = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        size = int(float(number) * multiplier)
    except ValueError:
        raise ValueError(f"Expected a size such as 8G, 512M or 1000000. Received: {text!r}") from None
    if size <= 0:
        raise ValueError(f"Expected a positive size. Received: {text!r}")
    return size


def available_cores() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def cores_for_slot(slot: int, cores_per_run: int | None) -> list[int]:
    """The CPUs of job slot `slot`: consecutive blocks of `cores_per_run`, wrapping around."""
    cores = available_cores()
    if not cores_per_run or cores_per_run >= len(cores):
        return cores
    start = (slot * cores_per_run) % len(cores)
    return [cores[(start + offset) % len(cores)] for offset in range(cores_per_run)]


def check_sandbox(sandbox: Sandbox) -> None:
    """Makes sure the sandbox can run here: starts one empty sandbox.

    Raises:
        SandboxUnavailableError: With what is wrong and how to fix it.
    """
    if sandbox.kind == "none":
        return
    if shutil.which("bwrap") is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed, and submissions must not run unsandboxed. Install it "
            "(Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), or pass "
            "--sandbox none to run them with your own rights (unsafe)."
        )
    stage_root, workdir = make_stage_root(), Path(tempfile.mkdtemp(prefix="captcha-kit-probe-"))
    try:
        if os.geteuid() == 0:
            os.chown(workdir, SANDBOX_USER_BASE, SANDBOX_USER_BASE)
        command = bwrap_command(
            workdir, {}, [sys.executable, "-S", "-c", "pass"], sandbox, 0, stage_root, python_paths(sys.executable)
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=sandbox_environment(None))
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise SandboxUnavailableError(
            f"bwrap cannot create its namespaces here ({reason}). Allow unprivileged user namespaces "
            "(sysctl -w kernel.unprivileged_userns_clone=1 and user.max_user_namespaces=15000; in a "
            "container, run it with a seccomp/AppArmor profile that permits them), or pass --sandbox none "
            "to run submissions with your own rights (unsafe)."
        )


def python_paths(python: str) -> list[str]:
    """The folders an interpreter needs: its environment, its base installation and its executable's folder."""
    script = "import json, os, sys; print(json.dumps([sys.prefix, sys.base_prefix, os.path.realpath(sys.executable)]))"
    try:
        result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise ValueError(f"Cannot run the --python interpreter {python!r}: {error}") from None
    prefix, base_prefix, executable = json.loads(result.stdout)
    paths = {prefix, base_prefix, str(Path(executable).parent)}
    return sorted(path for path in paths if not any(path.startswith(system + "/") for system in SYSTEM_PATHS))


def bwrap_command(
    workdir: Path,
    read_only: dict[str, Path],
    command: list[str],
    sandbox: Sandbox,
    slot: int,
    stage_root: Path,
    extra_read_only: list[str] = (),
    cgroup: str | None = None,
) -> list[str]:
    """The launcher and `bwrap` command line that run `command` in `workdir` (mounted at /submission).

    When the grader is root the code runs as an unprivileged user, who may
    not be allowed to walk to the folders it needs (a Python under /root, a
    course folder under a private folder). So the launcher first binds each
    folder, as root and in a mount namespace of its own, onto an empty folder
    of `stage_root` that anyone may enter, and bwrap mounts them from there.
    Nothing of the grader's mount table changes.

    Args:
        workdir: The submission's own copy, the only writable folder.
        read_only: Name inside /submission -> folder mounted there read-only (the course data).
        command: What to run; an interpreter outside the system folders
            must be in `extra_read_only`.
        sandbox: Its limits.
        slot: The job slot (CPUs and, as root, the user).
        stage_root: An empty folder for the staged binds (mode 0755), removed by the caller.
        extra_read_only: More folders bound read-only at their own paths (the Python environment).
        cgroup: The run's cgroup folder, if memory is bounded by one.
    """
    binds = [(str(path), str(path), False) for path in extra_read_only]
    binds.append((str(Path(workdir).resolve()), MOUNT_POINT, True))
    binds += [(str(Path(folder).resolve()), f"{MOUNT_POINT}/{name}", False) for name, folder in read_only.items()]
    staged = []
    if os.geteuid() == 0:
        staged = [[source, str(Path(stage_root) / str(index))] for index, (source, _, _) in enumerate(binds)]
        binds = [(stage, destination, writable) for (_, stage), (_, destination, writable) in zip(staged, binds)]
    arguments = ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    arguments += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            arguments += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            arguments += ["--ro-bind", path, path]
    arguments += ["--proc", "/proc", "--dev", "/dev"]
    arguments += ["--size", str(sandbox.limits.tmp_bytes), "--tmpfs", "/tmp"]
    for source, destination, writable in binds:
        arguments += ["--bind" if writable else "--ro-bind", source, destination]
    arguments += ["--remount-ro", "/", "--chdir", MOUNT_POINT, "--", *command]  # Its root is a tmpfs: no writes there.
    settings = launch_settings(sandbox, slot, cgroup)
    if staged:
        settings["stage"] = staged
    return [sys.executable, "-S", str(LAUNCHER), json.dumps(settings), "--", *arguments]


def launch_settings(sandbox: Sandbox, slot: int, cgroup: str | None) -> dict:
    """What `grading/launch.py` sets before starting the run of job slot `slot`."""
    limits = sandbox.limits
    rlimits = {"RLIMIT_CORE": 0, "RLIMIT_FSIZE": limits.file_size_bytes}
    if sandbox.kind == "bwrap":
        rlimits["RLIMIT_NPROC"] = limits.processes
    if limits.memory_bytes and not cgroup:
        rlimits["RLIMIT_AS"] = limits.memory_bytes
    settings = {"limits": rlimits, "cores": cores_for_slot(slot, sandbox.cores_per_run), "parent": os.getpid()}
    if cgroup:
        settings["cgroup"] = cgroup
    if sandbox.kind == "bwrap":
        settings["user"] = SANDBOX_USER_BASE + slot
    return settings


def launch_command(command: list[str], sandbox: Sandbox, slot: int, cgroup: str | None = None) -> list[str]:
    """`command` (unsandboxed) preceded by the launcher that applies the limits of `slot`."""
    settings = json.dumps(launch_settings(sandbox, slot, cgroup))
    return [sys.executable, "-S", str(LAUNCHER), settings, "--", *command]


def make_stage_root() -> Path:
    """An empty folder that anyone may enter, for `bwrap_command`'s staged binds."""
    folder = Path(tempfile.mkdtemp(prefix="captcha-kit-stage-"))
    os.chmod(folder, 0o755)
    return folder


def sandbox_environment(cores: int | None) -> dict[str, str]:
    """The environment of a run: a plain PATH, HOME in /tmp, unbuffered output, no display, thread counts.

    Nothing of the grader's own environment is passed on (no tokens, no
    paths): only what a training script needs.
    """
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }
    if cores:
        environment.update({name: str(cores) for name in THREAD_VARIABLES})
        environment["TF_NUM_INTEROP_THREADS"] = "1" if cores == 1 else "2"
    return environment


def find_cgroup(limits: Limits) -> Path | None:
    """A cgroup v2 folder where each run can get its own `memory.max`, or None (then rlimits bound memory).

    Usable when the grader's own cgroup (from /proc/self/cgroup) is a
    delegated cgroup v2 folder that it may write, whose `cgroup.subtree_control`
    already enables the memory and pids controllers for its children (for
    example a systemd scope started with `Delegate=yes`).
    """
    if not limits.memory_bytes:
        return None
    try:
        entries = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = [line.split(":", 2)[2] for line in entries if line.startswith("0::")]
    if not unified:
        return None
    folder = Path("/sys/fs/cgroup") / unified[0].lstrip("/")
    try:
        controllers = (folder / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if not {"memory", "pids"} <= set(controllers) or not os.access(folder, os.W_OK):
        return None
    return folder


def make_run_cgroup(parent: Path, name: str, limits: Limits) -> Path:
    """Creates the cgroup of one run under `parent` with its memory, swap and process limits."""
    folder = Path(parent) / name
    folder.mkdir(exist_ok=True)
    (folder / "memory.max").write_text(str(limits.memory_bytes))
    if (folder / "memory.swap.max").exists():
        (folder / "memory.swap.max").write_text("0")
    (folder / "pids.max").write_text(str(limits.processes))
    return folder


def remove_run_cgroup(folder: Path | None) -> None:
    """Removes a run's cgroup once its processes are gone (best effort)."""
    if folder is not None:
        try:
            folder.rmdir()
        except OSError:
            pass
