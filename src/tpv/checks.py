"""Checks of numeric options, shared by the config objects (so the CLI and the Python API refuse
the same values with the same words): one line naming the option as the CLI spells it."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


class OptionError(ValueError):
    """An option's value is refused; `option` is the config field."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


def flag(field: str, flags: dict[str, str] | None = None, obj: Any = None) -> str:
    """The CLI's name for a config field (`max_steps` -> `--steps` where the CLI renames it):
    from `flags`, else the field's `cli` metadata, else the field name with dashes."""
    if flags and field in flags:
        return flags[field]
    if obj is not None and dataclasses.is_dataclass(obj):
        meta = {f.name: f.metadata for f in dataclasses.fields(obj)}.get(field) or {}
        if isinstance(meta.get("cli"), str):
            return "--" + meta["cli"].replace("_", "-")
    return "--" + field.replace("_", "-")


def check_int(
    obj: Any,
    field: str,
    minimum: int,
    *,
    optional: bool = False,
    flags: dict[str, str] | None = None,
    hint: str = "",
) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"an integer >= {minimum}"
        raise OptionError(f"{flag(field, flags, obj)} must be {what}{hint}, got {value!r}", field)


def check_float(
    obj: Any,
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    optional: bool = False,
    flags: dict[str, str] | None = None,
) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (not positive or value > 0)
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        if positive:
            what = "a finite positive number"
        elif minimum is not None and maximum is not None:
            what = f"a finite number in [{minimum:g}, {maximum:g}]"
        elif minimum is not None:
            what = f"a finite number >= {minimum:g}"
        else:
            what = "a finite number"
        raise OptionError(f"{flag(field, flags, obj)} must be {what}, got {value!r}", field)


def check_choice(
    obj: Any, field: str, choices: tuple[str, ...], flags: dict[str, str] | None = None
) -> None:
    value = getattr(obj, field)
    if value not in choices:
        raise OptionError(
            f"{flag(field, flags, obj)} must be one of {', '.join(choices)}; got {value!r}", field
        )
