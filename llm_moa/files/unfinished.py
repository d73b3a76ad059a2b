"""Runs that failed after proposers had answered: their paid-for answers are kept
and shown here, one JSON file each (README: "Failure handling"). Files, not database
rows: the plugin never writes to the host's database, where it could cause
locking. A file that does not read as an unfinished run is skipped, with one
line naming it. ``cli/views.py`` shows them.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ..core.record import StoredRun
from ..errors import MoaError, parse
from ..host import logs_on
from ..text import count
from .storage import moa_dir, read_json, write_json_atomically


class Unfinished(BaseModel):
    "One unfinished run's file: what was asked, why it failed, and the run record so far."

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: Annotated[str, Field(min_length=1)]
    datetime_utc: str = ""
    model: str = ""
    prompt: str = ""
    error: str = ""
    run: StoredRun = Field(default_factory=StoredRun)


def save(run_id: str, model_id: str, request_text: str, error: str, run: dict) -> Path | None:
    "Write one unfinished run atomically; return its path (None when logs are off)."
    if not logs_on():
        return None
    entry = {
        "id": run_id,
        "datetime_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "model": model_id,
        "prompt": request_text,
        "error": error,
        "run": run,
    }
    return write_json_atomically(moa_dir() / "unfinished" / f"{run_id}.json", entry)


def read() -> tuple[list[Unfinished], list[str]]:
    "Every saved unfinished run, newest first, and a line for each file that is not one."
    folder = moa_dir() / "unfinished"
    for place in (moa_dir(), folder):
        if place.exists() and not place.is_dir():
            return [], [f"{place}: cannot be read, a file stands where a folder should be"]
    found, problems = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            entry = read_json(path, None)
            if entry is not None:  # None: removed since the folder was listed
                found.append(parse(Unfinished, entry, _not_one(path)))
        except MoaError as ex:
            problems.append(str(ex))
    return sorted(found, key=lambda entry: entry.id, reverse=True), problems


def _not_one(path: Path):
    return lambda problem: f"{path}: not an unfinished run ({problem})"


def find(prefix: str) -> Unfinished:
    "The one unfinished run whose id starts with ``prefix``."
    matches = [entry for entry in read()[0] if entry.id.startswith(prefix)]
    if len(matches) > 1:
        raise MoaError(
            f"{prefix!r} is ambiguous: it matches {count(len(matches), 'unfinished run')}; "
            "give more of the id"
        )
    if not matches:
        raise MoaError(f"No unfinished run matches {prefix!r}; 'llm moa unfinished' lists them")
    return matches[0]
