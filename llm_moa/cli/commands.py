"""The ``llm moa`` command group (registered in __init__.py). Heavy work is imported inside each command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import MoaError
from ..text import count, json_text, visible

DATABASE = click.option(
    "-d",
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Path to the log database (default: the one `llm logs` reads)",
)
JSON = click.option("json_", "--json", is_flag=True, help="Output as JSON")


class MoaGroup(click.Group):
    """`llm moa`. Its commands are added when it is first used, not by every llm command,
    and bad input to any of them (a MoaError) is click's one-line 'Error: ...', shown visibly."""

    def list_commands(self, ctx):
        if not self.commands:
            for command in (save, list_, remove, runs, show, unfinished):
                self.add_command(command)
            _add_commands(self)
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self.list_commands(ctx)  # adds the commands
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MoaError as ex:
            raise click.ClickException(visible(str(ex), newlines=False))


@click.command()
@click.argument("name")
@click.option(
    "options",
    "-o",
    "--option",
    type=(str, str),
    multiple=True,
    help="A MoA option, as for llm -m moa-default -o KEY VALUE",
)
@click.option("--force", is_flag=True, help="Replace a preset of the same name")
def save(name: str, options: tuple[tuple[str, str], ...], force: bool) -> None:
    """Save options as a preset, used as the model moa-NAME

    \b
        llm moa save research -o proposers gpt-4o,claude-3.5-sonnet \\
          -o aggregator claude-3-opus -o layers 3
        llm -m moa-research "..."
    """
    from ..core.options import config_from, validate
    from ..core.plan import resolve_members
    from ..files import presets

    presets.check_name(name)
    stored = validate(dict(options)).model_dump(exclude_none=True)
    config = config_from(stored)
    resolve_members(config)  # every model and inner option, as a run checks them
    replaced = presets.save(name, stored, force=force)
    facts = _facts(config)
    click.echo(
        f"{'Replaced' if replaced else 'Saved'} preset {name!r} as model moa-{name}: "
        f"{count(config.proposer_count, 'proposer')}, aggregator {facts['aggregator']}, "
        f"{facts['layers']} layers, {facts['calls_per_prompt']} calls per prompt"
    )


@click.command(name="list")
@JSON
def list_(json_: bool) -> None:
    "List saved presets"
    from ..core.options import config_from
    from ..files import presets

    saved, invalid = presets.read()
    items, lines = [], []
    for name, preset in sorted(saved.items()):
        item = {
            "name": name,
            "model_id": f"moa-{name}",
            "options": preset.options,
            "saved": preset.saved,
        }
        try:
            item.update(_facts(config_from(item["options"])))
            lines.append(
                f"moa-{name}: proposers {', '.join(item['proposers'])}; aggregator {item['aggregator']}; "
                f"{count(item['layers'], 'layer')}; {count(item['calls_per_prompt'], 'call')} per prompt"
            )
        except ValueError as ex:  # saved by hand or by an older version: still listed
            item["error"] = str(ex)
            lines.append(f"moa-{name}: invalid ({ex})")
        items.append(item)
    for name, problem in sorted(invalid.items()):
        items.append({"name": name, "model_id": None, "error": problem})
        lines.append(f"{presets.path()}: skipped, not a preset: {problem}")
    _echo(
        items,
        json_,
        "\n".join(visible(line, newlines=False) for line in lines)
        or "No presets saved. Save one with: llm moa save NAME -o proposers A,B -o aggregator C",
    )


@click.command()
@click.argument("name")
def remove(name: str) -> None:
    "Remove a saved preset"
    from ..files import presets

    presets.remove(name)
    click.echo(f"Removed preset {name!r} (model moa-{name})")


@click.command()
@click.option(
    "-n",
    "--count",
    "count_",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many runs (0 for all)",
)
@JSON
@DATABASE
def runs(count_: int, json_: bool, database: Path | None) -> None:
    "Recent MoA runs from the logs: proposers, calls, tokens and wall time"
    from ..host import logs_db_path
    from ..prices import load
    from .views import load_runs, runs_table, show_json, summary

    found, bad = load_runs(logs_db_path(database), count=count_ or None)
    for problem in bad:
        _warn(f"skipped {problem}")
    prices = load(warn=_warn) if found else None  # an unreadable prices file: one warning, no costs
    summaries = [summary(show_json(row, record, prices), record) for row, record in found]
    _echo(summaries, json_, runs_table(summaries) if found else "No MoA runs logged yet.")


@click.command()
@click.argument("run_id", required=False)
@JSON
@DATABASE
def show(run_id: str | None, json_: bool, database: Path | None) -> None:
    """Show one MoA run in full, with a timeline (default: the latest)

    RUN_ID is the log id, or a unique prefix of it, as `llm moa runs` lists.
    Without it, a newer run whose record cannot be read is named on stderr.
    """
    from ..host import logs_db_path
    from ..prices import load
    from .views import find_run, show_json, show_text

    (row, record), bad = find_run(logs_db_path(database), run_id)
    for problem in bad:
        _warn(f"skipped {problem}")
    shown = show_json(row, record, load(warn=_warn))
    _echo(shown, json_, show_text(shown, record))


@click.command()
@click.argument("run_id", required=False)
@JSON
def unfinished(run_id: str | None, json_: bool) -> None:
    """Runs that failed after proposers had answered, with their answers

    Without RUN_ID, lists them, newest first. With RUN_ID (or a unique
    prefix of it), shows the prompt, the error and every answered proposal.
    """
    from ..files import unfinished as files
    from .views import unfinished_table, unfinished_text

    if run_id is not None:
        entry = files.find(run_id)
        _echo(entry.model_dump(exclude_unset=True), json_, unfinished_text(entry))
        return
    found, problems = files.read()
    for problem in problems:
        click.echo(visible(f"Skipped {problem}", newlines=False), err=True)
    listed = [entry.model_dump(exclude_unset=True) for entry in found]
    _echo(listed, json_, unfinished_table(found) if found else "No unfinished runs.")


def _add_commands(moa: click.Group) -> None:
    "The commands that live in modules of their own."
    from .eval import eval_command
    from .plan import plan_command
    from .prices import prices

    moa.add_command(eval_command)
    moa.add_command(plan_command)
    moa.add_command(prices)


def _echo(data: Any, json_: bool, text: str) -> None:
    "DATA as JSON with --json, else TEXT (its view)."
    click.echo(json_text(data) if json_ else text)


def _warn(message: str) -> None:
    click.echo(visible(f"Warning: {message}", newlines=False), err=True)


def _facts(config) -> dict:
    "What `llm moa list --json` says of a preset's configuration (options.Config)."
    import llm

    proposers, aggregators = config.members(llm.get_default_model())
    return {
        "proposers": [name for name, _ in proposers],
        "aggregator": ",".join(name for name, _ in aggregators),
        "layers": config.layers,
        "calls_per_prompt": config.calls_per_prompt,
    }
