"""The eval's report: scores with their intervals, cost and speed, as a table, CSV, JSON and a text chart.

A prompt the eval never asked a model (stopped by --max-cost or Ctrl-C) is
left out of that model's figures and counted as ``not_asked``; a figure that is
not known (dollars of unpriced calls) is None in JSON, empty in CSV and ``?``
in the table, never 0.
"""

from __future__ import annotations

import csv
import io
import math
import re
from typing import TYPE_CHECKING, Any

from .. import prices
from ..core.mixture import same_key
from ..text import shorten, table, visible
from .results import ORDERS, Billed

if TYPE_CHECKING:
    from .inputs import Row
    from .run import Eval


def grade(kind: str, response: str, expected: str) -> bool:
    "Whether the response is right: the same answer as a vote counts it, or a regex match."
    if kind == "regex":
        try:
            return re.search(expected, response, re.IGNORECASE | re.DOTALL) is not None
        except re.error:
            return False
    if kind == "exact":
        return same_key(response) == same_key(expected)
    return same_key(expected) in same_key(response)


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    "95% Wilson score interval; ties may count as half successes."
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile(values: list[float], q: float) -> float | None:
    "Nearest-rank percentile."
    if not values:
        return None
    return sorted(values)[max(0, math.ceil(q * len(values)) - 1)]


def report(ev: Eval) -> dict:
    "What --json prints, and what the table, the chart and --csv show."
    candidates = []
    for model in ev.models:
        records = [r for row in ev.rows if (r := ev.answer(model, row, failed=True))]
        answered = [r for r in records if r.ok]
        errors = [r.error for r in records if not r.ok]
        latencies = [a.duration_ms / 1000 for a in answered]
        tokens = [
            (a.input_tokens or 0) + (a.output_tokens or 0)
            for a in answered
            if a.input_tokens is not None or a.output_tokens is not None
        ]
        entry: dict[str, Any] = {
            "model": model,
            "role": "baseline" if model == ev.baseline else "candidate",
            "prompts": len(ev.rows),
            "answered": len(answered),
            "failures": len(errors),
            "not_asked": len(ev.rows) - len(records),
            "failure_reason": _most_common(errors),
            "mean_latency_s": _mean(latencies),
            "p90_latency_s": percentile(latencies, 0.9),
            "mean_calls": _mean([a.calls or 1 for a in answered]),
            "mean_tokens": _mean(tokens),
            "mean_length_chars": _mean([len(a.text) for a in answered]),
        }
        if ev.grade:  # over the prompts asked; a failed answer counts as wrong
            correct = sum(
                1
                for row in ev.rows
                if (a := ev.answer(model, row)) and grade(ev.grade, a.text, row.answer or "")
            )
            entry.update(_scored("accuracy", correct, len(records), correct=correct))
        elif model != ev.baseline:
            entry.update(_judged(ev, model))
        if ev.prices:  # dollars: a lower bound, naming what is missing, when not complete
            entry.update(_dollars(_cost(ev, records), len(answered), entry.get("correct")))
        candidates.append(entry)
    judgements = [j for pair in ev.pairs() if (j := ev.judgement(*pair, failed=True))]
    return {
        "mode": "graded" if ev.grade else "judged",
        "grade": ev.grade,
        "judge": ev.judge,
        "baseline": ev.baseline,
        "prompts": len(ev.rows),
        "results_file": str(ev.results.path),
        "candidates": candidates,
        "judging_cost": _cost(ev, judgements).to_json() if ev.prices and ev.judge else None,
    }


def _dollars(cost: prices.Cost, answered: int, correct: int | None) -> dict:
    known = cost.complete or cost.usd > 0  # an incomplete $0 is unknown, not free
    return {
        "usd": cost.usd if known else None,
        "usd_per_prompt": cost.usd / answered if known and answered else None,
        "usd_per_correct": cost.usd / correct if known and correct else None,
        "usd_complete": cost.complete,
        "usd_missing": cost.missing(),
    }


