"""What a run costs in dollars: prices, where they come from, and the cost of a run record.

A price is the user's (``llm moa prices set``, kept in
``<llm user dir>/moa/prices.json``), else genai-prices' bundled public data
(never updated from the network) by model id, then by the provider's own name,
``model_name`` (run records keep only ids, so it is the name of the model llm
knows by that id today), else none: a total that includes an unpriced model is
a lower bound naming it. Prices are estimates: a provider's bill is the truth
(cached input, batch discounts, tiers and free allowances are not modelled).

genai-prices takes about 0.3 s to import, so only a public price lookup imports
it, which only the commands that show a cost make: never a plain ``llm``
command, never a run.
"""

from __future__ import annotations

import datetime
import functools
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MoaError
from .files.storage import moa_dir, read_json, update_json

PER_TOKENS = 1_000_000  # prices are in US dollars per million tokens
YOURS = "yours"


def path() -> Path:
    return moa_dir() / "prices.json"


def parse_price(value: Any, what: str) -> float:
    "A price as typed: a finite number of dollars per million tokens, 0 or more; one line naming it otherwise."
    if value is None or not str(value).strip():
        raise MoaError(
            f"Missing {what} price: give US dollars per million {what} tokens, e.g. 0.15"
        )
    return _number(
        value,
        f"{what} price",
        "a number of US dollars per million tokens",
        "a finite number, 0 or more",
        _is_price,
    )


def parse_cap(value: Any) -> float:
    "--max-cost: dollars, more than 0; one line naming the value otherwise."
    return _number(
        value,
        "--max-cost",
        "a number of US dollars, e.g. 0.50",
        "a finite number of dollars, more than 0",
        lambda usd: _is_price(usd) and usd > 0,
    )


def _number(
    value: Any, name: str, expected: str, rule: str, allowed: Callable[[float], bool]
) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MoaError(f"Invalid {name} {value!r}: expected {expected}")
    if not allowed(number):
        raise MoaError(f"Invalid {name} {value!r}: must be {rule}")
    return number


def _is_price(value: Any) -> bool:
    "A finite number, 0 or more: not a string, nan, inf or a hostile 10**400 (which float() cannot take)."
    return type(value) in (int, float) and 0 <= value <= sys.float_info.max


def _known_model(name: str) -> Any | None:
    "The model llm knows ``name`` by (an alias resolves to its model), or None."
    from . import host

    return host.models_by_name()[0].get(name)


def model_id_for(name: str) -> str:
    "The id llm knows ``name`` by, else ``name`` as typed."
    return getattr(_known_model(name), "model_id", name)


def set_price(name: str, input_price: Any, output_price: Any) -> str:
    """Save the user's price for a model, under its model id; return the line
    that says so. Nothing is saved on bad input. A MoA model is refused: its
    cost is that of the calls it makes."""
    if not name or not name.strip():
        raise MoaError("Missing MODEL: llm moa prices set MODEL INPUT OUTPUT")
    price = Price(parse_price(input_price, "input"), parse_price(output_price, "output"), YOURS)
    model = _known_model(name)
    if getattr(model, "is_moa", False):
        raise MoaError(
            f"{model.model_id} is a MoA model: a run costs what its calls cost, so price the models it calls"
        )
    model_id = model.model_id if model else name

    def change(data: dict) -> bool:
        replaced = model_id in data
        saved = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        data[model_id] = {"input": price.input, "output": price.output, "saved": saved}
        return replaced

    verb = "Replaced" if update_json(path(), change) else "Saved"
    known = "" if model else " (llm does not know this model now; kept as typed)"
    return f"{verb} your price for {model_id}: {price.text()}{known}"


def remove(name: str) -> str:
    "Remove the user's price for a model (by id, alias or as typed); return the key removed."
    if not name:
        raise MoaError("Missing MODEL: llm moa prices remove MODEL")
    keys = dict.fromkeys([name, model_id_for(name)])

    def change(data: dict) -> str:
        for key in keys:
            if key in data:
                del data[key]
                return key
        raise MoaError(f"No price of yours for {name!r}; 'llm moa prices list' shows them")

    return update_json(path(), change)


