"""Prompt tuning: train a soft prompt on a frozen model, keep the best (or the last), write the run.

Readable top to bottom: set up -> (resume) -> loop {batch, loss, step, evaluate, checkpoint}
-> test the best prompt -> write origin, prompt, vector, metrics. Accelerate does the device
and process work; with N processes each takes its share of every global batch.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from tpv import fastpath, rundir
from tpv.backbone import Backbone
from tpv.checks import OptionError, check_choice, check_float, check_int
from tpv.data import Encoder
from tpv.evaluate import Evaluator
from tpv.identity import same_model
from tpv.io import atomic_open, read_safetensors, write_json, write_safetensors
from tpv.options import Choice, from_dict, option
from tpv.prompted import PromptedModel
from tpv.scoring import SCORER_HELP, Scorer
from tpv.step import StepOrder, train_step
from tpv.tasks.base import Task
from tpv.tracking import ReportTo
from tpv.vectors import Origin, OriginStrategy, SoftPrompt, TaskPromptVector, load, sum_vectors

log = logging.getLogger(__name__)


class Schedule(Choice):
    linear = "linear"
    cosine = "cosine"
    constant = "constant"


SCHEDULES = tuple(m.value for m in Schedule)
DTYPES = ("auto", "float32", "bfloat16", "float16")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stops before saving the broken prompt."""


class Method(Choice):
    prompt = "prompt"  # one soft prompt in front of every input
    attempt = "attempt"  # ATTEMPT: a per-input mixture of frozen source prompts (tpv.attempt)


class Keep(Choice):
    best = "best"  # the best prompt on validation (the start counts as step 0)
    last = "last"  # the last prompt, no validation read at all (true few-shot: fixed steps)


ATTEMPT_FILE = "attempt.safetensors"  # the result of a method "attempt" run


