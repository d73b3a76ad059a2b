"""``-o outliers drop``: an answer that stands alone against a clear majority is
left out before the aggregator (or the next layer) reads the answers. Checked
through the real CLI, by what the aggregator and later proposers received."""

import json
import re

import pytest
from conftest import by_role, logged_json, run_llm
from fake_models import read_calls

from llm_moa.core.outliers import find_outliers, similarity

LIAR = (
    "I am completely certain the answer is Lyon, which every reliable source confirms beyond doubt."
)
SKY = "Why is the sky blue?"
SKY_ANSWERS = [  # three paragraphs saying the same thing in different words
    "Sunlight is scattered by the molecules of the air, and short blue wavelengths scatter much "
    "more than red ones (Rayleigh scattering), so blue light reaches our eyes from every "
    "direction of the sky.",
    "Because of Rayleigh scattering: air molecules scatter the shorter, blue wavelengths of "
    "sunlight far more strongly than the longer red wavelengths, so scattered blue light comes "
    "at us from all over.",
    "The molecules in the atmosphere scatter sunlight, and they scatter blue light, which has a "
    "short wavelength, more than red light. That scattered blue light fills the sky.",
]
SKY_LIAR = (  # a different, confident, longer answer on the same topic
    "The sky is blue because it reflects the colour of the oceans, which cover most of the "
    "planet. This is well established; any explanation involving scattering of light is a "
    "common misconception."
)


def moa(*args):
    return run_llm("-m", "moa-default", "-o", "aggregator", "fake-b", *args)


def saying(*answers):
    "Proposers that answer these texts, in this order."
    return json.dumps([{"model": "fake-a", "options": {"text": text}} for text in answers])


def references(system):
    "The answers a model was shown, in the order shown."
    return re.findall(r"<<<BEGIN ANSWER \d+ \w+>>>\n(.*?)\n<<<END ANSWER", system, re.S)


def aggregator_saw():
    _, aggregators = by_role(read_calls())
    assert len(aggregators) == 1
    return references(aggregators[0]["system"])


def decision():
    return logged_json()[0]["response_json"]["moa"]["decision"]


# --- through the CLI ------------------------------------------------------------


