"""Config dataclasses as the single source of option names, defaults and help.

A field is declared once, with its help text (as PEFT does):

    lr: float = option(0.3, "AdamW learning rate.")

`from_dict` builds any config from a mapping and names unknown keys; `cli_parameters` turns the
fields into command-line options (same names with dashes, same defaults, same help), so a
command never re-declares what its config already says.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
import warnings
from collections.abc import Callable
from typing import Any


class Choice(str, enum.Enum):
    """A closed set of string values: compares equal to, and serialises as, the plain string."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Any, where: str) -> Choice:
        try:
            return cls(value)
        except ValueError:
            allowed = tuple(m.value for m in cls)
            raise ValueError(f"{where} {value!r}: use one of {allowed}") from None


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    cli: str | bool | None = None,
    none_as: Any = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A config field with its help text. cli: the option's name when it differs from the
    field's (False: not a command-line option); none_as: the command-line value that stands
    for None (e.g. 0 for "no cap")."""
    meta = {"help": help, "cli": cli, "none_as": none_as}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


ALIASES: dict[str, str] = {"init_coef": "coef"}  # old name -> new, accepted with a warning


def renamed(d: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(d)
    for old, new in ALIASES.items():
        if old in out:
            warnings.warn(
                f"{where}: option {old!r} is deprecated, use {new!r}", DeprecationWarning, 3
            )
            out.setdefault(new, out.pop(old))
            out.pop(old, None)
    return out


def from_dict(cls: type, d: dict[str, Any], where: str | None = None) -> Any:
    """`cls(**d)` for a config dataclass; unknown keys are named in the error."""
    where = where or cls.__name__
    d = renamed(d, where)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(known)}")
    return cls(**d)


# --- command-line options -----------------------------------------------------------------------
def _cli_type(tp: Any, none_as: Any) -> Any:
    """The command-line type of a field type: Optional[X] with a none_as value becomes X."""
    args = typing.get_args(tp)
    is_union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    if is_union and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        if none_as is not None:
            return inner
        return inner | None
    return tp


def cli_parameters(cls: type, skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per command-line field of `cls` (in declaration order), annotated
    for typer with the field's help and default."""
    import typer

    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta or meta.get("cli") is False or f.name in skip:
            continue
        name = meta.get("cli") or f.name
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = None  # lists: empty when not given
        if default is None and meta.get("none_as") is not None:
            default = meta["none_as"]
        if isinstance(default, enum.Enum):
            default = default.value
        tp = _cli_type(hints[f.name], meta.get("none_as"))
        if typing.get_origin(tp) is list:
            tp = tp | None
        opt = typer.Option(f"--{name.replace('_', '-')}", help=meta.get("help", ""))
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=typing.Annotated[tp, opt],
            )
        )
    return params


def cli_values(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Command-line values (by option name) back to config fields: none_as values become None,
    unset lists empty."""
    out = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        name = (meta.get("cli") or f.name) if meta else f.name
        if name not in given:
            continue
        value = given[name]
        if meta and meta.get("none_as") is not None and value == meta["none_as"]:
            value = None
        if f.default_factory is not dataclasses.MISSING and value is None:
            value = f.default_factory()
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def with_config(
    cls: type, *, skip: tuple[str, ...] = (), into: str = "config_values"
) -> Callable[[Callable], Callable]:
    """Decorate a typer command: the fields of `cls` become its options, and the command gets
    them as `into` (field name -> value), ready for `cls(**config_values, ...)`."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != into]
        extra = cli_parameters(cls, skip=tuple(p.name for p in own) + skip)
        names = {p.name for p in extra}

        def command(**kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(**{into: cli_values(cls, given)}, **kwargs)

        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
