"""The two errors llm-moa raises: bad input, and a run that could not answer."""

import llm


class MoaError(ValueError):
    "Bad input (an option, a model name, a file the plugin reads): one line naming it."


class MoaRunError(llm.ModelError):
    "A run that produced no answer; one line per failed call."
