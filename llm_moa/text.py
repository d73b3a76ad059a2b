"""Text shown to people: tables, cut lines, and model output made safe for a terminal.

Answers and error messages come from models and servers, so anything printed
outside the answer itself (views, progress, ``Error:`` lines) goes through
``visible`` first: a control character is shown as an escape, never sent to
the terminal, where it could move the cursor, clear the screen or set the
clipboard (OSC 52).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def visible(text: str, *, newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``).

    Newlines (and tabs) stay as they are when ``newlines`` is true, so
    multi-line answers still read as text.
    """
    keep = "\n\t" if newlines else ""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def shorten(text: str, limit: int) -> str:
    "At most ``limit`` characters, with '...' where it was cut."
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def table(rows: Sequence[Sequence[object]]) -> str:
    "Left-aligned columns, two spaces apart; the first row is the header. Each cell is shown visibly on one line."
    rows = [[visible(str(cell), newlines=False) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


def count(n: int | None, noun: str) -> str:
    "'1 proposer', '3 proposers'; '? proposers' when not known."
    return f"{'?' if n is None else n} {noun}{'' if n == 1 else 's'}"


def json_text(data: Any) -> str:
    """``data`` as the --json of every ``llm moa`` command prints it: strict
    JSON, where a number that is not finite (from a hand-edited file) is null,
    never ``Infinity`` or ``NaN``, which strict parsers reject."""
    import json

    finite = json.loads(json.dumps(data), parse_constant=lambda _: None)
    return json.dumps(finite, indent=2, allow_nan=False)
