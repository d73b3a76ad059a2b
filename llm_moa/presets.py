"""Named presets: saved option sets that become ``moa-NAME`` models.

All presets live in one file, ``<llm user dir>/moa/presets.json``, written
atomically. A preset keeps the options exactly as ``-o`` would give them to
the model, so ``llm -m moa-NAME -o layers 2`` overrides a saved value.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

from .storage import moa_dir, write_json_atomically

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,47}$")
RESERVED = {"default", "local"}


class PresetError(ValueError):
    "A bad preset name or file; one line."


def path() -> Path:
    return moa_dir() / "presets.json"


def load() -> dict[str, dict]:
    "Every saved preset by name. A missing file is no presets; a damaged one is an error."
    file = path()
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as ex:
        raise PresetError(f"Cannot read {file}: {ex}")
    if not isinstance(data, dict):
        raise PresetError(f"Cannot read {file}: expected a JSON object")
    return {name: entry for name, entry in data.items() if isinstance(entry, dict)}


def load_quietly() -> dict[str, dict]:
    "For model registration, which runs on every llm command: never raise."
    try:
        return load()
    except PresetError:
        return {}


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise PresetError(
            f"Invalid preset name {name!r}: use lowercase letters, digits, '.', '_' or '-' "
            "(it becomes the model id moa-NAME)"
        )
    if name in RESERVED:
        raise PresetError(f"{name!r} is reserved for the built-in moa-{name}; choose another name")
    return name


def save(name: str, options: dict[str, Any], *, force: bool) -> bool:
    "Save a preset; return True when it replaced one. Refuses to replace without force."
    presets = load()
    replaced = name in presets
    if replaced and not force:
        raise PresetError(f"Preset {name!r} already exists; use --force to replace it")
    presets[name] = {
        "options": options,
        "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomically(path(), presets)
    return replaced


def remove(name: str) -> None:
    presets = load()
    if name not in presets:
        raise PresetError(f"No preset named {name!r}; 'llm moa list' shows them")
    del presets[name]
    write_json_atomically(path(), presets)


def options_of(entry: dict) -> dict[str, Any]:
    options = entry.get("options")
    return dict(options) if isinstance(options, dict) else {}
