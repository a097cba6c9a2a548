"""The benchmark's modes, pipelines and settings."""

from __future__ import annotations

import time
from dataclasses import dataclass

PIPELINES = ("tpv", "tpv-plain", "A", "B")
DESCRIPTIONS = {
    "tpv": "tpv loop on its fast path (tpv.fastpath: packed rows, one-matmul LM head, the "
    "default dtype: bf16 on CUDA and on CPUs with native bf16), rank-classification eval",
    "tpv-plain": "tpv loop on the plain path (TPV_FAST_PATH=0): float32 on CPU, rows "
    "left-padded to the longest, LM head on answer rows only, rank-classification eval",
    "A": "PEFT + Trainer, padded to 256, eval by generate (greedy, 16 tokens)",
    "B": "PEFT + Trainer, dynamic padding + group_by_length, eval by generate",
}
MODES = ("smoke", "cpu", "gpu")
MODE_DEFAULTS: dict[str, dict] = {
    # Tiny random models, CPU: keeps the entry point and every code path alive in the tests.
    "smoke": dict(
        steps=2,
        warmup_steps=1,
        batch_size=4,
        prompt_tokens=4,
        eval_examples=8,
        eval_batch_size=4,
        models="tiny-llama,tiny-t5",
        device="cpu",
        time_budget_s=600.0,
        tpv_generate=True,
        # Tiny models gain nothing from threads, and on a loaded machine spinning OpenMP
        # threads made this 10x slower.
        threads=1,
    ),
    "cpu": dict(
        steps=5,
        warmup_steps=2,
        batch_size=8,
        prompt_tokens=20,
        eval_examples=64,
        eval_batch_size=16,
        models="smollm2",
        device="cpu",
        time_budget_s=3600.0,
        tpv_generate=False,  # tpv's generate on CPU costs as much as A's eval; opt in
    ),
    # Run once, blind, under a 10-minute limit: few steps, and a budget after which pipelines
    # not yet started are skipped (recorded as such) rather than the whole run killed.
    "gpu": dict(
        steps=10,
        warmup_steps=3,
        batch_size=32,
        prompt_tokens=50,
        eval_examples=256,
        eval_batch_size=32,
        models="llama-1b,smollm2,t5-base",
        device="cuda",
        time_budget_s=330.0,
        tpv_generate=True,
    ),
}


@dataclass
class Settings:
    mode: str
    steps: int  # timed steps, after warmup_steps untimed ones; every pipeline runs both
    warmup_steps: int
    batch_size: int
    prompt_tokens: int
    eval_examples: int
    eval_batch_size: int
    models: list[str]
    device: str
    time_budget_s: float
    tpv_generate: bool
    threads: int | None = None  # torch CPU threads; None: torch's default
    seed: int = 0
    lr: float = 0.3
    weight_decay: float = 1e-5
    pad_to: int = 256  # pipeline A's fixed length (the paper's max input length)
    max_grad_norm: float = 1.0  # the Trainer's default clipping in A and B (tpv: none); 0: off
    max_new_tokens: int = 16
    assets: str | None = None  # folder made by --pack-assets (for a bare GPU machine)
    out: str = ""

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)
