"""The eval's results file: one JSON line per answer or judgement, appended as it arrives.

Each line is read back through the small models below, once: a line that does
not parse as one of them, or says what cannot be true (a negative duration, a
count of calls or tokens below zero), is an unreadable line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ..errors import MoaError
from ..files.storage import locked, read_bytes
from .inputs import MAX_BYTES

ORDERS = ("candidate-first", "baseline-first")
Count = Annotated[int, Field(ge=0, lt=10**15)]


class _Strict(BaseModel):
    # extra fields are allowed (another version's); values are taken as written, never coerced
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


class Tokens(_Strict):
    input: Count | None = None
    output: Count | None = None


class Billed(_Strict):
    "One paid call behind an answer or judgement, priced when the report is made."

    model: str
    usage: Tokens | Literal["unknown"] | None = None


class _Made(_Strict):
    "What answers and judgements share: who made them with which saved options, at what cost."

    key: str  # Row.key: the prompt
    options_sha: str | None = None
    billed: list[Billed] | None = None  # None: written before costs were kept
    error: str | None = None  # a failure: kept for the report, made again on the next run

    @property
    def ok(self) -> bool:
        return self.error is None


class Answer(_Made):
    type: Literal["answer"] = "answer"
    model: str
    line: int | None = None
    text: str | None = None
    calls: Count | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    duration_ms: Annotated[float, Field(ge=0, lt=1e15)] | None = None

    @model_validator(mode="after")
    def _answered_or_failed(self) -> Answer:
        if self.ok and (self.text is None or self.duration_ms is None):
            raise ValueError("an answer needs its text and duration, or an error")
        return self

    @property
    def identity(self) -> tuple:
        return answer_key(self.model, self.key, self.options_sha)


class Judgement(_Made):
    type: Literal["judgement"] = "judgement"
    candidate: str
    baseline: str
    judge: str
    order: Literal[ORDERS]
    raw: str | None = None
    verdict: Literal["A", "B", "tie"] | None = None  # None: the judge's reply was unreadable
    winner: Literal["candidate", "baseline"] | None = None  # None: a tie

    @property
    def identity(self) -> tuple:
        models = (self.candidate, self.baseline, self.judge)
        return judgement_key(models, self.key, self.order, self.options_sha)


def answer_key(model: str, key: str, options_sha: str | None) -> tuple:
    "What an answer is the answer of: its model, prompt and saved options."
    return ("answer", model, key, options_sha)


def judgement_key(models: tuple, key: str, order: str, options_sha: str | None) -> tuple:
    "What a judgement is the verdict on: (candidate, baseline, judge), prompt, order, saved options."
    return ("judgement", *models, key, order, options_sha)


class Crashed(_Strict):
    "A task that raised instead of answering: kept for the record, never read back as done."

    type: Literal["error"]
    error: str


Record = Annotated[Answer | Judgement | Crashed, Field(discriminator="type")]
_RECORD: TypeAdapter[Record] = TypeAdapter(Record)


class Results:
    """Append-only JSONL of answers and judgements, which several evals may share.

    Only successes are done: a failure is kept for the record and the report,
    and made again on the next run. So are answers and judgements made with
    other saved options than today's (``options_sha`` tells them apart).

    A line that cannot be read (torn by a crash, edited by hand, not this
    module's) is skipped and counted in ``skipped``."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[tuple, Answer | Judgement] = {}
        self.skipped = 0
        for line in filter(bytes.strip, (read_bytes(path, MAX_BYTES) or b"").splitlines()):
            try:  # json.loads: a model's text may hold a lone surrogate, escaped as \ud800
                record = _RECORD.validate_python(json.loads(line))
            except (ValueError, RecursionError):  # torn, not UTF-8, too deep, not true
                self.skipped += 1
                continue
            self._index(record)

    def check_lock(self) -> None:
        """Refuse, before any call is paid for, a lock file that could never be
        taken and a results file that could never be written (a read-only folder
        or file)."""
        lock = Path(f"{self.path}.lock")
        if lock.exists() and not lock.is_file():
            raise MoaError(f"{lock}: cannot be used as the results file's lock (not a file)")
        try:  # opened to append, nothing written: no lock needed, another eval may hold it
            open(self.path, "ab").close()
        except OSError as ex:
            raise MoaError(f"{self.path}: cannot be written ({ex.strerror or ex})")

    def _index(self, record: Any) -> None:
        "The latest record of its answer or judgement; a failure never hides a success."
        if isinstance(record, Crashed):
            return
        known = self.records.get(record.identity)
        if record.ok or known is None or not known.ok:
            self.records[record.identity] = record

    def get(self, identity: tuple, failed: bool = False) -> Any:
        """The answer or judgement made (see Eval.answer_id); with ``failed``,
        the latest failure when none was made. None when there is none."""
        record = self.records.get(identity)
        return record if record is not None and (failed or record.ok) else None

    def add(self, record: Answer | Judgement | Crashed) -> None:
        """Append one line under the file's lock (so evals sharing the file
        never interleave), after ending a line torn by an earlier crash."""
        line = json.dumps(record.model_dump(exclude_none=True)).encode() + b"\n"
        try:
            with locked(self.path), open(self.path, "a+b") as fp:
                if fp.seek(0, os.SEEK_END):
                    fp.seek(-1, os.SEEK_END)
                    line = line if fp.read(1) == b"\n" else b"\n" + line
                fp.write(line)
                fp.flush()
                os.fsync(fp.fileno())
        except OSError as ex:
            raise MoaError(f"{self.path}: cannot be written ({ex.strerror or ex})")
        self._index(record)
