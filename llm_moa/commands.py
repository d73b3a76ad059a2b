"""The ``llm moa`` command group. Heavy work is imported inside each command."""

from __future__ import annotations

import json

import click


def register(cli: click.Group) -> None:
    @cli.group(name="moa")
    def moa() -> None:
        "Mixture-of-Agents: see unfinished runs"

    @moa.command(name="unfinished")
    @click.argument("run_id", required=False)
    @click.option("json_", "--json", is_flag=True, help="Output as JSON")
    def unfinished_command(run_id: str | None, json_: bool) -> None:
        """Runs that failed after proposers had answered, with their answers

        Without RUN_ID, lists them, newest first. With RUN_ID (or a unique
        prefix of it), shows the prompt, the error and every answered proposal.
        """
        from . import unfinished

        if run_id is None:
            found = unfinished.entries()
            if json_:
                click.echo(json.dumps(found, indent=2))
                return
            if not found:
                click.echo("No unfinished runs.")
            for entry in found:
                answered = len(unfinished.answered_proposals(entry.get("run", {})))
                first_line = (entry.get("error") or "").splitlines()[:1] or [""]
                click.echo(
                    f"{entry['id']}  {entry.get('datetime_utc', '')[:19]}  {entry.get('model')}  "
                    f"{answered} answered  {first_line[0]}"
                )
            return
        entry = unfinished.find(run_id)
        if entry is None:
            raise click.ClickException(
                f"No unfinished run matches {run_id!r}; 'llm moa unfinished' lists them"
            )
        if json_:
            click.echo(json.dumps(entry, indent=2))
            return
        click.echo(f"# {entry['id']}  {entry.get('datetime_utc', '')}  {entry.get('model')}\n")
        click.echo(f"## Prompt\n\n{entry.get('prompt', '')}\n")
        click.echo(f"## Error\n\n{entry.get('error', '')}\n")
        for number, proposal in enumerate(unfinished.answered_proposals(entry.get("run", {})), 1):
            click.echo(f"## Proposal {number}: {proposal.get('model')}\n\n{proposal.get('text', '')}\n")
