"""Reading MoA runs back from llm's own log database, and showing them.

Runs are read only through the host's store (the database ``llm logs`` reads),
as ``llm logs --json`` has them, so condensed ``response_json`` comes back whole.
A row that only looks like a run is skipped. Everything shown passes through
``text.visible``: answers and errors come from models and must not drive the
terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import text
from ..core.record import calls_of
from ..errors import MoaError
from ..host import logged_turns
from ..prices import format_cost, format_usd, public_version, run_cost

WIDTH = 48  # characters of a timeline bar
MARKER = '"moa":'  # in the response_json of every MoA run (and maybe of other turns)
SHOWN = (
    "id",
    "datetime_utc",
    "model",
    "prompt",
    "system",
    "response",
    "input_tokens",
    "output_tokens",
    "conversation_id",
    "moa",
)  # llm's log row, as `llm moa show --json` gives it


def load_runs(database: Path, *, count: int | None = None, run_id: str | None = None) -> list[dict]:
    """MoA runs, newest first, as llm's log rows with the run record under 'moa'.

    A turn whose response_json only looks like a run (another model's JSON
    that contains the marker, a damaged record) is skipped."""
    if not database.exists():
        raise MoaError(f"No log database found at {database}")
    asked = count
    while True:
        try:
            rows = logged_turns(database, marker=MARKER, count=asked, prefix=run_id)
        except (
            ValueError,
            RecursionError,
        ) as ex:  # llm's own reader fails on a turn that is not JSON
            raise MoaError(f"{database}: a logged turn cannot be read ({type(ex).__name__}: {ex})")
        runs = [row for row in rows if _read_record(row)]
        if not count or len(runs) >= count or len(rows) < asked:
            return runs[:count] if count else runs
        asked *= 2  # some rows were not runs: look further back


def _read_record(row: dict) -> bool:
    """Put the run record under row['moa']; False when the row has none, or
    one that the views cannot show (damaged, or another plugin's JSON)."""
    try:
        row["moa"] = json.loads(row["response_json"])["moa"]
        shown = show_json(row)
        runs_table(
            [summary(shown)]
        )  # drawn once here: a record the views cannot show is skipped, never a crash
        show_text(shown)
    except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError, RecursionError):
        return False
    return True


def find_run(database: Path, run_id: str | None) -> dict:
    runs = load_runs(database, count=None if run_id else 1, run_id=run_id)
    if not runs:
        raise MoaError(f"No MoA run matches {run_id!r}" if run_id else "No MoA runs logged yet")
    if run_id and len(runs) > 1 and runs[0]["id"] != run_id:
        raise MoaError(f"{run_id!r} matches {text.count(len(runs), 'run')}; give more of the id")
    return runs[0]


def show_json(run: dict, prices: Any = None) -> dict:
    "The run as `llm moa show --json` gives it: llm's log row, and its cost when given prices (prices.Prices)."
    cost = run_cost(run["moa"], prices).to_json() if prices else None
    return {**{key: run.get(key) for key in SHOWN}, "cost": cost}


def summary(run: dict) -> dict:
    "The facts of one run (as show_json has it), for `llm moa runs`."
    record = run["moa"]
    layers = record.get("proposer_layers", [])
    proposers = layers[-1].get("proposers", []) if layers else []
    return {
        "id": run["id"],
        "datetime_utc": run["datetime_utc"],
        "model": run["model"],
        "layers": record.get("layers"),
        "proposers": [
            {"model": p.get("model"), "status": p.get("status"), "error": p.get("error")}
            for p in proposers
        ],
        "aggregator": (record.get("aggregator") or {}).get("model"),
        "calls": record.get("calls"),
        "input_tokens": run.get("input_tokens"),
        "output_tokens": run.get("output_tokens"),
        "usage_complete": all(call.get("usage") != "unknown" for _, call in calls_of(record)),
        "partial": record.get("partial"),
        "wall_ms": record.get("wall_ms"),
        "cost": run["cost"],
    }


