"""Tools (-T) on MoA models, and a MoA panel as a tool: llm's own chain runs every tool.

The aggregator is ``fake-tooler``: given tools, it calls one (the first, or
``-o aggregator_options '{"tool": ...}'``) and answers with the results once
they come back. fake-a and fake-b, the proposers, support no tools.
"""

import asyncio
import json
from importlib.metadata import version

import llm
import pytest
from conftest import logged_json, moa, run_llm, turns
from fake_models import read_calls
from llm.tools import llm_time, llm_version

VERSION = version("llm")
PANEL = ["-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-tooler"]
OPTIONS = {"proposers": "fake-a,fake-b", "aggregator": "fake-tooler"}


def aggregator_options(**options):
    return ["-o", "aggregator_options", json.dumps(options)]


def records(user_path):
    "Each logged turn's run record, oldest first."
    return [json.loads(turn["response_json"])["moa"] for turn in turns(user_path)]


def by_model(model):
    return [call for call in read_calls() if call["model"] == model]


# --- a MoA model with tools ---------------------------------------------------


def test_the_aggregator_calls_a_tool_that_llm_runs(user_path):
    result = moa(*PANEL, "-T", "llm_version", "which version?")
    assert result.stdout == f"fake-tooler got llm_version: {VERSION}\n"

    proposers = by_model("fake-a") + by_model("fake-b")
    assert len(proposers) == 2  # they answered once, on the first turn
    for call in proposers:
        assert call["tools"] == []  # told about the tools, never given them
        assert "- llm_version: Return the installed version of llm" in call["system"]
        assert "you cannot call them yourself" in call["system"]
    first, second = by_model("fake-tooler")
    assert first["tools"] == ["llm_version"] and first["tool_results"] == []
    assert "fake-a answers: which version?" in first["system"]  # the proposals, as references
    assert second["tool_results"] == [
        {"name": "llm_version", "output": VERSION, "tool_call_id": "call-fake-tooler-1"}
    ]
    assert [m["parts"] for m in second["messages"] if m["role"] != "system"] == [
        ["TextPart"],
        ["ToolCallPart"],
        ["ToolResultPart"],
    ]
    assert second["system"] == first["system"]  # the same proposals again, not asked again

    # one thread of two turns, as llm logs any tool chain
    first_turn, second_turn = turns(user_path)
    assert first_turn["thread_id"] == second_turn["thread_id"]
    call_record, result_record = records(user_path)
    assert call_record["aggregator"]["tool_calls"] == [
        {"name": "llm_version", "arguments": {}, "tool_call_id": "call-fake-tooler-1"}
    ]
    assert call_record["tools"] == {"offered": ["llm_version"]}
    assert result_record["tools"] == {
        "offered": ["llm_version"],
        "tool_results": 1,
        "tool_turns": "aggregator",
        "proposals_from": first_turn["id"],
    }
    logged = {row["id"]: row for row in logged_json(2)}
    assert [c["name"] for c in logged[first_turn["id"]]["tool_calls"]] == ["llm_version"]
    assert [r["output"] for r in logged[second_turn["id"]]["tool_results"]] == [VERSION]
    assert json.loads(first_turn["token_details"])["moa_calls"] == 3
    assert json.loads(second_turn["token_details"])["moa_calls"] == 1


@pytest.mark.parametrize("mode, calls", [("aggregator", [3, 1, 1]), ("all", [3, 3, 3])])
def test_the_cost_of_each_tool_round(mode, calls, user_path):
    "Two tool rounds: the first turn is a full run; each round after is 1 call, or a full run with 'all'."
    result = moa(
        *PANEL,
        "-o",
        "tool_turns",
        mode,
        *aggregator_options(tool_rounds=2),
        "-T",
        "llm_version",
        "q",
    )
    assert result.stdout == f"fake-tooler got llm_version: {VERSION}\n"
    assert [record["calls"] for record in records(user_path)] == calls
    assert [json.loads(t["token_details"])["moa_calls"] for t in turns(user_path)] == calls
    assert len(read_calls()) == sum(calls)
    if mode == "all":
        later = by_model("fake-a")[1]  # the proposers read the tool results as text
        assert later["prompt"].startswith(
            f"The tools were called. Their results:\n\nllm_version({{}}) returned:\n{VERSION}"
        )
        assert [m["text"] for m in later["messages"] if m["role"] != "system"][:2] == [
            "q",
            "[called the tool llm_version({})]",
        ]
        assert later["tools"] == []
        assert records(user_path)[1]["tools"]["tool_turns"] == "all"


