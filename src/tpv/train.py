"""Prompt tuning: train a soft prompt on a frozen model, keep the best, write the run.

Readable top to bottom: set up -> (resume) -> loop {batch, loss, step, evaluate, checkpoint}
-> test the best prompt -> write origin, prompt, vector, metrics. Accelerate does the device
and process work; with N processes each takes its share of every global batch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from tpv.backbone import Backbone
from tpv.data import Encoder, collate
from tpv.evaluate import Evaluator
from tpv.io import atomic_open, read_safetensors, write_json, write_safetensors
from tpv.prompted import PromptedModel
from tpv.tasks.base import Task
from tpv.vectors import Origin, SoftPrompt, TaskPromptVector, load, sum_vectors

log = logging.getLogger(__name__)
SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class TrainConfig:
    """Everything that defines a run; written to config.json in the run directory."""

    task: str
    out: str = "runs/run"
    task_options: dict[str, Any] = field(default_factory=dict)  # for user files: columns, words
    model: str | None = None  # None: the embedded SmolLM2
    num_tokens: int = 50
    origin_seed: int = 0
    origin_strategy: str = "vocab"
    init: list[str] = field(default_factory=list)  # prompt (SPoT), origin, or vectors to sum
    init_coef: float = 1.0  # lambda for summed init vectors
    lr: float = 0.3
    weight_decay: float = 1e-5
    schedule: str = "linear"
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_ratio (the paper's T5 runs: 500)
    max_steps: int = 300
    epochs: float | None = None  # when set, max_steps = ceil(epochs * train size / batch)
    batch_size: int = 8  # global batch, split across processes and accumulation steps
    grad_accum: int = 1
    eval_every: int = 100
    eval_examples: int | None = 200  # validation cap (None: all)
    test_examples: int | None = None
    patience: int | None = None  # evaluations without improvement before stopping
    scorer: str = "rank"
    eval_batch_size: int = 32
    max_input_tokens: int = 256
    seed: int = 0  # data order
    shots: int | None = None  # k examples per class from the train split (few-shot)
    shots_seed: int = 0
    train_examples: int | None = None  # cap on the train split
    checkpoint_every: int | None = None  # default: eval_every
    test_init: bool = False  # also score the initial prompt on test (before/after)
    dtype: str = "auto"  # auto: bf16 on CUDA, float32 elsewhere
    share_prefix: bool = True  # decoders: run the tokens every input starts with once per batch

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: use one of {SCHEDULES}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


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
    or origin + init_coef * sum of given vectors (the paper's initialisation)."""
    from tpv.library import resolve  # a path, or the name of a library entry

    loaded = [load(resolve(p)) for p in cfg.init]
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
        if x.model != backbone.name or x.num_tokens != origin.num_tokens:
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
        return origin, sum_vectors(vectors).apply(origin, cfg.init_coef)
    return origin, origin.as_prompt()


