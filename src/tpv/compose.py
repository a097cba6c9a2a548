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
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from tpv import merge
from tpv.backbone import Backbone
from tpv.data import Encoder, collate
from tpv.prompted import PromptedModel
from tpv.tasks.base import Task
from tpv.tasks.fewshot import subsample
from tpv.train import _StepStream, lr_factor
from tpv.vectors import Origin, SoftPrompt, TaskPromptVector

log = logging.getLogger(__name__)
MODES = ("coefficients", "joint")


@dataclass
class FitConfig:
    mode: str = "coefficients"
    granularity: str = "token"  # coefficients: one weight per "token" or per "vector"
    init: str = "sum"  # joint: start from "sum" (origin + init_coef * sum tau) or "origin"
    init_coef: float = 1.0  # starting weight of every vector
    steps: int = 40
    lr: float | None = None  # None: 0.05 for coefficients, 0.3 (prompt tuning's) for joint
    weight_decay: float = 0.0
    batch_size: int = 8
    eval_every: int = 20
    warmup_ratio: float = 0.1
    examples_per_task: int | None = 1000  # every task subsampled to min(this, smallest train)
    max_input_tokens: int = 256
    seed: int = 0
    share_prefix: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fit: mode {self.mode!r}: use one of {MODES}")
        if self.granularity not in ("token", "vector"):
            raise ValueError(f"fit: granularity {self.granularity!r}: use 'token' or 'vector'")
        if self.init not in ("sum", "origin"):
            raise ValueError(f"fit: init {self.init!r}: use 'sum' or 'origin'")
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"fit: {name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"fit: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

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


def fit_multitask(
    backbone: Backbone,
    origin: Origin,
    vectors: Sequence[TaskPromptVector],
    tasks: Sequence[Task],
    val_score: Callable[[SoftPrompt], float],
    cfg: FitConfig | None = None,
) -> FitResult:
    """Fit one prompt for all `tasks` (vectors[i] was tuned on tasks[i]); `val_score` is the
    selection criterion, e.g. the tasks' mean validation score."""
    cfg = cfg or FitConfig()
    if len(vectors) != len(tasks) or not vectors:
        raise ValueError(f"fit: got {len(vectors)} vector(s) for {len(tasks)} task(s)")
    names = [t.name for t in tasks]
    items = mixed_items(backbone, tasks, cfg.examples_per_task, cfg.max_input_tokens, cfg.seed)
    device = backbone.device
    taus = torch.stack([v.tensor.to(torch.float64) for v in vectors]).to(device)  # (n, P, D)
    base = origin.tensor.to(torch.float64).to(device)
    n, P, _ = taus.shape

    weights = None
    if cfg.mode == "coefficients":
        shape = (n, P, 1) if cfg.granularity == "token" else (n, 1, 1)
        weights = torch.full(shape, float(cfg.init_coef), dtype=torch.float64, device=device)
        weights.requires_grad_(True)
        start = base + (weights.detach() * taus).sum(0)
        params = [weights]
    else:
        start = base + cfg.init_coef * taus.sum(0) if cfg.init == "sum" else base
    model = PromptedModel(backbone, start.float())
    if cfg.mode == "joint":
        params = [model.prompt]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.resolved_lr, weight_decay=cfg.weight_decay, foreach=True
    )
    warmup = round(cfg.warmup_ratio * cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, warmup, "linear")
    )

    def current() -> tuple[SoftPrompt, list[list[float]] | None]:
        if weights is not None:
            w = weights.detach().expand(n, P, 1).squeeze(-1).cpu().tolist()
            p = merge.token_weighted(vectors, w).apply(origin)
            # The weights travel with the prompt file, so it can be rebuilt from its vectors.
            record = p.record | {"method": "coefficients", "weights": w, "config": asdict(cfg)}
            return replace(p, record=record), w
        return SoftPrompt(
            model.prompt.detach().float().cpu(),
            backbone.name,
            name=f"joint({', '.join(names)})",
            origin_id=origin.id,
            tasks=tuple(names),
            record={"method": "joint", "init": cfg.init, "config": asdict(cfg)},
        ), None

    best, best_weights = current()
    init_val = best_val = float(val_score(best))
    best_step, evals = 0, [{"step": 0, "val": init_val}]
    log.info("fit %s (%s): step 0 mean val %.4f", cfg.mode, "+".join(names), init_val)
    stream = _StepStream(len(items), cfg.seed)
    share = cfg.share_prefix and model.can_share_prefix
    seconds = 0.0
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        if weights is not None:
            with torch.no_grad():
                model.prompt.copy_((base + (weights * taus).sum(0)).float())
        batch = collate(
            [items[i] for i in stream.batch(step - 1, cfg.batch_size)],
            model.pad_id,
            backbone.is_encoder_decoder,
            share_prefix=share,
        ).to(device)
        loss = model(batch.input_ids, batch.attention_mask, batch.labels, batch.prefix_ids).mean()
        loss.backward()
        if weights is not None:
            weights.grad = weight_grad(model.prompt.grad, taus, cfg.granularity)
            model.prompt.grad = None
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t0
        if step % cfg.eval_every == 0 or step == cfg.steps:
            candidate, w = current()
            score = float(val_score(candidate))
            evals.append({"step": step, "val": score, "loss": float(loss.detach())})
            log.info(
                "fit %s: step %d loss %.4f mean val %.4f",
                cfg.mode,
                step,
                float(loss.detach()),
                score,
            )
            if score > best_val:
                best, best_weights, best_val, best_step = candidate, w, score, step
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
