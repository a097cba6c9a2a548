"""The `tpv` command: parses arguments and calls the library (every command has a Python twin)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Task prompt vectors: tune soft prompts, subtract origins, add vectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
vector_app = typer.Typer(help="Inspect prompts, origins and vectors.", no_args_is_help=True)
assets_app = typer.Typer(
    help="Install-time assets (corpora archives, the embedded model cache).", no_args_is_help=True
)
app.add_typer(vector_app, name="vector")
app.add_typer(assets_app, name="assets")
console = Console()
STATE = {"debug": False}

TextColumnOpt = Annotated[
    list[str] | None, typer.Option(help="User data file: input column (repeat for several).")
]
LabelColumnOpt = Annotated[str | None, typer.Option(help="User data file: label column.")]
LabelWordOpt = Annotated[
    list[str] | None, typer.Option(help="User data file: RAW=WORD label word (repeat).")
]


def _task_options(text_column, label_column, label_word) -> dict:
    """Options for a user data file (`tpv.tasks.user`); empty for registered tasks."""
    opts: dict = {}
    if text_column:
        opts["text_columns"] = list(text_column)
    if label_column:
        opts["label_column"] = label_column
    if label_word:
        pairs = [w.partition("=") for w in label_word]
        bad = [w for w, (_, sep, _) in zip(label_word, pairs, strict=True) if not sep]
        if bad:
            raise typer.BadParameter(f"--label-word {bad[0]!r}: expected RAW=WORD")
        opts["label_words"] = {raw: word for raw, _, word in pairs}
    return opts


ModelOpt = Annotated[
    str | None, typer.Option(help="Hub id, local dir or .gguf; default: embedded SmolLM2.")
]


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


def _emit(obj: dict, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
        return
    table = Table(title=title, show_header=False)
    for k, v in obj.items():
        table.add_row(str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
    console.print(table)


# --- vectors ---------------------------------------------------------------------------------
@vector_app.command("info")
def vector_info(
    path: Annotated[Path, typer.Argument(help="A .safetensors file or a run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print metadata, shape and norm of an origin, prompt or vector.

    Example: tpv vector info runs/rt/vector.safetensors
    """
    from tpv.vectors import load

    obj = load(path)
    info = {"path": str(path), **obj.metadata(), "shape": list(obj.shape), "norm": obj.norm()}
    _emit(info, as_json, f"{obj.kind} {path}")


# --- training and evaluation -----------------------------------------------------------------
@app.command("train")
def train_cmd(
    task: Annotated[str, typer.Option(help="Registered task name or a CSV/JSONL/TOML task file.")],
    out: Annotated[Path, typer.Option(help="Run directory.")],
    model: ModelOpt = None,
    origin_seed: Annotated[int, typer.Option(help="Seed of the origin (initialisation).")] = 0,
    origin_strategy: Annotated[str, typer.Option(help="vocab | uniform | text")] = "vocab",
    tokens: Annotated[int, typer.Option(help="Number of virtual tokens P.")] = 50,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 300,
    batch_size: int = 8,
    grad_accum: int = 1,
    lr: float = 0.3,
    weight_decay: float = 1e-5,
    schedule: Annotated[str, typer.Option(help="linear | cosine | constant")] = "linear",
    warmup_ratio: float = 0.1,
    eval_every: int = 100,
    eval_examples: Annotated[
        int, typer.Option(help="Validation examples per evaluation (0: all).")
    ] = 200,
    test_examples: Annotated[int, typer.Option(help="Test examples (0: all).")] = 0,
    patience: Annotated[
        int, typer.Option(help="Stop after this many evaluations without gain (0: never).")
    ] = 0,
    shots: Annotated[
        int, typer.Option(help="Few-shot: k training examples per class (0: all).")
    ] = 0,
    shots_seed: int = 0,
    seed: Annotated[int, typer.Option(help="Seed of the data order.")] = 0,
    init: Annotated[
        list[str] | None,
        typer.Option(help="Start from a prompt, or origin + sum of vectors (repeat)."),
    ] = None,
    init_coef: Annotated[
        float, typer.Option(help="Lambda applied to the summed --init vectors.")
    ] = 1.0,
    scorer: Annotated[str, typer.Option(help="rank | generate")] = "rank",
    max_input_tokens: int = 256,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.safetensors.")] = False,
    test_init: Annotated[
        bool, typer.Option(help="Also score the starting prompt on test.")
    ] = False,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    label_word: LabelWordOpt = None,
) -> None:
    """Tune a soft prompt on a frozen model; writes origin, prompt, vector and metrics to OUT.

    Example: tpv train --task rotten_tomatoes --tokens 20 --steps 60 --out runs/rt
    """
    from tpv.train import TrainConfig, train

    cfg = TrainConfig(
        task=task,
        task_options=_task_options(text_column, label_column, label_word),
        out=str(out),
        model=model,
        num_tokens=tokens,
        origin_seed=origin_seed,
        origin_strategy=origin_strategy,
        init=list(init or []),
        init_coef=init_coef,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_ratio=warmup_ratio,
        max_steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        eval_every=eval_every,
        eval_examples=eval_examples or None,
        test_examples=test_examples or None,
        patience=patience or None,
        scorer=scorer,
        max_input_tokens=max_input_tokens,
        seed=seed,
        shots=shots or None,
        shots_seed=shots_seed,
        test_init=test_init,
    )
    m = train(cfg, resume=resume)
    console.print(
        f"[bold]{m.task}[/]: best validation {m.best_val:.4f} at step {m.best_step}"
        + (f", test {m.test['metric']} {m.test['score']:.4f}" if m.test else "")
        + f"  -> {out}"
    )


