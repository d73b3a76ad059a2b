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
    """`llm moa`. Its commands are built when it is first used, not by every llm command,
    and bad input to any of them (a MoaError) is click's one-line 'Error: ...', shown visibly."""

    def list_commands(self, ctx):
        if not self.commands:
            _add_commands(self)
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self.list_commands(ctx)  # builds the commands
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MoaError as ex:
            raise click.ClickException(visible(str(ex), newlines=False))


def _add_commands(moa: click.Group) -> None:
    @moa.command(name="save")
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
    def save_command(name: str, options: tuple[tuple[str, str], ...], force: bool) -> None:
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

    @moa.command(name="list")
    @JSON
    def list_command(json_: bool) -> None:
        "List saved presets"
        from ..core.options import config_from
        from ..files import presets

        saved, invalid = presets.read()
        items, lines = [], []
        for name, entry in sorted(saved.items()):
            item = {
                "name": name,
                "model_id": f"moa-{name}",
                "options": entry.get("options", {}),
                "saved": entry.get("saved"),
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

    @moa.command(name="remove")
    @click.argument("name")
    def remove_command(name: str) -> None:
        "Remove a saved preset"
        from ..files import presets

        presets.remove(name)
        click.echo(f"Removed preset {name!r} (model moa-{name})")

    @moa.command(name="runs")
    @click.option(
        "-n", "--count", type=int, default=10, show_default=True, help="How many runs (0 for all)"
    )
    @JSON
    @DATABASE
    def runs_command(count: int, json_: bool, database: Path | None) -> None:
        "Recent MoA runs from the logs: proposers, calls, tokens and wall time"
        from ..host import logs_db_path
        from ..prices import load
        from .views import load_runs, runs_table, show_json, summary

        runs = load_runs(logs_db_path(database), count=count or None)
        prices = (
            load(warn=_warn) if runs else None
        )  # an unreadable prices file: one warning, no costs
        summaries = [summary(show_json(run, prices)) for run in runs]
        _echo(summaries, json_, runs_table(summaries) if runs else "No MoA runs logged yet.")

    @moa.command(name="show")
    @click.argument("run_id", required=False)
    @JSON
    @DATABASE
    def show_command(run_id: str | None, json_: bool, database: Path | None) -> None:
        """Show one MoA run in full, with a timeline (default: the latest)

        RUN_ID is the log id, or a unique prefix of it, as `llm moa runs` lists.
        """
        from ..host import logs_db_path
        from ..prices import load
        from .views import find_run, show_json, show_text

        shown = show_json(find_run(logs_db_path(database), run_id), load(warn=_warn))
        _echo(shown, json_, show_text(shown))

    @moa.command(name="unfinished")
    @click.argument("run_id", required=False)
    @JSON
    def unfinished_command(run_id: str | None, json_: bool) -> None:
        """Runs that failed after proposers had answered, with their answers

        Without RUN_ID, lists them, newest first. With RUN_ID (or a unique
        prefix of it), shows the prompt, the error and every answered proposal.
        """
        from ..files import unfinished

        if run_id is not None:
            entry = unfinished.find(run_id)
            _echo(entry, json_, unfinished.show_text(entry))
            return
        found, problems = unfinished.read()
        for problem in problems:
            click.echo(visible(f"Skipped {problem}", newlines=False), err=True)
        _echo(found, json_, unfinished.table(found) if found else "No unfinished runs.")

    @moa.command(name="eval")
    @click.argument("source", metavar="PROMPTS")
    @click.option(
        "models",
        "-m",
        "--model",
        multiple=True,
        required=True,
        help="A model to evaluate (repeatable): a MoA model, a preset or any llm model",
    )
    @click.option(
        "--judge", help="Judge model: compares each candidate with the baseline, both ways round"
    )
    @click.option(
        "--baseline",
        help="The model candidates are judged against (default: the first "
        "-m that is not a MoA model)",
    )
    @click.option(
        "--grade",
        type=click.Choice(["exact", "contains", "regex"]),
        help="Compare answers with each row's 'answer' instead of judging",
    )
    @click.option("-n", "--limit", type=click.IntRange(min=1), help="Only the first N prompts")
    @click.option(
        "--concurrency",
        type=click.IntRange(1, 64),
        default=4,
        show_default=True,
        help="Answers or judgements in flight at once",
    )
    @click.option(
        "--out",
        type=click.Path(dir_okay=False),
        help="Results file (default: PROMPTS.eval.jsonl next to the input)",
    )
    @click.option("json_", "--json", is_flag=True, help="Output the report as JSON")
    @click.option("csv_", "--csv", is_flag=True, help="Output the report as CSV")
    @click.option(
        "--max-cost",
        metavar="DOLLARS",
        help="Start no new call once this run's calls cost this "
        "much (every model must be priced: llm moa prices)",
    )
    def eval_command(
        source, models, judge, baseline, grade, limit, concurrency, out, json_, csv_, max_cost
    ):
        """Does a combo beat a single model on your prompts, and at what cost?

        PROMPTS is a JSONL or CSV file (or - for stdin) with a 'prompt' per row,
        and optionally 'system' and 'answer'. Every model answers every prompt;
        answers and judgements are saved to a results file as they arrive, so
        running the same command again resumes without paying twice.

        \b
            llm moa eval prompts.jsonl -m moa-research -m gpt-4o --judge claude-3-opus
            llm moa eval math.jsonl -m moa-default -m gpt-4o-mini --grade exact
        """
        from ..eval import run as evaluate
        from ..text import count

        ev = evaluate.plan(
            source, models, judge, baseline, grade, limit, concurrency, out, max_cost, _warn
        )
        if ev.results.skipped:
            click.echo(
                f"Skipped {count(ev.results.skipped, 'unreadable line')} in {ev.results.path}",
                err=True,
            )
        evaluate.run(ev, progress=_eval_progress())
        summary = evaluate.report(ev)
        if json_:
            click.echo(json_text(summary))
        elif csv_:
            click.echo(evaluate.to_csv(summary), nl=False)
        else:
            click.echo(evaluate.to_table(summary))
            click.echo(f"\n{evaluate.text_chart(summary)}")
            click.echo(f"\nResults saved in {summary['results_file']}")
        if ev.not_started:
            click.echo(evaluate.cap_reached(ev), err=True)

    from .prices import prices

    moa.add_command(prices)


def _echo(data: Any, json_: bool, text: str) -> None:
    "DATA as JSON with --json, else TEXT (its view)."
    click.echo(json_text(data) if json_ else text)


def _warn(message: str) -> None:
    click.echo(visible(f"Warning: {message}", newlines=False), err=True)


def _eval_progress():
    "A progress bar on stderr, only when it is a terminal."
    import sys

    if not sys.stderr.isatty():
        return None

    def show(phase: str, done: int, total: int) -> None:
        filled = int(30 * done / total)  # never called with no tasks
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{phase:<10} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{end}")
        sys.stderr.flush()

    return show


def _facts(config) -> dict:
    "What `llm moa list --json` says of a preset's configuration (options.Config)."
    from ..core.options import DEFAULT_SAMPLES

    return {
        "proposers": [
            name for name, _ in config.proposers or [(f"default model x{DEFAULT_SAMPLES}", {})]
        ],
        "aggregator": ",".join(name for name, _ in config.aggregators or [("default model", {})]),
        "layers": config.layers,
        "calls_per_prompt": config.calls_per_prompt,
    }
