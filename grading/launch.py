"""Sets a submission's limits on itself, then becomes the sandbox (or the bare command): `exec`, never a child.

    python -S grading/launch.py '{"cores": [0], "limits": {"RLIMIT_AS": 8589934592}, "user": 190000}' -- bwrap ...

The grader starts this small script, not `bwrap` directly, because what it
sets must be in place before the first instruction of student code and is
inherited by everything started after: CPU affinity, resource limits, a
death signal tied to the grader (so a killed grader takes the submission
with it), the cgroup to join, the folders to stage for the sandbox (see
`grading.sandbox.bwrap_command`) and the unprivileged user to become. Doing it
here instead of in a `preexec_fn` keeps it safe to start from a threaded
grader. It imports nothing but the standard library, so it runs under `-S`
in any Python and costs a few milliseconds.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18


def apply(settings: dict) -> None:
    """Applies `settings` to this process: cgroup, affinity, rlimits, the user, then the death signal."""
    if settings.get("cgroup"):
        with open(os.path.join(settings["cgroup"], "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    if settings.get("stage"):
        stage(settings["stage"])
    if settings.get("cores"):
        os.sched_setaffinity(0, settings["cores"])
    for name, value in settings.get("limits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    user = settings.get("user")
    if user is not None and os.geteuid() == 0:
        # After the cgroup (joining one needs root), so student code never runs as root.
        os.setgroups([])
        os.setgid(user)
        os.setuid(user)
    # Armed after setuid: the kernel clears the death signal when credentials change.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != settings.get("parent", os.getppid()):  # The grader died before the signal was armed.
        os._exit(137)


def stage(binds: list[list[str]]) -> None:
    """Binds each source folder onto its staging folder, in a private mount namespace (root only).

    The staging folders can be entered by anyone, so the unprivileged user
    the code runs as can hand them to bwrap even where the sources lie
    behind folders it may not enter. The grader's own mounts do not change.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "cannot make a private mount namespace")
    for source, staged in binds:
        os.makedirs(staged, exist_ok=True)
        if libc.mount(source.encode(), staged.encode(), None, MS_BIND | MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), f"cannot bind {source} onto {staged}")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: launch.py SETTINGS_JSON -- COMMAND [ARGS...]")
    program = find_program(argv[2])  # Before `apply`: the unprivileged user may not read this Python's files.
    apply(json.loads(argv[0]))
    os.execv(program, argv[2:])


def find_program(name: str) -> str:
    """The path of `name`, looked up on PATH like a shell does."""
    if os.sep in name:
        return name
    for folder in os.get_exec_path():
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    sys.exit(f"launch.py: {name} not found on PATH")


if __name__ == "__main__":
    main(sys.argv[1:])
