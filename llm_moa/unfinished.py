"""Runs that failed after proposers had answered: their answers are kept here.

A run whose aggregator fails (or that is interrupted during aggregation) has no
answer to log, but its proposals were paid for. They are saved as one JSON file
per run under ``<llm user dir>/moa/unfinished/`` (so ``LLM_USER_PATH`` is
honoured) and shown again by ``llm moa unfinished``. Files, not database rows:
the plugin never writes to the host's database, where it could cause locking.
Nothing is saved when logging is off (``llm logs off``).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import llm

from .storage import moa_dir, write_json_atomically


def directory() -> Path:
    return moa_dir() / "unfinished"


def save(run_id: str, model_id: str, request_text: str, error: str, run: dict) -> Path | None:
    "Write one unfinished run atomically; return its path (None when logs are off)."
    if (llm.user_dir() / "logs-off").exists():
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


def entries() -> list[dict]:
    "Every saved unfinished run, newest first; unreadable files are skipped."
    folder = directory()
    found = []
    for path in folder.glob("*.json") if folder.exists() else []:
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda entry: entry.get("id", ""), reverse=True)


def find(prefix: str) -> dict | None:
    matches = [entry for entry in entries() if entry.get("id", "").startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


def answered_proposals(run: dict) -> list[dict]:
    "The successful proposals of the last proposer layer that has any."
    for layer in reversed(run.get("proposer_layers", [])):
        answered = [p for p in layer.get("proposers", []) if p.get("status") == "ok"]
        if answered:
            return answered
    return []
