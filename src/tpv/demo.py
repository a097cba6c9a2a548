"""The README's first command: tune a real prompt on the embedded model and real data."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tpv.train import TrainConfig, TrainResult, train


def run_demo(
    task: str = "rotten_tomatoes",
    steps: int = 50,
    tokens: int = 20,
    batch_size: int = 8,
    test_examples: int = 200,
    out: Path = Path("runs/demo"),
    console: Console | None = None,
) -> TrainResult:
    console = console or Console()
    console.print(
        f"[bold]tpv demo[/]: prompt tuning SmolLM2-135M-Instruct (frozen, embedded) on "
        f"{task}: {tokens} virtual tokens, {steps} steps of batch {batch_size}"
    )
    start = time.perf_counter()
    cfg = TrainConfig(
        task=task,
        out=str(out),
        num_tokens=tokens,
        max_steps=steps,
        batch_size=batch_size,
        eval_every=max(steps // 2, 1),
        eval_examples=64,
        test_examples=test_examples,
        test_init=True,
    )
    m = train(cfg, resume=False, overwrite=True)  # a demo reruns into the same directory
    table = Table(title=f"{task} test ({m.test['n']} examples, rank classification)")
    for col in ("prompt", m.test["metric"], "accuracy"):
        table.add_column(col)
    table.add_row(
        "origin (untrained)", f"{m.init_test['score']:.3f}", f"{m.init_test['accuracy']:.3f}"
    )
    table.add_row(
        f"tuned (best of {steps} steps)",
        f"{m.test['score']:.3f}",
        f"{m.test['accuracy']:.3f}",
    )
    console.print(table)
    console.print(
        f"training: {(m.steps_per_s or 0):.2f} steps/s, "
        f"{(m.examples_per_s or 0):.1f} examples/s; "
        f"|tau|/|origin| = {m.vector_to_origin_norm:.1f}; "
        f"total {time.perf_counter() - start:.0f} s"
    )
    console.print(
        f"wrote origin, prompt, task prompt vector and metrics to {out}/ "
        f"(try: tpv vector info {out}/vector.safetensors)"
    )
    return m