@dataclass
class TrainConfig:
    """Everything that defines a run; written to config.json in the run directory. Each field's
    help is also its `tpv train` option's help (see tpv.options)."""

    task: str = option(help="Registered task name or a CSV/JSONL/TOML task file.")
    out: str = option("runs/run", "Run directory.")
    task_options: dict[str, Any] = option(
        default_factory=dict, cli=False, help="User data files: columns, label words."
    )
    model: str | None = option(None, "Hub id, local dir or .gguf; default: embedded SmolLM2.")
    num_tokens: int = option(50, "Number of virtual tokens P.", cli="tokens")
    origin_seed: int = option(0, "Seed of the origin (initialisation).")
    origin_strategy: OriginStrategy = option(OriginStrategy.vocab, "How the origin is drawn.")
    init: list[str] = option(
        default_factory=list,
        help="Start from a prompt, an origin, or origin + coef * sum of vectors (repeat; files).",
    )
    coef: float = option(1.0, "Coefficient applied to the summed --init vectors.")
    lr: float = option(
        0.3, "AdamW learning rate (0.3 measured on SmolLM2 and Gemma-3-270M: docs/models.md)."
    )
    weight_decay: float = option(1e-5, "AdamW weight decay.")
    schedule: Schedule = option(Schedule.linear, "Learning-rate schedule after warm-up.")
    warmup_ratio: float = option(0.1, "Warm-up steps as a fraction of the steps.")
    warmup_steps: int | None = option(
        None, "Warm-up steps; overrides --warmup-ratio (the paper's T5 runs: 500)."
    )
    max_steps: int = option(300, "Optimiser steps.", cli="steps")
    epochs: float | None = option(None, "When set, steps = ceil(epochs * train size / batch size).")
    batch_size: int = option(8, "Global batch, split across processes and accumulation steps.")
    grad_accum: int = option(1, "Gradient accumulation steps per optimiser step.")
    eval_every: int = option(100, "Evaluate on validation every this many steps.")
    eval_examples: int | None = option(
        200, "Validation examples per evaluation (0: all).", none_as=0
    )
    test_examples: int | None = option(None, "Test examples (0: all).", none_as=0)
    patience: int | None = option(
        None, "Stop after this many evaluations without gain (0: never).", none_as=0
    )
    scorer: Scorer = option(Scorer.rank, SCORER_HELP)
    eval_batch_size: int = option(32, "Batch size of evaluation.")
    max_input_tokens: int = option(256, "Inputs are cut to this many tokens.")
    seed: int = option(0, "Seed of the data order.")
    shots: int | None = option(
        None,
        "Few-shot: k training examples per class; generation tasks: k in all (0: all).",
        none_as=0,
    )
    shots_seed: int = option(0, "Seed of the few-shot sample.")
    train_examples: int | None = option(None, "Cap on the train split (0: all).", none_as=0)
    checkpoint_every: int | None = option(
        None, "Checkpoint every this many steps (0: eval_every).", none_as=0
    )
    test_init: bool = option(False, "Also score the starting prompt on test.")
    dtype: str = option(
        "auto",
        "auto (bf16 on CUDA and on CPUs with native bf16, float32 elsewhere or with "
        "TPV_FAST_PATH=0) | float32 | bfloat16 | float16. The prompt stays float32.",
    )
    share_prefix: bool = option(
        True, "Decoders: run the tokens every input starts with once per batch."
    )
    # ATTEMPT: frozen source prompts mixed per input with the trained target prompt (which starts
    # from the origin, or from --init); see tpv.attempt and docs/attempt.md.
    method: Method = option(
        Method.prompt, "prompt: one soft prompt | attempt: a per-input mix of --source prompts."
    )
    sources: list[str] = option(
        default_factory=list,
        cli="source",
        help="ATTEMPT: a frozen source prompt: file, run directory or library name (repeat).",
    )
    attempt_temperature: float | None = option(
        None, "ATTEMPT softmax temperature (default: hidden size * e, the authors' configs)."
    )
    attempt_rank: int = option(100, "ATTEMPT attention bottleneck width.")
    attempt_lr: float | None = option(
        None, "ATTEMPT attention module learning rate (default: --lr)."
    )
    keep: Keep = option(
        Keep.best,
        "Which prompt the run keeps: best (on validation, the start included) | last (fixed "
        "steps, no validation read at all: the true few-shot protocol).",
    )
    report_to: ReportTo = option(
        ReportTo.none,
        "Experiment tracker (Accelerate): none | tensorboard | wandb | mlflow; "
        "WANDB_MODE=offline works without an account.",
    )

    def __post_init__(self) -> None:
        self.method = Method.parse(self.method, "method")
        self.keep = Keep.parse(self.keep, "keep")
        if self.method == Method.attempt and not self.sources:
            raise ValueError("method 'attempt' needs at least one source prompt (--source)")
        if self.method != Method.attempt and self.sources:
            raise ValueError("source prompts (--source) are for --method attempt")
        self.schedule = Schedule.parse(self.schedule, "schedule")
        self.report_to = ReportTo.parse(self.report_to, "report_to")
        self.scorer = Scorer.parse(self.scorer, "scorer")
        self.origin_strategy = OriginStrategy.parse(self.origin_strategy, "origin_strategy")
        self.validate()

    def validate(self) -> None:
        """Refuse nonsense before anything loads: one line naming the option as the CLI spells
        it (the field's `cli` name; tpv.checks)."""
        check_choice(self, "dtype", DTYPES)
        for name in ("num_tokens", "batch_size", "grad_accum", "eval_every"):
            check_int(self, name, 1)
        check_int(self, "max_steps", 0, hint=" (0: only score the starting prompt)")
        check_int(self, "eval_batch_size", 1)
        check_int(self, "max_input_tokens", 1)
        for name in ("origin_seed", "seed", "shots_seed"):
            check_int(self, name, 0)
        for name in ("eval_examples", "test_examples", "shots", "train_examples"):
            check_int(self, name, 1, optional=True, hint=" (0 on the CLI: all)")
        check_int(self, "patience", 1, optional=True, hint=" (0 on the CLI: never)")
        check_int(self, "checkpoint_every", 1, optional=True)
        check_int(self, "warmup_steps", 0, optional=True)
        check_float(self, "lr", positive=True)
        check_float(self, "weight_decay", minimum=0.0)
        check_float(self, "warmup_ratio", minimum=0.0, maximum=1.0)
        check_float(self, "coef")
        check_float(self, "epochs", positive=True, optional=True)
        if self.keep == Keep.last and self.patience is not None:
            raise OptionError(
                f"--patience {self.patience} stops on validation; --keep last reads no "
                "validation (drop --patience)",
                "patience",
            )
        if self.batch_size % self.grad_accum:
            raise OptionError(
                f"--grad-accum {self.grad_accum} does not divide --batch-size "
                f"{self.batch_size} (each accumulation step takes an equal share)",
                "grad_accum",
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return from_dict(cls, d, "training")

    @property
    def init_coef(self) -> float:
        """Deprecated name of `coef`."""
        warnings.warn("TrainConfig.init_coef is deprecated, use coef", DeprecationWarning, 2)
        return self.coef


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1.0 - progress)


