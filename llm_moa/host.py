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
import os
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
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


def command_meta() -> dict | None:
    "What the running llm command keeps for its whole length (click's shared ``meta``), or None."
    import click

    context = click.get_current_context(silent=True)
    return None if context is None else context.meta


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


def exit_without_finalizing() -> bool:
    """Once click has reported an interrupted command (``Aborted!``, status 1), end
    the process without the interpreter's shutdown, which crashes (exit -11) around
    a worker thread still in native code, e.g. llama.cpp loading a model. Nothing
    is left to do by then: llm logs no interrupted prompt, and proposals are saved.
    False where the process goes on (click's CliRunner)."""
    import atexit
    import sys

    if sys.stdout is not sys.__stdout__:  # click's CliRunner: the process goes on (tests)
        return False
    atexit.unregister(_exit_now)  # once, and before any handler registered earlier
    atexit.register(_exit_now)
    return True


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
    "The keys `llm keys set` stored."
    try:
        keys = llm.load_keys()
    except (OSError, ValueError, RecursionError):  # a damaged keys.json: llm's own problem to say
        return []
    return (
        [value for value in keys.values() if isinstance(value, str)]
        if isinstance(keys, dict)
        else []
    )


def key_source(model: Any) -> str | None:
    """Where the model's key is found, by name, never the key itself: the
    place ``model.get_key()`` took it from (keys.json, or the environment
    variable); None when it finds none (its own error says how to add one)."""
    needed = getattr(model, "needs_key", None)
    if not needed:
        return "none needed"
    try:
        found = model.get_key()
    except llm.NeedsKeyException:
        return None
    variable = getattr(model, "key_env_var", None)
    if getattr(model, "key", None):
        return "set by its plugin"
    if _user_json("keys.json").get(needed) == found:
        return f"keys.json ({needed})"
    return f"${variable}" if variable and os.environ.get(variable) == found else "found"


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
    """Every sync model by id and alias, and the names that only have an async
    model; the plugin that registered each model is noted on the way."""
    by_name: dict[str, Any] = {}
    async_only: set[str] = set()
    with _noting_owners():
        entries = llm.get_models_with_aliases()
    for entry in entries:
        if entry.model is None:
            if entry.async_model is not None:
                async_only.update([entry.async_model.model_id, *entry.aliases])
            continue
        for name in [*entry.aliases, entry.model.model_id]:
            by_name[name] = entry.model
    return by_name, async_only


_owners: dict[str, Any] = {}  # model id -> the plugin whose hook registered it


@contextmanager
def _noting_owners() -> Iterator[None]:
    """While llm lists models, each plugin's ``register`` notes the ids that
    plugin registers: the owners are known from the one listing, with no hook
    run again to find them. One listing at a time wraps the hooks."""
    from llm.plugins import load_plugins, pm

    load_plugins()
    with RESOLVING:
        impls = [
            impl
            for impl in pm.hook.register_models.get_hookimpls()
            if not (impl.hookwrapper or impl.wrapper) and "register" in impl.argnames
        ]
        originals = [impl.function for impl in impls]
        for impl in impls:
            impl.function = _noting(impl.function, impl.plugin, impl.argnames.index("register"))
        try:
            yield
        finally:
            for impl, function in zip(impls, originals):
                impl.function = function


def _noting(hook: Any, plugin: Any, at: int) -> Any:
    def noted(*args: Any, **kwargs: Any) -> Any:
        register = args[at]

        def register_noted(model: Any, *more: Any, **named: Any) -> Any:
            if model is not None:
                _owners[model.model_id] = plugin
            return register(model, *more, **named)

        return hook(*args[:at], register_noted, *args[at + 1 :], **kwargs)

    return noted


def fresh_model(model: Any) -> Any | None:
    """Another object for ``model``, for another thread. A model whose state
    is plain data (ids, flags, option classes: one not called yet) is copied,
    so no plugin's hook runs again (llm-ollama's lists the server's models);
    otherwise only the hook of the plugin that registered it runs. None when
    neither can be done."""
    import copy

    from llm.plugins import pm

    state = getattr(model, "__dict__", None)
    if isinstance(state, dict) and _plain(state):
        return copy.deepcopy(model)
    plugin = _owners.get(model.model_id)
    if plugin is None or not pm.is_registered(plugin):
        return None
    return _registered_by(pm, plugin).get(model.model_id)


def _plain(value: Any) -> bool:
    "Data a copy cannot share anything mutable through: no client, lock or loaded weights."
    if value is None or isinstance(value, (str, int, float, bytes, type)):
        return True
    if isinstance(value, dict):
        return all(_plain(key) and _plain(item) for key, item in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_plain(item) for item in value)
    return False


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


def output_tokens(model_id: str, limit: int) -> list[int]:
    "The output tokens of the model's newest logged turns that recorded them, newest first."
    import sqlite3

    try:
        with closing(
            sqlite3.connect(f"file:{logs_db_path()}?mode=ro", uri=True, timeout=5)
        ) as conn:
            rows = conn.execute(
                "select output_tokens from turns where model = ? and output_tokens > 0 "
                "order by id desc limit ?",
                [model_id, limit],
            ).fetchall()
    except sqlite3.Error:  # no database yet
        return []
    return [row[0] for row in rows if type(row[0]) is int]


def logged_turns(
    database: Path, *, marker: str, count: int | None = None, prefix: str | None = None
) -> list[dict]:
    """Log rows (as `llm logs --json` has them, response_json expanded) of the
    turns whose response_json contains ``marker``, newest first."""
    import sqlite3

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
        except sqlite3.OperationalError:  # a database llm has not created its tables in yet
            return []
        rows = log_rows(LogStore(db), ids=ids) if ids else []
    finally:
        db.close()
    return sorted(rows, key=lambda row: row["id"], reverse=True)