def _cost(ev: Eval, records: list[Any]) -> prices.Cost:
    """What these answers or judgements cost, failed ones too, from the calls
    each one recorded. An answer recorded before costs were kept counts as a
    call of unknown usage, so the total is a lower bound naming it (a failure
    recorded then billed nothing that was recorded)."""
    calls = []
    for record in records:
        if record.billed is not None:
            calls += record.billed
        elif record.ok:
            calls.append(
                Billed(model=getattr(record, "model", None) or record.judge, usage="unknown")
            )
    return prices.cost_of_calls(calls, ev.prices)


def _judged(ev: Eval, candidate: str) -> dict:
    outcomes = [o for row in ev.rows if (o := _outcome(ev, candidate, row)) is not None]
    wins, ties, losses = (outcomes.count(outcome) for outcome in (1, 0, -1))
    unreadable = sum(
        1
        for row in ev.rows
        for order in ORDERS
        if (j := ev.judgement(candidate, row, order)) and j.verdict is None
    )
    counts = {"wins": wins, "ties": ties, "losses": losses, "unreadable_verdicts": unreadable}
    scored = _scored("win_rate", wins + ties / 2, len(outcomes), **counts)
    return {**scored, "not_asked": len(ev.rows) - len(outcomes)}


def _scored(metric: str, successes: float, n: int, **counts: int) -> dict:
    low, high = wilson(successes, n)
    return {
        "metric": metric,
        **counts,
        "quality": successes / n if n else None,
        "ci_low": low,
        "ci_high": high,
    }


def _outcome(ev: Eval, candidate: str, row: Row) -> int | None:
    """1 for a win, -1 for a loss, 0 for a tie on one prompt; None when it was
    not asked of both models or not judged both ways yet. Both orders must agree
    for a win or a loss; a failed answer loses to one that was made."""
    mine, theirs = (ev.answer(model, row, failed=True) for model in (candidate, ev.baseline))
    if mine is None or theirs is None:
        return None
    if not (mine.ok and theirs.ok):
        return mine.ok - theirs.ok
    verdicts = [ev.judgement(candidate, row, order) for order in ORDERS]
    if None in verdicts:
        return None
    winners = {verdict.winner for verdict in verdicts}
    return (winners == {"candidate"}) - (winners == {"baseline"})


def _most_common(errors: list[str]) -> str | None:
    "The commonest error, safe to print: it comes from a model or a server."
    if not errors:
        return None
    return shorten(visible(max(set(errors), key=errors.count), newlines=False), 100)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --- output --------------------------------------------------------------------


def to_table(summary: dict) -> str:
    candidates = summary["candidates"]
    priced = "usd" in candidates[0]  # -m is required: there is always a model
    dollars = ["usd_per_prompt"] + (["usd_per_correct"] if summary["mode"] == "graded" else [])
    dollars = dollars if priced else []
    reasons = any(c["failure_reason"] for c in candidates)  # a column only when something failed
    rows = [
        ["model", "quality (95% CI)", "answered", "mean s", "p90 s", "calls", "tokens"]
        + ["$/prompt", "$/correct"][: len(dollars)]
        + ["length", "failures"]
        + (["most common failure"] if reasons else [])
    ]
    for c in candidates:
        rows.append(
            [
                c["model"],
                _quality(c),
                f"{c['answered']}/{c['prompts']}",
                _fmt(c["mean_latency_s"], "{:.2f}"),
                _fmt(c["p90_latency_s"], "{:.2f}"),
                _fmt(c["mean_calls"], "{:.1f}"),
                _fmt(c["mean_tokens"], "{:,.0f}"),
            ]
            + [_usd(c[key], c["usd_complete"]) for key in dollars]
            + [_fmt(c["mean_length_chars"], "{:,.0f}"), str(c["failures"])]
            + ([c["failure_reason"] or ""] if reasons else [])
        )
    lines = [table(rows)]
    not_asked = [
        f"{c['model']} {c['not_asked']} of {c['prompts']}" for c in candidates if c["not_asked"]
    ]
    if not_asked:  # model names come from the results file: shown safe
        lines.append(
            visible(
                f"\nNot asked{' or judged' if summary['mode'] == 'judged' else ''} yet "
                f"(the eval stopped before them): {'; '.join(not_asked)} prompts. "
                "Each model's figures are over the prompts it was asked."
            )
        )
    if priced:
        missing = ", ".join(dict.fromkeys(m for c in candidates for m in c["usd_missing"]))
        note = "\nDollars are estimates from your prices (llm moa prices) or genai-prices' bundled data."
        if missing:
            note += f" ≥ marks a lower bound and ? an unknown: {missing}."
        lines.append(visible(note))
        if summary["judging_cost"]:
            lines.append(visible(f"Judging cost {summary['judging_cost']['text']}."))
    if summary["mode"] == "judged":
        lines.append(
            f"\nWin rate against {summary['baseline']}, judged by {summary['judge']} both ways round "
            "(ties count half). Judges tend to favour longer answers: compare the length column."
        )
    return "\n".join(lines)


