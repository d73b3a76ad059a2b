"""The import rule of the README's Layout: core/ is the algorithm, and imports
nothing of ours outside core/ but the host door and the shared errors and text
helpers, so that it never depends on the CLI, the adapter, eval or files."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "llm_moa"
ALLOWED = {"llm_moa.host", "llm_moa.errors", "llm_moa.text"}


def imported(path: Path, source: str | None = None) -> set[str]:
    "Every module of ours that ``path`` imports, at any depth (function-level imports too)."
    package = ["llm_moa", *path.relative_to(PACKAGE).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            if node.module:
                found.add(".".join([*base, node.module]))
            else:  # from .. import host
                found |= {".".join([*base, alias.name]) for alias in node.names}
    return {name for name in found if name == "llm_moa" or name.startswith("llm_moa.")}


def test_core_imports_nothing_of_ours_outside_core_but_host_errors_and_text():
    modules = sorted((PACKAGE / "core").glob("*.py"))
    assert len(modules) > 5
    outside = {
        f"{path.name} imports {name}"
        for path in modules
        for name in imported(path)
        if not name.startswith("llm_moa.core") and name not in ALLOWED
    }
    assert outside == set()


def test_the_rule_sees_every_kind_of_import():
    "A function-level relative import of the CLI is caught, as a top-level one is."
    source = (
        "from ..text import count\nfrom .. import host\nimport llm_moa.errors\n"
        "def late():\n    from ..cli import views\n    from . import record\n"
    )
    assert imported(PACKAGE / "core" / "probe.py", source) == {
        "llm_moa.text",
        "llm_moa.host",
        "llm_moa.errors",
        "llm_moa.cli",
        "llm_moa.core.record",
    }
