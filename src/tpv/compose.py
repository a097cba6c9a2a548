"""Multi-task prompts fitted on a mix of the tasks' examples, starting from task prompt vectors.

Arithmetic alone (sum, TIES, lambda search) chooses at most a few numbers on validation, and on
the embedded model it keeps about half of a weak task's score. Two ways to also use the tasks'
training examples, sharing one loop:

  coefficients  prompt = origin + sum_i w[i][t] * tau_i[t]: one weight per vector and prompt
                token (n * P numbers; AdaMerging-style, but supervised), fitted by gradient
                descent. The result is still a combination of the given vectors
                (`merge.token_weighted`), stored with its weights.
  joint         every prompt entry is free (multi-task prompt tuning) starting from the sum of
                the vectors, or from the origin: the no-vector baseline with the same budget.

Both score the tasks' mean validation at step 0 and every `eval_every` steps and keep the best,
so the result is never worse on validation than where it started. Batches mix the tasks, each
task subsampled to the same size (balanced), in a seeded order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from tpv import merge
from tpv.backbone import Backbone
from tpv.checks import check_float, check_int
from tpv.data import Encoder
from tpv.learned import warn_unlearned
from tpv.options import Choice, from_dict, option
from tpv.prompted import PromptedModel
from tpv.step import StepOrder, train_step
from tpv.tasks.base import Task
from tpv.tasks.fewshot import subsample
from tpv.train import lr_factor
from tpv.vectors import Origin, SoftPrompt, TaskPromptVector

log = logging.getLogger(__name__)
MODES = merge.FITTED  # == tuple(FitMode)


class FitMode(Choice):
    coefficients = "coefficients"  # a weight per vector (and token); still a combination
    joint = "joint"  # every prompt entry free


class Granularity(Choice):
    token = "token"
    vector = "vector"


class FitInit(Choice):
    sum = "sum"
    origin = "origin"


@dataclass
class FitConfig:
    """Options of `fit_multitask`; each field's help is also its `tpv compose` option's help."""

    mode: FitMode = option(
        FitMode.coefficients, "coefficients (a weight per vector and token) | joint (free prompt)"
    )
    granularity: Granularity = option(
        Granularity.token, "coefficients: one weight per 'token' or per 'vector'."
    )
    init: FitInit = option(
        FitInit.sum, "joint: start from 'sum' (origin + coef * sum) or 'origin'."
    )
    coef: float = option(1.0, "Starting weight of every vector.")
    steps: int = option(40, "Optimiser steps.")
    lr: float | None = option(None, "Default 0.05 (coefficients), 0.3 (joint).")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    batch_size: int = option(8, "Batch size (the tasks' examples mixed).")
    eval_every: int = option(20, "Score the tasks' mean validation every this many steps.")
    warmup_ratio: float = option(0.1, "Warm-up steps as a fraction of the steps.")
    examples_per_task: int | None = option(
        1000, "Every task subsampled to min(this, smallest train split) (0: no cap).", none_as=0
    )
    max_input_tokens: int = option(256, "Inputs are cut to this many tokens.")
    seed: int = option(0, "Seed of the example order.")
    share_prefix: bool = option(True, "Decoders: run the shared leading tokens once per batch.")

    def __post_init__(self) -> None:
        self.mode = FitMode.parse(self.mode, "fit: mode")
        self.granularity = Granularity.parse(self.granularity, "fit: granularity")
        self.init = FitInit.parse(self.init, "fit: init")
        self.validate()

    def validate(self) -> None:
        """Numeric options, refused in one line naming the option (tpv.checks)."""
        for name in ("steps", "batch_size", "eval_every", "max_input_tokens"):
            check_int(self, name, 1)
        check_int(self, "seed", 0)
        check_int(self, "examples_per_task", 1, optional=True, hint=" (0 on the CLI: no cap)")
        check_float(self, "lr", positive=True, optional=True)
        check_float(self, "weight_decay", minimum=0.0)
        check_float(self, "warmup_ratio", minimum=0.0, maximum=1.0)
        check_float(self, "coef")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        return from_dict(cls, d, "fit")

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.05 if self.mode == "coefficients" else 0.3


@dataclass
class FitResult:
    prompt: SoftPrompt
    best_step: int
    best_val: float
    init_val: float
    evals: list[dict] = field(default_factory=list)
    weights: list[list[float]] | None = None  # coefficients mode: (vectors x tokens)
    train_seconds: float = 0.0
    train_size: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("prompt")
        return d


def weight_grad(prompt_grad: torch.Tensor, taus: torch.Tensor, granularity: str) -> torch.Tensor:
    """The prompt is linear in the weights, so d loss / d w[i][t] = <grad_prompt[t], tau_i[t]>
    (summed over tokens for one weight per vector): one backward through the model serves
    every weight. Shapes: prompt_grad (P, D), taus (n, P, D) -> (n, P, 1) or (n, 1, 1)."""
    g = (prompt_grad.to(torch.float64).unsqueeze(0) * taus).sum(-1, keepdim=True)
    return g if granularity == "token" else g.sum(1, keepdim=True)


def mixed_items(
    backbone: Backbone,
    tasks: Sequence[Task],
    per_task: int | None,
    max_input_tokens: int,
    seed: int,
):
    """Every task's train split encoded with its own template and label words, each subsampled
    to the same size so no task dominates the mix."""
    rows = [t.split("train") for t in tasks]
    for t, r in zip(tasks, rows, strict=True):
        if not r:
            raise ValueError(f"task {t.name!r}: no training examples to fit a multi-task prompt")
    n = min(len(r) for r in rows)
    if per_task is not None:
        n = min(n, per_task)
    items = []
    for t, r in zip(tasks, rows, strict=True):
        items += Encoder(backbone, t, max_input_tokens).encode_all(subsample(r, n, seed))
    return items


class _Fit:
    """What one fit optimises: per-vector weights (coefficients) or the prompt itself (joint),
    the model the prompt sits in, and the optimiser and schedule."""

    def __init__(self, backbone, origin, vectors, names, cfg: FitConfig):
        self.backbone, self.origin, self.vectors, self.names, self.cfg = (
            backbone, origin, vectors, names, cfg,
        )  # fmt: skip
        device = backbone.device
        self.taus = torch.stack([v.tensor.to(torch.float64) for v in vectors]).to(device)
        self.base = origin.tensor.to(torch.float64).to(device)  # taus: (n, P, D)
        n, P, _ = self.taus.shape
        self.weights = None
        if cfg.mode == "coefficients":
            shape = (n, P, 1) if cfg.granularity == "token" else (n, 1, 1)
            self.weights = torch.full(shape, float(cfg.coef), dtype=torch.float64, device=device)
            self.weights.requires_grad_(True)
            start = self.base + (self.weights.detach() * self.taus).sum(0)
        else:
            start = self.base + cfg.coef * self.taus.sum(0) if cfg.init == "sum" else self.base
        self.model = PromptedModel(backbone, start.float())
        params = [self.weights] if self.weights is not None else [self.model.prompt]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.resolved_lr, weight_decay=cfg.weight_decay, foreach=True
        )
        warmup = round(cfg.warmup_ratio * cfg.steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.steps, warmup, "linear")
        )

    def sync_prompt(self) -> None:
        """Coefficients: the model's prompt is origin + sum_i w_i * tau_i of the current w."""
        if self.weights is not None:
            with torch.no_grad():
                self.model.prompt.copy_((self.base + (self.weights * self.taus).sum(0)).float())

    def weights_grad(self) -> None:
        """The prompt's gradient, moved onto the weights (see weight_grad)."""
        self.weights.grad = weight_grad(self.model.prompt.grad, self.taus, self.cfg.granularity)
        self.model.prompt.grad = None

    def current(self) -> tuple[SoftPrompt, list[list[float]] | None]:
        cfg, origin, names = self.cfg, self.origin, self.names
        if self.weights is not None:
            n, P, _ = self.taus.shape
            w = self.weights.detach().expand(n, P, 1).squeeze(-1).cpu().tolist()
            p = merge.token_weighted(self.vectors, w).apply(origin)
            # The weights travel with the prompt file, so it can be rebuilt from its vectors.
            record = p.record | {"method": "coefficients", "weights": w, "config": asdict(cfg)}
            return replace(p, record=record), w
        return SoftPrompt(
            self.model.prompt.detach().float().cpu(),
            self.backbone.name,
            name=f"joint({', '.join(names)})",
            origin_id=origin.id,
            tasks=tuple(names),
            record={"method": "joint", "init": cfg.init, "config": asdict(cfg)},
        ), None


