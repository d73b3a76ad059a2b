"""The strategy evidence table of the README, from `llm moa eval` results files.

    python benchmarks/strategies_table.py PROMPTS.jsonl RESULTS.eval.jsonl MODEL...

Unlike `llm moa eval`'s own report, which counts a prompt a model has not
answered yet as wrong, this scores every model on the prompts that *all* the
given models answered, so an eval stopped part-way still compares like with
like. Grading is `--grade contains`. For a cascade preset (`moa-s-cascade`,
2 of 3 proposers first) the escalation rate is the share of prompts that took
more than 2 calls.
"""

import json
import sys

from llm_moa.evaluate import grade, read_rows, wilson


def main(prompts: str, results: str, *models: str) -> None:
    rows = read_rows(prompts)
    answers = {}
    for line in open(results, encoding="utf-8"):
        record = json.loads(line) if line.strip() else {}
        if record.get("type") == "answer" and "error" not in record:
            answers[(record["model"], record["key"])] = record
    common = [row for row in rows if all((model, row.key) in answers for model in models)]
    print(f"{len(common)} of {len(rows)} prompts answered by every model\n")
    print("| model | accuracy (95% CI) | tokens / prompt | calls / prompt | latency s (mean) | escalated |")
    print("|---|---|---|---|---|---|")
    for model in models:
        got = [answers[(model, row.key)] for row in common]
        right = sum(grade("contains", a["text"], row.answer or "") for a, row in zip(got, common))
        low, high = wilson(right, len(got))
        tokens = sum((a.get("input_tokens") or 0) + (a.get("output_tokens") or 0) for a in got) / len(got)
        calls = sum(a.get("calls") or 1 for a in got) / len(got)
        latency = sum(a["duration_ms"] for a in got) / len(got) / 1000
        escalated = f"{sum((a.get('calls') or 1) > 2 for a in got) / len(got):.0%}" if "cascade" in model else ""
        print(f"| {model} | {right}/{len(got)} = {right / len(got):.2f} ({low:.2f}-{high:.2f}) | "
              f"{tokens:,.0f} | {calls:.2f} | {latency:.1f} | {escalated} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
