"""Reading MoA runs back from llm's own log database, and showing them; the
unfinished runs' views too.

Runs are read only through the host's store (the database ``llm logs`` reads),
as ``llm logs --json`` has them, so condensed ``response_json`` comes back whole.
A turn whose response_json has a ``moa`` object is a run, parsed once as a
``StoredRun``; one that does not parse is named in one line, never skipped
silently. Everything shown passes through ``text.visible``: answers and errors
come from models and must not drive the terminal.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .. import text
from ..core.record import StoredCall, StoredDecision, StoredRun
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

Logged = tuple[dict, StoredRun]  # llm's log row (the raw record under 'moa'), and the record


def load_runs(
    database: Path, *, count: int | None = None, run_id: str | None = None
) -> tuple[list[Logged], list[str]]:
    """MoA runs, newest first, and a line for each run record that does not
    parse (a hand-edited row). A turn whose ``moa`` is not a JSON object is
    another plugin's, not a run."""
    if not database.exists():
        raise MoaError(f"No log database found at {database}")
    asked = count
    while True:
        try:
            rows = logged_turns(database, marker=MARKER, count=asked, prefix=run_id)
        except sqlite3.DatabaseError as ex:  # as `llm logs -d` says of a file that is not one
            raise MoaError(f"{database}: {ex}")
        except (
            ValueError,
            RecursionError,
        ) as ex:  # llm's own reader fails on a turn that is not JSON
            raise MoaError(f"{database}: a logged turn cannot be read ({type(ex).__name__}: {ex})")
        runs, bad = [], []
        for row in rows:
            try:
                record = _record(row)
            except MoaError as ex:
                bad.append(str(ex))
            else:
                if record is not None:
                    runs.append((row, record))
        if not count or len(runs) >= count or len(rows) < asked:
            return (runs[:count] if count else runs), bad
        asked *= 2  # some rows were not runs: look further back


def _record(row: dict) -> StoredRun | None:
    "The row's run record, put under row['moa']; None when the row is not a MoA run."
    data = json.loads(row["response_json"])
    raw = data.get("moa") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None
    row["moa"] = raw
    return StoredRun.parse(raw, f"MoA run {row['id']}")


def find_run(database: Path, run_id: str | None) -> tuple[Logged, list[str]]:
    """The run ``run_id`` (a unique prefix of it will do), else the latest that
    reads, with a line for each newer one that does not."""
    runs, bad = load_runs(database, count=None if run_id else 1, run_id=run_id)
    if not run_id:
        if not runs:
            raise MoaError(bad[-1] if bad else "No MoA runs logged yet")
        return runs[0], bad
    matches = len(runs) + len(bad)
    if matches > 1:
        raise MoaError(
            f"{run_id!r} is ambiguous: it matches {text.count(matches, 'run')}; give more of the id"
        )
    if bad:
        raise MoaError(bad[0])
    if not runs:
        raise MoaError(f"No MoA run matches {run_id!r}")
    return runs[0], []


def show_json(row: dict, record: StoredRun, prices: Any = None) -> dict:
    "The run as `llm moa show --json` gives it: llm's log row, and its cost when given prices (prices.Prices)."
    cost = run_cost(record, prices).to_json() if prices else None
    return {**{key: row.get(key) for key in SHOWN}, "cost": cost}