def fit_multitask(
    backbone: Backbone,
    origin: Origin,
    vectors: Sequence[TaskPromptVector],
    tasks: Sequence[Task],
    val_score: Callable[[SoftPrompt], float],
    cfg: FitConfig | None = None,
    tracker=None,
) -> FitResult:
    """Fit one prompt for all `tasks` (vectors[i] was tuned on tasks[i]); `val_score` is the
    selection criterion, e.g. the tasks' mean validation score. `tracker` (a
    `tpv.tracking.RunTracker`) receives the loss, lr and mean validation as they come."""
    cfg = cfg or FitConfig()
    if len(vectors) != len(tasks) or not vectors:
        raise ValueError(f"fit: got {len(vectors)} vector(s) for {len(tasks)} task(s)")
    warn_unlearned(vectors, f"compose ({cfg.mode})")
    names = [t.name for t in tasks]
    items = mixed_items(backbone, tasks, cfg.examples_per_task, cfg.max_input_tokens, cfg.seed)
    fit = _Fit(backbone, origin, vectors, names, cfg)
    best, best_weights = fit.current()
    init_val = best_val = float(val_score(best))
    best_step, evals = 0, [{"step": 0, "val": init_val}]
    log.info("fit %s (%s): step 0 mean val %.4f", cfg.mode, "+".join(names), init_val)
    if tracker is not None:
        tracker.log({"val/score": init_val}, 0)
    order = StepOrder(len(items), cfg.seed)
    share = cfg.share_prefix and fit.model.can_share_prefix
    seconds = 0.0
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        fit.sync_prompt()
        loss = train_step(
            fit.model,
            fit.optimizer,
            fit.scheduler,
            items,
            order.batch(step - 1, cfg.batch_size),
            device=backbone.device,
            share_prefix=share,
            on_grads=fit.weights_grad if fit.weights is not None else None,
        ).loss
        seconds += time.perf_counter() - t0
        if tracker is not None:
            tracker.log_step(step, float(loss.detach()), fit.scheduler.get_last_lr()[0])
        if step % cfg.eval_every == 0 or step == cfg.steps:
            candidate, w = fit.current()
            score = float(val_score(candidate))
            evals.append({"step": step, "val": score, "loss": float(loss.detach())})
            log.info(
                "fit %s: step %d loss %.4f mean val %.4f",
                cfg.mode,
                step,
                float(loss.detach()),
                score,
            )
            if tracker is not None:
                tracker.log({"val/score": score}, step)
            if score > best_val:
                best, best_weights, best_val, best_step = candidate, w, score, step
    if tracker is not None:
        tracker.log({"best_val": best_val, "best_step": best_step}, cfg.steps)
    return FitResult(
        prompt=best,
        best_step=best_step,
        best_val=best_val,
        init_val=init_val,
        evals=evals,
        weights=best_weights,
        train_seconds=seconds,
        train_size=len(items),
    )
