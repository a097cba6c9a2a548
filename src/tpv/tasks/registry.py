"""Task names -> factories, with the metadata `tpv tasks list` shows without loading any data."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from .base import Task, TaskError

# Roles, in the paper's shape: sources give task prompt vectors, targets receive them.
ROLES = (
    "paper source",
    "paper target",
    "offline source",
    "offline target",
    "offline extra",
)


@dataclass(frozen=True)
class TaskEntry:
    """One registered task. `unsupported` holds the reason when the task cannot be built yet."""

    name: str
    factory: Callable[..., Task]
    role: str
    summary: str = ""
    aliases: tuple[str, ...] = ()
    unsupported: str | None = None

    @property
    def supported(self) -> bool:
        return self.unsupported is None


_REGISTRY: dict[str, TaskEntry] = {}
_ALIASES: dict[str, str] = {}


def register(entry: TaskEntry) -> TaskEntry:
    if entry.role not in ROLES:
        raise ValueError(f"task {entry.name!r}: unknown role {entry.role!r}; use one of {ROLES}")
    for key in (entry.name, *entry.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"task name {key!r} is registered twice")
    _REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def resolve(name: str) -> TaskEntry | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return _REGISTRY.get(key)


def entries() -> list[TaskEntry]:
    """All entries in role order (paper sources first), then registration order."""
    order = {role: i for i, role in enumerate(ROLES)}
    return sorted(_REGISTRY.values(), key=lambda e: order[e.role])


def build(name: str, **options) -> Task:
    entry = resolve(name)
    if entry is None:
        raise unknown_task(name)
    if entry.unsupported is not None:
        raise TaskError(f"task {entry.name!r}: {entry.unsupported}")
    try:
        return entry.factory(**options)
    except TypeError as e:
        # A misspelt option would otherwise surface as a bare TypeError from inside a factory.
        raise TaskError(f"task {entry.name!r}: bad option: {e}") from e


def unknown_task(name: str) -> TaskError:
    known = sorted([*_REGISTRY, *_ALIASES])
    close = difflib.get_close_matches(name.lower(), known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return TaskError(
        f"unknown task {name!r} and no such file.{hint} "
        "See `tpv tasks list`, or pass a CSV/JSONL/TOML file or a saved dataset folder."
    )
