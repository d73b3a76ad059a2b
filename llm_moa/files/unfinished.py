"""Runs that failed after proposers had answered: their paid-for answers are kept
and shown here, one JSON file each (README: "Failure handling"). Files, not database
rows: the plugin never writes to the host's database, where it could cause
locking. A file that does not read as an unfinished run is skipped, with one
line naming it.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from .. import text
from ..errors import MoaError
from ..host import logs_on
from .storage import moa_dir, read_json, write_json_atomically

TEXT_FIELDS = ("datetime_utc", "model", "prompt", "error")


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


def read() -> tuple[list[dict], list[str]]:
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


def find(prefix: str) -> dict:
    "The one unfinished run whose id starts with ``prefix``."
    matches = [entry for entry in read()[0] if entry["id"].startswith(prefix)]
    if len(matches) != 1:
        raise MoaError(f"No unfinished run matches {prefix!r}; 'llm moa unfinished' lists them")
    return matches[0]


def table(entries: list[dict]) -> str:
    "The list `llm moa unfinished` shows."
    rows = [("id", "time (UTC)", "model", "answered", "error")]
    for entry in entries:
        error = entry.get("error", "").splitlines() or [""]
        rows.append(
            (
                entry["id"],
                entry.get("datetime_utc", "")[:19].replace("T", " "),
                entry.get("model", ""),
                len(answered_proposals(entry.get("run", {}))),
                error[0],
            )
        )
    return text.table(rows)


def show_text(entry: dict) -> str:
    "One unfinished run in full, as `llm moa unfinished ID` shows it: every answered proposal."
    lines = [
        f"# {entry['id']}  {entry.get('datetime_utc', '')}  {entry.get('model', '')}",
        "",
        "## Prompt",
        "",
        entry.get("prompt", ""),
        "",
        "## Error",
        "",
        entry.get("error", ""),
        "",
    ]
    for number, proposal in enumerate(answered_proposals(entry.get("run", {})), 1):
        lines += [
            f"## Proposal {number}: {proposal.get('model')}",
            "",
            str(proposal.get("text", "")),
            "",
        ]
    return text.visible("\n".join(lines))  # answers and errors come from models


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
