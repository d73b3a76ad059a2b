"""One MoA run as the llm models drive it: options, plan, engine, record.

Imported only when a MoA model runs, so that registering the models (which
happens on every llm command that resolves a model) stays cheap.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Iterator


from .calls import Clock, Stopped
from .config import MoaOptions, parse_config
from .engine import MoaRunError, run_moa
from .plan import make_plan
from .record import RunRecord, describe_error


class Session:
    "One run: options parsed and models resolved up front, then the engine."

    def __init__(self, moa: Any, prompt: Any, response: Any, conversation: Any = None):
        given = {key: value for key, value in prompt.options if value is not None}
        earlier = previous_options(moa.model_id, conversation)
        defaults = saved_defaults_among(moa.model_id, given) if earlier else {}
        explicit = {key: value for key, value in given.items() if key not in defaults}
        self.config = parse_config({**moa.preset, **defaults, **earlier, **explicit})
        self.plan = make_plan(self.config, prompt)
        self.run = RunRecord(moa.model_id, self.config.layers)
        self.response = response

    def events(self, stop: threading.Event | None = None) -> Iterator[Any]:
        from llm.parts import StreamEvent

        from .progress import for_run

        clock = Clock()
        progress = for_run(self.config.progress, self.run)
        try:
            for kind, chunk in run_moa(self.plan, self.run, clock=clock, stop=stop):
                if progress:  # the answer starts: clear the progress block first
                    progress.stop()
                yield chunk if kind == "text" else StreamEvent(type=kind, chunk=chunk)
        except (MoaRunError, KeyboardInterrupt, Stopped) as ex:
            if progress:
                progress.stop()  # before anything more is printed
            self.run.wall = clock.since(time.monotonic())
            self.run.error = _failure_label(ex)
            saved = self._save_unfinished()
            if saved and isinstance(ex, MoaRunError):
                raise MoaRunError(f"{ex}\n{saved}") from None
            if saved and isinstance(ex, KeyboardInterrupt):
                print(f"\n{saved}", file=sys.stderr)
            raise
        finally:
            if progress:
                progress.stop()
            if self.run.wall is None:
                self.run.wall = clock.since(time.monotonic())
            self._finish()

    def _save_unfinished(self) -> str | None:
        "Keep paid-for proposals of a run that ends without an answer."
        from . import unfinished

        answered = sum(call.ok for call in self.run.calls if call.role == "proposer")
        if not answered:
            return None
        path = unfinished.save(
            self.response.id, self.run.moa_model, self.plan.request.text,
            self.run.error or "", self.run.to_json()["moa"],
        )
        if path is None:
            return None
        noun = "proposal is" if answered == 1 else "proposals are"
        return f"The {answered} answered {noun} saved; show them with: llm moa unfinished {self.response.id}"

    def _finish(self) -> None:
        total_in, total_out, details = self.run.usage()
        self.response.set_usage(input=total_in, output=total_out, details=details)
        self.response.response_json = self.run.to_json()


def _failure_label(ex: BaseException) -> str:
    if isinstance(ex, KeyboardInterrupt):
        return "interrupted"
    if isinstance(ex, Stopped):
        return "cancelled"
    return describe_error(ex)


def previous_options(model_id: str, conversation: Any) -> dict:
    """The options of the previous turn of this MoA conversation.

    llm does not carry ``-o`` options over to ``llm -c``, but for a MoA model
    they *are* the combo, so a continued conversation keeps its proposers and
    aggregator unless new options are given. Python conversations have their
    responses in memory; on ``llm -c`` they are read from the host's log.
    """
    if conversation is None:
        return {}
    for earlier in reversed(getattr(conversation, "responses", None) or []):
        if earlier.model.model_id == model_id:
            return {k: v for k, v in earlier.prompt.options if v is not None}
        return {}
    if not getattr(conversation, "loaded_messages", None):
        return {}
    return _logged_options(model_id, conversation.id)


def saved_defaults_among(model_id: str, given: dict) -> dict:
    """The options in ``given`` that are this model's saved defaults.

    The CLI merges ``llm models options set`` defaults into the options it
    passes, so they look like ``-o`` values. On a continued conversation they
    must not override the conversation's own combo; only a real ``-o`` may.
    """
    from .plan import saved_model_options

    saved = saved_model_options(model_id)
    if not saved:
        return {}
    try:
        normalised = MoaOptions(**saved).model_dump(exclude_none=True)
    except Exception:  # saved values are checked when a run parses them
        return {}
    return {key: value for key, value in given.items() if key in normalised and normalised[key] == value}


def _logged_options(model_id: str, thread_id: str) -> dict:
    import json
    import sqlite3

    path = _logs_path()
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute(
                "select model, options_json from turns where thread_id = ? order by id desc limit 1",
                [thread_id],
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    if not row or row[0] != model_id or not row[1]:
        return {}
    try:
        return dict(json.loads(row[1]))
    except (ValueError, TypeError):
        return {}


def _logs_path():
    "The database llm logs to: -d/--database when given, else logs.db."
    from pathlib import Path

    import click
    from llm.cli import logs_db_path

    context = click.get_current_context(silent=True)
    database = context.params.get("database") if context is not None else None
    return Path(database) if database else logs_db_path()


