"""llm-moa: Mixture-of-Agents models for llm.

This module is imported by every ``llm`` command, so it only declares hooks;
everything else is imported when a MoA model is actually listed or run.
"""

import llm


@llm.hookimpl
def register_models(register):
    from . import presets
    from .local import register_local_models
    from .model import AsyncMoaModel, MoaModel

    register(MoaModel("moa-default"), AsyncMoaModel("moa-default"))
    register_local_models(register)
    for name, entry in presets.load_quietly().items():
        options = presets.options_of(entry)
        register(MoaModel(f"moa-{name}", preset=options), AsyncMoaModel(f"moa-{name}", preset=options))


@llm.hookimpl
def register_commands(cli):
    import click

    class LazyGroup(click.Group):
        "`llm moa`, whose commands are built only when it is used."

        def _group(self) -> click.Group:
            from .commands import moa_group

            return moa_group()

        def list_commands(self, ctx):
            return self._group().list_commands(ctx)

        def get_command(self, ctx, name):
            return self._group().get_command(ctx, name)

    cli.add_command(LazyGroup(name="moa", help="Mixture-of-Agents: presets, runs, eval and unfinished runs"))


@llm.hookimpl
def register_tools(register):
    from .tools import MoA  # light: llm and the standard library only

    register(MoA)
