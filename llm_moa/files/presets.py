"""Named presets: saved option sets that become ``moa-NAME`` models (README: "Presets").

Every change is a locked read-modify-write, so ``llm`` processes saving or
removing presets at once keep each other's changes. An entry edited by hand
into something that is not a preset is never registered; ``llm moa list`` says why.
"""

from __future__ import annotations

import datetime
import re
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import MoaError, parse
from .storage import moa_dir, read_json, update_json

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,47}")
RESERVED = {"default", "local"}


class Preset(BaseModel):
    "One entry of presets.json."

    model_config = ConfigDict(extra="allow", defer_build=True)  # built when a preset is read

    options: dict[str, Any] = {}
    saved: str | None = None


def path() -> Path:
    return moa_dir() / "presets.json"


def read() -> tuple[dict[str, Preset], dict[str, str]]:
    """The presets by name, and the file's other entries with what is wrong
    with each. A missing file is no presets; an unreadable one a ``MoaError``."""
    presets: dict[str, Preset] = {}
    invalid: dict[str, str] = {}
    for name, entry in read_json(path(), {}).items():
        try:
            check_name(name)
            presets[name] = parse(Preset, entry, partial(_about, name))
        except MoaError as ex:
            invalid[name] = str(ex)
    return presets, invalid


def _about(name: str, problem: str) -> str:
    "'Preset 'p' is not a JSON object', 'Preset 'p': options is not a JSON object'"
    return f"Preset {name!r}{' ' if problem.startswith('is ') else ': '}{problem}"


def load_quietly() -> dict[str, dict]:
    """Each preset's options, for model registration, which runs on every llm
    command: never raises (`llm moa list` says what is wrong)."""
    try:
        return {name: preset.options for name, preset in read()[0].items()}
    except MoaError:
        return {}


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise MoaError(
            f"Invalid preset name {name!r}: use lowercase letters, digits, '.', '_' or '-' "
            "(it becomes the model id moa-NAME)"
        )
    if name in RESERVED:
        raise MoaError(f"{name!r} is reserved for the built-in moa-{name}; choose another name")


def save(name: str, options: dict[str, Any], *, force: bool) -> bool:
    "Save a preset whose name check_name accepted; return True when it replaced one (which needs force)."

    def change(presets: dict) -> bool:
        replaced = name in presets
        if replaced and not force:
            raise MoaError(f"Preset {name!r} already exists; use --force to replace it")
        presets[name] = {
            "options": options,
            "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        return replaced

    return update_json(path(), change)


def remove(name: str) -> None:
    "Remove a preset, or any entry of that name (one that is not a valid preset, too)."

    def change(presets: dict) -> None:
        if name not in presets:
            raise MoaError(f"No preset named {name!r}; 'llm moa list' shows them")
        del presets[name]

    update_json(path(), change)