def _usd(value: float | None, complete: bool) -> str:
    "'-' for nothing to price, '?' for an unknown, '≥' before a lower bound."
    if value is None:
        return "-" if complete else "?"
    return prices.format_usd(value) if complete else f"≥{prices.format_usd(value)}"


def _quality(c: dict) -> str:
    if c.get("quality") is None:
        return "baseline" if c["role"] == "baseline" else "-"
    interval = f"({c['ci_low']:.2f}-{c['ci_high']:.2f})"
    if c["metric"] == "accuracy":
        return f"acc {c['quality']:.2f} {interval}"
    return f"win {c['quality']:.2f} {interval} {c['wins']}W/{c['ties']}T/{c['losses']}L"


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


CSV_COLUMNS = (
    "model role metric quality ci_low ci_high wins ties losses correct prompts answered failures "
    "not_asked mean_latency_s p90_latency_s mean_calls mean_tokens usd_per_prompt usd_per_correct "
    "usd_complete mean_length_chars failure_reason"
).split()


def to_csv(summary: dict) -> str:
    "One row per model; an unknown figure is an empty cell."
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary["candidates"])
    return out.getvalue()


def text_chart(summary: dict, width: int = 50, height: int = 10) -> str:
    """Quality (up) against cost per prompt (right), one letter per model. The
    cost is in tokens when the models report usage, else in calls. The
    baseline has no quality of its own: it is the 0.5 line by definition."""
    candidates = summary["candidates"]
    tokens = any(c["mean_tokens"] for c in candidates)
    key, unit = ("mean_tokens", "tokens") if tokens else ("mean_calls", "calls")
    points = [  # a candidate not asked anything yet has no point
        (c["model"], c[key] or 0, c["quality"])
        if c.get("quality") is not None
        else (f"{c['model']} (baseline)", c[key] or 0, 0.5)
        for c in candidates
        if c.get("quality") is not None or c["role"] == "baseline"
    ]
    cost_max = max([cost for _, cost, _ in points] + [1])
    grid = [[" "] * (width + 1) for _ in range(height + 1)]
    legend = []
    for number, (label, cost, quality) in enumerate(points):
        letter = chr(ord("A") + number % 26)
        row, x = grid[height - round(quality * height)], round(cost / cost_max * width)
        row[x] = letter if row[x] == " " else "*"  # * where models overlap
        legend.append(f"{letter} {label}" + (" (at *)" if row[x] == "*" else ""))
    lines = [f"quality against cost (mean {unit} per prompt)"]
    for i, cells in enumerate(grid):
        label = {0: "1.0", height // 2: "0.5", height: "0.0"}.get(i, "")
        lines.append(f"{label:>4} |{''.join(cells).rstrip()}")
    lines.append(f"     +{'-' * (width + 1)}")
    lines.append(f"      0{f'{cost_max:,.1f} {unit}':>{width}}")
    return "\n".join(lines + ["", *legend])