@dataclass(frozen=True)
class Price:
    "A model's price: US dollars per million input and output tokens, and where it came from."

    input: float
    output: float
    source: str  # "yours", or "genai-prices 0.2.3: openai gpt-4o-mini"
    ref: str | None = None  # the name genai-prices knows the model by; None for the user's own

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        "Dollars for one call; the public data's own calculation (tiers included) for a public price."
        if self.ref is None:
            return (input_tokens * self.input + output_tokens * self.output) / PER_TOKENS
        return float(_calc_price(self.ref, input_tokens, output_tokens).total_price)

    def text(self) -> str:
        "'$0.15 input, $0.6 output per million tokens'"
        return f"${self.input:,.4g} input, ${self.output:,.4g} output per million tokens"

    def to_json(self) -> dict:
        return {
            "input_per_million": self.input,
            "output_per_million": self.output,
            "source": self.source,
        }


def public_version() -> str:
    "The version of genai-prices installed (a dependency of llm-moa), read without importing it."
    from importlib.metadata import version

    return version("genai-prices")


def _calc_price(ref: str, input_tokens: int, output_tokens: int) -> Any:
    from genai_prices import Usage, calc_price

    return calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens), ref)


@functools.cache
def public_price(ref: str) -> Price | None:
    "The bundled public price of a model name, or None when genai-prices does not know it."
    try:
        # priced at a thousand tokens each way, then scaled: a million would land in a
        # tiered model's long-prompt tier (gemini-2.5-pro: $2.50 instead of $1.25)
        sample = _calc_price(ref, 1000, 1000)
    except Exception:  # noqa: BLE001 - genai-prices missing, or a name its data cannot match: unpriced
        return None
    scale = PER_TOKENS / 1000
    return Price(
        float(sample.input_price) * scale,
        float(sample.output_price) * scale,
        f"genai-prices {public_version()}: {sample.provider.id} {sample.model.id}",
        ref,
    )


class Prices:
    """Price lookups for one command, the user's prices read once: by model id,
    ``{"input": dollars, "output": dollars, "saved": ...}``. A missing file is
    no prices; a file that is not a prices file a ``MoaError`` naming it."""

    def __init__(self) -> None:
        self.user = read_json(path(), {})
        for model, entry in self.user.items():
            if not isinstance(entry, dict):
                problem = "is not a JSON object"
            elif bad := [key for key in ("input", "output") if not _is_price(entry.get(key))]:
                problem = f"has no valid {bad[0]!r} price (a number, 0 or more, of dollars per million tokens)"
            else:
                continue
            raise MoaError(
                f"{path()}: the entry for {model!r} {problem} (fix or remove it: llm moa prices remove MODEL)"
            )

    def price(self, model_id: str) -> Price | None:
        "The model's price (the user's, else public by id, else by its provider name), or None: unpriced."
        if entry := self.user.get(model_id):
            return Price(float(entry["input"]), float(entry["output"]), YOURS)
        if found := public_price(model_id):
            return found
        name = getattr(self._models.get(model_id), "model_name", None)
        return public_price(name) if isinstance(name, str) and name else None

    @functools.cached_property
    def _models(self) -> dict[str, Any]:
        "llm's models by id, for the provider's own name of each (``model_name``, as llm's OpenAI models have)."
        from . import host

        try:
            return host.models_by_name()[0]
        except Exception:  # noqa: BLE001 - a broken plugin leaves the model unpriced, nothing more
            return {}


def load(warn: Callable[[str], None]) -> Prices | None:
    """Prices for a command that shows costs; a prices file that cannot be read
    is reported through ``warn`` once, and costs are not shown (None)."""
    try:
        return Prices()
    except MoaError as ex:
        warn(f"{ex}; costs are not shown")
        return None


