"""`tpv tasks`: list the registered tasks and show one in detail. Thin: calls tpv.tasks."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tpv.cli.common import TaskFileOptions, task_options
from tpv.options import with_config
from tpv.tasks import SPLITS, STYLES, TaskError, get_task, task_entries
from tpv.tasks.base import class_counts

app = typer.Typer(
    help="Tasks: the paper's datasets, the offline suite and your own data files.\n\n"
    "Example: tpv tasks show rotten_tomatoes",
    no_args_is_help=True,
)
console = Console()


def _entry_row(entry) -> dict[str, Any]:
    row: dict[str, Any] = {"name": entry.name, "role": entry.role, "summary": entry.summary}
    if entry.supported:
        task = get_task(entry.name)  # cheap: data loads only on first split()
        row.update(labels=list(task.labels), metric=task.metric, supported=True,
                   kind="generation" if task.is_generation else "classification")  # fmt: skip
    else:
        row.update(labels=[], metric=None, supported=False, unsupported=entry.unsupported)
    return row


def _short(labels: list[str], limit: int = 60) -> str:
    text = ", ".join(labels)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@app.command("list")
def list_command(
    role: str = typer.Option(None, help="Only this role, e.g. 'offline source'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List registered tasks: name, role, label words, metric.

    Example: tpv tasks list --role "offline target"
    """
    rows = [_entry_row(e) for e in task_entries() if role is None or e.role == role]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="tpv tasks")
    wide = console.width >= 120  # the data column only where it fits
    table.add_column("name", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("labels")
    table.add_column("metric", no_wrap=True)
    if wide:
        table.add_column("data")
    for r in rows:
        if not r["supported"]:
            labels = "[dim]not supported"
        elif r["kind"] == "generation":
            labels = "[dim](generation: free-text answers)"
        else:
            labels = _short(r["labels"])
        cells = [r["name"], r["role"], labels, r["metric"] or "-"]
        table.add_row(*cells, *([r["summary"]] if wide else []))
    console.print(table)


def _show_data(name: str, split: str, index: int, options: dict | None = None) -> dict[str, Any]:
    task = get_task(name, **(options or {}))
    info = task.describe()
    sizes, counts = {}, {}
    for s in SPLITS:
        rows = task.split(s)
        sizes[s] = len(rows)
        if task.is_generation:  # no classes: count the rows with and without a gold answer
            counts[s] = {"with answer": sum(bool(r.answers) for r in rows),
                         "without": sum(not r.answers for r in rows)}  # fmt: skip
        else:
            counts[s] = dict(zip(task.labels, class_counts(rows, len(task.labels)), strict=True))
    rows = task.split(split)
    if not rows:
        raise TaskError(f"split {split!r} of {task.name!r} is empty")
    example = rows[min(index, len(rows) - 1)]
    info.update(
        sizes=sizes,
        class_counts=counts,
        example={
            "split": split,
            "fields": example.fields,
            "target": task.target(example),
            **({"answers": list(example.answers)} if task.is_generation else {}),
            **{f"render_{style}": task.render(example, style) for style in STYLES},
        },
    )
    return info


@app.command("show")
@with_config(TaskFileOptions, into="task_values")
def show_command(
    name: str = typer.Argument(..., help="A task name from `tpv tasks list`, or a data file."),
    split: str = typer.Option("train", help="Split to take the example from."),
    index: int = typer.Option(0, help="Which example of that split to render."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    *,
    task_values: dict[str, Any],
) -> None:
    """Show a task: fields, label words, split sizes and class counts, one rendered example.

    Loads the task's data (the offline suite builds and caches it on first use).

    Example: tpv tasks show rotten_tomatoes --split test --index 3
    """
    try:
        info = _show_data(name, split, index, task_options(task_values))
    except TaskError as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(1) from e
    if as_json:
        typer.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]{info['name']}[/bold]  {info['description']}")
    console.print(f"source: {info['source']}")
    console.print(f"input fields: {', '.join(info['input_fields'])}")
    if info["kind"] == "generation":
        console.print(
            f"generation task: free-text answers, metric {info['metric']}, at most "
            f"{info['max_new_tokens']} new tokens"
            + (f", no-answer text {info['no_answer']!r}" if info["no_answer"] else "")
        )
        console.print(
            "few-shot: --shots k draws k examples in all (seeded), not k per class: "
            "there are no classes to stratify by"
        )
    else:
        console.print(f"labels: {', '.join(info['labels'])}   metric: {info['metric']}")
    table = Table(title="splits")
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("answers" if info["kind"] == "generation" else "class counts",
                     overflow="fold")  # fmt: skip
    for s in SPLITS:
        counts = ", ".join(f"{k} {v}" for k, v in info["class_counts"][s].items())
        table.add_row(s, str(info["sizes"][s]), counts)
    console.print(table)
    ex = info["example"]
    for style in STYLES:
        console.print(f"[bold]{style} input[/bold] ({ex['split']}):", markup=True)
        console.print(ex[f"render_{style}"], markup=False, highlight=False)
    console.print(f"[bold]target:[/bold] {ex['target']}")
