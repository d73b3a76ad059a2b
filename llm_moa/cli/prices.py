"""`llm moa prices`: your prices, and where each model's price comes from (``prices.py`` does the work).

Bad input is a ``MoaError``, which the ``llm moa`` group (``MoaGroup``) turns
into click's one-line ``Error: ...`` for these nested commands too.
"""

from __future__ import annotations

from typing import Any

import click

from .. import prices as lookup
from ..text import json_text, table, visible


@click.group(name="prices")
def prices() -> None:
    """What models cost, for the dollars shown by `llm moa show`, `runs` and `eval`

    A price is yours (set here), else from the public data bundled with the
    genai-prices package, else the model is unpriced. Prices are estimates.
    """


# ignore_unknown_options: a negative price reaches the check that names it, not click's "no such option"
@prices.command(name="set", context_settings={"ignore_unknown_options": True})
@click.argument("model", required=False)
@click.argument("input_price", metavar="INPUT", required=False)
@click.argument("output_price", metavar="OUTPUT", required=False)
def set_command(model: str | None, input_price: str | None, output_price: str | None) -> None:
    """Set your price for a model: US dollars per million input and output tokens

    \b
        llm moa prices set gpt-4o-mini 0.15 0.60
        llm moa prices set my-local-model 0 0
    """
    _echo(lookup.set_price(model or "", input_price, output_price))


@prices.command(name="list")
@click.argument("models", nargs=-1)
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
def list_command(models: tuple[str, ...], json_: bool) -> None:
    """List your prices, or the price of each MODEL given and where it comes from

    \b
        llm moa prices list
        llm moa prices list gpt-4o-mini claude-3.5-sonnet
    """
    found = lookup.Prices()
    if models:
        data, text = _each_price(found, models)
    elif found.user:
        data, text = found.user, _your_prices(found.user)
    else:
        data, text = (
            {},
            f"No prices of yours; public prices from genai-prices {lookup.public_version()} apply. "
            "Set one with: llm moa prices set MODEL INPUT OUTPUT",
        )
    click.echo(json_text(data) if json_ else text)


def _each_price(found: lookup.Prices, models: tuple[str, ...]) -> tuple[list[dict], str]:
    "Each model's price and its source; a MoA model's are those of the models it calls."
    from .. import host

    data, lines = [], []
    for name in dict.fromkeys(models):
        model = found.model(name)  # one listing for every model named
        model_id = getattr(model, "model_id", name)
        if getattr(model, "is_moa", False):
            called = lookup.models_called(model, host.saved_model_options(model_id))
            data.append({"model": model_id, "source": None, "calls": called})
            lines.append(
                f"{model_id}: a MoA model, which costs what its calls cost: "
                f"see llm moa prices list {' '.join(called)}"
            )
        elif price := found.price(model_id):
            data.append({"model": model_id, **price.to_json()})
            lines.append(f"{model_id}: {price.text()} ({price.source})")
        else:
            data.append({"model": model_id, "source": None})
            lines.append(
                f"{model_id}: unpriced: set a price with llm moa prices set MODEL INPUT OUTPUT"
            )
    return data, "\n".join(visible(line, newlines=False) for line in lines)


def _your_prices(user: dict[str, Any]) -> str:
    rows = [("model", "input $/M", "output $/M", "saved")]
    rows += [
        (
            model,
            f"{entry['input'] + 0.0:,.4g}",
            f"{entry['output'] + 0.0:,.4g}",
            str(entry.get("saved", ""))[:19].replace("T", " "),
        )
        for model, entry in sorted(user.items())
    ]
    return table(rows)


@prices.command(name="remove")
@click.argument("model", required=False)
def remove_command(model: str | None) -> None:
    "Remove your price for a model (the public price, if any, applies again)"
    _echo(f"Removed your price for {lookup.remove(model or '')}")


def _echo(line: str) -> None:
    click.echo(visible(line, newlines=False))