@app.command("eval")
def eval_cmd(
    task: Annotated[str, typer.Option(help="Registered task name or a task file.")],
    prompt: Annotated[Path, typer.Option(help="A prompt or origin file (or a run directory).")],
    model: ModelOpt = None,
    split: str = "test",
    scorer: Annotated[str, typer.Option(help="rank | generate")] = "rank",
    max_examples: Annotated[int, typer.Option(help="Cap on examples (0: all).")] = 0,
    batch_size: int = 32,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    label_word: LabelWordOpt = None,
) -> None:
    """Score a prompt on a task split.

    Example: tpv eval --task rotten_tomatoes --prompt runs/rt/prompt.safetensors --scorer generate
    """
    from tpv.backbone import Backbone
    from tpv.evaluate import evaluate
    from tpv.tasks import get_task
    from tpv.vectors import load

    p = Path(prompt)
    obj = load(p / "prompt.safetensors" if p.is_dir() else p)
    backbone = Backbone.load(model)
    if obj.model != backbone.name:
        raise typer.BadParameter(
            f"{prompt} was made for model {obj.model!r}, not {backbone.name!r}"
        )
    result = evaluate(
        backbone,
        get_task(task, **_task_options(text_column, label_column, label_word)),
        obj,
        split,
        scorer=scorer,
        batch_size=batch_size,
        max_examples=max_examples or None,
    )
    _emit(result, as_json, f"{task}/{split} ({scorer})")


# --- combination ---------------------------------------------------------------------------
@app.command("combine")
def combine_cmd(
    vectors: Annotated[list[str], typer.Argument(help="Vector files (or library names).")],
    origin: Annotated[str, typer.Option(help="Origin file, or a seed to rebuild it for --model.")],
    out: Annotated[Path, typer.Option(help="Where to write the prompt (.safetensors).")],
    method: Annotated[
        str, typer.Option(help="sum | weighted | mean | ties | dare | prune | norm_sum | orth_sum")
    ] = "sum",
    lam: Annotated[
        float | None, typer.Option("--lambda", help="Scale of the combined vector.")
    ] = None,
    search_lambda: Annotated[
        bool, typer.Option(help="Pick lambda on validation of --task(s).")
    ] = False,
    task: Annotated[
        list[str] | None, typer.Option(help="Tasks whose mean validation score picks lambda.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Method parameter k=v (repeat), e.g. density=0.2.")
    ] = None,
    tokens: Annotated[int, typer.Option(help="P when --origin is a seed.")] = 50,
    model: ModelOpt = None,
    eval_examples: int = 200,
) -> None:
    """Combine task prompt vectors and apply them to an origin; writes a prompt.

    Example: tpv combine runs/rt/vector.safetensors runs/tw/vector.safetensors \
        --origin runs/rt/origin.safetensors --method ties --param density=0.2 \\
        --lambda 0.8 --out mt.safetensors
    """
    from tpv import merge
    from tpv.vectors import Origin, load

    vs = [load(_resolve(v)) for v in vectors]
    params = dict(_parse_param(p) for p in param or [])
    combined = merge.combine(method, vs, **params)
    backbone = None
    if origin.isdigit():
        from tpv.backbone import Backbone

        backbone = Backbone.load(model)
        o = backbone.make_origin(tokens, int(origin))
    else:
        o = Origin.load(_resolve(origin))
    if search_lambda:
        if not task:
            raise typer.BadParameter("--search-lambda needs at least one --task")
        from tpv.backbone import Backbone
        from tpv.evaluate import Evaluator
        from tpv.tasks import get_task
        from tpv.tasks.fewshot import subsample

        backbone = backbone or Backbone.load(model)
        evs = [
            Evaluator(backbone, t, subsample(t.split("validation"), eval_examples))
            for t in map(get_task, task)
        ]
        res = merge.search_lambda(
            lambda x: sum(ev(combined.apply(o, x))["score"] for ev in evs) / len(evs)
        )
        lam = res.best
        console.print(f"lambda {lam} (mean validation {dict(res.history)[lam]:.4f})")
    prompt = combined.apply(o, 1.0 if lam is None else lam)
    path = prompt.save(out)
    console.print(f"{prompt.name} -> {path}")