def runs_table(summaries: list[dict]) -> str:
    "The table of `llm moa runs`, with a cost column when the runs were priced."
    priced = any(facts["cost"] for facts in summaries)
    header = (
        "id",
        "time (UTC)",
        "model",
        "proposers",
        "aggregator",
        "calls",
        "tokens in/out",
        "wall",
    )
    rows = [header + (("cost",) if priced else ())]
    for facts in summaries:
        ok = sum(p["status"] == "ok" for p in facts["proposers"])
        others = [f"{p['model']} {p['status']}" for p in facts["proposers"] if p["status"] != "ok"]
        proposers = f"{ok}/{len(facts['proposers'])} ok" + (
            f" ({', '.join(others)})" if others else ""
        )
        rows.append(
            (
                facts["id"],
                facts["datetime_utc"][:19].replace("T", " "),
                facts["model"],
                proposers,
                facts["aggregator"] or "-",
                facts["calls"],
                ("" if facts["usage_complete"] else "≥")
                + f"{_n(facts['input_tokens'])}/{_n(facts['output_tokens'])}",
                _seconds(facts["wall_ms"]),
            )
            + ((facts["cost"]["text"],) if priced else ())
        )
    return text.table(rows)


def show_text(run: dict) -> str:
    "The run (as show_json has it) in full; when it was priced, what each call, each model and the run cost."
    record, cost, facts = run["moa"], run["cost"], summary(run)
    lines = [
        f"# MoA run {run['id']}",
        "",
        f"{run['model']} · {run['datetime_utc'][:19].replace('T', ' ')} UTC · "
        f"{text.count(facts['layers'], 'layer')} · {text.count(facts['calls'], 'call')} · "
        f"{_n(facts['input_tokens'])} input / {_n(facts['output_tokens'])} output tokens · "
        f"{_seconds(facts['wall_ms'])}" + (f" · {cost['text']}" if cost else ""),
        "",
    ]
    costs = dict(zip((id(call) for _, call in calls_of(record)), cost["calls"])) if cost else {}
    if facts["partial"]:
        lines += [f"Partial: not every proposer answered ({facts['partial']})", ""]
    if not facts["usage_complete"]:
        lines += ["Token totals are a lower bound: some providers reported no usage.", ""]
    lines += ["## Prompt", "", run.get("prompt") or "", ""]
    if run.get("system"):
        lines += ["## System", "", run["system"], ""]
    tools = record.get("tools")
    if tools:  # a run with tools (-T): what it was offered, got back, and whose proposals it reused
        lines += ["## Tools", "", f"Offered: {', '.join(tools.get('offered') or []) or '-'}"]
        if tools.get("tool_results"):
            lines += [
                f"Tool results received: {tools['tool_results']} (tool_turns {tools.get('tool_turns')})"
            ]
        if tools.get("proposals_from"):
            lines += [f"Proposals reused from run {tools['proposals_from']}"]
        lines += [""]
    for layer in record.get("proposer_layers", []):
        if not layer.get("proposers"):
            continue  # no proposer ran (an aggregator-only tool turn)
        lines += [f"## Layer {layer['layer']}", ""]
        for number, call in enumerate(layer["proposers"], 1):
            lines += [f"### {number}. {_call_heading(call, costs)}", ""]
            failed = f"Error: {call.get('error') or call.get('status')}"
            lines += [call.get("text", "") if call.get("status") == "ok" else failed, ""]
    for call in record.get("aggregator_attempts") or [record.get("aggregator")]:
        if call:
            lines += [f"## Aggregator: {_call_heading(call, costs)}", ""]
            if call.get("status") != "ok":
                lines += [f"Error: {call.get('error') or call.get('status')}", ""]
            for tool_call in call.get("tool_calls") or []:
                lines += [
                    f"Tool call: {tool_call['name']}({json.dumps(tool_call.get('arguments'))})",
                    "",
                ]
    if isinstance(record.get("decision"), dict) and record["decision"].get("strategy"):
        lines += ["## Decision", "", describe_decision(record["decision"]), ""]
    lines += ["## Answer", "", run.get("response") or "", ""]
    if cost:
        lines += ["## Cost", "", _cost_table(cost), ""]
    lines += ["## Timeline", "", timeline(record)]
    return text.visible(
        "\n".join(lines)
    )  # answers and errors come from models: never to the terminal raw