@dataclass
class Cost:
    """What some calls cost: the dollars of every priced call, and per model
    whether anything is missing from that figure (no price, or calls with no
    usage reported). ``complete`` only when nothing is: otherwise ``usd`` is a
    lower bound."""

    usd: float = 0.0
    by_model: dict[str, dict] = field(
        default_factory=dict
    )  # calls, usd (None: unpriced), complete, price
    calls: list[float | None] = field(
        default_factory=list
    )  # per call, in order; None when not known

    @property
    def unpriced(self) -> list[str]:
        return [model for model, entry in self.by_model.items() if entry["price"] is None]

    @property
    def usage_unknown(self) -> list[str]:
        "Priced models with a call whose provider reported no usage."
        return [
            model
            for model, entry in self.by_model.items()
            if entry["price"] and not entry["complete"]
        ]

    @property
    def complete(self) -> bool:
        return all(entry["complete"] for entry in self.by_model.values())

    def text(self) -> str:
        "'$0.0031', or '≥ $0.0031, gpt-oss unpriced' when something is missing."
        return format_cost(self.usd, self.complete, self.missing())

    def missing(self) -> list[str]:
        return [f"{model} unpriced" for model in self.unpriced] + [
            f"{model} usage unknown" for model in self.usage_unknown
        ]

    def to_json(self) -> dict:
        return {
            "usd": round(self.usd, 10),
            "complete": self.complete,
            "text": self.text(),
            "unpriced": self.unpriced,
            "usage_unknown": self.usage_unknown,
            "by_model": self.by_model,
            "calls": [None if usd is None else round(usd, 10) for usd in self.calls],
        }


def cost_of_calls(calls: Iterable[dict], prices: Prices, cost: Cost | None = None) -> Cost:
    """The cost of calls as the run record has them (``model`` and ``usage``:
    token counts, ``"unknown"``, or none for a call that made no request or
    failed without reporting usage, which counts as nothing); added to
    ``cost`` when given (a budget's running total)."""
    cost = Cost() if cost is None else cost
    for call in calls:
        model, usage = str(call.get("model")), call.get("usage")
        if usage is None:
            cost.calls.append(0.0)
            continue
        price = prices.price(model)
        entry = cost.by_model.setdefault(
            model,
            {
                "calls": 0,
                "usd": None if price is None else 0.0,
                "complete": True,
                "price": price and price.to_json(),
            },
        )
        entry["calls"] += 1
        usd = None
        if price is None or not isinstance(usage, dict):
            entry["complete"] = False
        else:
            usd = price.cost(_tokens(usage.get("input")), _tokens(usage.get("output")))
            cost.usd += usd
            entry["usd"] += usd
        cost.calls.append(usd)
    return cost


def run_cost(record: dict, prices: Prices) -> Cost:
    "The cost of a logged run, from its record (``response_json['moa']``)."
    from .core.record import calls_of

    return cost_of_calls([call for _, call in calls_of(record)], prices)


def billed_calls(
    response_json: Any, model_id: str, input_tokens: int | None, output_tokens: int | None
) -> list[dict]:
    """The calls behind one answer, kept so that it can be priced later (an
    eval's results file): every call of a MoA run, else the one call."""
    from .core.record import calls_of

    record = response_json.get("moa") if isinstance(response_json, dict) else None
    if isinstance(record, dict):
        return [
            {"model": call.get("model"), "usage": call["usage"]}
            for _, call in calls_of(record)
            if call.get("usage") is not None
        ]
    usage = {
        key: value
        for key, value in (("input", input_tokens), ("output", output_tokens))
        if value is not None
    }
    return [{"model": model_id, "usage": usage or "unknown"}]


def models_called(model: Any, options: dict) -> list[str]:
    """The ids of the models that answering with ``model`` calls: a MoA model's
    proposers and aggregators (fallbacks too; llm's default model where none is
    set), else the model itself. ``options`` are those it runs with."""
    if not getattr(model, "is_moa", False):
        return [model.model_id]
    import llm

    from .core.options import config_from

    config = config_from({**getattr(model, "preset", {}), **options})
    default = [(llm.get_default_model(), {})]
    names = [name for name, _ in config.proposers or default] + [
        name for name, _ in config.aggregators or default
    ]
    return list(dict.fromkeys(model_id_for(name) for name in names))