def test_tools_debug_shows_each_call_and_result():
    result = moa(*PANEL, "--td", "-T", "llm_version", "which version?")
    assert "Tool call: llm_version({})" in result.stderr
    assert VERSION in result.stderr


def test_approval_and_refusal_in_llm_chat(user_path):
    result = run_llm(
        "chat",
        "-m",
        "moa-default",
        *PANEL,
        "--ta",
        "-T",
        "llm_version",
        input="which version?\ny\nand now?\nn\nquit\n",
    )
    assert result.exit_code == 0, result.output
    assert f"fake-tooler got llm_version: {VERSION}" in result.stdout
    assert "fake-tooler got llm_version: Cancelled: User cancelled tool call" in result.stdout
    assert result.stderr.count("Tool call: llm_version({})") == 2
    assert [record["calls"] for record in records(user_path)] == [
        3,
        1,
        3,
        1,
    ]  # a chat turn is a full run
    assert len({turn["thread_id"] for turn in turns(user_path)}) == 1


def test_chain_limit_stops_a_long_tool_loop():
    result = moa(
        *PANEL,
        "--chain-limit",
        "2",
        *aggregator_options(tool_rounds=5),
        "-T",
        "llm_version",
        "q",
        ok=False,
    )
    assert result.exit_code == 1
    assert "Chain limit of 2 exceeded" in result.output
    assert len(by_model("fake-tooler")) == 2


def test_continue_a_conversation_that_used_tools():
    moa(*PANEL, "-T", "llm_version", "which version?")
    result = run_llm("-c", "-T", "llm_time", "and the time?")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("fake-tooler got llm_time: {")  # the combination carried on
    aggregator = by_model("fake-tooler")[-2]  # the third turn, where it called llm_time
    assert aggregator["tools"] == ["llm_time"]
    assert [m["parts"] for m in aggregator["messages"] if m["role"] != "system"] == [
        ["TextPart"],
        ["ToolCallPart"],
        ["ToolResultPart"],
        ["TextPart"],
        ["TextPart"],
    ]
    proposer = by_model("fake-a")[-1]
    assert [m["text"] for m in proposer["messages"] if m["role"] != "system"] == [
        "which version?",
        "[called the tool llm_version({})]",
        f"Tool results:\n\nllm_version({{}}) returned:\n{VERSION}",
        f"fake-tooler got llm_version: {VERSION}",
        "and the time?",
    ]


def test_the_tests_own_toolbox_is_described_to_the_proposers(user_path):
    result = moa(
        *PANEL,
        *aggregator_options(tool="Notebook_add", tool_args={"note": "buy milk"}),
        "-T",
        "Notebook",
        "q",
    )
    assert result.stdout == "fake-tooler got Notebook_add: noted (1)\n"
    system = by_model("fake-a")[0]["system"]
    assert '- Notebook_add: Add a note.\n  arguments: {"note": "string"}' in system
    assert "- Notebook_read: Read the notes." in system
    assert records(user_path)[0]["aggregator"]["tool_calls"][0]["arguments"] == {"note": "buy milk"}


@pytest.mark.parametrize("style", ["add", "events"])
def test_tool_calls_pass_through_however_the_plugin_reports_them(style, user_path):
    "add_tool_call only, or stream events only and without ids (the MoA then gives each call an id)."
    result = moa(*PANEL, *aggregator_options(call_style=style), "-T", "llm_version", "q")
    assert result.stdout == f"fake-tooler got llm_version: {VERSION}\n"
    call_id = records(user_path)[0]["aggregator"]["tool_calls"][0]["tool_call_id"]
    assert call_id == "call-fake-tooler-1" if style == "add" else call_id.startswith("tc_")
    assert by_model("fake-tooler")[1]["tool_results"][0]["tool_call_id"] == call_id


