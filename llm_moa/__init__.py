"""llm-moa: Mixture-of-Agents models for llm.

This module is imported by every ``llm`` command, so it only declares hooks;
everything else is imported when a MoA model is actually listed or run.
"""

import llm


@llm.hookimpl
def register_models(register):
    from .model import AsyncMoaModel, MoaModel

    register(MoaModel("moa-default"), AsyncMoaModel("moa-default"))


@llm.hookimpl
def register_commands(cli):
    from .commands import register

    register(cli)