def initial_prompt(cfg: TrainConfig, backbone: Backbone) -> tuple[Origin, SoftPrompt]:
    """The origin and the prompt tuning starts from: the origin itself, a given prompt (SPoT),
    or origin + coef * sum of given vectors (the paper's initialisation)."""
    loaded = [load(p) for p in cfg.init]  # paths: names are resolved by the caller
    origins = [x for x in loaded if isinstance(x, Origin)]
    prompts = [x for x in loaded if isinstance(x, SoftPrompt)]
    vectors = [x for x in loaded if isinstance(x, TaskPromptVector)]
    if len(origins) > 1 or len(prompts) > 1 or (prompts and vectors):
        raise ValueError("--init takes at most one origin, and either one prompt or any vectors")
    origin = (
        origins[0]
        if origins
        else backbone.make_origin(cfg.num_tokens, cfg.origin_seed, cfg.origin_strategy)
    )
    for x in loaded:
        if not same_model(x.model, backbone.name) or x.num_tokens != origin.num_tokens:
            raise ValueError(
                f"--init {x.kind} {getattr(x, 'name', '')!r} is for model {x.model!r} with "
                f"{x.num_tokens} tokens; this run uses {backbone.name!r} with {origin.num_tokens}"
            )
    if prompts:
        p = prompts[0]
        return origin, SoftPrompt(
            p.tensor,
            p.model,
            name=p.name,
            origin_id=origin.id,
            tasks=p.tasks,
            record={"init": "prompt", "from": p.name},
        )
    if vectors:
        return origin, sum_vectors(vectors).apply(origin, cfg.coef)
    return origin, origin.as_prompt()


def _resolve_dtype(cfg: TrainConfig) -> torch.dtype:
    if cfg.dtype == "auto":
        return fastpath.default_dtype("cuda" if torch.cuda.is_available() else "cpu")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        cfg.dtype
    ]


@dataclass
class TrainResult:
    """What a run produced; `as_dict()` is what `out/metrics.json` holds."""

    task: str
    model: str
    origin_id: str
    origin_seed: int
    init: str
    num_tokens: int
    train_size: int
    steps: int
    max_steps: int
    best_step: int
    learned: bool | None  # validation beat the starting prompt (None: keep last, no validation)
    lr: float  # the learning rate used (cfg.lr, or the default rule's)
    stopped_early: bool
    best_val: float | None  # None: keep last (no validation)
    init_val: float | None
    evals: list[dict]
    processes: int
    train_seconds: float
    eval_seconds: float
    vector_norm: float | None  # None for ATTEMPT: no single prompt, so no vector
    origin_norm: float
    vector_to_origin_norm: float | None
    steps_per_s: float | None = None
    examples_per_s: float | None = None
    test: dict | None = None  # metrics of the best prompt on the test split
    init_test: dict | None = None  # of the initial prompt (cfg.test_init)
    method: str = "prompt"
    # How the frozen model ran: its weights' dtype, and whether on tpv's fast path (tpv.fastpath).
    compute_dtype: str | None = None
    fast_path: bool | None = None
    # ATTEMPT only: mean mixture weight per source (and the target) on the test inputs, and
    # norm(target - origin) in place of a vector norm.
    attention: dict[str, float] | None = None
    target_shift_norm: float | None = None
    origin: Origin | None = field(default=None, repr=False)
    prompt: SoftPrompt | None = field(default=None, repr=False)
    vector: TaskPromptVector | None = field(default=None, repr=False)
    mixture: Any = field(default=None, repr=False)  # tpv.attempt.AttemptPrompt

    _OPTIONAL = (
        "steps_per_s",
        "examples_per_s",
        "test",
        "init_test",
        "attention",
        "target_shift_norm",
    )

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("origin", "prompt", "vector", "mixture"):
            d.pop(k)
        return {k: v for k, v in d.items() if v is not None or k not in self._OPTIONAL}