def test_moa_show_has_the_tool_calls():
    moa(*PANEL, "-T", "llm_version", "q")
    first, second = [row["id"] for row in logged_json(2)]
    shown = run_llm("moa", "show", first).output
    assert "## Tools\n\nOffered: llm_version" in shown
    assert "Tool call: llm_version({})" in shown
    shown = run_llm("moa", "show", second).output
    assert f"Proposals reused from run {first}" in shown
    assert "## Layer 1" not in shown


# --- the Python API -----------------------------------------------------------


def test_model_chain_in_python():
    seen = []
    chain = llm.get_model("moa-default").chain(
        "which version?",
        tools=[llm_version],
        options=OPTIONS,
        after_call=lambda tool, call, result: seen.append((call.name, result.output)),
    )
    responses = list(chain.responses())
    assert (
        "".join(response.text() for response in responses)
        == f"fake-tooler got llm_version: {VERSION}"
    )
    assert seen == [("llm_version", VERSION)]
    assert responses[0].tool_calls() == [
        llm.ToolCall(name="llm_version", arguments={}, tool_call_id="call-fake-tooler-1")
    ]
    assert [r.usage().details["moa_calls"] for r in responses] == [3, 1]


@pytest.mark.parametrize("mode, calls", [("aggregator", [3, 1]), ("all", [3, 3])])
def test_async_model_chain_in_python(mode, calls):
    async def run():
        chain = llm.get_async_model("moa-default").chain(
            "what time is it?", tools=[llm_time], options={**OPTIONS, "tool_turns": mode}
        )
        texts, usages = [], []
        async for response in chain.responses():
            texts.append(await response.text())
            usages.append(await response.usage())
        return "".join(texts), usages

    text, usages = asyncio.run(run())
    assert text.startswith("fake-tooler got llm_time: {")
    assert [usage.details["moa_calls"] for usage in usages] == calls


def test_a_reply_without_the_conversation_is_a_full_run():
    "response.reply() keeps no conversation, so the proposals are not at hand: every model answers again."
    model = llm.get_model("moa-default")
    first = model.prompt("which version?", tools=[llm_version], **OPTIONS)
    assert first.text() == ""
    second = first.reply(options=OPTIONS)
    assert second.text() == f"fake-tooler got llm_version: {VERSION}"
    assert second.json()["moa"]["tools"]["tool_turns"] == "all"
    assert second.json()["moa"]["calls"] == 3


def test_a_tool_turn_after_a_record_out_of_shape_is_a_full_run():
    "An earlier turn's record that does not parse has no proposals to reuse: every model answers again."
    chain = llm.get_model("moa-default").chain(
        "which version?", tools=[llm_version], options=OPTIONS
    )
    responses = []
    for response in chain.responses():
        assert response.text() is not None  # the turn runs to its end
        if not responses:
            response.response_json["moa"]["proposer_layers"] = "edited"
        responses.append(response)
    assert responses[1].text() == f"fake-tooler got llm_version: {VERSION}"
    assert responses[1].json()["moa"]["calls"] == 3
    assert "proposals_from" not in responses[1].json()["moa"]["tools"]


# --- bad input ----------------------------------------------------------------


def test_an_unknown_tool_is_llms_own_error(user_path):
    result = moa(*PANEL, "-T", "nope", "q", ok=False)
    assert result.exit_code == 1
    assert "Error: Tool(s) nope not found. Available tools:" in result.output
    assert read_calls() == [] and turns(user_path) == []


