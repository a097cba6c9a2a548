"""`tpv train` and `tpv eval`: options come from TrainConfig's fields (see tpv.options)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from tpv.cli.common import JsonOpt, ModelOpt, TaskFileOptions, console, emit, get_task, task_options
from tpv.options import with_config
from tpv.scoring import SCORER_HELP, Scorer
from tpv.train import TrainConfig


@with_config(TaskFileOptions, into="task_values")
@with_config(TrainConfig, skip=("task_options",))
def train_cmd(
    task: Annotated[str, typer.Option(help="Registered task name or a CSV/JSONL/TOML task file.")],
    out: Annotated[Path, typer.Option(help="Run directory.")],
    model: ModelOpt = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the interrupted run in OUT.partial/ (same options only)."),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a finished run in OUT (once the new one completes).")
    ] = False,
    init_coef: Annotated[
        float | None, typer.Option(hidden=True, help="Deprecated: use --coef.")
    ] = None,
    *,
    config_values: dict[str, Any],
    task_values: dict[str, Any],
) -> None:
    """Tune a soft prompt on a frozen model; writes origin, prompt, vector and metrics to OUT.

    With --method attempt, trains an ATTEMPT mixture instead (target prompt + attention over the
    --source prompts) and writes OUT/attempt.safetensors (docs/attempt.md).

    Example: tpv train --task rotten_tomatoes --tokens 20 --steps 60 --out runs/rt

    Example: tpv train --task amazon_polarity --tokens 20 --shots 16 --method attempt
    --source runs/rt --source runs/tw --out runs/amz-attempt
    """
    from tpv.resolve import resolve_path
    from tpv.train import train

    values = dict(config_values)
    if init_coef is not None:
        warnings.warn("--init-coef is deprecated, use --coef", DeprecationWarning, 1)
        values["coef"] = init_coef
    values["init"] = [str(resolve_path(p)) for p in values.get("init") or []]
    values["sources"] = [str(resolve_path(p)) for p in values.get("sources") or []]
    cfg = TrainConfig(
        task=task, out=str(out), model=model, task_options=task_options(task_values), **values
    )
    m = train(cfg, resume=resume, overwrite=overwrite)
    console.print(
        f"[bold]{m.task}[/]: best validation {m.best_val:.4f} at step {m.best_step}"
        + (f", test {m.test['metric']} {m.test['score']:.4f}" if m.test else "")
        + f"  -> {out}"
    )


@with_config(TaskFileOptions, into="task_values")
def eval_cmd(
    task: Annotated[str, typer.Option(help="Registered task name or a task file.")],
    prompt: Annotated[
        Path, typer.Option(help="A prompt, origin or ATTEMPT file (or a run directory).")
    ],
    model: ModelOpt = None,
    split: str = "test",
    scorer: Annotated[Scorer, typer.Option(help=SCORER_HELP)] = Scorer.rank,
    max_examples: Annotated[int, typer.Option(help="Cap on examples (0: all).")] = 0,
    max_input_tokens: Annotated[
        int | None,
        typer.Option(
            help="Cut inputs to this many tokens (default: what the prompt trained with)."
        ),
    ] = None,
    batch_size: int = 32,
    as_json: JsonOpt = False,
    *,
    task_values: dict[str, Any],
) -> None:
    """Score a prompt on a task split.

    Example: tpv eval --task rotten_tomatoes --prompt runs/rt/prompt.safetensors --scorer generate
    """
    from tpv.attempt import is_attempt, load_attempt
    from tpv.backbone import Backbone
    from tpv.evaluate import evaluate, trained_max_input_tokens
    from tpv.format import file_in_dir
    from tpv.vectors import load

    # An ATTEMPT run or file is the per-input mixture, not one prompt.
    obj = load_attempt(prompt) if is_attempt(prompt) else load(file_in_dir(prompt, prefer="prompt"))
    result = evaluate(
        Backbone.load(model),
        get_task(task, task_values),
        obj,
        split,
        scorer=scorer,
        batch_size=batch_size,
        max_examples=max_examples or None,
        max_input_tokens=max_input_tokens or trained_max_input_tokens(obj),
    )
    if not as_json:  # the per-example record is for files, not for a table on screen
        result.pop("per_example", None)
    emit(result, as_json, f"{task}/{split} ({scorer.value})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