@dataclass
class Budget:
    """A spending cap on new calls (``llm moa eval --max-cost``): what they
    have cost so far, and whether that reached the cap."""

    cap: float
    prices: Prices
    spent: Cost = field(default_factory=Cost)

    def add(self, calls: list[dict]) -> None:
        cost_of_calls(calls, self.prices, self.spent)

    @property
    def reached(self) -> bool:
        return self.spent.usd >= self.cap


def _tokens(value: Any) -> int:
    "A token count from a record; anything else (even a hostile 10**400) counts as none."
    return value if type(value) is int and 0 < value < 10**15 else 0


def format_usd(usd: float) -> str:
    "'$0.0031', '$0.75', '$12.40': two significant figures under a dollar, cents above."
    if usd <= 0:
        return "$0"
    if usd >= 1:
        return f"${usd:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(usd)))
    return f"${usd:.{decimals}f}"


def format_cost(usd: float, complete: bool, missing: list[str]) -> str:
    """A total as shown: complete, or a lower bound naming what is missing;
    never '$0' for a total that is not complete."""
    if complete:
        return format_usd(usd)
    why = ", ".join(missing)
    if usd <= 0:
        return f"unknown ({why})"
    return f"≥ {format_usd(usd)}, {why}"


def prices_group() -> Any:
    "The `llm moa prices` commands (commands.py adds the group to `llm moa`)."
    import json

    import click

    from .text import table, visible

    def printed(command: Callable[..., str]) -> Callable[..., None]:
        "The command prints the text it returns; bad input (a MoaError) is click's one-line 'Error: ...'."

        @functools.wraps(command)
        def run(**kwargs: Any) -> None:
            try:
                click.echo(command(**kwargs))
            except MoaError as ex:
                raise click.ClickException(visible(str(ex), newlines=False))

        return run

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
    @printed
    def set_command(model: str | None, input_price: str | None, output_price: str | None) -> str:
        """Set your price for a model: US dollars per million input and output tokens

        \b
            llm moa prices set gpt-4o-mini 0.15 0.60
            llm moa prices set my-local-model 0 0
        """
        return visible(set_price(model or "", input_price, output_price), newlines=False)

    @prices.command(name="list")
    @click.argument("models", nargs=-1)
    @click.option("json_", "--json", is_flag=True, help="Output as JSON")
    @printed
    def list_command(models: tuple[str, ...], json_: bool) -> str:
        """List your prices, or the price of each MODEL given and where it comes from

        \b
            llm moa prices list
            llm moa prices list gpt-4o-mini claude-3.5-sonnet
        """
        lookup = Prices()
        if models:
            found = [
                (model_id, lookup.price(model_id))
                for model_id in map(model_id_for, dict.fromkeys(models))
            ]
            data: Any = [
                {"model": model_id, **(price.to_json() if price else {"source": None})}
                for model_id, price in found
            ]
            text = "\n".join(
                visible(
                    f"{model_id}: {price.text()} ({price.source})"
                    if price
                    else f"{model_id}: unpriced: set a price with llm moa prices set MODEL INPUT OUTPUT",
                    newlines=False,
                )
                for model_id, price in found
            )
        elif lookup.user:
            rows = [("model", "input $/M", "output $/M", "saved")]
            rows += [
                (
                    model,
                    f"{entry['input']:,.4g}",
                    f"{entry['output']:,.4g}",
                    str(entry.get("saved", ""))[:19].replace("T", " "),
                )
                for model, entry in sorted(lookup.user.items())
            ]
            data, text = (
                lookup.user,
                table([[visible(cell, newlines=False) for cell in row] for row in rows]),
            )
        else:
            data, text = (
                {},
                (
                    f"No prices of yours; public prices from genai-prices {public_version()} apply. "
                    "Set one with: llm moa prices set MODEL INPUT OUTPUT"
                ),
            )
        return json.dumps(data, indent=2) if json_ else text

    @prices.command(name="remove")
    @click.argument("model", required=False)
    @printed
    def remove_command(model: str | None) -> str:
        "Remove your price for a model (the public price, if any, applies again)"
        return visible(f"Removed your price for {remove(model or '')}", newlines=False)

    return prices
