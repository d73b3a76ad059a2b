"""llm-moa: Mixture-of-Agents models for llm.

This module is imported by every ``llm`` command, so it only declares hooks;
everything else is imported when a MoA model is actually listed or run.
"""

import llm


@llm.hookimpl
def register_models(register):
    from .adapter.model import AsyncMoaModel, MoaModel
    from .files import presets
    from .local import register_local_models

    register(MoaModel("moa-default"), AsyncMoaModel("moa-default"))
    register_local_models(register)
    for name, options in presets.load_quietly().items():
        register(
            MoaModel(f"moa-{name}", preset=options), AsyncMoaModel(f"moa-{name}", preset=options)
        )


@llm.hookimpl
def register_commands(cli):
    from .cli.commands import MoaGroup  # light: its commands are built when used

    cli.add_command(
        MoaGroup(name="moa", help="Mixture-of-Agents: presets, runs, eval and unfinished runs")
    )


@llm.hookimpl
def register_tools(register):
    from .adapter.tools import MoA  # light: llm and the standard library only

    register(MoA)
