"""`tpv vector info`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from tpv.cli.common import JsonOpt, emit

app = typer.Typer(help="Inspect prompts, origins and vectors.", no_args_is_help=True)


@app.command("info")
def vector_info(
    path: Annotated[Path, typer.Argument(help="A .safetensors file or a run directory.")],
    as_json: JsonOpt = False,
) -> None:
    """Print metadata, shape and norm of an origin, prompt or vector.

    Example: tpv vector info runs/rt/vector.safetensors
    """
    from tpv.format import file_in_dir
    from tpv.vectors import load

    chosen = file_in_dir(path, prefer="vector")
    if chosen != path:  # a run directory holds origin, prompt and vector: say which is shown
        logging.getLogger("tpv").info("%s is a directory: showing %s", path, chosen.name)
        path = chosen
    obj = load(chosen)
    info = {"path": str(path), **obj.metadata(), "shape": list(obj.shape), "norm": obj.norm()}
    emit(info, as_json, f"{obj.kind} {path}")
