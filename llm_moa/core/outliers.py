"""Leave out an answer that stands alone against a clear majority (``-o outliers drop``).

MoA trusts every reference: one deceptive or broken proposer among several can
drag the aggregator's answer down (arXiv:2503.05856), and defences that group
the answers and filter the odd one out recover most of the loss. Here:

* **When two answers agree.** Two short answers (at most ``SHORT_WORDS``
  words) agree when ``vote`` would count them as one: the same ``same_key``.
  Otherwise they agree when the cosine similarity of their word counts is at
  least ``AGREE``, counting words after dropping stopwords, the words of the
  question (every on-topic answer repeats them, and they say nothing about
  which answer it gives) and a plural or verb ending. Cosine over counts is the
  textbook bag-of-words measure: standard library only, no network, no model,
  deterministic, and symmetric, so the groups do not depend on the order of the
  answers. It sees shared words, not meaning: paraphrases that keep the
  content words ("boils", "boiling point", "vapour pressure") group together,
  while an answer that names a different fact does not, however confident.
  ``difflib`` was rejected because it compares order, which paraphrases change.
* **Groups** are the connected sets of agreeing answers.
* **The rule.** An answer is left out only when it stands alone (it agrees
  with no other answer) while one group holds a clear majority: at least
  ``MAJORITY`` (two thirds) of the answers and at least two. Nothing is left
  out without such a majority, nor when it would leave fewer answers than
  ``floor`` (two, or ``min_proposers`` if higher).

This module only decides; ``kept`` applies the decision to a layer's calls and
records it in ``run.decision["outliers"]``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from ..text import count

SHORT_WORDS = 3
AGREE = 0.5
MAJORITY = 2 / 3
ENDINGS = ("ing", "ed", "s")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours
    yourself yourselves""".split()
)


def words(text: str, ignored: frozenset[str] = frozenset()) -> Counter[str]:
    "The content words of a text, counted: lowercase, stopwords and ``ignored`` left out."
    counted: Counter[str] = Counter()
    for word in re.findall(r"\w+", text.casefold()):
        word = _stem(word)
        if word not in STOPWORDS and word not in ignored:
            counted[word] += 1
    return counted


def _stem(word: str) -> str:
    "A plural or verb ending removed, so 'boils', 'boiled' and 'boiling' count as 'boil'."
    for ending in ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return word[: -len(ending)]
    return word


def cosine(a: Counter[str], b: Counter[str]) -> float:
    "Cosine similarity of two word counts: 1 for the same words in proportion, 0 for none shared."
    dot = sum(count * b[word] for word, count in a.items())
    if not dot:
        return 0.0
    return dot / math.sqrt(sum(c * c for c in a.values()) * sum(c * c for c in b.values()))


def similarity(a: str, b: str, schema: dict | None = None, question: str = "") -> float:
    "How much two answers agree, from 0 to 1 (see the module's docstring)."
    ignored = frozenset(words(question))
    return _agreement(_prepared(a, schema, ignored), _prepared(b, schema, ignored))


def _prepared(text: str, schema: dict | None, ignored: frozenset[str]) -> tuple:
    "What comparing an answer needs, worked out once per answer: its key, shortness, words."
    from .mixture import same_key  # here: mixture imports this module

    key = same_key(text, schema)
    return key, len(key.split()) <= SHORT_WORDS, words(key, ignored)


def _agreement(a: tuple, b: tuple) -> float:
    (key_a, short_a, words_a), (key_b, short_b, words_b) = a, b
    if key_a and key_a == key_b:
        return 1.0
    if short_a and short_b:
        return 0.0  # two short answers: only the vote's sameness counts
    return round(cosine(words_a, words_b), 3)


def find_outliers(
    answers: list[str], schema: dict | None = None, question: str = "", floor: int = 2
) -> dict[str, Any]:
    """Which answers to leave out, and why: ``left_out`` (0-based positions),
    ``groups``, ``similarity`` (each answer's highest similarity to another)
    and a one-line ``reason``."""
    n = len(answers)
    ignored = frozenset(words(question))
    prepared = [_prepared(answer, schema, ignored) for answer in answers]
    matrix = [[1.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):  # similarity is symmetric
            matrix[i][j] = matrix[j][i] = _agreement(prepared[i], prepared[j])
    groups = _groups([[matrix[i][j] >= AGREE for j in range(n)] for i in range(n)])
    best = [max((matrix[i][j] for j in range(n) if j != i), default=0.0) for i in range(n)]
    largest = max(groups, key=len, default=[])
    alone = [group[0] for group in groups if len(group) == 1]
    found: dict[str, Any] = {"groups": groups, "similarity": best, "left_out": []}
    if len(largest) < max(2, math.ceil(MAJORITY * n - 1e-9)):
        return {**found, "reason": "no clear majority; nothing left out"}
    if not alone:
        return {**found, "reason": "every answer agrees with another"}
    if n - len(alone) < max(2, floor):
        return {
            **found,
            "reason": f"leaving out {len(alone)} would leave fewer than {max(2, floor)} answers",
        }
    reason = (
        f"{len(largest)} of {n} answers agree; {count(len(alone), 'answer')} agreeing with "
        f"none (similarity below {AGREE}) left out"
    )
    return {**found, "left_out": alone, "reason": reason}


def _groups(agree: list[list[bool]]) -> list[list[int]]:
    "The connected sets of agreeing answers, each in order, in the order of their first answer."
    groups: list[set[int]] = []
    for i in range(len(agree)):
        joined = [group for group in groups if any(agree[i][j] for j in group)]
        groups = [group for group in groups if group not in joined] + [{i}.union(*joined)]
    return sorted(sorted(group) for group in groups)


def kept(plan: Any, run: Any, calls: list) -> list:
    """The answered calls another model reads: with ``outliers drop``, those
    that do not stand alone against a clear majority (never the answers a vote
    counts). Each check is recorded under ``run.decision["outliers"]``, once
    per layer, with proposers numbered from 1."""
    answered = [call for call in calls if call.ok]
    config = plan.config
    if config.outliers != "drop" or not answered:
        return answered
    layer = answered[0].layer
    if config.aggregate == "vote" and layer == config.layers - 1:
        return answered
    found = find_outliers(
        [call.text for call in answered],
        plan.schema,
        plan.request.text,
        config.min_proposers,
    )
    number = [call.index + 1 for call in answered]
    entry = {
        "layer": layer,
        "left_out": [number[i] for i in found["left_out"]],
        "groups": [[number[i] for i in group] for group in found["groups"]],
        "similarity": {str(number[i]): s for i, s in enumerate(found["similarity"])},
        "reason": found["reason"],
    }
    checks = [c for c in run.decision.get("outliers", []) if c["layer"] != layer]
    run.decision["outliers"] = [*checks, entry]
    return [call for i, call in enumerate(answered) if i not in found["left_out"]]
