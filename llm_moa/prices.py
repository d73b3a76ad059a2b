"""What a run costs in dollars: prices, where they come from, and the cost of a run record.

A price is the user's (``llm moa prices set``, kept in
``<llm user dir>/moa/prices.json``), else genai-prices' bundled public data
(never updated from the network) by model id, then by the provider's own name
for it (``provider_names``; run records keep only ids, so it is the name of
the model llm knows by that id today), else none: a total that includes an
unpriced model is a lower bound naming it. A public price is taken only for a
name the data lists (give or take a date or ``-latest``), never for one it
would match only by its beginning to another model. Prices are estimates: a
provider's bill is the truth (cached input, batch discounts, tiers and free
allowances are not modelled). A price is at most ``MAX_PRICE``.

genai-prices takes about 0.3 s to import, so only a public price lookup imports
it, which only the commands that show a cost make: never a plain ``llm``
command, never a run. The ``llm moa prices`` commands are in ``cli/prices.py``.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MoaError
from .files.storage import moa_dir, read_json, update_json

if TYPE_CHECKING:
    from .core.record import StoredRun

PER_TOKENS = 1_000_000  # prices are in US dollars per million tokens
# $1 a token: 25 times the dearest model genai-prices lists today, and small
# enough that no cost can overflow (tokens are counted below 10**15 a call)
MAX_PRICE = 1_000_000
YOURS = "yours"
# The attribute in which a plugin keeps the provider's own name for its model,
# and the genai-prices provider that name belongs to (None: any)
PROVIDER_NAMES = {
    "model_name": None,  # llm's OpenAI models, extra-openai-models.yaml, llm-openrouter
    "claude_model_id": "anthropic",  # llm-anthropic
    "gemini_model_id": "google",  # llm-gemini
}


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
        f"a number from 0 to {MAX_PRICE:,}",
        _is_price,
    )


def parse_cap(value: Any) -> float:
    "--max-cost: dollars, more than 0; one line naming the value otherwise."
    return _number(
        value,
        "--max-cost",
        "a number of US dollars, e.g. 0.50",
        "a finite number of dollars, more than 0",
        lambda usd: math.isfinite(usd) and usd > 0,
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
    return number + 0.0  # -0.0 is 0: never "$-0"


def _is_price(value: Any) -> bool:
    "A number from 0 to MAX_PRICE: not a string, nan, inf, 1e308 or a hostile 10**400."
    return type(value) in (int, float) and 0 <= value <= MAX_PRICE


def known_model(name: str) -> Any | None:
    "The model llm knows ``name`` by (an alias resolves to its model), or None."
    from . import host

    return host.models_by_name()[0].get(name)


def model_id_for(name: str) -> str:
    "The id llm knows ``name`` by, else ``name`` as typed."
    return getattr(known_model(name), "model_id", name)


def set_price(name: str, input_price: Any, output_price: Any) -> str:
    """Save the user's price for a model, under its model id; return the line
    that says so. Nothing is saved on bad input. A MoA model is refused: its
    cost is that of the calls it makes."""
    if not name or not name.strip():
        raise MoaError("Missing MODEL: llm moa prices set MODEL INPUT OUTPUT")
    price = Price(parse_price(input_price, "input"), parse_price(output_price, "output"), YOURS)
    model = known_model(name)
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
    source: str  # "yours", or "genai-prices 0.2.3: openai gpt-4o-mini" and the name that matched
    ref: tuple[str, str | None] | None = None  # genai-prices' name and provider; None: the user's

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


def _calc_price(ref: tuple[str, str | None], input_tokens: int, output_tokens: int) -> Any:
    from genai_prices import Usage, calc_price

    name, provider = ref
    return calc_price(
        Usage(input_tokens=input_tokens, output_tokens=output_tokens), name, provider_id=provider
    )


@functools.cache
def public_price(name: str, provider: str | None = None, how: str = "") -> Price | None:
    """The bundled public price of a model name (at ``provider`` when given),
    or None when genai-prices does not list that name; ``how`` says which of
    the model's names it is, for the source."""
    try:
        # priced at a thousand tokens each way, then scaled: a million would land in a
        # tiered model's long-prompt tier (gemini-2.5-pro: $2.50 instead of $1.25)
        sample = _calc_price((name, provider), 1000, 1000)
    except Exception:  # noqa: BLE001 - genai-prices missing, or a name its data cannot match: unpriced
        return None
    if not _listed(sample.model, name):
        return None
    scale = PER_TOKENS / 1000
    return Price(
        float(sample.input_price) * scale,
        float(sample.output_price) * scale,
        f"genai-prices {public_version()}: {sample.provider.id} {sample.model.id}{how}",
        (name, provider),
    )


_VERSION = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|-latest)$")


def _listed(model: Any, name: str) -> bool:
    """genai-prices lists ``name`` for this model: as its id or one of its exact
    names, give or take a date or ``-latest``. Its matching also accepts any
    name that merely begins like a model's (``claude-haiku-4-5-banana`` would
    cost what Haiku 4.5 costs): such a name stays unpriced."""
    listed = {model.id, *_exact_names(model.match)}
    return _VERSION.sub("", name.lower()) in {_VERSION.sub("", each.lower()) for each in listed}


