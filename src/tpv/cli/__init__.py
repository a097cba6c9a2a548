"""The `tpv` command: one small module per command group; each command parses its options and
calls the library (every command has a Python twin, see docs/architecture.md)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from tpv.cli.common import STATE

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
    plain: Annotated[
        bool,
        typer.Option(
            "--plain",
            help="Run the frozen model on the plain path: float32 on CPU, padded rows "
            "(TPV_FAST_PATH=0; see tpv.fastpath).",
        ),
    ] = False,
) -> None:
    STATE["debug"] = debug
    if plain:
        from tpv import fastpath

        os.environ["TPV_FAST_PATH"] = "0"  # for processes this one starts too
        fastpath.set_enabled(False)
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
    """Run the command; every refusal is one line on stderr (a JSON object with --json), never
    wrapped by Rich, whatever the terminal width (tpv.errors)."""
    from tpv.backbone import BackboneError
    from tpv.errors import print_error, wants_json
    from tpv.train import TrainingDiverged

    as_json = wants_json()
    try:
        code = app(standalone_mode=False)  # usage errors come here, not to Rich panels
    except typer.Abort:
        print_error("interrupted", as_json=as_json, kind="Abort")
        sys.exit(130)
    except typer.TyperException as e:  # typer's click: unknown option, value of a wrong type
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        print_error(message, as_json=as_json, kind=type(e).__name__)
        sys.exit(getattr(e, "exit_code", 2))
    except (ValueError, OSError, BackboneError, TrainingDiverged) as e:
        # ValueError covers FormatError, IncompatibleError, TaskError, LibraryError,
        # OptionError and RunDirError; OSError a missing or unwritable file.
        if STATE["debug"]:
            raise
        print_error(str(e), as_json=as_json, kind=type(e).__name__)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
