"""Start, identify and stop the dev cluster's processes.

Each process runs in its own session (so it outlives ``gpumix dev-cluster up`` and a Ctrl-C in
the terminal does not reach it), logs to ``<state>/logs/<name>.log`` and is recorded in
``<state>/run/<name>.json`` with its pid *and* its kernel start time: a pid alone may have been
reused by an unrelated process after a reboot or crash, and ``down`` must stop only what ``up``
started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gpumix.devcluster import DevClusterError


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_time: int  # clock ticks since boot, field 22 of /proc/<pid>/stat
    argv: list[str]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_start_time(pid: int) -> int | None:
    """Start time of a live process, or None when there is no such process (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces; split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


class ProcessTable:
    """The processes of one state directory."""

    def __init__(self, state_dir: Path):
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"
        # Children started by this Python process. Holding the Popen objects lets `stop` reap
        # them (no zombies in a long test session) and keeps Popen's destructor from warning
        # that a child it never waited for still runs — by design, they outlive `up`.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _record_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def start(self, name: str, argv: list[str]) -> ProcessRecord:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            log.write(f"--- gpumix: starting {' '.join(argv)}\n".encode())
            log.flush()
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[name] = child
        start_time = process_start_time(child.pid)
        if start_time is None:
            raise DevClusterError(f"{name} exited at once; see {self.log_path(name)}")
        record = ProcessRecord(name=name, pid=child.pid, start_time=start_time, argv=argv)
        self._record_path(name).write_text(json.dumps(asdict(record)))
        return record

    def record(self, name: str) -> ProcessRecord | None:
        try:
            data = json.loads(self._record_path(name).read_text())
        except FileNotFoundError:
            return None
        return ProcessRecord(**data)

    def running(self, name: str) -> ProcessRecord | None:
        """The recorded process if it is still the same process, else None."""
        record = self.record(name)
        if record is None or process_start_time(record.pid) != record.start_time:
            return None
        return record

    def exited_early(self, name: str) -> str | None:
        """If a started process is gone, a one-line reason with its log's last line."""
        if self.running(name) is not None:
            return None
        log = self.log_path(name)
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        last = lines[-1] if lines else "no output"
        return f"{name} exited: {last} (log: {log})"

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """Stop a recorded process (TERM, then KILL); True if one was running."""
        record = self.running(name)
        was_running = record is not None
        if record is not None:
            with contextlib.suppress(ProcessLookupError):  # it exited between check and signal
                os.kill(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.running(name) is not None:
                time.sleep(0.1)
            if self.running(name) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.pid, signal.SIGKILL)
                while self.running(name) is not None:
                    time.sleep(0.05)
        child = self._children.pop(name, None)
        if child is not None:
            child.wait()
        self._record_path(name).unlink(missing_ok=True)
        return was_running