@pytest.mark.parametrize("aggregator", [None, "fake-tooler,fake-a"])
def test_an_aggregator_without_tools_is_refused_before_any_call(aggregator, user_path):
    "The default aggregator (the default model, fake-a), or a fallback aggregator, cannot use tools."
    args = ["-o", "aggregator", aggregator] if aggregator else []
    result = run_llm(
        "-m", "moa-default", "-o", "proposers", "fake-b", *args, "-T", "llm_version", "q"
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: aggregator fake-a does not support tools; choose one that does (llm models --tools)"
    ]
    assert read_calls() == [] and turns(user_path) == []


def test_a_bad_tool_turns_value():
    result = moa(*PANEL, "-o", "tool_turns", "some", "-T", "llm_version", "q", ok=False)
    assert result.exit_code == 1
    assert "Error: tool_turns\n  Input should be 'aggregator' or 'all', got 'some'" in result.output


def test_a_tool_that_raises_is_reported_as_llm_reports_it(user_path):
    result = moa(
        *PANEL,
        "--td",
        *aggregator_options(tool="fake_boom", tool_args={"reason": "why"}),
        "-T",
        "fake_boom",
        "q",
    )
    assert result.stdout == "fake-tooler got fake_boom: Error: boom: why\n"
    assert "Exception: boom: why" in result.stderr
    assert "boom: why" in json.dumps(logged_json(1)[0]["tool_results"])


# --- a MoA panel as a tool ----------------------------------------------------


def test_a_model_consults_a_moa_preset(user_path):
    run_llm(
        "moa", "save", "research", "-o", "proposers", "fake-b,fake-c", "-o", "aggregator", "fake-a"
    )
    result = run_llm(
        "-m",
        "fake-tooler",
        "-o",
        "tool_args",
        '{"question": "what is up?"}',
        "-T",
        'MoA("research")',
        "ask the panel",
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout == "fake-tooler got MoA_ask: fake-a answers: what is up?\n"
    )  # the panel's answer only
    assert sorted(c["model"] for c in read_calls() if c["prompt"] == "what is up?") == [
        "fake-a",
        "fake-b",
        "fake-c",
    ]
    assert [turn["model"] for turn in turns(user_path)] == [
        "fake-tooler",
        "fake-tooler",
    ]  # the panel is not a turn


def test_moa_alone_is_moa_default_and_works_with_async_models():
    result = run_llm(
        "--async", "-m", "fake-tooler", "-o", "tool_args", '{"question": "q?"}', "-T", "MoA", "ask"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake-tooler got MoA_ask: fake-a answers: q?\n"
    assert [c["model"] for c in read_calls() if c["prompt"] == "q?"] == [
        "fake-a"
    ] * 4  # Self-MoA: 3 + 1


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            'MoA("nope")',
            "Error: MoA(...): no MoA model 'moa-nope'; the presets are listed by 'llm moa list'",
        ),
        (
            'MoA("two words")',
            "Error: MoA(...) takes a preset name such as 'research', got 'two words'",
        ),
    ],
)
def test_an_unknown_panel_is_refused_before_any_call(spec, message):
    result = run_llm("-m", "fake-tooler", "-T", spec, "q")
    assert result.exit_code == 1
    assert result.output.strip() == message
    assert read_calls() == []


