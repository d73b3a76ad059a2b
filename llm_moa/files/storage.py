"""Files llm-moa keeps under the llm user directory (``LLM_USER_PATH`` honoured).

Every file is written whole (a temporary file renamed over the old one), and
every read-modify-write holds a cross-process lock, so two ``llm`` processes
saving at once both keep their change. Whatever a file contains, reading it
gives its data or a ``MoaError`` naming the file and what is wrong: every file
is read by ``read_bytes``, which reads regular files only (a FIFO would block
every ``llm`` command, a link to ``/dev/zero`` would fill memory) and at most
``MAX_BYTES`` of them (the eval's prompts and results files: its own cap).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MoaError
from ..host import user_dir

LOCK_TIMEOUT = 30.0
MAX_BYTES = (
    10 * 2**20
)  # a preset or price file is a few KB; an unfinished run of 128 long answers ~3 MB


def moa_dir() -> Path:
    return user_dir() / "moa"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    "Hold ``PATH.lock`` (a cross-process lock) while the block runs."
    import filelock

    _make_parent(path)
    lock = filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise MoaError(f"{path}: still locked by another llm process after {LOCK_TIMEOUT:g}s")
    except OSError as ex:  # a folder or a read-only file where the lock file goes
        raise MoaError(f"{path}.lock: cannot be used as a lock file ({ex.strerror or ex})")
    try:
        yield
    finally:
        lock.release()


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes | None:
    """The bytes of a regular file (None when it is missing). Anything else (a
    FIFO that would block, a device that never ends, a folder), or more than
    ``limit`` bytes, is a ``MoaError`` naming the file, and nothing is read from it."""
    try:  # O_NONBLOCK: opening a FIFO never waits for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a file stands where a folder should be
        raise MoaError(f"{path}: cannot be read, a file stands where a folder should be")
    except OSError as ex:
        raise MoaError(f"{path}: cannot be read ({ex.strerror or ex})")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # before fdopen, which refuses a folder
        os.close(fd)
        raise MoaError(f"{path}: cannot be read, not a regular file")
    with os.fdopen(fd, "rb") as fp:
        try:  # a file that says it is too large is not read at all
            data = fp.read(limit + 1) if info.st_size <= limit else None
        except OSError as ex:
            raise MoaError(f"{path}: cannot be read ({ex.strerror or ex})")
    if data is None or len(data) > limit:
        raise MoaError(f"{path}: cannot be read, larger than {limit / 2**20:g} MB")
    return data


def read_stdin(limit: int = MAX_BYTES) -> bytes:
    "Standard input, at most ``limit`` bytes (a pipe from /dev/zero never fills memory)."
    import sys

    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise MoaError(f"stdin: larger than {limit // 2**20} MiB")
    return data


def read_text(path: Path, limit: int = MAX_BYTES) -> str | None:
    "The UTF-8 text of a regular file (None when it is missing), read by ``read_bytes``."
    data = read_bytes(path, limit)
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError:
        raise MoaError(f"{path}: not UTF-8 text")


def read_json(path: Path, default: Any) -> Any:
    "The file's JSON object (``default`` when missing); a ``MoaError`` naming the file otherwise."
    content = read_text(path)
    if content is None:
        return default
    try:
        data = json.loads(content)
    except RecursionError:
        raise MoaError(f"{path}: JSON nested too deeply")
    except ValueError as ex:
        raise MoaError(f"{path}: not valid JSON ({ex})")
    if not isinstance(data, dict):
        raise MoaError(f"{path}: expected a JSON object")
    return data


def write_json_atomically(path: Path, data: Any) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over
    the target: a crash at any point leaves the old file or the new one,
    never a truncated one. A symlink stays one: its target is written."""
    import tempfile

    path = Path(os.path.realpath(path))
    _make_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            json.dump(data, fp, indent=2)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_json(path: Path, change: Callable[[dict], Any]) -> Any:
    "Read, change and write back a JSON object under the file's lock; return what change returns."
    with locked(path):
        data = read_json(path, {})
        result = change(data)
        write_json_atomically(path, data)
    return result


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MoaError(f"{path.parent}: cannot be created, a file stands where a folder should be")
    except OSError as ex:
        raise MoaError(f"{path.parent}: cannot be created ({ex.strerror or ex})")
