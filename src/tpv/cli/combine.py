"""`tpv combine`, `tpv compose`, `tpv suggest`: combining vectors (tpv.merge, tpv.compose,
tpv.suggest). Methods come from the one registry, merge.ALL_METHODS."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tpv import merge
from tpv.cli.common import JsonOpt, ModelOpt, TaskFileOptions, console, get_task, parse_param
from tpv.compose import FitConfig
from tpv.options import with_config
from tpv.scoring import SCORER_HELP, Scorer

VectorsArg = Annotated[list[str], typer.Argument(help="Vector files (or library names).")]
OriginOpt = Annotated[
    str,
    typer.Option(
        help="Origin file or library name, or SEED / STRATEGY:SEED to rebuild for --model."
    ),
]
COMBINE_METHODS = tuple(m for m in merge.ALL_METHODS if m not in merge.FITTED)


def _vectors(refs: list[str]):
    from tpv.resolve import resolve_path
    from tpv.vectors import load

    return [load(resolve_path(v)) for v in refs]


def _backbone_and_origin(origin: str, model: str | None, tokens: int, need_model: bool):
    """The origin (rebuilt from --model when it is a seed) and the model when needed."""
    from tpv.backbone import Backbone
    from tpv.resolve import origin_spec, resolve_origin
    from tpv.vectors import Origin

    spec = origin_spec(origin)
    backbone = Backbone.load(model) if need_model or not isinstance(spec, Origin) else None
    return backbone, resolve_origin(spec, backbone, tokens)


def _validation(backbone, tasks, eval_examples: int, max_input_tokens: int = 256):
    from tpv.evaluate import Evaluator
    from tpv.tasks.fewshot import subsample

    return [
        Evaluator(
            backbone,
            t,
            subsample(t.split("validation"), eval_examples),
            max_input_tokens=max_input_tokens,
        )
        for t in tasks
    ]


@with_config(TaskFileOptions, into="task_values")
def combine_cmd(
    vectors: VectorsArg,
    origin: OriginOpt,
    out: Annotated[Path, typer.Option(help="Where to write the prompt (.safetensors).")],
    method: Annotated[str, typer.Option(help=" | ".join(COMBINE_METHODS))] = "sum",
    coef: Annotated[
        float | None, typer.Option(help="Coefficient of the combined vector (default 1).")
    ] = None,
    lam: Annotated[
        float | None, typer.Option("--lambda", hidden=True, help="Deprecated: use --coef.")
    ] = None,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search",
            "--search-lambda",
            help="Pick the coefficient(s) on the mean validation score of --task(s).",
        ),
    ] = False,
    task: Annotated[
        list[str] | None, typer.Option(help="Tasks whose mean validation score is searched.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Method parameter k=v (repeat), e.g. density=0.2.")
    ] = None,
    tokens: Annotated[int, typer.Option(help="P when --origin is a seed.")] = 50,
    model: ModelOpt = None,
    eval_examples: Annotated[int, typer.Option(help="Validation examples per task.")] = 200,
    *,
    task_values: dict[str, Any],
) -> None:
    """Combine task prompt vectors with any registered method and apply them to an origin;
    writes a prompt.

    Example: tpv combine runs/rt/vector.safetensors runs/tw/vector.safetensors \\
        --origin runs/rt/origin.safetensors --method ties --param density=0.2 \\
        --coef 0.8 --out mt.safetensors
    """
    from tpv.evaluate import mean_score

    if lam is not None:
        warnings.warn("--lambda is deprecated, use --coef", DeprecationWarning, 1)
        coef = lam if coef is None else coef
    if method not in COMBINE_METHODS:
        raise typer.BadParameter(f"--method {method!r}: use one of {COMBINE_METHODS}")
    if search and not task:
        raise typer.BadParameter("--search needs at least one --task")
    vs = _vectors(vectors)
    params = dict(parse_param(p) for p in param or [])
    backbone, o = _backbone_and_origin(origin, model, tokens, need_model=search)
    if search:
        evs = _validation(backbone, [get_task(t, task_values) for t in task], eval_examples)
        prompt, res = merge.combine_searched(method, vs, o, lambda p: mean_score(evs, p), **params)
        if res.best is not None:
            console.print(f"coef {res.best} (mean validation {res.best_score:.4f})")
    else:
        prompt = merge.combine_prompt(method, vs, o, 1.0 if coef is None else coef, **params)
    path = prompt.save(out)
    console.print(f"{prompt.name} -> {path}")


@with_config(TaskFileOptions, into="task_values")
def suggest_cmd(
    task: Annotated[str, typer.Option(help="The new (target) task.")],
    shots: Annotated[int, typer.Option(help="k training examples per class to rank on.")] = 16,
    shots_seed: int = 0,
    library: Annotated[
        Path | None,
        typer.Option(help="Library dir (default: $TPV_LIBRARY, else <tpv home>/library)."),
    ] = None,
    origin: OriginOpt = "0",
    top: Annotated[int, typer.Option(help="How many vectors the proposal combines.")] = 2,
    probe_steps: Annotated[
        int,
        typer.Option(
            help="Also rank by cosine to a probe tuned this many steps on the shots (0: off)."
        ),
    ] = 0,
    max_input_tokens: Annotated[int, typer.Option(help="Inputs are cut to this many tokens.")] = (
        256
    ),
    scorer: Annotated[Scorer, typer.Option(help=SCORER_HELP)] = Scorer.rank,
    model: ModelOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the proposed start prompt here (for tpv train --init)."),
    ] = None,
    as_json: JsonOpt = False,
    *,
    task_values: dict[str, Any],
) -> None:
    """Rank the library's vectors for a new task from its k examples and propose a start.

    Example: tpv suggest --task amazon_polarity --shots 16 --out runs/amz-init.safetensors
             tpv train --task amazon_polarity --shots 16 --init runs/amz-init.safetensors \\
                 --out runs/amz
    """
    from tpv.backbone import Backbone
    from tpv.library import Library
    from tpv.resolve import resolve_origin
    from tpv.suggest import suggest_for_task

    backbone = Backbone.load(model)
    lib = Library(library)
    entries = lib.list(model=backbone.name, kind="vector")
    if not entries:
        raise ValueError(f"library {lib.root}: no vectors for model {backbone.name!r}")
    candidates = {e.name: lib.get(e.name) for e in entries}
    o = resolve_origin(origin, backbone, next(iter(candidates.values())).num_tokens)
    s = suggest_for_task(
        backbone,
        get_task(task, task_values),
        candidates,
        o,
        shots=shots,
        shots_seed=shots_seed,
        top=top,
        probe_steps=probe_steps,
        scorer=scorer,
        max_input_tokens=max_input_tokens,
    )
    result = s.as_dict()
    if out is not None:
        result["out"] = str(s.prompt(candidates, o).save(out))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    _print_suggestion(s, task, result.get("out"))


def _print_suggestion(s, task: str, out: str | None) -> None:
    table = Table(
        title=f"vectors for {task} ({s.examples} examples; origin scores {s.baseline:.3f})"
    )
    for col in ("vector", "zero-shot", "coef", "cosine to probe"):
        table.add_column(col)
    for r in s.ranking:
        table.add_row(
            r.name,
            f"{r.zero_shot:.3f}",
            f"{r.lam:g}",
            "-" if r.cosine is None else f"{r.cosine:.3f}",
        )
    console.print(table)
    what = dict(zip(s.chosen, s.weights, strict=True)) if s.chosen else "the origin itself"
    console.print(f"proposal: {what} scores {s.score:.3f}" + (f" -> {out}" if out else ""))


@with_config(TaskFileOptions, into="task_values")
@with_config(FitConfig)
def compose_cmd(
    vectors: VectorsArg,
    task: Annotated[
        list[str], typer.Option(help="The task of each vector, in the same order (repeat).")
    ],
    origin: OriginOpt,
    out: Annotated[Path, typer.Option(help="Where to write the multi-task prompt.")],
    eval_examples: Annotated[int, typer.Option(help="Validation examples per task.")] = 200,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    report_to: Annotated[
        str,
        typer.Option(
            help="Experiment tracker: none | tensorboard | wandb | mlflow; files go to "
            "OUT.tracking/ beside the prompt."
        ),
    ] = "none",
    *,
    config_values: dict[str, Any],
    task_values: dict[str, Any],
) -> None:
    """Fit one prompt for several tasks from their vectors, on a mix of their train examples;
    the best mean validation score is kept (the plain sum, at step 0, included).

    Example: tpv compose runs/rt/vector.safetensors runs/tw/vector.safetensors \\
        --task rotten_tomatoes --task tweets3 --origin runs/rt/origin.safetensors \\
        --mode joint --steps 40 --out runs/rt+tw.safetensors
    """
    from dataclasses import asdict

    from tpv import tracking
    from tpv.compose import fit_multitask
    from tpv.evaluate import mean_score

    tracking.check(report_to)  # before any loading: a missing package fails fast
    if len(task) != len(vectors):
        raise typer.BadParameter(
            f"got {len(vectors)} vector(s) and {len(task)} --task(s): give one task per vector"
        )
    cfg = FitConfig(**config_values)
    vs = _vectors(vectors)
    backbone, o = _backbone_and_origin(origin, model, vs[0].num_tokens, need_model=True)
    tasks = [get_task(t, task_values) for t in task]
    evs = _validation(backbone, tasks, eval_examples, cfg.max_input_tokens)
    tracker = tracking.open_run(
        report_to,
        out.parent / f"{out.stem}.tracking",
        out.stem,
        asdict(cfg) | {"tasks": list(task), "vectors": list(vectors)},
    )
    res = fit_multitask(backbone, o, vs, tasks, lambda p: mean_score(evs, p), cfg, tracker=tracker)
    tracker.finish()
    path = res.prompt.save(out)
    result = res.as_dict() | {"out": str(path)}
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    console.print(
        f"{res.prompt.name}: mean validation {res.init_val:.4f} at step 0 -> "
        f"{res.best_val:.4f} at step {res.best_step} -> {path}"
    )


def register(app: typer.Typer) -> None:
    app.command("combine")(combine_cmd)
    app.command("suggest")(suggest_cmd)
    app.command("compose")(compose_cmd)
