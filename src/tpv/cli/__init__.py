"""The `tpv` command: one small module per command group; each command parses its options and
calls the library (every command has a Python twin, see docs/architecture.md)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from tpv.cli.common import STATE, console

app = typer.Typer(
    help="Task prompt vectors: tune soft prompts, subtract origins, add vectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option(help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    STATE["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _mount() -> None:
    from tpv.cli import assets, combine, experiment, library, tasks, train, vector

    for module in (train, combine):
        module.register(app)
    app.add_typer(vector.app, name="vector")
    app.add_typer(assets.app, name="assets")
    app.add_typer(tasks.app, name="tasks")
    app.add_typer(library.library_app, name="library")
    app.add_typer(library.peft_app, name="peft")
    app.add_typer(experiment.app, name="experiment")
    assets.register_demo(app)


_mount()


def main() -> None:
    from tpv.backbone import BackboneError
    from tpv.io import FormatError
    from tpv.tasks.base import TaskError
    from tpv.vectors import IncompatibleError

    try:
        app()
    except (
        FormatError,
        IncompatibleError,
        TaskError,
        BackboneError,
        ValueError,
        FileNotFoundError,
    ) as e:
        if STATE["debug"]:
            raise
        console.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(1)
