"""Files llm-moa keeps under the llm user directory (``LLM_USER_PATH`` honoured)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import llm


def moa_dir() -> Path:
    return llm.user_dir() / "moa"


def write_json_atomically(path: Path, data: Any) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over
    the target: a crash at any point leaves the old file or the new one,
    never a truncated one."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fp:
            json.dump(data, fp, indent=2)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
