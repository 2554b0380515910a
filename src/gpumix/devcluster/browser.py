"""Headless Chromium for the dashboard's tests: load a page, take its DOM or a screenshot.

Used by the unit-tier browser test (the API over fixtures) and the e2e test (the operator on
the dev cluster). Chromium is Debian's ``chromium`` package; pages are loopback only.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from gpumix.devcluster.loadgen import require_loopback

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DashboardDOM(HTMLParser):
    """The fleet table's rows and the cost chart's bars, from Chromium's dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.pool_rows: dict[str, list[str]] = {}
        self.bars: dict[str, float] = {}
        self.summary = ""
        self.changes: set[str] = set()
        self.whatif_text = ""
        self._in_whatif = 0
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-pool"):
            self._row = str(found["data-pool"])
            self.pool_rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "rect" and found.get("class") == "bar-plan":
            self.bars[str(found["data-service"])] = float(str(found["data-cost"]))
        elif tag == "span" and found.get("id") == "summary":
            self._in_summary = True
        if found.get("data-change"):
            self.changes.add(str(found["data-change"]))
        if tag == "div" and found.get("id") == "whatif-answer":
            self._in_whatif = 1
        elif self._in_whatif and tag == "div":
            self._in_whatif += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.pool_rows[self._row].append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "span":
            self._in_summary = False
        elif tag == "div" and self._in_whatif:
            self._in_whatif -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_summary:
            self.summary += data
        if self._in_whatif:
            self.whatif_text += data


def chromium(profile: Path, url: str, *args: str) -> str:
    """Chromium's output for `url` (the DOM with --dump-dom), after the page's script ran."""
    require_loopback(url)
    if CHROMIUM is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # root in a container; the page is our own
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # Virtual time: the page's fetches and drawing finish before the DOM is taken.
            "--virtual-time-budget=5000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout
