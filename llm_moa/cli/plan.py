"""`llm moa plan`: every call a prompt would make, what is missing, what it will likely cost.

Nothing is called and nothing is logged. Every check is the run's own, from
the same code: options merged by ``session.effective_options``, validated by
``core.options``, models, inner options, attachments, schema and keys checked
by ``core.plan.make_plan`` and tools by ``adapter.tools.fit_tools``, but with
every problem collected instead of the first one raised. The calls and their
estimate come from ``estimate`` (a rehearsal of the engine). Also the
estimate of ``llm moa eval --plan`` (``eval_plan``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from ..errors import MoaError
from ..files.storage import read_stdin
from ..text import count, json_text, shorten, table, visible


@click.command(name="plan")
@click.argument("prompt", required=False)
@click.option("model_name", "-m", "--model", default="moa-default", help="The MoA model to plan")
@click.option("options", "-o", "--option", type=(str, str), multiple=True, help="As for a run")
@click.option("-s", "--system", help="System prompt")
@click.option("tools", "-T", "--tool", multiple=True, help="A tool the run would be given")
@click.option("--schema", help="JSON schema, or llm's concise 'name, age int' form")
@click.option(
    "attachments",
    "-a",
    "--attachment",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="An attachment the run would be given",
)
@click.option(
    "-d",
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The log database whose history estimates output (default: the one `llm logs` reads)",
)
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
def plan_command(prompt, model_name, options, system, tools, schema, attachments, database, json_):
    """Show every call a prompt would make, what is missing and what it would
    likely cost, without calling any model; exit 1 listing every problem

    \b
        llm moa plan "Why is the sky blue?" -m moa-research -o layers 3
        llm moa plan -o proposers gpt-4o-mini*3 -o cascade 2 --json < prompt.txt
    """
    if prompt is None and not sys.stdin.isatty():
        prompt = read_stdin().decode("utf-8-sig", errors="replace")
    if not prompt:
        raise MoaError("Give a prompt: llm moa plan 'PROMPT' (or on stdin)")
    shown = make(prompt, model_name, dict(options), system, tools, schema, attachments)
    click.echo(json_text(shown) if json_ else text_of(shown))
    if shown["problems"]:
        sys.exit(1)


def make(
    text: str,
    model_name: str,
    given: dict,
    system: str | None,
    tool_names: tuple = (),
    schema: str | None = None,
    attachments: tuple = (),
) -> dict:
    "The plan as `--json` shows it."
    import llm

    from .. import host
    from ..estimate import call_json, plan_calls, range_text, totals
    from ..prices import load

    moa, problems = _moa_model(model_name), []
    plan, prompt, options = _moa_plan(
        moa,
        given,
        problems,
        prompt=text,
        system=system,
        schema=_schema(schema, problems),
        tools=_tools(tool_names, problems),
        attachments=[llm.Attachment(path=path) for path in attachments],
    )
    notes = _notes(plan.config, plan.tools)
    calls = plan_calls(plan, load(warn=notes.append))
    total = totals(calls)
    origin = _origins(moa, given, host.saved_model_options(moa.model_id))
    return {
        "model": moa.model_id,
        "prompt": text,
        "options": {
            key: {"value": value, "from": origin.get(key, "?")} for key, value in options.items()
        },
        "calls": [
            {
                "layer": call.layer,
                "role": _role(call),
                "requested": call.member.name,
                "model": call.member.model_id,
                "options": _member_options(call, plan.config, origin),
                "condition": call.condition,
                "estimate": call_json(call),
            }
            for call in calls
        ],
        "notes": notes,
        "members": _members(plan, prompt),
        "estimate": {**total, "range": range_text(total), "tokens": TOKENS},
        "problems": list(dict.fromkeys(problems)),
    }


TOKENS = "characters / 4 (no model's own tokenizer is used)"


def _moa_plan(moa: Any, given: dict, problems: list[str], **prompt: Any) -> tuple:
    """The plan of a run of ``moa`` with the options ``given`` for this prompt
    (as -o), its ``llm.Prompt`` and its validated options: merged, validated
    and checked as a run does it, every problem collected."""
    import llm

    from ..adapter.session import effective_options
    from ..core.options import MoaOptions, config_from
    from ..core.plan import make_plan

    if moa.check is not None:
        try:
            moa.check(moa.model_id)
        except (MoaError, llm.ModelError) as ex:  # e.g. moa-local without the local extra
            problems.append(str(ex))
    merged = effective_options(moa, SimpleNamespace(options=list(given.items())), None)
    options = _valid(merged, problems)
    config = config_from(options)
    text = prompt.pop("prompt")
    prompt = llm.Prompt(text, moa, options=MoaOptions(**options), **prompt)
    plan = make_plan(config, prompt, problems=problems)
    plan.proposers = _placeholders(plan.proposers, config.proposers, "proposer")
    plan.aggregators = _placeholders(plan.aggregators, config.aggregators, "aggregator")
    return plan, prompt, options


def _moa_model(name: str) -> Any:
    import llm

    from .. import host

    try:
        model = host.get_model(name)
    except llm.UnknownModelError:
        raise MoaError(f"Unknown model {name!r}; run 'llm models' to list the available models")
    if not getattr(model, "is_moa", False):
        raise MoaError(f"{name} is not a MoA model; plan a moa-* model (llm moa list)")
    return model


def _origins(moa: Any, given: dict, saved: dict) -> dict[str, str]:
    "Where each MoA option came from, in effective_options' order, last wins."
    layers = [("preset", moa.preset), ("saved default", saved), ("-o", given)]
    return {key: name for name, values in layers for key in values}


def _valid(options: dict, problems: list[str]) -> dict:
    """The options validated as a run validates them; each bad one is a
    problem, and the plan goes on without it."""
    from ..core.options import validate

    while True:
        try:
            return validate(options).model_dump(exclude_none=True)
        except MoaError as ex:
            problems.append(str(ex))
            bad = [key for key in options if str(ex).startswith(f"{key}: ")]
            if not bad:
                return {}
            options = {k: v for k, v in options.items() if k != max(bad, key=len)}


def _tools(names: tuple, problems: list[str]) -> list:
    "The tools -T names, as llm's CLI finds them (a toolbox without arguments)."
    import llm

    known = llm.get_tools()
    unknown = [name for name in names if name not in known]
    if unknown:
        problems.append(
            f"Tool(s) {', '.join(unknown)} not found. Available tools: {', '.join(known)}"
        )
    return [known[n]() if isinstance(known[n], type) else known[n] for n in names if n in known]


def _schema(value: str | None, problems: list[str]) -> dict | None:
    import llm

    if not value:
        return None
    try:
        return json.loads(value) if value.strip().startswith("{") else llm.schema_dsl(value)
    except ValueError as ex:
        problems.append(f"--schema: {ex}")
        return None


class _Missing:
    "A model that could not be resolved: it stays in the plan, capable of nothing."

    can_stream = supports_schema = supports_tools = False
    attachment_types: frozenset = frozenset()

    def __init__(self, name: str):
        self.model_id = name


def _placeholders(members: list, entries: Any, role: str) -> list:
    "Members, each one a problem left out replaced: by its model with no options, or a stand-in."
    from .. import host
    from ..core.options import DEFAULT_SAMPLES
    from ..core.plan import Member

    known = host.models_by_name()[0]
    entries = list(entries or [(None, {})] * (DEFAULT_SAMPLES if role == "proposer" else 1))
    names = [str(name) for name, _ in entries]
    return [
        m or Member(names[i], known.get(names[i]) or _Missing(names[i]), role)
        for i, m in enumerate(members)
    ]


def _role(call: Any) -> str:
    if call.role == "proposer":
        return f"proposer {call.index + 1}"
    return f"fallback {call.index}" if call.index else "aggregator"


def _member_options(call: Any, config: Any, origin: dict) -> dict:
    "The options the call gets, each with where it came from: per-member, role-wide or saved."
    from .. import host

    proposer = call.role == "proposer"
    entries = (config.proposers if proposer else config.aggregators) or ()
    own = entries[call.index][1] if call.index < len(entries) else {}
    every = "proposer_options" if proposer else "aggregator_options"
    saved = host.saved_model_options(call.member.model_id)
    found = {}
    for key, value in call.member.options.items():
        if key in own:
            where = f"per-member ({origin.get('proposers' if proposer else 'aggregator')})"
        elif key in getattr(config, every):
            where = f"{every} ({origin.get(every)})"
        else:
            where = "saved default" if key in saved else "?"
        found[key] = {"value": value, "from": where}
    return found


def _notes(config: Any, tools: dict | None) -> list[str]:
    "What the call list cannot show: waits, tool rounds."
    notes = []
    if config.wait:
        notes.append(
            f"wait {config.wait}: a layer moves on after {config.wait} answers; "
            "the others are abandoned, though a provider may still bill them"
        )
    if tools:
        per_round = (
            "1 call (the aggregator alone)"
            if config.tool_turns == "aggregator"
            else f"a full run, {count(config.calls_per_prompt, 'call')}"
        )
        notes.append(f"tools: each tool round costs {per_round} (tool_turns {config.tool_turns})")
    return notes


def _members(plan: Any, prompt: Any) -> list[dict]:
    "What each model needs for this prompt and what it has, once per model."
    import llm

    from .. import host

    kinds = sorted({a.resolve_type() for a in prompt.attachments})
    seen: dict[str, dict] = {}
    for member in plan.proposers + plan.aggregators:
        model = member.model
        if model.model_id not in seen:  # keys and async looked up once per model
            seen[model.model_id] = {
                "model": model.model_id,
                "known": not isinstance(model, _Missing),
                "key": None if isinstance(model, _Missing) else host.key_source(model),
                "stream": model.can_stream,
                "async": _has_async(model.model_id, llm),
                "tools": model.supports_tools,
                "schema": model.supports_schema,
                "attachments": sorted(model.attachment_types),
                "needs": {
                    "attachments": [k for k in kinds if k in model.attachment_types] or None,
                },
            }
        entry = seen[model.model_id]
        if member.role == "aggregator":
            entry["needs"].update(
                tools=bool(prompt.tools) or None, schema=bool(prompt.schema) or None
            )
    return list(seen.values())


def _has_async(model_id: str, llm: Any) -> bool:
    try:
        llm.get_async_model(model_id)
    except llm.UnknownModelError:
        return False
    return True


# --- text ----------------------------------------------------------------------


def text_of(shown: dict) -> str:
    "The plan as people read it."
    total = shown["estimate"]
    head = (
        f"# Plan: {shown['model']} · {count(total['calls']['most'], 'call')}"
        + (
            f" ({total['calls']['fewest']} sure, the rest conditional)"
            if total["calls"]["fewest"] != total["calls"]["most"]
            else ""
        )
        + " · nothing is called, nothing is logged"
    )
    options = [["option", "value", "from"]] + [
        [
            key,
            shorten(
                entry["value"] if isinstance(entry["value"], str) else json.dumps(entry["value"]),
                80,
            ),
            entry["from"],
        ]
        for key, entry in shown["options"].items()
    ]
    calls = [["layer", "role", "model", "options", "when"]]
    for call in shown["calls"]:
        model = (
            call["model"]
            if call["requested"] == call["model"]
            else f"{call['requested']} -> {call['model']}"
        )
        calls.append(
            [
                str(call["layer"]),
                call["role"],
                model,
                ", ".join(
                    f"{k}={json.dumps(v['value'])} ({v['from']})"
                    for k, v in call["options"].items()
                )
                or "-",
                call["condition"] or "always",
            ]
        )
    members = [["model", "key", "stream", "async", "tools", "schema", "attachments"]]
    for m in shown["members"]:
        needs = m["needs"]
        members.append(
            [
                m["model"] + ("" if m["known"] else " (unknown)"),
                m["key"] or "MISSING",
                _yes(m["stream"]),
                _yes(m["async"]),
                _yes(m["tools"]) + (" (needed)" if needs.get("tools") else ""),
                _yes(m["schema"]) + (" (needed)" if needs.get("schema") else ""),
                ", ".join(m["attachments"]) or "none",
            ]
        )
    estimate = [["call", "model", "input tokens", "output tokens", "cost"]]
    for call in shown["calls"]:
        e = call["estimate"]
        estimate.append(
            [
                f"L{call['layer']} {call['role']}" + ("" if call["condition"] is None else " *"),
                call["model"],
                ("≥ " if e["input_is_lower_bound"] else "~") + f"{e['input_tokens']:,}",
                _output_text(e),
                _call_cost(e),
            ]
        )
    lines = [
        visible(head, newlines=False),
        "",
        "## Options",
        "",
        table(options),
        "",
        "## Calls",
        "",
        table(calls),
        *[f"\n{visible(note, newlines=False)}" for note in shown["notes"]],
        "",
        "## Members",
        "",
        table(members),
        "",
        "## Estimate",
        "",
        table(estimate),
        "",
        visible(
            f"total: {count(total['calls']['most'], 'call')}, ~{total['input_tokens']:,} input "
            f"and ~{total['output_tokens']:,} output tokens"
            + (
                " (lower bounds)"
                if total["input_is_lower_bound"] or total["output_is_lower_bound"]
                else ""
            )
            + f"; likely {total['text']}",
            newlines=False,
        ),
        f"range: {total['range']}",
        "",
        "* conditional: made only in some runs, counted in the total and the high end of the range. "
        "Tokens are characters / 4; output from your own logged answers, else max_tokens (an "
        "upper bound), else unknown. Prices are estimates: yours (llm moa prices), else genai-prices.",
        "",
        "## Problems",
        "",
        "\n".join(visible(f"- {p}", newlines=False) for p in shown["problems"])
        or "None: ready to run.",
    ]
    return "\n".join(lines)


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _output_text(e: dict) -> str:
    from ..estimate import Output

    return Output(e["output_tokens"], e["output_low"], e["output_high"], e["output_source"]).text()


def _call_cost(e: dict) -> str:
    from ..prices import format_usd

    if e["price"] is None:
        return "unpriced"
    if e["usd"] is not None:
        return f"~{format_usd(e['usd'])}"
    return f"<= {format_usd(e['usd_high'])}" if e["usd_high"] is not None else "unknown"


# --- llm moa eval --plan ---------------------------------------------------------


def eval_plan(ev: Any) -> dict:
    """What ``llm moa eval --plan`` shows, from the eval as the command set it
    up (``eval.run.Eval``): per model the prompts still to answer (by the
    eval's own resume rule, ``Eval.answer``), their calls, tokens and
    dollars; the judge's share; and, with --max-cost, whether it fits."""
    from .. import host
    from ..core.prompts import Request
    from ..estimate import Planned, estimated, expected_output, plan_calls, totals
    from ..eval.judge import judge_request

    problems: list[str] = []
    models, everything, final, pending = [], [], {}, set()  # pending: prompts with work left
    for model_id in ev.models:
        todo = [row for row in ev.rows if not ev.answer(model_id, row)]
        pending.update(row.key for row in todo)
        options = ev.options.get(model_id) or {}
        model, calls = host.get_model(model_id), []
        moa = getattr(model, "is_moa", False)
        plan = _moa_plan(model, options, problems, prompt="")[0] if todo and moa else None
        output = expected_output(model_id, options)  # a model asked directly: one call a prompt
        for row in todo:
            request = Request(row.prompt, row.system or "")
            if plan is not None:
                plan.request = request
                calls += plan_calls(plan, ev.prices)
            else:
                member = SimpleNamespace(name=model_id, model=model, model_id=model_id)
                planned = Planned(1, "model", 0, member, request)
                calls.append(estimated(planned, output, ev.prices))
        answers = [c for c in calls if c.role in ("model", "aggregator") and c.counted]
        final[model_id] = answers[-1].output if answers else output
        models.append({"model": model_id, "prompts": len(todo), **totals(calls)})
        everything += calls
    judging = []
    judge = SimpleNamespace(name=ev.judge, model=None, model_id=ev.judge)
    judge_output = expected_output(ev.judge, ev.options.get(ev.judge) or {}) if ev.judge else None
    for candidate, row, order in ev.pairs():
        if ev.judgement(candidate, row, order):
            continue
        pending.add(row.key)
        texts = [_answer_text(ev, name, row, final) for name in (candidate, ev.baseline)]
        first, second = texts if order == "candidate-first" else texts[::-1]
        system, prompt = judge_request(row.prompt, row.system, first, second)
        judging.append(
            estimated(
                Planned(1, "judge", 0, judge, Request(prompt, system)), judge_output, ev.prices
            )
        )
    shown = {
        "models": models,
        "judge": {"model": ev.judge, "judgements": len(judging), **totals(judging)}
        if ev.judge
        else None,
        "total": totals(everything + judging),
        "tokens": TOKENS,
        "problems": list(dict.fromkeys(problems)),
    }
    if ev.budget:
        shown["cap"] = _cap(ev, shown["total"], len(pending))
    return shown


def _answer_text(ev: Any, model_id: str, row: Any, final: dict) -> str:
    "The answer the judge will read: the one made, else text of the model's expected length."
    from ..estimate import UNKNOWN

    made = ev.answer(model_id, row)
    if made is not None:
        return made.text
    size = final[model_id].expected
    return UNKNOWN.format(model_id) if size is None else "x" * (size * 4)


def _cap(ev: Any, total: dict, prompts: int) -> dict:
    "Whether the estimate fits under --max-cost, and about how many prompts the cap covers."
    from ..prices import format_usd

    cap, usd = ev.budget.cap, total["usd"]
    if not total["complete"]:
        fits = f"the estimate is a lower bound ({total['text']}), so it may not fit"
    elif total["usd_high"] is not None and total["usd_high"] <= cap:
        fits = "fits, even at the high end of the range"
    else:
        fits = "likely fits" if usd <= cap else "does not fit"
    covers = min(prompts, int(cap / (usd / prompts))) if usd > 0 and prompts else prompts
    return {
        "usd": cap,
        "fits": fits,
        "prompts": covers,
        "text": f"--max-cost {format_usd(cap)}: {fits}; it covers about {covers} of the "
        f"{prompts} prompts still to answer",
    }


def eval_plan_text(shown: dict) -> str:
    rows = [["model", "prompts to answer", "calls", "input tokens", "output tokens", "likely cost"]]
    for entry in shown["models"] + ([shown["judge"]] if shown["judge"] else []):
        rows.append(
            [
                entry["model"] + (" (judge)" if "judgements" in entry else ""),
                str(entry.get("prompts", entry.get("judgements"))),
                _calls_text(entry["calls"]),
                _tokens_text(entry["input_tokens"], entry["input_is_lower_bound"]),
                _tokens_text(entry["output_tokens"], entry["output_is_lower_bound"]),
                entry["text"],
            ]
        )
    total = shown["total"]
    lines = [
        table(rows),
        "",
        visible(
            f"total: {_calls_text(total['calls'])} calls, likely {total['text']}", newlines=False
        ),
        "Nothing was called. Tokens are characters / 4; output from your own logged answers, "
        "else max_tokens, else unknown.",
    ]
    if "cap" in shown:
        lines.append(shown["cap"]["text"])
    lines += [f"- {visible(problem, newlines=False)}" for problem in shown["problems"]]
    return "\n".join(lines)


def _calls_text(calls: dict) -> str:
    fewest, most = calls["fewest"], calls["most"]
    return str(most) if fewest == most else f"{fewest}-{most}"


def _tokens_text(value: int, floor: bool) -> str:
    return ("≥ " if floor else "~") + f"{value:,}"


def show_eval_plan(ev: Any, json_: bool) -> None:
    "`llm moa eval --plan`: print the estimate; exit 1 when it found problems."
    shown = eval_plan(ev)
    click.echo(json_text(shown) if json_ else eval_plan_text(shown))
    if shown["problems"]:
        sys.exit(1)
