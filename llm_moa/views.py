"""Reading MoA runs back from llm's own log database, and showing them.

Runs are read only through the host's store (the database ``llm logs`` reads),
with llm's own row builder, so condensed ``response_json`` comes back whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

BAR_WIDTH = 48


class RunsError(Exception):
    "A missing database or run; one line."


def load_runs(database: Path, *, count: int | None = None, run_id: str | None = None) -> list[dict]:
    "MoA runs, newest first, as llm's log rows with the run record under 'moa'."
    import sqlite_utils
    from llm.logs import LogStore, log_rows

    if not database.exists():
        raise RunsError(f"No log database found at {database}")
    db = sqlite_utils.Database(database)
    try:
        where = ["response_json like '%\"moa\":%'"]
        params: dict[str, Any] = {}
        if run_id:
            where.append("id like :prefix")
            params["prefix"] = f"{run_id}%"
        sql = f"select id from turns where {' and '.join(where)} order by id desc"
        if count:
            sql += f" limit {int(count)}"
        try:
            ids = [row["id"] for row in db.query(sql, params)]
        except Exception:  # a database llm has not created its tables in yet
            ids = []
        rows = log_rows(LogStore(db), ids=ids) if ids else []
    finally:
        db.close()
    runs = []
    for row in rows:
        try:
            row["moa"] = json.loads(row["response_json"])["moa"]
        except (TypeError, ValueError, KeyError):
            continue
        runs.append(row)
    return sorted(runs, key=lambda row: row["id"], reverse=True)


def find_run(database: Path, run_id: str | None) -> dict:
    runs = load_runs(database, count=None if run_id else 1, run_id=run_id)
    if not runs:
        raise RunsError(f"No MoA run matches {run_id!r}" if run_id else "No MoA runs logged yet")
    if run_id and len(runs) > 1 and runs[0]["id"] != run_id:
        raise RunsError(f"{run_id!r} matches {len(runs)} runs; give more of the id")
    return runs[0]


def calls_of(record: dict) -> list[tuple[str, dict]]:
    "Every call of a run in order, labelled by layer."
    labelled = []
    for layer in record.get("proposer_layers", []):
        for call in layer.get("proposers", []):
            labelled.append((f"L{layer['layer']}", call))
    for call in record.get("aggregator_attempts") or [record.get("aggregator")]:
        if call:
            labelled.append(("agg", call))
    return labelled


def summary(run: dict) -> dict:
    "The facts of one run for `llm moa runs`."
    record = run["moa"]
    layers = record.get("proposer_layers", [])
    proposers = layers[-1]["proposers"] if layers else []
    aggregator = record.get("aggregator") or {}
    return {
        "id": run["id"],
        "datetime_utc": run["datetime_utc"],
        "model": run["model"],
        "layers": record.get("layers"),
        "proposers": [{"model": p.get("model"), "status": p.get("status"), "error": p.get("error")}
                      for p in proposers],
        "aggregator": aggregator.get("model"),
        "calls": record.get("calls"),
        "input_tokens": run.get("input_tokens"),
        "output_tokens": run.get("output_tokens"),
        "wall_ms": record.get("wall_ms"),
    }


def runs_table(runs: Iterable[dict]) -> str:
    header = ("id", "time (UTC)", "model", "proposers", "aggregator", "calls", "tokens in/out", "wall")
    rows = [header]
    for run in runs:
        facts = summary(run)
        ok = sum(p["status"] == "ok" for p in facts["proposers"])
        others = [f"{p['model']} {p['status']}" for p in facts["proposers"] if p["status"] != "ok"]
        proposers = f"{ok}/{len(facts['proposers'])} ok" + (f" ({', '.join(others)})" if others else "")
        rows.append((
            facts["id"], facts["datetime_utc"][:19].replace("T", " "), facts["model"], proposers,
            facts["aggregator"] or "-", str(facts["calls"]),
            f"{_n(facts['input_tokens'])}/{_n(facts['output_tokens'])}", _seconds(facts["wall_ms"]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def show_text(run: dict) -> str:
    record = run["moa"]
    lines = [
        f"# MoA run {run['id']}",
        "",
        f"{run['model']} · {run['datetime_utc'][:19].replace('T', ' ')} UTC · {record.get('layers')} layers · "
        f"{record.get('calls')} calls · {_n(run.get('input_tokens'))} input / "
        f"{_n(run.get('output_tokens'))} output tokens · {_seconds(record.get('wall_ms'))}",
        "",
        "## Prompt",
        "",
        run.get("prompt") or "",
        "",
    ]
    if run.get("system"):
        lines += ["## System", "", run["system"], ""]
    for layer in record.get("proposer_layers", []):
        lines += [f"## Layer {layer['layer']}", ""]
        for number, call in enumerate(layer.get("proposers", []), 1):
            lines += [f"### {number}. {_call_heading(call)}", ""]
            lines += [call["text"] if call.get("status") == "ok" else f"Error: {call.get('error') or call.get('status')}", ""]
    for call in record.get("aggregator_attempts") or [record.get("aggregator")]:
        if call:
            lines += [f"## Aggregator: {_call_heading(call)}", ""]
            if call.get("status") != "ok":
                lines += [f"Error: {call.get('error') or call.get('status')}", ""]
    if isinstance(record.get("decision"), dict) and record["decision"].get("strategy"):
        from .strategies import describe
        from .text import visible

        lines += ["## Decision", "", visible(describe(record["decision"])), ""]
    lines += ["## Answer", "", run.get("response") or "", "", "## Timeline", "", timeline(record)]
    return "\n".join(lines)


def timeline(record: dict, width: int = BAR_WIDTH) -> str:
    "A text chart of when each call started and ended; the slowest of each layer is marked."
    calls = [(label, call) for label, call in calls_of(record) if call.get("started_ms") is not None]
    if not calls:
        return "(no timing recorded)"
    end = max([record.get("wall_ms") or 0] + [c.get("ended_ms") or c["started_ms"] for _, c in calls]) or 1
    slowest = _slowest_per_layer(calls)
    name_width = max(len(f"{label} {c.get('model')}") for label, c in calls)
    lines = [f"{'':{name_width}}  {'0s':<{width + 1}}{end / 1000:.2f}s"]
    for label, call in calls:
        start, stop = call["started_ms"], call.get("ended_ms") or end
        first = min(width - 1, int(start / end * width))
        last = min(width, max(first + 1, round(stop / end * width)))
        bar = " " * first + "█" * (last - first)
        mark = "  ◀ slowest" if id(call) in slowest else ""
        lines.append(
            f"{label + ' ' + str(call.get('model')):{name_width}}  |{bar:{width}}| "
            f"{start / 1000:.2f}–{stop / 1000:.2f}s {call.get('status')}{mark}"
        )
    return "\n".join(lines)


def _slowest_per_layer(calls: list[tuple[str, dict]]) -> set[int]:
    latest: dict[str, dict] = {}
    for label, call in calls:
        if label != "agg" and (label not in latest or (call.get("ended_ms") or 0) > (latest[label].get("ended_ms") or 0)):
            latest[label] = call
    return {id(call) for call in latest.values()} if sum(label != "agg" for label, _ in calls) > 1 else set()


def _call_heading(call: dict) -> str:
    usage = call.get("usage") or {}
    bits = [str(call.get("model")), str(call.get("status")), _seconds(call.get("duration_ms"))]
    if usage.get("input") is not None or usage.get("output") is not None:
        bits.append(f"{_n(usage.get('input'))} in / {_n(usage.get('output'))} out")
    if (call.get("attempts") or 1) > 1:
        bits.append(f"{call['attempts']} attempts")
    return " · ".join(bits)


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _seconds(ms: Any) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"
