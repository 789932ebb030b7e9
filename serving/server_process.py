"""`serve.py` run as a process of its own, as the browser tests and the serving benchmark talk to it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


class ServerProcess:
    """`python serve.py --port 0` on 127.0.0.1 in its own session, so that it and anything it starts can be found
    and stopped; for the tests and the benchmark that talk to a real server."""

    def __init__(self, model_path, *options):
        self.process = subprocess.Popen(
            [sys.executable, "serve.py", "--model", str(model_path), "--port", "0", *options],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output, self.url = [], None
        deadline = time.monotonic() + 120
        while self.url is None:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = self.process.stdout.readline() if ready else ""
            if not line:
                self.stop()
                raise RuntimeError("serve.py did not start:\n" + "".join(self.output))
            self.output.append(line)
            if line.startswith("Serving "):
                self.url = line.split(" at ", 1)[1].split()[0].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read(), response.headers

    def post(self, path: str, body: bytes) -> dict:
        request = urllib.request.Request(self.url + path, data=body, headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def session_processes(self) -> list[int]:
        """Ids of live processes in the server's session (itself and anything it started)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid and fields[0] != "Z":  # field 6 of stat: the session id
                found.append(int(entry.name))
        return found

    def cpu_seconds(self) -> float:
        """User and system CPU seconds the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """Stops the server as Ctrl+C would (SIGINT); returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)  # uvicorn: up to 5 s for open connections, 10 s for the batcher, and a loaded CPU
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process.stdout.close()
        return self.process.returncode
