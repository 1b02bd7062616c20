"""The layers import downwards only: CLIs -> server -> voices -> engine (see README)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wyoming_piper_stream"
FORBIDDEN = {
    "engine": ("voices", "server", "web", "__main__"),
    "voices": ("server", "web", "__main__"),
    "server": ("web", "__main__"),
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in _imports(path):
            parts = module.split(".")
            if (
                parts[0] == "wyoming_piper_stream"
                and len(parts) > 1
                and parts[1] in FORBIDDEN[layer]
            ):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not offenders