@app.command("suggest")
def suggest_cmd(
    task: Annotated[str, typer.Option(help="The new (target) task.")],
    shots: Annotated[int, typer.Option(help="k training examples per class to rank on.")] = 16,
    shots_seed: int = 0,
    library: Annotated[
        Path | None, typer.Option(help="Library dir (default $TPV_LIBRARY).")
    ] = None,
    origin: Annotated[str, typer.Option(help="Origin file, or a seed for --model.")] = "0",
    top: Annotated[int, typer.Option(help="How many vectors the proposal combines.")] = 2,
    probe_steps: Annotated[
        int,
        typer.Option(
            help="Also rank by cosine to a probe tuned this many steps on the shots (0: off)."
        ),
    ] = 0,
    model: ModelOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the proposed start prompt here (for tpv train --init)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rank the library's vectors for a new task from its k examples and propose a start.

    Example: tpv suggest --task amazon_polarity --shots 16 --out runs/amz-init.safetensors
             tpv train --task amazon_polarity --shots 16 --init runs/amz-init.safetensors \\
                 --out runs/amz
    """
    from tpv.backbone import Backbone
    from tpv.evaluate import Evaluator
    from tpv.library import Library
    from tpv.suggest import suggest
    from tpv.tasks import get_task
    from tpv.tasks.fewshot import sample_k_shot

    backbone = Backbone.load(model)
    lib = Library(library)
    entries = lib.list(model=backbone.name, kind="vector")
    if not entries:
        raise ValueError(f"library {lib.root}: no vectors for model {backbone.name!r}")
    candidates = {e.name: lib.get(e.name) for e in entries}
    tokens = next(iter(candidates.values())).num_tokens
    o = _origin(origin, backbone, tokens)
    t = get_task(task)
    rows = sample_k_shot(t.split("train"), shots, seed=shots_seed)
    ev = Evaluator(backbone, t, rows)
    probe = None
    if probe_steps:
        import tempfile

        from tpv.train import TrainConfig, train
        from tpv.vectors import load

        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(
                task=task,
                out=d,
                num_tokens=tokens,
                max_steps=probe_steps,
                eval_every=probe_steps,
                shots=shots,
                shots_seed=shots_seed,
                init=[str(o.save(Path(d) / "origin.safetensors"))],
                test_examples=1,
            )
            train(cfg, backbone=backbone, task=t, progress=False)
            probe = load(Path(d) / "vector.safetensors")
    s = suggest(candidates, o, lambda p: ev(p)["score"], top=top, probe=probe)
    result = s.as_dict()
    if out is not None:
        result["out"] = str(s.prompt(candidates, o).save(out))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(
        title=f"vectors for {task} ({len(rows)} examples; origin scores {s.baseline:.3f})"
    )
    for col in ("vector", "zero-shot", "lambda", "cosine to probe"):
        table.add_column(col)
    for r in s.ranking:
        table.add_row(
            r.name,
            f"{r.zero_shot:.3f}",
            f"{r.lam:g}",
            "-" if r.cosine is None else f"{r.cosine:.3f}",
        )
    console.print(table)
    console.print(
        f"proposal: {dict(zip(s.chosen, s.weights, strict=True))} scores {s.score:.3f}"
        + (f" -> {result['out']}" if out else "")
    )


@app.command("compose")
def compose_cmd(
    vectors: Annotated[list[str], typer.Argument(help="Vector files (or library names).")],
    task: Annotated[
        list[str], typer.Option(help="The task of each vector, in the same order (repeat).")
    ],
    origin: Annotated[str, typer.Option(help="Origin file, or a seed to rebuild it for --model.")],
    out: Annotated[Path, typer.Option(help="Where to write the multi-task prompt.")],
    mode: Annotated[
        str,
        typer.Option(help="coefficients (a weight per vector and token) | joint (free prompt)"),
    ] = "coefficients",
    init: Annotated[str, typer.Option(help="joint: start from 'sum' or 'origin'.")] = "sum",
    steps: int = 40,
    eval_every: int = 10,
    batch_size: int = 8,
    lr: Annotated[float | None, typer.Option(help="Default 0.05 (coefficients), 0.3 (joint).")] = (
        None
    ),
    eval_examples: Annotated[int, typer.Option(help="Validation examples per task.")] = 200,
    max_input_tokens: int = 256,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fit one prompt for several tasks from their vectors, on a mix of their train examples;
    the best mean validation score is kept (the plain sum, at step 0, included).

    Example: tpv compose runs/rt/vector.safetensors runs/tw/vector.safetensors \
        --task rotten_tomatoes --task tweets3 --origin runs/rt/origin.safetensors \
        --mode joint --steps 40 --out runs/rt+tw.safetensors
    """
    from tpv.backbone import Backbone
    from tpv.compose import FitConfig, fit_multitask
    from tpv.evaluate import Evaluator
    from tpv.tasks import get_task
    from tpv.tasks.fewshot import subsample
    from tpv.vectors import load

    if len(task) != len(vectors):
        raise typer.BadParameter(
            f"got {len(vectors)} vector(s) and {len(task)} --task(s): give one task per vector"
        )
    cfg = FitConfig(
        mode=mode,
        init=init,
        steps=steps,
        eval_every=eval_every,
        batch_size=batch_size,
        lr=lr,
        max_input_tokens=max_input_tokens,
    )
    vs = [load(_resolve(v)) for v in vectors]
    backbone = Backbone.load(model)
    o = _origin(origin, backbone, vs[0].num_tokens)
    tasks = [get_task(t) for t in task]
    evs = [
        Evaluator(
            backbone,
            t,
            subsample(t.split("validation"), eval_examples),
            max_input_tokens=max_input_tokens,
        )
        for t in tasks
    ]
    res = fit_multitask(
        backbone, o, vs, tasks, lambda p: sum(ev(p)["score"] for ev in evs) / len(evs), cfg
    )
    path = res.prompt.save(out)
    result = res.as_dict() | {"out": str(path)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(
        f"{res.prompt.name}: mean validation {res.init_val:.4f} at step 0 -> "
        f"{res.best_val:.4f} at step {res.best_step} -> {path}"
    )


def _origin(ref: str, backbone, tokens: int):
    """--origin: a seed (the origin is rebuilt for this backbone) or a file / library name."""
    from tpv.vectors import Origin

    return backbone.make_origin(tokens, int(ref)) if ref.isdigit() else Origin.load(_resolve(ref))


def _parse_param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise typer.BadParameter(f"--param {text!r}: expected key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _resolve(ref: str) -> str:
    """A path, or the name of an entry in the local library."""
    from tpv.library import resolve

    return str(resolve(ref))


# --- assets and demo -------------------------------------------------------------------------
@assets_app.command("fetch")
def assets_fetch() -> None:
    """Fetch the VADER corpus sdist and de-quantise the embedded model once (cached).

    Example: tpv assets fetch
    """
    from tpv.backbone import embedded_model_dir
    from tpv.tasks.assets import ensure_vader_sdist

    console.print(f"VADER corpora: {ensure_vader_sdist()}")
    console.print(f"embedded model: {embedded_model_dir()}")


@app.command("demo")
def demo_cmd(
    task: Annotated[str, typer.Option(help="Offline task to tune on.")] = "rotten_tomatoes",
    steps: int = 50,
    tokens: int = 20,
    batch_size: int = 8,
    test_examples: int = 200,
    out: Path = Path("runs/demo"),
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


def _mount_optional() -> None:
    """Sub-commands whose modules may grow independently."""
    try:
        from tpv.tasks.cli import app as tasks_app

        app.add_typer(tasks_app, name="tasks")
    except ImportError:  # pragma: no cover - only while the module is absent
        pass
    from tpv.library_cli import library_app, peft_app

    app.add_typer(library_app, name="library")
    app.add_typer(peft_app, name="peft")
    from tpv.experiments.cli import app as experiment_app

    app.add_typer(experiment_app, name="experiment")


_mount_optional()


def main() -> None:
    from tpv.backbone import BackboneError
    from tpv.tasks.base import TaskError
    from tpv.vectors import FormatError, IncompatibleError

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


if __name__ == "__main__":
    main()
