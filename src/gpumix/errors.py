"""Errors a user can act on.

Every error that reaches the command line as exit code 2 is an :class:`InputError`: one line
that names the file (when there is one), the field, and what is wrong with it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(Exception):
    """Invalid user input: printed as one line, exit code 2."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        self.detail = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(part for part in (self.source, self.field) if part)
        return f"{where}: {self.detail}" if where else self.detail


class UnknownNameError(InputError):
    """A name (model, GPU type, weight format) that is not in a catalogue."""

    def __init__(
        self,
        kind: str,
        name: str,
        known: Iterable[str],
        *,
        source: str | None = None,
        field: str | None = None,
    ):
        known_list = sorted(known)
        close = difflib.get_close_matches(name, known_list, n=3, cutoff=0.5)
        if not close:
            lowered = name.lower()
            close = [k for k in known_list if lowered in k.lower() or k.lower() in lowered][:3]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint}", source=source, field=field)
        self.name = name
        self.close_matches = close
