"""The two errors llm-moa raises: bad input, and a run that could not answer;
and ``parse``, which reads a hand-editable file's data as a pydantic model
with one line naming what is wrong."""

from collections.abc import Callable
from typing import Any

import llm


class MoaError(ValueError):
    "Bad input (an option, a model name, a file the plugin reads): one line naming it."


class MoaRunError(llm.ModelError):
    "A run that produced no answer; one line per failed call."


_SAID = {  # pydantic's error types (their first word), as a line about a hand-edited file says them
    "missing": "is missing",
    "string": "is not text",
    "dict": "is not a JSON object",
    "model": "is not a JSON object",
    "list": "is not a list",
    "int": "is not a whole number",
    "bool": "is not true or false",
}


def parse(model: Any, data: Any, line: Callable[[str], str]) -> Any:
    """``data`` as ``model``, or a ``MoaError`` of one line: ``line`` given what
    is wrong, such as 'proposer_layers.0.proposers.1.status is missing'."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except RecursionError:
        raise MoaError(line("nested too deeply")) from None
    except ValidationError as ex:
        error = ex.errors()[0]
        at = ".".join(  # without the names of union members pydantic puts in the path
            str(part)
            for part in error["loc"]
            if not (isinstance(part, str) and (part[:1].isupper() or "[" in part))
        )
        kind = error["type"]
        said = (
            _SAID.get(kind.split("_")[0])
            if kind.endswith(("missing", "_type", "_parsing", "_float"))
            else None
        )
        problem = f"{at} {said}" if said else f"{at}: {error['msg']}" if at else error["msg"]
        raise MoaError(line(problem.strip())) from None
