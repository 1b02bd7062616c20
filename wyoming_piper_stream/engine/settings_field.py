"""One source for each setting: its default, its help text and its bounds.

Every layer declares its settings as frozen dataclasses of ``setting(...)`` fields;
the command lines build their flags from these fields (default and help shown by
``--help``) and check the bounds at parse time, so nothing downstream re-clamps.
Kept in the engine, the lowest layer, so that every layer may use it.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, field, fields
from typing import Any


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    minimum: float | None = None,
    shown: str | None = None,
    default_factory: Any = MISSING,
) -> Any:
    """A settings field; ``shown`` is how ``--help`` names a default that is not a value."""
    metadata = {"help": help, "minimum": minimum, "shown": shown}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def settings_field(cls: type, name: str) -> Field[Any]:
    """The dataclass field ``name`` of settings class ``cls``."""
    for candidate in fields(cls):
        if candidate.name == name:
            return candidate
    raise KeyError(f"{cls.__name__} has no setting {name}")


def default_of(item: Field[Any]) -> Any:
    if item.default_factory is not MISSING:
        return item.default_factory()
    return item.default