def summary(run: dict, record: StoredRun) -> dict:
    """The facts of one run (``run`` as show_json has it), for `llm moa runs`:
    the proposers of the last layer that asked any (none: an aggregator-only tool turn)."""
    asked = [layer.proposers for layer in record.proposer_layers if layer.proposers]
    return {
        "id": run["id"],
        "datetime_utc": run["datetime_utc"],
        "model": run["model"],
        "layers": record.layers,
        "proposers": [
            {"model": p.model, "status": p.status, "error": p.error}
            for p in (asked[-1] if asked else [])
        ],
        "aggregator": record.aggregator.model if record.aggregator else None,
        "calls": record.calls,
        "input_tokens": run.get("input_tokens"),
        "output_tokens": run.get("output_tokens"),
        "usage_complete": all(call.usage != "unknown" for _, call in record.labelled_calls()),
        "partial": record.partial,
        "wall_ms": record.wall_ms,
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
        rows.append(
            (
                facts["id"],
                _time(facts["datetime_utc"]),
                facts["model"],
                _proposers(facts["proposers"]),
                facts["aggregator"] or "-",
                facts["calls"],
                ("" if facts["usage_complete"] else "≥")
                + f"{_n(facts['input_tokens'])}/{_n(facts['output_tokens'])}",
                _seconds(facts["wall_ms"]),
            )
            + ((facts["cost"]["text"],) if priced else ())
        )
    return text.table(rows)


def _proposers(proposers: list[dict]) -> str:
    "'2/3 ok (fake-b failed)'; '-' when no proposer was asked."
    if not proposers:
        return "-"
    ok = sum(p["status"] == "ok" for p in proposers)
    others = [f"{p['model']} {p['status']}" for p in proposers if p["status"] != "ok"]
    return f"{ok}/{len(proposers)} ok" + (f" ({', '.join(others)})" if others else "")


def show_text(run: dict, record: StoredRun) -> str:
    "The run (as show_json has it) in full; when it was priced, what each call, each model and the run cost."
    cost, facts = run["cost"], summary(run, record)
    lines = [
        f"# MoA run {run['id']}",
        "",
        f"{run['model']} · {_time(run['datetime_utc'])} UTC · "
        f"{text.count(facts['layers'], 'layer')} · {text.count(facts['calls'], 'call')} · "
        f"{_n(facts['input_tokens'])} input / {_n(facts['output_tokens'])} output tokens · "
        f"{_seconds(facts['wall_ms'])}" + (f" · {cost['text']}" if cost else ""),
        "",
    ]
    calls = [call for _, call in record.labelled_calls()]
    costs = dict(zip(map(id, calls), cost["calls"])) if cost else {}  # in the same order
    if facts["partial"]:
        lines += [f"Partial: not every proposer answered ({facts['partial']})", ""]
    if not facts["usage_complete"]:
        lines += ["Token totals are a lower bound: some providers reported no usage.", ""]
    lines += ["## Prompt", "", run.get("prompt") or "", ""]
    if run.get("system"):
        lines += ["## System", "", run["system"], ""]
    tools = record.tools
    if tools:  # a run with tools (-T): what it was offered, got back, and whose proposals it reused
        lines += ["## Tools", "", f"Offered: {', '.join(tools.offered) or '-'}"]
        if tools.tool_results:
            lines += [
                f"Tool results received: {tools.tool_results} (tool_turns {tools.tool_turns})"
            ]
        if tools.proposals_from:
            lines += [f"Proposals reused from run {tools.proposals_from}"]
        lines += [""]
    for layer in record.proposer_layers:
        if not layer.proposers:
            continue  # no proposer ran (an aggregator-only tool turn)
        lines += [f"## Layer {layer.layer}", ""]
        for number, call in enumerate(layer.proposers, 1):
            lines += [f"### {number}. {_call_heading(call, costs)}", ""]
            lines += [call.text if call.ok else f"Error: {call.error or call.status}", ""]
    for call in record.aggregator_attempts or ([record.aggregator] if record.aggregator else []):
        lines += [f"## Aggregator: {_call_heading(call, costs)}", ""]
        if not call.ok:
            lines += [f"Error: {call.error or call.status}", ""]
        for tool_call in call.tool_calls:
            lines += [f"Tool call: {tool_call.name}({json.dumps(tool_call.arguments)})", ""]
    if record.decision.strategy:
        lines += ["## Decision", "", decision_text(record.decision), ""]
    lines += ["## Answer", "", run.get("response") or "", ""]
    if cost:
        lines += ["## Cost", "", _cost_table(cost), ""]
    lines += ["## Timeline", "", timeline(record)]
    return text.visible("\n".join(lines))  # answers and errors come from models: never raw


def timeline(record: StoredRun) -> str:
    """A text chart of when each call started and ended; the slowest of each
    layer is marked. A call with no recorded end (abandoned, or the run was
    cut short) is drawn in a lighter shade to the end of the chart, and says so."""
    calls = [(label, c) for label, c in record.labelled_calls() if c.started_ms is not None]
    if not calls:
        return "(no timing recorded)"
    ends = [c.ended_ms if c.ended_ms is not None else c.started_ms for _, c in calls]
    end = max([record.wall_ms or 0, *ends]) or 1
    slowest = _slowest_per_layer(calls)
    name_width = max(len(f"{label} {c.model}") for label, c in calls)
    lines = [f"{'':{name_width}}  {'0s':<{WIDTH + 1}}{end / 1000:.2f}s"]
    for label, call in calls:
        start, stop = call.started_ms, call.ended_ms
        first = min(WIDTH - 1, int(start / end * WIDTH))  # a hand-edited time stays on the chart
        last = min(WIDTH, max(first + 1, round((stop if stop is not None else end) / end * WIDTH)))
        bar = " " * first + ("█" if stop is not None else "░") * (last - first)
        when = f"{stop / 1000:.2f}s" if stop is not None else "? (no end recorded)"
        mark = "  ◀ slowest" if id(call) in slowest else ""
        lines.append(
            f"{label + ' ' + call.model:{name_width}}  |{bar:{WIDTH}}| "
            f"{start / 1000:.2f}–{when} {call.status}{mark}"
        )
    return "\n".join(lines)


def _slowest_per_layer(calls: list[tuple[str, StoredCall]]) -> set[int]:
    latest: dict[str, StoredCall] = {}
    for label, call in calls:
        if label != "agg" and (
            label not in latest or (call.ended_ms or 0) > (latest[label].ended_ms or 0)
        ):
            latest[label] = call
    proposers = sum(label != "agg" for label, _ in calls)
    return {id(call) for call in latest.values()} if proposers > 1 else set()


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


def _call_heading(call: StoredCall, costs: dict) -> str:
    usage = call.usage
    bits = [call.model, call.status, _seconds(call.duration_ms)]
    if call.truncated:
        bits.append("truncated")
    if usage == "unknown":
        bits.append("usage unknown")
    elif usage and (usage.input is not None or usage.output is not None):
        bits.append(f"{_n(usage.input)} in / {_n(usage.output)} out")
    if call.attempts > 1:
        bits.append(text.count(call.attempts, "attempt"))
    if id(call) in costs and usage:
        usd = costs[id(call)]
        bits.append("unpriced" if usd is None else format_usd(usd))
    return " · ".join(bits)


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _seconds(ms: Any) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"


def _time(datetime_utc: Any) -> str:
    "'2026-12-04 19:06:06' from llm's ISO time (blank when a hand-edited row has none)."
    return str(datetime_utc or "")[:19].replace("T", " ")


def decision_text(decision: StoredDecision) -> str:
    "The decision as lines of text, for ``llm moa show``."
    lines = [f"{decision.strategy}: {decision.reason or ''}".rstrip(": ")]
    if decision.cascade and decision.cascade.escalated:
        why = decision.cascade.why or "disagreed"  # before 'why' was recorded
        lines.append(
            f"cascade: the first {decision.cascade.first} proposers {why}, so all were asked"
        )
    for vote in decision.votes:
        numbers = ", ".join(map(str, vote.proposers))
        lines.append(f"vote: {vote.count} for {vote.answer!r} (proposers {numbers})")
    for numbers, label in (
        (decision.tie, "tie between"),
        (decision.shown_order, "shown in the order:"),
        (decision.agreement, "agreed:"),
    ):
        if numbers:
            lines.append(f"{label} proposers {', '.join(map(str, numbers))}")
    for step in decision.windows:
        lines.append(f"window {step.step}: {', '.join(step.references)}")
    for check in decision.outliers:  # -o outliers drop: see core/outliers.py
        out = [f"{n} (similarity {check.similarity.get(str(n))})" for n in check.left_out]
        left = f"left out proposer {', '.join(out)}: " if out else ""
        lines.append(f"outliers, layer {check.layer}: {left}{check.reason}")
    return "\n".join(lines)


# --- unfinished runs (files/unfinished.py keeps them) -------------------------


def unfinished_table(entries: list[Any]) -> str:
    "The list `llm moa unfinished` shows (entries: unfinished.Unfinished)."
    rows: list[tuple] = [("id", "time (UTC)", "model", "answered", "error")]
    for entry in entries:
        rows.append(
            (
                entry.id,
                _time(entry.datetime_utc),
                entry.model,
                len(entry.run.answered_proposals()),
                (entry.error.splitlines() or [""])[0],
            )
        )
    return text.table(rows)


def unfinished_text(entry: Any) -> str:
    "One unfinished run in full, as `llm moa unfinished ID` shows it: every answered proposal."
    lines = [
        f"# {entry.id}  {entry.datetime_utc}  {entry.model}",
        "",
        "## Prompt",
        "",
        entry.prompt,
    ]
    lines += ["", "## Error", "", entry.error, ""]
    for number, proposal in enumerate(entry.run.answered_proposals(), 1):
        lines += [f"## Proposal {number}: {proposal.model}", "", proposal.text, ""]
    return text.visible("\n".join(lines))  # answers and errors come from models
