"""What every benchmark's results file shares: the machine line and the hand-written notes
kept from the ``<!-- notes -->`` line on."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

NOTES_MARK = "<!-- notes -->"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_keeping_notes(results: Path, lines: list[str]) -> None:
    """Regenerate ``results`` above the notes mark; keep everything from it on."""
    notes = ""
    if results.exists() and NOTES_MARK in (old := results.read_text()):
        notes = old[old.index(NOTES_MARK) :]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines) + "\n\n" + (notes or f"{NOTES_MARK}\n"))
