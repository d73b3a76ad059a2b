"""The eval's prompts: JSONL or CSV rows with a ``prompt``, optional ``system`` and ``answer``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MoaError
from ..files.storage import read_bytes, read_stdin
from ..text import shorten, visible

MAX_BYTES = 256 * 2**20  # a prompts or results file larger than this is refused, not read


@dataclass(frozen=True)
class Row:
    line: int
    prompt: str
    system: str | None = None
    answer: str | None = None

    @property
    def key(self) -> str:
        "Identifies the prompt in the results file, whatever its position."
        return hashlib.sha256(f"{self.system or ''}\0{self.prompt}".encode()).hexdigest()[:16]


def read_rows(source: str) -> list[Row]:
    "JSONL or CSV rows with `prompt`, optional `system` and `answer`; `-` is stdin. UTF-8, BOM or not."
    if source == "-":
        data, name = read_stdin(MAX_BYTES), "stdin"
    else:
        data, name = read_bytes(Path(source), MAX_BYTES), Path(source).name
        if data is None:
            raise MoaError(f"No such file: {source}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as ex:
        line = data[: ex.start].count(b"\n") + 1
        raise MoaError(f"{name} line {line}: not UTF-8 text (save the file as UTF-8)")
    if not text.strip():
        raise MoaError(f"{name} has no prompts")
    looks_csv = source.lower().endswith(".csv") or text.lstrip()[:1] not in ("{", "[")
    rows = _csv_rows(text, name) if looks_csv else _jsonl_rows(text, name)
    if not rows:
        raise MoaError(f"{name} has no prompts")
    return rows


def _jsonl_rows(text: str, name: str) -> list[Row]:
    rows = []
    # not splitlines: JSON strings may hold U+2028
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as ex:
            raise MoaError(f"{name} line {number}: invalid JSON ({ex.args[0]})")
        except RecursionError:
            raise MoaError(f"{name} line {number}: JSON nested too deeply")
        rows.append(_row(data, number, name))
    return rows


def _csv_rows(text: str, name: str) -> list[Row]:
    # a prompt may be as long as the file
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    reader = csv.DictReader(io.StringIO(text))
    try:
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            found = ", ".join(reader.fieldnames or [])
            found = shorten(visible(found, newlines=False), 100) or "none"
            raise MoaError(f"{name}: CSV needs a 'prompt' column (found: {found})")
        return [_row(data, number, name) for number, data in enumerate(reader, 2)]
    except csv.Error as ex:
        raise MoaError(f"{name} line {reader.line_num}: invalid CSV ({ex})")


def _row(data: Any, number: int, name: str) -> Row:
    if not isinstance(data, dict):
        raise MoaError(f"{name} line {number}: expected an object with a 'prompt'")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise MoaError(f"{name} line {number}: missing or empty 'prompt'")
    for key in ("system", "answer"):
        if data.get(key) is not None and not isinstance(data[key], (str, int, float)):
            raise MoaError(f"{name} line {number}: '{key}' must be text")
    answer = data.get("answer")
    system = data.get("system")
    return Row(
        number,
        prompt,
        str(system) if system else None,
        None if answer in (None, "") else str(answer),
    )