@dataclass
class _Loop:
    """The loop's state: what a checkpoint stores and a resumed run starts from."""

    step: int = 0
    best_score: float = -math.inf
    best_step: int = 0
    evals: list[dict] = field(default_factory=list)
    bad_evals: int = 0
    train_seconds: float = 0.0
    eval_seconds: float | None = None  # None until the first evaluation
    init_val: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None or k not in _LOOP_OPTIONAL}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Loop:
        return cls(**{k: d[k] for k in d if k in {f.name for f in fields(cls)}})


_LOOP_OPTIONAL = ("eval_seconds", "init_val")


@dataclass
class _Data:
    encoder: Encoder
    items: list
    val_rows: list
    test_rows: list
    max_steps: int

    def evaluator(self, backbone: Backbone, task: Task, rows: list, cfg: TrainConfig) -> Evaluator:
        """Scores on `rows`, tokenised by the training encoder (same cut, same template)."""
        return Evaluator(
            backbone,
            task,
            rows,
            scorer=cfg.scorer,
            batch_size=cfg.eval_batch_size,
            encoder=self.encoder,
        )


def _data(cfg: TrainConfig, backbone: Backbone, task: Task) -> _Data:
    """Encoded train examples, capped validation and test rows, and the resolved step count."""
    from tpv.tasks.fewshot import sample_k_shot, subsample

    train_rows = task.split("train")
    if cfg.train_examples is not None:
        train_rows = subsample(train_rows, cfg.train_examples, cfg.seed)
    if cfg.shots is not None:
        train_rows = sample_k_shot(train_rows, cfg.shots, seed=cfg.shots_seed)
    encoder = Encoder(backbone, task, cfg.max_input_tokens)
    items = encoder.encode_all(train_rows)
    if len(items) == 0:
        raise ValueError(f"task {task.name!r}: no training examples")
    # Caps draw seeded samples: a split's first rows can all be one class (sorted corpora).
    val_rows = subsample(task.split("validation"), cfg.eval_examples)
    test_rows = subsample(task.split("test"), cfg.test_examples)
    max_steps = cfg.max_steps
    if cfg.epochs is not None:
        max_steps = math.ceil(cfg.epochs * len(items) / cfg.batch_size)
    return _Data(encoder, items, val_rows, test_rows, max_steps)


def _optimiser(cfg: TrainConfig, model: PromptedModel, max_steps: int, lr: float):
    optimizer = torch.optim.AdamW(
        model.param_groups(lr, cfg.attempt_lr),
        lr=lr,
        weight_decay=cfg.weight_decay,
        foreach=True,
    )
    warmup = (
        cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * max_steps)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, max_steps, warmup, cfg.schedule)
    )
    return optimizer, scheduler


