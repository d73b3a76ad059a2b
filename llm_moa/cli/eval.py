"""``llm moa eval`` (README: "Does it pay off?"); the work is in llm_moa/eval/."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click


@click.command(name="eval")
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
    help="The model candidates are judged against (default: the first -m that is not a MoA model)",
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
@click.option(
    "plan_", "--plan", is_flag=True, help="Show what the eval would call and cost; call nothing"
)
def eval_command(
    source, models, judge, baseline, grade, limit, concurrency, out, json_, csv_, max_cost, plan_
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
    from ..eval import report, run
    from ..text import count
    from .commands import _echo, _warn

    ev = run.prepare(
        source, models, judge, baseline, grade, limit, concurrency, out, max_cost, _warn
    )
    if ev.results.skipped:
        skipped = count(ev.results.skipped, "unreadable line")
        click.echo(f"Skipped {skipped} in {ev.results.path}", err=True)
    if plan_:
        from .plan import show_eval_plan

        return show_eval_plan(ev, json_)
    run.run(ev, progress=_progress())
    summary = report.report(ev)
    if json_:
        _echo(summary, True, "")
    elif csv_:
        click.echo(report.to_csv(summary), nl=False)
    else:
        click.echo(report.to_table(summary))
        click.echo(f"\n{report.text_chart(summary)}")
        click.echo(f"\nResults saved in {summary['results_file']}")
    if ev.not_started:
        click.echo(run.cap_reached(ev), err=True)


def _progress() -> Callable[[str, int, int], None] | None:
    """click's progress bar on stderr, one per phase, only when stderr is a
    terminal; one cut short (Ctrl-C) is ended too, giving the cursor back."""
    if not sys.stderr.isatty():
        return None
    bars: dict[str, Any] = {}
    running: list[Any] = []
    click.get_current_context().call_on_close(lambda: [bar.render_finish() for bar in running])

    def show(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            bars[phase] = click.progressbar(
                length=total, label=phase, file=sys.stderr, show_pos=True
            )
            bars[phase].render_progress()
            running.append(bars[phase])
        bar = bars[phase]
        bar.update(done - bar.pos)
        if done == total:
            bar.render_finish()
            running.remove(bar)

    return show