class _StepStream:
    """Deterministic example order: epoch e is a permutation seeded by (seed, e), so the batch of
    any step is known without saved sampler state (resume needs only the step)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perms = n, seed, {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._perms[epoch]

    def batch(self, step: int, size: int) -> list[int]:
        return [
            self._perm(pos // self.n)[pos % self.n] for pos in range(step * size, (step + 1) * size)
        ]


def _resolve_dtype(cfg: TrainConfig) -> torch.dtype:
    if cfg.dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        cfg.dtype
    ]


def train(
    cfg: TrainConfig,
    *,
    backbone: Backbone | None = None,
    task: Task | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Run one prompt-tuning job; returns the metrics also written to `out/metrics.json`."""
    from accelerate import Accelerator

    from tpv.tasks.fewshot import sample_k_shot, subsample

    acc = Accelerator(cpu=not torch.cuda.is_available())
    out = Path(cfg.out)
    main = acc.is_main_process
    backbone = backbone or Backbone.load(cfg.model, dtype=_resolve_dtype(cfg), device=acc.device)
    if task is None:
        from tpv.tasks import get_task

        task = get_task(cfg.task, **cfg.task_options)

    # --- data -------------------------------------------------------------------------------
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
    val = Evaluator(
        backbone, task, val_rows, scorer=cfg.scorer, batch_size=cfg.eval_batch_size, encoder=encoder
    )
    max_steps = cfg.max_steps
    if cfg.epochs is not None:
        max_steps = math.ceil(cfg.epochs * len(items) / cfg.batch_size)

    # --- model and optimiser ----------------------------------------------------------------
    origin, init = initial_prompt(cfg, backbone)
    model = PromptedModel(backbone, init.tensor)
    optimizer = torch.optim.AdamW(
        [model.prompt], lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
    )
    warmup = (
        cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * max_steps)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, max_steps, warmup, cfg.schedule)
    )
    ddp_model, optimizer = acc.prepare(model, optimizer)  # the scheduler is stepped by hand, once

    state = {
        "step": 0,
        "best_score": -math.inf,
        "best_step": 0,
        "evals": [],
        "bad_evals": 0,
        "train_seconds": 0.0,
    }
    best = init.tensor.clone()
    ckpt_path = out / "checkpoint.safetensors"
    if resume and ckpt_path.exists():
        state, best = _load_checkpoint(ckpt_path, model, optimizer, scheduler)
        log.info("resumed %s at step %d", out, state["step"])
    elif resume:
        log.info("no checkpoint at %s: starting afresh", ckpt_path)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", asdict(cfg) | {"resolved_max_steps": max_steps})
        _truncate_log(out / "log.jsonl", state["step"])

    def evaluate_now(step: int) -> dict:
        result = val(None, model=model)
        state["eval_seconds"] = state.get("eval_seconds", 0.0) + result["seconds"]
        improved = result["score"] > state["best_score"]
        if improved:
            state["best_score"], state["best_step"], state["bad_evals"] = result["score"], step, 0
            best.copy_(model.prompt.detach().float().cpu())
        else:
            state["bad_evals"] += 1
        state["evals"].append({"step": step, "val": result["score"]})
        _log(out / "log.jsonl", main, {"step": step, "val": result["score"], "val_metrics": result})
        return result

    init_val = None
    if state["step"] == 0:
        init_val = evaluate_now(0)["score"]  # the start may be the best there is (fair few-shot)
        state["init_val"] = init_val

    # --- the loop ---------------------------------------------------------------------------
    stream = _StepStream(len(items), cfg.seed)
    micro = cfg.batch_size // cfg.grad_accum
    share_prefix = cfg.share_prefix and model.can_share_prefix
    ckpt_every = cfg.checkpoint_every or cfg.eval_every
    bar = _progress(max_steps, state["step"], enabled=progress and main)
    stopped_early = False
    while state["step"] < max_steps:
        step = state["step"]
        t_step = time.perf_counter()
        global_idx = stream.batch(step, cfg.batch_size)
        loss_sum = torch.zeros((), device=acc.device)
        for m in range(cfg.grad_accum):
            chunk = global_idx[m * micro : (m + 1) * micro]
            local = chunk[acc.process_index :: acc.num_processes]
            batch = collate(
                [items[i] for i in local],
                model.pad_id,
                backbone.is_encoder_decoder,
                share_prefix=share_prefix,
            ).to(acc.device)
            with acc.autocast():
                loss = ddp_model(
                    batch.input_ids, batch.attention_mask, batch.labels, batch.prefix_ids
                ).mean()
            acc.backward(loss / cfg.grad_accum)
            loss_sum += loss.detach() / cfg.grad_accum
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["train_seconds"] += time.perf_counter() - t_step  # optimisation only, no evaluation
        state["step"] = step = step + 1
        loss_value = float(acc.reduce(loss_sum, reduction="mean"))
        _log(
            out / "log.jsonl",
            main,
            {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]},
        )
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", best=f"{state['best_score']:.3f}")
        if step % cfg.eval_every == 0 or step == max_steps:
            evaluate_now(step)
            if cfg.patience is not None and state["bad_evals"] >= cfg.patience:
                stopped_early = True
        if main and (step % ckpt_every == 0 or stopped_early or step == max_steps):
            _save_checkpoint(ckpt_path, state, model, optimizer, scheduler, best)
        if stopped_early:
            log.info("early stop at step %d: no improvement in %d evaluations", step, cfg.patience)
            break
    bar.close()
    acc.wait_for_everyone()

    # --- test the best prompt and write the run ---------------------------------------------
    tuned = SoftPrompt(
        best,
        backbone.name,
        name=task.name,
        origin_id=origin.id,
        tasks=(task.name,),
        record={"best_step": state["best_step"], "steps": state["step"], "config": asdict(cfg)},
    )
    vector = TaskPromptVector.from_prompts(tuned, origin)
    metrics: dict[str, Any] = {
        "task": task.name,
        "model": backbone.name,
        "origin_id": origin.id,
        "origin_seed": cfg.origin_seed,
        "init": init.name,
        "num_tokens": origin.num_tokens,
        "train_size": len(items),
        "steps": state["step"],
        "max_steps": max_steps,
        "best_step": state["best_step"],
        "stopped_early": stopped_early,
        "best_val": state["best_score"],
        "init_val": state.get("init_val"),
        "evals": state["evals"],
        "processes": acc.num_processes,
        "train_seconds": state["train_seconds"],
        "eval_seconds": state.get("eval_seconds", 0.0),
        "vector_norm": vector.norm(),
        "origin_norm": origin.norm(),
        "vector_to_origin_norm": vector.norm() / max(origin.norm(), 1e-12),
    }
    if state["train_seconds"] > 0 and state["step"]:
        metrics["steps_per_s"] = state["step"] / state["train_seconds"]
        metrics["examples_per_s"] = state["step"] * cfg.batch_size / state["train_seconds"]
    if test_rows:
        test = Evaluator(
            backbone,
            task,
            test_rows,
            scorer=cfg.scorer,
            batch_size=cfg.eval_batch_size,
            encoder=encoder,
        )
        metrics["test"] = test(tuned, model=None)
        if cfg.test_init:
            metrics["init_test"] = test(init)
    if main:
        origin.save(out / "origin.safetensors")
        tuned.save(out / "prompt.safetensors")
        vector.save(out / "vector.safetensors")
        write_json(out / "metrics.json", metrics)
        log.info(
            "%s: best val %.4f at step %d; test %s",
            task.name,
            state["best_score"],
            state["best_step"],
            metrics.get("test", {}).get("score"),
        )
    return metrics


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


def _save_checkpoint(
    path: Path, state: dict, model: PromptedModel, optimizer, scheduler, best: torch.Tensor
) -> None:
    """One safetensors file: prompt, best and optimiser moments; JSON state in the header."""
    opt = optimizer.state_dict()
    tensors = {"prompt": model.prompt.detach().float().cpu(), "best": best}
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
) -> tuple[dict, torch.Tensor]:
    tensors, header = read_safetensors(path)
    meta = json.loads(header["tpv_checkpoint"])
    with torch.no_grad():
        model.prompt.copy_(tensors["prompt"].to(model.prompt.device))
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
    return meta["state"], tensors["best"].clone()