def train(
    cfg: TrainConfig,
    *,
    backbone: Backbone | None = None,
    task: Task | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Run one prompt-tuning job; the result's `as_dict()` is also written to
    `out/metrics.json`. Set up -> (resume) -> loop -> test the best prompt -> write the run.

    The run is written into `<out>.partial/` and renamed to `out` when complete (tpv.rundir):
    a finished run at `out` is refused unless `overwrite` (replaced only once the new run is
    done) or `resume` (with the same options: nothing to do, its result is returned).
    """
    from accelerate import Accelerator

    from tpv import tracking

    acc = Accelerator(
        cpu=not torch.cuda.is_available(),
        # the tracker writes into the work directory, so its files move with the finished run
        **tracking.accelerator_kwargs(cfg.report_to, rundir.partial_dir(Path(cfg.out))),
    )
    main = acc.is_main_process
    # Before the model loads: refuse a file, a finished run, or a resume with other options.
    run = rundir.prepare(
        cfg.out, _resume_options(cfg), resume=resume, overwrite=overwrite, main=main
    )
    acc.wait_for_everyone()
    if run.finished:
        return _finished_result(run.out)
    out = run.work
    backbone = backbone or Backbone.load(cfg.model, dtype=_resolve_dtype(cfg), device=acc.device)
    if task is None:
        from tpv.tasks import get_task

        task = get_task(cfg.task, **cfg.task_options)
    data = _data(cfg, backbone, task)
    select = cfg.keep == Keep.best  # keep last: validation is never read
    val = data.evaluator(backbone, task, data.val_rows, cfg) if select else None
    origin, init = initial_prompt(cfg, backbone)
    mixture = _attempt_mixture(cfg, init, origin) if cfg.method == Method.attempt else None
    model = PromptedModel(backbone, mixture if mixture is not None else init.tensor)
    lr = cfg.lr
    optimizer, scheduler = _optimiser(cfg, model, data.max_steps, lr)
    ddp_model, optimizer = acc.prepare(model, optimizer)  # the scheduler is stepped by hand, once

    # Trained tensors by name ("prompt", or a mixture's): the best so far, and the start.
    state, best, initial = _Loop(), _snapshot(model), _snapshot(model)
    ckpt_path = out / "checkpoint.safetensors"
    if run.resuming:
        state, best = _load_checkpoint(ckpt_path, model, optimizer, scheduler)
        log.info("resumed %s at step %d", out, state.step)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            out / "config.json",
            asdict(cfg) | {"resolved_max_steps": data.max_steps},
        )
        _truncate_log(out / "log.jsonl", state.step)
    tracker = tracking.RunTracker(
        acc, cfg.report_to, Path(cfg.out).name, asdict(cfg) | {"resolved_max_steps": data.max_steps}
    )

    def evaluate_now(step: int) -> dict:
        result = val(None, model=model)
        state.eval_seconds = (state.eval_seconds or 0.0) + result["seconds"]
        if result["score"] > state.best_score:
            state.best_score, state.best_step, state.bad_evals = result["score"], step, 0
            best.update(_snapshot(model))
        else:
            state.bad_evals += 1
        state.evals.append({"step": step, "val": result["score"]})
        _log(out / "log.jsonl", main, {"step": step, "val": result["score"], "val_metrics": result})
        tracker.log_eval(step, result)
        return result

    if state.step == 0 and select:
        # The start may be the best there is (fair few-shot).
        state.init_val = evaluate_now(0)["score"]
    stopped_early = _loop(
        cfg, acc, model, ddp_model, optimizer, scheduler, data, state, best,
        evaluate_now if select else None, progress=progress and main, run=run, lr=lr,
        tracker=tracker,
    )  # fmt: skip
    if not select:
        best.update(_snapshot(model))
        state.best_step = state.step
    acc.wait_for_everyone()
    if mixture is not None:
        result = _finish_attempt(
            cfg, acc, backbone, task, data, origin, init, state, best, initial, stopped_early,
            mixture, run=run, lr=lr,
        )  # fmt: skip
    else:
        result = _finish(
            cfg, acc, backbone, task, data, origin, init, state, best, stopped_early, run=run,
            lr=lr,
        )  # fmt: skip
    tracker.log_final(result.as_dict())
    tracker.finish()  # closes the tracker's files before the work directory is renamed
    if main:
        run.commit()
    return result


def _loop(
    cfg, acc, model, ddp_model, optimizer, scheduler, data, state, best, evaluate_now, *,
    progress, run, lr, tracker=None,
) -> bool:  # fmt: skip
    """Steps until max_steps (or patience runs out); evaluates and checkpoints on schedule.
    Returns whether it stopped early. A NaN/Inf loss stops the run (TrainingDiverged)."""
    out, main, max_steps = run.work, acc.is_main_process, data.max_steps
    order = StepOrder(len(data.items), cfg.seed)
    share_prefix = cfg.share_prefix and model.can_share_prefix
    ckpt_every = cfg.checkpoint_every or cfg.eval_every
    ckpt_path = out / "checkpoint.safetensors"
    bar = _progress(max_steps, state.step, enabled=progress)
    stopped_early = False
    while state.step < max_steps:
        step = state.step
        t_step = time.perf_counter()
        try:
            loss_sum = train_step(
                model,
                optimizer,
                scheduler,
                data.items,
                order.batch(step, cfg.batch_size),
                device=acc.device,
                grad_accum=cfg.grad_accum,
                share_prefix=share_prefix,
                accelerator=acc,
                forward=ddp_model,
            ).loss
        except RuntimeError as e:  # Adam's step itself overflowed (an lr near float's max)
            if "overflow" not in str(e):
                raise
            bar.close()
            _diverged(run, state, step + 1, math.inf, lr, main)
        state.train_seconds += time.perf_counter() - t_step  # optimisation only, no evaluation
        loss_value = float(acc.reduce(loss_sum, reduction="mean"))
        if not math.isfinite(loss_value):  # checked before any checkpoint of this step
            bar.close()
            _diverged(run, state, step + 1, loss_value, lr, main)
        state.step = step = step + 1
        _log(
            out / "log.jsonl",
            main,
            {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]},
        )
        if tracker is not None:
            tracker.log_step(step, loss_value, scheduler.get_last_lr()[0])
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", best=f"{state.best_score:.3f}")
        if evaluate_now is not None and (step % cfg.eval_every == 0 or step == max_steps):
            evaluate_now(step)
            if cfg.patience is not None and state.bad_evals >= cfg.patience:
                stopped_early = True
        if main and (step % ckpt_every == 0 or stopped_early or step == max_steps):
            _save_checkpoint(ckpt_path, state.as_dict(), model, optimizer, scheduler, best)
        if stopped_early:
            log.info("early stop at step %d: no improvement in %d evaluations", step, cfg.patience)
            break
    bar.close()
    return stopped_early


def _result(
    cfg, acc, backbone, task, data, origin, init, state, stopped_early, lr, **fields
) -> TrainResult:
    """The TrainResult fields every method shares, plus `fields` (prompt/vector or mixture)."""
    result = TrainResult(
        task=task.name,
        model=backbone.name,
        origin_id=origin.id,
        origin_seed=cfg.origin_seed,
        init=init.name,
        num_tokens=origin.num_tokens,
        train_size=len(data.items),
        steps=state.step,
        max_steps=data.max_steps,
        best_step=state.best_step,
        learned=state.best_step > 0 if cfg.keep == Keep.best else None,
        lr=lr,
        stopped_early=stopped_early,
        best_val=state.best_score if math.isfinite(state.best_score) else None,
        init_val=state.init_val,
        evals=state.evals,
        processes=acc.num_processes,
        train_seconds=state.train_seconds,
        eval_seconds=state.eval_seconds or 0.0,
        compute_dtype=str(backbone.model.dtype).removeprefix("torch."),
        fast_path=fastpath.enabled(),
        origin=origin,
        **fields,
    )
    if state.train_seconds > 0 and state.step:
        result.steps_per_s = state.step / state.train_seconds
        result.examples_per_s = state.step * cfg.batch_size / state.train_seconds
    return result


def _finish(
    cfg, acc, backbone, task, data, origin, init, state, best, stopped_early, *, run, lr
) -> TrainResult:
    """Test the best prompt, write origin, prompt, vector and metrics to the run's work
    directory, and rename it into place."""
    out = run.work
    tuned = SoftPrompt(
        best["prompt"],
        backbone.name,
        name=task.name,
        origin_id=origin.id,
        tasks=(task.name,),
        record={"best_step": state.best_step, "steps": state.step, "config": asdict(cfg)},
    )
    vector = TaskPromptVector.from_prompts(tuned, origin)
    result = _result(
        cfg, acc, backbone, task, data, origin, init, state, stopped_early, lr,
        vector_norm=vector.norm(),
        origin_norm=origin.norm(),
        vector_to_origin_norm=vector.norm() / max(origin.norm(), 1e-12),
        prompt=tuned,
        vector=vector,
    )  # fmt: skip
    if data.test_rows:
        test = data.evaluator(backbone, task, data.test_rows, cfg)
        result.test = test(tuned, model=None)
        if cfg.test_init:
            result.init_test = test(init)
    if acc.is_main_process:
        origin.save(out / "origin.safetensors")
        tuned.save(out / "prompt.safetensors")
        vector.save(out / "vector.safetensors")
        write_json(out / "metrics.json", result.as_dict())  # last: marks it finished
        log.info(
            "%s: %s at step %d; test %s",
            task.name,
            _kept(state),
            state.best_step,
            (result.test or {}).get("score"),
        )
    if result.learned is False and state.step > 0:
        log.warning(
            "%s: validation never beat the starting prompt (best step 0 of %d, %.4f): the run "
            'learned nothing%s; recorded as "learned": false in metrics.json. Try another '
            "--lr or more --steps",
            task.name,
            state.step,
            state.best_score,
            ", its vector is all zeros" if vector.norm() == 0 else "",
        )
    return result


# --- ATTEMPT --------------------------------------------------------------------------------------
def _attempt_mixture(cfg: TrainConfig, init: SoftPrompt, origin: Origin):
    """The ATTEMPT mixture a run trains: target from `init`, sources frozen (tpv.attempt)."""
    from tpv.attempt import build

    return build(
        cfg.sources,
        init,
        origin,
        temperature=cfg.attempt_temperature,
        rank=cfg.attempt_rank,
        seed=cfg.seed,
    )


def _snapshot(model: PromptedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().clone() for k, v in model.trainable_state().items()}


def _with_state(mixture, state: dict[str, torch.Tensor], record: dict | None = None):
    """A detached CPU copy of `mixture` holding the trained tensors `state`."""
    import copy

    m = copy.deepcopy(mixture).cpu()
    with torch.no_grad():
        for name, param in m.trainable_state().items():
            param.copy_(state[name])
    if record:
        m.record = {**m.record, **record}
    return m


def _finish_attempt(
    cfg, acc, backbone, task, data, origin, init, state, best, initial, stopped_early, mixture,
    *, run, lr,
) -> TrainResult:  # fmt: skip
    """Test the best mixture and write origin, attempt.safetensors and metrics (no single
    prompt or vector: the prompt differs per input), then rename the run into place."""
    out = run.work
    record = {"task": task.name, "best_step": state.best_step, "steps": state.step}
    final = _with_state(mixture, best, record | {"config": asdict(cfg)})
    start = _with_state(mixture, initial)
    shift = float((final.target.detach().double() - origin.tensor.double()).norm())
    result = _result(
        cfg, acc, backbone, task, data, origin, init, state, stopped_early, lr,
        vector_norm=None,
        origin_norm=origin.norm(),
        vector_to_origin_norm=None,
        method=str(cfg.method),
        target_shift_norm=shift,
        mixture=final,
    )  # fmt: skip
    if data.test_rows:
        test = data.evaluator(backbone, task, data.test_rows, cfg)
        result.test = test(final, model=None)
        if cfg.test_init:
            result.init_test = test(start)
        # What the attention chose: mean weight per source (and target) on the test inputs.
        result.attention = final.mean_weights(backbone, test.items)
    if acc.is_main_process:
        origin.save(out / "origin.safetensors")
        final.save(out / ATTEMPT_FILE)
        write_json(out / "metrics.json", result.as_dict())  # last: marks it finished
        log.info(
            "%s (attempt): %s at step %d; test %s",
            task.name,
            _kept(state),
            state.best_step,
            (result.test or {}).get("score"),
        )
    return result


def _finished_result(out: Path) -> TrainResult:
    """The result of a finished run, read back from its directory (--resume with nothing to do)."""
    m = json.loads((out / rundir.FINISHED_MARK).read_text(encoding="utf-8"))
    known = {f.name for f in fields(TrainResult)}
    m.setdefault("learned", m.get("best_step", 0) > 0)  # runs from before the field
    m.setdefault("lr", None)
    return TrainResult(
        **{k: v for k, v in m.items() if k in known},
        origin=load(out / "origin.safetensors"),
        **{
            name: load(out / f"{name}.safetensors")
            for name in ("prompt", "vector")
            if (out / f"{name}.safetensors").exists()  # an ATTEMPT run has neither
        },
    )


def _kept(state: _Loop) -> str:
    if math.isfinite(state.best_score):
        return f"best val {state.best_score:.4f}"
    return "last prompt kept (no validation)"


def _resume_options(cfg: TrainConfig) -> dict[str, Any]:
    """The options a resumed run must share with the recorded one. `keep` at its default is
    left out, so runs recorded before the option existed still resume."""
    opts = asdict(cfg)
    if cfg.keep == Keep.best:
        opts.pop("keep")
    return opts


def _diverged(run: rundir.RunDir, state, step: int, loss: float, lr: float, main: bool):
    """Stop on a NaN/Inf loss: the prompt is broken, so nothing more is saved. A fresh run's
    partial directory goes (no half run left); a resumed one keeps its last good checkpoint."""
    if main and not run.resuming:
        run.discard()
    kept = f"; {run.work} keeps the checkpoint of step {state.step}" if run.resuming else ""
    raise TrainingDiverged(
        f"training diverged: loss is {loss} at step {step} (lr {lr:g}); nothing was "
        f"saved{kept}. Lower --lr"
    )


# --- logging and checkpoints ------------------------------------------------------------------
def _log(path: Path, main: bool, row: dict) -> None:
    if main:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=str) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint (they will be written again)."""
    if not path.exists():
        return
    rows = [
        line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step
    ]
    if step == 0:
        rows = []
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("".join(r + "\n" for r in rows))


def _progress(total: int, start: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        desc="tuning",
        unit="step",
        dynamic_ncols=True,
    )


def _best_key(name: str) -> str:
    # "prompt" -> "best" keeps the plain prompt's checkpoint layout; a mixture's tensors get
    # "best.<name>".
    return "best" if name == "prompt" else f"best.{name}"


def _save_checkpoint(
    path: Path,
    state: dict,
    model: PromptedModel,
    optimizer,
    scheduler,
    best: dict[str, torch.Tensor],
) -> None:
    """One safetensors file: trained tensors, their best and optimiser moments; JSON state in
    the header."""
    opt = optimizer.state_dict()
    tensors = {k: v.detach().float().cpu() for k, v in model.trainable_state().items()}
    tensors |= {_best_key(k): v for k, v in best.items()}
    for pid, st in opt["state"].items():
        for k, v in st.items():
            t = torch.as_tensor(v).detach().cpu()
            tensors[f"opt.{pid}.{k}"] = t.reshape(1) if t.dim() == 0 else t  # safetensors: no 0-d
    meta = {
        "state": state,
        "param_groups": opt["param_groups"],
        "scheduler": scheduler.state_dict(),
    }
    write_safetensors(path, tensors, {"tpv_checkpoint": json.dumps(meta, default=_jsonable)})


def _jsonable(x):
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"cannot store {type(x).__name__} in a checkpoint")


def _load_checkpoint(
    path: Path, model: PromptedModel, optimizer, scheduler
) -> tuple[_Loop, dict[str, torch.Tensor]]:
    tensors, header = read_safetensors(path)
    meta = json.loads(header["tpv_checkpoint"])
    names = list(model.trainable_state())
    missing = [k for k in names + [_best_key(k) for k in names] if k not in tensors]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing} (written by another method?)")
    model.load_trainable_state({k: tensors[k] for k in names})
    opt_state: dict[int, dict] = {}
    for key, t in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = t.reshape(()) if name == "step" else t
    groups = meta["param_groups"]
    for g in groups:
        g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    sched = meta["scheduler"]
    sched.pop("lr_lambdas", None)
    scheduler.load_state_dict({**scheduler.state_dict(), **sched})
    return _Loop.from_dict(meta["state"]), {k: tensors[_best_key(k)].clone() for k in names}