def _exact_names(clause: Any) -> list[str]:
    "The names a genai-prices match rule lists outright (its ``equals``, within ``or``)."
    if hasattr(clause, "equals"):
        return [clause.equals]
    return [name for each in getattr(clause, "or_", []) for name in _exact_names(each)]


def provider_names(model_id: str, model: Any) -> list[tuple[str, str | None, str]]:
    """The names a model is looked up by after its id, each with the
    genai-prices provider it belongs to (None: any) and how it was found: the
    plugin's own attribute for the provider's name (``PROVIDER_NAMES``), then
    the id without a ``provider/`` prefix (``anthropic/claude-…``,
    ``openrouter/openai/gpt-4o``, ``ollama/llama3.2:latest``, unpriced)."""
    names = []
    for attribute, provider in PROVIDER_NAMES.items():
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value and value != model_id:
            names.append((value, provider, f", by its {attribute} {value!r}"))
    prefix, _, rest = model_id.partition("/")
    how = f", by its id without {prefix}/"
    if rest:  # at the provider the prefix names (openrouter), else anywhere (gemini/: google)
        names += [(rest, prefix, how), (rest, None, how)]
    return names


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
                problem = (
                    f"has no valid {bad[0]!r} price (a number from 0 to {MAX_PRICE:,} "
                    "dollars per million tokens)"
                )
            else:
                continue
            raise MoaError(
                f"{path()}: the entry for {model!r} {problem} (fix or remove it: llm moa prices remove MODEL)"
            )

    def price(self, model_id: str) -> Price | None:
        "The model's price (the user's, else public by id, else by its provider's names), or None: unpriced."
        if entry := self.user.get(model_id):
            return Price(float(entry["input"]) + 0.0, float(entry["output"]) + 0.0, YOURS)
        if found := public_price(model_id):
            return found
        for name, provider, how in provider_names(model_id, self.model(model_id)):
            if found := public_price(name, provider, how):
                return found
        return None

    def model(self, name: str) -> Any | None:
        "The model llm knows ``name`` by (an alias resolves to its model), or None."
        return self._models.get(name)

    @functools.cached_property
    def _models(self) -> dict[str, Any]:
        "llm's models by id and alias, listed once: for the provider's own names of each."
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
    # per model: calls, usd (None: unpriced), complete, price
    by_model: dict[str, dict] = field(default_factory=dict)
    calls: list[float | None] = field(default_factory=list)  # per call, in order; None: not known

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


def cost_of_calls(calls: Iterable[Any], prices: Prices, cost: Cost | None = None) -> Cost:
    """The cost of calls as a run record (``StoredCall``) or an eval's results
    file (``Billed``) has them: ``model`` and ``usage`` (token counts,
    ``"unknown"``, or none for a call that made no request or failed without
    reporting usage, which counts as nothing); added to ``cost`` when given (a
    budget's running total)."""
    cost = Cost() if cost is None else cost
    for call in calls:
        if call.usage is None:
            cost.calls.append(0.0)
            continue
        price = prices.price(call.model)
        entry = cost.by_model.setdefault(
            call.model,
            {
                "calls": 0,
                "usd": None if price is None else 0.0,
                "complete": True,
                "price": price and price.to_json(),
            },
        )
        entry["calls"] += 1
        usd = None
        if price is None or call.usage == "unknown":
            entry["complete"] = False
        else:
            usd = price.cost(call.usage.input or 0, call.usage.output or 0)
            cost.usd += usd
            entry["usd"] += usd
        cost.calls.append(usd)
    return cost


def run_cost(record: StoredRun, prices: Prices) -> Cost:
    "The cost of a logged run, from its record."
    return cost_of_calls([call for _, call in record.labelled_calls()], prices)


def billed_calls(
    record: StoredRun | None, model_id: str, input_tokens: int | None, output_tokens: int | None
) -> list[dict]:
    """The calls behind one answer, kept so that it can be priced later (an
    eval's results file): every call of its MoA run record, else the one call."""
    if record is not None:
        return [
            call.model_dump(include={"model", "usage"})
            for _, call in record.labelled_calls()
            if call.usage is not None
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

    from . import host
    from .core.options import config_from

    config = config_from({**getattr(model, "preset", {}), **options})
    proposers, aggregators = config.members(llm.get_default_model())
    known = host.models_by_name()[0]  # listed once: each listing runs every plugin's hook
    names = [name for name, _ in proposers + aggregators]
    return list(dict.fromkeys(getattr(known.get(name), "model_id", name) for name in names))


@dataclass
class Budget:
    """A spending cap on new calls (``llm moa eval --max-cost``): what they
    have cost so far, and whether that reached the cap."""

    cap: float
    prices: Prices
    spent: Cost = field(default_factory=Cost)

    def add(self, calls: list[Any]) -> None:
        "Calls an answer or judgement billed (eval's ``Billed``)."
        cost_of_calls(calls, self.prices, self.spent)

    @property
    def reached(self) -> bool:
        return self.spent.usd >= self.cap


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