def timeline(record: dict) -> str:
    "A text chart of when each call started and ended; the slowest of each layer is marked."
    calls = [
        (label, call) for label, call in calls_of(record) if call.get("started_ms") is not None
    ]
    if not calls:
        return "(no timing recorded)"
    end = (
        max([record.get("wall_ms") or 0] + [c.get("ended_ms") or c["started_ms"] for _, c in calls])
        or 1
    )
    slowest = _slowest_per_layer(calls)
    name_width = max(len(f"{label} {c.get('model')}") for label, c in calls)
    lines = [f"{'':{name_width}}  {'0s':<{WIDTH + 1}}{end / 1000:.2f}s"]
    for label, call in calls:
        start, stop = call["started_ms"], call.get("ended_ms") or end
        first = max(
            0, min(WIDTH - 1, int(start / end * WIDTH))
        )  # a hand-edited time stays on the chart
        last = min(WIDTH, max(first + 1, round(stop / end * WIDTH)))
        bar = " " * first + "█" * (last - first)
        mark = "  ◀ slowest" if id(call) in slowest else ""
        lines.append(
            f"{label + ' ' + str(call.get('model')):{name_width}}  |{bar:{WIDTH}}| "
            f"{start / 1000:.2f}–{stop / 1000:.2f}s {call.get('status')}{mark}"
        )
    return "\n".join(lines)


def _slowest_per_layer(calls: list[tuple[str, dict]]) -> set[int]:
    latest: dict[str, dict] = {}
    for label, call in calls:
        if label != "agg" and (
            label not in latest
            or (call.get("ended_ms") or 0) > (latest[label].get("ended_ms") or 0)
        ):
            latest[label] = call
    return (
        {id(call) for call in latest.values()}
        if sum(label != "agg" for label, _ in calls) > 1
        else set()
    )


def _cost_table(cost: dict) -> str:
    "Per model: calls, dollars and where the price comes from; then the total, and that prices are estimates."
    note = (
        f"Prices are estimates, in US dollars: yours from `llm moa prices`, else genai-prices "
        f"{public_version()}'s bundled data."
    )
    if not cost["by_model"]:
        return f"No call reported usage: nothing to price.\n{note}"
    rows = []
    for model, entry in cost["by_model"].items():
        price = entry["price"]
        if price is None:
            usd, source = "unpriced", "set one: llm moa prices set MODEL INPUT OUTPUT"
        else:
            usd = format_cost(entry["usd"], entry["complete"], ["usage unknown"])
            source = "your price" if price["source"] == "yours" else price["source"]
        rows.append((model, text.count(entry["calls"], "call"), usd, source))
    rows.append(("total", "", cost["text"], ""))
    return text.table(rows) + "\n\n" + note


def _call_heading(call: dict, costs: dict) -> str:
    usage = call.get("usage") or {}
    bits = [str(call.get("model")), str(call.get("status")), _seconds(call.get("duration_ms"))]
    if call.get("truncated"):
        bits.append("truncated")
    if usage == "unknown":
        bits.append("usage unknown")
    elif usage.get("input") is not None or usage.get("output") is not None:
        bits.append(f"{_n(usage.get('input'))} in / {_n(usage.get('output'))} out")
    if (call.get("attempts") or 1) > 1:
        bits.append(text.count(call["attempts"], "attempt"))
    if id(call) in costs and isinstance(usage, dict) and usage:
        usd = costs[id(call)]
        bits.append("unpriced" if usd is None else format_usd(usd))
    return " · ".join(bits)


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _seconds(ms: Any) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"


def describe_decision(decision: dict) -> str:
    """The decision as lines of text, for ``llm moa show``. It is read back
    from a log: a record edited out of shape shows its first line only."""
    lines = [f"{decision.get('strategy')}: {decision.get('reason') or ''}".rstrip(": ")]
    try:
        if (decision.get("cascade") or {}).get("escalated"):
            lines.append(
                f"cascade: the first {decision['cascade']['first']} proposers disagreed, so all were asked"
            )
        for entry in decision.get("votes") or []:
            numbers = ", ".join(map(str, entry["proposers"]))
            lines.append(f"vote: {entry['count']} for {entry['answer']!r} (proposers {numbers})")
        for key, label in (
            ("tie", "tie between"),
            ("shown_order", "shown in the order:"),
            ("agreement", "agreed:"),
        ):
            if decision.get(key):
                lines.append(f"{label} proposers {', '.join(map(str, decision[key]))}")
        for step in decision.get("windows") or []:
            lines.append(f"window {step['step']}: {', '.join(step['references'])}")
        for check in decision.get("outliers") or []:  # -o outliers drop: see core/outliers.py
            out = [f"{n} (similarity {check['similarity'][str(n)]})" for n in check["left_out"]]
            left = f"left out proposer {', '.join(out)}: " if out else ""
            lines.append(f"outliers, layer {check['layer']}: {left}{check['reason']}")
    except (AttributeError, KeyError, TypeError):
        return lines[0]
    return "\n".join(lines)