def test_a_moa_run_never_offers_the_panel_to_its_members():
    moa(*PANEL, "-T", "MoA", "-T", "llm_version", "q")
    assert by_model("fake-tooler")[0]["tools"] == ["llm_version"]
    assert all("MoA_ask" not in call["system"] for call in read_calls())
    # with the panel as its only tool, a run needs no tool-capable aggregator
    result = run_llm("-m", "moa-default", "-o", "proposers", "fake-b", "-T", "MoA", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake-a answers: hi\n"


def test_a_call_to_a_tool_the_aggregator_was_not_given_is_not_passed_on():
    # the aggregator asks for llm_time although only llm_version was offered
    result = moa(
        *PANEL,
        "-T",
        "llm_version",
        "-o",
        "aggregator_options",
        '{"tool": "llm_time", "text": "done"}',
        "q",
    )
    assert result.stdout == "done\n"
    assert len(by_model("fake-tooler")) == 1  # no tool call reached llm, so no tool round followed


# --- tools under every strategy -----------------------------------------------

ADVICE = "I cannot call tools; llm_version() would help."


@pytest.mark.parametrize(
    "args, name, fix",
    [
        (["-o", "aggregate", "select"], "aggregate select", "use aggregate synthesize"),
        (["-o", "aggregate", "vote"], "aggregate vote", "use aggregate synthesize"),
        (["-o", "skip_if_agree", "true"], "skip_if_agree", "set skip_if_agree false"),
    ],
)
def test_a_strategy_that_outputs_a_proposal_is_refused_with_tools(args, name, fix, user_path):
    "Its answer is a proposal as written, and proposers cannot call tools: never silently."
    result = moa(*PANEL, *args, "-T", "llm_version", "q", ok=False)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: {name} cannot be used with tools (-T): its answer is a proposal as written, "
        f"and only the aggregator can call tools; {fix}"
    ]
    assert read_calls() == [] and turns(user_path) == []


def test_a_cascade_that_agrees_still_lets_the_aggregator_call_the_tools(user_path):
    proposers = json.dumps([{"model": "fake-a", "options": {"text": ADVICE}}] * 3)
    result = moa(*PANEL,
        "-o", "proposers", proposers, "-o", "cascade", "2", "-o", "layers", "3",
        "-T", "llm_version", "q",
    )  # fmt: skip
    assert result.stdout == f"fake-tooler got llm_version: {VERSION}\n"
    assert len(by_model("fake-a")) == 2  # the third proposer and layer 2 were never asked
    first, second = records(user_path)
    assert first["calls"] == 3 and second["calls"] == 1  # the tool round reuses layer 1's answers
    assert second["tools"]["tool_turns"] == "aggregator"
    assert first["decision"]["cascade"] == {"first": 2, "escalated": False}
    assert first["decision"]["strategy"] == "synthesize"
    assert first["aggregator"]["tool_calls"][0]["name"] == "llm_version"


def test_a_window_step_that_calls_a_tool_passes_the_call_on(user_path):
    proposers = json.dumps([{"model": "fake-a", "options": {"text": f"p{n}"}} for n in (1, 2, 3)])
    result = moa(
        *PANEL, "-o", "proposers", proposers, "-o", "window", "2", "-T", "llm_version", "q"
    )
    assert result.stdout == f"fake-tooler got llm_version: {VERSION}\n"
    first, second = records(user_path)
    # step 1 asked for the tool: its call went to llm and ended that turn's synthesis
    assert first["calls"] == 4 and first["aggregator"]["tool_calls"][0]["name"] == "llm_version"
    assert [s["references"] for s in first["decision"]["windows"]] == [["proposer 1", "proposer 2"]]
    assert first["decision"]["aggregate"] == second["decision"]["aggregate"] == "synthesize"
    # the tool round runs the window again, every step with the results
    assert second["calls"] == 2 and len(second["decision"]["windows"]) == 2
    tool_rounds = by_model("fake-tooler")[1:]
    assert [len(call["tool_results"]) for call in tool_rounds] == [1, 1]
    assert "synthesis 1" not in json.dumps(first["decision"])


def test_two_panels_in_one_command_are_refused(user_path):
    run_llm("moa", "save", "research", "-o", "proposers", "fake-b,fake-c")
    result = run_llm("-m", "fake-tooler", "-T", "MoA", "-T", 'MoA("research")', "q")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: MoA(...) given twice; a model can reach only one panel (its tool is MoA_ask)"
    )
    assert read_calls() == [] and turns(user_path) == []


def test_a_prompt_given_only_as_messages_is_asked():
    "With no prompt text, the trailing user message is the question (as for the offline model)."
    response = llm.get_model("moa-default").prompt(
        messages=[llm.user("What is up?")], proposers="fake-a,fake-b", aggregator="fake-c"
    )
    assert response.text() == "fake-c answers: What is up?"
    assert [call["prompt"] for call in read_calls()] == ["What is up?"] * 3
