"""Run ``dermsynth vtt serve`` in a child process on 127.0.0.1 (end-to-end tests, the load benchmark)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from dermsynth.errors import DermsynthError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``with ServerProcess(study) as server: server.url`` -- the real CLI in a child process, started and
    waited for; :meth:`kill` ends it abruptly (SIGKILL), as a crash would."""

    def __init__(self, study: str | Path, port: int | None = None, timeout: float = 60.0,
                 log_level: str = "warning") -> None:
        self.study = Path(study)
        self.log_level = log_level
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self._log = None  # the child's stderr: a file, so that a full pipe can never stall the server

    def start(self) -> ServerProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dermsynth.cli", "vtt", "serve", str(self.study), "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", self.log_level], env=env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DermsynthError(f"vtt server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/static/vtt.css", timeout=1).close()
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise DermsynthError(f"vtt server on port {self.port} did not answer within {self.timeout:.0f} s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
