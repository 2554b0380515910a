"""`dev-cluster down` stops exactly the processes `up` started, never a recycled pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from gpumix.devcluster.processes import ProcessTable, process_start_time


def test_stop_ends_the_recorded_process(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    record = table.start("sleeper", ["sleep", "60"])
    assert table.running("sleeper") == record

    assert table.stop("sleeper") is True
    assert process_start_time(record.pid) is None
    assert table.running("sleeper") is None
    assert table.stop("sleeper") is False  # idempotent


def test_a_recycled_pid_is_not_ours_and_is_left_alone(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        table = ProcessTable(tmp_path)
        table.run_dir.mkdir(parents=True)
        start_time = process_start_time(stranger.pid)
        assert start_time is not None
        # A record whose pid now belongs to another process (started at another time).
        (table.run_dir / "etcd.json").write_text(
            json.dumps(
                {"name": "etcd", "pid": stranger.pid, "start_time": start_time - 1, "argv": []}
            )
        )
        assert table.running("etcd") is None
        assert table.stop("etcd") is False
        assert stranger.poll() is None
    finally:
        os.kill(stranger.pid, signal.SIGKILL)
        stranger.wait()


def test_an_early_exit_is_reported_with_the_log_line(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    # The pause keeps the exit after `start` has recorded the process, as with a real binary.
    table.start("broken", ["sh", "-c", "sleep 0.2; echo 'bad flag --frobnicate' >&2; exit 1"])
    deadline = time.monotonic() + 10
    reason = None
    while reason is None and time.monotonic() < deadline:
        time.sleep(0.05)
        reason = table.exited_early("broken")
    assert reason is not None
    assert "bad flag --frobnicate" in reason
    assert str(table.log_path("broken")) in reason
    table.stop("broken")
