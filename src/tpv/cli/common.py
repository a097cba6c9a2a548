"""What every command shares: the console, output, and the options that name a task."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tpv.options import option

console = Console()
STATE = {"debug": False}

ModelOpt = Annotated[
    str | None, typer.Option(help="Hub id, local dir or .gguf; default: embedded SmolLM2.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@dataclass
class TaskFileOptions:
    """How to read a user data file (CSV/JSONL/saved dataset) as a task; every command that
    takes --task takes these (a TOML task file says the same once, see README)."""

    text_column: list[str] | None = option(
        None, "User data file: input column (repeat for several)."
    )
    label_column: str | None = option(None, "User data file: label column.")
    label_word: list[str] | None = option(None, "User data file: RAW=WORD label word (repeat).")
    metric: str | None = option(None, "User data file: the metric (default by label count).")
    validation_file: str | None = option(
        None, "User data file: a separate validation split (default: 10% carved from the data)."
    )
    test_file: str | None = option(
        None, "User data file: a separate test split (default: 10% carved from the data)."
    )


def task_options(values: dict[str, Any]) -> dict[str, Any]:
    """TaskFileOptions values as `get_task` options; empty for registered tasks."""
    opts: dict[str, Any] = {}
    if values.get("text_column"):
        opts["text_columns"] = list(values["text_column"])
    if values.get("label_column"):
        opts["label_column"] = values["label_column"]
    words = values.get("label_word")
    if words:
        pairs = [w.partition("=") for w in words]
        bad = [w for w, (_, sep, _) in zip(words, pairs, strict=True) if not sep]
        if bad:
            raise typer.BadParameter(f"--label-word {bad[0]!r}: expected RAW=WORD")
        opts["label_words"] = {raw: word for raw, _, word in pairs}
    for key, name in (
        ("metric", "metric"),
        ("validation_file", "validation"),
        ("test_file", "test"),
    ):
        if values.get(key):
            opts[name] = values[key]
    return opts


def get_task(name: str, task_values: dict[str, Any]):
    from tpv.tasks import get_task as lookup

    return lookup(name, **task_options(task_values))


def emit(obj: dict, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
        return
    table = Table(title=title, show_header=False)
    for k, v in obj.items():
        table.add_row(str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
    console.print(table)


def parse_param(text: str) -> tuple[str, object]:
    """--param key=value; the value is read as JSON when it parses (numbers, lists)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise typer.BadParameter(f"--param {text!r}: expected key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
