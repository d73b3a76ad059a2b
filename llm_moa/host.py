"""The one door to ``llm`` beyond its public API.

Everything llm-moa reads from the host that llm does not document for plugins
lives here: the log database (its path, ``-d``, the ``turns`` table), saved
model options, stored keys, the logs-off switch, the running click command and
pluggy's hooks. When the next llm changes one of them, this is the file to
change. Files are read directly (``llm.cli``'s helpers cost 250 ms to import),
and one that cannot be read counts as empty.
"""

from __future__ import annotations

import json
import threading
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import llm


def user_dir() -> Path:
    return llm.user_dir()


def cli_params() -> dict[str, Any] | None:
    "The parameters of the running llm command, or None outside the CLI."
    import click

    context = click.get_current_context(silent=True)
    return None if context is None else context.params


def given_option_names() -> set[str]:
    """The options named on the running llm command: its -o pairs, and its
    templates' options (-t), which llm too puts above saved defaults."""
    params = cli_params() or {}
    names = {name for name, _ in params.get("options") or ()}
    templates = params.get("template") or ()
    if templates:  # llm.cli is loaded: this is its command
        from llm.cli import load_template

        for name in [templates] if isinstance(templates, str) else templates:
            with suppress(Exception):  # llm has loaded it once; a URL may fail the second time
                names.update(load_template(name).options or {})
    return names


def on_command_end(callback: Any) -> bool:
    """Run ``callback`` when the running llm command ends, however it ends
    (after the answer's last newline, or while Ctrl-C unwinds it). While the
    command runs, SIGTERM unwinds it the way Ctrl-C does. False outside the CLI."""
    import signal

    import click

    context = click.get_current_context(silent=True)
    if context is None:
        return False
    context.call_on_close(callback)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _interrupt)
        context.call_on_close(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    return True


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def exit_without_finalizing() -> None:
    """Once click has reported an interrupted command (``Aborted!``, status 1), end
    the process without the interpreter's shutdown, which crashes (exit -11) around
    a worker thread still in native code, e.g. llama.cpp loading a model. Nothing
    is left to do by then: llm logs no interrupted prompt, and proposals are saved."""
    import atexit
    import sys

    if sys.stdout is not sys.__stdout__:  # click's CliRunner: the process goes on (tests)
        return
    atexit.unregister(_exit_now)  # once, and before any handler registered earlier
    atexit.register(_exit_now)


def _exit_now() -> None:
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError, AttributeError):  # closed, or not a file
            stream.flush()
    os._exit(1)


def logs_db_path(database: Path | str | None = None) -> Path:
    "The database llm logs to: ``database``, else the running command's -d, else logs.db."
    database = database or (cli_params() or {}).get("database")
    return Path(database) if database else user_dir() / "logs.db"


def logs_on() -> bool:
    "False after `llm logs off`."
    return not (user_dir() / "logs-off").exists()


def saved_model_options(model_id: str) -> dict[str, Any]:
    "Defaults saved with `llm models options set`."
    options = _user_json("model_options.json").get(model_id)
    return dict(options) if isinstance(options, dict) else {}


def stored_keys() -> list[str]:
    "The values in keys.json (`llm keys set`)."
    return [value for value in _user_json("keys.json").values() if isinstance(value, str)]


def _user_json(name: str) -> dict:
    try:
        data = json.loads((user_dir() / name).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


# --- models ---------------------------------------------------------------

RESOLVING = threading.RLock()  # llm's hooks are not re-entrant: one resolution at a time


def get_model(name: str) -> Any:
    "llm.get_model, serialised with every other resolution this process makes."
    with RESOLVING:
        return llm.get_model(name)


def models_by_name() -> tuple[dict[str, Any], set[str]]:
    "Every sync model by id and alias, and the names that only have an async model."
    by_name: dict[str, Any] = {}
    async_only: set[str] = set()
    for entry in llm.get_models_with_aliases():
        if entry.model is None:
            if entry.async_model is not None:
                async_only.update([entry.async_model.model_id, *entry.aliases])
            continue
        for name in [*entry.aliases, entry.model.model_id]:
            by_name[name] = entry.model
    return by_name, async_only


_owners: dict[str, Any] = {}  # model id -> the plugin that registers it


def fresh_model(model_id: str) -> Any | None:
    """A new object for ``model_id``, made by running only the hook of the
    plugin that registers it (other plugins' hooks can be slow: some list
    models over the network). None when no single plugin registers it."""
    from llm.plugins import pm

    owner = _owners.get(model_id)
    candidates = [owner] if owner is not None and pm.is_registered(owner) else []
    for plugin in candidates + list(pm.get_plugins()):
        found = _registered_by(pm, plugin)
        if model_id in found:
            _owners[model_id] = plugin
            return found[model_id]
    return None


def _registered_by(pm: Any, plugin: Any) -> dict[str, Any]:
    caller = pm.subset_hook_caller(
        "register_models", remove_plugins=[p for p in pm.get_plugins() if p is not plugin]
    )
    found: dict[str, Any] = {}

    def register(model: Any, async_model: Any = None, aliases: Any = None) -> None:
        if model is not None:
            found[model.model_id] = model

    caller(register=register, model_aliases=[])
    return found


def conversation_with(model: Any, turns: list[tuple[str, str]], system: str) -> Any:
    """An ``llm.Conversation`` whose ``responses`` are the earlier turns, done: for
    plugins that read history from ``conversation.responses``, not ``prompt.messages``.
    Its ``prompt(messages=...)`` still sends exactly those messages to the others."""
    conversation = llm.Conversation(model=model)
    for question, answer in turns:
        prompt = llm.Prompt(question, model=model, system=system or None)
        response = llm.Response(prompt, model, stream=False, conversation=conversation)
        response._chunks, response._done = [answer], True  # llm has no public way to make one
        conversation.responses.append(response)
    return conversation


# --- the log database -----------------------------------------------------


def last_options(thread_id: str, model_id: str) -> dict:
    "The options of a conversation's newest logged turn, if ``model_id`` ran it."
    import sqlite3

    try:
        with closing(
            sqlite3.connect(f"file:{logs_db_path()}?mode=ro", uri=True, timeout=5)
        ) as conn:
            row = conn.execute(
                "select model, options_json from turns where thread_id = ? order by id desc limit 1",
                [thread_id],
            ).fetchone()
        options = json.loads(row[1]) if row and row[0] == model_id and row[1] else {}
    except (
        sqlite3.Error,
        ValueError,
        TypeError,
        RecursionError,
    ):  # no database yet, or a damaged row
        return {}
    return options if isinstance(options, dict) else {}


def logged_turns(
    database: Path, *, marker: str, count: int | None = None, prefix: str | None = None
) -> list[dict]:
    """Log rows (as `llm logs --json` has them, response_json expanded) of the
    turns whose response_json contains ``marker``, newest first."""
    import sqlite_utils
    from llm.logs import LogStore, log_rows

    db = sqlite_utils.Database(database)
    try:
        sql = "select id from turns where instr(response_json, :marker) > 0 and json_valid(response_json)"
        params: dict[str, Any] = {"marker": marker}
        if prefix:
            sql += " and id like :prefix"
            params["prefix"] = f"{prefix}%"
        sql += " order by id desc" + (f" limit {int(count)}" if count else "")
        try:
            ids = [row["id"] for row in db.query(sql, params)]
        except Exception:  # a database llm has not created its tables in yet
            return []
        rows = log_rows(LogStore(db), ids=ids) if ids else []
    finally:
        db.close()
    return sorted(rows, key=lambda row: row["id"], reverse=True)