def test_drop_leaves_the_lone_confident_answer_out_of_the_aggregators_references():
    result = moa(
        "-o",
        "proposers",
        saying("Paris", "paris.", LIAR, "PARIS"),
        "-o",
        "outliers",
        "drop",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    assert aggregator_saw() == ["Paris", "paris.", "PARIS"]
    assert result.stderr == ""  # nothing failed: no "moa: N of M proposers answered" line
    (check,) = decision()["outliers"]
    assert check == {
        "layer": 1,
        "left_out": [3],
        "groups": [[1, 2, 4], [3]],
        "similarity": {"1": 1.0, "2": 1.0, "3": 0.0, "4": 1.0},
        "reason": "3 of 4 answers agree; 1 answer agreeing with none (similarity below 0.5) left out",
    }
    assert "partial" not in logged_json()[0]["response_json"]["moa"]
    assert decision()["reason"] == "the aggregator synthesised 3 answers"


def test_keep_is_the_default_and_the_aggregator_reads_every_answer():
    result = moa("-o", "proposers", saying("Paris", "paris.", LIAR, "PARIS"), "Capital?")
    assert result.exit_code == 0, result.output
    assert aggregator_saw() == ["Paris", "paris.", LIAR, "PARIS"]
    assert "outliers" not in decision()


def test_moa_show_explains_what_was_left_out_in_the_decision_section():
    moa(
        "-o",
        "proposers",
        saying("Paris", "paris.", LIAR, "PARIS"),
        "-o",
        "outliers",
        "drop",
        "Capital?",
    )
    shown = run_llm("moa", "show").output
    section = shown.split("## Decision\n\n")[1].split("\n\n")[0]
    assert section == (
        "synthesize: the aggregator synthesised 3 answers\n"
        "outliers, layer 1: left out proposer 3 (similarity 0.0): 3 of 4 answers agree; "
        "1 answer agreeing with none (similarity below 0.5) left out"
    )
    assert "Partial" not in shown


@pytest.mark.parametrize(
    "answers",
    [
        ("Paris", "Paris", "Rome", LIAR),  # 2 of 4 agree: not a two-thirds majority
        ("Paris", "Rome", LIAR),  # nobody agrees
    ],
)
def test_without_a_clear_majority_nothing_is_left_out(answers):
    result = moa("-o", "proposers", saying(*answers), "-o", "outliers", "drop", "Capital?")
    assert result.exit_code == 0, result.output
    assert aggregator_saw() == list(answers)
    assert decision()["outliers"][0]["left_out"] == []
    assert decision()["outliers"][0]["reason"] == "no clear majority; nothing left out"


def test_min_proposers_equal_to_the_proposers_leaves_nothing_out():
    answers = ("Paris", "paris.", LIAR, "PARIS")
    result = moa(
        "-o",
        "proposers",
        saying(*answers),
        "-o",
        "outliers",
        "drop",
        "-o",
        "min_proposers",
        "4",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    assert aggregator_saw() == list(answers)
    assert decision()["outliers"][0]["reason"] == "leaving out 1 would leave fewer than 4 answers"


def test_two_of_three_is_a_clear_majority_and_two_answers_remain():
    result = moa(
        "-o", "proposers", saying("Rome", "Paris", "paris"), "-o", "outliers", "drop", "Capital?"
    )
    assert result.exit_code == 0, result.output
    assert aggregator_saw() == ["Paris", "paris"]


def test_long_answers_in_different_words_are_grouped_and_the_odd_one_left_out():
    answers = [SKY_ANSWERS[0], SKY_LIAR, *SKY_ANSWERS[1:]]
    result = moa("-o", "proposers", saying(*answers), "-o", "outliers", "drop", SKY)
    assert result.exit_code == 0, result.output
    assert aggregator_saw() == SKY_ANSWERS
    check = decision()["outliers"][0]
    assert check["groups"] == [[1, 3, 4], [2]] and check["left_out"] == [2]
    assert check["similarity"]["2"] < 0.5 < min(check["similarity"][n] for n in "134")


def test_vote_counts_every_answer():
    result = moa(
        "-o",
        "proposers",
        saying("Rome", "Paris", "paris"),
        "-o",
        "outliers",
        "drop",
        "-o",
        "aggregate",
        "vote",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Paris\n"
    assert [v["count"] for v in decision()["votes"]] == [2, 1]
    assert "outliers" not in decision()


def test_each_refinement_layer_reads_the_previous_answers_without_the_outlier():
    result = moa(
        "-o",
        "proposers",
        saying("Paris", LIAR, "Paris", "Paris"),
        "-o",
        "outliers",
        "drop",
        "-o",
        "layers",
        "3",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    proposers, _ = by_role(read_calls())
    second_layer = [c for c in proposers if "<<<BEGIN ANSWER" in c["system"]]
    assert len(second_layer) == 4
    assert all(references(c["system"]) == ["Paris"] * 3 for c in second_layer)
    assert aggregator_saw() == ["Paris"] * 3
    assert [(c["layer"], c["left_out"]) for c in decision()["outliers"]] == [(1, [2]), (2, [2])]


def test_an_escalated_cascade_leaves_the_outlier_out_of_the_whole_layer():
    result = moa(
        "-o",
        "proposers",
        saying(LIAR, "Paris", "Paris", "Paris"),
        "-o",
        "outliers",
        "drop",
        "-o",
        "cascade",
        "2",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    assert decision()["cascade"] == {"first": 2, "escalated": True, "why": "disagreed"}
    assert aggregator_saw() == ["Paris"] * 3


def test_windows_read_only_the_kept_answers():
    result = moa(
        "-o",
        "proposers",
        saying("Paris", LIAR, "Paris", "Paris"),
        "-o",
        "outliers",
        "drop",
        "-o",
        "window",
        "2",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    steps = [step["references"] for step in decision()["windows"]]
    assert steps == [["proposer 1", "proposer 3"], ["synthesis 1", "proposer 4"]]


def test_select_never_shows_the_outlier():
    result = moa(
        "-o",
        "proposers",
        saying("Paris", LIAR, "Paris.", "paris"),
        "-o",
        "outliers",
        "drop",
        "-o",
        "aggregate",
        "select",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    assert sorted(decision()["shown_order"]) == [1, 3, 4]
    assert LIAR not in result.stdout


def test_skip_if_agree_compares_the_answers_that_are_kept():
    result = moa(
        "-o",
        "proposers",
        saying("Paris", LIAR, "Paris", "Paris"),
        "-o",
        "outliers",
        "drop",
        "-o",
        "skip_if_agree",
        "true",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Paris\n"
    assert by_role(read_calls())[1] == []  # no aggregator call
    assert decision()["agreement"] == [1, 3, 4]


def test_a_bad_value_is_refused_naming_what_is_allowed():
    result = moa("-o", "outliers", "maybe", "hi")
    assert result.exit_code == 1
    assert result.output == "Error: outliers\n  Input should be 'keep' or 'drop', got 'maybe'\n"
    assert read_calls() == []
    assert "outliers:" in run_llm("models", "--options", "-m", "moa-default").output


# --- the measure itself -----------------------------------------------------------


def test_paraphrases_are_similar_and_a_different_confident_answer_is_not():
    for other in SKY_ANSWERS[1:]:
        assert similarity(SKY_ANSWERS[0], other, question=SKY) >= 0.5
    assert all(similarity(text, SKY_LIAR, question=SKY) < 0.5 for text in SKY_ANSWERS)


def test_the_words_of_the_question_do_not_make_different_answers_agree():
    question = "What is the capital of Turkey?"
    right, wrong = "The capital of Turkey is Ankara.", "The capital of Turkey is Istanbul."
    assert similarity(right, wrong, question=question) == 0.0
    assert similarity(right, "Ankara", question=question) == 1.0


def test_short_answers_agree_as_a_vote_counts_them():
    assert similarity("Paris", " PARIS. ") == 1.0
    assert similarity("Paris", "Paris, France") == 0.0  # as for vote: not the same answer
    assert similarity("", "") == 0.0


def test_never_fewer_than_two_answers():
    assert find_outliers(["Paris", "Rome"])["left_out"] == []
    assert find_outliers(["Paris", "Paris", "Rome"], floor=3)["left_out"] == []
    assert find_outliers(["Paris", "Paris", "Rome"])["left_out"] == [2]
    assert find_outliers([])["left_out"] == []


def test_with_a_schema_answers_agree_as_parsed_json():
    schema = {"type": "object"}
    answers = ['{"city": "Paris"}', '{ "city":"Paris" }', '{"city": "Paris"}', '{"city": "Lyon"}']
    assert find_outliers(answers, schema)["left_out"] == [3]


def test_a_tool_round_reuses_the_answers_the_aggregator_read_first():
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        saying("Paris", LIAR, "Paris", "Paris"),
        "-o",
        "aggregator",
        "fake-tooler",
        "-o",
        "outliers",
        "drop",
        "-T",
        "llm_version",
        "Capital?",
    )
    assert result.exit_code == 0, result.output
    first, second = [c for c in read_calls() if c["model"] == "fake-tooler"]
    assert second["tool_results"]  # the tool round, answered by the aggregator alone
    assert references(first["system"]) == references(second["system"]) == ["Paris"] * 3
