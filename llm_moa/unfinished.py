"""Runs that failed after proposers had answered: their paid-for answers are kept
here, one JSON file each (README: "Failure handling"). Files, not database
rows: the plugin never writes to the host's database, where it could cause
locking. A file that does not read as an unfinished run is skipped, with one
line naming it.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from .errors import MoaError
from .host import logs_on
from .storage import moa_dir, read_json, write_json_atomically

TEXT_FIELDS = ("datetime_utc", "model", "prompt", "error")


def directory() -> Path:
    return moa_dir() / "unfinished"


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
    return write_json_atomically(directory() / f"{run_id}.json", entry)


def read() -> tuple[list[dict], list[str]]:
    "Every saved unfinished run, newest first, and a line for each file that is not one."
    folder = directory()
    for place in (moa_dir(), folder):
        if place.exists() and not place.is_dir():
            return [], [f"{place}: cannot be read, a file stands where a folder should be"]
    found, problems = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            entry = read_json(path, None)
            if entry is not None:  # None: removed since the folder was listed
                found.append(_check(path, entry))
        except MoaError as ex:
            problems.append(str(ex))
    return sorted(found, key=lambda entry: entry["id"], reverse=True), problems


def _check(path: Path, entry: dict) -> dict:
    if not isinstance(entry.get("id"), str) or not entry["id"]:
        raise MoaError(f"{path}: not an unfinished run (no run id)")
    wrong = [key for key in TEXT_FIELDS if not isinstance(entry.get(key, ""), str)]
    if wrong:
        raise MoaError(f"{path}: not an unfinished run ({wrong[0]} is not text)")
    if not isinstance(entry.get("run", {}), dict):
        raise MoaError(f"{path}: not an unfinished run (run is not a JSON object)")
    return entry


def find(prefix: str) -> dict | None:
    matches = [entry for entry in read()[0] if entry["id"].startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


def answered_proposals(run: dict) -> list[dict]:
    "The successful proposals of the last proposer layer that has any."
    for layer in reversed(_objects(run.get("proposer_layers"))):
        answered = [p for p in _objects(layer.get("proposers")) if p.get("status") == "ok"]
        if answered:
            return answered
    return []


def _objects(value: object) -> list[dict]:
    "The JSON objects in a list (nothing when it is not a list)."
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
